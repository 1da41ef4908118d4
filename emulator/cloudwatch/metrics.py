"""SageMaker's endpoint metrics, published to CloudWatch (moto's) from real invocations and queues.

SageMaker publishes, per EndpointName and VariantName in the AWS/SageMaker namespace, Invocations,
Invocation4XXErrors and Invocation5XXErrors (counts; the error metrics are 0, not absent, in a period
with traffic), InvocationsPerInstance (invocations divided by the variant's instances, what the
predefined SageMakerVariantInvocationsPerInstance target tracks) and ModelLatency and OverheadLatency in
Microseconds. Each series is also published per fleet, with the EndpointConfigName dimension added:
during a blue/green update the old and the new fleet serve one variant, and only that dimension tells
them apart (an alarm on EndpointName+VariantName watches both fleets). Both series reach CloudWatch
(`_published_dimensions`).

Timing, as on AWS: one datapoint per metric, series and publishing period, 60 s unless the fleet's
endpoint config enables enhanced metrics (emulator/runtime/invocations.py says which period), with
StorageResolution 60 for one-minute metrics (an alarm or query with a 10 or 30 s period finds no data
in them) and 1 for 10 and 30 s ones. A period's datapoint is sent `delay_s` after the period ends
(SageMaker aggregates, then CloudWatch ingests). `MetricsPublisher.record` takes one invocation and only
enqueues it (it runs on the runtime's event loop); a background thread aggregates the queue every
`flush_interval_s` into the open periods and sends the periods that are due with PutMetricData. Periods
are in AWS time: P/scale real seconds at a time scale (emulator/clock.py), so a one-minute period's Sum
is the count of that (shortened) minute, and the delay is shortened the same way. Latencies go out as
Values/Counts so every statistic, percentiles included, stays computable from what was sent.

Asynchronous endpoints publish no invocation metrics but their queue's, per EndpointName, once per
metric period (`publish_queue`): ApproximateBacklogSize, ApproximateBacklogSizePerInstance,
HasBacklogWithoutCapacity and ApproximateAgeOfOldestRequest.

Everything sent is also kept in a recent window (`SampleWindow`), and the alarm evaluator computes
the statistics of these series from it: GetMetricStatistics takes a whole number of seconds as its
Period, which a scaled period (0.33 s for a 10 s period at scale 30) is not, and asking CloudWatch once
per alarm and period would cost a request each.
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
from emulator.runtime.invocations import STANDARD_PERIOD_S

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

CONFIG_DIMENSION = "EndpointConfigName"
STANDARD_RESOLUTION = 60  # StorageResolution of one-minute metrics
HIGH_RESOLUTION = 1

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


def fleet_dimensions(endpoint: str, variant: str, config_name: str) -> Dimensions:
    """The dimensions of one fleet's series (the variant's, plus EndpointConfigName), canonical order."""
    return canonical_dimensions(
        [
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": variant},
            {"Name": CONFIG_DIMENSION, "Value": config_name},
        ]
    )


def canonical_dimensions(dimensions: Iterable[Mapping[str, str]]) -> Dimensions:
    """CloudWatch matches dimensions as a set; sort them so equal sets compare equal."""
    return tuple(sorted((str(d["Name"]), str(d["Value"])) for d in dimensions))


# --- the raw-sample window (for percentiles) ---------------------------------------------------------


@dataclass
class _Series:
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    # The finest StorageResolution sent decides (a variant's series gets both fleets' datapoints).
    resolution: int = STANDARD_RESOLUTION


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
        self,
        namespace: str,
        metric: str,
        dimensions: Dimensions,
        timestamp: float,
        value: float,
        *,
        resolution: int = HIGH_RESOLUTION,
    ) -> None:
        key = (namespace, metric, tuple(sorted(dimensions)))
        with self._lock:
            series = self._series.setdefault(key, _Series(resolution=resolution))
            series.resolution = min(series.resolution, resolution)
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

    def resolution(self, namespace: str, metric: str, dimensions: Dimensions) -> int | None:
        """The StorageResolution the series was published at (None for a series never sent)."""
        with self._lock:
            series = self._series.get((namespace, metric, tuple(sorted(dimensions))))
            return None if series is None else series.resolution

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


# --- aggregation -------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class BucketKey:
    """One publishing period of one fleet of one variant."""

    endpoint: str
    variant: str
    config_name: str  # "" when the record names no endpoint config
    period_s: int  # AWS seconds
    start: float  # real epoch seconds

    def end(self, scale: float) -> float:
        return self.start + self.period_s / scale

    @property
    def storage_resolution(self) -> int:
        return HIGH_RESOLUTION if self.period_s < STANDARD_PERIOD_S else STANDARD_RESOLUTION


@dataclass
class _Bucket:
    """One publishing period of one fleet's traffic."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    instances: int | None = None  # the variant's instances when the bucket's last request came
    asynchronous: bool = False  # an async fleet: SageMaker publishes only its errors and model latency
    model_latency: collections.Counter[int] = field(default_factory=collections.Counter)
    overhead_latency: collections.Counter[int] = field(default_factory=collections.Counter)

    def add(self, record: InvocationLike) -> None:
        self.invocations += 1
        self.asynchronous = getattr(record, "kind", "sync") == "async"
        self.errors_4xx += int(record.is_4xx)
        self.errors_5xx += int(record.is_5xx)
        instances = getattr(record, "instances", None)
        if instances:
            self.instances = int(instances)
        self.model_latency[int(record.model_latency_us)] += 1
        self.overhead_latency[int(record.overhead_latency_us)] += 1


def bucket_key(record: InvocationLike, *, scale: float = 1.0) -> BucketKey:
    """The publishing period a record falls in: aligned on the epoch in AWS time, as CloudWatch aligns."""
    period = int(getattr(record, "metrics_period_s", STANDARD_PERIOD_S) or STANDARD_PERIOD_S)
    start = math.floor(record.timestamp * scale / period) * period / scale
    config = getattr(record, "config_name", None) or ""
    return BucketKey(record.endpoint_name, record.variant_name, config, period, start)


def aggregate(
    records: Iterable[InvocationLike],
    *,
    scale: float = 1.0,
    into: dict[BucketKey, _Bucket] | None = None,
) -> dict[BucketKey, _Bucket]:
    """Group invocations by fleet and publishing period (added to `into` when given).

    Asynchronous invocations count too, but their buckets publish only what SageMaker publishes for an
    async endpoint (`_bucket_data`).
    """
    buckets: dict[BucketKey, _Bucket] = {} if into is None else into
    for record in records:
        buckets.setdefault(bucket_key(record, scale=scale), _Bucket()).add(record)
    return buckets


def _published_dimensions(key: BucketKey) -> list[Dimensions]:
    """The series a period's datapoints belong to: the variant's, and the fleet's when it is known.

    CloudWatch keeps the variant's series (both fleets) and each fleet's apart and matches a query's
    dimensions exactly (so does the local moto, emulator/cloudwatch/moto_statistics.py), so each
    datapoint is sent once per series, as SageMaker publishes it.
    """
    variant = variant_dimensions(key.endpoint, key.variant)
    if not key.config_name:
        return [variant]
    return [variant, fleet_dimensions(key.endpoint, key.variant, key.config_name)]


def metric_data(buckets: Mapping[BucketKey, _Bucket]) -> list[dict[str, Any]]:
    """PutMetricData MetricData entries for aggregated buckets (latency datums split at 150 values)."""
    data: list[dict[str, Any]] = []
    for key, bucket in sorted(buckets.items()):
        for dimensions in _published_dimensions(key):
            common = {
                "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions],
                "Timestamp": float(key.start),
                "StorageResolution": key.storage_resolution,
            }
            data.extend(_bucket_data(bucket, common))
    return data


def _bucket_data(bucket: _Bucket, common: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The period's datapoints. An async fleet gets the 4xx and 5xx counts and ModelLatency alone: the
    SageMaker guide's list of async endpoint metrics says Invocations, InvocationsPerInstance and
    OverheadLatency are not published for them (their backlog metrics are, by queue_metrics)."""
    data: list[dict[str, Any]] = []
    counts = [(INVOCATION_4XX, bucket.errors_4xx), (INVOCATION_5XX, bucket.errors_5xx)]
    if not bucket.asynchronous:
        counts.insert(0, (INVOCATIONS, bucket.invocations))
    for name, count in counts:
        data.append({"MetricName": name, "Value": float(count), "Unit": "None", **common})
    if bucket.instances and not bucket.asynchronous:
        per_instance = bucket.invocations / bucket.instances
        data.append({"MetricName": INVOCATIONS_PER_INSTANCE, "Value": per_instance, "Unit": "None", **common})
    latencies = [(MODEL_LATENCY, bucket.model_latency)]
    if not bucket.asynchronous:
        latencies.append((OVERHEAD_LATENCY, bucket.overhead_latency))
    for name, counter in latencies:
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


def queue_metric_data(gauges: Iterable[QueueGaugeLike]) -> list[dict[str, Any]]:
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
            # High resolution: the emulator reads a queue every queue_metrics_period_s (1 s on the stack,
            # emulator/settings.py), finer than a minute, and tests read those readings by the second
            # (tests/emulator/test_async_autoscaling.py queries HasBacklogWithoutCapacity with Period=1).
            # SageMaker's guide gives no frequency for its queue metrics.
            "StorageResolution": HIGH_RESOLUTION,
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
    Records wait in their publishing period until it has ended and `delay_s` (AWS seconds) more has
    passed; stopping sends every period still open, so nothing invoked before the stop is lost.
    """

    def __init__(
        self,
        cloudwatch: CloudWatchClientFactory,
        *,
        flush_interval_s: float = 1.0,
        max_queue: int = 100_000,
        samples: SampleWindow | None = None,
        scale: float = 1.0,
        delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self._cloudwatch = cloudwatch
        self.flush_interval_s = flush_interval_s
        self.scale = scale
        self.delay_s = delay_s
        self.clock = clock
        self.samples = samples if samples is not None else SampleWindow()
        self._queue: queue.Queue[InvocationLike] = queue.Queue(maxsize=max_queue)
        self._open: dict[BucketKey, _Bucket] = {}
        self._loop = Periodic(self.flush, flush_interval_s, name="metrics-publisher")
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
        """Stop the thread, then send every period still open (what was invoked still reaches CloudWatch)."""
        self._loop.stop(timeout_s)
        try:
            self.flush(everything=True)
        except Exception:
            log.exception("the last metrics flush failed")

    def due_at(self, key: BucketKey) -> float:
        """Real epoch time at which a period's datapoint is sent: its end plus the delay."""
        return key.end(self.scale) + self.delay_s / self.scale

    def flush(self, now: float | None = None, *, everything: bool = False) -> int:
        """Send the periods that are due at `now` (all of them with `everything`); returns data sent."""
        moment = self.clock() if now is None else now
        with self._flush_lock:
            records: list[InvocationLike] = []
            while True:
                try:
                    records.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            aggregate(records, scale=self.scale, into=self._open)
            due = {k: b for k, b in self._open.items() if everything or self.due_at(k) <= moment}
            if not due:
                return 0
            for key in due:
                del self._open[key]
            return self._send(metric_data(due))

    def publish_queue(self, gauges: Sequence[QueueGaugeLike]) -> int:
        """Publish async endpoints' queue metrics now (blocking: call it from a thread)."""
        if not gauges:
            return 0
        with self._flush_lock:
            return self._send(queue_metric_data(gauges))

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
            resolution = int(datum.get("StorageResolution") or STANDARD_RESOLUTION)
            for value in _datum_values(datum):
                self.samples.add(
                    NAMESPACE,
                    datum["MetricName"],
                    dims,
                    float(datum["Timestamp"]),
                    value,
                    resolution=resolution,
                )
