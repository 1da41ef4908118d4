"""Real invocations through the emulator become AWS/SageMaker metrics in moto, and alarms judge them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import PrivateEmulator, Resources, make_clients


def cloudwatch_for(env: dict[str, str]) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


ENHANCED = {"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 10}


def total(
    cloudwatch: Any, metric: str, endpoint: str, variant: str, stat: str = "Sum", config: str | None = None
) -> float:
    now = datetime.now(UTC)
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    if config is not None:
        dimensions.append({"Name": "EndpointConfigName", "Value": config})
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName=metric,
        Dimensions=dimensions,
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=[stat],
    )["Datapoints"]
    return float(sum(p[stat] for p in points))


def poll(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.5)


def test_invocations_publish_metrics_and_trip_an_error_alarm(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator(
        SAGEMAKER_EMULATOR_ALARM_INTERVAL_S="0.5", SAGEMAKER_EMULATOR_ALARM_SETTLE_S="1.5"
    )
    aws = make_clients(emulator.client_env)
    cloudwatch = cloudwatch_for(emulator.client_env)
    made = Resources(aws, bucket)
    try:
        good = made.model(double_image, container={"Environment": {"DOUBLE_NAME": "good"}})
        bad = made.model(double_image, container={"Environment": {"DOUBLE_STATUS": "500"}})
        variant = {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}
        # Enhanced metrics: datapoints every 10 s, which the 10 s alarms below can judge.
        config = made.config(
            [
                {"VariantName": "Good", "ModelName": good, **variant},
                {"VariantName": "Bad", "ModelName": bad, **variant},
            ],
            MetricsConfig=ENHANCED,
        )
        endpoint = made.endpoint(config)
        assert made.wait_status(endpoint, "InService")["EndpointStatus"] == "InService"
        alarms = {}
        for name in ("Good", "Bad"):
            alarms[name] = f"errors-{name}-{uuid.uuid4().hex[:6]}"
            cloudwatch.put_metric_alarm(
                AlarmName=alarms[name],
                Namespace="AWS/SageMaker",
                MetricName="Invocation5XXErrors",
                Dimensions=[
                    {"Name": "EndpointName", "Value": endpoint},
                    {"Name": "VariantName", "Value": name},
                ],
                Statistic="Sum",
                Period=10,
                EvaluationPeriods=1,
                Threshold=0,
                ComparisonOperator="GreaterThanThreshold",
                TreatMissingData="notBreaching",
            )

        answered = {"Good": 0, "Bad": 0}
        for target in ["Good"] * 6 + ["Bad"] * 4:
            try:
                aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", TargetVariant=target)
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ModelError"
            answered[target] += 1

        poll(
            lambda: total(cloudwatch, "Invocations", endpoint, "Good") == 6,
            "6 Good invocations in CloudWatch",
        )
        poll(
            lambda: total(cloudwatch, "Invocations", endpoint, "Bad") == 4, "4 Bad invocations in CloudWatch"
        )
        assert total(cloudwatch, "Invocation5XXErrors", endpoint, "Bad") == 4
        assert total(cloudwatch, "Invocation5XXErrors", endpoint, "Good") == 0
        assert total(cloudwatch, "ModelLatency", endpoint, "Good", "SampleCount") == 6
        assert total(cloudwatch, "OverheadLatency", endpoint, "Bad", "SampleCount") == 4
        # The same datapoints per fleet: EndpointName, VariantName and EndpointConfigName.
        assert total(cloudwatch, "Invocation5XXErrors", endpoint, "Bad", config=config) == 4
        assert total(cloudwatch, "Invocations", endpoint, "Good", config=config) == 6
        assert total(cloudwatch, "Invocations", endpoint, "Good", config="another-config") == 0
        assert (
            made.aws.sagemaker.describe_endpoint_config(EndpointConfigName=config)["MetricsConfig"]
            == ENHANCED
        )

        def state(name: str) -> str:
            return str(cloudwatch.describe_alarms(AlarmNames=[alarms[name]])["MetricAlarms"][0]["StateValue"])

        poll(lambda: state("Bad") == "ALARM", "the Bad variant's error alarm in ALARM", timeout=40)
        reason = cloudwatch.describe_alarms(AlarmNames=[alarms["Bad"]])["MetricAlarms"][0]["StateReason"]
        assert reason.startswith("Threshold Crossed: 1 datapoint [")
        assert "was greater than the threshold (0.0)" in reason
        assert state("Good") == "OK"
        cloudwatch.delete_alarms(AlarmNames=list(alarms.values()))
    finally:
        made.cleanup()


def test_a_metrics_publish_frequency_sagemaker_does_not_offer_is_refused(
    resources: Resources, double_image: str
) -> None:
    model = resources.model(double_image)
    variant = {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large"}
    with pytest.raises(ClientError) as refused:
        resources.config(
            [{**variant, "InitialInstanceCount": 1}],
            MetricsConfig={"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 15},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "MetricPublishFrequencyInSeconds 15 is not one of 10, 30, 60, 120" in str(refused.value)
