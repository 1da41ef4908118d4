"""The rollout runner: SageMaker call shapes (checked against botocore's model), steps, rollback.

SageMaker is `FakeSageMaker` (moto has no UpdateEndpoint); CloudWatch is moto in-process, where the
tests set alarm states themselves at chosen moments of a fake clock.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.core import aws
from tasks.core.errors import AlarmFired, AlarmsAlreadyFiring, EndpointRolledBack, WaitTimeout
from tasks.lifecycle.kinds import (
    AUTOSCALING_TARGET,
    CLOUDWATCH_ALARM,
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
)
from tasks.lifecycle.ledger import Ledger
from tasks.report.rollout_chart import markdown, steps_svg, steps_table
from tasks.rollout import traffic_shift
from tasks.rollout.bake_traffic import BakeTraffic
from tasks.rollout.planning import plan_rollout
from tasks.rollout.runner import Rollout, RolloutReport
from tasks.sagemaker import hosting
from tests.unit.deploy_helpers import local_ledger, make_config
from tests.unit.rollout_fakes import FakeSageMaker, StepClock, serving_old_model

ENDPOINT = "demo-embedder"
BASE_TIME = 1_750_000_000.0


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, mocked_aws: None) -> Iterator[FakeSageMaker]:
    with serving_old_model(monkeypatch, ENDPOINT) as double:
        yield double


def release_config(count: int = 1, **rollout: Any) -> Any:
    settings = {"bake_s": 40, "final_bake_s": 40, "alarms": {"period_s": 10}, **rollout}
    return make_config(endpoint={"instance_count": count}, rollout=settings)


def add_final_config(fake: FakeSageMaker, count: int = 1) -> str:
    fake.add_config(
        "demo-embedder-r1",
        [
            {
                "VariantName": "AllTraffic",
                "ModelName": "demo-embedder-r1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
                "InitialVariantWeight": 1.0,
            }
        ],
    )
    return "demo-embedder-r1"


def rollout(config: Any, fake: FakeSageMaker, ledger: Ledger, clock: StepClock, **extra: Any) -> Rollout:
    live = hosting.live_endpoint(ENDPOINT)
    return Rollout(
        config,
        "r1",
        plan=plan_rollout(config, live),
        live=live,
        model_name="demo-embedder-r1",
        final_config=add_final_config(fake, config.endpoint.instance_count),
        ledger=ledger,
        clock=clock,
        wall=lambda: BASE_TIME + clock.now,
        traffic=BakeTraffic([], lambda body: (None, 200), rate_per_s=0),
        **extra,
    )


def fire(alarm: str, reason: str = "Threshold Crossed: 1 datapoint [3.0 (22/11/26 00:00:10)]") -> None:
    aws.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason=reason)


def fire_at_share(fake: FakeSageMaker, share: float, alarm: str) -> None:
    """Fire `alarm` once the new variant carries `share`% of the traffic."""

    def check(described: dict[str, Any]) -> None:
        weights = {v["VariantName"]: v["CurrentWeight"] for v in described.get("ProductionVariants", [])}
        if weights.get("AllTraffic-r1") == share and described["EndpointStatus"] == "InService":
            fire(alarm)
            fake.on_describe = None

    fake.on_describe = check


def test_variant_shift_moves_weights_step_by_step_and_ends_on_one_variant(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    config = release_config(strategy="variant_shift", steps=[33, 66])
    clock, ledger = StepClock(), local_ledger(tmp_path)
    seen_before_traffic: list[str] = []
    report = rollout(config, fake, ledger, clock, before_traffic=seen_before_traffic.append).run()

    staging = fake.called("CreateEndpointConfig")[0]
    assert staging["EndpointConfigName"] == "demo-embedder-r1-shift"
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in staging["ProductionVariants"]] == [
        ("AllTraffic", 1.0),
        ("AllTraffic-r1", 0.0),
    ]
    # 10 s alarms: the staging config asks for datapoints every 10 s for the new variant.
    assert staging["MetricsConfig"] == {"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 10}
    assert seen_before_traffic == ["AllTraffic-r1"]
    shares = [
        {d["VariantName"]: d["DesiredWeight"] for d in call["DesiredWeightsAndCapacities"]}
        for call in fake.called("UpdateEndpointWeightsAndCapacities")
    ]
    assert shares == [
        {"AllTraffic": 67.0, "AllTraffic-r1": 33.0},
        {"AllTraffic": 34.0, "AllTraffic-r1": 66.0},
        {"AllTraffic": 0.0, "AllTraffic-r1": 100.0},
    ]
    updates = [call["EndpointConfigName"] for call in fake.called("UpdateEndpoint")]
    assert updates == ["demo-embedder-r1-shift", "demo-embedder-r1"]
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "demo-embedder-r1"
    assert "demo-embedder-r1-shift" not in fake.configs and "old-config" in fake.configs  # kept for rollback

    assert report.outcome == "completed" and report.strategy == "variant_shift"
    assert [s.weight_percent for s in report.steps] == [33.0, 66.0, 100.0]
    durations = [s.ended_at - s.started_at for s in report.steps]
    assert durations[0] >= 30 and durations[1] >= 30 and durations[2] >= 20
    assert all(s.alarm_states == dict.fromkeys(report.guard_alarms, "OK") for s in report.steps)
    # The guards now watch the variant that serves the model.
    errors = aws.client("cloudwatch").describe_alarms(AlarmNames=[report.guard_alarms[0]])["MetricAlarms"][0]
    assert {"Name": "VariantName", "Value": "AllTraffic"} in errors["Dimensions"]
    assert {"Name": "EndpointConfigName", "Value": "demo-embedder-r1"} in errors["Dimensions"]
    endpoint_entries = ledger.find(SAGEMAKER_ENDPOINT)
    assert {e.attrs["previous_config"] for e in endpoint_entries} == {"old-config"}
    assert [e.resource_id for e in ledger.find(SAGEMAKER_ENDPOINT_CONFIG)] == ["demo-embedder-r1-shift"]


def test_an_alarm_mid_shift_sends_all_traffic_back_and_names_the_alarm(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    config = release_config(strategy="variant_shift", steps=[10, 50])
    clock, ledger = StepClock(), local_ledger(tmp_path)
    runner = rollout(config, fake, ledger, clock)
    fire_at_share(fake, 50.0, "demo-embedder-r1-5xx")

    with pytest.raises(AlarmFired) as raised:
        runner.run()

    assert raised.value.alarms == ("demo-embedder-r1-5xx",)
    assert "Threshold Crossed" in raised.value.reasons[0]
    assert "demo-embedder-r1-5xx" in str(raised.value) and raised.value.endpoint == ENDPOINT
    assert fake.weights(ENDPOINT) == {"AllTraffic": 1.0, "AllTraffic-r1": 0.0}
    report = runner.report
    assert report.outcome == "rolled back" and report.fired == ["demo-embedder-r1-5xx"]
    assert [(s.weight_percent, s.outcome) for s in report.steps] == [
        (10.0, "passed"),
        (50.0, "alarm"),
        (0.0, "rolled back"),
    ]
    assert report.steps[1].alarm_states["demo-embedder-r1-5xx"] == "ALARM"
    # Nothing moved to the final config; the ledger restores the endpoint to the old config.
    assert [c["EndpointConfigName"] for c in fake.called("UpdateEndpoint")] == ["demo-embedder-r1-shift"]
    assert ledger.find(SAGEMAKER_ENDPOINT)[0].attrs["previous_config"] == "old-config"
    assert {e.resource_id for e in ledger.find(CLOUDWATCH_ALARM)} == set(report.guard_alarms)


def test_canary_through_guardrails_records_each_bake(fake: FakeSageMaker, tmp_path: Path) -> None:
    fake.configs["old-config"]["ProductionVariants"][0]["InitialInstanceCount"] = 4
    fake.add_endpoint(ENDPOINT, "old-config")
    config = release_config(strategy="canary", canary_percent=25, count=4)
    clock = StepClock()
    report = rollout(config, fake, local_ledger(tmp_path), clock).run()

    update = fake.called("UpdateEndpoint")[0]
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    alarms_named = [a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
    assert alarms_named == ["demo-embedder-r1-5xx", "demo-embedder-r1-p99-latency"]
    assert report.outcome == "completed"
    assert [s.weight_percent for s in report.steps] == [25.0, 100.0]
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "demo-embedder-r1"


def test_guardrails_rollback_with_an_alarm_raises_alarm_fired(fake: FakeSageMaker, tmp_path: Path) -> None:
    fake.configs["old-config"]["ProductionVariants"][0]["InitialInstanceCount"] = 2
    fake.add_endpoint(ENDPOINT, "old-config")
    fake.guardrail_rolls_back = True
    config = release_config(strategy="canary", count=2)
    runner = rollout(config, fake, local_ledger(tmp_path), StepClock())
    phases = iter(range(100))

    def fire_on_third_poll(described: dict[str, Any]) -> None:
        if next(phases) == 3:
            fire("demo-embedder-r1-p99-latency", "Threshold Crossed: p99 too slow")

    fake.on_describe = fire_on_third_poll
    with pytest.raises(AlarmFired) as raised:
        runner.run()
    assert raised.value.alarms == ("demo-embedder-r1-p99-latency",)
    assert raised.value.reasons == ("Threshold Crossed: p99 too slow",)
    assert runner.report.steps[-1].outcome == "rolled back"


def test_guardrails_name_only_alarms_that_fired_once_traffic_moved(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """A guard alarm judging the variant's previous period (a release rolled back just before) while
    the new fleet is still provisioned is not what rolled this release back."""
    fake.configs["old-config"]["ProductionVariants"][0]["InitialInstanceCount"] = 2
    fake.add_endpoint(ENDPOINT, "old-config")
    fake.guardrail_rolls_back = True
    config = release_config(strategy="canary", count=2)
    runner = rollout(config, fake, local_ledger(tmp_path), StepClock())
    cloudwatch = aws.client("cloudwatch")

    def stale_then_slow(described: dict[str, Any]) -> None:
        variants = (described.get("PendingDeploymentSummary") or {}).get("ProductionVariants") or [{}]
        phase = (variants[0].get("VariantStatus") or [{}])[0].get("Status")
        if phase == "Creating":
            fire("demo-embedder-r1-5xx", "Threshold Crossed: errors of the previous release")
        elif phase == "ActivatingTraffic":
            cloudwatch.set_alarm_state(AlarmName="demo-embedder-r1-5xx", StateValue="OK", StateReason="ok")
        elif phase == "Baking":
            fire("demo-embedder-r1-p99-latency", "Threshold Crossed: p99 too slow")

    fake.on_describe = stale_then_slow
    with pytest.raises(AlarmFired) as raised:
        runner.run()
    assert raised.value.alarms == ("demo-embedder-r1-p99-latency",)
    assert runner.report.fired == ["demo-embedder-r1-p99-latency"]


def test_guardrails_rollback_without_an_alarm_is_endpoint_rolled_back(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    fake.configs["old-config"]["ProductionVariants"][0]["InitialInstanceCount"] = 2
    fake.add_endpoint(ENDPOINT, "old-config")
    fake.guardrail_rolls_back = True
    with pytest.raises(EndpointRolledBack) as raised:
        rollout(release_config(strategy="canary", count=2), fake, local_ledger(tmp_path), StepClock()).run()
    assert raised.value.actual_config == "old-config"


def test_every_wait_ends(fake: FakeSageMaker, tmp_path: Path) -> None:
    fake.stuck = True
    config = release_config(strategy="variant_shift")
    config.timeouts.endpoint_s = 60
    with pytest.raises(WaitTimeout) as raised:
        rollout(config, fake, local_ledger(tmp_path), StepClock()).run()
    assert raised.value.resource == f"endpoint {ENDPOINT}"


def test_a_new_endpoint_bakes_under_its_alarms(fake: FakeSageMaker, tmp_path: Path) -> None:
    config = release_config(strategy="auto")
    clock = StepClock()
    runner = Rollout(
        config,
        "r1",
        plan=plan_rollout(config, None),
        live=None,
        model_name="demo-embedder-r1",
        final_config="demo-embedder-r1",
        ledger=local_ledger(tmp_path),
        clock=clock,
        wall=lambda: BASE_TIME + clock.now,
        traffic=BakeTraffic([], lambda body: (None, 200), rate_per_s=0),
    )
    clock.at(5, lambda: fire("demo-embedder-r1-5xx"))
    with pytest.raises(AlarmFired):
        runner.run()
    assert [(s.label, s.outcome) for s in runner.report.steps] == [("new endpoint", "alarm")]
    assert fake.called("UpdateEndpoint") == []


def test_missing_extra_alarms_stop_the_rollout_before_any_change(fake: FakeSageMaker, tmp_path: Path) -> None:
    config = release_config(
        strategy="variant_shift", alarms={"period_s": 10, "extra_alarm_names": ["team-kpi"]}
    )
    with pytest.raises(Exception, match="team-kpi"):
        rollout(config, fake, local_ledger(tmp_path), StepClock()).run()
    assert fake.calls == []


def test_the_report_renders_a_table_and_a_chart(fake: FakeSageMaker, tmp_path: Path) -> None:
    config = release_config(strategy="variant_shift", steps=[10, 50])
    clock = StepClock()
    runner = rollout(config, fake, local_ledger(tmp_path), clock)
    fire_at_share(fake, 50.0, "demo-embedder-r1-5xx")
    with pytest.raises(AlarmFired):
        runner.run()
    report: RolloutReport = runner.report

    table = steps_table(report)
    assert table.splitlines()[0].startswith("| # | step | new model % | invocations | 5xx |")
    assert "5xx ALARM" in table and "**rolled back**" in table
    svg = steps_svg(report)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and "polyline" in svg and ">alarm<" in svg
    assert "data:image/svg+xml;base64," in markdown(report)
    assert "(chart.svg)" in markdown(report, chart_url="chart.svg")


def test_the_flow_task_hands_over_the_report_even_when_the_rollout_fails(
    fake: FakeSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = release_config(strategy="variant_shift", steps=[50])  # no bake traffic: rate 0
    live = hosting.live_endpoint(ENDPOINT)
    seen: list[int] = []
    fire_at_share(fake, 50.0, "demo-embedder-r1-5xx")
    monkeypatch.setattr("tasks.rollout.runner.SystemClock", StepClock)  # no real waiting
    with pytest.raises(AlarmFired):
        traffic_shift.shift_traffic.fn(
            config,
            "r1",
            plan=traffic_shift.plan_traffic_shift.fn(config, live),
            live=live,
            model_name="demo-embedder-r1",
            final_config=add_final_config(fake),
            ledger=local_ledger(tmp_path),
            on_report=lambda report: seen.append(len(report.steps)),
        )
    assert seen == [1, 2, 2]  # after each step, then once more at the end


def test_an_async_update_that_renames_the_variant_takes_it_off_autoscaling_first(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """SageMaker refuses an update that removes a variant still registered with Application Auto
    Scaling; the update path of async and serverless endpoints suspends it like the others do."""
    config = make_config(
        endpoint={"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}},
        rollout={"bake_s": 0, "final_bake_s": 0, "alarms": {"period_s": 60}},
    )
    resource_id = f"endpoint/{ENDPOINT}/variant/AllTraffic"
    autoscaling = aws.client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=0,
        MaxCapacity=4,
    )
    ledger = local_ledger(tmp_path)
    live = hosting.live_endpoint(ENDPOINT)
    fake.add_config(
        "demo-embedder-r1",
        [
            {
                "VariantName": "Async-r1",
                "ModelName": "demo-embedder-r1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
            }
        ],
    )
    clock = StepClock()
    Rollout(
        config,
        "r1",
        plan=plan_rollout(config, live),
        live=live,
        model_name="demo-embedder-r1",
        final_config="demo-embedder-r1",
        ledger=ledger,
        clock=clock,
        wall=lambda: BASE_TIME + clock.now,
        traffic=BakeTraffic([], lambda body: (None, 200), rate_per_s=0),
    ).run()

    assert [(e.resource_id, e.attrs["purpose"]) for e in ledger.find(AUTOSCALING_TARGET)] == [
        (resource_id, "suspended")
    ]
    left = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert left == [], "the removed variant must be off autoscaling before UpdateEndpoint"
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "demo-embedder-r1"


def test_an_alarm_already_firing_stops_the_guardrails_before_the_endpoint_changes(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """SageMaker would roll the update back the moment it starts: refuse it, naming the alarm."""
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName="team-kpi",
        Namespace="Team",
        MetricName="Conversions",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
    )
    aws.client("cloudwatch").set_alarm_state(
        AlarmName="team-kpi", StateValue="ALARM", StateReason="Threshold Crossed: conversions dropped"
    )
    fake.configs["old-config"]["ProductionVariants"][0]["InitialInstanceCount"] = 4
    fake.add_endpoint(ENDPOINT, "old-config")
    config = release_config(
        strategy="canary", count=4, alarms={"period_s": 10, "extra_alarm_names": ["team-kpi"]}
    )
    with pytest.raises(AlarmsAlreadyFiring, match="team-kpi"):
        rollout(config, fake, local_ledger(tmp_path), StepClock()).run()
    assert fake.called("UpdateEndpoint") == []
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "old-config"
