"""SageMaker's bounds on deployment guardrails, shared by the config's checks (tasks/config/sections.py,
tasks/config/release.py) and the rollout's plan (tasks/rollout/planning.py). Pure arithmetic.

The sources, UpdateEndpoint's DeploymentConfig in the API reference and botocore's service model:

* TrafficRoutingConfig.CanarySize: `Value` at most 50% of the variant's total instance count.
* TrafficRoutingConfig.LinearStepSize: `Value` 10-50% of the variant's total instance count (the
  developer guide: "Each linear step should only be between 10-50% of the green fleet's capacity").
* CapacitySize.Value is at least 1 (an instance count, or a percentage with CAPACITY_PERCENT).
* WaitIntervalInSeconds and TerminationWaitInSeconds: 0-3600.
* BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds: 600-28800, and larger than the total
  waiting time of WaitIntervalInSeconds and TerminationWaitInSeconds.

A step is whole instances of the new fleet, so a percentage becomes instances: rounded down, as
SageMaker sizes CAPACITY_PERCENT, but never below the one instance (canary) or the 10% (linear)
that SageMaker accepts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

# The rollout strategies whose traffic SageMaker's deployment guardrails move (blue/green all at once, canary,
# linear), and all of rollout.strategy's choices: the release steps variant_shift itself, auto picks one.
GuardrailStrategy = Literal["all_at_once", "canary", "linear"]
RolloutStrategy = Literal[GuardrailStrategy, "variant_shift", "auto"]
GUARDRAIL_STRATEGIES: tuple[GuardrailStrategy, ...] = get_args(GuardrailStrategy)

LINEAR_MIN_PERCENT, LINEAR_MAX_PERCENT = 10, 50
CANARY_MAX_PERCENT = 50
MIN_EXECUTION_TIMEOUT_S, MAX_EXECUTION_TIMEOUT_S = 600, 28800
MAX_WAIT_INTERVAL_S = 3600


def half(count: int) -> int:
    """The most instances a canary or a linear step may hold: half the fleet."""
    return count // 2


def linear_min_instances(count: int) -> int:
    """The fewest instances a linear step may hold: 10% of the fleet, rounded up."""
    return max(1, math.ceil(count * LINEAR_MIN_PERCENT / 100))


def canary_instances(count: int, percent: float) -> int:
    """The canary's whole instances for `percent`% of a fleet of `count` (at least one)."""
    return max(1, math.floor(count * percent / 100))


def linear_instances(count: int, percent: float) -> int:
    """A linear step's whole instances for `percent`% of a fleet of `count`, raised to SageMaker's 10%."""
    return max(linear_min_instances(count), math.floor(count * percent / 100))


def linear_step_count(count: int, size: int) -> int:
    """Traffic steps of a linear shift moving `size` of `count` instances at a time (the last may be less)."""
    return math.ceil(count / size)


def linear_increment(steps: Sequence[int] | None, step_percent: int) -> int | None:
    """The percentage a linear shift adds per step: the equal increment of `steps` (None when they are
    not equal), else `step_percent`."""
    if steps is None:
        return step_percent
    body = [step for step in steps if step != 100]
    increments = {b - a for a, b in zip([0, *body], body, strict=False)}
    return increments.pop() if len(increments) == 1 else None


def total_wait_s(bake_s: int, final_bake_s: int, steps: int) -> int:
    """What a guardrails update waits in all: WaitIntervalInSeconds after each of its `steps` traffic
    steps, then TerminationWaitInSeconds before the old fleet goes."""
    return min(bake_s, MAX_WAIT_INTERVAL_S) * steps + min(final_bake_s, MAX_WAIT_INTERVAL_S)


def waits_fit(bake_s: int, final_bake_s: int, steps: int) -> bool:
    """Whether MaximumExecutionTimeoutInSeconds (at most 28800 s) can exceed the update's total wait."""
    return total_wait_s(bake_s, final_bake_s, steps) < MAX_EXECUTION_TIMEOUT_S


def longest_bake_s(final_bake_s: int, steps: int) -> int:
    """The longest bake_s whose waits still fit under MaximumExecutionTimeoutInSeconds."""
    return (MAX_EXECUTION_TIMEOUT_S - 1 - min(final_bake_s, MAX_WAIT_INTERVAL_S)) // steps


def waits_problem_and_fix(
    strategy: str, bake_s: int, final_bake_s: int, steps: int, *, step_field: str | None
) -> tuple[str, str]:
    """The refusal of a rollout whose waits SageMaker's execution timeout cannot cover: problem, fix."""
    waits = total_wait_s(bake_s, final_bake_s, steps)
    problem = (
        f"a {strategy} update of {steps} steps waits {waits} s ({steps} x rollout.bake_s {bake_s} s "
        f"+ rollout.final_bake_s {final_bake_s} s); SageMaker's MaximumExecutionTimeoutInSeconds must "
        f"exceed that and is at most {MAX_EXECUTION_TIMEOUT_S} s"
    )
    shorten = f"shorten rollout.bake_s to at most {longest_bake_s(final_bake_s, steps)} s"
    fewer = f", or take fewer, larger steps ({step_field}, up to {LINEAR_MAX_PERCENT})" if step_field else ""
    return problem, f"{shorten} or shorten rollout.final_bake_s{fewer}"
