"""What the release asks SageMaker for, built from the config: pure functions, no AWS calls.

Kept apart from tasks/sagemaker/hosting.py (which makes the calls) so the request shapes of real-time,
serverless, async and batch releases can be read and tested on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.config import MAX_ENVIRONMENT_VALUE, ReleaseConfig, metric_timing, naming, secret_values
from tasks.sagemaker.hosting import LiveEndpoint, ModelData


@dataclass(frozen=True)
class Topics:
    """SNS topics an async endpoint notifies (either may be absent)."""

    success: str | None = None
    error: str | None = None


def model_environment(config: ReleaseConfig) -> dict[str, str]:
    """The serving container's environment: the config's, plus HF_TASK when the model source names one.

    Secret references are fetched here (tasks/config/secret_values.py), so call it only where the values are
    handed on or compared, never to show them."""
    environment = secret_values.resolve_all(
        config.endpoint.environment, field="endpoint.environment", max_chars=MAX_ENVIRONMENT_VALUE
    )
    if config.model.task and "HF_TASK" not in environment:
        environment["HF_TASK"] = config.model.task
    return environment


def production_variant(
    config: ReleaseConfig,
    model_name: str,
    *,
    variant_name: str | None = None,
    weight: float = 1.0,
    instance_count: int | None = None,
) -> dict[str, Any]:
    """One ProductionVariant: instance-backed, or serverless with its memory and concurrency.

    `instance_count` replaces the config's when the rollout sized the new fleet from the live one (an
    autoscaled endpoint keeps the capacity autoscaling gave it)."""
    endpoint = config.endpoint
    variant: dict[str, Any] = {
        "VariantName": variant_name or endpoint.variant_name,
        "ModelName": model_name,
        "InitialVariantWeight": weight,
    }
    if endpoint.type == "serverless":
        serverless = endpoint.serverless
        assert serverless is not None  # the config fills it in for type serverless
        settings: dict[str, Any] = {
            "MemorySizeInMB": serverless.memory_mb,
            "MaxConcurrency": serverless.max_concurrency,
        }
        if serverless.provisioned_concurrency is not None:
            settings["ProvisionedConcurrency"] = serverless.provisioned_concurrency
        variant["ServerlessConfig"] = settings
        return variant
    variant["InstanceType"] = endpoint.instance_type
    variant["InitialInstanceCount"] = instance_count or endpoint.instance_count
    if endpoint.container_startup_timeout_s is not None:
        variant["ContainerStartupHealthCheckTimeoutInSeconds"] = endpoint.container_startup_timeout_s
    if endpoint.model_data_download_timeout_s is not None:
        variant["ModelDataDownloadTimeoutInSeconds"] = endpoint.model_data_download_timeout_s
    return variant


def async_inference_config(config: ReleaseConfig, topics: Topics) -> dict[str, Any] | None:
    """AsyncInferenceConfig with its S3 output/failure paths and SNS topics, or None for other types."""
    settings = config.endpoint.async_inference
    if config.endpoint.type != "async" or settings is None:
        return None
    output: dict[str, Any] = {"S3OutputPath": settings.output_path}
    if settings.failure_path:
        output["S3FailurePath"] = settings.failure_path
    notification: dict[str, Any] = {}
    if topics.success:
        notification["SuccessTopic"] = topics.success
    if topics.error:
        notification["ErrorTopic"] = topics.error
    if notification:
        notification["IncludeInferenceResponseIn"] = [
            "SUCCESS_NOTIFICATION_TOPIC",
            "ERROR_NOTIFICATION_TOPIC",
        ]
        output["NotificationConfig"] = notification
    result: dict[str, Any] = {"OutputConfig": output}
    if settings.max_concurrent_invocations_per_instance is not None:
        result["ClientConfig"] = {
            "MaxConcurrentInvocationsPerInstance": settings.max_concurrent_invocations_per_instance
        }
    return result


def kept_data_capture(live: LiveEndpoint | None) -> dict[str, Any] | None:
    """The DataCaptureConfig of the release's endpoint config: the live endpoint's, as it is.

    The endpoint serves on the release's config afterwards, so a config without it would turn capture
    off (and Model Monitor's schedules would read nothing). The release config has no data-capture
    setting of its own that could replace it; None when the endpoint captures nothing (or is new)."""
    if live is None or not live.data_capture:
        return None
    return live.data_capture


def metrics_config(config: ReleaseConfig) -> dict[str, Any] | None:
    """MetricsConfig for guard alarms of 10 or 30 s: SageMaker's enhanced metrics, published that often.

    Without it a real-time endpoint publishes invocation metrics once a minute, and a 10 s alarm finds
    no datapoint and never fires. Only real-time endpoints have enhanced metrics; the config refuses
    sub-minute alarm periods for the others (tasks/config/metric_timing.py).
    """
    if config.endpoint.type not in metric_timing.ENHANCED_METRICS_TYPES:
        return None
    return metric_timing.metrics_config(config.rollout.alarms.period_s)


def endpoint_config_request(
    config: ReleaseConfig,
    release_id: str,
    variants: list[dict[str, Any]],
    *,
    topics: Topics | None = None,
    data_capture: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole CreateEndpointConfig request of this release (`data_capture`: see kept_data_capture)."""
    request: dict[str, Any] = {
        "EndpointConfigName": naming.endpoint_config_name(config, release_id),
        "ProductionVariants": variants,
        "Tags": naming.tags(config, release_id),
    }
    async_config = async_inference_config(config, topics or Topics())
    if async_config is not None:
        request["AsyncInferenceConfig"] = async_config
    metrics = metrics_config(config)
    if metrics is not None:
        request["MetricsConfig"] = metrics
    if data_capture:
        request["DataCaptureConfig"] = dict(data_capture)
    return request


def transform_job_request(config: ReleaseConfig, release_id: str, model_name: str) -> dict[str, Any]:
    """CreateTransformJob for a batch release: outputs beside the inputs' prefix, no endpoint."""
    batch = config.endpoint.batch
    assert batch is not None  # the config requires it for type batch
    request: dict[str, Any] = {
        "TransformJobName": naming.transform_job_name(config, release_id),
        "ModelName": model_name,
        "BatchStrategy": batch.batch_strategy,
        "MaxPayloadInMB": batch.max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": batch.input_path}},
            "ContentType": batch.content_type,
            "SplitType": batch.split_type,
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": batch.output_path, "AssembleWith": batch.assemble_with},
        "TransformResources": {
            "InstanceType": config.endpoint.instance_type,
            "InstanceCount": config.endpoint.instance_count,
        },
        "Environment": model_environment(config),
        "Tags": naming.tags(config, release_id),
    }
    if batch.accept:
        request["TransformOutput"]["Accept"] = batch.accept
    if batch.max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = batch.max_concurrent_transforms
    return request


def already_serving(
    live: LiveEndpoint,
    config: ReleaseConfig,
    *,
    image_uri: str,
    model_data: ModelData,
    environment: Mapping[str, str],
    topics: Topics | None = None,
    count_managed: bool = False,
) -> bool:
    """True when the endpoint already serves exactly this release: same image, model data, environment,
    capacity and async settings on a single variant. A nightly redeploy of an unchanged model then
    creates nothing at all. With `count_managed` (autoscaling owns the variant's instance count) the
    count is not compared: the one in the live config is whatever capacity the last release took over."""
    if live.status != "InService" or len(live.variants) != 1:
        return False
    served = live.variants[0]
    wanted = production_variant(config, served.model_name)
    same_capacity = (
        served.serverless == wanted.get("ServerlessConfig")
        if config.endpoint.type == "serverless"
        else (served.instance_type, served.serverless) == (wanted["InstanceType"], None)
        and (count_managed or served.instance_count == wanted["InitialInstanceCount"])
    )
    return (
        served.variant == config.endpoint.variant_name
        and served.image == image_uri
        and served.model_data == model_data
        and served.environment == dict(environment)
        and same_capacity
        and live.async_config == async_inference_config(config, topics or _existing_topics(live))
    )


def _existing_topics(live: LiveEndpoint) -> Topics:
    # Topics this release would create are new by definition; compare against the ones in use.
    notification = ((live.async_config or {}).get("OutputConfig") or {}).get("NotificationConfig") or {}
    return Topics(notification.get("SuccessTopic"), notification.get("ErrorTopic"))
