"""Application Auto Scaling's arithmetic (emulator/autoscaling/policies.py), without servers."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.autoscaling import policies
from emulator.autoscaling.policies import Candidate, PolicyMemory

ARN = (
    "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:abc:resource/sagemaker/endpoint/e/variant/v"
    ":policyName/p"
)
RID = "endpoint/e/variant/v"


def tracking_policy(target: float = 3.0, **config: Any) -> dict[str, Any]:
    return {
        "PolicyName": "p",
        "PolicyARN": ARN,
        "ResourceId": RID,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": target,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            **config,
        },
    }


def step_policy(steps: list[dict[str, Any]], kind: str = "ChangeInCapacity", **config: Any) -> dict[str, Any]:
    return {
        "PolicyName": "s",
        "PolicyARN": ARN,
        "ResourceId": RID,
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {"AdjustmentType": kind, "StepAdjustments": steps, **config},
    }


def test_target_tracking_alarms_are_named_and_shaped_as_aws_makes_them() -> None:
    high, low = policies.tracking_alarms(tracking_policy(10.0), "e", "v", token="tok")

    assert high["AlarmName"].startswith("TargetTracking-endpoint/e/variant/v-AlarmHigh-")
    assert low["AlarmName"].startswith("TargetTracking-endpoint/e/variant/v-AlarmLow-")
    for alarm in (high, low):
        assert alarm["AlarmActions"] == [f"{ARN}:createdBy/tok"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
            "AWS/SageMaker",
            "InvocationsPerInstance",
            "Sum",
            60,
        )
        assert alarm["Dimensions"] == [
            {"Name": "EndpointName", "Value": "e"},
            {"Name": "VariantName", "Value": "v"},
        ]
        assert alarm["AlarmDescription"].startswith("DO NOT EDIT OR DELETE. For TargetTrackingScaling policy")
    assert (high["EvaluationPeriods"], high["Threshold"], high["ComparisonOperator"]) == (
        3,
        10.0,
        "GreaterThanThreshold",
    )
    assert (low["EvaluationPeriods"], low["Threshold"], low["ComparisonOperator"]) == (
        15,
        9.0,
        "LessThanThreshold",
    )


def test_a_customized_metric_is_tracked_as_given_and_disable_scale_in_drops_the_low_alarm() -> None:
    policy = tracking_policy(3.0, DisableScaleIn=True)
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    del config["PredefinedMetricSpecification"]
    config["CustomizedMetricSpecification"] = {
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": "e"}],
        "Statistic": "Average",
    }
    (high,) = policies.tracking_alarms(policy, "e", "v")
    assert (high["MetricName"], high["Statistic"], high["Dimensions"]) == (
        "ApproximateBacklogSizePerInstance",
        "Average",
        [{"Name": "EndpointName", "Value": "e"}],
    )


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}},
            "is not one",
        ),
        ({"CustomizedMetricSpecification": {"Metrics": [{"Id": "m1"}]}}, "metric math"),
        ({"CustomizedMetricSpecification": {"MetricName": "X"}}, "needs Namespace, Statistic"),
        ({}, "needs PredefinedMetricSpecification or CustomizedMetricSpecification"),
    ],
)
def test_a_metric_the_emulator_cannot_track_is_refused_naming_the_field(
    config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(policies.PolicyProblem, match=problem):
        policies.tracked_metric({"TargetValue": 1.0, **config}, "e", "v")


def test_tracking_capacity_is_the_ceiling_of_metric_times_capacity_over_target() -> None:
    assert policies.tracking_capacity(30.0, 1, 3.0) == 10
    assert policies.tracking_capacity(4.0, 2, 3.0) == 3
    assert policies.tracking_capacity(6.0, 1, 3.0) == 2  # exactly 2, not 2.0000001 -> 3
    assert policies.tracking_capacity(0.0, 4, 3.0) == 0
    assert policies.tracking_capacity(30.0, 0, 3.0) == 0  # target tracking cannot leave zero


def test_step_adjustments_pick_the_interval_holding_the_metric() -> None:
    steps = [
        {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 1},
        {"MetricIntervalLowerBound": 10.0, "ScalingAdjustment": 3},
    ]
    config = {"AdjustmentType": "ChangeInCapacity", "StepAdjustments": steps}
    assert policies.step_capacity(config, 2, value=5.0, threshold=0.5) == 3
    assert policies.step_capacity(config, 2, value=10.5, threshold=0.5) == 5  # lower bound inclusive
    assert policies.step_capacity(config, 2, value=0.4, threshold=0.5) is None  # below the threshold
    exact = {
        "AdjustmentType": "ExactCapacity",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 4}],
    }
    assert policies.step_capacity(exact, 1, value=1.0, threshold=1.0) == 4
    percent = {
        "AdjustmentType": "PercentChangeInCapacity",
        "MinAdjustmentMagnitude": 2,
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 50}],
    }
    assert policies.step_capacity(percent, 10, value=1.0, threshold=0.0) == 15
    assert policies.step_capacity(percent, 1, value=1.0, threshold=0.0) == 3  # at least the magnitude
    scale_in = {"StepAdjustments": [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1}]}
    assert policies.step_capacity(scale_in, 3, value=0.0, threshold=2.0) == 2


def test_resource_ids_round_trip_and_others_are_not_variants() -> None:
    assert policies.parse_resource_id(policies.resource_id("e", "v")) == ("e", "v")
    assert policies.parse_resource_id("service/cluster/svc") is None
    assert policies.parse_resource_id("endpoint/e/variant/") is None


def alarm(name: str, comparison: str, threshold: float) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "ComparisonOperator": comparison,
        "Threshold": threshold,
        "AlarmActions": [ARN],
    }


def test_a_step_scale_out_within_its_cooldown_counts_what_the_last_one_added() -> None:
    policy = step_policy([{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}], Cooldown=60)
    fired = alarm("backlog", "GreaterThanOrEqualToThreshold", 0.5)
    memory = PolicyMemory()
    first = policies.policy_candidate(policy, fired, 1.0, 0, memory, now=100.0, cooldown_real=(60.0, 60.0))
    assert first == Candidate(1, "s", ARN, "backlog", True)
    policies.remember(memory, first, 0, 100.0)
    # Within the cooldown the +1 is computed from the capacity before it began: nothing more to add.
    assert (
        policies.policy_candidate(policy, fired, 1.0, 1, memory, now=130.0, cooldown_real=(60.0, 60.0))
        is None
    )
    policies.expire(memory, 161.0, 60.0)
    again = policies.policy_candidate(policy, fired, 1.0, 1, memory, now=161.0, cooldown_real=(60.0, 60.0))
    assert again is not None and again.capacity == 2


def test_target_tracking_scale_in_waits_for_its_cooldown_and_a_scale_out_ends_it() -> None:
    policy = tracking_policy(10.0)
    low, high = alarm("low", "LessThanThreshold", 9.0), alarm("high", "GreaterThanThreshold", 10.0)
    memory = PolicyMemory(last_in=100.0)
    assert (
        policies.policy_candidate(policy, low, 1.0, 3, memory, now=110.0, cooldown_real=(30.0, 30.0)) is None
    )
    out = policies.policy_candidate(policy, high, 25.0, 3, memory, now=110.0, cooldown_real=(30.0, 30.0))
    assert out == Candidate(8, "p", ARN, "high", True)
    policies.remember(memory, out, 3, 110.0)
    assert memory.last_in is None
    inward = policies.policy_candidate(policy, low, 1.0, 8, memory, now=111.0, cooldown_real=(30.0, 30.0))
    assert inward == Candidate(1, "p", ARN, "low", False)
    disabled = tracking_policy(10.0, DisableScaleIn=True)
    assert (
        policies.policy_candidate(disabled, low, 1.0, 8, PolicyMemory(), now=1.0, cooldown_real=(0.0, 0.0))
        is None
    )


def test_the_largest_capacity_wins_and_bounds_hold_it() -> None:
    out_small = Candidate(3, "a", "arn-a", "x", True)
    out_big = Candidate(9, "b", "arn-b", "y", True)
    inward = Candidate(1, "c", "arn-c", "z", False)
    assert policies.choose([out_small, inward, out_big], desired=2, low=1, high=5) == Candidate(
        5, "b", "arn-b", "y", True
    )
    assert policies.choose([inward], desired=2, low=1, high=5) == inward
    assert policies.choose([inward], desired=2, low=2, high=5) is None  # already at the minimum
    assert policies.choose([Candidate(4, "a", "arn-a", "x", True)], desired=5, low=1, high=5) is None


def test_a_policy_is_invoked_when_its_alarm_goes_to_alarm_and_again_each_minute_it_stays() -> None:
    memory = PolicyMemory()
    assert policies.due(memory, "a", state_since=50.0, now=100.0, reinvoke_after=60.0)
    memory.invoked["a"] = 100.0
    assert not policies.due(memory, "a", state_since=50.0, now=130.0, reinvoke_after=60.0)
    assert policies.due(memory, "a", state_since=50.0, now=160.0, reinvoke_after=60.0)
    assert policies.due(memory, "a", state_since=120.0, now=121.0, reinvoke_after=60.0)  # a new ALARM episode


def test_cooldowns_default_to_sagemakers_300_seconds() -> None:
    assert policies.cooldowns(tracking_policy()) == (300.0, 300.0)
    assert policies.cooldowns(tracking_policy(ScaleOutCooldown=30, ScaleInCooldown=60)) == (30.0, 60.0)
    assert policies.cooldowns(step_policy([], Cooldown=0)) == (0.0, 0.0)
