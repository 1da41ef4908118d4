"""Application Auto Scaling and the scale-from-zero alarm, against moto in-process."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from tasks.config import metric_timing, naming
from tasks.lifecycle import unwind
from tasks.rollout import planning
from tasks.sagemaker import deploy, scaling
from tasks.sagemaker.hosting import LiveEndpoint, ServedModel
from tests.unit.deploy_helpers import kinds, local_ledger, make_config

RESOURCE = "endpoint/demo-embedder/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _targets() -> list[dict[str, Any]]:
    return list(
        boto3.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")[
            "ScalableTargets"
        ]
    )


def _policies() -> dict[str, dict[str, Any]]:
    found = boto3.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    return {p["PolicyName"]: p for p in found["ScalingPolicies"]}


def _alarms() -> dict[str, dict[str, Any]]:
    return {a["AlarmName"]: a for a in boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]}


def test_realtime_tracks_invocations_per_instance(mocked_aws: None, tmp_path: Path) -> None:
    config = make_config(scaling={"enabled": True, "min_capacity": 1, "max_capacity": 3})
    ledger = local_ledger(tmp_path)
    applied = scaling.apply_scaling(scaling.plan_for(config, "r1"), tags=[], ledger=ledger)
    (target,) = _targets()
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (RESOURCE, 1, 3)
    (policy,) = _policies().values()
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == 70.0
    assert applied.alarm_names == ()
    assert kinds(ledger) == [("autoscaling:target", RESOURCE), ("autoscaling:policy", policy["PolicyName"])]


def test_async_scales_on_backlog_and_from_zero_with_a_step_policy_and_alarm(
    mocked_aws: None, tmp_path: Path
) -> None:
    config = make_config(
        endpoint={"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}},
        scaling={"enabled": True, "min_capacity": 0, "max_capacity": 5, "target_backlog_per_instance": 3},
    )
    ledger = local_ledger(tmp_path)
    plan = scaling.plan_for(config, "r1")
    scaling.apply_scaling(plan, tags=[{"Key": "release-id", "Value": "r1"}], ledger=ledger)
    assert _targets()[0]["MinCapacity"] == 0
    policies = _policies()
    tracking = policies[plan.tracking_policy_name]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracking["CustomizedMetricSpecification"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "demo-embedder"}
    ]
    assert tracking["TargetValue"] == 3
    step = policies[plan.step_policy_name]
    assert step["PolicyType"] == "StepScaling"
    alarm = _alarms()[plan.alarm_name]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmActions"] == [step["PolicyARN"]]
    assert [k for k, _ in kinds(ledger)] == [
        "autoscaling:target",
        "autoscaling:policy",
        "autoscaling:policy",
        "cloudwatch:alarm",
    ]


def test_unwind_removes_a_new_registration_entirely(mocked_aws: None, tmp_path: Path) -> None:
    config = make_config(
        endpoint={"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}},
        scaling={"enabled": True, "min_capacity": 0, "max_capacity": 5},
    )
    ledger = local_ledger(tmp_path)
    scaling.apply_scaling(scaling.plan_for(config, "r1"), tags=[], ledger=ledger)
    ledger.unwind(unwind.deleters())
    assert (_targets(), _policies(), _alarms()) == ([], {}, {})


def test_a_failed_release_puts_the_previous_scaling_back(mocked_aws: None, tmp_path: Path) -> None:
    async_config = {"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}}
    old = make_config(
        release_id="r0",
        endpoint=async_config,
        scaling={"enabled": True, "min_capacity": 0, "max_capacity": 4},
    )
    # A release tags what it creates (naming.tags); the next one removes only alarms so tagged.
    scaling.apply_scaling(
        scaling.plan_for(old, "r0"), tags=naming.tags(old, "r0"), ledger=local_ledger(tmp_path / "old", "r0")
    )
    old_plan = scaling.plan_for(old, "r0")
    old_step_arn = _policies()[old_plan.step_policy_name]["PolicyARN"]

    new = make_config(endpoint=async_config, scaling={"enabled": True, "min_capacity": 0, "max_capacity": 8})
    ledger = local_ledger(tmp_path / "new")
    scaling.apply_scaling(scaling.plan_for(new, "r1"), tags=[], ledger=ledger)
    assert _targets()[0]["MaxCapacity"] == 8
    assert old_plan.step_policy_name not in _policies()
    assert old_plan.alarm_name not in _alarms()

    ledger.unwind(unwind.deleters())
    assert _targets()[0]["MaxCapacity"] == 4
    policies = _policies()
    assert set(policies) == {old_plan.tracking_policy_name, old_plan.step_policy_name}
    alarm = _alarms()[old_plan.alarm_name]
    # The step policy was created again with a new ARN: the alarm must drive the new one.
    assert alarm["AlarmActions"] == [policies[old_plan.step_policy_name]["PolicyARN"]]
    assert alarm["AlarmActions"] != [old_step_arn]


def _live(instance_type: str) -> LiveEndpoint:
    variant = ServedModel("AllTraffic", "m0", "img", None, {}, instance_type, 1, None)
    return LiveEndpoint("demo-embedder", "InService", "c0", None, (variant,))


def test_suspend_only_takes_off_variants_the_update_retypes(mocked_aws: None, tmp_path: Path) -> None:
    config = make_config(scaling={"enabled": True})
    scaling.apply_scaling(
        scaling.plan_for(config, "r0"), tags=[], ledger=local_ledger(tmp_path / "old", "r0")
    )
    ledger = local_ledger(tmp_path / "new")

    same_type = [{"VariantName": "AllTraffic", "InstanceType": "ml.m5.large"}]
    assert scaling.suspend_for_update(_live("ml.m5.large"), same_type, ledger) == []
    assert len(_targets()) == 1

    retyped = [{"VariantName": "AllTraffic", "InstanceType": "ml.c5.xlarge"}]
    assert scaling.suspend_for_update(_live("ml.m5.large"), retyped, ledger) == [RESOURCE]
    assert (_targets(), _policies()) == ([], {})
    (entry,) = ledger.entries
    assert entry.attrs["purpose"] == "suspended" and entry.attrs["previous"]["MaxCapacity"] == 2

    ledger.unwind(unwind.deleters())
    assert len(_targets()) == 1 and len(_policies()) == 1


def test_what_is_registered_reads_back_and_matches_only_the_same_plan(
    mocked_aws: None, tmp_path: Path
) -> None:
    config = make_config(scaling={"enabled": True, "min_capacity": 1, "max_capacity": 3})
    plan = scaling.plan_for(config, "r1")
    scaling.apply_scaling(plan, tags=[], ledger=local_ledger(tmp_path))
    read = scaling.read_scaling(RESOURCE)
    assert read is not None and (read.min_capacity, read.max_capacity, read.changed) == (1, 3, True)
    (policy,) = read.policies
    assert policy.rule == "SageMakerVariantInvocationsPerInstance at 70 (cooldowns: in 300 s, out 60 s)"
    assert scaling.matches(scaling.plan_for(config, "r2"), read)  # another release id, the same scaling
    wider = make_config(scaling={"enabled": True, "min_capacity": 1, "max_capacity": 4})
    assert not scaling.matches(scaling.plan_for(wider, "r2"), read)
    faster = make_config(scaling={"enabled": True, "max_capacity": 3, "scale_out_cooldown_s": 30})
    assert not scaling.matches(scaling.plan_for(faster, "r2"), read)
    assert scaling.read_scaling("endpoint/other/variant/AllTraffic") is None


def test_scale_from_zero_names_the_alarm_that_wakes_an_async_variant(
    mocked_aws: None, tmp_path: Path
) -> None:
    asleep = make_config(
        endpoint={"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}},
        scaling={"enabled": True, "min_capacity": 0, "max_capacity": 2},
    )
    plan = scaling.plan_for(asleep, "r1")
    scaling.apply_scaling(plan, tags=[], ledger=local_ledger(tmp_path))
    waking = scaling.scale_from_zero("demo-embedder", "AllTraffic")
    # Two one-minute periods of backlog without capacity, plus CloudWatch's lag.
    assert (waking.alarm, waking.alarm_wait_s) == (plan.alarm_name, metric_timing.minimum_bake_s(60, 2))
    read = scaling.read_scaling(RESOURCE)
    assert read is not None and scaling.matches(plan, read)
    assert "+1 (+0 from the threshold) instances" in read.policies[-1].rule

    boto3.client("cloudwatch").delete_alarms(AlarmNames=[plan.alarm_name])
    assert (
        scaling.scale_from_zero("demo-embedder", "AllTraffic").alarm is None
    )  # a step policy nothing drives
    scaling.remove_target(RESOURCE)
    assert scaling.scale_from_zero("demo-embedder", "AllTraffic").alarm is None


def _scaled_out(current: int) -> LiveEndpoint:
    served = ServedModel(
        "AllTraffic", "old-model", "image", None, {}, "ml.m5.large", 1, None, current_instance_count=current
    )
    return LiveEndpoint("demo-embedder", "InService", "old-config", None, (served,))


def test_a_new_fleet_takes_over_the_capacity_autoscaling_gave_the_live_one(
    mocked_aws: None, tmp_path: Path
) -> None:
    config = make_config(scaling={"enabled": True, "min_capacity": 1, "max_capacity": 5})
    assert scaling.fleet_size(config, _scaled_out(4)) == scaling.FleetSize(1, False)  # not registered
    scaling.apply_scaling(scaling.plan_for(config, "r0"), tags=[], ledger=local_ledger(tmp_path))
    sized = scaling.fleet_size(config, _scaled_out(4))
    assert (sized.count, sized.from_live) == (4, True)
    assert sized.note is not None and "not endpoint.instance_count 1" in sized.note
    assert scaling.fleet_size(config, _scaled_out(8)).count == 5  # held to the config's new bounds
    assert scaling.fleet_size(config, _scaled_out(1)) == scaling.FleetSize(1, True)

    plan = planning.plan_rollout(
        make_config(rollout={"strategy": "canary", "canary_percent": 25}, scaling={"enabled": True}),
        _scaled_out(4),
        fleet=sized,
    )
    # The canary is a quarter of the 4 instances that serve, not of the config's one.
    assert (plan.instance_count, plan.step_instances, plan.capacity_from_live) == (4, 1, True)
    assert "the capacity autoscaling keeps" in plan.reason


_ASYNC = {"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}}


def _add_teams_burst_policy() -> str:
    """A team's own step policy on the variant, driven by its own (untagged) alarm; returns its ARN."""
    arn = boto3.client("application-autoscaling").put_scaling_policy(
        PolicyName="team-burst",
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 2}],
        },
    )["PolicyARN"]
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName="team-burst-alarm",
        Namespace="AWS/SageMaker",
        MetricName="ApproximateBacklogSize",
        Dimensions=[{"Name": "EndpointName", "Value": "demo-embedder"}],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=100.0,
        ComparisonOperator="GreaterThanThreshold",
        AlarmActions=[arn],
    )
    return str(arn)


def test_a_teams_own_policy_and_alarm_survive_the_releases_scaling(mocked_aws: None, tmp_path: Path) -> None:
    scaled = {"enabled": True, "min_capacity": 0, "max_capacity": 4}
    old = make_config(release_id="r0", endpoint=_ASYNC, scaling=scaled)
    old_plan = scaling.plan_for(old, "r0")
    scaling.apply_scaling(old_plan, tags=naming.tags(old, "r0"), ledger=local_ledger(tmp_path / "r0", "r0"))
    _add_teams_burst_policy()

    # An unchanged release leaves everything as it is: the team's policy is no difference.
    same = make_config(endpoint=_ASYNC, scaling=scaled)
    kept = deploy.reconcile_scaling.fn(same, "r1", local_ledger(tmp_path / "r1"))
    assert kept is not None and not kept.changed
    assert set(_policies()) == {old_plan.tracking_policy_name, old_plan.step_policy_name, "team-burst"}
    assert set(_alarms()) >= {old_plan.alarm_name, "team-burst-alarm"}

    # A changed release replaces the earlier release's policies and alarm, and only those.
    wider = make_config(endpoint=_ASYNC, scaling={**scaled, "max_capacity": 8})
    plan = scaling.plan_for(wider, "r2")
    ledger = local_ledger(tmp_path / "r2", "r2")
    changed = deploy.reconcile_scaling.fn(wider, "r2", ledger)
    assert changed is not None and changed.changed
    assert set(_policies()) == {plan.tracking_policy_name, plan.step_policy_name, "team-burst"}
    alarms = _alarms()
    assert old_plan.alarm_name not in alarms and plan.alarm_name in alarms
    assert alarms["team-burst-alarm"]["AlarmActions"] == [_policies()["team-burst"]["PolicyARN"]]

    # Its unwind puts back the earlier release's scaling beside the team's.
    ledger.unwind(unwind.deleters())
    policies = _policies()
    assert set(policies) == {old_plan.tracking_policy_name, old_plan.step_policy_name, "team-burst"}
    alarms = _alarms()
    assert alarms["team-burst-alarm"]["AlarmActions"] == [policies["team-burst"]["PolicyARN"]]
    assert alarms[old_plan.alarm_name]["AlarmActions"] == [policies[old_plan.step_policy_name]["PolicyARN"]]
    # The restored alarm keeps its tags: the next release recognises it as a release's again.
    tags = boto3.client("cloudwatch").list_tags_for_resource(
        ResourceARN=alarms[old_plan.alarm_name]["AlarmArn"]
    )
    assert {"Key": "managed-by", "Value": "sagemaker-release"} in tags["Tags"]


def test_only_policies_named_by_a_release_of_the_endpoint_are_the_releases() -> None:
    assert scaling.is_release_policy("demo-embedder", "demo-embedder-20250314-093015-3fa9-invocations")
    assert scaling.is_release_policy("demo-embedder", "demo-embedder-r0-scale-from-zero")
    assert not scaling.is_release_policy("demo-embedder", "team-burst")
    assert not scaling.is_release_policy("demo-embedder", "demo-embedder-r0-burst")
    assert not scaling.is_release_policy("demo", "demo-embedder-r0-backlog-x")


def test_a_snapshot_keeps_the_scheduled_actions_and_restore_puts_them_back(
    mocked_aws: None, tmp_path: Path
) -> None:
    config = make_config(scaling={"enabled": True, "min_capacity": 1, "max_capacity": 3})
    scaling.apply_scaling(scaling.plan_for(config, "r1"), tags=[], ledger=local_ledger(tmp_path))
    autoscaling = boto3.client("application-autoscaling")
    where = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION}
    autoscaling.put_scheduled_action(
        **where,
        ScheduledActionName="team-weekend",
        Schedule="cron(0 18 ? * FRI *)",
        StartTime=datetime(2026, 1, 1, tzinfo=UTC),
        ScalableTargetAction={"MinCapacity": 1, "MaxCapacity": 1},
    )
    taken = scaling.snapshot(RESOURCE)
    assert taken is not None
    assert json.loads(json.dumps(taken)) == taken  # what the ledger stores
    # AWS deletes a target's scheduled actions when it is deregistered (moto keeps them): do it here.
    scaling.remove_target(RESOURCE)
    autoscaling.delete_scheduled_action(**where, ScheduledActionName="team-weekend")

    scaling.restore(taken)
    (action,) = autoscaling.describe_scheduled_actions(**where)["ScheduledActions"]
    assert (action["Schedule"], action["ScalableTargetAction"]) == (
        "cron(0 18 ? * FRI *)",
        {"MinCapacity": 1, "MaxCapacity": 1},
    )
    assert action["StartTime"] == datetime(2026, 1, 1, tzinfo=UTC)
    scaling.restore(
        {key: value for key, value in taken.items() if key != "ScheduledActions"}
    )  # older ledgers
