"""Alarms evaluated as CloudWatch does, against a real moto server: periods, M of N, missing data."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.cloudwatch.alarms import AlarmEvaluator, period_starts
from emulator.cloudwatch.metrics import MetricsPublisher, SampleWindow
from emulator.cloudwatch.rules import ALARM, INSUFFICIENT_DATA, OK, AlarmRule, Datapoint, evaluate
from emulator.runtime.invocations import Invocation
from tests.emulator.local_moto import cloudwatch_client, moto_server

PERIOD = 10
NAMESPACE = "Tests/Alarms"


@pytest.fixture(scope="module")
def cloudwatch() -> Iterator[Any]:
    with moto_server() as url:
        yield cloudwatch_client(url)


@pytest.fixture
def base() -> float:
    """A period boundary far enough in the past that each test owns its timeline."""
    return float((int(time.time()) // 3600) * 3600 - 7200)


def put_alarm(cloudwatch: Any, **overrides: Any) -> str:
    name = f"alarm-{uuid.uuid4().hex[:8]}"
    request: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": NAMESPACE,
        "MetricName": "Errors",
        "Dimensions": [{"Name": "Service", "Value": name}],
        "Statistic": "Sum",
        "Period": PERIOD,
        "EvaluationPeriods": 1,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    request.update(overrides)
    cloudwatch.put_metric_alarm(**{key: value for key, value in request.items() if value is not None})
    return name


def put_value(cloudwatch: Any, alarm: str, at: float, value: float) -> None:
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": "Errors",
                "Dimensions": [{"Name": "Service", "Value": alarm}],
                "Timestamp": at,
                "Value": value,
                "StorageResolution": 1,
            }
        ],
    )


def state(cloudwatch: Any, alarm: str) -> dict[str, Any]:
    return dict(cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0])


def evaluator(cloudwatch: Any, **options: Any) -> AlarmEvaluator:
    return AlarmEvaluator(lambda: cloudwatch, settle_s=0.0, **options)


def end_of(base: float, period_index: int) -> float:
    """The moment period `period_index` (counted from `base`) has just ended."""
    return base + (period_index + 1) * PERIOD + 0.5


# --- against moto ---------------------------------------------------------------------------------------


def test_alarm_goes_ok_then_alarm_then_ok_with_cloudwatch_reasons(cloudwatch: Any, base: float) -> None:
    alarm = put_alarm(cloudwatch)
    judge = evaluator(cloudwatch)
    put_value(cloudwatch, alarm, base + 1, 1.0)
    put_value(cloudwatch, alarm, base + PERIOD + 2, 4.0)
    put_value(cloudwatch, alarm, base + PERIOD + 3, 5.0)  # Sum 9 in the second period
    put_value(cloudwatch, alarm, base + 2 * PERIOD + 1, 0.0)

    judge.evaluate_once(end_of(base, 0), alarm_names=[alarm])
    first = state(cloudwatch, alarm)
    assert first["StateValue"] == OK
    assert first["StateReason"].startswith("Threshold Crossed: 1 datapoint [1.0 (")
    assert "was not greater than the threshold (5.0)" in first["StateReason"]

    outcome = judge.evaluate_once(end_of(base, 1), alarm_names=[alarm])
    assert [(o.previous, o.state, o.changed) for o in outcome] == [(OK, ALARM, True)]
    alarmed = state(cloudwatch, alarm)
    assert alarmed["StateValue"] == ALARM
    assert alarmed["StateReason"] == (
        f"Threshold Crossed: 1 datapoint [9.0 ({_when(base + PERIOD)})] was greater than the threshold (5.0) "
        "(minimum 1 datapoint for OK -> ALARM transition)."
    )
    data = json.loads(alarmed["StateReasonData"])
    assert data["statistic"] == "Sum" and data["period"] == PERIOD and data["recentDatapoints"] == [9.0]

    judge.evaluate_once(end_of(base, 2), alarm_names=[alarm])
    assert state(cloudwatch, alarm)["StateValue"] == OK


def test_an_unchanged_state_is_not_set_again(cloudwatch: Any, base: float) -> None:
    alarm = put_alarm(cloudwatch)
    put_value(cloudwatch, alarm, base + 1, 9.0)
    put_value(cloudwatch, alarm, base + PERIOD + 1, 7.0)
    judge = evaluator(cloudwatch)
    assert [o.changed for o in judge.evaluate_once(end_of(base, 0), alarm_names=[alarm])] == [True]
    reason = state(cloudwatch, alarm)["StateReason"]
    assert [o.changed for o in judge.evaluate_once(end_of(base, 1), alarm_names=[alarm])] == [False]
    assert state(cloudwatch, alarm)["StateReason"] == reason


def test_m_out_of_n_needs_m_breaching_periods(cloudwatch: Any, base: float) -> None:
    alarm = put_alarm(cloudwatch, EvaluationPeriods=3, DatapointsToAlarm=2)
    judge = evaluator(cloudwatch)
    for index, value in enumerate([9.0, 0.0, 1.0, 8.0, 0.0]):
        put_value(cloudwatch, alarm, base + index * PERIOD + 1, value)

    judge.evaluate_once(end_of(base, 2), alarm_names=[alarm])  # 9 0 1: one breaching of three
    assert state(cloudwatch, alarm)["StateValue"] == OK
    judge.evaluate_once(end_of(base, 3), alarm_names=[alarm])  # 0 1 8: still one
    assert state(cloudwatch, alarm)["StateValue"] == OK

    alarm2 = put_alarm(cloudwatch, EvaluationPeriods=3, DatapointsToAlarm=2)
    for index, value in enumerate([9.0, 0.0, 8.0]):
        put_value(cloudwatch, alarm2, base + index * PERIOD + 1, value)
    judge.evaluate_once(end_of(base, 2), alarm_names=[alarm2])
    alarmed = state(cloudwatch, alarm2)
    assert alarmed["StateValue"] == ALARM
    assert alarmed["StateReason"].startswith("Threshold Crossed: 2 out of the last 3 datapoints [8.0 (")
    assert alarmed["StateReason"].endswith(
        "were greater than the threshold (5.0) (minimum 2 datapoints for OK -> ALARM transition)."
    )


def test_an_alarm_without_data_is_insufficient_data(cloudwatch: Any, base: float) -> None:
    alarm = put_alarm(cloudwatch, EvaluationPeriods=2)
    assert state(cloudwatch, alarm)["StateReason"].startswith("Unchecked")  # moto's fresh alarm says OK
    evaluator(cloudwatch).evaluate_once(end_of(base, 5), alarm_names=[alarm])
    described = state(cloudwatch, alarm)
    assert described["StateValue"] == INSUFFICIENT_DATA
    assert described["StateReason"] == "Insufficient Data: 2 datapoints were unknown."


@pytest.mark.parametrize(
    ("treat", "expected"),
    [("missing", INSUFFICIENT_DATA), ("breaching", ALARM), ("notBreaching", OK), ("ignore", ALARM)],
)
def test_treat_missing_data_when_the_metric_stops(
    cloudwatch: Any, base: float, treat: str, expected: str
) -> None:
    alarm = put_alarm(cloudwatch, EvaluationPeriods=2, TreatMissingData=treat)
    judge = evaluator(cloudwatch)
    put_value(cloudwatch, alarm, base + 1, 9.0)
    put_value(cloudwatch, alarm, base + PERIOD + 1, 9.0)
    judge.evaluate_once(end_of(base, 1), alarm_names=[alarm])
    assert state(cloudwatch, alarm)["StateValue"] == ALARM

    judge.evaluate_once(end_of(base, 10), alarm_names=[alarm])  # the whole range is empty now
    described = state(cloudwatch, alarm)
    assert described["StateValue"] == expected
    if treat == "notBreaching":
        assert described["StateReason"] == (
            "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints "
            "were treated as [NonBreaching]."
        )


def test_ignore_keeps_ok_and_breaching_fills_gaps(cloudwatch: Any, base: float) -> None:
    ignore = put_alarm(cloudwatch, EvaluationPeriods=3, TreatMissingData="ignore")
    breaching = put_alarm(cloudwatch, EvaluationPeriods=3, DatapointsToAlarm=2, TreatMissingData="breaching")
    judge = evaluator(cloudwatch)
    for alarm in (ignore, breaching):
        put_value(cloudwatch, alarm, base + 1, 0.0)
        put_value(cloudwatch, alarm, base + PERIOD + 1, 0.0)
        put_value(cloudwatch, alarm, base + 2 * PERIOD + 1, 0.0)
    judge.evaluate_once(end_of(base, 2), alarm_names=[ignore, breaching])
    assert state(cloudwatch, ignore)["StateValue"] == OK
    # Range "0 - X - -" for 2 of 3 with one gap filled as breaching: ALARM.
    put_value(cloudwatch, breaching, base + 4 * PERIOD + 1, 9.0)
    judge.evaluate_once(end_of(base, 6), alarm_names=[ignore, breaching])
    assert state(cloudwatch, ignore)["StateValue"] == OK
    assert state(cloudwatch, breaching)["StateValue"] == ALARM
    assert "missing datapoint was treated as [Breaching]" in state(cloudwatch, breaching)["StateReason"]


def test_p99_latency_alarm_uses_the_published_samples(cloudwatch: Any, base: float) -> None:
    samples = SampleWindow(clock=lambda: base + 3600)
    publisher = MetricsPublisher(lambda: cloudwatch, samples=samples)
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    alarm = put_alarm(
        cloudwatch,
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=[{"Name": "VariantName", "Value": "New"}, {"Name": "EndpointName", "Value": endpoint}],
        Statistic=None,
        ExtendedStatistic="p99",
        Threshold=500_000.0,
    )
    for index in range(100):  # period 0: fast; period 1: one request in a hundred is slow
        # An enhanced-metrics fleet: datapoints every 10 s, which a 10 s alarm can judge.
        at = base + 1 + index * 0.05
        publisher.record(Invocation(endpoint, "New", "sync", at, 200, 20_000, 100, metrics_period_s=PERIOD))
        slow = 900_000 if index >= 98 else 20_000
        publisher.record(
            Invocation(endpoint, "New", "sync", at + PERIOD, 200, slow, 100, metrics_period_s=PERIOD)
        )
    publisher.flush(everything=True)
    judge = evaluator(cloudwatch, samples=samples)
    judge.evaluate_once(end_of(base, 0), alarm_names=[alarm])
    assert state(cloudwatch, alarm)["StateValue"] == OK
    judge.evaluate_once(end_of(base, 1), alarm_names=[alarm])
    alarmed = state(cloudwatch, alarm)
    assert alarmed["StateValue"] == ALARM
    assert "[900000.0 (" in alarmed["StateReason"]
    assert json.loads(alarmed["StateReasonData"])["extendedStatistic"] == "p99"


@pytest.mark.parametrize(
    ("treat_missing", "expected"), [("missing", INSUFFICIENT_DATA), ("notBreaching", OK)]
)
def test_a_ten_second_alarm_on_one_minute_metrics_finds_no_datapoint(
    cloudwatch: Any, base: float, treat_missing: str, expected: str
) -> None:
    """Every request fails, but SageMaker publishes once a minute: a 10 s alarm sees only missing data
    (INSUFFICIENT_DATA, or OK when missing data is not breaching) and never fires; a 60 s one does."""
    samples = SampleWindow(clock=lambda: base + 3600)
    publisher = MetricsPublisher(lambda: cloudwatch, samples=samples)
    endpoint = f"ep-{uuid.uuid4().hex[:6]}"
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]
    fast, minute = (
        put_alarm(
            cloudwatch,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Dimensions=dimensions,
            Period=period,
            Threshold=0.0,
            TreatMissingData=treat_missing,
        )
        for period in (PERIOD, 60)
    )
    for index in range(30):
        publisher.record(Invocation(endpoint, "AllTraffic", "sync", base + 1 + index, 500, 1000, 100))
    publisher.flush(everything=True)
    evaluator(cloudwatch, samples=samples).evaluate_once(base + 61.0, alarm_names=[fast, minute])
    assert state(cloudwatch, fast)["StateValue"] == expected
    assert state(cloudwatch, minute)["StateValue"] == ALARM


def test_the_background_loop_evaluates_on_real_time(cloudwatch: Any) -> None:
    alarm = put_alarm(cloudwatch)
    judge = AlarmEvaluator(lambda: cloudwatch, interval_s=0.2, settle_s=0.0)
    last_complete = (int(time.time()) // PERIOD) * PERIOD - PERIOD
    put_value(cloudwatch, alarm, last_complete + 1, 50.0)
    put_value(cloudwatch, alarm, last_complete + PERIOD + 1, 50.0)  # the period in progress, too
    judge.start()
    try:
        deadline = time.monotonic() + 15
        while state(cloudwatch, alarm)["StateValue"] != ALARM:
            assert time.monotonic() < deadline, "the evaluator never set the alarm"
            time.sleep(0.1)
    finally:
        judge.stop()


def test_unsupported_alarms_are_left_alone(cloudwatch: Any, base: float) -> None:
    alarm = put_alarm(cloudwatch, ComparisonOperator="LessThanLowerOrGreaterThanUpperThreshold")
    assert evaluator(cloudwatch).evaluate_once(end_of(base, 3), alarm_names=[alarm]) == []
    assert state(cloudwatch, alarm)["StateReason"].startswith("Unchecked")


# --- the rules alone: the tables of CloudWatch's "How alarm state is evaluated when data is missing" --------

X: float = 9.0  # breaching
Z: float = 0.0  # not breaching
_: None = None  # missing


def rule(n: int, m: int, treat: str) -> AlarmRule:
    return AlarmRule(
        name="t",
        namespace="N",
        metric_name="M",
        dimensions=(),
        statistic="Sum",
        extended=False,
        period=60,
        evaluation_periods=n,
        datapoints_to_alarm=m,
        threshold=5.0,
        comparison="GreaterThanThreshold",
        treat_missing=treat,
    )


def judge_points(values: list[float | None], n: int, m: int, treat: str, current: str = OK) -> str:
    points = [Datapoint(60.0 * i, v) for i, v in enumerate(values)]
    verdict = evaluate(rule(n, m, treat), points, current, query_time=600.0)
    return verdict.state or "RETAIN"


TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([Z, _, X, _, X], (OK, OK, OK, OK)),
        ([Z, _, _, _, _], (OK, OK, OK, OK)),
        ([_, _, _, _, _], (INSUFFICIENT_DATA, "RETAIN", ALARM, OK)),
        ([Z, X, X, _, X], (ALARM, ALARM, ALARM, ALARM)),
        ([_, _, X, _, _], (ALARM, "RETAIN", ALARM, OK)),
    ],
)
def test_three_of_three_table(values: list[float | None], expected: tuple[str, ...]) -> None:
    assert tuple(judge_points(values, 3, 3, treat) for treat in TREATMENTS) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([Z, _, X, _, X], (ALARM, ALARM, ALARM, ALARM)),
        ([Z, Z, X, Z, X], (ALARM, ALARM, ALARM, ALARM)),
        ([Z, _, X, _, _], (OK, OK, ALARM, OK)),
        ([_, _, _, _, Z], (OK, OK, ALARM, OK)),
        ([_, _, _, X, _], (ALARM, "RETAIN", ALARM, OK)),
    ],
)
def test_two_of_three_table(values: list[float | None], expected: tuple[str, ...]) -> None:
    assert tuple(judge_points(values, 3, 2, treat) for treat in TREATMENTS) == expected


def test_a_single_recent_breach_does_not_alarm_prematurely() -> None:
    assert judge_points([_, _, _, _, X], 3, 3, "missing", current=OK) == "RETAIN"
    assert judge_points([_, _, _, X, Z], 3, 3, "missing") == OK


def test_period_starts_are_aligned_and_end_before_the_settle_time() -> None:
    assert period_starts(rule(3, 3, "missing"), now=1000.0, settle_s=5.0) == [
        660.0,
        720.0,
        780.0,
        840.0,
        900.0,
    ]


def _when(timestamp: float) -> str:
    return time.strftime("%d/%m/%y %H:%M:%S", time.gmtime(timestamp))


def test_each_period_is_fetched_once(cloudwatch: Any, base: float) -> None:
    alarm = put_alarm(cloudwatch, EvaluationPeriods=3)
    put_value(cloudwatch, alarm, base + 1, 9.0)
    judge = evaluator(cloudwatch)
    judge.evaluate_once(end_of(base, 2), alarm_names=[alarm])
    first = judge.reader.requests
    assert first == 5  # the evaluation range: N + 2 periods
    judge.evaluate_once(end_of(base, 2), alarm_names=[alarm])
    assert judge.reader.requests == first
    judge.evaluate_once(end_of(base, 3), alarm_names=[alarm])
    assert judge.reader.requests == first + 1  # only the period that ended since
