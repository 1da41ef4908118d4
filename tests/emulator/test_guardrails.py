"""UpdateEndpoint with deployment guardrails on the emulator: canary steps, baking, rollback on an alarm."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import Aws, PrivateEmulator, Resources, make_clients

CANARY = {"Type": "INSTANCE_COUNT", "Value": 1}


@pytest.fixture
def site(
    private_emulator: Callable[..., PrivateEmulator], bucket: str
) -> Iterator[tuple[Aws, Any, Resources]]:
    emulator = private_emulator(
        SAGEMAKER_EMULATOR_ALARM_INTERVAL_S="0.5", SAGEMAKER_EMULATOR_ALARM_SETTLE_S="1.5"
    )
    env = emulator.client_env
    aws = make_clients(env)
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    made = Resources(aws, bucket)
    yield aws, cloudwatch, made
    made.cleanup()


def blue_green_config(kind: str, wait_s: int, alarms: list[str], **routing: Any) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": kind, "WaitIntervalInSeconds": wait_s, **routing},
            "TerminationWaitInSeconds": 1,
            "MaximumExecutionTimeoutInSeconds": 600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


def two_instance_endpoint(made: Resources, image: str, name: str, **env: str) -> tuple[str, str]:
    model = made.model(image, container={"Environment": {"DOUBLE_NAME": name, **env}})
    config = made.single(model, instances=2)
    endpoint = made.endpoint(config)
    assert made.wait_status(endpoint, "InService")["EndpointStatus"] == "InService"
    return endpoint, config


def answer(aws: Aws, endpoint: str) -> str:
    """Which model answered (its DOUBLE_NAME), or the error code."""
    try:
        body = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["Body"].read()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return str(json.loads(body)["name"])


def error_alarm(cloudwatch: Any, endpoint: str, config: str | None = None) -> str:
    """A 10 s alarm on server errors of the variant, or of one fleet of it (`config`)."""
    name = f"guard-{uuid.uuid4().hex[:8]}"
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]
    if config is not None:
        dimensions.append({"Name": "EndpointConfigName", "Value": config})
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=dimensions,
        Statistic="Sum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    return name


def phase(described: dict[str, Any]) -> str | None:
    variants = (described.get("PendingDeploymentSummary") or {}).get("ProductionVariants") or [{}]
    statuses = variants[0].get("VariantStatus") or [{}]
    return statuses[0].get("Status")


def follow(
    aws: Aws, endpoint: str, timeout: float, during: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Poll DescribeEndpoint until the update ends, calling `during` on each description."""
    deadline = time.monotonic() + timeout
    while True:
        described = aws.sagemaker.describe_endpoint(EndpointName=endpoint)
        if described["EndpointStatus"] not in ("Updating", "RollingBack"):
            return dict(described)
        during(described)
        assert time.monotonic() < deadline, f"endpoint {endpoint} still {described['EndpointStatus']}"
        time.sleep(0.3)


def test_canary_shifts_in_baked_steps_then_retires_the_old_fleet(
    site: tuple[Aws, Any, Resources], double_image: str
) -> None:
    aws, cloudwatch, made = site
    endpoint, old_config = two_instance_endpoint(made, double_image, "blue")
    green = made.single(
        made.model(double_image, container={"Environment": {"DOUBLE_NAME": "green"}}), instances=2
    )
    alarm = error_alarm(cloudwatch, endpoint)
    aws.sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=green,
        DeploymentConfig=blue_green_config("CANARY", 4, [alarm], CanarySize=CANARY),
    )
    messages: list[str] = []
    answers: dict[str, set[str]] = {}

    def watch(described: dict[str, Any]) -> None:
        variants = (described.get("PendingDeploymentSummary") or {}).get("ProductionVariants") or [{}]
        status = (variants[0].get("VariantStatus") or [{}])[0]
        message = str(status.get("StatusMessage", status.get("Status")))
        if not messages or messages[-1] != message:
            messages.append(message)
        if status.get("Status") == "Baking":
            answers.setdefault(message, set()).add(answer(aws, endpoint))

    final = follow(aws, endpoint, 120, watch)
    assert final["EndpointStatus"] == "InService" and final["EndpointConfigName"] == green
    bakes = [m for m in messages if m.startswith("Baking")]
    assert [m.split(" with ")[0] for m in bakes] == ["Baking step 1 of 2", "Baking step 2 of 2"]
    assert "50% of the traffic on the new fleet" in bakes[0]
    assert messages[-1].startswith("Keeping the old fleet")
    assert answers[bakes[0]] <= {"blue", "green"} and answers[bakes[1]] == {"green"}
    assert {answer(aws, endpoint) for _ in range(6)} == {"green"}
    assert (
        final["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"]
        == "CANARY"
    )
    assert old_config != green


def test_an_alarm_during_the_canary_rolls_back_to_the_old_fleet(
    site: tuple[Aws, Any, Resources], double_image: str
) -> None:
    aws, cloudwatch, made = site
    endpoint, old_config = two_instance_endpoint(made, double_image, "blue")
    broken = made.model(
        double_image, container={"Environment": {"DOUBLE_NAME": "broken", "DOUBLE_STATUS": "500"}}
    )
    # Enhanced metrics (a datapoint every 10 s) for the 10 s alarm, which watches the new fleet only.
    failing = made.config(
        [
            {
                "VariantName": "AllTraffic",
                "ModelName": broken,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 2,
            }
        ],
        MetricsConfig={"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 10},
    )
    alarm = error_alarm(cloudwatch, endpoint, config=failing)
    aws.sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=failing,
        DeploymentConfig=blue_green_config("CANARY", 60, [alarm], CanarySize=CANARY),
    )
    statuses: list[str] = []

    def send_traffic(described: dict[str, Any]) -> None:
        statuses.append(described["EndpointStatus"])
        if phase(described) == "Baking":
            for _ in range(3):
                answer(aws, endpoint)

    final = follow(aws, endpoint, 120, send_traffic)
    assert final["EndpointStatus"] == "InService"
    assert final["EndpointConfigName"] == old_config
    assert alarm in final["FailureReason"] and "rolled back" in final["FailureReason"]
    assert {answer(aws, endpoint) for _ in range(6)} == {"blue"}
    state = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]
    assert state == "ALARM"


def test_guardrails_refuse_impossible_configs(site: tuple[Aws, Any, Resources], double_image: str) -> None:
    aws, cloudwatch, made = site
    endpoint, _ = two_instance_endpoint(made, double_image, "blue")
    target = made.single(made.model(double_image), instances=2)
    alarm = error_alarm(cloudwatch, endpoint)
    with pytest.raises(ClientError, match="at most half of the fleet"):
        aws.sagemaker.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=target,
            DeploymentConfig=blue_green_config(
                "CANARY", 5, [alarm], CanarySize={"Type": "INSTANCE_COUNT", "Value": 2}
            ),
        )
    with pytest.raises(ClientError, match="no-such-alarm"):
        aws.sagemaker.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=target,
            DeploymentConfig=blue_green_config("ALL_AT_ONCE", 5, ["no-such-alarm"]),
        )
    assert aws.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"


def unguarded(kind: str, wait_s: int, **routing: Any) -> dict[str, Any]:
    """A blue/green DeploymentConfig without rollback alarms."""
    deployment = blue_green_config(kind, wait_s, ["unused"], **routing)
    del deployment["AutoRollbackConfiguration"]
    return deployment


def test_guardrails_refuse_steps_and_timeouts_outside_sagemakers_bounds(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    """LinearStepSize 10-50% of the fleet, CanarySize at most 50%, MaximumExecutionTimeoutInSeconds above
    the waits, no canary or linear on serverless: each refused by UpdateEndpoint, the endpoint untouched."""
    # The 20-instance target is refused before it starts anything; the quota only has to let it be asked.
    aws = make_clients(private_emulator(SAGEMAKER_EMULATOR_INSTANCE_QUOTA="40").client_env)
    made = Resources(aws, bucket)
    try:
        endpoint, _ = two_instance_endpoint(made, double_image, "blue")
        model = made.model(double_image)
        twenty = made.single(model, instances=20)

        def refused(target: str, deployment: dict[str, Any], message: str, name: str | None = None) -> None:
            with pytest.raises(ClientError, match=message) as error:
                aws.sagemaker.update_endpoint(
                    EndpointName=name or endpoint, EndpointConfigName=target, DeploymentConfig=deployment
                )
            assert error.value.response["Error"]["Code"] == "ValidationException"

        bounds = "LinearStepSize Value must be 10-50% of the variant's total instance count"
        one_of_twenty = {"Type": "INSTANCE_COUNT", "Value": 1}  # 5%: what the release used to send
        refused(twenty, unguarded("LINEAR", 5, LinearStepSize=one_of_twenty), bounds)
        five_percent = {"Type": "CAPACITY_PERCENT", "Value": 5}
        refused(twenty, unguarded("LINEAR", 5, LinearStepSize=five_percent), bounds)
        sixty_percent = {"Type": "CAPACITY_PERCENT", "Value": 60}
        refused(twenty, unguarded("CANARY", 5, CanarySize=sixty_percent), "less than or equal to 50%")
        too_long = unguarded("LINEAR", 3000, LinearStepSize={"Type": "INSTANCE_COUNT", "Value": 2})
        too_long["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 28800
        refused(twenty, too_long, r"MaximumExecutionTimeoutInSeconds \(28800\) must be larger than the total")
        described = aws.sagemaker.describe_endpoint(EndpointName=endpoint)
        assert described["EndpointStatus"] == "InService" and "PendingDeploymentSummary" not in described

        serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 2}
        lean = made.config(
            [{"VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": serverless}]
        )
        lean_endpoint = made.endpoint(lean)
        made.wait_status(lean_endpoint, "InService")
        half = {"Type": "CAPACITY_PERCENT", "Value": 50}
        refused(
            lean,
            unguarded("CANARY", 5, CanarySize=half),
            "not supported for serverless endpoints",
            lean_endpoint,
        )
        assert aws.sagemaker.describe_endpoint(EndpointName=lean_endpoint)["EndpointStatus"] == "InService"
    finally:
        made.cleanup()
