"""Batch transform jobs: records from S3 through the model's container, outputs `<key>.out` in S3.

The container is the stdlib double (it echoes each request's body, content type and accept header),
run by a private emulator so the jobs run on this checkout's emulator code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.sagemaker.transform_jobs import JobFailed, assemble, batches, output_key, split_records
from tests.emulator.emulator_support import (
    PrivateEmulator,
    Resources,
    delete_endpoint,
    make_clients,
    tarball,
    unique,
)
from tests.emulator.test_response_shapes import WireRecorder

# --- pure: splitting, batching, assembling, naming -----------------------------------------------


def test_split_types() -> None:
    assert split_records(b"a\nb\r\n\nc\n", "Line") == [b"a", b"b", b"c"]
    assert split_records(b"a\nb\n", "None") == [b"a\nb\n"]


def test_multi_record_fills_each_request_up_to_the_payload_limit() -> None:
    records = [b"x" * 400, b"y" * 400, b"z" * 400]
    sent = list(batches("s3://b/k", records, "MultiRecord", 1000))
    assert [(b.records, len(b.body)) for b in sent] == [(2, 801), (1, 400)]
    assert sent[0].body == b"x" * 400 + b"\n" + b"y" * 400
    assert [b.records for b in batches("s3://b/k", records, "MultiRecord", 0)] == [3]
    assert [b.body for b in batches("s3://b/k", records, "SingleRecord", 1000)] == records


def test_a_record_over_the_payload_limit_fails_the_job_naming_the_object() -> None:
    with pytest.raises(JobFailed, match=r"a record of 2000 bytes in s3://b/k is larger than MaxPayloadInMB"):
        list(batches("s3://b/k", [b"a" * 2000], "SingleRecord", 1000))


def test_assemble_with_line_puts_one_answer_per_line() -> None:
    assert assemble([b"[1]\n", b"[2]", b"a,b\r\n"], "Line") == b"[1]\n[2]\na,b\n"
    assert assemble([b"[1]", b"[2]"], "None") == b"[1][2]"


def test_output_keys_keep_the_path_below_the_input_prefix() -> None:
    assert output_key("in/", "in/a.csv", "s3://out-bucket/results/") == ("out-bucket", "results/a.csv.out")
    assert output_key("in/part", "in/part-1/x.csv", "s3://o/r") == ("o", "r/part-1/x.csv.out")
    assert output_key("data", "data.csv", "s3://o") == ("o", "data.csv.out")


# --- jobs on a private emulator ------------------------------------------------------------------


@pytest.fixture
def emulator(private_emulator: Callable[..., PrivateEmulator]) -> PrivateEmulator:
    return private_emulator(SAGEMAKER_EMULATOR_STARTUP_TIMEOUT="30")


@pytest.fixture
def made(emulator: PrivateEmulator, bucket: str) -> Iterator[Resources]:
    resources = Resources(make_clients(emulator.client_env), bucket)
    yield resources
    resources.cleanup()


def _wait_job(made: Resources, name: str, wanted: set[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = dict(made.aws.sagemaker.describe_transform_job(TransformJobName=name))
        if described["TransformJobStatus"] in wanted:
            return described
        if time.monotonic() >= deadline:
            raise AssertionError(f"transform job {name} still {described['TransformJobStatus']}")
        time.sleep(0.3)


def _job(made: Resources, model: str, prefix: str, **extra: Any) -> str:
    name = unique("transform")
    transform_input = {
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{made.bucket}/{prefix}/in/"}
        },
        "ContentType": "application/jsonlines",
        "SplitType": "Line",
        **extra.pop("TransformInput", {}),
    }
    made.aws.sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput=transform_input,
        TransformOutput={
            "S3OutputPath": f"s3://{made.bucket}/{prefix}/out/",
            "AssembleWith": "Line",
            "Accept": "application/json",
        },
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        Tags=[{"Key": "release-id", "Value": "r1"}],
        **extra,
    )
    return name


def _inputs(made: Resources, prefix: str) -> None:
    made.aws.s3.put_object(
        Bucket=made.bucket, Key=f"{prefix}/in/a.jsonl", Body=b'{"n":1}\n{"n":2}\n{"n":3}\n'
    )
    made.aws.s3.put_object(Bucket=made.bucket, Key=f"{prefix}/in/sub/b.jsonl", Body=b'{"n":4}\n{"n":5}')


def _answers(made: Resources, key: str) -> list[dict[str, Any]]:
    body = made.aws.s3.get_object(Bucket=made.bucket, Key=key)["Body"].read().decode()
    assert body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]


@pytest.mark.stack
@pytest.mark.docker
def test_single_and_multi_record_jobs_write_one_answer_per_request(
    emulator: PrivateEmulator, made: Resources, double_image: str
) -> None:
    wire = WireRecorder(made.aws.sagemaker)
    model = made.model(
        double_image,
        made.upload(tarball({"weights.txt": b"w1"})),
        container={"Environment": {"USER_FROM_MODEL": "m"}},
    )
    prefix = unique("batch")
    _inputs(made, prefix)
    single = _job(made, model, prefix, BatchStrategy="SingleRecord", Environment={"USER_FROM_JOB": "j"})
    done = _wait_job(made, single, {"Completed", "Failed"})
    assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
    answers = _answers(made, f"{prefix}/out/a.jsonl.out")
    assert [a["body"] for a in answers] == ['{"n":1}', '{"n":2}', '{"n":3}']
    first = answers[0]
    assert (first["content_type"], first["accept"]) == ("application/jsonlines", "application/json")
    assert first["environment"] == {"USER_FROM_MODEL": "m", "USER_FROM_JOB": "j"}
    assert first["model_files"] == {"weights.txt": "w1"}
    assert [a["body"] for a in _answers(made, f"{prefix}/out/sub/b.jsonl.out")] == ['{"n":4}', '{"n":5}']
    assert emulator.containers() == [], "the job's containers are removed when it ends"

    multi_prefix = unique("batch")
    _inputs(made, multi_prefix)
    multi = _job(made, model, multi_prefix, BatchStrategy="MultiRecord", MaxPayloadInMB=1)
    assert _wait_job(made, multi, {"Completed", "Failed"})["TransformJobStatus"] == "Completed"
    [batch] = _answers(made, f"{multi_prefix}/out/a.jsonl.out")
    assert batch["body"] == '{"n":1}\n{"n":2}\n{"n":3}'
    made.aws.sagemaker.describe_transform_job(TransformJobName=multi)
    described = wire.last("DescribeTransformJob")
    assert described["TransformJobArn"].endswith(f":transform-job/{multi.lower()}")
    assert described["TransformEndTime"] >= described["TransformStartTime"] >= described["CreationTime"]
    tags = made.aws.sagemaker.list_tags(ResourceArn=described["TransformJobArn"])["Tags"]
    assert tags == [{"Key": "release-id", "Value": "r1"}]
    assert wire.problems() == []


@pytest.mark.stack
@pytest.mark.docker
def test_a_model_that_fails_its_requests_fails_the_job_naming_the_object(
    emulator: PrivateEmulator, made: Resources, double_image: str
) -> None:
    wire = WireRecorder(made.aws.sagemaker)
    model = made.model(double_image, container={"Environment": {"DOUBLE_STATUS": "500"}})
    prefix = unique("batch")
    _inputs(made, prefix)
    name = _job(made, model, prefix, ModelClientConfig={"InvocationsMaxRetries": 1})
    failed = _wait_job(made, name, {"Completed", "Failed"})
    assert failed["TransformJobStatus"] == "Failed"
    reason = failed["FailureReason"]
    assert f"s3://{made.bucket}/{prefix}/in/a.jsonl" in reason
    assert "the container answered 500: double fails with 500, as told" in reason
    assert emulator.containers() == []
    assert wire.problems() == []


@pytest.mark.stack
@pytest.mark.docker
def test_a_container_that_exits_fails_the_job_with_its_logs(
    emulator: PrivateEmulator, made: Resources, double_image: str
) -> None:
    model = made.model(double_image, container={"Environment": {"DOUBLE_EXIT": "3"}})
    prefix = unique("batch")
    _inputs(made, prefix)
    failed = _wait_job(made, _job(made, model, prefix), {"Completed", "Failed"})
    assert failed["TransformJobStatus"] == "Failed"
    assert "did not pass the ping health check" in failed["FailureReason"]
    assert "cannot go on, exiting with code 3 as told" in failed["FailureReason"]
    assert emulator.containers() == []


@pytest.mark.stack
@pytest.mark.docker
def test_no_input_objects_fail_the_job(emulator: PrivateEmulator, made: Resources, double_image: str) -> None:
    model = made.model(double_image)
    failed = _wait_job(made, _job(made, model, unique("empty")), {"Completed", "Failed"})
    assert failed["TransformJobStatus"] == "Failed"
    assert "No S3 objects found under S3 URL" in failed["FailureReason"]


@pytest.mark.stack
@pytest.mark.docker
def test_stop_ends_a_running_job_and_removes_its_container(
    emulator: PrivateEmulator, made: Resources, double_image: str
) -> None:
    wire = WireRecorder(made.aws.sagemaker)
    model = made.model(double_image, container={"Environment": {"DOUBLE_DELAY": "60"}})
    prefix = unique("batch")
    _inputs(made, prefix)
    name = _job(made, model, prefix)
    deadline = time.monotonic() + 60
    while not emulator.containers():
        assert time.monotonic() < deadline, "the job never started its container"
        time.sleep(0.3)
    made.aws.sagemaker.stop_transform_job(TransformJobName=name)
    assert _wait_job(made, name, {"Stopped"}, timeout=30)["TransformJobStatus"] == "Stopped"
    assert emulator.containers() == []
    assert wire.problems() == []


@pytest.mark.stack
@pytest.mark.docker
def test_an_endpoint_deleted_while_a_job_runs_leaves_the_jobs_model_data_in_place(
    emulator: PrivateEmulator, made: Resources, double_image: str
) -> None:
    # Deleting an endpoint prunes the model data no deployment references; a transform job is no
    # deployment, and its container lost /opt/ml/model while loading (CI: MiniLM's tokenizer.json gone).
    model = made.model(
        double_image,
        made.upload(tarball({"weights.txt": b"w1"})),
        container={"Environment": {"DOUBLE_DELAY": "3"}},
    )
    prefix = unique("batch")
    _inputs(made, prefix)
    name = _job(made, model, prefix, BatchStrategy="SingleRecord")
    deadline = time.monotonic() + 60
    while not emulator.containers():
        assert time.monotonic() < deadline, "the job never started its container"
        time.sleep(0.3)
    other = made.model(double_image, made.upload(tarball({"other.txt": b"o"})))
    endpoint = made.endpoint(made.single(other))
    assert made.wait_status(endpoint, "InService")["EndpointStatus"] == "InService"
    delete_endpoint(made.aws, endpoint)
    assert made.aws.sagemaker.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == (
        "InProgress"
    ), "the job must still run when the endpoint is deleted, or this test shows nothing"

    done = _wait_job(made, name, {"Completed", "Failed"})
    assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
    answers = _answers(made, f"{prefix}/out/a.jsonl.out") + _answers(made, f"{prefix}/out/sub/b.jsonl.out")
    assert [a["model_files"] for a in answers] == [{"weights.txt": "w1"}] * 5


@pytest.mark.stack
@pytest.mark.docker
def test_bad_requests_are_refused(emulator: PrivateEmulator, made: Resources, double_image: str) -> None:
    model = made.model(double_image)
    prefix = unique("batch")
    with pytest.raises(ClientError, match="Could not find model"):
        _job(made, unique("absent"), prefix)
    with pytest.raises(ClientError, match="MultiRecord needs a SplitType"):
        _job(made, model, prefix, BatchStrategy="MultiRecord", TransformInput={"SplitType": "None"})
    with pytest.raises(ClientError, match="Could not find requested job"):
        made.aws.sagemaker.describe_transform_job(TransformJobName=unique("absent"))
    name = _job(made, model, unique("empty"))
    _wait_job(made, name, {"Failed"})
    with pytest.raises(ClientError, match="a job with this name already exists"):
        made.aws.sagemaker.create_transform_job(
            **{
                k: v
                for k, v in made.aws.sagemaker.describe_transform_job(TransformJobName=name).items()
                if k
                in (
                    "TransformJobName",
                    "ModelName",
                    "TransformInput",
                    "TransformOutput",
                    "TransformResources",
                )
            }
        )
