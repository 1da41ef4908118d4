"""Reading SageMaker resources for the other rooms, against botocore's Stubber (shapes checked)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tasks.sagemaker import lookup

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model/m"


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(lookup.aws, "client", lambda service, **_: client)
    with Stubber(client) as stubber:
        yield stubber


def test_arn_of_and_tags_read_whose_a_model_is(stubbed: Stubber) -> None:
    stubbed.add_response(
        "describe_model",
        {"ModelName": "m", "ModelArn": ARN, "CreationTime": datetime.now(UTC)},
        {"ModelName": "m"},
    )
    stubbed.add_response("list_tags", {"Tags": [{"Key": "release-id", "Value": "r1"}]}, {"ResourceArn": ARN})
    assert lookup.arn_of("model", "m") == ARN
    assert lookup.tags(ARN) == {"release-id": "r1"}


def test_arn_of_a_missing_resource_is_none_and_other_errors_raise(stubbed: Stubber) -> None:
    stubbed.add_client_error(
        "describe_endpoint_config", "ValidationException", "Could not find endpoint configuration c"
    )
    stubbed.add_client_error("describe_transform_job", "ThrottlingException", "slow down")
    assert lookup.arn_of("endpoint-config", "c") is None
    with pytest.raises(ClientError, match="slow down"):
        lookup.arn_of("transform-job", "j")


def test_endpoint_configs_are_listed_oldest_first_over_pages(stubbed: Stubber) -> None:
    def summary(name: str) -> dict[str, object]:
        return {
            "EndpointConfigName": name,
            "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}",
            "CreationTime": datetime.now(UTC),
        }

    asked = {"NameContains": "ep", "SortBy": "CreationTime", "SortOrder": "Ascending"}
    stubbed.add_response(
        "list_endpoint_configs", {"EndpointConfigs": [summary("ep-1")], "NextToken": "t"}, asked
    )
    stubbed.add_response(
        "list_endpoint_configs", {"EndpointConfigs": [summary("ep-2")]}, {**asked, "NextToken": "t"}
    )
    assert [c["EndpointConfigName"] for c in lookup.endpoint_configs("ep")] == ["ep-1", "ep-2"]


def test_every_lists_a_kind_with_name_and_arn(stubbed: Stubber) -> None:
    stubbed.add_response(
        "list_models",
        {"Models": [{"ModelName": "m", "ModelArn": ARN, "CreationTime": datetime.now(UTC)}]},
        {},
    )
    (listed,) = lookup.every("model")
    assert (listed.name, listed.arn) == ("m", ARN)
    assert listed.summary["ModelName"] == "m"


def test_a_missing_endpoint_raises_for_the_caller_to_judge(stubbed: Stubber) -> None:
    stubbed.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint ep")
    with pytest.raises(ClientError) as raised:
        lookup.endpoint("ep")
    assert lookup.aws.is_not_found(raised.value)
