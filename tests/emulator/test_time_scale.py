"""EMULATOR_TIME_SCALE: one clock makes metric periods, alarms and queue readings run faster, and a
per-period count still means what it means on AWS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulator import settings
from emulator.clock import Clock, ManualClock
from emulator.cloudwatch.alarms import AlarmEvaluator, period_starts
from emulator.cloudwatch.metrics import MetricsPublisher, SampleWindow, queue_metric_data
from emulator.cloudwatch.monitoring import Monitoring
from emulator.cloudwatch.rules import ALARM, OK, AlarmRule
from emulator.runtime.invocations import Invocation, QueueGauge
from emulator.runtime.queue_metrics import QueueMetrics
from tests.emulator.local_moto import cloudwatch_client, moto_server

SCALE = 30.0


@pytest.fixture(scope="module")
def cloudwatch() -> Iterator[Any]:
    with moto_server() as url:
        yield cloudwatch_client(url)


def test_a_scaled_minute_lasts_sixty_over_the_scale_and_is_aligned_on_the_epoch() -> None:
    clock = Clock(SCALE)
    assert clock.real(60) == 2.0 and clock.real(900) == 30.0  # AWS's 15-minute scale-in takes 30 s
    assert clock.aws(2.0) == 60.0
    assert clock.period_index(1_000_001.9, 60) == 500_000
    assert clock.period_start(500_001, 60) == 1_000_002.0
    rule = AlarmRule("a", "N", "M", (), "Sum", False, 60, 3, 3, 1.0, "GreaterThanThreshold", "missing")
    assert period_starts(rule, now=1_000_011.0, settle_s=0.5, scale=SCALE) == [
        1_000_000.0,
        1_000_002.0,
        1_000_004.0,
        1_000_006.0,
        1_000_008.0,
    ]


@pytest.mark.parametrize("raw", ["0.5", "fast", "inf", "-3"])
def test_a_time_scale_that_is_not_a_number_of_at_least_one_is_refused_naming_the_variable(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.TIME_SCALE_ENV, raw)
    with pytest.raises(ValueError, match=rf"{settings.TIME_SCALE_ENV}=.*(number >= 1|finite number >= 1)"):
        settings.time_scale()
    with pytest.raises(ValueError, match=settings.TIME_SCALE_ENV):
        Clock.from_env()


def test_the_default_is_awss_own_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.TIME_SCALE_ENV, raising=False)
    assert Clock.from_env().scale == 1.0
    monitoring = Monitoring.from_env(client=object(), clock=Clock())
    assert (monitoring.publisher.flush_interval_s, monitoring.evaluator.interval_s) == (1.0, 5.0)
    fast = Monitoring.from_env(client=object(), clock=Clock(SCALE))
    assert fast.evaluator.interval_s == 0.25 and fast.evaluator.settle_s < 1.0


def _invocations_alarm(cloudwatch: Any, endpoint: str, threshold: float) -> str:
    name = f"ipi-{uuid.uuid4().hex[:8]}"
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="InvocationsPerInstance",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanThreshold",
    )
    return name


@pytest.mark.parametrize(("spread_s", "expected"), [(1.5, ALARM), (4.0, OK)])
def test_the_count_of_a_scaled_minute_is_reported_as_that_minutes_sum(
    cloudwatch: Any, spread_s: float, expected: str
) -> None:
    """Ten requests on two instances: InvocationsPerInstance 5 in one (2 s) minute breaches 4; the same ten
    spread over two such minutes are 2.5 and 2.5, which do not."""
    clock = ManualClock(start=(int(time.time()) // 3600) * 3600 - 7200.0, scale=SCALE)
    samples = SampleWindow(clock=lambda: clock.time() + 60)
    publisher = MetricsPublisher(lambda: cloudwatch, samples=samples, scale=SCALE)
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    alarm = _invocations_alarm(cloudwatch, endpoint, threshold=4.0)
    start = clock.period_start(clock.period_index(clock.time(), 60) + 1, 60)
    for i in range(10):
        at = start + 0.1 + i * spread_s / 10
        publisher.record(Invocation(endpoint, "AllTraffic", "sync", at, 200, 1000, 100, instances=2))
    publisher.flush()
    judge = AlarmEvaluator(lambda: cloudwatch, samples=samples, settle_s=0.0, clock=clock)

    judge.evaluate_once(start + 2.0 + 0.01, alarm_names=[alarm])

    described = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]
    assert described["StateValue"] == expected
    data = json.loads(described["StateReasonData"])
    assert data["period"] == 60  # the alarm still speaks AWS's minute
    assert data["recentDatapoints"] == ([5.0] if expected == ALARM else [2.5])


def test_queue_metrics_are_read_just_before_each_scaled_minute_ends() -> None:
    clock = ManualClock(start=1_000_000.3, scale=SCALE)
    metrics = QueueMetrics(jobs=None, clock=clock, publish=lambda readings: None)  # type: ignore[arg-type]
    assert metrics.next_reading_at(clock.time()) == pytest.approx(1_000_001.8)
    assert metrics.next_reading_at(1_000_001.9) == pytest.approx(1_000_003.8)  # too late for this one
    at_aws_pace = QueueMetrics(jobs=None, clock=ManualClock(start=0.0), publish=lambda r: None)  # type: ignore[arg-type]
    assert at_aws_pace.next_reading_at(5.0) == 59.0


def test_queue_readings_become_sagemakers_four_backlog_metrics() -> None:
    readings = [
        QueueGauge("idle", 10.0, backlog=0, instances=1, oldest_age_s=0.0),
        QueueGauge("waiting", 10.0, backlog=6, instances=0, oldest_age_s=90.0),
        QueueGauge("busy", 10.0, backlog=6, instances=3, oldest_age_s=30.0),
    ]
    values = {(d["Dimensions"][0]["Value"], d["MetricName"]): d["Value"] for d in queue_metric_data(readings)}
    assert values[("idle", "HasBacklogWithoutCapacity")] == 0.0
    assert values[("waiting", "HasBacklogWithoutCapacity")] == 1.0
    assert values[("waiting", "ApproximateBacklogSizePerInstance")] == 6.0
    assert values[("busy", "ApproximateBacklogSizePerInstance")] == 2.0
    assert values[("busy", "ApproximateBacklogSize")] == 6.0
    assert values[("waiting", "ApproximateAgeOfOldestRequest")] == 90.0


def test_up_refuses_a_bad_time_scale_before_touching_the_stack() -> None:
    import os

    result = subprocess.run(
        [sys.executable, "-m", "emulator", "up"],
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        env={**os.environ, settings.TIME_SCALE_ENV: "ludicrous"},
        timeout=60,
    )
    assert result.returncode == 1
    assert "EMULATOR_TIME_SCALE='ludicrous' is not a number; set it to a number >= 1" in result.stderr
    assert result.stdout == ""


@pytest.mark.stack
def test_status_shows_the_time_scale_the_emulator_runs_at(stack: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "status"], capture_output=True, text=True, cwd=settings.REPO_ROOT
    )
    row = next(line for line in result.stdout.splitlines() if line.startswith("sagemaker"))
    assert "time scale 1" in row


@pytest.mark.stack
def test_a_private_emulator_runs_on_the_scale_it_was_given(
    private_emulator: Callable[..., Any],
) -> None:
    emulator = private_emulator(EMULATOR_TIME_SCALE="30")
    health = httpx.get(f"http://{settings.HOST}:{emulator.control_port}/_emulator/health", timeout=5).json()
    assert health["time_scale"] == 30.0
    assert "time scale 30" in emulator.log.read_text()


@pytest.mark.stack
def test_up_restarts_an_emulator_it_started_at_another_time_scale(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from emulator import stack as local_stack
    from emulator.stack import processes

    sagemaker = local_stack.part("sagemaker")
    if processes.read_pid(sagemaker.pid_file(settings.state_dir())) is None:
        pytest.skip("the running emulator was not started from this checkout's state folder")
    monkeypatch.setenv(settings.TIME_SCALE_ENV, "30")
    try:
        assert local_stack.up(["sagemaker"]) == ["sagemaker"]
        assert processes.reported_time_scale(sagemaker) == 30.0
        assert "ran at time scale 1 where EMULATOR_TIME_SCALE asks for 30" in capfd.readouterr().err
    finally:
        monkeypatch.delenv(settings.TIME_SCALE_ENV)
        local_stack.up(["sagemaker"])  # the shared stack goes back to AWS's pace for the other tests
    assert processes.reported_time_scale(sagemaker) == 1.0


def test_the_evaluator_wakes_when_a_scaled_period_has_ended_and_settled(cloudwatch: Any) -> None:
    clock = ManualClock(start=1_000_000.3, scale=SCALE)
    judge = AlarmEvaluator(lambda: cloudwatch, settle_s=0.7, interval_s=5.0, clock=clock)
    assert judge.until_next_verdict() == pytest.approx(5.01)  # no alarm seen yet: the interval
    alarm = _invocations_alarm(cloudwatch, f"ep-{uuid.uuid4().hex[:6]}", threshold=4.0)
    judge.evaluate_once(alarm_names=[alarm])
    # The last 60 s period (2 s at scale 30) ended at 1_000_000.0 and has its verdict due 0.7 s later.
    assert judge.until_next_verdict() == pytest.approx(1_000_000.7 - 1_000_000.3 + 0.01)
    clock.advance(0.5)  # that one is judged: the next ends at 1_000_002.0
    assert judge.until_next_verdict() == pytest.approx(1_000_002.7 - 1_000_000.8 + 0.01)


def test_an_emulator_leaves_alarms_on_another_emulators_endpoints_alone(
    cloudwatch: Any, tmp_path: Any
) -> None:
    """Two emulators on one moto, at two time scales, must not take turns setting the same alarm."""
    from emulator.sagemaker.store import Store
    from emulator.server import judges

    store = Store.open(tmp_path)
    store.endpoints["mine"] = {"EndpointName": "Mine"}
    ours = _invocations_alarm(cloudwatch, "Mine", threshold=4.0)
    theirs = _invocations_alarm(cloudwatch, "theirs", threshold=4.0)
    judge = AlarmEvaluator(
        lambda: cloudwatch, settle_s=0.0, clock=ManualClock(scale=SCALE), judges=lambda a: judges(store, a)
    )

    outcomes = judge.evaluate_once(alarm_names=[ours, theirs])

    assert [o.name for o in outcomes] == [ours]
    untouched = cloudwatch.describe_alarms(AlarmNames=[theirs])["MetricAlarms"][0]
    assert untouched["StateReason"].startswith("Unchecked")
    assert judges(store, {"Namespace": "Tests", "Dimensions": [{"Name": "Service", "Value": "x"}]})
