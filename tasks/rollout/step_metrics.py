"""What CloudWatch says about one variant during one traffic step: invocations, errors, latency.

Each figure is one GetMetricStatistics call with a single period spanning the step. SageMaker's
endpoint metrics have one-minute resolution unless the endpoint config enables enhanced metrics, and
CloudWatch takes only multiples of 60 s as the period of such a metric, so the period is the step
rounded out to the whole minutes it touches (AWS rounds StartTime down to the minute; the request
does so itself, so moto, which filters on the bounds exactly, answers alike). A step's counts thus
include what the minutes it touches hold on either side of it.

CloudWatch refuses Statistics and ExtendedStatistics in one request ("either Statistics or
ExtendedStatistics, but not both"), so the average and the p99 of ModelLatency are two calls. A
CloudWatch that does not answer ExtendedStatistics (moto 5.2.5 ignores them) leaves the p99 None, and
the rollout falls back to what its bake traffic measured.

The figures describe the rollout; they do not steer it (the alarms do). A CloudWatch error while
reading one (throttling, an outage, a missing permission) leaves that figure None (reported as
unavailable) with a warning, and the rollout goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.core import aws
from tasks.core.logs import run_logger

NAMESPACE = "AWS/SageMaker"
MINUTE_S = 60


@dataclass(frozen=True)
class VariantWindow:
    invocations: int | None
    errors_4xx: int | None
    errors_5xx: int | None
    p99_ms: float | None
    average_ms: float | None


@dataclass(frozen=True)
class _Window:
    """The whole minutes a step touches, as one GetMetricStatistics period."""

    start: int
    end: int
    period: int

    @classmethod
    def of(cls, start: float, end: float) -> _Window:
        # AWS rounds StartTime down to the minute anyway; sending it rounded makes moto (which filters
        # on the bounds exactly) count the datapoint of the minute the step starts in, as AWS does.
        minute = math.floor(start) - math.floor(start) % MINUTE_S
        high = max(math.floor(start) + 1, math.ceil(end))
        period = max(MINUTE_S, math.ceil((high - minute) / MINUTE_S) * MINUTE_S)
        return cls(minute, minute + period, period)


def _dimensions(endpoint: str, variant: str, config_name: str | None = None) -> list[dict[str, str]]:
    # With EndpointConfigName, one fleet's series: during a blue/green update both fleets share the
    # variant name, and the variant's series mixes the old model's traffic into the new one's figures.
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    if config_name:
        dimensions.append({"Name": "EndpointConfigName", "Value": config_name})
    return dimensions


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class _Series:
    """Whose metrics: the variant on the endpoint, or only its fleet of endpoint config `config_name`."""

    endpoint: str
    variant: str
    config_name: str | None = None

    @property
    def dimensions(self) -> list[dict[str, str]]:
        return _dimensions(self.endpoint, self.variant, self.config_name)

    def __str__(self) -> str:
        fleet = f" (fleet of {self.config_name})" if self.config_name else ""
        return f"{self.endpoint}/{self.variant}{fleet}"


def _datapoints(
    series: _Series, metric: str, window: _Window, **statistics: list[str]
) -> list[dict[str, Any]] | None:
    """The datapoints of `metric` over `window`; None (and a warning) when CloudWatch fails to answer."""
    try:
        answer = aws.client("cloudwatch").get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=metric,
            Dimensions=series.dimensions,
            StartTime=_at(window.start),
            EndTime=_at(window.end),
            Period=window.period,
            **statistics,
        )
    except (ClientError, BotoCoreError) as exc:
        run_logger().warning(
            "%s of %s between %s and %s is unavailable: CloudWatch answered %s: %s; the rollout goes on "
            "(the alarms, not these figures, decide it)",
            metric,
            series,
            _at(window.start).isoformat(),
            _at(window.end).isoformat(),
            type(exc).__name__,
            exc,
        )
        return None
    return list(answer["Datapoints"])


def _sum(series: _Series, metric: str, window: _Window) -> int | None:
    points = _datapoints(series, metric, window, Statistics=["Sum"])
    if not points:
        return None
    return round(sum(float(p["Sum"]) for p in points))


def _latency(series: _Series, window: _Window) -> tuple[float | None, float | None]:
    averages = _datapoints(series, "ModelLatency", window, Statistics=["Average"]) or []
    percentiles = _datapoints(series, "ModelLatency", window, ExtendedStatistics=["p99"]) or []
    p99s = [
        float(p["ExtendedStatistics"]["p99"]) for p in percentiles if "p99" in p.get("ExtendedStatistics", {})
    ]
    means = [float(p["Average"]) for p in averages if "Average" in p]
    # Microseconds in CloudWatch, milliseconds in the report.
    p99 = round(max(p99s) / 1000, 1) if p99s else None
    average = round(sum(means) / len(means) / 1000, 1) if means else None
    return p99, average


def variant_window(
    endpoint: str, variant: str, start: float, end: float, *, config_name: str | None = None
) -> VariantWindow:
    """CloudWatch's view of `variant` on `endpoint` between two epoch times (of the fleet of endpoint
    config `config_name` alone, when given); a figure CloudWatch could not give is None."""
    series = _Series(endpoint, variant, config_name)
    window = _Window.of(start, end)
    p99, average = _latency(series, window)
    return VariantWindow(
        invocations=_sum(series, "Invocations", window),
        errors_4xx=_sum(series, "Invocation4XXErrors", window),
        errors_5xx=_sum(series, "Invocation5XXErrors", window),
        p99_ms=p99,
        average_ms=average,
    )
