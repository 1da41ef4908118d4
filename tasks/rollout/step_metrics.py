"""What CloudWatch says about one variant during one traffic step: invocations, errors, latency.

Each figure is one GetMetricStatistics call with a single period spanning the step. SageMaker's
endpoint metrics have one-minute resolution unless the endpoint config enables enhanced metrics, and
CloudWatch takes only multiples of 60 s as the period of such a metric, so the period is the step
rounded out to the whole minutes it touches (AWS rounds StartTime down to the minute; the request
does so itself, so that the one period covers the step's last minute too). A step's counts thus
include what the minutes it touches hold on either side of it.

CloudWatch refuses Statistics and ExtendedStatistics in one request ("either Statistics or
ExtendedStatistics, but not both"), so the average and the p99 of ModelLatency are two calls. A
window CloudWatch gives no p99 for (no latency arrived in it yet) leaves the p99 None, and the
rollout falls back to what its bake traffic measured.

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
from tasks.rollout.alarms import fleet_dimensions

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
        # AWS rounds StartTime down to the minute anyway; the period must cover the step's end from there.
        minute = math.floor(start) - math.floor(start) % MINUTE_S
        high = max(math.floor(start) + 1, math.ceil(end))
        period = max(MINUTE_S, math.ceil((high - minute) / MINUTE_S) * MINUTE_S)
        return cls(minute, minute + period, period)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _datapoints(
    metric: str, window: _Window, *, dimensions: list[dict[str, str]], whose: str, **statistics: list[str]
) -> list[dict[str, Any]] | None:
    """The datapoints of `metric` over `window`; None (and a warning) when CloudWatch fails to answer."""
    try:
        answer = aws.client("cloudwatch").get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=metric,
            Dimensions=dimensions,
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
            whose,
            _at(window.start).isoformat(),
            _at(window.end).isoformat(),
            type(exc).__name__,
            exc,
        )
        return None
    return list(answer["Datapoints"])


def _sum(points: list[dict[str, Any]] | None) -> int | None:
    if not points:
        return None
    return round(sum(float(p["Sum"]) for p in points))


def _latency(
    averages: list[dict[str, Any]] | None, percentiles: list[dict[str, Any]] | None
) -> tuple[float | None, float | None]:
    p99s = [
        float(p["ExtendedStatistics"]["p99"])
        for p in percentiles or []
        if "p99" in p.get("ExtendedStatistics", {})
    ]
    means = [float(p["Average"]) for p in averages or [] if "Average" in p]
    # Microseconds in CloudWatch, milliseconds in the report.
    p99 = round(max(p99s) / 1000, 1) if p99s else None
    average = round(sum(means) / len(means) / 1000, 1) if means else None
    return p99, average


def variant_window(
    endpoint: str, variant: str, start: float, end: float, *, config_name: str | None = None
) -> VariantWindow:
    """CloudWatch's view of `variant` on `endpoint` between two epoch times (of the fleet of endpoint
    config `config_name` alone, when given); a figure CloudWatch could not give is None."""
    dimensions = fleet_dimensions(endpoint, variant, config_name)
    whose = f"{endpoint}/{variant}" + (f" (fleet of {config_name})" if config_name else "")
    window = _Window.of(start, end)

    def read(metric: str, **statistics: list[str]) -> list[dict[str, Any]] | None:
        return _datapoints(metric, window, dimensions=dimensions, whose=whose, **statistics)

    p99, average = _latency(
        read("ModelLatency", Statistics=["Average"]), read("ModelLatency", ExtendedStatistics=["p99"])
    )
    return VariantWindow(
        invocations=_sum(read("Invocations", Statistics=["Sum"])),
        errors_4xx=_sum(read("Invocation4XXErrors", Statistics=["Sum"])),
        errors_5xx=_sum(read("Invocation5XXErrors", Statistics=["Sum"])),
        p99_ms=p99,
        average_ms=average,
    )
