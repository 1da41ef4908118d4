"""SageMaker endpoint metrics published to a real moto server answer GetMetricStatistics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from emulator.cloudwatch.metrics import (
    MODEL_LATENCY,
    NAMESPACE,
    MetricsPublisher,
    SampleWindow,
    bucket_key,
    fleet_dimensions,
    variant_dimensions,
)
from emulator.cloudwatch.statistics import percentile
from emulator.runtime.invocations import Invocation, InvocationLog
from emulator.sagemaker.metrics_config import invocation_metrics_period_s
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
    config: str | None = None,
    period_s: int = 60,
) -> Invocation:
    return Invocation(
        endpoint, variant, kind, at, status, model_us, 150, config_name=config, metrics_period_s=period_s
    )


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
        for _ in range(4):  # an enhanced-metrics fleet: its 10 s period ends within 10 s
            log.record(invocation("ep-thread", "AllTraffic", now, period_s=10))
        deadline = time.monotonic() + 25
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


def sent_data(publisher_records: list[Invocation], **options: Any) -> list[dict[str, Any]]:
    """What one flush of these records puts to CloudWatch (a recording client stands in for it)."""
    sent: list[dict[str, Any]] = []

    class Recorder:
        def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
            sent.extend(MetricData)

    publisher = MetricsPublisher(Recorder, **options)
    for record in publisher_records:
        publisher.record(record)
    publisher.flush(everything=True)
    return sent


def test_one_datapoint_per_metric_and_minute_at_standard_resolution() -> None:
    """Forty requests over two minutes: two Invocations datapoints, on the minutes, StorageResolution 60."""
    base = 1_700_000_040.0  # a minute boundary
    records = [invocation("ep-min", "AllTraffic", base + i * 3) for i in range(40)]
    data = [d for d in sent_data(records) if d["MetricName"] == "Invocations"]
    assert [(d["Timestamp"], d["Value"], d["StorageResolution"]) for d in data] == [
        (base, 20.0, 60),
        (base + 60, 20.0, 60),
    ]


def test_an_enhanced_metrics_fleet_publishes_every_ten_seconds_at_high_resolution() -> None:
    base = 1_700_000_040.0
    records = [invocation("ep-fast", "AllTraffic", base + i * 3, period_s=10) for i in range(10)]
    data = [d for d in sent_data(records) if d["MetricName"] == "Invocations"]
    assert [(d["Timestamp"] - base, d["Value"], d["StorageResolution"]) for d in data] == [
        (0.0, 4.0, 1),
        (10.0, 3.0, 1),
        (20.0, 3.0, 1),
    ]


def test_each_fleet_has_its_own_series_beside_the_variants(cloudwatch: Any) -> None:
    """Blue/green: both fleets count in EndpointName+VariantName; EndpointConfigName tells them apart."""
    endpoint = f"ep-bg-{uuid.uuid4().hex[:6]}"
    start = (int(time.time()) // 60) * 60 - 2400
    publisher = MetricsPublisher(lambda: cloudwatch)
    publisher.record(invocation(endpoint, "AllTraffic", start + 1, config="old-config", status=500))
    for _ in range(2):
        publisher.record(invocation(endpoint, "AllTraffic", start + 2, config="new-config"))
    publisher.flush(everything=True)

    def answered(metric: str, config: str | None = None) -> float:
        dimensions = [
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ]
        if config:
            dimensions.append({"Name": "EndpointConfigName", "Value": config})
        points = cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=metric,
            Dimensions=dimensions,
            StartTime=datetime.fromtimestamp(start, UTC),
            EndTime=datetime.fromtimestamp(start + 60, UTC),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return total(points)

    # GetMetricStatistics: the variant's series holds both fleets, each fleet's only its own requests.
    assert (answered("Invocations"), answered("Invocation5XXErrors")) == (3.0, 1.0)
    assert (answered("Invocations", "old-config"), answered("Invocation5XXErrors", "old-config")) == (
        1.0,
        1.0,
    )
    assert (answered("Invocations", "new-config"), answered("Invocation5XXErrors", "new-config")) == (
        2.0,
        0.0,
    )
    # The alarms' sample window keeps the same series apart.
    window = publisher.samples
    variant = variant_dimensions(endpoint, "AllTraffic")
    new = fleet_dimensions(endpoint, "AllTraffic", "new-config")
    assert sum(window.values(NAMESPACE, "Invocation5XXErrors", variant, start, start + 60)) == 1.0
    assert sum(window.values(NAMESPACE, "Invocation5XXErrors", new, start, start + 60)) == 0.0
    assert sum(window.values(NAMESPACE, "Invocations", new, start, start + 60)) == 2.0
    assert dict(new)["EndpointConfigName"] == "new-config"


def test_a_period_is_sent_only_its_delay_after_it_ends() -> None:
    sent: list[dict[str, Any]] = []

    class Recorder:
        def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
            sent.extend(MetricData)

    base = 1_700_000_040.0
    publisher = MetricsPublisher(Recorder, delay_s=15.0)
    publisher.record(invocation("ep-late", "AllTraffic", base + 5))
    assert publisher.flush(now=base + 59.0) == 0  # the minute is still open
    assert publisher.flush(now=base + 74.0) == 0  # ended, but not yet delivered
    assert publisher.flush(now=base + 75.0) > 0 and sent
    assert {d["Timestamp"] for d in sent} == {base}


def test_at_a_time_scale_the_delay_and_the_period_shrink_together() -> None:
    publisher = MetricsPublisher(lambda: None, delay_s=15.0, scale=30.0)
    key = bucket_key(invocation("ep-scaled", "AllTraffic", 1_000_000.1), scale=30.0)
    assert key.start == 1_000_000.0 and publisher.due_at(key) == pytest.approx(1_000_000.0 + 2.0 + 0.5)


def test_stopping_sends_the_periods_still_open() -> None:
    sent: list[dict[str, Any]] = []

    class Recorder:
        def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
            sent.extend(MetricData)

    publisher = MetricsPublisher(Recorder, delay_s=15.0)
    publisher.record(invocation("ep-stop", "AllTraffic", time.time()))
    publisher.stop()
    assert [d["Value"] for d in sent if d["MetricName"] == "Invocations"] == [1.0]


@pytest.mark.parametrize(
    ("metrics_config", "instance_backed", "expected"),
    [
        (None, True, 60),
        ({"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 10}, True, 10),
        ({"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 30}, True, 30),
        ({"EnableEnhancedMetrics": True}, True, 60),
        # The frequency alone applies to utilization metrics only.
        ({"EnableEnhancedMetrics": False, "MetricPublishFrequencyInSeconds": 10}, True, 60),
        # Serverless and asynchronous endpoints keep one-minute invocation metrics.
        ({"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": 10}, False, 60),
    ],
)
def test_which_fleets_publish_their_invocation_metrics_faster_than_once_a_minute(
    metrics_config: dict[str, Any] | None, instance_backed: bool, expected: int
) -> None:
    assert invocation_metrics_period_s(metrics_config, instance_backed=instance_backed) == expected


def test_asynchronous_invocations_publish_their_errors_and_model_latency_only(cloudwatch: Any) -> None:
    """The guide's exhaustive list of async endpoint metrics has Invocation4XXErrors,
    Invocation5XXErrors and ModelLatency, and not Invocations, InvocationsPerInstance or
    OverheadLatency: guard alarms on errors and latency work for async releases too."""
    publisher = MetricsPublisher(lambda: cloudwatch)
    start = (int(time.time()) // 60) * 60 - 1200
    publisher.record(invocation("ep-async", "AllTraffic", start + 5, kind="async", model_us=4000))
    publisher.record(invocation("ep-async", "AllTraffic", start + 6, kind="async", status=500))
    assert publisher.flush() == 3  # 4xx, 5xx and one ModelLatency datum
    assert statistics(cloudwatch, "Invocations", "ep-async", "AllTraffic", start, start + 60) == []
    assert statistics(cloudwatch, "OverheadLatency", "ep-async", "AllTraffic", start, start + 60) == []
    assert statistics(cloudwatch, "InvocationsPerInstance", "ep-async", "AllTraffic", start, start + 60) == []
    errors = statistics(cloudwatch, "Invocation5XXErrors", "ep-async", "AllTraffic", start, start + 60)
    assert total(errors) == 1
    latency = statistics(cloudwatch, MODEL_LATENCY, "ep-async", "AllTraffic", start, start + 60)
    assert total(latency, "SampleCount") == 2


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
