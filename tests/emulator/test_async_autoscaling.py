"""The classic asynchronous-inference autoscaling recipe, as the AWS blog posts write it, unchanged.

Plain boto3 with the stack's variables exported (no endpoint_url anywhere): an async endpoint whose
custom code sleeps 2 s per request, one request per instance at a time; registered 0-5; target tracking
on ApproximateBacklogSizePerInstance at 3 with 30 s cooldowns; a step policy (+1 from zero) driven by the
user's own alarm on HasBacklogWithoutCapacity. Idle, it goes 1 -> 0; thirty requests bring it from 0 to
at least 3 instances and every output lands in S3; drained, it goes back to 0. A private emulator at time
scale 30 makes AWS's minutes last 2 s, so the whole story takes about a minute and a half.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import ROLE_ARN, PrivateEmulator, Resources, make_clients, unique
from tests.emulator.scaling_support import DIMENSION, clients, deregister_all, poll, settled, variant

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

SLEEPER = """
import time

def model_fn(model_dir):
    return "sleeper"

def predict_fn(data, model):
    time.sleep(2)
    return {"slept_s": 2, "request": data}
"""


def _model_data(s3: Any, bucket: str, prefix: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(SLEEPER.encode())
        tar.addfile(info, io.BytesIO(SLEEPER.encode()))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/model.tar.gz", Body=buffer.getvalue())
    return f"s3://{bucket}/{prefix}/model.tar.gz"


def _exists(s3: Any, uri: str) -> bool:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def test_async_endpoint_scales_to_zero_and_back_with_the_blog_recipe(
    private_emulator: Callable[..., PrivateEmulator],
    bucket: str,
    serving_ecr_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = private_emulator(EMULATOR_TIME_SCALE="30")
    for name, value in emulator.client_env.items():
        monkeypatch.setenv(name, value)
    sm = boto3.client("sagemaker")
    runtime = boto3.client("sagemaker-runtime")
    autoscaling = boto3.client("application-autoscaling")
    cloudwatch = boto3.client("cloudwatch")
    s3 = boto3.client("s3")
    prefix = f"async-recipe-{uuid.uuid4().hex[:8]}"
    endpoint_name = prefix

    # --- the endpoint: custom code, one request per instance ------------------------------------------------
    sm.create_model(
        ModelName=prefix,
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={
            "Image": serving_ecr_image,
            "ModelDataUrl": _model_data(s3, bucket, prefix),
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=prefix,
        ProductionVariants=[
            {
                "VariantName": "variant1",
                "ModelName": prefix,
                "InstanceType": "ml.m5.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={
            "OutputConfig": {"S3OutputPath": f"s3://{bucket}/{prefix}/output"},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
        },
    )
    sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=prefix)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint_name, WaiterConfig={"Delay": 1})

    # --- autoscaling, as the blog posts register it ---------------------------------------------------------
    resource_id = f"endpoint/{endpoint_name}/variant/variant1"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=0,
        MaxCapacity=5,
    )
    autoscaling.put_scaling_policy(
        PolicyName="Invocations-ScalingPolicy",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 3.0,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name}],
                "Statistic": "Average",
            },
            "ScaleInCooldown": 30,
            "ScaleOutCooldown": 30,
        },
    )
    step = autoscaling.put_scaling_policy(
        PolicyName="HasBacklogWithoutCapacity-ScalingPolicy",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": 30,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )
    cloudwatch.put_metric_alarm(
        AlarmName=f"{prefix}-HasBacklogWithoutCapacity",
        MetricName="HasBacklogWithoutCapacity",
        Namespace="AWS/SageMaker",
        Statistic="Average",
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=0.5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint_name}],
        Period=60,
        AlarmActions=[step["PolicyARN"]],
    )

    def instances() -> int:
        return int(
            sm.describe_endpoint(EndpointName=endpoint_name)["ProductionVariants"][0]["CurrentInstanceCount"]
        )

    try:
        # --- idle: 1 -> 0 once 15 one-minute datapoints of no backlog are in -------------------------------
        poll(lambda: instances() == 0, "idle endpoint scaled in to 0 instances", timeout=90, every=1)

        # --- thirty requests: 0 -> at least 3, every output in S3 -------------------------------------------
        outputs = []
        for n in range(30):
            key = f"{prefix}/input/{n}.json"
            s3.put_object(Bucket=bucket, Key=key, Body=f'{{"request": {n}}}'.encode())
            outputs.append(
                runtime.invoke_endpoint_async(
                    EndpointName=endpoint_name,
                    InputLocation=f"s3://{bucket}/{key}",
                    ContentType="application/json",
                )["OutputLocation"]
            )
        peak = 0
        deadline = time.monotonic() + 150
        while not all(_exists(s3, uri) for uri in outputs):
            peak = max(peak, instances())
            assert time.monotonic() < deadline, f"outputs missing after 150 s; peak {peak} instances"
            time.sleep(1)
        assert peak >= 3, f"the backlog of 30 brought only {peak} instances"

        # --- drained: back to 0 -----------------------------------------------------------------------------
        poll(lambda: instances() == 0, "drained endpoint scaled in to 0 instances", timeout=90, every=1)
        listed = poll(lambda: settled(autoscaling, resource_id), "the last activity settled", timeout=10)
    finally:
        autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=resource_id,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        )
        cloudwatch.delete_alarms(AlarmNames=[f"{prefix}-HasBacklogWithoutCapacity"])

    causes = [a["Cause"] for a in reversed(listed)]
    step_causes = [
        c for c in causes if c.endswith("triggered policy HasBacklogWithoutCapacity-ScalingPolicy")
    ]
    assert step_causes, causes
    assert any("-AlarmHigh-" in c and "Invocations-ScalingPolicy" in c for c in causes), causes
    assert sum("-AlarmLow-" in c for c in causes) >= 2, causes  # idle and drained
    assert {a["StatusCode"] for a in listed} == {"Successful"}, listed
    assert listed[0]["Description"] == "Setting desired instance count to 0."
    for uri in outputs[:3]:
        bucket_name, key = uri.removeprefix("s3://").split("/", 1)
        assert b'"slept_s":2' in s3.get_object(Bucket=bucket_name, Key=key)["Body"].read().replace(b" ", b"")


def test_one_request_at_zero_instances_is_a_backlog_the_step_policy_serves(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    """The queue metrics are published each (one-second) minute per EndpointName, a single waiting request
    counts, and the HasBacklogWithoutCapacity step policy brings the first instance back for it."""
    emulator = private_emulator(EMULATOR_TIME_SCALE="60")
    aws = make_clients(emulator.client_env)
    autoscaling, cloudwatch = clients(emulator.client_env)
    made = Resources(aws, bucket)
    prefix = unique("one-waiting")
    config = made.config(
        [
            {
                "VariantName": "AllTraffic",
                "ModelName": made.model(double_image),
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/{prefix}/out"}},
    )
    endpoint = made.endpoint(config)
    made.wait_status(endpoint, "InService")
    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}],
    )
    assert made.wait_status(endpoint, "InService")["ProductionVariants"][0]["CurrentInstanceCount"] == 0
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        MinCapacity=0,
        MaxCapacity=1,
    )
    step = autoscaling.put_scaling_policy(
        PolicyName="from-zero",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )["PolicyARN"]
    cloudwatch.put_metric_alarm(
        AlarmName=f"{prefix}-no-capacity",
        Namespace="AWS/SageMaker",
        MetricName="HasBacklogWithoutCapacity",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0.5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[step],
    )
    try:
        started = datetime.now(UTC)
        input_uri = made.upload(b'{"one": 1}', f"{prefix}/in.json")
        output = aws.runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=input_uri)[
            "OutputLocation"
        ]

        poll(lambda: _exists(aws.s3, output), "the output of the one request", timeout=30)
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="HasBacklogWithoutCapacity",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
            StartTime=started - timedelta(seconds=5),
            EndTime=datetime.now(UTC) + timedelta(seconds=5),
            Period=1,
            Statistics=["Maximum"],
        )["Datapoints"]
        assert max(p["Maximum"] for p in points) == 1.0
        assert variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] == 1
        (activity,) = poll(lambda: settled(autoscaling, resource_id), "the activity settled", timeout=10)
        assert (
            activity["Cause"]
            == f"monitor alarm {prefix}-no-capacity in state ALARM triggered policy from-zero"
        )
    finally:
        deregister_all(autoscaling, [endpoint])
        cloudwatch.delete_alarms(AlarmNames=[f"{prefix}-no-capacity"])
        made.cleanup()
