"""SageMaker hosting: creates against moto in-process; update, rollback and waits with botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tasks.core.errors import EndpointRolledBack, ResourceFailed, ResourceTaken, WaitTimeout
from tasks.core.waiting import FakeClock
from tasks.sagemaker import hosting
from tasks.sagemaker.hosting import ModelData
from tests.unit.deploy_helpers import ROLE, kinds, local_ledger

ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc"


def _describe(status: str, config: str, reason: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "EndpointName": "ep",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": datetime.now(UTC),
        "LastModifiedTime": datetime.now(UTC),
    }
    if reason:
        answer["FailureReason"] = reason
    return answer


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(hosting.aws, "client", lambda service, **_: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_create_model_config_and_endpoint_are_recorded_and_read_back(
    mocked_aws: None, tmp_path: Path
) -> None:
    ledger = local_ledger(tmp_path)
    data = ModelData("s3://b/sr/models/abc/model.tar.gz")
    hosting.create_model(
        "ep-r1",
        containers=[hosting.container_definition(IMAGE, data, {"HF_TASK": "feature-extraction"})],
        role_arn=ROLE,
        tags=[{"Key": "release-id", "Value": "r1"}],
        ledger=ledger,
        endpoint="ep",
    )
    request = {
        "EndpointConfigName": "ep-r1",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "ep-r1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    }
    hosting.create_endpoint_config(request, ledger, endpoint="ep")
    hosting.create_endpoint("ep", "ep-r1", tags=[], ledger=ledger, timeout_s=10, interval_s=0.01)
    assert kinds(ledger) == [
        ("sagemaker:model", "ep-r1"),
        ("sagemaker:endpoint-config", "ep-r1"),
        ("sagemaker:endpoint", "ep"),
    ]
    assert ledger.entries[0].attrs["endpoint"] == "ep"
    assert ledger.entries[2].attrs["created"] is True
    live = hosting.live_endpoint("ep")
    assert live is not None and live.config_name == "ep-r1"
    (variant,) = live.variants
    assert (variant.image, variant.model_data, variant.environment) == (
        IMAGE,
        data,
        {"HF_TASK": "feature-extraction"},
    )
    assert hosting.live_endpoint("missing") is None


def test_update_records_the_previous_config_before_calling(stubbed: Stubber, tmp_path: Path) -> None:
    ledger = local_ledger(tmp_path)
    stubbed.add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "ep", "EndpointConfigName": "new"}
    )
    stubbed.add_response("describe_endpoint", _describe("Updating", "old"))
    stubbed.add_response("describe_endpoint", _describe("InService", "new"))
    described = hosting.update_endpoint(
        "ep", "new", previous_config="old", ledger=ledger, timeout_s=60, interval_s=1, clock=FakeClock()
    )
    assert described["EndpointConfigName"] == "new"
    (entry,) = ledger.entries
    assert (entry.kind, entry.attrs["previous_config"], entry.attrs["created"]) == (
        "sagemaker:endpoint",
        "old",
        False,
    )


def test_update_that_sagemaker_rolled_back_raises_with_the_reason(stubbed: Stubber, tmp_path: Path) -> None:
    stubbed.add_response("update_endpoint", {"EndpointArn": ARN})
    stubbed.add_response("describe_endpoint", _describe("Updating", "old"))
    stubbed.add_response("describe_endpoint", _describe("RollingBack", "old"))
    stubbed.add_response(
        "describe_endpoint", _describe("InService", "old", reason="ping health check failed")
    )
    with pytest.raises(EndpointRolledBack) as caught:
        hosting.update_endpoint(
            "ep",
            "new",
            previous_config="old",
            ledger=local_ledger(tmp_path),
            timeout_s=60,
            interval_s=1,
            clock=FakeClock(),
        )
    assert (caught.value.expected_config, caught.value.actual_config) == ("new", "old")
    assert "ping health check failed" in str(caught.value)


def test_failed_endpoint_raises_resource_failed_with_failure_reason(stubbed: Stubber) -> None:
    stubbed.add_response("describe_endpoint", _describe("Creating", "c"))
    stubbed.add_response(
        "describe_endpoint", _describe("Failed", "c", reason="The primary container did not pass the ping")
    )
    with pytest.raises(ResourceFailed) as caught:
        hosting.wait_for_endpoint("ep", expect_config="c", timeout_s=60, interval_s=1, clock=FakeClock())
    assert caught.value.status == "Failed"
    assert "did not pass the ping" in caught.value.reason
    assert str(caught.value).startswith("EndpointFailed: endpoint ep went Failed")


def test_wait_times_out_on_the_injected_clock(stubbed: Stubber) -> None:
    for _ in range(4):
        stubbed.add_response("describe_endpoint", _describe("Creating", "c"))
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        hosting.wait_for_endpoint("ep", expect_config="c", timeout_s=30, interval_s=10, clock=clock)
    assert caught.value.last_status == "Creating"
    assert clock.now == 30


def test_restore_is_a_no_op_when_the_endpoint_already_serves_the_previous_config(stubbed: Stubber) -> None:
    stubbed.add_response("describe_endpoint", _describe("InService", "old"))
    hosting.restore_endpoint("ep", "old", timeout_s=60, interval_s=1, clock=FakeClock())


def test_restore_waits_out_an_update_then_puts_the_previous_config_back(stubbed: Stubber) -> None:
    stubbed.add_response("describe_endpoint", _describe("Updating", "new"))
    stubbed.add_response("describe_endpoint", _describe("InService", "new"))
    stubbed.add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "ep", "EndpointConfigName": "old"}
    )
    stubbed.add_response("describe_endpoint", _describe("Updating", "new"))
    stubbed.add_response("describe_endpoint", _describe("InService", "old"))
    hosting.restore_endpoint("ep", "old", timeout_s=60, interval_s=1, clock=FakeClock())


def test_create_endpoint_retries_eventual_consistency(
    stubbed: Stubber, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tasks.core.retry.SystemClock.sleep", lambda self, seconds: None)
    stubbed.add_client_error(
        "create_endpoint",
        "ValidationException",
        'Could not find endpoint configuration "c".',
        http_status_code=400,
    )
    stubbed.add_response(
        "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep"}
    )
    stubbed.add_response("describe_endpoint", _describe("InService", "c"))
    hosting.create_endpoint(
        "ep", "c", tags=[], ledger=local_ledger(tmp_path), timeout_s=60, interval_s=1, clock=FakeClock()
    )


def test_delete_endpoint_waits_until_it_is_gone(mocked_aws: None, tmp_path: Path) -> None:
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sagemaker.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    )
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="c")
    hosting.delete_endpoint("ep", timeout_s=10, interval_s=0.01)
    assert hosting.describe_endpoint("ep") is None
    hosting.delete_endpoint("ep", timeout_s=10, interval_s=0.01)  # already gone: nothing to do


def _already_exists(kind: str, name: str) -> tuple[str, str]:
    return "ValidationException", f'Cannot create already existing {kind} "{ARN.rsplit("/", 1)[0]}/{name}".'


def test_create_endpoint_adopts_the_endpoint_its_retry_finds_when_it_carries_this_release(
    stubbed: Stubber, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first CreateEndpoint went through but answered 500; call_with_retries sends it again.
    monkeypatch.setattr("tasks.core.retry.SystemClock.sleep", lambda self, seconds: None)
    tags = [{"Key": "release-id", "Value": "r1"}]
    stubbed.add_client_error("create_endpoint", "InternalFailure", "try again", http_status_code=500)
    code, message = _already_exists("endpoint", "ep")
    stubbed.add_client_error("create_endpoint", code, message, http_status_code=400)
    stubbed.add_response("describe_endpoint", _describe("Creating", "c"), {"EndpointName": "ep"})
    stubbed.add_response("list_tags", {"Tags": tags}, {"ResourceArn": ARN})
    stubbed.add_response("describe_endpoint", _describe("InService", "c"))
    ledger = local_ledger(tmp_path)
    hosting.create_endpoint(
        "ep", "c", tags=tags, ledger=ledger, timeout_s=60, interval_s=1, clock=FakeClock()
    )
    (entry,) = ledger.entries
    assert (entry.resource_id, entry.status, entry.attrs["arn"], entry.attrs["created"]) == (
        "ep",
        "created",
        ARN,
        True,
    )


def test_create_endpoint_refuses_an_endpoint_another_release_created_and_leaves_it(
    stubbed: Stubber, tmp_path: Path
) -> None:
    code, message = _already_exists("endpoint", "ep")
    stubbed.add_client_error("create_endpoint", code, message, http_status_code=400)
    stubbed.add_response("describe_endpoint", _describe("InService", "theirs"), {"EndpointName": "ep"})
    stubbed.add_response("list_tags", {"Tags": [{"Key": "release-id", "Value": "r0"}]}, {"ResourceArn": ARN})
    ledger = local_ledger(tmp_path)
    with pytest.raises(ResourceTaken) as caught:
        hosting.create_endpoint(
            "ep",
            "c",
            tags=[{"Key": "release-id", "Value": "r1"}],
            ledger=ledger,
            timeout_s=60,
            clock=FakeClock(),
        )
    assert caught.value.owner == "r0" and "choose another endpoint.name" in caught.value.fix
    assert [(e.resource_id, e.status) for e in ledger.entries] == [("ep", "foreign")]
    # Nothing of it is unwound: the unwind sees the entry is not this release's.
    deleted: list[str] = []
    ledger.unwind({"sagemaker:endpoint": lambda e: deleted.append(e.resource_id)})
    assert deleted == []


def test_endpoint_status_is_every_status_botocore_knows() -> None:
    shape = boto3.client("sagemaker", region_name="us-east-1").meta.service_model.shape_for("EndpointStatus")
    assert set(get_args(hosting.EndpointStatus)) == set(shape.enum)
    assert set(get_args(hosting.EndpointStatus)) > hosting.TRANSITIONAL | hosting.ENDPOINT_FAILED


def test_send_variant_weights_sends_each_variant_weight(stubbed: Stubber) -> None:
    stubbed.add_response(
        "update_endpoint_weights_and_capacities",
        {"EndpointArn": ARN},
        {
            "EndpointName": "ep",
            "DesiredWeightsAndCapacities": [
                {"VariantName": "AllTraffic", "DesiredWeight": 0.9},
                {"VariantName": "new", "DesiredWeight": 0.1},
            ],
        },
    )
    hosting.send_variant_weights("ep", {"AllTraffic": 0.9, "new": 0.1})
    stubbed.assert_no_pending_responses()


def test_send_variant_weights_raises_what_sagemaker_refuses(stubbed: Stubber) -> None:
    stubbed.add_client_error(
        "update_endpoint_weights_and_capacities", "ValidationException", "variant new does not exist"
    )
    with pytest.raises(ClientError, match="variant new does not exist"):
        hosting.send_variant_weights("ep", {"new": 1.0})


def test_send_endpoint_update_passes_the_deployment_config(stubbed: Stubber) -> None:
    deployment = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]}}
    stubbed.add_response(
        "update_endpoint",
        {"EndpointArn": ARN},
        {"EndpointName": "ep", "EndpointConfigName": "c2", "DeploymentConfig": deployment},
    )
    stubbed.add_response(
        "update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "ep", "EndpointConfigName": "c1"}
    )
    hosting.send_endpoint_update("ep", "c2", deployment_config=deployment)
    hosting.send_endpoint_update("ep", "c1")  # without one, no DeploymentConfig at all
    stubbed.assert_no_pending_responses()
