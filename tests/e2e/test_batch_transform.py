"""A batch release end to end: the real serving image scores CSV lines from S3 with a transform job.

The release (endpoint.type batch) packages and uploads MiniLM, builds the image, creates the model and
runs a transform job that leaves no endpoint; the stack's SageMaker emulator runs the serving container
over the S3 inputs. Its failure path: a model that cannot load fails the job, so the release fails and
leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tasks.config import naming
from tests.e2e.inspect_stack import ledger, resources_of_release, unresolved_entries
from tests.e2e.release_support import E2E, run_release

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

SENTENCES = ["SageMaker releases should be boring", "batch jobs read S3", "one embedding per line"]


def _inputs(e2e: E2E, folder: str) -> None:
    s3 = boto3.client("s3")
    try:
        s3.create_bucket(Bucket=e2e.bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_object(Bucket=e2e.bucket, Key=f"{folder}/in/first.csv", Body="\n".join(SENTENCES) + "\n")
    s3.put_object(Bucket=e2e.bucket, Key=f"{folder}/in/more/second.csv", Body=SENTENCES[0])


def _batch_config(e2e: E2E, what: str, folder: str, **changes: Any) -> Any:
    endpoint = {
        "type": "batch",
        "batch": {
            "input_path": f"s3://{e2e.bucket}/{folder}/in/",
            "output_path": f"s3://{e2e.bucket}/{folder}/out/",
            "content_type": "text/csv",
            "accept": "text/csv",
            "split_type": "Line",
            "batch_strategy": "MultiRecord",
        },
        **changes.pop("endpoint", {}),
    }
    return e2e.config(
        e2e.endpoint(what),
        release_id=f"e2e-{e2e.token}-{what}",
        endpoint=endpoint,
        scaling={"enabled": False},
        timeouts={"transform_job_s": 600},
        **changes,
    )


def _rows(e2e: E2E, key: str) -> list[list[float]]:
    body = boto3.client("s3").get_object(Bucket=e2e.bucket, Key=key)["Body"].read().decode()
    return [[float(cell) for cell in line.split(",")] for line in body.splitlines()]


def test_a_batch_release_writes_one_embedding_per_input_line(e2e: E2E) -> None:
    folder = f"batch-{e2e.token}"
    _inputs(e2e, folder)
    config = _batch_config(e2e, "batch", folder)
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert (summary["status"], summary["action"]) == ("succeeded", "transformed")
    first = _rows(e2e, f"{folder}/out/first.csv.out")
    assert [len(row) for row in first] == [384] * len(SENTENCES)
    [again] = _rows(e2e, f"{folder}/out/more/second.csv.out")
    assert again == pytest.approx(first[0], abs=1e-4), "the same sentence gets the same embedding"
    name = naming.transform_job_name(config, summary["release_id"])
    job = boto3.client("sagemaker").describe_transform_job(TransformJobName=name)
    assert job["TransformJobStatus"] == "Completed"


def test_a_failed_transform_job_fails_the_release_and_leaves_nothing(e2e: E2E) -> None:
    folder = f"batch-fail-{e2e.token}"
    _inputs(e2e, folder)
    config = _batch_config(e2e, "batchfail", folder, endpoint={"environment": {"HF_TASK": "no-such-task"}})
    ok, summary = run_release(config)
    assert not ok
    release_id = summary["release_id"]
    assert summary["status"] == "failed"
    assert "TransformJobFailed" in summary["error"] and "ping health check" in summary["error"]
    assert ledger(e2e.bucket, release_id)["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, release_id) == []
    assert resources_of_release(release_id, e2e.bucket) == []
    listed = boto3.client("s3").list_objects_v2(Bucket=e2e.bucket, Prefix=f"{folder}/out/")
    assert listed.get("KeyCount", 0) == 0, "a failed job writes no output"
