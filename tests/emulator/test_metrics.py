"""SageMaker endpoint metrics published to a real moto server answer GetMetricStatistics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from emulator.cloudwatch.metrics import (
    MODEL_LATENCY,
    NAMESPACE,
    MetricsPublisher,
    SampleWindow,
    percentile,
    variant_dimensions,
)
from emulator.runtime.invocations import Invocation, InvocationLog
from tests.emulator.local_moto import cloudwatch_client, moto_server


@pytest.fixture(scope="module")
def cloudwatch() -> Iterator[Any]:
    with moto_server() as url:
        yield cloudwatch_client(url)


def invocation(
    endpoint: str,
    variant: str,
    at: float,
    *,
    status: int | None = 200,
    model_us: int = 1000,
    kind: str = "sync",
) -> Invocation:
    return Invocation(endpoint, variant, kind, at, status, model_us, 150)


def statistics(
    cloudwatch: Any, metric: str, endpoint: str, variant: str, start: float, end: float, period: int = 60
) -> list[dict[str, Any]]:
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=[{"Name": n, "Value": v} for n, v in variant_dimensions(endpoint, variant)],
        StartTime=datetime.fromtimestamp(start, UTC),
        EndTime=datetime.fromtimestamp(end, UTC),
        Period=period,
        Statistics=["Sum", "SampleCount", "Average", "Minimum", "Maximum"],
    )
    return list(answer["Datapoints"])


def total(points: list[dict[str, Any]], stat: str = "Sum") -> float:
    return sum(p[stat] for p in points)


def test_published_invocations_answer_get_metric_statistics(cloudwatch: Any) -> None:
    publisher = MetricsPublisher(lambda: cloudwatch)
    start = (int(time.time()) // 60) * 60 - 600
    records = [invocation("ep-a", "Blue", start + 1.2, model_us=1000) for _ in range(3)]
    records += [invocation("ep-a", "Blue", start + 2.5, status=500, model_us=4000)]
    records += [invocation("ep-a", "Blue", start + 2.7, status=404, model_us=2000)]
    records += [invocation("ep-a", "Green", start + 3.0, model_us=9000)]
    for record in records:
        publisher.record(record)

    assert publisher.flush() > 0
    end = start + 60
    blue = {m: statistics(cloudwatch, m, "ep-a", "Blue", start, end) for m in ("Invocations", MODEL_LATENCY)}
    assert total(blue["Invocations"]) == 5
    assert total(statistics(cloudwatch, "Invocation5XXErrors", "ep-a", "Blue", start, end)) == 1
    assert total(statistics(cloudwatch, "Invocation4XXErrors", "ep-a", "Blue", start, end)) == 1
    latency = blue[MODEL_LATENCY]
    assert total(latency, "SampleCount") == 5
    assert min(p["Minimum"] for p in latency) == 1000
    assert max(p["Maximum"] for p in latency) == 4000
    assert {p["Unit"] for p in latency} == {"Microseconds"}
    assert total(statistics(cloudwatch, "OverheadLatency", "ep-a", "Blue", start, end), "SampleCount") == 5
    # The other variant's traffic stays under its own dimensions; its error metrics are 0, not absent.
    assert total(statistics(cloudwatch, "Invocations", "ep-a", "Green", start, end)) == 1
    green_errors = statistics(cloudwatch, "Invocation5XXErrors", "ep-a", "Green", start, end)
    assert green_errors and total(green_errors) == 0


def test_background_thread_publishes_records_from_the_invocation_log(cloudwatch: Any) -> None:
    publisher = MetricsPublisher(lambda: cloudwatch, flush_interval_s=0.2)
    log = InvocationLog()
    unsubscribe = log.subscribe(publisher.record)
    publisher.start()
    try:
        now = time.time()
        for _ in range(4):
            log.record(invocation("ep-thread", "AllTraffic", now))
        deadline = time.monotonic() + 15
        while True:
            points = statistics(cloudwatch, "Invocations", "ep-thread", "AllTraffic", now - 120, now + 60)
            if total(points) == 4:
                break
            assert time.monotonic() < deadline, f"metrics not published in time: {points}"
            time.sleep(0.2)
    finally:
        unsubscribe()
        publisher.stop()
    assert publisher.published > 0 and publisher.dropped == 0


def test_asynchronous_invocations_publish_no_invocation_metrics(cloudwatch: Any) -> None:
    publisher = MetricsPublisher(lambda: cloudwatch)
    start = (int(time.time()) // 60) * 60 - 1200
    publisher.record(invocation("ep-async", "AllTraffic", start + 5, kind="async"))
    assert publisher.flush() == 0
    assert statistics(cloudwatch, "Invocations", "ep-async", "AllTraffic", start, start + 60) == []


def test_many_distinct_latencies_in_one_second_keep_every_sample(cloudwatch: Any) -> None:
    publisher = MetricsPublisher(lambda: cloudwatch)
    start = (int(time.time()) // 60) * 60 - 1800
    for latency in range(1, 401):  # 400 distinct values: more than the 150 one datum may carry
        publisher.record(invocation("ep-many", "AllTraffic", start + 7.5, model_us=latency))
    publisher.flush()
    points = statistics(cloudwatch, MODEL_LATENCY, "ep-many", "AllTraffic", start, start + 60)
    assert total(points, "SampleCount") == 400
    assert total(points) == sum(range(1, 401))
    assert (
        percentile(
            publisher.samples.values(
                NAMESPACE, MODEL_LATENCY, variant_dimensions("ep-many", "AllTraffic"), start, start + 60
            ),
            99,
        )
        == 396
    )


def test_a_full_queue_drops_records_instead_of_blocking() -> None:
    publisher = MetricsPublisher(lambda: None, max_queue=2)
    for _ in range(5):
        publisher.record(invocation("ep-full", "AllTraffic", time.time()))
    assert publisher.dropped == 3


def test_sample_window_forgets_old_samples_and_bounds_each_series() -> None:
    now = [10_000.0]
    window = SampleWindow(retention_s=100, max_samples_per_series=3, clock=lambda: now[0])
    dims = variant_dimensions("ep", "v")
    for second in (9_850.0, 9_950.0, 9_960.0, 9_970.0, 9_980.0):
        window.add(NAMESPACE, MODEL_LATENCY, dims, second, second)
    assert window.values(NAMESPACE, MODEL_LATENCY, dims, 0, 20_000) == [9_960.0, 9_970.0, 9_980.0]
    window.add(NAMESPACE, MODEL_LATENCY, dims, 9_965.0, 1.0)  # late arrival lands in time order
    assert window.values(NAMESPACE, MODEL_LATENCY, dims, 9_961, 9_975) == [1.0, 9_970.0]
    assert window.knows(NAMESPACE, MODEL_LATENCY, tuple(reversed(dims)))


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99
    assert percentile(values, 50) == 50
    assert percentile([7.0], 99.9) == 7
    with pytest.raises(ValueError):
        percentile([], 99)
