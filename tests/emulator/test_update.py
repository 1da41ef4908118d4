"""UpdateEndpoint: a new fleet takes over without an outage; a failed update rolls back and says why."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import Aws, Resources

pytestmark = [pytest.mark.stack, pytest.mark.docker]


def _name_of_answer(aws: Aws, endpoint: str) -> str:
    response = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    return str(json.loads(response["Body"].read())["name"])


def _versioned(resources: Resources, image: str, name: str, **environment: str) -> str:
    return resources.model(image, container={"Environment": {"DOUBLE_NAME": name, **environment}})


def test_update_switches_to_the_new_config_without_an_outage(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    old_config = resources.single(_versioned(resources, double_image, "v1"))
    endpoint = resources.endpoint(old_config)
    resources.wait_status(endpoint, "InService")
    new_config = resources.single(
        _versioned(resources, double_image, "v2", DOUBLE_START_DELAY="2"), instances=2
    )

    answers: list[str] = []
    errors: list[Exception] = []
    done = threading.Event()

    def keep_invoking() -> None:
        while not done.is_set():
            try:
                answers.append(_name_of_answer(aws, endpoint))
            except Exception as error:  # recorded for the assertion below
                errors.append(error)

    worker = threading.Thread(target=keep_invoking)
    worker.start()
    try:
        aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
        assert aws.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"
        described = resources.wait_status(endpoint, "InService")
        after = [_name_of_answer(aws, endpoint) for _ in range(5)]
    finally:
        done.set()
        worker.join(timeout=30)

    assert errors == []
    assert "v1" in answers
    assert after == ["v2"] * 5
    assert described["EndpointConfigName"] == new_config
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert "FailureReason" not in described


def test_failed_update_rolls_back_and_keeps_serving(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    old_config = resources.single(_versioned(resources, double_image, "v1"))
    endpoint = resources.endpoint(old_config)
    resources.wait_status(endpoint, "InService")
    broken = resources.single(_versioned(resources, double_image, "v2", DOUBLE_EXIT="1"))

    aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=broken)
    described = resources.wait_status(endpoint, "InService")

    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == old_config  # compare this after every update
    assert f"Failed to update endpoint to endpoint config {broken}" in described["FailureReason"]
    assert "exited with code 1" in described["FailureReason"]
    assert _name_of_answer(aws, endpoint) == "v1"


def test_in_progress_endpoint_refuses_update_and_delete(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    config = resources.single(_versioned(resources, double_image, "slow", DOUBLE_START_DELAY="3"))
    endpoint = resources.endpoint(config)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{endpoint}"

    with pytest.raises(ClientError) as deleting:
        aws.sagemaker.delete_endpoint(EndpointName=endpoint)
    assert deleting.value.response["Error"]["Code"] == "ValidationException"
    assert f'Cannot delete in-progress endpoint "{arn}"' in deleting.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as updating:
        aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert updating.value.response["Error"]["Message"] == f'Cannot update in-progress endpoint "{arn}".'
    resources.wait_status(endpoint, "InService")


def test_retained_variant_properties(aws: Aws, resources: Resources, double_image: str) -> None:
    endpoint = resources.endpoint(resources.single(_versioned(resources, double_image, "v1")))
    resources.wait_status(endpoint, "InService")
    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "DesiredInstanceCount": 2, "DesiredWeight": 5}
        ],
    )
    resources.wait_status(endpoint, "InService")
    deployment_config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 0,
        }
    }

    aws.sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=resources.single(_versioned(resources, double_image, "v2")),
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
        DeploymentConfig=deployment_config,
    )
    described = resources.wait_status(endpoint, "InService")

    variant = described["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["CurrentWeight"]) == (2, 1.0)
    assert described["LastDeploymentConfig"] == deployment_config
