"""What CloudWatch says about one variant during one traffic step: invocations, errors, latency.

Counts are summed over the step's bounds in 10-second periods (SageMaker's metrics have 1-minute
resolution on AWS, so there a step's counts include the minutes it touches). The p99 of ModelLatency
comes from one period spanning the whole step; a CloudWatch that does not answer ExtendedStatistics
(moto) leaves it None, and the rollout falls back to what its bake traffic measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.core import aws

NAMESPACE = "AWS/SageMaker"
COUNT_PERIOD_S = 10


@dataclass(frozen=True)
class VariantWindow:
    invocations: int | None
    errors_4xx: int | None
    errors_5xx: int | None
    p99_ms: float | None
    average_ms: float | None


def _dimensions(endpoint: str, variant: str, config_name: str | None = None) -> list[dict[str, str]]:
    # With EndpointConfigName, one fleet's series: during a blue/green update both fleets share the
    # variant name, and the variant's series mixes the old model's traffic into the new one's figures.
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    if config_name:
        dimensions.append({"Name": "EndpointConfigName", "Value": config_name})
    return dimensions


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _sum(
    endpoint: str, variant: str, metric: str, start: float, end: float, config_name: str | None = None
) -> int | None:
    # The step's own bounds (CloudWatch rounds them to its periods; moto filters on them exactly).
    low, high = math.floor(start), max(math.floor(start) + 1, math.ceil(end))
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=_dimensions(endpoint, variant, config_name),
        StartTime=_at(low),
        EndTime=_at(high),
        Period=COUNT_PERIOD_S,
        Statistics=["Sum"],
    )["Datapoints"]
    if not points:
        return None
    return round(sum(float(p["Sum"]) for p in points))


def _latency(
    endpoint: str, variant: str, start: float, end: float, config_name: str | None = None
) -> tuple[float | None, float | None]:
    low = math.floor(start / 60) * 60
    period = max(60, math.ceil((end - low) / 60) * 60)
    answer: dict[str, Any] = aws.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="ModelLatency",
        Dimensions=_dimensions(endpoint, variant, config_name),
        StartTime=_at(low),
        EndTime=_at(low + period),
        Period=period,
        Statistics=["Average"],
        ExtendedStatistics=["p99"],
    )
    points = answer["Datapoints"]
    if not points:
        return None, None
    p99s = [float(p["ExtendedStatistics"]["p99"]) for p in points if "p99" in p.get("ExtendedStatistics", {})]
    averages = [float(p["Average"]) for p in points if "Average" in p]
    # Microseconds in CloudWatch, milliseconds in the report.
    p99 = round(max(p99s) / 1000, 1) if p99s else None
    average = round(sum(averages) / len(averages) / 1000, 1) if averages else None
    return p99, average


def variant_window(
    endpoint: str, variant: str, start: float, end: float, *, config_name: str | None = None
) -> VariantWindow:
    """CloudWatch's view of `variant` on `endpoint` between two epoch times (of the fleet of endpoint
    config `config_name` alone, when given)."""
    p99, average = _latency(endpoint, variant, start, end, config_name)
    return VariantWindow(
        invocations=_sum(endpoint, variant, "Invocations", start, end, config_name),
        errors_4xx=_sum(endpoint, variant, "Invocation4XXErrors", start, end, config_name),
        errors_5xx=_sum(endpoint, variant, "Invocation5XXErrors", start, end, config_name),
        p99_ms=p99,
        average_ms=average,
    )
