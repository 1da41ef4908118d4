"""Model containers run the size of their instance type, and a model that outgrows it fails as on SageMaker.

A private emulator runs this checkout's code; SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB makes an
ml.m5.large small enough for a custom inference.py to run out of memory on purpose.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from typing import Any

import docker
import pytest
from botocore.exceptions import ClientError

from emulator.fleet.instance_types import INSTANCE_SIZES
from tests.emulator.emulator_support import PrivateEmulator, Resources, make_clients, tarball, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

MEMORY_HOG = """
import os

def model_fn(model_dir):
    mib = int(os.environ.get("ALLOCATE_AT_LOAD_MIB", "0"))
    hog = b"x" * (mib << 20)  # written, so the pages are really taken
    return len(hog)

def predict_fn(data, model):
    mib = int(data.get("allocate_mib", 0))
    hog = b"x" * (mib << 20)
    return {"allocated_mib": len(hog) >> 20}
"""


def _model_tar_gz() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(MEMORY_HOG.encode())
        tar.addfile(info, io.BytesIO(MEMORY_HOG.encode()))
    return buffer.getvalue()


def _host_config(emulator: PrivateEmulator, variant: str) -> dict[str, Any]:
    [container] = [c for c in emulator.containers() if c.labels["sagemaker-release.variant"] == variant]
    return dict(container.attrs["HostConfig"])


def test_each_container_gets_its_instance_types_cpus_and_memory_capped_to_the_machine(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator()
    made = Resources(make_clients(emulator.client_env), bucket)
    machine = docker.from_env().info()
    try:
        model = made.model(double_image, made.upload(tarball({"w.txt": b"w"})))
        variants = [
            {"VariantName": "Small", "InstanceType": "ml.c5.large"},
            {"VariantName": "Large", "InstanceType": "ml.m5.4xlarge"},
        ]
        common = {"ModelName": model, "InitialInstanceCount": 1, "InitialVariantWeight": 1}
        config = made.config([{**variant, **common} for variant in variants])
        assert made.wait_status(made.endpoint(config), "InService")["EndpointStatus"] == "InService"

        small, large = _host_config(emulator, "Small"), _host_config(emulator, "Large")
    finally:
        made.cleanup()

    assert (INSTANCE_SIZES["ml.c5.large"].vcpus, INSTANCE_SIZES["ml.c5.large"].memory_mib) == (2, 4096)
    assert small["NanoCpus"] == min(2, machine["NCPU"]) * 10**9
    assert small["Memory"] == small["MemorySwap"] == 4096 << 20  # no swap, as on an instance
    assert small["PidsLimit"] == 4096
    # ml.m5.4xlarge is 16 vCPU / 64 GiB: more than most machines running the tests have.
    assert large["NanoCpus"] == min(16, machine["NCPU"]) * 10**9
    assert large["Memory"] == min(64 << 30, machine["MemTotal"] // (1 << 20) << 20)


def test_a_model_out_of_memory_fails_its_endpoint_or_its_invocation(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, serving_ecr_image: str
) -> None:
    emulator = private_emulator(
        SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB="400", SAGEMAKER_EMULATOR_STARTUP_TIMEOUT="120"
    )
    made = Resources(make_clients(emulator.client_env), bucket)
    data = made.upload(_model_tar_gz())
    one_worker = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    try:
        greedy = made.model(
            serving_ecr_image, data, container={"Environment": {**one_worker, "ALLOCATE_AT_LOAD_MIB": "1024"}}
        )
        modest = made.model(serving_ecr_image, data, container={"Environment": one_worker})
        failing = made.endpoint(made.single(greedy))
        serving = made.endpoint(made.single(modest))

        failed = made.wait_status(failing, "Failed", timeout=240)
        assert made.wait_status(serving, "InService", timeout=240)["EndpointStatus"] == "InService"
        assert _host_config(emulator, "AllTraffic")["Memory"] == 400 << 20

        def invoke(mib: int) -> dict[str, Any]:
            answer = made.aws.runtime.invoke_endpoint(
                EndpointName=serving, Body=json.dumps({"allocate_mib": mib}), ContentType="application/json"
            )
            return dict(json.loads(answer["Body"].read()))

        assert invoke(10) == {"allocated_mib": 10}
        with pytest.raises(ClientError) as out_of_memory:
            invoke(1024)
        # The worker is replaced and the endpoint serves again, as SageMaker's would after the kill.
        deadline = time.monotonic() + 120
        while True:
            try:
                assert invoke(10) == {"allocated_mib": 10}
                break
            except ClientError:
                assert time.monotonic() < deadline, "the endpoint did not serve again after the OOM kill"
                time.sleep(0.5)
        described = made.aws.sagemaker.describe_endpoint(EndpointName=serving)
    finally:
        made.cleanup()

    assert failed["EndpointStatus"] == "Failed"
    reason = failed["FailureReason"]
    assert "The primary container for production variant AllTraffic exited before it passed" in reason
    assert "after it ran out of memory" in reason and "all 400 MiB of its memory (OOM)" in reason, reason
    assert "Use an instance type with more memory" in reason

    error = out_of_memory.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 0
    assert 'Received server error (0) from primary with message "Out of memory: ' in error["Error"]["Message"]
    assert "all 400 MiB of its memory (OOM)" in error["Error"]["Message"]
    assert described["EndpointStatus"] == "InService"


def test_a_transform_record_that_runs_out_of_memory_fails_the_job_saying_so(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, serving_ecr_image: str
) -> None:
    emulator = private_emulator(
        SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB="400", SAGEMAKER_EMULATOR_STARTUP_TIMEOUT="120"
    )
    made = Resources(make_clients(emulator.client_env), bucket)
    prefix = unique("oom")
    made.aws.s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/in/records.jsonl",
        Body=b'{"allocate_mib": 10}\n{"allocate_mib": 1024}\n',
    )
    try:
        model = made.model(
            serving_ecr_image,
            made.upload(_model_tar_gz()),
            container={"Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}},
        )
        name = unique("transform")
        made.aws.sagemaker.create_transform_job(
            TransformJobName=name,
            ModelName=model,
            BatchStrategy="SingleRecord",
            ModelClientConfig={"InvocationsMaxRetries": 0},
            TransformInput={
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}/in/"}
                },
                "ContentType": "application/json",
                "SplitType": "Line",
            },
            TransformOutput={"S3OutputPath": f"s3://{bucket}/{prefix}/out/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
        deadline = time.monotonic() + 240
        while (job := made.aws.sagemaker.describe_transform_job(TransformJobName=name))[
            "TransformJobStatus"
        ] == "InProgress":
            assert time.monotonic() < deadline, f"transform job {name} still InProgress"
            time.sleep(0.5)
    finally:
        made.cleanup()

    assert job["TransformJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert f"s3://{bucket}/{prefix}/in/records.jsonl" in reason
    assert "the container ran out of memory on it" in reason and "all 400 MiB of its memory" in reason, reason
