"""Request shapes of real-time, serverless, async and batch releases, checked against botocore's model."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from tasks.sagemaker.endpoint_spec import (
    Topics,
    already_serving,
    endpoint_config_request,
    model_environment,
    production_variant,
    transform_job_request,
)
from tasks.sagemaker.hosting import LiveEndpoint, ModelData, ServedModel, container_definition
from tests.unit.deploy_helpers import make_config

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


def assert_valid(operation: str, request: dict[str, Any]) -> None:
    report = ParamValidator().validate(request, SAGEMAKER.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def test_realtime_config_has_one_instance_backed_variant() -> None:
    config = make_config(endpoint={"instance_count": 2, "container_startup_timeout_s": 600})
    request = endpoint_config_request(config, "r1", [production_variant(config, "demo-embedder-r1")])
    assert_valid("CreateEndpointConfig", request)
    assert request["EndpointConfigName"] == "demo-embedder-r1"
    assert request["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "demo-embedder-r1",
            "InitialVariantWeight": 1.0,
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 2,
            "ContainerStartupHealthCheckTimeoutInSeconds": 600,
        }
    ]
    assert "AsyncInferenceConfig" not in request
    assert {"Key": "release-id", "Value": "r1"} in request["Tags"]


def test_serverless_variant_has_memory_concurrency_and_provisioned_concurrency() -> None:
    config = make_config(
        endpoint={
            "type": "serverless",
            "serverless": {"memory_mb": 3072, "max_concurrency": 20, "provisioned_concurrency": 2},
        }
    )
    variant = production_variant(config, "m")
    assert_valid("CreateEndpointConfig", endpoint_config_request(config, "r1", [variant]))
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": 3072,
        "MaxConcurrency": 20,
        "ProvisionedConcurrency": 2,
    }
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant


def test_async_config_has_output_failure_paths_topics_and_concurrency() -> None:
    config = make_config(
        endpoint={
            "type": "async",
            "async_inference": {
                "output_path": "s3://models-bucket/async/out/",
                "failure_path": "s3://models-bucket/async/failed/",
                "create_topics": True,
                "max_concurrent_invocations_per_instance": 2,
            },
        }
    )
    topics = Topics("arn:aws:sns:us-east-1:123456789012:ok", "arn:aws:sns:us-east-1:123456789012:err")
    request = endpoint_config_request(config, "r1", [production_variant(config, "m")], topics=topics)
    assert_valid("CreateEndpointConfig", request)
    assert request["AsyncInferenceConfig"] == {
        "OutputConfig": {
            "S3OutputPath": "s3://models-bucket/async/out/",
            "S3FailurePath": "s3://models-bucket/async/failed/",
            "NotificationConfig": {
                "SuccessTopic": topics.success,
                "ErrorTopic": topics.error,
                "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"],
            },
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }


def test_async_without_topics_has_no_notification_config() -> None:
    config = make_config(endpoint={"type": "async", "async_inference": {"output_path": "s3://b1b/out/"}})
    request = endpoint_config_request(config, "r1", [production_variant(config, "m")])
    assert request["AsyncInferenceConfig"] == {"OutputConfig": {"S3OutputPath": "s3://b1b/out/"}}


def test_batch_transform_job_request() -> None:
    config = make_config(
        endpoint={
            "type": "batch",
            "instance_count": 2,
            "batch": {"input_path": "s3://models-bucket/in/", "output_path": "s3://models-bucket/out/"},
        }
    )
    request = transform_job_request(config, "r1", "demo-embedder-r1")
    assert_valid("CreateTransformJob", request)
    assert request["TransformInput"]["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": "s3://models-bucket/in/",
    }
    assert request["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 2}
    assert request["Environment"] == {"HF_TASK": "feature-extraction"}


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (ModelData("s3://b/m/model.tar.gz", "Gzip"), {"ModelDataUrl": "s3://b/m/model.tar.gz"}),
        (
            ModelData("s3://b/m/abc/", "None"),
            {
                "ModelDataSource": {
                    "S3DataSource": {
                        "S3Uri": "s3://b/m/abc/",
                        "S3DataType": "S3Prefix",
                        "CompressionType": "None",
                    }
                }
            },
        ),
    ],
)
def test_container_points_at_a_tarball_or_an_uncompressed_prefix(
    data: ModelData, fields: dict[str, Any]
) -> None:
    container = container_definition("123456789012.dkr.ecr.us-east-1.amazonaws.com/r:t", data, {"A": "1"})
    assert_valid(
        "CreateModel",
        {
            "ModelName": "m",
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
            "PrimaryContainer": container,
        },
    )
    assert {k: v for k, v in container.items() if k.startswith("ModelData")} == fields
    assert container["Environment"] == {"A": "1"}


def _live(config_name: str = "old", **changes: Any) -> LiveEndpoint:
    served: dict[str, Any] = {
        "variant": "AllTraffic",
        "model_name": "old-model",
        "image": "img:1",
        "model_data": ModelData("s3://b/k/model.tar.gz"),
        "environment": {"HF_TASK": "feature-extraction"},
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "serverless": None,
    }
    served.update(changes)
    return LiveEndpoint("demo-embedder", "InService", config_name, None, (ServedModel(**served),))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),
        ({"image": "img:2"}, False),
        ({"model_data": ModelData("s3://b/other/model.tar.gz")}, False),
        ({"environment": {}}, False),
        ({"instance_count": 2}, False),
        ({"instance_type": "ml.c5.large"}, False),
        ({"variant": "Other"}, False),
    ],
)
def test_already_serving_only_when_everything_matches(changes: dict[str, Any], expected: bool) -> None:
    config = make_config()
    assert (
        already_serving(
            _live(**changes),
            config,
            image_uri="img:1",
            model_data=ModelData("s3://b/k/model.tar.gz"),
            environment=model_environment(config),
        )
        is expected
    )


@pytest.mark.parametrize("period", [10, 30])
def test_sub_minute_alarms_ask_for_enhanced_metrics_that_often(period: int) -> None:
    config = make_config(rollout={"bake_s": 0, "final_bake_s": 0, "alarms": {"period_s": period}})
    request = endpoint_config_request(config, "r1", [production_variant(config, "m")])
    assert_valid("CreateEndpointConfig", request)
    assert request["MetricsConfig"] == {
        "EnableEnhancedMetrics": True,
        "MetricPublishFrequencyInSeconds": period,
    }


@pytest.mark.parametrize(
    "endpoint",
    [{}, {"type": "serverless"}],
    ids=["one-minute alarms", "serverless"],
)
def test_one_minute_alarms_leave_the_metrics_as_sagemaker_publishes_them(endpoint: dict[str, Any]) -> None:
    config = make_config(
        endpoint=endpoint, rollout={"bake_s": 0, "final_bake_s": 0, "alarms": {"period_s": 60}}
    )
    request = endpoint_config_request(config, "r1", [production_variant(config, "m")])
    assert "MetricsConfig" not in request
