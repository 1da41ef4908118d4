"""SageMaker's endpoint metrics, published to CloudWatch (moto's) from real invocations and queues.

SageMaker publishes, per EndpointName and VariantName in the AWS/SageMaker namespace, Invocations,
Invocation4XXErrors and Invocation5XXErrors (counts; the error metrics are 0, not absent, in a period
with traffic), InvocationsPerInstance (invocations divided by the variant's instances, what the
predefined SageMakerVariantInvocationsPerInstance target tracks) and ModelLatency and OverheadLatency in
Microseconds. `MetricsPublisher.record` takes one invocation and only enqueues it (it runs on the
runtime's event loop); a background thread aggregates the queue every `flush_interval_s` into one datum
per metric, variant and bucket and sends them with PutMetricData. A bucket is one second of AWS time:
1/scale real seconds at a time scale (emulator/clock.py), so a one-minute period holds 60 of them at
any scale and its Sum is the count of that (shortened) minute. Latencies go out as Values/Counts so
every statistic, percentiles included, stays computable from what was sent.

Asynchronous endpoints publish no invocation metrics but their queue's, per EndpointName, once per
metric period (`publish_queue`): ApproximateBacklogSize, ApproximateBacklogSizePerInstance,
HasBacklogWithoutCapacity and ApproximateAgeOfOldestRequest.

Everything sent is also kept in a recent window (`SampleWindow`), and the alarm evaluator computes
the statistics of these series from it: moto 5.2.5 ignores ExtendedStatistics (it answers p99 queries
with datapoints that carry no p99) and cuts GetMetricStatistics' StartTime/EndTime to whole seconds,
which a scaled period (2 s at scale 30, 0.33 s for a 10 s period) does not fit.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from emulator.cloudwatch.periodic import Periodic

log = logging.getLogger("emulator.cloudwatch.metrics")

NAMESPACE = "AWS/SageMaker"
INVOCATIONS = "Invocations"
INVOCATION_4XX = "Invocation4XXErrors"
INVOCATION_5XX = "Invocation5XXErrors"
INVOCATIONS_PER_INSTANCE = "InvocationsPerInstance"
MODEL_LATENCY = "ModelLatency"
OVERHEAD_LATENCY = "OverheadLatency"
COUNT_METRICS = (INVOCATIONS, INVOCATION_4XX, INVOCATION_5XX)
BACKLOG = "ApproximateBacklogSize"
BACKLOG_PER_INSTANCE = "ApproximateBacklogSizePerInstance"
BACKLOG_WITHOUT_CAPACITY = "HasBacklogWithoutCapacity"
OLDEST_REQUEST_AGE = "ApproximateAgeOfOldestRequest"
QUEUE_METRICS = (BACKLOG, BACKLOG_PER_INSTANCE, BACKLOG_WITHOUT_CAPACITY, OLDEST_REQUEST_AGE)
LATENCY_METRICS = (MODEL_LATENCY, OVERHEAD_LATENCY)

# PutMetricData limits: 1000 metric data per request; 150 distinct values per datum's Values.
MAX_DATA_PER_REQUEST = 1000
MAX_VALUES_PER_DATUM = 150

CloudWatchClientFactory = Callable[[], Any]
Dimensions = tuple[tuple[str, str], ...]


class InvocationLike(Protocol):
    """What the publisher needs from one invocation (emulator.runtime.invocations.Invocation has it)."""

    @property
    def endpoint_name(self) -> str: ...
    @property
    def variant_name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def is_4xx(self) -> bool: ...
    @property
    def is_5xx(self) -> bool: ...
    @property
    def model_latency_us(self) -> int: ...
    @property
    def overhead_latency_us(self) -> int: ...
    @property
    def instances(self) -> int | None: ...


class QueueGaugeLike(Protocol):
    """One async endpoint's queue at one moment (emulator.runtime.invocations.QueueGauge has it)."""

    @property
    def endpoint_name(self) -> str: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def backlog(self) -> int: ...
    @property
    def instances(self) -> int: ...
    @property
    def oldest_age_s(self) -> float: ...


def variant_dimensions(endpoint: str, variant: str) -> Dimensions:
    """The dimensions SageMaker publishes endpoint metrics under, in a canonical order."""
    return (("EndpointName", endpoint), ("VariantName", variant))


def canonical_dimensions(dimensions: Iterable[Mapping[str, str]]) -> Dimensions:
    """CloudWatch matches dimensions as a set; sort them so equal sets compare equal."""
    return tuple(sorted((str(d["Name"]), str(d["Value"])) for d in dimensions))


# --- the raw-sample window (for percentiles) ---------------------------------------------------------


@dataclass
class _Series:
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class SampleWindow:
    """The values of recent datapoints per metric series, as they were sent to CloudWatch.

    A datum with Values/Counts is kept as each value repeated count times, as CloudWatch counts it, so
    every statistic of a period (`statistic`) comes out as CloudWatch would compute it.

    Bounded twice: samples older than `retention_s` are dropped, and each series keeps at most
    `max_samples_per_series` (the oldest go first). Thread-safe.
    """

    def __init__(
        self,
        *,
        retention_s: float = 3 * 3600.0,
        max_samples_per_series: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention_s = retention_s
        self.max_samples = max_samples_per_series
        self.clock = clock
        self._series: dict[tuple[str, str, Dimensions], _Series] = {}
        self._lock = threading.Lock()

    def add(
        self, namespace: str, metric: str, dimensions: Dimensions, timestamp: float, value: float
    ) -> None:
        key = (namespace, metric, tuple(sorted(dimensions)))
        with self._lock:
            series = self._series.setdefault(key, _Series())
            # Records arrive almost in order; insort keeps the series sorted for range queries.
            if series.timestamps and timestamp < series.timestamps[-1]:
                index = bisect.bisect_right(series.timestamps, timestamp)
                series.timestamps.insert(index, timestamp)
                series.values.insert(index, value)
            else:
                series.timestamps.append(timestamp)
                series.values.append(value)
            self._trim(series)

    def _trim(self, series: _Series) -> None:
        horizon = self.clock() - self.retention_s
        cut = bisect.bisect_left(series.timestamps, horizon)
        cut = max(cut, len(series.timestamps) - self.max_samples)
        if cut > 0:
            del series.timestamps[:cut]
            del series.values[:cut]

    def knows(self, namespace: str, metric: str, dimensions: Dimensions) -> bool:
        """True when this window is the source of truth for the series (it publishes it)."""
        with self._lock:
            return (namespace, metric, tuple(sorted(dimensions))) in self._series

    def values(
        self, namespace: str, metric: str, dimensions: Dimensions, start: float, end: float
    ) -> list[float]:
        """Values with start <= timestamp < end."""
        key = (namespace, metric, tuple(sorted(dimensions)))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                return []
            low = bisect.bisect_left(series.timestamps, start)
            high = bisect.bisect_left(series.timestamps, end)
            return series.values[low:high]


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) by nearest rank, as CloudWatch reports pNN of raw values."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def statistic(values: Sequence[float], name: str) -> float | None:
    """Sum, Average, Minimum, Maximum or SampleCount of one period's values; None when it has none."""
    if not values:
        return None
    if name == "Sum":
        return float(math.fsum(values))
    if name == "Average":
        return float(math.fsum(values) / len(values))
    if name == "Minimum":
        return float(min(values))
    if name == "Maximum":
        return float(max(values))
    if name == "SampleCount":
        return float(len(values))
    raise ValueError(f"statistic {name!r} is not one of Sum, Average, Minimum, Maximum, SampleCount")


# --- aggregation -------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    """One second of AWS time (1/scale real seconds) of one variant's traffic."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    instances: int | None = None  # the variant's instances when the bucket's last request came
    model_latency: collections.Counter[int] = field(default_factory=collections.Counter)
    overhead_latency: collections.Counter[int] = field(default_factory=collections.Counter)


def aggregate(
    records: Iterable[InvocationLike], *, scale: float = 1.0
) -> dict[tuple[str, str, float], _Bucket]:
    """Group synchronous invocations by endpoint, variant and bucket (its start, real epoch seconds).

    Asynchronous invocations are skipped: SageMaker publishes no Invocations metrics for async
    endpoints (they report backlog metrics instead).
    """
    buckets: dict[tuple[str, str, float], _Bucket] = {}
    for record in records:
        if getattr(record, "kind", "sync") != "sync":
            continue
        start = math.floor(record.timestamp * scale) / scale
        key = (record.endpoint_name, record.variant_name, start)
        bucket = buckets.setdefault(key, _Bucket())
        bucket.invocations += 1
        bucket.errors_4xx += int(record.is_4xx)
        bucket.errors_5xx += int(record.is_5xx)
        instances = getattr(record, "instances", None)
        if instances:
            bucket.instances = int(instances)
        bucket.model_latency[int(record.model_latency_us)] += 1
        bucket.overhead_latency[int(record.overhead_latency_us)] += 1
    return buckets


def metric_data(
    buckets: Mapping[tuple[str, str, float], _Bucket], *, storage_resolution: int = 1
) -> list[dict[str, Any]]:
    """PutMetricData MetricData entries for aggregated buckets (latency datums split at 150 values)."""
    data: list[dict[str, Any]] = []
    for (endpoint, variant, start), bucket in sorted(buckets.items()):
        dimensions = [{"Name": name, "Value": value} for name, value in variant_dimensions(endpoint, variant)]
        common = {
            "Dimensions": dimensions,
            "Timestamp": float(start),
            "StorageResolution": storage_resolution,
        }
        for name, count in (
            (INVOCATIONS, bucket.invocations),
            (INVOCATION_4XX, bucket.errors_4xx),
            (INVOCATION_5XX, bucket.errors_5xx),
        ):
            data.append({"MetricName": name, "Value": float(count), "Unit": "None", **common})
        if bucket.instances:
            per_instance = bucket.invocations / bucket.instances
            data.append(
                {"MetricName": INVOCATIONS_PER_INSTANCE, "Value": per_instance, "Unit": "None", **common}
            )
        for name, counter in (
            (MODEL_LATENCY, bucket.model_latency),
            (OVERHEAD_LATENCY, bucket.overhead_latency),
        ):
            items = sorted(counter.items())
            for first in range(0, len(items), MAX_VALUES_PER_DATUM):
                chunk = items[first : first + MAX_VALUES_PER_DATUM]
                data.append(
                    {
                        "MetricName": name,
                        "Values": [float(value) for value, _ in chunk],
                        "Counts": [float(count) for _, count in chunk],
                        "Unit": "Microseconds",
                        **common,
                    }
                )
    return data


def queue_metric_data(
    gauges: Iterable[QueueGaugeLike], *, storage_resolution: int = 1
) -> list[dict[str, Any]]:
    """The four queue metrics of each async endpoint, per EndpointName, as SageMaker publishes them.

    Per instance with no instance is the whole backlog (it cannot be divided by zero): target tracking
    multiplies it by the capacity, 0, and so never starts the first instance; the step policy on
    HasBacklogWithoutCapacity does.
    """
    data: list[dict[str, Any]] = []
    for gauge in gauges:
        common = {
            "Dimensions": [{"Name": "EndpointName", "Value": gauge.endpoint_name}],
            "Timestamp": float(gauge.timestamp),
            "StorageResolution": storage_resolution,
        }
        per_instance = gauge.backlog / gauge.instances if gauge.instances else float(gauge.backlog)
        without_capacity = 1.0 if gauge.backlog > 0 and gauge.instances == 0 else 0.0
        for name, value, unit in (
            (BACKLOG, float(gauge.backlog), "None"),
            (BACKLOG_PER_INSTANCE, per_instance, "None"),
            (BACKLOG_WITHOUT_CAPACITY, without_capacity, "None"),
            (OLDEST_REQUEST_AGE, float(gauge.oldest_age_s), "Seconds"),
        ):
            data.append({"MetricName": name, "Value": value, "Unit": unit, **common})
    return data


def _datum_values(datum: Mapping[str, Any]) -> list[float]:
    if "Values" in datum:
        counts = datum.get("Counts") or [1.0] * len(datum["Values"])
        return [float(v) for v, n in zip(datum["Values"], counts, strict=True) for _ in range(int(n))]
    return [float(datum["Value"])]


# --- the publisher -----------------------------------------------------------------------------------


class MetricsPublisher:
    """Publishes SageMaker endpoint metrics from invocation records to CloudWatch, in the background.

    `record` never blocks: when the bounded queue is full the record is dropped and counted in
    `dropped` (a warning is logged), so a slow or absent CloudWatch never slows invocations down.
    """

    def __init__(
        self,
        cloudwatch: CloudWatchClientFactory,
        *,
        flush_interval_s: float = 1.0,
        max_queue: int = 100_000,
        storage_resolution: int = 1,
        samples: SampleWindow | None = None,
        scale: float = 1.0,
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        self._cloudwatch = cloudwatch
        self.flush_interval_s = flush_interval_s
        self.storage_resolution = storage_resolution
        self.scale = scale
        self.samples = samples if samples is not None else SampleWindow()
        self._queue: queue.Queue[InvocationLike] = queue.Queue(maxsize=max_queue)
        # A last flush on stop: what was invoked before the stop still reaches CloudWatch.
        self._loop = Periodic(self.flush, flush_interval_s, name="metrics-publisher", final_run=True)
        self._flush_lock = threading.Lock()
        self.dropped = 0
        self.failed_requests = 0
        self.published = 0

    # Runs on the runtime's event loop: cheap and non-blocking.
    def record(self, invocation: InvocationLike) -> None:
        try:
            self._queue.put_nowait(invocation)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "metrics queue is full (%d records): %d invocation records dropped so far; "
                    "CloudWatch at $AWS_ENDPOINT_URL may be unreachable",
                    self._queue.maxsize,
                    self.dropped,
                )

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after a last flush (bounded by `timeout_s`)."""
        self._loop.stop(timeout_s)

    def flush(self) -> int:
        """Publish everything queued now; returns the number of metric data sent."""
        with self._flush_lock:
            records: list[InvocationLike] = []
            while True:
                try:
                    records.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not records:
                return 0
            buckets = aggregate(records, scale=self.scale)
            data = metric_data(buckets, storage_resolution=self.storage_resolution)
            return self._send(data)

    def publish_queue(self, gauges: Sequence[QueueGaugeLike]) -> int:
        """Publish async endpoints' queue metrics now (blocking: call it from a thread)."""
        if not gauges:
            return 0
        with self._flush_lock:
            return self._send(queue_metric_data(gauges, storage_resolution=self.storage_resolution))

    def _send(self, data: list[dict[str, Any]]) -> int:
        self._remember(data)
        client = self._cloudwatch()
        sent = 0
        for first in range(0, len(data), MAX_DATA_PER_REQUEST):
            chunk = data[first : first + MAX_DATA_PER_REQUEST]
            try:
                client.put_metric_data(Namespace=NAMESPACE, MetricData=chunk)
            except Exception:
                self.failed_requests += 1
                raise
            sent += len(chunk)
        self.published += sent
        return sent

    def _remember(self, data: Iterable[Mapping[str, Any]]) -> None:
        for datum in data:
            dims = canonical_dimensions(datum["Dimensions"])
            for value in _datum_values(datum):
                self.samples.add(NAMESPACE, datum["MetricName"], dims, float(datum["Timestamp"]), value)
