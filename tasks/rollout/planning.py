"""How traffic moves to the new model: the strategy for this endpoint, the steps, the requests. Pure.

Strategies:
* `create`: the endpoint did not exist; it is created on the new model and baked under the alarms.
* `all_at_once`, `canary`, `linear`: SageMaker deployment guardrails, an UpdateEndpoint with a
  DeploymentConfig (BlueGreenUpdatePolicy + AutoRollbackConfiguration). The variant name stays, so
  the new config must keep the live variant's name; canary and linear need at least 2 instances
  (a canary is a share of the new fleet's instances). Serverless and async endpoints update without
  a DeploymentConfig and are baked afterwards.
* `variant_shift`: the new model joins as a second production variant at weight 0 and its share
  moves through the steps with UpdateEndpointWeightsAndCapacities; works on one instance.
* `auto`: create for a new endpoint; all_at_once for serverless/async; canary when the live variant
  and the new config both have 2+ instances and the same single variant name; else variant_shift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tasks.config import ReleaseConfig
from tasks.core.errors import ConfigError
from tasks.sagemaker.hosting import LiveEndpoint

# What a plan does (the strategies above); `RequestedStrategy` is what the config may ask for.
Strategy = Literal["create", "all_at_once", "canary", "linear", "variant_shift"]
RequestedStrategy = Literal["all_at_once", "canary", "linear", "variant_shift", "auto"]

GUARDRAILS: frozenset[Strategy] = frozenset({"all_at_once", "canary", "linear"})
MAX_WAIT_INTERVAL_S = 3600
MIN_EXECUTION_TIMEOUT_S, MAX_EXECUTION_TIMEOUT_S = 600, 28800


@dataclass(frozen=True)
class RolloutPlan:
    """What the rollout will do, decided before anything changes."""

    strategy: Strategy
    requested: RequestedStrategy
    reason: str
    steps: tuple[float, ...]  # cumulative % of traffic on the new model, ending at 100
    bake_s: int
    final_bake_s: int
    instance_count: int
    step_instances: int | None = None  # canary size / linear step, in instances (guardrails)

    @property
    def uses_guardrails(self) -> bool:
        return self.strategy in GUARDRAILS


def plan_rollout(config: ReleaseConfig, live: LiveEndpoint | None) -> RolloutPlan:
    """The rollout of `config` onto `live` (None: the endpoint does not exist yet)."""
    rollout = config.rollout
    requested = rollout.strategy
    count = config.endpoint.instance_count
    if live is None:
        return RolloutPlan(
            "create", requested, "the endpoint does not exist yet", (100.0,), 0, rollout.final_bake_s, count
        )
    strategy, reason = _choose(config, live)
    if strategy == "variant_shift":
        steps = tuple(float(s) for s in rollout.traffic_steps("variant_shift"))
        return RolloutPlan(strategy, requested, reason, steps, rollout.bake_s, rollout.final_bake_s, count)
    if strategy == "all_at_once":
        return RolloutPlan(strategy, requested, reason, (100.0,), rollout.bake_s, rollout.final_bake_s, count)
    if strategy == "canary":
        size = _canary_instances(config, count)
        steps = (round(100.0 * size / count, 1), 100.0)
        return RolloutPlan(
            strategy, requested, reason, steps, rollout.bake_s, rollout.final_bake_s, count, size
        )
    size = _linear_instances(config, count)
    shares = [100.0 * size * k / count for k in range(1, math.ceil(count / size))]
    steps = (*(round(s, 1) for s in shares), 100.0)
    return RolloutPlan(strategy, requested, reason, steps, rollout.bake_s, rollout.final_bake_s, count, size)


def _choose(config: ReleaseConfig, live: LiveEndpoint) -> tuple[Strategy, str]:
    requested = config.rollout.strategy
    endpoint = config.endpoint
    same_variant = len(live.variants) == 1 and live.variants[0].variant == endpoint.variant_name
    live_count = min((v.instance_count or 0) for v in live.variants) if live.variants else 0
    instance_backed = endpoint.type == "realtime"
    if requested == "auto":
        if not instance_backed:
            return "all_at_once", f"a {endpoint.type} endpoint cannot shift traffic between variants"
        if same_variant and live_count >= 2 and endpoint.instance_count >= 2:
            return (
                "canary",
                f"{live_count} live and {endpoint.instance_count} new instances: guardrails canary",
            )
        live_names = ", ".join(v.variant for v in live.variants)
        why = (
            f"live variant(s) {live_names} differ from {endpoint.variant_name}"
            if not same_variant
            else f"{min(live_count, endpoint.instance_count)} instance(s) are too few for a guardrails canary"
        )
        return "variant_shift", f"{why}: the new model joins as a second variant"
    if requested in ("canary", "linear") and (endpoint.instance_count < 2 or live_count < 2):
        raise ConfigError(
            "rollout.strategy",
            f"{requested} through SageMaker's guardrails needs 2+ instances; endpoint {endpoint.name} "
            f"has {live_count} live and asks for {endpoint.instance_count}",
            "use rollout.strategy: variant_shift (or auto), or raise endpoint.instance_count to 2",
        )
    if requested in GUARDRAILS and instance_backed and not same_variant:
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
    size = max(1, math.floor(count * percent / 100))
    if size > count // 2:
        raise ConfigError(
            "rollout.canary_percent",
            f"a canary of {percent}% is {size} of {count} instances; SageMaker allows at most half",
            f"use a canary of at most {100 * (count // 2) // count}%",
        )
    return size


def _linear_instances(config: ReleaseConfig, count: int) -> int:
    rollout = config.rollout
    percent = rollout.linear_step_percent
    if rollout.steps is not None:
        body = [step for step in rollout.steps if step != 100]
        increments = {b - a for a, b in zip([0, *body], body, strict=False)}
        if len(increments) != 1:
            raise ConfigError(
                "rollout.steps",
                f"guardrails move linear traffic in equal steps, the config lists {rollout.steps}",
                "give equal steps (e.g. [25, 50, 75, 100]), set linear_step_percent, or use variant_shift",
            )
        percent = increments.pop()
    size = max(1, math.floor(count * percent / 100))
    if size > count // 2:
        raise ConfigError(
            "rollout.linear_step_percent",
            f"a linear step of {percent}% is {size} of {count} instances; SageMaker allows at most half",
            f"use steps of at most {100 * (count // 2) // count}%",
        )
    return size


def deployment_config(
    plan: RolloutPlan, alarm_names: Sequence[str], *, provisioning_s: float
) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig for a guardrails plan.

    MaximumExecutionTimeoutInSeconds covers provisioning the new fleet, every bake and the final
    wait, within SageMaker's 600-28800 s.
    """
    if not plan.uses_guardrails:
        raise ValueError(f"strategy {plan.strategy} does not use a DeploymentConfig")
    routing: dict[str, Any] = {
        "Type": plan.strategy.upper(),
        "WaitIntervalInSeconds": min(plan.bake_s, MAX_WAIT_INTERVAL_S),
    }
    if plan.strategy == "canary":
        routing["CanarySize"] = {"Type": "INSTANCE_COUNT", "Value": plan.step_instances}
    elif plan.strategy == "linear":
        routing["LinearStepSize"] = {"Type": "INSTANCE_COUNT", "Value": plan.step_instances}
    planned = provisioning_s + plan.bake_s * len(plan.steps) + plan.final_bake_s
    timeout = int(min(MAX_EXECUTION_TIMEOUT_S, max(MIN_EXECUTION_TIMEOUT_S, math.ceil(planned))))
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": min(plan.final_bake_s, MAX_WAIT_INTERVAL_S),
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
