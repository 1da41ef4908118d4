"""Strategy choice, step math and the DeploymentConfig request of a rollout."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

import pytest

from tasks.config import RolloutStrategy
from tasks.core.errors import ConfigError
from tasks.rollout.planning import check_waits, deployment_config, plan_rollout, shifted_weights
from tasks.sagemaker.hosting import LiveEndpoint, ServedModel
from tests.unit.deploy_helpers import make_config
from tests.unit.rollout_fakes import check_shape


def live(count: int = 1, variant: str = "AllTraffic", *more: str) -> LiveEndpoint:
    served = [
        ServedModel(name, f"model-{name}", "image:1", None, {}, "ml.m5.large", count, None)
        for name in (variant, *more)
    ]
    return LiveEndpoint("demo-embedder", "InService", "old-config", None, tuple(served))


def config(count: int = 1, **rollout: Any) -> Any:
    return make_config(endpoint={"instance_count": count}, rollout=rollout)


def test_a_new_endpoint_is_created_and_baked() -> None:
    plan = plan_rollout(config(strategy="canary"), None)
    assert (plan.strategy, plan.steps, plan.final_bake_s) == ("create", (100.0,), 150)


@pytest.mark.parametrize(
    ("count", "live_endpoint", "expected"),
    [
        (2, live(2), "canary"),
        (1, live(1), "variant_shift"),
        (2, live(1), "variant_shift"),  # the live fleet is one instance: no real canary
        (2, live(2, "Blue"), "variant_shift"),  # guardrails keep the variant name
        (2, live(2, "AllTraffic", "Shadow"), "variant_shift"),
    ],
)
def test_auto_picks_per_endpoint(count: int, live_endpoint: LiveEndpoint, expected: str) -> None:
    plan = plan_rollout(config(count, strategy="auto"), live_endpoint)
    assert plan.strategy == expected
    assert plan.requested == "auto" and plan.reason


def test_auto_on_serverless_updates_all_at_once() -> None:
    serverless = make_config(
        endpoint={"type": "serverless", "serverless": {"memory_mb": 2048}}, rollout={"strategy": "auto"}
    )
    assert plan_rollout(serverless, live(1)).strategy == "all_at_once"


def test_canary_needs_two_instances() -> None:
    with pytest.raises(ConfigError) as raised:
        plan_rollout(config(1, strategy="canary"), live(1))
    assert raised.value.field == "rollout.strategy"
    assert "variant_shift" in raised.value.fix


def test_canary_size_is_whole_instances_at_most_half() -> None:
    plan = plan_rollout(config(4, strategy="canary", canary_percent=10), live(4))
    assert (plan.step_instances, plan.steps) == (1, (25.0, 100.0))
    with pytest.raises(ConfigError) as raised:
        plan_rollout(config(4, strategy="canary", canary_percent=75), live(4))
    assert raised.value.field == "rollout.canary_percent"


def test_canary_refuses_more_than_one_step() -> None:
    with pytest.raises(ConfigError) as raised:
        plan_rollout(config(4, strategy="canary", steps=[10, 50, 100]), live(4))
    assert raised.value.field == "rollout.steps"


def test_guardrails_keep_the_variant_name() -> None:
    with pytest.raises(ConfigError) as raised:
        plan_rollout(config(2, strategy="all_at_once"), live(2, "Blue"))
    assert raised.value.field == "endpoint.variant_name"


@pytest.mark.parametrize(
    ("count", "percent", "size", "steps"),
    [(4, 25, 1, (25.0, 50.0, 75.0, 100.0)), (3, 30, 1, (33.3, 66.7, 100.0)), (5, 40, 2, (40.0, 80.0, 100.0))],
)
def test_linear_steps_move_whole_instances_and_end_at_100(
    count: int, percent: int, size: int, steps: tuple[float, ...]
) -> None:
    plan = plan_rollout(config(count, strategy="linear", linear_step_percent=percent), live(count))
    assert (plan.step_instances, plan.steps) == (size, steps)


def test_linear_refuses_unequal_steps() -> None:
    with pytest.raises(ConfigError) as raised:
        plan_rollout(config(4, strategy="linear", steps=[20, 50, 100]), live(4))
    assert raised.value.field == "rollout.steps"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [([10, 50, 100], (10.0, 50.0, 100.0)), ([33, 66], (33.0, 66.0, 100.0)), ([30], (30.0, 100.0))],
)
def test_variant_shift_steps_always_end_at_100(steps: list[int], expected: tuple[float, ...]) -> None:
    plan = plan_rollout(config(1, strategy="variant_shift", steps=steps, bake_s=0, final_bake_s=150), live(1))
    assert (plan.strategy, plan.steps, plan.bake_s, plan.final_bake_s) == ("variant_shift", expected, 0, 150)


def test_variant_shift_needs_instances() -> None:
    serverless = make_config(
        endpoint={"type": "serverless", "serverless": {"memory_mb": 2048}},
        rollout={"strategy": "variant_shift"},
    )
    with pytest.raises(ConfigError):
        plan_rollout(serverless, live(1))


def test_canary_deployment_config_is_a_valid_update_endpoint_request() -> None:
    plan = plan_rollout(
        config(4, strategy="canary", canary_percent=25, bake_s=150, final_bake_s=300), live(4)
    )
    request = deployment_config(plan, ["a-5xx", "a-p99-latency", "team-kpi"], provisioning_s=900)
    check_shape(
        "UpdateEndpoint", {"EndpointName": "e", "EndpointConfigName": "c", "DeploymentConfig": request}
    )
    policy = request["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 150,
        "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
    }
    assert policy["TerminationWaitInSeconds"] == 300
    assert policy["MaximumExecutionTimeoutInSeconds"] == 900 + 2 * 150 + 300
    assert request["AutoRollbackConfiguration"]["Alarms"][2] == {"AlarmName": "team-kpi"}


def test_linear_and_all_at_once_requests() -> None:
    linear = deployment_config(
        plan_rollout(config(4, strategy="linear", linear_step_percent=50), live(4)), [], provisioning_s=10
    )
    routing = linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["LinearStepSize"] == {"Type": "INSTANCE_COUNT", "Value": 2}
    assert linear["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] == 600  # SageMaker's floor
    assert "AutoRollbackConfiguration" not in linear
    once = deployment_config(
        plan_rollout(config(1, strategy="all_at_once"), live(1)), ["x"], provisioning_s=60
    )
    assert once["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    with pytest.raises(ValueError):
        deployment_config(plan_rollout(config(1, strategy="variant_shift"), live(1)), [], provisioning_s=1)


def test_shifted_weights_keep_the_old_variants_ratio() -> None:
    assert shifted_weights({"AllTraffic": 1.0}, "New", 30) == {"AllTraffic": 70.0, "New": 30.0}
    assert shifted_weights({"A": 3.0, "B": 1.0}, "New", 20) == {"A": 60.0, "B": 20.0, "New": 20.0}
    assert shifted_weights({"AllTraffic": 1.0}, "New", 100) == {"AllTraffic": 0.0, "New": 100.0}
    with pytest.raises(ValueError):
        shifted_weights({"AllTraffic": 1.0}, "New", 120)


def test_requested_strategy_is_what_the_config_accepts() -> None:
    field = type(config().rollout).model_fields["strategy"]
    assert set(get_args(field.annotation)) == set(get_args(RolloutStrategy))


# -- SageMaker's guardrail bounds (tasks/config/guardrails.py) ---------------------------------------


def test_a_linear_step_is_never_below_a_tenth_of_the_fleet() -> None:
    """The 5%-of-20-instances request SageMaker refuses cannot be sent: 10% of 20 is two instances."""
    plan = plan_rollout(config(20, strategy="linear", linear_step_percent=10), live(20))
    assert plan.step_instances == 2 and len(plan.steps) == 10
    request = deployment_config(plan, [], provisioning_s=600)
    step = request["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["LinearStepSize"]
    assert step == {"Type": "INSTANCE_COUNT", "Value": 2}


def test_a_percentage_that_rounds_below_ten_percent_is_raised_and_said() -> None:
    plan = plan_rollout(config(15, strategy="linear", linear_step_percent=10), live(15))
    assert plan.step_instances == 2  # 1 of 15 would be 6.7%
    assert plan.steps == (13.3, 26.7, 40.0, 53.3, 66.7, 80.0, 93.3, 100.0)
    assert "10% minimum" in plan.reason


@pytest.mark.parametrize("count", range(2, 101))
def test_every_linear_step_is_within_ten_to_fifty_percent_of_the_fleet(count: int) -> None:
    for percent in (10, 17, 25, 33, 50):
        plan = plan_rollout(config(count, strategy="linear", linear_step_percent=percent), live(count))
        assert plan.step_instances is not None
        assert 0.1 <= plan.step_instances / count <= 0.5, (count, percent, plan.step_instances)


def test_planning_refuses_a_linear_step_outside_ten_to_fifty_percent() -> None:
    # model_copy skips the config's own check: planning refuses what reaches it anyway.
    valid = config(20, strategy="linear", linear_step_percent=10)
    for percent in (5, 60):
        bad = valid.model_copy(
            update={"rollout": valid.rollout.model_copy(update={"linear_step_percent": percent})}
        )
        with pytest.raises(ConfigError) as raised:
            plan_rollout(bad, live(20))
        assert raised.value.field == "rollout.linear_step_percent"
        assert "10-50%" in raised.value.problem and "variant_shift" in raised.value.fix


def test_a_canary_above_half_the_fleet_is_refused_at_config_time() -> None:
    with pytest.raises(ConfigError) as raised:
        config(4, strategy="canary", canary_percent=60)
    assert raised.value.field == "rollout.canary_percent" and "at most 50" in raised.value.fix


def test_waits_the_execution_timeout_cannot_cover_are_refused_naming_the_fields() -> None:
    # 10 steps of 2 of 20 instances: 10 x 3000 s + 150 s is more than SageMaker's 28800 s at most.
    with pytest.raises(ConfigError) as raised:
        config(20, strategy="linear", linear_step_percent=10, bake_s=3000)
    error = raised.value
    assert error.field == "rollout.bake_s"
    assert "30150 s" in error.problem and "28800" in error.problem
    assert "rollout.bake_s to at most 2864 s" in error.fix and "rollout.final_bake_s" in error.fix
    assert "rollout.linear_step_percent" in error.fix


def test_planning_checks_the_waits_of_the_steps_it_made() -> None:
    # 25% of 5 instances is one instance: five steps, not the four the percentage suggests.
    plan = plan_rollout(config(5, strategy="linear", linear_step_percent=25, bake_s=3000), live(5))
    assert len(plan.steps) == 5
    check_waits(plan)  # 5 x 3000 + 150 s fits
    ten_steps = replace(plan, steps=tuple(float(10 * k) for k in range(1, 11)))
    with pytest.raises(ConfigError) as raised:
        check_waits(ten_steps)
    assert raised.value.field == "rollout.bake_s" and "10 steps waits 30150 s" in raised.value.problem
    with pytest.raises(ConfigError):
        deployment_config(ten_steps, [], provisioning_s=600)  # never sent with a capped timeout


def test_the_execution_timeout_always_exceeds_the_waits() -> None:
    plan = plan_rollout(config(20, strategy="linear", linear_step_percent=10, bake_s=2800), live(20))
    waits = 10 * 2800 + 150
    for provisioning in (0, 600, 3600, 14400):
        policy = deployment_config(plan, ["a"], provisioning_s=provisioning)["BlueGreenUpdatePolicy"]
        timeout = policy["MaximumExecutionTimeoutInSeconds"]
        assert waits < timeout <= 28800, (provisioning, timeout)
    check_shape(
        "UpdateEndpoint",
        {
            "EndpointName": "e",
            "EndpointConfigName": "c",
            "DeploymentConfig": deployment_config(plan, [], provisioning_s=0),
        },
    )


def test_serverless_gets_no_guardrails() -> None:
    for strategy in ("canary", "linear"):
        with pytest.raises(ConfigError) as raised:
            make_config(
                endpoint={"type": "serverless", "serverless": {"memory_mb": 2048}},
                rollout={"strategy": strategy},
            )
        assert raised.value.field == "rollout.strategy" and "all_at_once" in raised.value.fix
