"""The emulator's UpdateEndpoint refuses DeploymentConfigs outside SageMaker's guardrail bounds (no stack)."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.sagemaker import guardrails
from emulator.sagemaker.exceptions import ValidationException


def endpoint_config(instances: int | None = 20, serverless: bool = False) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": "m"}
    if serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    else:
        variant.update(InstanceType="ml.m5.large", InitialInstanceCount=instances)
    return {"EndpointConfigName": "c", "ProductionVariants": [variant]}


def blue_green(
    kind: str, wait_s: int = 60, termination_s: int = 0, timeout_s: int = 3600, **routing: Any
) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": kind, "WaitIntervalInSeconds": wait_s, **routing},
            "TerminationWaitInSeconds": termination_s,
            "MaximumExecutionTimeoutInSeconds": timeout_s,
        }
    }


def size(kind: str, value: int) -> dict[str, Any]:
    return {"Type": kind, "Value": value}


@pytest.mark.parametrize(
    ("step", "instances", "shares"),
    [
        (size("INSTANCE_COUNT", 2), 20, 10),  # 10%
        (size("INSTANCE_COUNT", 10), 20, 2),  # 50%
        (size("CAPACITY_PERCENT", 10), 20, 10),
        (size("CAPACITY_PERCENT", 25), 4, 4),
        (size("INSTANCE_COUNT", 1), 2, 2),
    ],
)
def test_linear_steps_of_ten_to_fifty_percent_are_planned(
    step: dict[str, Any], instances: int, shares: int
) -> None:
    traffic = guardrails.plan(blue_green("LINEAR", LinearStepSize=step), endpoint_config(instances))
    assert len(traffic.shares) == shares and traffic.shares[-1] == 1.0


@pytest.mark.parametrize(
    ("step", "instances"),
    [
        (size("INSTANCE_COUNT", 1), 20),  # 5%: what the release used to send
        (size("INSTANCE_COUNT", 1), 11),  # 9.1%
        (size("INSTANCE_COUNT", 11), 20),  # 55%
        (size("CAPACITY_PERCENT", 5), 20),
        (size("CAPACITY_PERCENT", 60), 20),
    ],
)
def test_linear_steps_outside_ten_to_fifty_percent_are_refused(step: dict[str, Any], instances: int) -> None:
    with pytest.raises(ValidationException, match="LinearStepSize Value must be 10-50% of the variant's"):
        guardrails.plan(blue_green("LINEAR", LinearStepSize=step), endpoint_config(instances))


def test_a_canary_may_be_small_but_not_above_half() -> None:
    small = guardrails.plan(blue_green("CANARY", CanarySize=size("CAPACITY_PERCENT", 5)), endpoint_config(20))
    assert small.shares == (0.05, 1.0)
    for canary in (size("CAPACITY_PERCENT", 51), size("INSTANCE_COUNT", 11)):
        with pytest.raises(ValidationException, match="less than or equal to 50%"):
            guardrails.plan(blue_green("CANARY", CanarySize=canary), endpoint_config(20))


def test_a_canary_of_no_instance_is_refused_without_the_model_validation() -> None:
    with pytest.raises(ValidationException, match="at least 1 instance"):
        guardrails.plan(blue_green("CANARY", CanarySize=size("INSTANCE_COUNT", 0)), endpoint_config(20))


def test_the_execution_timeout_must_exceed_the_total_wait() -> None:
    # 10 linear steps of 2 of 20 instances, 3000 s each, then 60 s: 30060 s.
    linear = {"LinearStepSize": size("INSTANCE_COUNT", 2)}
    with pytest.raises(
        ValidationException, match=r"\(28800\) must be larger than the total waiting time"
    ) as e:
        guardrails.plan(
            blue_green("LINEAR", wait_s=3000, termination_s=60, timeout_s=28800, **linear),
            endpoint_config(20),
        )
    assert "30060 seconds" in str(e.value)
    with pytest.raises(ValidationException, match="must be larger"):
        guardrails.plan(
            blue_green("ALL_AT_ONCE", wait_s=600, termination_s=0, timeout_s=600), endpoint_config()
        )
    fits = guardrails.plan(blue_green("ALL_AT_ONCE", wait_s=599, timeout_s=600), endpoint_config())
    assert fits.max_execution_s == 600


@pytest.mark.parametrize(
    "routing", [{"CanarySize": size("INSTANCE_COUNT", 1)}, {"LinearStepSize": size("CAPACITY_PERCENT", 50)}]
)
def test_canary_and_linear_are_refused_on_serverless(routing: dict[str, Any]) -> None:
    kind = "CANARY" if "CanarySize" in routing else "LINEAR"
    with pytest.raises(ValidationException, match="not supported for serverless endpoints"):
        guardrails.plan(blue_green(kind, **routing), endpoint_config(serverless=True))
    assert guardrails.plan(blue_green("ALL_AT_ONCE"), endpoint_config(serverless=True)).shares == (1.0,)
