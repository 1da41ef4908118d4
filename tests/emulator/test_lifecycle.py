"""Create → describe → invoke → delete, driven by plain boto3 against the emulator (test double image)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.emulator.emulator_support import Aws, Resources, tarball

pytestmark = [pytest.mark.stack, pytest.mark.docker]

FAST_WAITER = {"Delay": 1, "MaxAttempts": 120}


def test_endpoint_serves_its_model_data_and_environment(
    resources: Resources, aws: Aws, double_image: str
) -> None:
    data = resources.upload(tarball({"weights.txt": b"weights v1", "code/extra.txt": b"extra"}))
    model = resources.model(
        double_image, data, container={"Environment": {"DOUBLE_NAME": "first", "USER_SETTING": "on"}}
    )
    endpoint = resources.endpoint(resources.single(model))
    assert aws.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"

    aws.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAITER)
    response = aws.runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=b'{"inputs": "hi"}',
        ContentType="application/json",
        Accept="application/json",
    )

    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ContentType"] == "application/json"
    answer = json.loads(response["Body"].read())
    assert answer["body"] == '{"inputs": "hi"}'
    assert answer["accept"] == "application/json"
    assert answer["model_files"] == {"weights.txt": "weights v1", "code/extra.txt": "extra"}
    assert answer["environment"] == {"DOUBLE_NAME": "first", "USER_SETTING": "on"}


def test_deleted_endpoint_is_gone_for_both_apis(resources: Resources, aws: Aws, double_image: str) -> None:
    endpoint = resources.endpoint(resources.single(resources.model(double_image)))
    aws.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAITER)

    aws.sagemaker.delete_endpoint(EndpointName=endpoint)
    aws.sagemaker.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST_WAITER)

    with pytest.raises(ClientError) as described:
        aws.sagemaker.describe_endpoint(EndpointName=endpoint)
    assert described.value.response["Error"]["Code"] == "ValidationException"
    assert described.value.response["Error"]["Message"] == (
        f'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/{endpoint}".'
    )
    with pytest.raises(aws.runtime.exceptions.ValidationError) as invoked:
        aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    assert (
        invoked.value.response["Error"]["Message"]
        == f"Endpoint {endpoint} of account 123456789012 not found."
    )


def test_in_service_waiter_stops_on_failed(resources: Resources, aws: Aws, double_image: str) -> None:
    model = resources.model(double_image, container={"Environment": {"DOUBLE_EXIT": "3"}})
    endpoint = resources.endpoint(resources.single(model))

    with pytest.raises(WaiterError, match="Failed"):
        aws.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAITER)
