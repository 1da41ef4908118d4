"""How traffic moves to the new model: the strategy for this endpoint, the steps, the requests. Pure.

Strategies:
* `create`: the endpoint did not exist; it is created on the new model and baked under the alarms.
* `all_at_once`, `canary`, `linear`: SageMaker deployment guardrails, an UpdateEndpoint with a
  DeploymentConfig (BlueGreenUpdatePolicy + AutoRollbackConfiguration). The variant name stays, so
  the new config must keep the live variant's name; canary and linear need at least 2 instances
  (a canary is a share of the new fleet's instances, at most half of it; a linear step is 10-50% of
  it, so a percentage that rounds below 10% is raised to the fewest whole instances that reach it).
  Every bake and the final bake must fit under MaximumExecutionTimeoutInSeconds (at most 8 h): a plan
  whose waits do not fit is refused, naming the fields to shorten (tasks/config/guardrails.py holds
  SageMaker's bounds). Serverless and async endpoints update without a DeploymentConfig and are baked
  afterwards.
* `variant_shift`: the new model joins as a second production variant at weight 0 and its share
  moves through the steps with UpdateEndpointWeightsAndCapacities; works on one instance.
* `auto`: create for a new endpoint; all_at_once for serverless/async; variant_shift under manual
  approval; canary when the live variant and the new config both have 2+ instances and the same single
  variant name; else variant_shift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tasks.config import GUARDRAIL_STRATEGIES, ReleaseConfig, RolloutStrategy, guardrails
from tasks.core.errors import ConfigError
from tasks.sagemaker.hosting import LiveEndpoint, ServedModel
from tasks.sagemaker.scaling import FleetSize

# What a plan does (the strategies above); `RolloutStrategy` (tasks/config) is what the config may ask for.
Strategy = Literal["create", guardrails.GuardrailStrategy, "variant_shift"]


@dataclass(frozen=True)
class RolloutPlan:
    """What the rollout will do, decided before anything changes."""

    strategy: Strategy
    requested: RolloutStrategy
    reason: str
    steps: tuple[float, ...]  # cumulative % of traffic on the new model, ending at 100
    bake_s: int
    final_bake_s: int
    instance_count: int  # the new fleet's size
    step_instances: int | None = None  # canary size / linear step, in instances (guardrails)
    capacity_from_live: bool = False  # autoscaling owns the live fleet's size: the new fleet takes it over

    @property
    def uses_guardrails(self) -> bool:
        return self.strategy in GUARDRAIL_STRATEGIES


def plan_rollout(
    config: ReleaseConfig, live: LiveEndpoint | None, *, fleet: FleetSize | None = None
) -> RolloutPlan:
    """The rollout of `config` onto `live` (None: the endpoint does not exist yet).

    `fleet` is the new fleet's size when autoscaling owns the live one's (`scaling.fleet_size`): the
    new fleet, its canary and its linear steps are sized from it, not from endpoint.instance_count."""
    rollout = config.rollout
    requested = rollout.strategy
    count = fleet.count if fleet is not None else config.endpoint.instance_count
    from_live = fleet is not None and fleet.from_live
    if live is None:
        return RolloutPlan(
            "create", requested, "the endpoint does not exist yet", (100.0,), 0, rollout.final_bake_s, count
        )
    strategy, reason = _choose(config, live, count)
    if fleet is not None and fleet.note:
        reason += f"; {fleet.note}"
    size: int | None = None
    if strategy == "variant_shift":
        steps = tuple(float(s) for s in rollout.traffic_steps("variant_shift"))
    elif strategy == "all_at_once":
        steps = (100.0,)
    elif strategy == "canary":
        size = _canary_instances(config, count)
        steps = (round(100.0 * size / count, 1), 100.0)
    else:
        size, raised = _linear_instances(config, count)
        shares = [100.0 * size * k / count for k in range(1, guardrails.linear_step_count(count, size))]
        steps = (*(round(s, 1) for s in shares), 100.0)
        if raised:
            reason += (
                f"; {size} of {count} instances per step, the fewest whole instances that reach "
                f"SageMaker's {guardrails.LINEAR_MIN_PERCENT}% minimum"
            )
    plan = RolloutPlan(
        strategy,
        requested,
        reason,
        steps,
        rollout.bake_s,
        rollout.final_bake_s,
        count,
        size,
        capacity_from_live=from_live,
    )
    # Only a guardrails update of an instance-backed endpoint sends a DeploymentConfig, whose waits
    # SageMaker bounds; checked here too, so preflight refuses the plan before anything is created.
    if plan.uses_guardrails and config.endpoint.type == "realtime":
        check_waits(plan)
    return plan


def _serving(variant: ServedModel) -> int:
    """Instances serving the variant now (autoscaling may have changed its config's count)."""
    current = variant.current_instance_count
    return int(current if current is not None else variant.instance_count or 0)


def _choose(config: ReleaseConfig, live: LiveEndpoint, count: int) -> tuple[Strategy, str]:
    requested = config.rollout.strategy
    endpoint = config.endpoint
    same_variant = len(live.variants) == 1 and live.variants[0].variant == endpoint.variant_name
    live_count = min(_serving(v) for v in live.variants) if live.variants else 0
    instance_backed = endpoint.type == "realtime"
    if requested == "auto":
        if not instance_backed:
            return "all_at_once", f"a {endpoint.type} endpoint cannot shift traffic between variants"
        if config.rollout.approval == "manual":
            # Guardrails would move past the canary inside SageMaker, with nobody's decision.
            return "variant_shift", "manual approval: the release steps the traffic itself"
        if same_variant and live_count >= 2 and count >= 2:
            return (
                "canary",
                f"{live_count} live and {count} new instances: guardrails canary",
            )
        live_names = ", ".join(v.variant for v in live.variants)
        why = (
            f"live variant(s) {live_names} differ from {endpoint.variant_name}"
            if not same_variant
            else f"{min(live_count, count)} instance(s) are too few for a guardrails canary"
        )
        return "variant_shift", f"{why}: the new model joins as a second variant"
    if requested in ("canary", "linear") and (count < 2 or live_count < 2):
        raise ConfigError(
            "rollout.strategy",
            f"{requested} through SageMaker's guardrails needs 2+ instances; endpoint {endpoint.name} "
            f"has {live_count} live and asks for {count}",
            "use rollout.strategy: variant_shift (or auto), or raise endpoint.instance_count to 2",
        )
    if requested in GUARDRAIL_STRATEGIES and instance_backed and not same_variant:
        raise ConfigError(
            "endpoint.variant_name",
            f"{requested} keeps the variant name, but endpoint {endpoint.name} serves variant(s) "
            f"{', '.join(v.variant for v in live.variants)}, not {endpoint.variant_name}",
            "set endpoint.variant_name to the live variant's name, or use rollout.strategy: variant_shift",
        )
    if requested == "variant_shift" and not instance_backed:
        raise ConfigError(
            "rollout.strategy",
            f"variant_shift needs an instance-backed real-time endpoint, not {endpoint.type}",
            "use rollout.strategy: all_at_once",
        )
    return requested, f"{requested} as configured"


def _canary_instances(config: ReleaseConfig, count: int) -> int:
    rollout = config.rollout
    if rollout.steps is not None and len(rollout.steps) > 2:
        raise ConfigError(
            "rollout.steps",
            f"a guardrails canary has one step before 100%, the config lists {rollout.steps}",
            "give one step (e.g. [10, 100]) or use rollout.strategy: linear or variant_shift",
        )
    percent = rollout.steps[0] if rollout.steps else rollout.canary_percent
    size = guardrails.canary_instances(count, percent)
    if size > guardrails.half(count):
        raise ConfigError(
            "rollout.steps" if rollout.steps else "rollout.canary_percent",
            f"a canary of {percent}% is {size} of {count} instances; SageMaker allows at most half "
            "(CanarySize)",
            f"use a canary of at most {100 * guardrails.half(count) // count}%",
        )
    return size


def _linear_instances(config: ReleaseConfig, count: int) -> tuple[int, bool]:
    """Instances per linear step, and whether SageMaker's 10% minimum raised them above the percentage."""
    rollout = config.rollout
    field = "rollout.steps" if rollout.steps is not None else "rollout.linear_step_percent"
    percent = guardrails.linear_increment(rollout.steps, rollout.linear_step_percent)
    if percent is None:
        raise ConfigError(
            "rollout.steps",
            f"guardrails move linear traffic in equal steps, the config lists {rollout.steps}",
            "give equal steps (e.g. [25, 50, 75, 100]), set linear_step_percent, or use variant_shift",
        )
    low, high = guardrails.LINEAR_MIN_PERCENT, guardrails.LINEAR_MAX_PERCENT
    if not low <= percent <= high:
        raise ConfigError(
            field,
            f"a linear step of {percent}% is outside the {low}-{high}% of the fleet SageMaker's guardrails "
            "move per step (LinearStepSize)",
            f"use linear steps of {low} to {high}%, or rollout.strategy: variant_shift for finer steps",
        )
    size = guardrails.linear_instances(count, percent)
    if size > guardrails.half(count):
        raise ConfigError(
            field,
            f"a linear step of {percent}% is {size} of {count} instances; SageMaker allows at most half "
            "(LinearStepSize)",
            f"use steps of at most {100 * guardrails.half(count) // count}%",
        )
    return size, size > math.floor(count * percent / 100)


def check_waits(plan: RolloutPlan) -> None:
    """ConfigError when the plan's waits (a bake per step, then the final bake) reach SageMaker's
    largest MaximumExecutionTimeoutInSeconds: the update would be cut short and rolled back."""
    steps = len(plan.steps)
    if guardrails.waits_fit(plan.bake_s, plan.final_bake_s, steps):
        return
    step_field = "rollout.linear_step_percent (or rollout.steps)" if plan.strategy == "linear" else None
    problem, fix = guardrails.waits_problem_and_fix(
        plan.strategy, plan.bake_s, plan.final_bake_s, steps, step_field=step_field
    )
    raise ConfigError("rollout.bake_s", problem, fix)


def deployment_config(
    plan: RolloutPlan, alarm_names: Sequence[str], *, provisioning_s: float
) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig for a guardrails plan.

    MaximumExecutionTimeoutInSeconds covers provisioning the new fleet, every bake and the final
    wait, within SageMaker's 600-28800 s; it always exceeds the waits (a plan whose waits reach 28800 s
    is refused), and provisioning gets what is left of the 28800 s when its budget does not fit.
    """
    if not plan.uses_guardrails:
        raise ValueError(f"strategy {plan.strategy} does not use a DeploymentConfig")
    check_waits(plan)
    routing: dict[str, Any] = {
        "Type": plan.strategy.upper(),
        "WaitIntervalInSeconds": min(plan.bake_s, guardrails.MAX_WAIT_INTERVAL_S),
    }
    if plan.strategy == "canary":
        routing["CanarySize"] = {"Type": "INSTANCE_COUNT", "Value": plan.step_instances}
    elif plan.strategy == "linear":
        routing["LinearStepSize"] = {"Type": "INSTANCE_COUNT", "Value": plan.step_instances}
    waits = guardrails.total_wait_s(plan.bake_s, plan.final_bake_s, len(plan.steps))
    wanted = max(guardrails.MIN_EXECUTION_TIMEOUT_S, waits + 1, math.ceil(provisioning_s + waits))
    timeout = int(min(guardrails.MAX_EXECUTION_TIMEOUT_S, wanted))
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": min(plan.final_bake_s, guardrails.MAX_WAIT_INTERVAL_S),
            "MaximumExecutionTimeoutInSeconds": timeout,
        }
    }
    if alarm_names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": name} for name in alarm_names]}
    return config


def shifted_weights(old_weights: Mapping[str, float], new_variant: str, percent: float) -> dict[str, float]:
    """Variant weights putting `percent`% on `new_variant`; the old variants share the rest as before."""
    if not 0 <= percent <= 100:
        raise ValueError(f"traffic share {percent} is not within 0-100")
    total = sum(old_weights.values())
    if total <= 0:
        raise ValueError("the old variants have no weight to scale")
    weights = {name: round((100.0 - percent) * weight / total, 4) for name, weight in old_weights.items()}
    weights[new_variant] = float(percent)
    return weights
