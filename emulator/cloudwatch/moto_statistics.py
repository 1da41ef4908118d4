"""moto's CloudWatch, with GetMetricStatistics answered as CloudWatch answers it.

`install()` replaces moto's GetMetricStatistics handler (in the moto server's own process, see
emulator/stack/moto_server.py) with one that applies emulator.cloudwatch.statistics to the data moto
stored from PutMetricData. Everything else of CloudWatch stays moto's.

The emulator's own alarm evaluator reads a user's series through this call with periods of the time
scale (2 s for a one-minute period at 30) and asks a statistic and its SampleCount in one call; it
marks its requests with INTERNAL_HEADER (emulator/cloudwatch/internal_requests.py), which skips the
request rules and the rounding of StartTime, never the exact matching of dimensions. Nothing of the
release sends that header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch import responses
from moto.cloudwatch.exceptions import InvalidParameterCombination, InvalidParameterValue
from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum, MetricDatumBase
from moto.core.responses import ActionResult
from moto.core.utils import utcnow

from emulator.cloudwatch.internal_requests import INTERNAL_HEADER
from emulator.cloudwatch.statistics import (
    Sample,
    StatisticsRefused,
    StatisticsRequest,
    check,
    datapoints,
    rounded_start,
)

Dimensions = frozenset[tuple[str, str]]


def install() -> None:
    """Answer GetMetricStatistics in this process's moto as CloudWatch does (idempotent)."""
    responses.CloudWatchResponse.get_metric_statistics = _get_metric_statistics  # type: ignore[method-assign]


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _get_metric_statistics(self: responses.CloudWatchResponse) -> ActionResult:
    metric_name = self._get_param("MetricName")
    request = StatisticsRequest(
        start=_epoch(self._get_param("StartTime")),
        end=_epoch(self._get_param("EndTime")),
        period=self._get_int_param("Period"),
        statistics=tuple(self._get_param("Statistics", [])),
        extended=tuple(self._get_param("ExtendedStatistics", [])),
        unit=self._get_param("Unit"),
    )
    internal = self.headers.get(INTERNAL_HEADER) == "1"
    now = _epoch(utcnow())
    if not internal:
        _refuse_as_cloudwatch(request, now)
    series = _series_samples(
        self.cloudwatch_backend.get_all_metrics(),
        namespace=self._get_param("Namespace"),
        metric_name=metric_name,
        dimensions=_dimensions(self._get_param("Dimensions", [])),
    )
    first = request.start if internal else rounded_start(request.start, request.period, now=now)
    points = datapoints(request, series, first_start=first)
    for point in points:
        point["Timestamp"] = datetime.fromtimestamp(point["Timestamp"], UTC)
    return ActionResult({"Label": metric_name, "Datapoints": points})


def _refuse_as_cloudwatch(request: StatisticsRequest, now: float) -> None:
    """statistics.check's refusals, raised as moto's CloudWatch errors (so its serializer answers them)."""
    try:
        check(request, now=now)
    except StatisticsRefused as refused:
        if refused.code == "InvalidParameterCombination":
            raise InvalidParameterCombination(refused.message) from None
        raise InvalidParameterValue(refused.message) from None


def _dimensions(dimensions: Iterable[Mapping[str, Any]]) -> Dimensions:
    return frozenset((str(d["Name"]), str(d.get("Value"))) for d in dimensions)


def _series_samples(
    data: Iterable[MetricDatumBase], *, namespace: str, metric_name: str, dimensions: Dimensions
) -> list[Sample]:
    """The samples of the one series the query names: same namespace, name and dimension set."""
    samples = []
    for datum in data:
        if datum.namespace != namespace or datum.name != metric_name:
            continue
        if frozenset((d.name, str(d.value)) for d in datum.dimensions) != dimensions:
            continue
        at = _epoch(datum.timestamp)
        if isinstance(datum, MetricAggregatedDatum):
            samples.append(
                Sample(
                    at,
                    float(datum.sample_count),
                    float(datum.sum),
                    float(datum.min),
                    float(datum.max),
                    datum.unit,
                )
            )
        elif isinstance(datum, MetricDatum):
            samples.append(Sample.raw(at, float(datum.value), datum.unit))
    return samples
