"""SageMaker's endpoint metrics, published to CloudWatch (moto's) from real invocations.

SageMaker publishes, per EndpointName and VariantName in the AWS/SageMaker namespace, Invocations,
Invocation4XXErrors and Invocation5XXErrors (counts; the error metrics are 0, not absent, in a period
with traffic) and ModelLatency and OverheadLatency in Microseconds. `MetricsPublisher.record` takes one
invocation and only enqueues it (it runs on the runtime's event loop); a background thread aggregates
the queue every `flush_interval_s` into one datum per metric, variant and second and sends them with
PutMetricData. Latencies go out as Values/Counts so every statistic, percentiles included, stays
computable from what was sent.

moto 5.2.5 ignores ExtendedStatistics (it answers p99 queries with datapoints that carry no p99), so
the publisher also keeps the raw latency samples of a recent window (`SampleWindow`); the alarm
evaluator computes percentiles from it for the metrics published here.
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
MODEL_LATENCY = "ModelLatency"
OVERHEAD_LATENCY = "OverheadLatency"
COUNT_METRICS = (INVOCATIONS, INVOCATION_4XX, INVOCATION_5XX)
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
    """Raw values of recent datapoints per metric series, for statistics CloudWatch-in-moto lacks.

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


# --- aggregation -------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    """One second of one variant's traffic."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    model_latency: collections.Counter[int] = field(default_factory=collections.Counter)
    overhead_latency: collections.Counter[int] = field(default_factory=collections.Counter)


def aggregate(records: Iterable[InvocationLike]) -> dict[tuple[str, str, int], _Bucket]:
    """Group synchronous invocations by endpoint, variant and whole second.

    Asynchronous invocations are skipped: SageMaker publishes no Invocations metrics for async
    endpoints (they report backlog metrics instead).
    """
    buckets: dict[tuple[str, str, int], _Bucket] = {}
    for record in records:
        if getattr(record, "kind", "sync") != "sync":
            continue
        key = (record.endpoint_name, record.variant_name, int(record.timestamp))
        bucket = buckets.setdefault(key, _Bucket())
        bucket.invocations += 1
        bucket.errors_4xx += int(record.is_4xx)
        bucket.errors_5xx += int(record.is_5xx)
        bucket.model_latency[int(record.model_latency_us)] += 1
        bucket.overhead_latency[int(record.overhead_latency_us)] += 1
    return buckets


def metric_data(
    buckets: Mapping[tuple[str, str, int], _Bucket], *, storage_resolution: int = 1
) -> list[dict[str, Any]]:
    """PutMetricData MetricData entries for aggregated buckets (latency datums split at 150 values)."""
    data: list[dict[str, Any]] = []
    for (endpoint, variant, second), bucket in sorted(buckets.items()):
        dimensions = [{"Name": name, "Value": value} for name, value in variant_dimensions(endpoint, variant)]
        common = {
            "Dimensions": dimensions,
            "Timestamp": float(second),
            "StorageResolution": storage_resolution,
        }
        for name, count in (
            (INVOCATIONS, bucket.invocations),
            (INVOCATION_4XX, bucket.errors_4xx),
            (INVOCATION_5XX, bucket.errors_5xx),
        ):
            data.append({"MetricName": name, "Value": float(count), "Unit": "None", **common})
        for name, counter in (
            (MODEL_LATENCY, bucket.model_latency),
            (OVERHEAD_LATENCY, bucket.overhead_latency),
        ):
            items = sorted(counter.items())
            for start in range(0, len(items), MAX_VALUES_PER_DATUM):
                chunk = items[start : start + MAX_VALUES_PER_DATUM]
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
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        self._cloudwatch = cloudwatch
        self.flush_interval_s = flush_interval_s
        self.storage_resolution = storage_resolution
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
            buckets = aggregate(records)
            self._remember_samples(records)
            data = metric_data(buckets, storage_resolution=self.storage_resolution)
            client = self._cloudwatch()
            sent = 0
            for start in range(0, len(data), MAX_DATA_PER_REQUEST):
                chunk = data[start : start + MAX_DATA_PER_REQUEST]
                try:
                    client.put_metric_data(Namespace=NAMESPACE, MetricData=chunk)
                except Exception:
                    self.failed_requests += 1
                    raise
                sent += len(chunk)
            self.published += sent
            return sent

    def _remember_samples(self, records: Iterable[InvocationLike]) -> None:
        for record in records:
            if getattr(record, "kind", "sync") != "sync":
                continue
            dims = variant_dimensions(record.endpoint_name, record.variant_name)
            self.samples.add(NAMESPACE, MODEL_LATENCY, dims, record.timestamp, float(record.model_latency_us))
            self.samples.add(
                NAMESPACE, OVERHEAD_LATENCY, dims, record.timestamp, float(record.overhead_latency_us)
            )
