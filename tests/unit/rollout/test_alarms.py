"""The release's guard alarms: definitions, ledger, states, clean-up (moto in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.core import aws
from tasks.core.errors import AlarmsAlreadyFiring, ConfigError
from tasks.core.waiting import FakeClock
from tasks.lifecycle import unwind
from tasks.lifecycle.kinds import CLOUDWATCH_ALARM
from tasks.rollout import alarms
from tests.unit.deploy_helpers import kinds, local_ledger, make_config

pytestmark = pytest.mark.usefixtures("mocked_aws")


def described(name: str) -> dict[str, Any]:
    return dict(aws.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0])


def guarded_config(**alarm_settings: Any) -> Any:
    settings = {"max_5xx_errors": 2, "max_p99_latency_ms": 800, "period_s": 10, "evaluation_periods": 3}
    settings.update(alarm_settings)
    return make_config(rollout={"alarms": {**settings, "datapoints_to_alarm": 2}})


def test_guard_alarms_watch_the_new_variant_and_join_the_ledger(tmp_path: Path) -> None:
    config, ledger = guarded_config(), local_ledger(tmp_path)
    names = alarms.create_guard_alarms(
        config, "r1", endpoint="demo-embedder", variant="AllTraffic-r1", config_name="cfg-r1", ledger=ledger
    )

    assert names == ["demo-embedder-r1-5xx", "demo-embedder-r1-p99-latency"]
    errors, latency = described(names[0]), described(names[1])
    # The new fleet only: during a blue/green update the old fleet shares the variant name.
    dimensions = [
        {"Name": "EndpointName", "Value": "demo-embedder"},
        {"Name": "VariantName", "Value": "AllTraffic-r1"},
        {"Name": "EndpointConfigName", "Value": "cfg-r1"},
    ]
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == (
        "AWS/SageMaker",
        "Invocation5XXErrors",
        "Sum",
    )
    assert errors["Dimensions"] == dimensions and latency["Dimensions"] == dimensions
    assert (errors["Threshold"], errors["ComparisonOperator"]) == (2.0, "GreaterThanThreshold")
    assert (errors["Period"], errors["EvaluationPeriods"], errors["DatapointsToAlarm"]) == (10, 3, 2)
    assert errors["TreatMissingData"] == "notBreaching"
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("ModelLatency", "p99")
    assert latency["Threshold"] == 800_000.0  # ModelLatency is in microseconds
    assert kinds(ledger) == [(CLOUDWATCH_ALARM, names[0]), (CLOUDWATCH_ALARM, names[1])]
    tags = aws.client("cloudwatch").list_tags_for_resource(ResourceARN=errors["AlarmArn"])["Tags"]
    assert {"Key": "sagemaker-release:purpose", "Value": "rollout-guard"} in tags
    assert {"Key": "release-id", "Value": "r1"} in tags

    # Creating them again (a retried step) records nothing twice; unwinding deletes them.
    alarms.create_guard_alarms(
        config, "r1", endpoint="demo-embedder", variant="AllTraffic-r1", config_name="cfg-r1", ledger=ledger
    )
    assert len(ledger.entries) == 2
    ledger.unwind(unwind.deleters())
    assert alarms.alarm_states(names) == []


def test_retarget_points_the_guards_at_the_final_variant(tmp_path: Path) -> None:
    config = guarded_config()
    names = alarms.create_guard_alarms(
        config,
        "r1",
        endpoint="demo-embedder",
        variant="AllTraffic-r1",
        config_name="cfg-r1-shift",
        ledger=local_ledger(tmp_path),
    )
    alarms.retarget_guard_alarms(
        config, "r1", endpoint="demo-embedder", variant="AllTraffic", config_name="cfg-r1"
    )
    dimensions = described(names[0])["Dimensions"]
    assert {"Name": "VariantName", "Value": "AllTraffic"} in dimensions
    assert {"Name": "EndpointConfigName", "Value": "cfg-r1"} in dimensions


def test_states_and_firing() -> None:
    cloudwatch = aws.client("cloudwatch")
    for name in ("a", "b"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="N",
            MetricName="M",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    cloudwatch.set_alarm_state(
        AlarmName="b", StateValue="ALARM", StateReason="Threshold Crossed: 1 datapoint"
    )
    assert {s.name: s.state for s in alarms.alarm_states(["a", "b", "gone"])} == {"a": "OK", "b": "ALARM"}
    assert [(s.name, s.reason) for s in alarms.firing(["a", "b"])] == [
        ("b", "Threshold Crossed: 1 datapoint")
    ]
    assert alarms.missing_alarms(["a", "gone"]) == ["gone"]


def test_extra_alarms_must_exist_and_stay_within_ten() -> None:
    config = make_config(rollout={"alarms": {"extra_alarm_names": ["team-kpi"]}})
    with pytest.raises(ConfigError) as raised:
        alarms.require_extra_alarms(config)
    assert raised.value.field == "rollout.alarms.extra_alarm_names" and "team-kpi" in raised.value.problem

    many = make_config(rollout={"alarms": {"extra_alarm_names": [f"x{i}" for i in range(9)]}})
    with pytest.raises(ConfigError) as too_many:
        alarms.rollback_alarm_names(many, ["g1", "g2"])
    assert "at most 10" in too_many.value.problem
    assert alarms.rollback_alarm_names(config, ["g1", "g2"]) == ["g1", "g2", "team-kpi"]


def test_a_successful_release_replaces_earlier_guards_only(tmp_path: Path) -> None:
    config = guarded_config()
    old = alarms.create_guard_alarms(
        config,
        "r0",
        endpoint="demo-embedder",
        variant="v0",
        config_name="cfg-v0",
        ledger=local_ledger(tmp_path),
    )
    other_endpoint = make_config(endpoint={"name": "demo-embedder-2"})
    kept_elsewhere = alarms.create_guard_alarms(
        other_endpoint,
        "r0",
        endpoint="demo-embedder-2",
        variant="v0",
        config_name="cfg-v0",
        ledger=local_ledger(tmp_path / "b", "r0"),
    )
    aws.client("cloudwatch").put_metric_alarm(  # a scaling alarm of the endpoint: not a guard
        AlarmName="demo-embedder-r0-backlog-without-capacity",
        Namespace="AWS/SageMaker",
        MetricName="HasBacklogWithoutCapacity",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    current = alarms.create_guard_alarms(
        config,
        "r1",
        endpoint="demo-embedder",
        variant="v1",
        config_name="cfg-v1",
        ledger=local_ledger(tmp_path / "c", "r1"),
    )

    assert sorted(alarms.replace_earlier_guard_alarms(config, "r1")) == sorted(old)
    remaining = {s.name for s in alarms.alarm_states([*old, *current, *kept_elsewhere])}
    assert remaining == {*current, *kept_elsewhere}
    assert alarms.alarm_states(["demo-embedder-r0-backlog-without-capacity"])


def test_after_success_earlier_guards_go_and_a_failing_retention_is_reported_not_raised(
    tmp_path: Path,
) -> None:
    """retire_previous_releases runs once the release stands: the earlier release's guard alarms go
    then (not during the shift, while an unwind may still put that release back). The endpoint does not
    exist here, so retiring configs fails: that is reported, and the successful release stays so."""
    from tasks.rollout.traffic_shift import retire_previous_releases

    config = guarded_config()
    old = alarms.create_guard_alarms(
        config,
        "r0",
        endpoint="demo-embedder",
        variant="v0",
        config_name="cfg-v0",
        ledger=local_ledger(tmp_path),
    )
    retired = retire_previous_releases.fn(config, "r1", previous_config=None)
    assert sorted(retired.deleted) == sorted(f"alarm {name}" for name in old)
    assert alarms.alarm_states(old) == []
    assert len(retired.failed) == 1 and retired.failed[0].startswith("older releases of demo-embedder")


def _alarm(name: str) -> None:
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
    )


def _set(name: str, state: str, reason: str) -> None:
    aws.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def test_await_quiet_returns_once_every_alarm_was_judged_and_none_fires() -> None:
    _alarm("g-5xx")
    _set("g-5xx", "OK", "Threshold Crossed: no datapoints were breaching")
    clock = FakeClock()
    alarms.await_quiet(["g-5xx"], endpoint="e", timeout_s=180, interval_s=5, clock=clock)
    assert clock.now == 0


def test_await_quiet_refuses_an_alarm_still_in_alarm_when_time_is_up() -> None:
    _alarm("g-5xx")
    _set("g-5xx", "ALARM", "Threshold Crossed: 1 datapoint [3.0] was greater than the threshold (0.0)")
    clock = FakeClock()
    with pytest.raises(AlarmsAlreadyFiring) as raised:
        alarms.await_quiet(["g-5xx"], endpoint="e", timeout_s=180, interval_s=5, clock=clock)
    assert raised.value.alarms == ("g-5xx",) and "the endpoint was not changed" in str(raised.value)
    assert 175 <= clock.now <= 185


def test_await_quiet_goes_ahead_when_an_alarm_is_never_evaluated() -> None:
    _alarm("g-5xx")  # moto leaves it "Unchecked: Initial alarm creation"
    assert not alarms.judged(alarms.alarm_states(["g-5xx"])[0])
    clock = FakeClock()
    alarms.await_quiet(["g-5xx"], endpoint="e", timeout_s=60, interval_s=5, clock=clock)
    assert clock.now >= 55
