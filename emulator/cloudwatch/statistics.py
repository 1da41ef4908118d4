"""GetMetricStatistics as CloudWatch answers it: the requests it refuses, and each period's statistics.

moto 5.2.5 answers GetMetricStatistics more kindly than CloudWatch: it takes Statistics and
ExtendedStatistics together and answers no percentile, takes any Period and any number of periods,
matches a query's dimensions as a subset of a series' and starts its periods at the first datapoint.
A release tested against that could send a query CloudWatch refuses, or read a figure CloudWatch would
not give. The rules here come from the GetMetricStatistics API reference and botocore's service model:

* exactly one of Statistics (1-5 of SampleCount, Average, Sum, Minimum, Maximum) and
  ExtendedStatistics (1-10 percentiles, p0.0 to p100), else InvalidParameterCombination or
  InvalidParameterValue;
* Period 1, 5, 10, 30 or a multiple of 60; StartTime before EndTime (InvalidParameterValue);
* at most 1,440 datapoints per call (InvalidParameterCombination);
* StartTime is rounded down: to the minute when it is less than 15 days ago, to 5 minutes up to 63 days,
  to the hour beyond; with a Period under a minute, to that division of the minute instead;
* a query's dimensions name one series exactly ("CloudWatch treats each unique combination of
  dimensions as a separate metric");
* percentiles need raw values: a statistic set counts only when its SampleCount is 1 or its Minimum
  equals its Maximum, and no percentile is given when any value is negative.

Percentiles are nearest-rank, as the alarm evaluator computes them (emulator/cloudwatch/alarms.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
MAX_STATISTICS = 5
MAX_EXTENDED_STATISTICS = 10
MAX_DATAPOINTS = 1440
SUB_MINUTE_PERIODS = (1, 5, 10, 30)
_PERCENTILE = re.compile(r"p(\d{1,2}(\.\d{1,10})?|100(\.0{1,10})?)")
_DAY_S = 86_400

Refusal = Literal["InvalidParameterValue", "InvalidParameterCombination"]


class StatisticsRefused(Exception):
    """A request CloudWatch refuses, with the error code and message it answers."""

    def __init__(self, *, code: Refusal, message: str) -> None:
        super().__init__(message)
        self.code: Refusal = code
        self.message = message


@dataclass(frozen=True)
class Sample:
    """One datum as PutMetricData stored it: a raw value (count 1) or a statistic set."""

    timestamp: float  # epoch seconds
    count: float
    total: float
    minimum: float
    maximum: float
    unit: str | None = None

    @classmethod
    def raw(cls, timestamp: float, value: float, unit: str | None = None) -> Sample:
        return cls(timestamp, 1.0, value, value, value, unit)

    @property
    def has_values(self) -> bool:
        """True when every value this datum stands for is known (CloudWatch's rule for percentiles)."""
        return self.count == 1 or self.minimum == self.maximum


@dataclass(frozen=True)
class StatisticsRequest:
    start: float  # epoch seconds
    end: float
    period: int
    statistics: tuple[str, ...] = ()
    extended: tuple[str, ...] = ()
    unit: str | None = None


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 <= p <= 100) of raw values by nearest rank; p0 is the minimum."""
    if not values:
        raise ValueError("percentile of no values")
    return _nearest_rank(sorted((value, 1.0) for value in values), p)


def _nearest_rank(weighted: Sequence[tuple[float, float]], p: float) -> float:
    """The p-th percentile of sorted (value, how many times it was seen) pairs, by nearest rank."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not in [0, 100]")
    rank = max(1.0, math.ceil(p / 100.0 * math.fsum(count for _, count in weighted)))
    seen = 0.0
    for value, count in weighted:
        seen += count
        if seen >= rank:
            return value
    return weighted[-1][0]


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


def check(request: StatisticsRequest, *, now: float) -> None:
    """Refuse what CloudWatch refuses (StatisticsRefused), before any data is read."""
    if bool(request.statistics) == bool(request.extended):
        raise StatisticsRefused(
            code="InvalidParameterCombination",
            message="Must specify either Statistics or ExtendedStatistics, but not both.",
        )
    unknown = [s for s in request.statistics if s not in STATISTICS]
    if unknown:
        raise StatisticsRefused(
            code="InvalidParameterValue",
            message=f"The value {unknown[0]} for parameter Statistics is not one of {', '.join(STATISTICS)}.",
        )
    if len(request.statistics) > MAX_STATISTICS:
        raise StatisticsRefused(
            code="InvalidParameterValue",
            message=f"The collection Statistics must not have more than {MAX_STATISTICS} members.",
        )
    if len(request.extended) > MAX_EXTENDED_STATISTICS:
        raise StatisticsRefused(
            code="InvalidParameterValue",
            message="The collection ExtendedStatistics must not have more than "
            f"{MAX_EXTENDED_STATISTICS} members.",
        )
    bad = [s for s in request.extended if not _PERCENTILE.fullmatch(s)]
    if bad:
        raise StatisticsRefused(
            code="InvalidParameterValue",
            message=f"The value {bad[0]} for parameter ExtendedStatistics is not supported: "
            "specify percentiles between p0.0 and p100.",
        )
    if request.period < 1 or (request.period not in SUB_MINUTE_PERIODS and request.period % 60):
        raise StatisticsRefused(
            code="InvalidParameterValue",
            message=f"The parameter Period must be 1, 5, 10, 30 or a multiple of 60; got {request.period}.",
        )
    if request.start >= request.end:
        raise StatisticsRefused(
            code="InvalidParameterValue",
            message="The parameter StartTime must be less than the parameter EndTime.",
        )
    requested = math.ceil(
        (request.end - rounded_start(request.start, request.period, now=now)) / request.period
    )
    if requested > MAX_DATAPOINTS:
        raise StatisticsRefused(
            code="InvalidParameterCombination",
            message=f"You have requested up to {requested:,} datapoints, which exceeds the limit of "
            f"{MAX_DATAPOINTS:,}. You may reduce the datapoints requested by increasing Period, or "
            "decreasing the time range.",
        )


def rounded_start(start: float, period: int, *, now: float) -> float:
    """StartTime as CloudWatch rounds it down before cutting periods."""
    if period < 60:
        step = period
    elif now - start < 15 * _DAY_S:
        step = 60
    elif now - start < 63 * _DAY_S:
        step = 300
    else:
        step = 3600
    return math.floor(start / step) * step


def datapoints(
    request: StatisticsRequest, samples: Iterable[Sample], *, first_start: float
) -> list[dict[str, Any]]:
    """One datapoint per period with data, periods cut from `first_start` on; samples before it or at
    or after EndTime are left out, as are those of another unit when the request names one."""
    periods: dict[int, list[Sample]] = {}
    for sample in samples:
        if not first_start <= sample.timestamp < request.end:
            continue
        if request.unit is not None and (sample.unit or "None") != request.unit:
            continue
        periods.setdefault(int((sample.timestamp - first_start) // request.period), []).append(sample)
    return [
        _datapoint(request, first_start + index * request.period, periods[index]) for index in sorted(periods)
    ]


def _datapoint(request: StatisticsRequest, timestamp: float, samples: list[Sample]) -> dict[str, Any]:
    count = math.fsum(s.count for s in samples)
    total = math.fsum(s.total for s in samples)
    figures = {
        "SampleCount": count,
        "Sum": total,
        "Average": total / count if count else 0.0,
        "Minimum": min(s.minimum for s in samples),
        "Maximum": max(s.maximum for s in samples),
    }
    point: dict[str, Any] = {
        "Timestamp": timestamp,
        "Unit": samples[-1].unit or "None",
        **{name: figures[name] for name in request.statistics},
    }
    if request.extended:
        percentiles = _percentiles(request.extended, samples)
        if percentiles:
            point["ExtendedStatistics"] = percentiles
    return point


def _percentiles(wanted: Sequence[str], samples: Sequence[Sample]) -> dict[str, float]:
    if not all(s.has_values for s in samples) or any(s.minimum < 0 for s in samples):
        return {}
    weighted = sorted((s.minimum, s.count) for s in samples)
    return {name: _nearest_rank(weighted, float(name[1:])) for name in wanted}
