"""SageMaker hosting: model, endpoint config, endpoint (create or update), batch transform job.

Every create is recorded in the ledger as an intent before it is sent and confirmed when it answers
(tasks/lifecycle/ownership.py `create_once`): a create re-sent after a lost answer finds its own resource and
adopts it, one whose name another release holds is refused. Updating an endpoint that served before
this release is recorded *before* the UpdateEndpoint call, with the config it served, so an unwind (or
`flows/cleanup.py` after a crash) puts it back on that config instead of deleting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from tasks.core import aws
from tasks.core.errors import EndpointRolledBack, ResourceFailed
from tasks.core.logs import run_logger
from tasks.core.retry import call_with_retries
from tasks.core.waiting import Clock, poll_until
from tasks.lifecycle.kinds import (
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    SAGEMAKER_TRANSFORM_JOB,
)
from tasks.lifecycle.ledger import Ledger
from tasks.lifecycle.ownership import create_once

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.type_defs import DesiredWeightAndCapacityTypeDef, TagTypeDef

# DescribeEndpoint's EndpointStatus, every value of the API reference (test_hosting checks the stubs').
EndpointStatus = Literal[
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
]
# Statuses from which the endpoint moves on by itself; anything else is where it rests.
TRANSITIONAL: frozenset[EndpointStatus] = frozenset(
    {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
)
ENDPOINT_FAILED: frozenset[EndpointStatus] = frozenset({"Failed", "UpdateRollbackFailed"})


@dataclass(frozen=True)
class ModelData:
    """Where the model's files are: a model.tar.gz (`Gzip`) or an uncompressed S3 prefix (`None`)."""

    url: str
    compression: str = "Gzip"

    def container_fields(self) -> dict[str, Any]:
        if self.compression == "Gzip":
            return {"ModelDataUrl": self.url}
        return {
            "ModelDataSource": {
                "S3DataSource": {"S3Uri": self.url, "S3DataType": "S3Prefix", "CompressionType": "None"}
            }
        }


def container_definition(
    image_uri: str, data: ModelData | None, environment: Mapping[str, str]
) -> dict[str, Any]:
    """A PrimaryContainer for CreateModel."""
    container: dict[str, Any] = {"Image": image_uri, "Mode": "SingleModel"}
    if data is not None:
        container.update(data.container_fields())
    if environment:
        container["Environment"] = dict(environment)
    return container


@dataclass(frozen=True)
class ServedModel:
    """What one production variant of a live endpoint runs."""

    variant: str
    model_name: str
    image: str | None
    model_data: ModelData | None
    environment: dict[str, str]
    instance_type: str | None
    instance_count: int | None  # the config's InitialInstanceCount
    serverless: dict[str, Any] | None
    current_instance_count: int | None = None  # what serves now (autoscaling may have changed it)


@dataclass(frozen=True)
class LiveEndpoint:
    """An endpoint as it stands before the release touches it."""

    name: str
    status: EndpointStatus
    config_name: str
    failure_reason: str | None
    variants: tuple[ServedModel, ...] = field(default_factory=tuple)
    async_config: dict[str, Any] | None = None
    data_capture: dict[str, Any] | None = None


# --- reading what is there --------------------------------------------------------------------------------


def describe_endpoint(name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when there is no such endpoint."""
    try:
        return dict(aws.sagemaker().describe_endpoint(EndpointName=name))
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        raise


def live_endpoint(name: str) -> LiveEndpoint | None:
    """The endpoint `name` with the models its current config serves, or None when it does not exist."""
    described = describe_endpoint(name)
    if described is None:
        return None
    sagemaker = aws.sagemaker()
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    serving = current_instance_counts(described)
    variants = []
    for variant in config["ProductionVariants"]:
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        variants.append(
            ServedModel(
                variant=variant["VariantName"],
                model_name=variant["ModelName"],
                image=container.get("Image"),
                model_data=model_data_of(container),
                environment=dict(container.get("Environment") or {}),
                instance_type=variant.get("InstanceType"),
                instance_count=variant.get("InitialInstanceCount"),
                serverless=_plain(variant.get("ServerlessConfig")),
                current_instance_count=serving.get(variant["VariantName"]),
            )
        )
    return LiveEndpoint(
        name=name,
        status=described["EndpointStatus"],
        config_name=described["EndpointConfigName"],
        failure_reason=described.get("FailureReason"),
        variants=tuple(variants),
        async_config=_plain(config.get("AsyncInferenceConfig")),
        data_capture=_plain(config.get("DataCaptureConfig")),
    )


def _plain(shape: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A response shape (a TypedDict to the type checker) as the plain dict LiveEndpoint keeps."""
    return dict(shape) if shape is not None else None


def model_data_of(container: Mapping[str, Any]) -> ModelData | None:
    """The model data of one container of a DescribeModel answer (ModelDataUrl or ModelDataSource)."""
    if container.get("ModelDataUrl"):
        return ModelData(str(container["ModelDataUrl"]), "Gzip")
    source = (container.get("ModelDataSource") or {}).get("S3DataSource")
    if source:
        return ModelData(str(source["S3Uri"]), str(source.get("CompressionType", "None")))
    return None


# --- creating ---------------------------------------------------------------------------------------------

# Models and endpoint configs are named after the release: one that exists under the name and is not
# this release's is a leftover of an earlier use of the same release id, or someone else's resource.
_NAMED_BY_RELEASE_FIX = (
    "release again with a new release_id (leave it empty to get one), or, if nothing uses {what}, "
    "delete it (aws sagemaker {delete}) and release again"
)


def create_model(
    name: str,
    *,
    containers: Sequence[Mapping[str, Any]],
    role_arn: str,
    tags: list[dict[str, str]],
    ledger: Ledger,
    endpoint: str | None = None,
    vpc_config: Mapping[str, Any] | None = None,
) -> str:
    """CreateModel: one PrimaryContainer, or an inference pipeline when several containers are given."""
    request: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": role_arn, "Tags": tags}
    if len(containers) == 1:
        request["PrimaryContainer"] = dict(containers[0])
    else:
        request["Containers"] = [dict(c) for c in containers]
        request["InferenceExecutionConfig"] = {"Mode": "Serial"}
    if vpc_config:
        request["VpcConfig"] = dict(vpc_config)
    arn = create_once(
        ledger,
        SAGEMAKER_MODEL,
        name,
        lambda: aws.sagemaker().create_model(**request),
        arn_key="ModelArn",
        fix=_NAMED_BY_RELEASE_FIX.format(what=f"model {name}", delete=f"delete-model --model-name {name}"),
        endpoint=endpoint,
    )
    run_logger().info("created model %s", arn)
    return arn


def create_endpoint_config(request: Mapping[str, Any], ledger: Ledger, *, endpoint: str | None = None) -> str:
    """CreateEndpointConfig from a complete request (tasks/sagemaker/endpoint_spec.py builds it)."""
    name = str(request["EndpointConfigName"])
    arn = create_once(
        ledger,
        SAGEMAKER_ENDPOINT_CONFIG,
        name,
        # The model was created a moment ago; SageMaker may not see it yet ("Could not find model").
        lambda: call_with_retries(lambda: aws.sagemaker().create_endpoint_config(**request)),
        arn_key="EndpointConfigArn",
        fix=_NAMED_BY_RELEASE_FIX.format(
            what=f"endpoint config {name}", delete=f"delete-endpoint-config --endpoint-config-name {name}"
        ),
        endpoint=endpoint,
    )
    run_logger().info("created endpoint config %s", arn)
    return arn


def create_endpoint(
    name: str,
    config_name: str,
    *,
    tags: list[dict[str, str]],
    ledger: Ledger,
    timeout_s: float,
    interval_s: float = 15.0,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """CreateEndpoint and wait until it is InService; returns the last DescribeEndpoint."""
    sagemaker = aws.sagemaker()
    create_once(
        ledger,
        SAGEMAKER_ENDPOINT,
        name,
        # Right after CreateEndpointConfig, SageMaker can answer "Could not find endpoint configuration".
        lambda: call_with_retries(
            lambda: sagemaker.create_endpoint(
                EndpointName=name,
                EndpointConfigName=config_name,
                # The stubs want TagTypeDef; ours are the same {Key, Value} pairs, typed as plain dicts.
                Tags=cast("list[TagTypeDef]", tags),
            )
        ),
        arn_key="EndpointArn",
        fix=(
            f"another release or tool created endpoint {name} after this release found none; release "
            f"again (it will update the endpoint), or choose another endpoint.name"
        ),
        config=config_name,
        created=True,
    )
    run_logger().info("creating endpoint %s on %s", name, config_name)
    return wait_for_endpoint(
        name, expect_config=config_name, timeout_s=timeout_s, interval_s=interval_s, clock=clock
    )


def update_endpoint(
    name: str,
    config_name: str,
    *,
    previous_config: str,
    ledger: Ledger,
    timeout_s: float,
    interval_s: float = 15.0,
    deployment_config: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """UpdateEndpoint to `config_name` and wait; raise EndpointRolledBack when SageMaker reverted it.

    The ledger entry goes in first: from the moment the update may start, undoing the release means
    putting the endpoint back on `previous_config`. `deployment_config` (guardrails: blue/green with
    canary or linear traffic routing and auto-rollback alarms) is passed through as given.
    """
    ledger.record(
        SAGEMAKER_ENDPOINT, name, config=config_name, previous_config=previous_config, created=False
    )
    send_endpoint_update(name, config_name, deployment_config=deployment_config)
    run_logger().info("updating endpoint %s from %s to %s", name, previous_config, config_name)
    return wait_for_endpoint(
        name, expect_config=config_name, timeout_s=timeout_s, interval_s=interval_s, clock=clock
    )


def send_endpoint_update(
    name: str, config_name: str, *, deployment_config: Mapping[str, Any] | None = None
) -> None:
    """Send UpdateEndpoint (retried) and return at once: no ledger entry, no wait.

    For callers that record and wait themselves: `update_endpoint`, the runner's guardrails (which
    watch the deployment as it goes) and rollback on demand (which owns no ledger).
    """
    request: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config_name}
    if deployment_config:
        request["DeploymentConfig"] = dict(deployment_config)
    call_with_retries(lambda: aws.sagemaker().update_endpoint(**request))


def send_variant_weights(name: str, weights: Mapping[str, float]) -> None:
    """Send UpdateEndpointWeightsAndCapacities (retried) with `weights` by variant; no wait."""
    desired: list[DesiredWeightAndCapacityTypeDef] = [
        {"VariantName": variant, "DesiredWeight": w} for variant, w in weights.items()
    ]
    call_with_retries(
        lambda: aws.sagemaker().update_endpoint_weights_and_capacities(
            EndpointName=name, DesiredWeightsAndCapacities=desired
        )
    )


def wait_for_endpoint(
    name: str,
    *,
    expect_config: str | None,
    timeout_s: float,
    interval_s: float = 15.0,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Wait until the endpoint rests; it must be InService (on `expect_config`, when given)."""
    log = run_logger()
    seen: list[str] = []

    def progress(description: dict[str, Any], elapsed: float) -> None:
        status = str(description.get("EndpointStatus"))
        if not seen or seen[-1] != status:
            seen.append(status)
            log.info("endpoint %s is %s (%.0f s)", name, status, elapsed)

    described = poll_until(
        lambda: dict(aws.sagemaker().describe_endpoint(EndpointName=name)),
        is_done=lambda d: d["EndpointStatus"] not in TRANSITIONAL,
        failure_reason=_endpoint_failure,
        status_of=lambda d: str(d["EndpointStatus"]),
        resource=f"endpoint {name}",
        timeout_s=timeout_s,
        interval_s=interval_s,
        clock=clock,
        on_progress=progress,
    )
    if described["EndpointStatus"] != "InService":
        raise ResourceFailed(
            f"endpoint {name}", str(described["EndpointStatus"]), str(described.get("FailureReason") or "")
        )
    actual = str(described["EndpointConfigName"])
    if expect_config is not None and actual != expect_config:
        raise EndpointRolledBack(
            name, expect_config, actual, reason=str(described.get("FailureReason") or "")
        )
    return described


def _endpoint_failure(description: Mapping[str, Any]) -> str | None:
    if description["EndpointStatus"] in ENDPOINT_FAILED:
        return str(description.get("FailureReason") or "no FailureReason given")
    return None


def create_transform_job(
    request: Mapping[str, Any],
    *,
    ledger: Ledger,
    timeout_s: float,
    interval_s: float = 30.0,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """CreateTransformJob and wait until it Completed; returns the last DescribeTransformJob."""
    name = str(request["TransformJobName"])
    sagemaker = aws.sagemaker()
    arn = create_once(
        ledger,
        SAGEMAKER_TRANSFORM_JOB,
        name,
        lambda: call_with_retries(lambda: sagemaker.create_transform_job(**request)),
        arn_key="TransformJobArn",
        fix=(
            "transform job names are never reused; release again with a new release_id (leave it "
            "empty) so the job gets a new name"
        ),
    )
    run_logger().info("started transform job %s", arn)

    def describe() -> dict[str, Any]:
        return dict(sagemaker.describe_transform_job(TransformJobName=name))

    return poll_until(
        describe,
        is_done=lambda d: d["TransformJobStatus"] == "Completed",
        failure_reason=lambda d: (
            str(d.get("FailureReason") or "no FailureReason given")
            if d["TransformJobStatus"] in ("Failed", "Stopped")
            else None
        ),
        status_of=lambda d: str(d["TransformJobStatus"]),
        resource=f"transform-job {name}",
        timeout_s=timeout_s,
        interval_s=interval_s,
        clock=clock,
    )


# --- undoing (used by tasks/lifecycle/unwind.py)
# -----------------------------------------------------------------


def delete_endpoint(
    name: str, *, timeout_s: float, interval_s: float = 5.0, clock: Clock | None = None
) -> None:
    """DeleteEndpoint and wait until it is gone (a NotFound from the first call means already gone)."""
    sagemaker = aws.sagemaker()
    described = describe_endpoint(name)
    if described is None:
        return
    if described["EndpointStatus"] in TRANSITIONAL - {"Deleting"}:
        # DeleteEndpoint is refused while the endpoint is creating or updating.
        described = wait_until_resting(name, timeout_s=timeout_s, interval_s=interval_s, clock=clock)
    if described["EndpointStatus"] not in ("Deleting", "Deleted"):
        sagemaker.delete_endpoint(EndpointName=name)
    poll_until(
        lambda: describe_endpoint(name) or {"EndpointStatus": "Deleted"},
        is_done=lambda d: d["EndpointStatus"] == "Deleted",
        failure_reason=lambda d: (
            str(d.get("FailureReason") or "delete failed") if d["EndpointStatus"] == "Failed" else None
        ),
        status_of=lambda d: str(d["EndpointStatus"]),
        resource=f"endpoint {name}",
        timeout_s=timeout_s,
        interval_s=interval_s,
        clock=clock,
    )


def wait_until_resting(
    name: str, *, timeout_s: float, interval_s: float = 5.0, clock: Clock | None = None
) -> dict[str, Any]:
    """Wait until the endpoint leaves Creating/Updating/RollingBack (whatever status it then rests in)."""
    return dict(
        poll_until(
            lambda: describe_endpoint(name) or {"EndpointStatus": "Deleted"},
            is_done=lambda d: d["EndpointStatus"] not in TRANSITIONAL,
            failure_reason=lambda d: None,
            status_of=lambda d: str(d["EndpointStatus"]),
            resource=f"endpoint {name}",
            timeout_s=timeout_s,
            interval_s=interval_s,
            clock=clock,
        )
    )


def restore_endpoint(
    name: str, previous_config: str, *, timeout_s: float, interval_s: float = 15.0, clock: Clock | None = None
) -> None:
    """Put an endpoint that served before the release back on `previous_config`, and wait for it.

    Nothing to do when it already serves that config (the update never started, or SageMaker rolled
    it back by itself). A deleted endpoint cannot be restored from a config name alone: it raises.
    """
    resting = wait_until_resting(name, timeout_s=timeout_s, interval_s=interval_s, clock=clock)
    if resting["EndpointStatus"] == "Deleted":
        raise ResourceFailed(
            f"endpoint {name}",
            "Deleted",
            f"the endpoint that served {previous_config} before the release is gone; fix: "
            f"create it again from endpoint config {previous_config}",
        )
    if resting["EndpointStatus"] == "InService" and resting["EndpointConfigName"] == previous_config:
        return
    run_logger().info("putting endpoint %s back on %s", name, previous_config)
    aws.sagemaker().update_endpoint(EndpointName=name, EndpointConfigName=previous_config)
    wait_for_endpoint(
        name, expect_config=previous_config, timeout_s=timeout_s, interval_s=interval_s, clock=clock
    )


def delete_endpoint_config(name: str) -> None:
    aws.sagemaker().delete_endpoint_config(EndpointConfigName=name)


def delete_model(name: str) -> None:
    aws.sagemaker().delete_model(ModelName=name)


def stop_transform_job(
    name: str, *, timeout_s: float, interval_s: float = 10.0, clock: Clock | None = None
) -> None:
    """Stop a transform job that is still running (a finished one has nothing left to delete)."""
    sagemaker = aws.sagemaker()
    status = sagemaker.describe_transform_job(TransformJobName=name)["TransformJobStatus"]
    if status not in ("InProgress", "Stopping"):
        return
    if status == "InProgress":
        sagemaker.stop_transform_job(TransformJobName=name)
    poll_until(
        lambda: sagemaker.describe_transform_job(TransformJobName=name),
        is_done=lambda d: d["TransformJobStatus"] not in ("InProgress", "Stopping"),
        failure_reason=lambda d: None,
        status_of=lambda d: str(d["TransformJobStatus"]),
        resource=f"transform-job {name}",
        timeout_s=timeout_s,
        interval_s=interval_s,
        clock=clock,
    )


def wait_for_first_instance(
    name: str,
    *,
    timeout_s: float,
    interval_s: float = 15.0,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Wait until a variant of the endpoint has an instance again (an async endpoint scaled to zero
    leaves it when its scale-from-zero alarm fires and the instance starts)."""
    log = run_logger()
    reported: list[int] = []

    def progress(description: dict[str, Any], elapsed: float) -> None:
        step = int(elapsed // max(timeout_s / 10, interval_s))
        if not reported or reported[-1] != step:
            reported.append(step)
            log.info(
                "endpoint %s: 0 instances, waiting for the scale-from-zero (%.0f s of at most %.0f s)",
                name,
                elapsed,
                timeout_s,
            )

    return poll_until(
        lambda: dict(aws.sagemaker().describe_endpoint(EndpointName=name)),
        is_done=lambda d: instances(d) > 0,
        failure_reason=_endpoint_failure,
        status_of=lambda d: f"{d['EndpointStatus']} with {instances(d)} instances",
        resource=f"endpoint {name}",
        timeout_s=timeout_s,
        interval_s=interval_s,
        clock=clock,
        on_progress=progress,
    )


def current_instance_counts(described: Mapping[str, Any]) -> dict[str, int | None]:
    """Each variant's instances serving now (DescribeEndpoint's answer): autoscaling may have moved them
    off its config's InitialInstanceCount. None: SageMaker reports no count (serverless)."""
    return {
        str(v["VariantName"]): v.get("CurrentInstanceCount") for v in described.get("ProductionVariants", [])
    }


def instances(described: Mapping[str, Any]) -> int:
    """The instances serving an endpoint, over all its variants (DescribeEndpoint's answer)."""
    return sum(count or 0 for count in current_instance_counts(described).values())
