"""How Application Auto Scaling turns an alarm into a capacity: pure functions, no I/O.

* Target tracking owns two alarms per policy, as AWS makes them: `TargetTracking-<resource>-AlarmHigh-<id>`
  (3 of 3 one-minute datapoints above the target) and `…-AlarmLow-<id>` (15 of 15 below 90 % of it; none
  when DisableScaleIn). Either asks for ceil(metric * capacity / target).
* Step scaling applies the step whose bounds (relative to the alarm's threshold) hold the metric:
  ChangeInCapacity, PercentChangeInCapacity (with MinAdjustmentMagnitude) or ExactCapacity.
* Cooldowns are per policy. During a policy's scale-out cooldown a further scale-out is applied only
  when it asks for more than the capacity already set (for a step policy computed from the capacity
  before the cooldown began: the added capacity counts as part of the next scale-out). A scale-in waits
  for the policy's scale-in cooldown; a scale-out ends that cooldown at once.
* Several policies at once: the largest capacity wins, scale-out over scale-in; the result is held to
  MinCapacity and MaxCapacity.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SAGEMAKER_METRICS = "AWS/SageMaker"
# The predefined metric a SageMaker variant can track, and the CloudWatch metric behind it.
PREDEFINED = {"SageMakerVariantInvocationsPerInstance": ("InvocationsPerInstance", "Sum")}
# AWS's default cooldown for SageMaker variants when a policy gives none.
DEFAULT_COOLDOWN_S = 300.0
HIGH_PERIODS = 3
LOW_PERIODS = 15
LOW_SHARE = 0.9
ALARM_PERIOD_S = 60
# While its alarm stays in ALARM a policy is invoked again each minute (CloudWatch re-runs the action).
REINVOKE_AFTER_S = 60.0


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def parse_resource_id(value: str) -> tuple[str, str] | None:
    """(endpoint, variant) from `endpoint/<name>/variant/<name>`; None for anything else."""
    parts = value.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant" or not parts[1] or not parts[3]:
        return None
    return parts[1], parts[3]


class PolicyProblem(ValueError):
    """A policy configuration the emulator cannot act on; the message names the field and the fix."""


# --- target tracking's own alarms ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedMetric:
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str
    unit: str | None = None


def tracked_metric(config: Mapping[str, Any], endpoint: str, variant: str) -> TrackedMetric:
    """The CloudWatch metric a TargetTrackingScalingPolicyConfiguration tracks."""
    predefined = config.get("PredefinedMetricSpecification")
    customized = config.get("CustomizedMetricSpecification")
    if predefined:
        kind = predefined.get("PredefinedMetricType")
        if kind not in PREDEFINED:
            raise PolicyProblem(
                f"PredefinedMetricSpecification.PredefinedMetricType {kind!r} is not one a SageMaker "
                f"variant's DesiredInstanceCount can track; use {', '.join(PREDEFINED)} or a "
                "CustomizedMetricSpecification"
            )
        name, stat = PREDEFINED[kind]
        dims: tuple[tuple[str, str], ...] = (("EndpointName", endpoint), ("VariantName", variant))
        return TrackedMetric(SAGEMAKER_METRICS, name, dims, stat)
    if customized:
        if customized.get("Metrics"):
            raise PolicyProblem(
                "CustomizedMetricSpecification.Metrics (metric math) is not evaluated by the emulator; give "
                "MetricName, Namespace, Dimensions and Statistic"
            )
        missing = [key for key in ("MetricName", "Namespace", "Statistic") if not customized.get(key)]
        if missing:
            raise PolicyProblem(f"CustomizedMetricSpecification needs {', '.join(missing)}")
        dims = tuple(sorted((str(d["Name"]), str(d["Value"])) for d in customized.get("Dimensions") or []))
        return TrackedMetric(
            str(customized["Namespace"]),
            str(customized["MetricName"]),
            dims,
            str(customized["Statistic"]),
            customized.get("Unit"),
        )
    raise PolicyProblem(
        "TargetTrackingScalingPolicyConfiguration needs PredefinedMetricSpecification or "
        "CustomizedMetricSpecification"
    )


def tracking_alarms(
    policy: Mapping[str, Any], endpoint: str, variant: str, token: str | None = None
) -> list[dict[str, Any]]:
    """PutMetricAlarm requests for a target tracking policy's alarms, as AWS creates them."""
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    metric = tracked_metric(config, endpoint, variant)
    target = float(config["TargetValue"])
    action = f"{policy['PolicyARN']}:createdBy/{token or uuid.uuid4()}"
    rid = policy["ResourceId"]
    common: dict[str, Any] = {
        "AlarmDescription": f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {action}.",
        "ActionsEnabled": True,
        "AlarmActions": [action],
        "Namespace": metric.namespace,
        "MetricName": metric.metric_name,
        "Dimensions": [{"Name": name, "Value": value} for name, value in metric.dimensions],
        "Statistic": metric.statistic,
        "Period": ALARM_PERIOD_S,
        "TreatMissingData": "missing",
    }
    if metric.unit:
        common["Unit"] = metric.unit
    alarms = [
        {
            "AlarmName": f"TargetTracking-{rid}-AlarmHigh-{uuid.uuid4()}",
            "EvaluationPeriods": HIGH_PERIODS,
            "DatapointsToAlarm": HIGH_PERIODS,
            "Threshold": target,
            "ComparisonOperator": "GreaterThanThreshold",
            **common,
        }
    ]
    if not config.get("DisableScaleIn"):
        alarms.append(
            {
                "AlarmName": f"TargetTracking-{rid}-AlarmLow-{uuid.uuid4()}",
                "EvaluationPeriods": LOW_PERIODS,
                "DatapointsToAlarm": LOW_PERIODS,
                "Threshold": round(target * LOW_SHARE, 10),
                "ComparisonOperator": "LessThanThreshold",
                **common,
            }
        )
    return alarms


def alarm_matches(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether an existing TargetTracking alarm already says what `wanted` says (names aside)."""
    keys = (
        "Namespace",
        "MetricName",
        "Statistic",
        "Period",
        "EvaluationPeriods",
        "Threshold",
        "ComparisonOperator",
    )
    if any(existing.get(key) != wanted.get(key) for key in keys):
        return False
    dims = lambda alarm: sorted((d["Name"], d["Value"]) for d in alarm.get("Dimensions") or [])  # noqa: E731
    return dims(existing) == dims(wanted)


def is_high(alarm: Mapping[str, Any]) -> bool:
    return str(alarm.get("ComparisonOperator", "")).startswith("GreaterThan")


def acts_for(alarm: Mapping[str, Any], policy_arn: str) -> bool:
    """Whether the alarm's AlarmActions invoke the policy (the ARN itself, or a target tracking alarm's)."""
    return any(
        a == policy_arn or a.startswith(f"{policy_arn}:createdBy/") for a in alarm.get("AlarmActions") or []
    )


# --- capacities --------------------------------------------------------------------------------------------


def tracking_capacity(value: float, capacity: int, target: float) -> int:
    """ceil(metric * capacity / target): the capacity that brings the metric to the target."""
    wanted = value * capacity / target
    return max(0, math.ceil(round(wanted, 9)))


def step_capacity(config: Mapping[str, Any], capacity: int, value: float, threshold: float) -> int | None:
    """The capacity a StepScalingPolicyConfiguration asks for; None when no step holds the metric."""
    difference = value - threshold
    chosen = None
    for step in config.get("StepAdjustments") or []:
        lower = step.get("MetricIntervalLowerBound")
        upper = step.get("MetricIntervalUpperBound")
        low = -math.inf if lower is None else float(lower)
        high = math.inf if upper is None else float(upper)
        # AWS: lower bound inclusive and upper exclusive above the threshold, the reverse below it.
        inside = (low <= difference < high) if difference >= 0 else (low < difference <= high)
        if inside:
            chosen = int(step["ScalingAdjustment"])
            break
    if chosen is None:
        return None
    kind = config.get("AdjustmentType", "ChangeInCapacity")
    if kind == "ExactCapacity":
        return chosen
    if kind == "PercentChangeInCapacity":
        change = capacity * chosen / 100.0
        change_int = math.floor(change) if change > 0 else math.ceil(change)
        magnitude = int(config.get("MinAdjustmentMagnitude") or 0)
        if change_int == 0 and chosen != 0:
            change_int = 1 if chosen > 0 else -1
        if magnitude and abs(change_int) < magnitude:
            change_int = magnitude if chosen > 0 else -magnitude
        return capacity + change_int
    return capacity + chosen


def cooldowns(policy: Mapping[str, Any]) -> tuple[float, float]:
    """(scale-out, scale-in) cooldown of a policy in AWS seconds."""
    if policy.get("PolicyType") == "TargetTrackingScaling":
        config = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
        out = config.get("ScaleOutCooldown")
        inward = config.get("ScaleInCooldown")
        return (
            DEFAULT_COOLDOWN_S if out is None else float(out),
            DEFAULT_COOLDOWN_S if inward is None else float(inward),
        )
    config = policy.get("StepScalingPolicyConfiguration") or {}
    both = config.get("Cooldown")
    value = DEFAULT_COOLDOWN_S if both is None else float(both)
    return value, value


@dataclass
class PolicyMemory:
    """What one policy did lately (real epoch seconds), for its cooldowns and re-invocations."""

    last_out: float | None = None
    base_out: int | None = None  # the capacity before the scale-out that began the cooldown
    last_in: float | None = None
    invoked: dict[str, float] = field(default_factory=dict)  # alarm name -> when it last invoked us


@dataclass(frozen=True)
class Candidate:
    """One policy's request for a capacity, and what caused it."""

    capacity: int
    policy_name: str
    policy_arn: str
    alarm_name: str
    scale_out: bool


def due(memory: PolicyMemory, alarm_name: str, state_since: float, now: float, reinvoke_after: float) -> bool:
    """Whether an alarm in ALARM invokes its policy now: newly in ALARM, or a minute after the last time."""
    last = memory.invoked.get(alarm_name)
    return last is None or state_since > last or now - last >= reinvoke_after


def policy_candidate(
    policy: Mapping[str, Any],
    alarm: Mapping[str, Any],
    value: float,
    desired: int,
    memory: PolicyMemory,
    now: float,
    cooldown_real: tuple[float, float],
) -> Candidate | None:
    """The capacity `policy` asks for, invoked by `alarm` whose metric stands at `value`; None to leave it.

    `cooldown_real` is the policy's (scale-out, scale-in) cooldown in real seconds.
    """
    name, arn = str(policy["PolicyName"]), str(policy["PolicyARN"])
    out_cooldown, in_cooldown = cooldown_real
    in_out_cooldown = memory.last_out is not None and now - memory.last_out < out_cooldown
    if policy.get("PolicyType") == "TargetTrackingScaling":
        config = policy["TargetTrackingScalingPolicyConfiguration"]
        wanted = tracking_capacity(value, desired, float(config["TargetValue"]))
        if is_high(alarm):
            if wanted <= desired:
                return None
            return Candidate(wanted, name, arn, str(alarm["AlarmName"]), True)
        if config.get("DisableScaleIn") or wanted >= desired:
            return None
        if memory.last_in is not None and now - memory.last_in < in_cooldown:
            return None
        return Candidate(wanted, name, arn, str(alarm["AlarmName"]), False)
    config = policy.get("StepScalingPolicyConfiguration") or {}
    base = memory.base_out if in_out_cooldown and memory.base_out is not None else desired
    wanted_step = step_capacity(config, base, value, float(alarm["Threshold"]))
    if wanted_step is None or wanted_step == desired:
        return None
    if wanted_step > desired:
        return Candidate(wanted_step, name, arn, str(alarm["AlarmName"]), True)
    if memory.last_in is not None and now - memory.last_in < in_cooldown:
        return None
    wanted_in = step_capacity(config, desired, value, float(alarm["Threshold"]))
    if wanted_in is None or wanted_in >= desired:
        return None
    return Candidate(wanted_in, name, arn, str(alarm["AlarmName"]), False)


def choose(candidates: Sequence[Candidate], desired: int, low: int, high: int) -> Candidate | None:
    """The winning request held to [low, high], or None when the capacity stays as it is."""
    outs = [c for c in candidates if c.scale_out and c.capacity > desired]
    ins = [c for c in candidates if not c.scale_out and c.capacity < desired]
    pool = outs or ins
    if not pool:
        return None
    best = max(pool, key=lambda c: c.capacity)
    bounded = min(max(best.capacity, low), high)
    if bounded == desired:
        return None
    return Candidate(bounded, best.policy_name, best.policy_arn, best.alarm_name, best.scale_out)


def remember(memory: PolicyMemory, candidate: Candidate, desired_before: int, now: float) -> None:
    """Start the cooldown the applied candidate begins."""
    if candidate.scale_out:
        if memory.last_out is None or memory.base_out is None:
            memory.base_out = desired_before
        memory.last_out = now
        memory.last_in = None  # a scale-out ends the scale-in cooldown
    else:
        memory.last_in = now
        memory.base_out = None


def expire(memory: PolicyMemory, now: float, out_cooldown_real: float) -> None:
    """Forget the scale-out base once the scale-out cooldown is over."""
    if memory.last_out is not None and now - memory.last_out >= out_cooldown_real:
        memory.base_out = None
