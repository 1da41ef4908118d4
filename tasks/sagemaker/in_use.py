"""What the endpoints of the account use right now, read from SageMaker rather than from any ledger.

A ledger says what a release created; only the endpoints say what serves. A ledger can be missing
(deleted, expired by a lifecycle rule, looked for under a mistyped bucket or prefix) or wrong, so
cleanup asks here before it deletes anything that might serve: an endpoint's current config (and the
pending one during an update), the models those configs name, their images and model data, the SNS
topics of their async notifications, the alarms of the endpoint's deployment guardrails, the alarms
on its metrics, and the scalable targets of its variants with their policies and alarms.

Every endpoint counts whatever its status: a Failed endpoint still names its config, and the resources
of an endpoint that is being deleted are free once it is gone, not before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.config import naming
from tasks.core import aws
from tasks.image.image_name import ImageName
from tasks.sagemaker import hosting

_NAMESPACE = "sagemaker"
_ALARM_ACTION_KEYS = ("AlarmActions", "OKActions", "InsufficientDataActions")


@dataclass
class EndpointUse:
    """What one endpoint uses. Names are as SageMaker reports them."""

    name: str
    status: str
    configs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    model_data: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    scalable_targets: list[str] = field(default_factory=list)
    policy_arns: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON for reports (the orphan sweep prints what it spared and why)."""
        return {
            "status": self.status,
            "configs": self.configs,
            "models": self.models,
            "images": self.images,
            "model_data": self.model_data,
            "topics": self.topics,
            "alarms": self.alarms,
            "scalable_targets": self.scalable_targets,
        }


@dataclass(frozen=True)
class InUse:
    """What every endpoint of the account uses; `*_user` answer the endpoint using a resource, or None."""

    endpoints: tuple[EndpointUse, ...]

    def endpoint(self, name: str) -> EndpointUse | None:
        # Endpoint names are case-insensitive for uniqueness.
        wanted = name.lower()
        return next((e for e in self.endpoints if e.name.lower() == wanted), None)

    def config_user(self, name: str) -> str | None:
        return self._first(lambda e: name in e.configs)

    def model_user(self, name: str) -> str | None:
        return self._first(lambda e: name in e.models)

    def topic_user(self, arn: str) -> str | None:
        return self._first(lambda e: arn in e.topics)

    def image_user(self, image: ImageName) -> str | None:
        return self._first(lambda e: any(image.same_image(ImageName.parse(u)) for u in e.images))

    def repository_user(self, repository: str) -> str | None:
        return self._first(lambda e: any(ImageName.parse(u).repository == repository for u in e.images))

    def alarm_user(self, alarm: Mapping[str, Any]) -> str | None:
        """The endpoint an alarm (a DescribeAlarms MetricAlarm, or just {"AlarmName": …}) watches or
        drives: named by its guardrails or scaling policies, invoking one of its scaling policies,
        or measuring a metric with the endpoint's name as its EndpointName dimension."""
        name = str(alarm.get("AlarmName", ""))
        actions = {str(a) for key in _ALARM_ACTION_KEYS for a in alarm.get(key, [])}
        watched = {value.lower() for value in _endpoint_dimensions(alarm)}
        return self._first(
            lambda e: (
                name in e.alarms or bool(actions.intersection(e.policy_arns)) or e.name.lower() in watched
            )
        )

    def _first(self, test: Callable[[EndpointUse], bool]) -> str | None:
        return next((e.name for e in self.endpoints if test(e)), None)

    def summary(self) -> dict[str, Any]:
        return {e.name: e.summary() for e in self.endpoints}


def endpoint_usage(*, scaling: bool = True) -> InUse:
    """What every endpoint uses now. `scaling=False` skips Application Auto Scaling (an unwind deciding
    about an image does not need it)."""
    uses = [use for name in _endpoint_names() if (use := _usage_of(name)) is not None]
    if scaling and uses:
        _add_scaling(uses)
    return InUse(tuple(uses))


def _endpoint_names() -> Iterator[str]:
    paginator = aws.client("sagemaker").get_paginator("list_endpoints")
    for page in paginator.paginate():
        for endpoint in page["Endpoints"]:
            yield str(endpoint["EndpointName"])


def _usage_of(name: str) -> EndpointUse | None:
    described = hosting.describe_endpoint(name)
    if described is None:
        return None  # deleted since it was listed
    use = EndpointUse(name=str(described["EndpointName"]), status=str(described["EndpointStatus"]))
    pending = described.get("PendingDeploymentSummary") or {}
    for config in (described.get("EndpointConfigName"), pending.get("EndpointConfigName")):
        if config and config not in use.configs:
            use.configs.append(str(config))
    variants: set[str] = set()
    for variant in [*described.get("ProductionVariants", []), *pending.get("ProductionVariants", [])]:
        variants.add(str(variant["VariantName"]))
        for deployed in variant.get("DeployedImages", []):
            for key in ("SpecifiedImage", "ResolvedImage"):
                _add(use.images, deployed.get(key))
    rollback = (described.get("LastDeploymentConfig") or {}).get("AutoRollbackConfiguration") or {}
    for alarm in rollback.get("Alarms", []):
        _add(use.alarms, alarm.get("AlarmName"))
    for config in list(use.configs):
        described_config = _describe_config(config)
        if described_config is None:
            continue
        for variant in [
            *described_config.get("ProductionVariants", []),
            *described_config.get("ShadowProductionVariants", []),
        ]:
            variants.add(str(variant["VariantName"]))
            _add(use.models, variant.get("ModelName"))
        async_config = described_config.get("AsyncInferenceConfig") or {}
        notify = (async_config.get("OutputConfig") or {}).get("NotificationConfig") or {}
        for key in ("SuccessTopic", "ErrorTopic"):
            _add(use.topics, notify.get(key))
    for model in list(use.models):
        for container in _containers_of(model):
            _add(use.images, container.get("Image"))
            data = hosting.model_data_of(container)
            _add(use.model_data, data.url if data is not None else None)
    use.scalable_targets = sorted(naming.scalable_resource_id(use.name, v) for v in variants)
    return use


def _describe_config(name: str) -> dict[str, Any] | None:
    try:
        return dict(aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=name))
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        raise


def _containers_of(model: str) -> list[Mapping[str, Any]]:
    try:
        described = aws.client("sagemaker").describe_model(ModelName=model)
    except Exception as exc:
        if aws.is_not_found(exc):
            return []
        raise
    return [c for c in (described.get("PrimaryContainer"), *described.get("Containers", [])) if c]


def _add_scaling(uses: list[EndpointUse]) -> None:
    """Registered targets of the endpoints' variants, their policies and the alarms those name."""
    autoscaling = aws.client("application-autoscaling")
    owner = {target: use for use in uses for target in use.scalable_targets}
    registered: set[str] = set()
    for page in autoscaling.get_paginator("describe_scalable_targets").paginate(ServiceNamespace=_NAMESPACE):
        registered.update(str(t["ResourceId"]) for t in page["ScalableTargets"] if t["ResourceId"] in owner)
    for use in uses:
        use.scalable_targets = [t for t in use.scalable_targets if t in registered]
    for page in autoscaling.get_paginator("describe_scaling_policies").paginate(ServiceNamespace=_NAMESPACE):
        for policy in page["ScalingPolicies"]:
            found = owner.get(str(policy["ResourceId"]))
            if found is None:
                continue
            _add(found.policy_arns, policy.get("PolicyARN"))
            for alarm in policy.get("Alarms", []):
                _add(found.alarms, alarm.get("AlarmName"))


def _endpoint_dimensions(alarm: Mapping[str, Any]) -> Iterator[str]:
    dimension_lists: list[Iterable[Mapping[str, Any]]] = [alarm.get("Dimensions", [])]
    for metric in alarm.get("Metrics", []):
        dimension_lists.append(((metric.get("MetricStat") or {}).get("Metric") or {}).get("Dimensions", []))
    for dimensions in dimension_lists:
        for dimension in dimensions:
            if dimension.get("Name") == "EndpointName" and dimension.get("Value"):
                yield str(dimension["Value"])


def _add(values: list[str], value: object) -> None:
    if value and str(value) not in values:
        values.append(str(value))
