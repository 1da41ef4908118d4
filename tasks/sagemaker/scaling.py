"""Application Auto Scaling of a SageMaker variant, and the CloudWatch alarm async scale-from-zero needs.

Real-time variants track SageMakerVariantInvocationsPerInstance. Async variants track
ApproximateBacklogSizePerInstance (a customized metric: async endpoints publish no invocation metrics)
and, to leave zero instances, get a step policy driven by an alarm on HasBacklogWithoutCapacity.

A variant registered for autoscaling blocks an UpdateEndpoint that removes it or changes its instance
type, so such targets are taken off before the update and put back after (`suspend_for_update`).
What was registered before the release is snapshotted into the ledger entry, so an unwind restores it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasks.config import ReleaseConfig, metric_timing, naming
from tasks.core import aws
from tasks.core.errors import ResourceFailed
from tasks.core.logs import run_logger
from tasks.lifecycle.kinds import AUTOSCALING_POLICY, AUTOSCALING_TARGET, CLOUDWATCH_ALARM
from tasks.lifecycle.ledger import Ledger
from tasks.sagemaker.hosting import LiveEndpoint, ServedModel

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"
BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
NO_CAPACITY_METRIC = "HasBacklogWithoutCapacity"

# PutMetricAlarm parameters that DescribeAlarms returns under the same names.
_ALARM_FIELDS = (
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
)
_POLICY_BODIES = ("StepScalingPolicyConfiguration", "TargetTrackingScalingPolicyConfiguration")
# What PutScheduledAction takes back from DescribeScheduledActions (times as ISO 8601 in the ledger).
_SCHEDULED_ACTION_FIELDS = (
    "ScheduledActionName",
    "Schedule",
    "Timezone",
    "StartTime",
    "EndTime",
    "ScalableTargetAction",
)

# What a release's policies are for: the last part of their names (`naming.scaling_policy_name`).
# Application Auto Scaling tags no policy, so the name is how a release tells its own from a team's.
TRACKING_INVOCATIONS = "invocations"
TRACKING_BACKLOG = "backlog"
STEP_FROM_ZERO = "scale-from-zero"
_POLICY_KINDS = (TRACKING_INVOCATIONS, TRACKING_BACKLOG, STEP_FROM_ZERO)
_RELEASE_ID = naming.RELEASE_ID_PATTERN.pattern.removeprefix("^").removesuffix("$")


@dataclass(frozen=True)
class ScalingPlan:
    """What to register for one variant (built from the config by `plan_for`)."""

    endpoint: str
    variant: str
    min_capacity: int
    max_capacity: int
    asynchronous: bool
    target_value: float
    scale_from_zero: bool
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int
    tracking_policy_name: str
    step_policy_name: str
    alarm_name: str

    @property
    def resource_id(self) -> str:
        return naming.scalable_resource_id(self.endpoint, self.variant)


@dataclass(frozen=True)
class PolicyView:
    """One scaling policy as the release artifact shows it."""

    name: str
    type: str  # TargetTrackingScaling | StepScaling
    rule: str  # what it tracks or steps on, in words
    # The described TargetTracking/StepScalingPolicyConfiguration, which `matches` compares.
    configuration: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class AlarmView:
    """One CloudWatch alarm that drives a scaling policy: the target tracking ones the service made, or
    the release's own HasBacklogWithoutCapacity alarm."""

    name: str
    policy: str
    condition: str
    state: str


@dataclass(frozen=True)
class AppliedScaling:
    """What is registered for the variant, read back from Application Auto Scaling and CloudWatch."""

    resource_id: str
    min_capacity: int
    max_capacity: int
    policies: tuple[PolicyView, ...] = ()
    alarms: tuple[AlarmView, ...] = ()
    changed: bool = True  # False: the registration already matched the config, nothing was put

    @property
    def alarm_names(self) -> tuple[str, ...]:
        return tuple(alarm.name for alarm in self.alarms)


def plan_for(config: ReleaseConfig, release_id: str, *, variant: str | None = None) -> ScalingPlan:
    """The scaling of the config's endpoint variant for this release."""
    scaling, endpoint = config.scaling, config.endpoint
    asynchronous = endpoint.type == "async"
    return ScalingPlan(
        endpoint=endpoint.name,
        variant=variant or endpoint.variant_name,
        min_capacity=scaling.min_capacity,
        max_capacity=scaling.max_capacity,
        asynchronous=asynchronous,
        target_value=(
            scaling.target_backlog_per_instance if asynchronous else scaling.target_invocations_per_instance
        ),
        scale_from_zero=asynchronous and scaling.scale_from_zero and scaling.min_capacity == 0,
        scale_in_cooldown_s=scaling.scale_in_cooldown_s,
        scale_out_cooldown_s=scaling.scale_out_cooldown_s,
        tracking_policy_name=naming.scaling_policy_name(
            config, release_id, TRACKING_BACKLOG if asynchronous else TRACKING_INVOCATIONS
        ),
        step_policy_name=naming.scaling_policy_name(config, release_id, STEP_FROM_ZERO),
        alarm_name=naming.alarm_name(config, release_id, "backlog-without-capacity"),
    )


# --- reading what is registered --------------------------------------------------------------------------


def registered_target(resource_id: str) -> dict[str, Any] | None:
    """DescribeScalableTargets' entry for the variant at `resource_id`, or None when it is not registered."""
    targets = aws.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    return next((dict(t) for t in targets if t["ResourceId"] == resource_id), None)


def snapshot(resource_id: str) -> dict[str, Any] | None:
    """The scalable target at `resource_id` with its policies, the alarms that drive its step policies
    (with their tags, so a restored alarm stays the release's or the team's) and its scheduled actions,
    as JSON (for the ledger), or None when the variant is not registered."""
    target = registered_target(resource_id)
    if target is None:
        return None
    described = _policies(resource_id)
    policies = [
        {
            key: policy[key]
            for key in ("PolicyName", "PolicyType", "PolicyARN", *_POLICY_BODIES)
            if key in policy
        }
        for policy in described
    ]
    cloudwatch = aws.client("cloudwatch")
    alarms: dict[str, dict[str, Any]] = {}
    for policy in described:
        if policy.get("PolicyType") != "StepScaling":
            continue  # target tracking manages its own alarms
        for alarm in _alarms_driving(policy):
            kept = {key: alarm[key] for key in _ALARM_FIELDS if key in alarm}
            tags = cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", [])
            if tags:
                kept["Tags"] = tags
            alarms[alarm["AlarmName"]] = kept
    return _jsonable(
        {
            "ResourceId": resource_id,
            "MinCapacity": target["MinCapacity"],
            "MaxCapacity": target["MaxCapacity"],
            "SuspendedState": target.get("SuspendedState"),
            "Policies": policies,
            "Alarms": list(alarms.values()),
            "ScheduledActions": [
                {key: action[key] for key in _SCHEDULED_ACTION_FIELDS if key in action}
                for action in _scheduled_actions(resource_id)
            ],
        }
    )


def _alarms_driving(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    """DescribeAlarms' entries of the alarms that invoke `policy`: the ones the service lists under its
    "Alarms" (target tracking's own) and whichever name its ARN in their actions (a step policy's)."""
    cloudwatch = aws.client("cloudwatch")
    named = [str(alarm["AlarmName"]) for alarm in policy.get("Alarms", [])]
    found = list(cloudwatch.describe_alarms(AlarmNames=named)["MetricAlarms"]) if named else []
    found += cloudwatch.describe_alarms(ActionPrefix=str(policy["PolicyARN"]))["MetricAlarms"]
    unique: dict[str, dict[str, Any]] = {}
    for alarm in found:
        unique.setdefault(str(alarm["AlarmName"]), dict(alarm))
    return list(unique.values())


def _policies(resource_id: str) -> list[dict[str, Any]]:
    return _described(resource_id, "describe_scaling_policies", "ScalingPolicies")


def _scheduled_actions(resource_id: str) -> list[dict[str, Any]]:
    return _described(resource_id, "describe_scheduled_actions", "ScheduledActions")


def _described(resource_id: str, operation: str, key: str) -> list[dict[str, Any]]:
    """Every page of a Describe call's `key` list, kept to the variant at `resource_id`."""
    found: list[dict[str, Any]] = []
    paginator = aws.client("application-autoscaling").get_paginator(operation)
    for page in paginator.paginate(
        ServiceNamespace=NAMESPACE, ResourceId=resource_id, ScalableDimension=DIMENSION
    ):
        found.extend(item for item in page[key] if item["ResourceId"] == resource_id)
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def read_scaling(resource_id: str) -> AppliedScaling | None:
    """The variant's registration with its policies and the alarms that drive them (None: not registered)."""
    target = registered_target(resource_id)
    if target is None:
        return None
    policies: list[PolicyView] = []
    alarms: dict[str, AlarmView] = {}
    for policy in _policies(resource_id):
        name = str(policy["PolicyName"])
        body: Mapping[str, Any] = next((policy[key] for key in _POLICY_BODIES if key in policy), {})
        policies.append(PolicyView(name, str(policy["PolicyType"]), describe_rule(policy), body))
        for alarm in _alarms_driving(policy):
            alarms.setdefault(
                str(alarm["AlarmName"]),
                AlarmView(
                    name=str(alarm["AlarmName"]),
                    policy=name,
                    condition=describe_condition(alarm),
                    state=str(alarm.get("StateValue", "-")),
                ),
            )
    return AppliedScaling(
        resource_id,
        int(target["MinCapacity"]),
        int(target["MaxCapacity"]),
        tuple(policies),
        tuple(alarms.values()),
    )


def describe_rule(policy: Mapping[str, Any]) -> str:
    """A policy's rule in words, e.g. `SageMakerVariantInvocationsPerInstance at 70 (cooldowns: in 300 s,
    out 60 s)` or `+1 instance when the alarm's metric is >= its threshold (cooldown 60 s)`."""
    tracking = policy.get("TargetTrackingScalingPolicyConfiguration")
    if tracking is not None:
        predefined = tracking.get("PredefinedMetricSpecification")
        customized = tracking.get("CustomizedMetricSpecification", {})
        metric = predefined["PredefinedMetricType"] if predefined else customized.get("MetricName", "?")
        scale_in, scale_out = tracking.get("ScaleInCooldown", 300), tracking.get("ScaleOutCooldown", 300)
        cooldowns = f"in {scale_in} s, out {scale_out} s"
        return f"{metric} at {tracking['TargetValue']:g} (cooldowns: {cooldowns})"
    step = policy.get("StepScalingPolicyConfiguration", {})
    adjustments = []
    for adjustment in step.get("StepAdjustments", []):
        change = int(adjustment["ScalingAdjustment"])
        lower, upper = adjustment.get("MetricIntervalLowerBound"), adjustment.get("MetricIntervalUpperBound")
        bounds = " to ".join(f"{b:+g}" for b in (lower, upper) if b is not None) or "any"
        adjustments.append(f"{change:+d} ({bounds} from the threshold)")
    kind = {"ChangeInCapacity": "instances", "PercentChangeInCapacity": "%", "ExactCapacity": "exactly"}
    unit = kind.get(str(step.get("AdjustmentType", "")), "")
    words = [", ".join(adjustments) or "no steps", unit, f"(cooldown {step.get('Cooldown', 0)} s)"]
    return " ".join(word for word in words if word)


def describe_condition(alarm: Mapping[str, Any]) -> str:
    """An alarm's condition in words, e.g. `InvocationsPerInstance > 70 for 3 of 3 periods of 60 s`."""
    operators = {
        "GreaterThanOrEqualToThreshold": ">=",
        "GreaterThanThreshold": ">",
        "LessThanThreshold": "<",
        "LessThanOrEqualToThreshold": "<=",
    }
    operator = operators.get(str(alarm.get("ComparisonOperator")), str(alarm.get("ComparisonOperator")))
    evaluated = int(alarm.get("EvaluationPeriods", 1))
    breaching = int(alarm.get("DatapointsToAlarm", evaluated))
    metric = alarm.get("MetricName") or "metric math"
    return (
        f"{metric} {operator} {float(alarm.get('Threshold', 0)):g} "
        f"for {breaching} of {evaluated} periods of {alarm.get('Period', '?')} s"
    )


def is_release_policy(endpoint: str, policy_name: str) -> bool:
    """Whether `policy_name` is a policy some release of `endpoint` puts (`naming.scaling_policy_name`),
    not one a team added to the variant itself."""
    kinds = "|".join(re.escape(kind) for kind in _POLICY_KINDS)
    return re.fullmatch(rf"{re.escape(endpoint)}-{_RELEASE_ID}-(?:{kinds})", policy_name) is not None


def matches(plan: ScalingPlan, applied: AppliedScaling) -> bool:
    """Whether what is registered is what `plan` would register (an unchanged release then leaves it).

    Only the releases' own policies are compared, by their requests: a policy a team added to the
    variant is theirs to keep and no reason to put the release's again."""
    if (applied.min_capacity, applied.max_capacity) != (plan.min_capacity, plan.max_capacity):
        return False
    ours = [p for p in applied.policies if is_release_policy(plan.endpoint, p.name)]
    wanted = [("TargetTrackingScaling", _tracking_configuration(plan))]
    if plan.scale_from_zero:
        wanted.append(("StepScaling", _step_configuration(plan)))
    if len(ours) != len(wanted):
        return False
    for kind, configuration in wanted:
        found = [p for p in ours if p.type == kind and _contains(p.configuration, configuration)]
        if not found:
            return False
        if kind == "StepScaling" and not any(
            alarm.policy == found[0].name and alarm.condition.startswith(NO_CAPACITY_METRIC)
            for alarm in applied.alarms
        ):
            return False
    return True


def _contains(described: Any, wanted: Any) -> bool:
    """Whether `described` (as the service answers) holds everything of `wanted` (as the release puts
    it): the service adds defaults (DisableScaleIn, ...), and answers 70 for 70.0."""
    if isinstance(wanted, Mapping):
        return isinstance(described, Mapping) and all(
            key in described and _contains(described[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(described, list | tuple)
            and len(described) == len(wanted)
            and all(_contains(d, w) for d, w in zip(described, wanted, strict=True))
        )
    return bool(described == wanted)


# --- the size of a new fleet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetSize:
    """How many instances the release's new fleet gets."""

    count: int
    from_live: bool  # autoscaling owns the live variant's size, and the new fleet takes it over
    note: str | None = None  # why, when it differs from endpoint.instance_count


def fleet_size(config: ReleaseConfig, live: LiveEndpoint | None) -> FleetSize:
    """The new fleet's size: the config's count, unless autoscaling manages the variant being replaced.

    Then the endpoint serves on whatever capacity autoscaling gave it, and a fleet of the config's count
    would drop it (an endpoint scaled out to 8 would go back to 1 at every release): the new fleet takes
    the live capacity, held to the scaling bounds (the config's when it registers scaling, else the ones
    registered)."""
    wanted = config.endpoint.instance_count
    plain = FleetSize(wanted, False)
    if live is None or config.endpoint.type not in ("realtime", "async"):
        return plain
    served = _replaced(config, live)
    if served is None or served.current_instance_count is None:
        return plain
    resource_id = naming.scalable_resource_id(live.name, served.variant)
    target = registered_target(resource_id)
    if target is None:
        return plain
    if config.scaling.enabled:
        low, high = config.scaling.min_capacity, config.scaling.max_capacity
    else:
        low, high = int(target["MinCapacity"]), int(target["MaxCapacity"])
    current = int(served.current_instance_count)
    # An endpoint config needs an instance; an async fleet at zero starts on one and scales in again.
    count = max(1, min(max(current, low), high))
    note = None
    if count != wanted:
        note = (
            f"the new fleet has {count} instance(s), the capacity autoscaling keeps {resource_id} at "
            f"({current} now, bounds {low}-{high}), not endpoint.instance_count {wanted}"
        )
    return FleetSize(count, True, note)


def _replaced(config: ReleaseConfig, live: LiveEndpoint) -> ServedModel | None:
    """The live variant the release's variant replaces: the one of the same name, or the only one."""
    named = [v for v in live.variants if v.variant == config.endpoint.variant_name]
    if named:
        return named[0]
    return live.variants[0] if len(live.variants) == 1 else None


# --- an async variant at zero instances ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleFromZero:
    """How a variant at zero instances gets its first one back."""

    resource_id: str
    alarm: str | None  # the alarm whose step policy adds an instance; None: nothing will
    alarm_wait_s: float  # how long that alarm may take to fire once requests wait (`metric_timing`)


def scale_from_zero(endpoint: str, variant: str) -> ScaleFromZero:
    """What brings `variant` back from zero instances: a step policy that adds capacity, driven by an
    alarm (the release's HasBacklogWithoutCapacity one, or the team's own)."""
    resource_id = naming.scalable_resource_id(endpoint, variant)
    none = ScaleFromZero(resource_id, None, 0.0)
    target = registered_target(resource_id)
    suspended = (target or {}).get("SuspendedState", {})
    if target is None or int(target["MaxCapacity"]) < 1 or suspended.get("DynamicScalingOutSuspended"):
        return none
    found: list[tuple[float, str]] = []
    for policy in _policies(resource_id):
        steps = policy.get("StepScalingPolicyConfiguration", {}).get("StepAdjustments", [])
        if policy.get("PolicyType") != "StepScaling" or not any(s["ScalingAdjustment"] > 0 for s in steps):
            continue
        for alarm in _alarms_driving(policy):
            if alarm.get("ActionsEnabled", True):
                fires_after_s = metric_timing.minimum_bake_s(
                    int(alarm.get("Period", metric_timing.STANDARD_PERIOD_S)),
                    int(alarm.get("EvaluationPeriods", 1)),
                )
                found.append((float(fires_after_s), str(alarm["AlarmName"])))
    if not found:
        return none
    wait, name = min(found)
    return ScaleFromZero(resource_id, name, wait)


# --- applying ----------------------------------------------------------------------------------------------


def apply_scaling(plan: ScalingPlan, *, tags: Sequence[Mapping[str, str]], ledger: Ledger) -> AppliedScaling:
    """Register the variant and attach this release's policies (and alarm), replacing earlier releases'.

    Whatever was registered before is snapshotted into the ledger entry first, so an unwind puts the
    previous release's scaling back exactly. Policies and alarms a team added to the variant stay.
    """
    log = run_logger()
    autoscaling = aws.client("application-autoscaling")
    ours = [
        e for e in ledger.find(AUTOSCALING_TARGET, plan.resource_id) if e.attrs.get("purpose") == "release"
    ]
    if not ours:  # a rerun of the same release must not snapshot its own registration as "previous"
        previous = snapshot(plan.resource_id)
        ledger.record(
            AUTOSCALING_TARGET,
            plan.resource_id,
            endpoint=plan.endpoint,
            variant=plan.variant,
            purpose="release",
            previous=previous,
        )
        if previous is not None:
            _remove_policies(plan.resource_id, previous, releases_of=plan.endpoint)
    autoscaling.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=plan.resource_id,
        ScalableDimension=DIMENSION,
        MinCapacity=plan.min_capacity,
        MaxCapacity=plan.max_capacity,
        Tags={t["Key"]: t["Value"] for t in tags},
    )
    log.info("registered %s for autoscaling (%d-%d)", plan.resource_id, plan.min_capacity, plan.max_capacity)
    _put_tracking_policy(plan, ledger)
    if plan.scale_from_zero:
        step_arn = _put_step_policy(plan, ledger)
        _put_no_capacity_alarm(plan, step_arn, tags, ledger)
    applied = read_scaling(plan.resource_id)
    if applied is None:
        raise ResourceFailed(
            f"scalable-target {plan.resource_id}",
            "not registered",
            "DescribeScalableTargets does not list it right after RegisterScalableTarget; the ledger "
            "holds what was put, an unwind or cleanup removes it",
        )
    return applied


def _tracking_configuration(plan: ScalingPlan) -> dict[str, Any]:
    if plan.asynchronous:
        metric: dict[str, Any] = {
            "CustomizedMetricSpecification": {
                "MetricName": BACKLOG_METRIC,
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": plan.endpoint}],
                "Statistic": "Average",
            }
        }
    else:
        metric = {"PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC}}
    return {
        "TargetValue": plan.target_value,
        "ScaleInCooldown": plan.scale_in_cooldown_s,
        "ScaleOutCooldown": plan.scale_out_cooldown_s,
        **metric,
    }


def _step_configuration(plan: ScalingPlan) -> dict[str, Any]:
    return {
        "AdjustmentType": "ChangeInCapacity",
        "MetricAggregationType": "Average",
        "Cooldown": plan.scale_out_cooldown_s,
        # Any backlog while at zero starts one instance; target tracking takes it from there.
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
    }


def _put_tracking_policy(plan: ScalingPlan, ledger: Ledger) -> str:
    arn = aws.client("application-autoscaling").put_scaling_policy(
        PolicyName=plan.tracking_policy_name,
        ServiceNamespace=NAMESPACE,
        ResourceId=plan.resource_id,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=_tracking_configuration(plan),
    )["PolicyARN"]
    ledger.record(AUTOSCALING_POLICY, plan.tracking_policy_name, target=plan.resource_id, arn=arn)
    return str(arn)


def _put_step_policy(plan: ScalingPlan, ledger: Ledger) -> str:
    arn = aws.client("application-autoscaling").put_scaling_policy(
        PolicyName=plan.step_policy_name,
        ServiceNamespace=NAMESPACE,
        ResourceId=plan.resource_id,
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration=_step_configuration(plan),
    )["PolicyARN"]
    ledger.record(AUTOSCALING_POLICY, plan.step_policy_name, target=plan.resource_id, arn=arn)
    return str(arn)


def _put_no_capacity_alarm(
    plan: ScalingPlan, step_policy_arn: str, tags: Sequence[Mapping[str, str]], ledger: Ledger
) -> None:
    # Intent first: a put whose answer is lost still leaves the alarm where an unwind looks.
    entry = ledger.intend(CLOUDWATCH_ALARM, plan.alarm_name, purpose="scale-from-zero")
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=plan.alarm_name,
        AlarmDescription=f"Start an instance of {plan.endpoint} when requests wait and none is running",
        Namespace="AWS/SageMaker",
        MetricName=NO_CAPACITY_METRIC,
        Dimensions=[{"Name": "EndpointName", "Value": plan.endpoint}],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        AlarmActions=[step_policy_arn],
        Tags=[{"Key": t["Key"], "Value": t["Value"]} for t in tags],
    )
    ledger.confirm(entry)


def suspend_for_update(
    live: LiveEndpoint, new_variants: Sequence[Mapping[str, Any]], ledger: Ledger
) -> list[str]:
    """Take autoscaling off the live variants that an update to `new_variants` removes or re-types.

    Each one is snapshotted into the ledger before it is removed; unwinding that entry registers it
    again (after the endpoint is back on its old config). Returns the suspended resource ids.
    """
    wanted = {v["VariantName"]: v.get("InstanceType") for v in new_variants}
    suspended = []
    for served in live.variants:
        if served.variant in wanted and wanted[served.variant] == served.instance_type:
            continue
        resource_id = naming.scalable_resource_id(live.name, served.variant)
        previous = snapshot(resource_id)
        if previous is None:
            continue
        ledger.record(
            AUTOSCALING_TARGET,
            resource_id,
            endpoint=live.name,
            variant=served.variant,
            purpose="suspended",
            previous=previous,
        )
        remove_target(resource_id)
        run_logger().info(
            "took %s off autoscaling for the update (restored if the release fails)", resource_id
        )
        suspended.append(resource_id)
    return suspended


# --- removing and restoring (used by tasks/lifecycle/unwind.py)
# ----------------------------------------------------


def remove_target(resource_id: str) -> None:
    """Delete every policy on the target, then deregister it (missing pieces are fine).

    Deregistering removes every policy and every scheduled action, a team's too: the snapshot taken
    before (the ledger's) is what puts them back."""
    current = snapshot(resource_id)
    if current is None:
        return
    _remove_policies(resource_id, current, releases_of=None)
    aws.client("application-autoscaling").deregister_scalable_target(
        ServiceNamespace=NAMESPACE, ResourceId=resource_id, ScalableDimension=DIMENSION
    )


def _remove_policies(resource_id: str, snap: Mapping[str, Any], *, releases_of: str | None) -> None:
    """Delete the snapshotted policies and the alarms of its step policies. `releases_of`: an endpoint
    whose releases' pieces alone go, the policies they put (by name) and the alarms they created (by
    their managed-by tag); None: all of them."""
    autoscaling = aws.client("application-autoscaling")
    for policy in snap["Policies"]:
        if releases_of is not None and not is_release_policy(releases_of, str(policy["PolicyName"])):
            continue
        try:
            autoscaling.delete_scaling_policy(
                PolicyName=policy["PolicyName"],
                ServiceNamespace=NAMESPACE,
                ResourceId=resource_id,
                ScalableDimension=DIMENSION,
            )
        except Exception as exc:
            if not _missing(exc):
                raise
    # Alarms that drove deleted step policies would fire into nothing; they go with them.
    names = [
        alarm["AlarmName"] for alarm in snap["Alarms"] if releases_of is None or _created_by_release(alarm)
    ]
    if names:
        aws.client("cloudwatch").delete_alarms(AlarmNames=names)


def _created_by_release(alarm: Mapping[str, Any]) -> bool:
    return {"Key": naming.MANAGED_BY_KEY, "Value": naming.MANAGED_BY_VALUE} in alarm.get("Tags", [])


def restore(snap: Mapping[str, Any]) -> None:
    """Register a snapshotted target again, with its policies and the alarms of its step policies."""
    resource_id = str(snap["ResourceId"])
    autoscaling = aws.client("application-autoscaling")
    register: dict[str, Any] = {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id,
        "ScalableDimension": DIMENSION,
        "MinCapacity": snap["MinCapacity"],
        "MaxCapacity": snap["MaxCapacity"],
    }
    if snap.get("SuspendedState"):
        register["SuspendedState"] = snap["SuspendedState"]
    autoscaling.register_scalable_target(**register)
    new_arns: dict[str, str] = {}
    for policy in snap["Policies"]:
        body = {key: policy[key] for key in _POLICY_BODIES if key in policy}
        arn = autoscaling.put_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=NAMESPACE,
            ResourceId=resource_id,
            ScalableDimension=DIMENSION,
            PolicyType=policy["PolicyType"],
            **body,
        )["PolicyARN"]
        if policy.get("PolicyARN"):
            new_arns[policy["PolicyARN"]] = str(arn)
    cloudwatch = aws.client("cloudwatch")
    for alarm in snap["Alarms"]:
        # A re-created policy has a new ARN; point the alarm's actions at it.
        request = dict(alarm)
        for key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            if key in request:
                request[key] = [new_arns.get(action, action) for action in request[key]]
        cloudwatch.put_metric_alarm(**request)
    for action in snap.get("ScheduledActions", []):  # ledgers written before scheduled actions were kept
        autoscaling.put_scheduled_action(
            ServiceNamespace=NAMESPACE, ResourceId=resource_id, ScalableDimension=DIMENSION, **action
        )
    run_logger().info("restored autoscaling of %s", resource_id)


def delete_policy(resource_id: str, policy_name: str) -> None:
    aws.client("application-autoscaling").delete_scaling_policy(
        PolicyName=policy_name,
        ServiceNamespace=NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
    )


def delete_alarm(name: str) -> None:
    aws.client("cloudwatch").delete_alarms(AlarmNames=[name])


def _missing(exc: BaseException) -> bool:
    # Application Auto Scaling answers a missing policy or target with a ValidationException.
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    return aws.is_not_found(exc) or message.startswith(
        ("No scaling policy found", "No scalable target found")
    )
