"""The local moto answers GetMetricStatistics as CloudWatch does (emulator/cloudwatch/moto_statistics.py):
it refuses what CloudWatch refuses, matches dimensions exactly, rounds StartTime and answers percentiles.
Each test talks boto3 to a real moto server started the way `python -m emulator up` starts it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.cloudwatch.internal_requests import mark_internal
from emulator.stack.parts import part
from tests.emulator.local_moto import cloudwatch_client, moto_server

NAMESPACE = "Team/Checks"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with moto_server() as address:
        yield address


@pytest.fixture
def cloudwatch(url: str) -> Any:
    return cloudwatch_client(url)


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@pytest.fixture
def minute() -> float:
    """The start of a whole minute ten minutes ago, so every datapoint of a test is in the past."""
    return (int(time.time()) // 60) * 60 - 600.0


def dims(endpoint: str, config: str | None = None) -> list[dict[str, str]]:
    named = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]
    return named + ([{"Name": "EndpointConfigName", "Value": config}] if config else [])


def put(cloudwatch: Any, metric: str, dimensions: list[dict[str, str]], *points: tuple[float, float]) -> None:
    """Single values (epoch time, value) of one series."""
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {"MetricName": metric, "Dimensions": dimensions, "Timestamp": at(when), "Value": value}
            for when, value in points
        ],
    )


def query(cloudwatch: Any, metric: str, dimensions: list[dict[str, str]], start: float, **asked: Any) -> Any:
    asked.setdefault("Period", 60)
    return cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=dimensions,
        StartTime=at(start),
        EndTime=at(start + 120),
        **asked,
    )["Datapoints"]


@pytest.mark.parametrize(
    ("asked", "code", "words"),
    [
        ({"Statistics": ["Sum"], "ExtendedStatistics": ["p99"]}, "InvalidParameterCombination", "not both"),
        ({"Statistics": ["Sum"], "Period": 45}, "InvalidParameterValue", "multiple of 60"),
        ({"ExtendedStatistics": ["p100.5"]}, "InvalidParameterValue", "p100.5"),
        ({"Statistics": ["Sum"], "Period": 60, "StartTime": at(0)}, "InvalidParameterCombination", "1,440"),
    ],
)
def test_what_cloudwatch_refuses_is_refused(
    cloudwatch: Any, asked: dict[str, Any], code: str, words: str
) -> None:
    request: dict[str, Any] = {
        "Namespace": NAMESPACE,
        "MetricName": "Latency",
        "StartTime": at(time.time() - 600),
        "EndTime": at(time.time()),
        "Period": 60,
        **asked,
    }
    with pytest.raises(ClientError) as refused:
        cloudwatch.get_metric_statistics(**request)
    assert refused.value.response["Error"]["Code"] == code
    assert words in refused.value.response["Error"]["Message"]


def test_percentiles_are_answered_from_the_values_sent(cloudwatch: Any, minute: float) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": "Latency",
                "Dimensions": dims(endpoint),
                "Timestamp": at(minute + 5),
                "Values": [10.0, 20.0, 900.0],
                "Counts": [50.0, 49.0, 1.0],
                "Unit": "Microseconds",
            }
        ],
    )
    (point,) = query(cloudwatch, "Latency", dims(endpoint), minute, ExtendedStatistics=["p50", "p99", "p100"])
    assert point["ExtendedStatistics"] == {"p50": 10.0, "p99": 20.0, "p100": 900.0}
    assert point["Unit"] == "Microseconds" and "Sum" not in point
    (average,) = query(cloudwatch, "Latency", dims(endpoint), minute, Statistics=["Average", "SampleCount"])
    assert (average["SampleCount"], average["Average"]) == (100.0, (500 + 980 + 900) / 100)


def test_dimensions_name_one_series_exactly(cloudwatch: Any, minute: float) -> None:
    """CloudWatch treats each combination of dimensions as its own metric: a variant's query does not
    read a fleet's series (moto alone would sum every series whose dimensions include the query's)."""
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    put(cloudwatch, "Invocations", dims(endpoint), (minute + 1, 3.0))
    put(cloudwatch, "Invocations", dims(endpoint, "config-a"), (minute + 1, 2.0))
    assert [
        p["Sum"] for p in query(cloudwatch, "Invocations", dims(endpoint), minute, Statistics=["Sum"])
    ] == [3.0]
    assert [
        p["Sum"]
        for p in query(cloudwatch, "Invocations", dims(endpoint, "config-a"), minute, Statistics=["Sum"])
    ] == [2.0]
    assert query(cloudwatch, "Invocations", dims(endpoint)[:1], minute, Statistics=["Sum"]) == []


def test_start_time_is_rounded_down_to_the_minute(cloudwatch: Any, minute: float) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    put(cloudwatch, "Invocations", dims(endpoint), (minute + 2, 1.0), (minute + 70, 5.0))
    # Asked from 30 s into the minute: the minute's datapoint is in, and periods start on the minute.
    points = query(cloudwatch, "Invocations", dims(endpoint), minute + 30, Statistics=["Sum"])
    assert sorted((p["Timestamp"].timestamp(), p["Sum"]) for p in points) == [
        (minute, 1.0),
        (minute + 60, 5.0),
    ]


def test_the_emulators_own_requests_skip_the_request_rules_but_not_the_dimensions(
    url: str, minute: float
) -> None:
    """The alarm evaluator asks time-scaled periods with a statistic and its SampleCount in one call."""
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    plain = cloudwatch_client(url)
    put(plain, "Latency", dims(endpoint), (minute + 2.5, 4.0), (minute + 4.5, 8.0))
    internal = mark_internal(cloudwatch_client(url))
    asked = {"Period": 2, "Statistics": ["SampleCount"], "ExtendedStatistics": ["p99"]}
    points = query(internal, "Latency", dims(endpoint), minute + 2.25, **asked)
    assert sorted((p["Timestamp"].timestamp(), p["ExtendedStatistics"]["p99"]) for p in points) == [
        (minute + 2.25, 4.0),
        (minute + 4.25, 8.0),
    ]
    assert query(internal, "Latency", dims(endpoint, "other"), minute + 2.25, **asked) == []
    with pytest.raises(ClientError, match="InvalidParameterCombination"):
        query(plain, "Latency", dims(endpoint), minute + 2.25, **asked)


def test_the_stack_starts_moto_with_these_rules(tmp_path: Path) -> None:
    command = part("moto").command(tmp_path)
    assert command[1:3] == ["-m", "emulator.stack.moto_server"]
