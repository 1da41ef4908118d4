"""The endpoint steps of a release as Prefect tasks: each names its resource, makes the call through
tasks/sagemaker/hosting.py or tasks/sagemaker/scaling.py, records what it created, and returns plain values.

A task that finds its resource already in the ledger (a rerun of the same release id) returns it
instead of creating it again, so a retried flow continues where it stopped. A create whose earlier
attempt left only an intent (no answer came back) is sent again and adopts what the first attempt
made (tasks/lifecycle/ownership.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from prefect import task

from tasks.config import ReleaseConfig, naming, secret_values
from tasks.core import aws
from tasks.core.errors import ResourceFailed
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.lifecycle.kinds import SAGEMAKER_ENDPOINT, SAGEMAKER_ENDPOINT_CONFIG, SAGEMAKER_MODEL, SNS_TOPIC
from tasks.lifecycle.ledger import Ledger
from tasks.lifecycle.ownership import create_once
from tasks.sagemaker import hosting, scaling
from tasks.sagemaker.endpoint_spec import (
    Topics,
    already_serving,
    endpoint_config_request,
    kept_data_capture,
    model_environment,
    production_variant,
    transform_job_request,
)
from tasks.sagemaker.hosting import LiveEndpoint, ModelData


@dataclass(frozen=True)
class EndpointState:
    """Where the endpoint stands after the deploy step."""

    name: str
    arn: str | None
    config_name: str
    status: str
    action: str  # created | updated | unchanged
    previous_config: str | None


@task(name="inspect-endpoint", **task_options())
def inspect_endpoint(name: str) -> LiveEndpoint | None:
    """The endpoint as it serves before the release, with its models (None when there is none)."""
    live = hosting.live_endpoint(name)
    if live is not None and live.status in hosting.ENDPOINT_FAILED:
        raise ResourceFailed(
            f"endpoint {name}",
            live.status,
            f"{live.failure_reason or 'no FailureReason given'}; a failed endpoint accepts only "
            "DeleteEndpoint, fix: delete it (aws sagemaker delete-endpoint) and release again",
        )
    return live


def desired_topics(config: ReleaseConfig) -> Topics | None:
    """The SNS topics the config names; None when the release creates its own (compare with what runs)."""
    settings = config.endpoint.async_inference
    if settings is None:
        return Topics()
    if settings.create_topics:
        return None
    return Topics(settings.success_topic_arn, settings.error_topic_arn)


def serves_release(
    live: LiveEndpoint | None,
    config: ReleaseConfig,
    *,
    image_uri: str,
    model_data: ModelData,
    count_managed: bool = False,
) -> bool:
    """True when `live` already serves this exact model, image and settings: nothing to deploy.
    `count_managed`: autoscaling owns the instance count, so it is no difference."""
    return live is not None and already_serving(
        live,
        config,
        image_uri=image_uri,
        model_data=model_data,
        environment=model_environment(config),
        topics=desired_topics(config),
        count_managed=count_managed,
    )


@task(name="create-topics", **task_options())
def create_topics(config: ReleaseConfig, release_id: str, ledger: Ledger) -> Topics:
    """SNS success/error topics for an async endpoint, created for this release when the config asks."""
    wanted = desired_topics(config)
    if wanted is not None:
        return wanted
    sns = aws.client("sns")
    region = aws.region_name()
    # The ARN follows from the name, so the intent can carry the id the deleter needs.
    arn_prefix = f"arn:{aws.session().get_partition_for_region(region)}:sns:{region}:{aws.account_id()}:"
    arns: dict[str, str] = {}
    for what in ("success", "error"):
        name = naming.topic_name(config, release_id, what)
        arn = arn_prefix + name
        if not ledger.holds(SNS_TOPIC, arn):
            create_once(
                ledger,
                SNS_TOPIC,
                arn,
                partial(sns.create_topic, Name=name, Tags=naming.tags(config, release_id)),
                arn_key="TopicArn",
                fix=(
                    f"topic names carry the release id; release again with a new release_id (leave it "
                    f"empty), or delete topic {arn} (aws sns delete-topic) if nothing uses it"
                ),
                name=name,
            )
        arns[what] = arn
    return Topics(arns["success"], arns["error"])


@task(name="create-model", **task_options())
def create_model(
    config: ReleaseConfig, release_id: str, *, image_uri: str, model_data: ModelData, ledger: Ledger
) -> str:
    """The SageMaker model of this release: the serving image over the uploaded model data."""
    name = naming.model_name(config, release_id)
    if ledger.holds(SAGEMAKER_MODEL, name):
        return name
    # Secret references are fetched here, as late as they can be; a refusal that quotes the request
    # (an AWS validation error) leaves with the values masked.
    with secret_values.scrubbed():
        hosting.create_model(
            name,
            containers=[hosting.container_definition(image_uri, model_data, model_environment(config))],
            role_arn=config.role_arn,
            tags=naming.tags(config, release_id),
            ledger=ledger,
            endpoint=config.endpoint.name,
        )
    return name


@task(name="create-endpoint-config", **task_options())
def create_endpoint_config(
    config: ReleaseConfig,
    release_id: str,
    *,
    model_name: str,
    topics: Topics,
    ledger: Ledger,
    live: LiveEndpoint | None = None,
    instance_count: int | None = None,
) -> str:
    """The endpoint config of this release: one variant serving the new model (on `instance_count`
    instances when the rollout sized the fleet from the live one), keeping the data capture of `live`
    (the endpoint as it serves before the release) so the release does not turn it off."""
    capture = kept_data_capture(live)
    variant = production_variant(config, model_name, instance_count=instance_count)
    request = endpoint_config_request(config, release_id, [variant], topics=topics, data_capture=capture)
    name = str(request["EndpointConfigName"])
    if capture:
        assert live is not None  # kept_data_capture keeps only a live endpoint's
        run_logger().info(
            "endpoint config %s keeps the data capture of %s (%s%% of requests to %s, as on %s)",
            name,
            live.name,
            capture.get("InitialSamplingPercentage"),
            capture.get("DestinationS3Uri"),
            live.config_name,
        )
    if not ledger.holds(SAGEMAKER_ENDPOINT_CONFIG, name):
        hosting.create_endpoint_config(request, ledger, endpoint=config.endpoint.name)
    return name


@task(name="create-endpoint", **task_options(retries=2))
def create_endpoint(
    config: ReleaseConfig, release_id: str, *, config_name: str, ledger: Ledger
) -> EndpointState:
    """A new endpoint on the release's config, waited on until InService."""
    name = config.endpoint.name
    timeouts = config.timeouts
    if ledger.holds(SAGEMAKER_ENDPOINT, name):
        described = hosting.wait_for_endpoint(
            name,
            expect_config=config_name,
            timeout_s=timeouts.endpoint_s,
            interval_s=timeouts.poll_interval_s,
        )
    else:
        described = hosting.create_endpoint(
            name,
            config_name,
            tags=naming.tags(config, release_id),
            ledger=ledger,
            timeout_s=timeouts.endpoint_s,
            interval_s=timeouts.poll_interval_s,
        )
    return EndpointState(name, described.get("EndpointArn"), config_name, "InService", "created", None)


@task(name="read-updated-endpoint", **task_options())
def updated_endpoint(name: str, *, previous: LiveEndpoint) -> EndpointState:
    """Where an endpoint stands once the rollout moved it off `previous`: its ARN and current config."""
    described = hosting.describe_endpoint(name) or {}
    return EndpointState(
        name,
        described.get("EndpointArn"),
        str(described.get("EndpointConfigName", "")),
        str(described.get("EndpointStatus", "")),
        "updated",
        previous.config_name,
    )


@task(name="apply-scaling", **task_options())
def apply_scaling(config: ReleaseConfig, release_id: str, ledger: Ledger) -> scaling.AppliedScaling | None:
    """Register the variant for autoscaling when the config asks, with this release's policies; returns
    what is registered then, or None when the config does not ask."""
    if not config.scaling.enabled:
        return None
    plan = scaling.plan_for(config, release_id)
    return scaling.apply_scaling(plan, tags=naming.tags(config, release_id), ledger=ledger)


@task(name="reconcile-scaling", **task_options())
def reconcile_scaling(
    config: ReleaseConfig, release_id: str, ledger: Ledger
) -> scaling.AppliedScaling | None:
    """An unchanged release (the live endpoint serves it on the configured variant, `serves_release`):
    leave the registration when it matches the config (a nightly redeploy does not churn policies), put
    this release's scaling where it differs; returns what is registered."""
    plan = scaling.plan_for(config, release_id)
    current = scaling.read_scaling(plan.resource_id)
    if not config.scaling.enabled:
        return None if current is None else replace(current, changed=False)
    if current is not None and scaling.matches(plan, current):
        run_logger().info("autoscaling of %s already matches the config; left as it is", plan.resource_id)
        return replace(current, changed=False)
    return scaling.apply_scaling(plan, tags=naming.tags(config, release_id), ledger=ledger)


@task(name="batch-transform", **task_options(retries=1))
def run_transform_job(
    config: ReleaseConfig, release_id: str, *, model_name: str, ledger: Ledger
) -> dict[str, Any]:
    """Score the dataset with a transform job; returns the final DescribeTransformJob."""
    with secret_values.scrubbed():
        request = transform_job_request(config, release_id, model_name)
        return hosting.create_transform_job(
            request,
            ledger=ledger,
            timeout_s=config.timeouts.transform_job_s,
            interval_s=config.timeouts.poll_interval_s,
        )
