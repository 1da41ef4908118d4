"""The orphan sweep after a succeeded release: whatever the ledgers say, the live endpoint keeps serving.

Each case makes the ledgers lie the way they do for users (deleted, a one-letter typo in --prefix or
--bucket, every ledger expired by a lifecycle rule, a ledger that says "unwound"), then runs the sweep
with --delete and --include-endpoints. Afterwards the endpoint serves on the same config, its model,
image (in ECR and in the registry), model data, alarms and scaling are all there, it scales out to two
instances and answers. An orphan endpoint that has Failed is what the sweep does delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from flows.cleanup import cleanup_orphans
from tasks.config import naming
from tests.e2e.inspect_stack import resources_of_release, scaling_of, serving_config
from tests.e2e.release_support import E2E, run_release, wait_for
from tests.e2e.serving_checks import scale_out_and_answer, what_a_new_instance_needs

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"


@pytest.fixture(scope="module")
def live(e2e: E2E) -> dict[str, Any]:
    """An endpoint released for real, with autoscaling: what every case sweeps around."""
    ok, summary = run_release(e2e.config(e2e.endpoint("swept"), release_id=f"e2e-{e2e.token}-swept"))
    assert ok, summary["error"]
    return summary


@pytest.fixture
def ledgers(e2e: E2E) -> Iterator[dict[str, bytes]]:
    """Every ledger of the e2e bucket, put back as it was after the case (other tests read them)."""
    s3 = boto3.client("s3")
    saved: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=e2e.bucket, Prefix=f"{e2e.prefix}/releases/"
    ):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/ledger.json"):
                saved[item["Key"]] = s3.get_object(Bucket=e2e.bucket, Key=item["Key"])["Body"].read()
    yield saved
    for key, body in saved.items():
        s3.put_object(Bucket=e2e.bucket, Key=key, Body=body)


CASES = ["ledger-deleted", "wrong-prefix", "wrong-bucket", "expired-ledgers", "ledger-says-unwound"]


def _make_ledgers_lie(case: str, e2e: E2E, release_id: str, saved: dict[str, bytes]) -> tuple[str, str]:
    """Break the ledgers as `case` says; the bucket and prefix the sweep is then given."""
    s3 = boto3.client("s3")
    key = naming.ledger_key(e2e.prefix, release_id)
    if case == "ledger-deleted":
        s3.delete_object(Bucket=e2e.bucket, Key=key)
    elif case == "wrong-prefix":
        return e2e.bucket, e2e.prefix[:-1]
    elif case == "wrong-bucket":
        return e2e.bucket[:-1], e2e.prefix
    elif case == "expired-ledgers":
        for saved_key in saved:
            s3.delete_object(Bucket=e2e.bucket, Key=saved_key)
    elif case == "ledger-says-unwound":
        body = s3.get_object(Bucket=e2e.bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=e2e.bucket, Key=key, Body=body.replace(b'"succeeded"', b'"unwound"'))
    else:
        raise ValueError(f"unknown case {case}")
    return e2e.bucket, e2e.prefix


@pytest.mark.parametrize("case", CASES)
def test_a_sweep_leaves_the_live_endpoint_serving_and_able_to_scale_out(
    e2e: E2E, live: dict[str, Any], ledgers: dict[str, bytes], case: str
) -> None:
    endpoint, release_id = live["endpoint_name"], live["release_id"]
    before = _state(endpoint, release_id, e2e.bucket)
    assert before["serving"] == f"InService {live['endpoint_config_name']}"
    assert before["scaling"]["targets"], "the release registered no autoscaling to protect"
    assert before["needs"]["image_in_registry"] == 200 and before["needs"]["image_in_ecr"]

    bucket, prefix = _make_ledgers_lie(case, e2e, release_id, ledgers)
    result = cleanup_orphans(bucket, prefix, delete=True, include_endpoints=True)

    assert endpoint not in result["deleted"]
    assert _state(endpoint, release_id, e2e.bucket) == before
    assert result["in_use"][endpoint]["configs"] == [live["endpoint_config_name"]]
    assert scale_out_and_answer(endpoint, to=2) == 384


def _state(endpoint: str, release_id: str, bucket: str) -> dict[str, Any]:
    """What the sweep must not change: the config served, scaling, everything tagged with the release,
    and what a new instance of the endpoint needs."""
    return {
        "serving": serving_config(endpoint),
        "scaling": scaling_of(endpoint),
        "resources": sorted(resources_of_release(release_id, bucket)),
        "needs": what_a_new_instance_needs(endpoint),
    }


def test_a_failed_orphan_endpoint_goes_only_with_include_endpoints(
    e2e: E2E, live: dict[str, Any], ledgers: dict[str, bytes]
) -> None:
    release_id = f"e2e-{e2e.token}-orphan"
    name = e2e.endpoint("orphan")
    tags = [
        {"Key": naming.MANAGED_BY_KEY, "Value": naming.MANAGED_BY_VALUE},
        {"Key": naming.RELEASE_ID_KEY, "Value": release_id},
    ]
    sagemaker = boto3.client("sagemaker")
    # The serving image with a task it does not know: the container exits, the endpoint goes Failed.
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": live["image_uri"], "Environment": {"HF_TASK": "no-such-task"}},
        Tags=tags,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        Tags=tags,
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)
    wait_for(f"{name} failing", lambda: (serving_config(name) or "").startswith("Failed"), timeout_s=600)
    # What a crashed release's unwind leaves: its ledger says unwound, the endpoint is still there.
    boto3.client("s3").put_object(
        Bucket=e2e.bucket,
        Key=naming.ledger_key(e2e.prefix, release_id),
        Body=b'{"version": 1, "release_id": "%s", "state": "unwound", "meta": {}, "entries": []}'
        % release_id.encode(),
    )

    listed = cleanup_orphans(e2e.bucket, e2e.prefix, delete=True)
    orphan = next(
        o for o in listed["orphans"] if o["resource_id"] == name and o["kind"] == "sagemaker:endpoint"
    )
    assert orphan["action"] == "keep" and "--include-endpoints" in orphan["reason"]
    assert name not in listed["deleted"]  # nor its config and model: the endpoint still names them
    assert (serving_config(name) or "").startswith("Failed")
    assert sagemaker.describe_model(ModelName=name)["ModelName"] == name

    swept = cleanup_orphans(e2e.bucket, e2e.prefix, delete=True, include_endpoints=True)
    assert name in swept["deleted"]
    assert serving_config(name) is None
    # With the endpoint gone its config and model were no longer in use: the same sweep took them.
    assert swept["deleted"].count(name) == 3
    assert resources_of_release(release_id, e2e.bucket) == []
    assert serving_config(live["endpoint_name"]) == f"InService {live['endpoint_config_name']}"
