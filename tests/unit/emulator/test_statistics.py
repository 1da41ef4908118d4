"""GetMetricStatistics' rules and arithmetic as the API reference states them."""

from __future__ import annotations

import pytest

from emulator.cloudwatch.statistics import (
    Sample,
    StatisticsRefused,
    StatisticsRequest,
    check,
    datapoints,
    percentile,
    rounded_start,
)

NOW = 1_800_000_000.0  # a whole hour
DAY = 86_400.0


def request(**changes: object) -> StatisticsRequest:
    fields: dict[str, object] = {"start": NOW - 600, "end": NOW, "period": 60, "statistics": ("Sum",)}
    fields.update(changes)
    return StatisticsRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"extended": ("p99",)}, "InvalidParameterCombination", "but not both"),
        ({"statistics": ()}, "InvalidParameterCombination", "either Statistics or ExtendedStatistics"),
        ({"statistics": ("Median",)}, "InvalidParameterValue", "Median"),
        ({"statistics": ("Sum",) * 6}, "InvalidParameterValue", "more than 5"),
        (
            {"statistics": (), "extended": tuple(f"p{n}" for n in range(11))},
            "InvalidParameterValue",
            "more than 10",
        ),
        ({"statistics": (), "extended": ("p101",)}, "InvalidParameterValue", "p101"),
        ({"statistics": (), "extended": ("99",)}, "InvalidParameterValue", "between p0.0 and p100"),
        ({"statistics": (), "extended": ("tm99",)}, "InvalidParameterValue", "tm99"),
        ({"period": 45}, "InvalidParameterValue", "multiple of 60; got 45"),
        ({"period": 0}, "InvalidParameterValue", "Period"),
        ({"period": 90}, "InvalidParameterValue", "got 90"),
        ({"start": NOW, "end": NOW}, "InvalidParameterValue", "StartTime must be less than"),
        ({"start": NOW - 1441 * 60}, "InvalidParameterCombination", "1,441 datapoints"),
        ({"start": NOW - 1441, "period": 1}, "InvalidParameterCombination", "exceeds the limit of 1,440"),
    ],
)
def test_requests_cloudwatch_refuses(changes: dict[str, object], code: str, words: str) -> None:
    with pytest.raises(StatisticsRefused) as refused:
        check(request(**changes), now=NOW)
    assert refused.value.code == code
    assert words in refused.value.message


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"statistics": (), "extended": ("p99", "p99.9", "p0.0", "p100", "p50.1234567891")},
        {"period": 1, "start": NOW - 1440},
        {"period": 30},
        {"period": 3600, "start": NOW - 60 * DAY},
        {"statistics": ("SampleCount", "Average", "Sum", "Minimum", "Maximum")},
        {"start": NOW - 1440 * 60},  # exactly 1,440 periods
    ],
)
def test_requests_cloudwatch_takes(changes: dict[str, object]) -> None:
    check(request(**changes), now=NOW)


@pytest.mark.parametrize(
    ("start", "period", "rounded"),
    [
        (NOW - 3600 + 34, 60, NOW - 3600),  # within 15 days: the minute
        (NOW - 3600 + 34, 300, NOW - 3600),
        (NOW - 20 * DAY + 154, 60, NOW - 20 * DAY),  # 15 to 63 days: 5 minutes
        (NOW - 70 * DAY + 1234, 60, NOW - 70 * DAY),  # beyond 63 days: the hour
        (NOW - 37, 10, NOW - 40),  # under a minute: that division of the minute
        (NOW - 37, 5, NOW - 40),
        (NOW - 37.5, 1, NOW - 38),
    ],
)
def test_start_time_is_rounded_down_as_cloudwatch_rounds_it(
    start: float, period: int, rounded: float
) -> None:
    assert rounded_start(start, period, now=NOW) == rounded


def test_periods_start_from_the_rounded_start_and_skip_the_empty_ones() -> None:
    samples = [
        Sample.raw(NOW - 600 + 5, 1.0),
        Sample.raw(NOW - 600 + 59, 2.0),
        Sample.raw(NOW - 300 + 1, 4.0),
    ]
    points = datapoints(
        request(statistics=("Sum", "SampleCount")), samples, first_start=rounded_start(NOW - 590, 60, now=NOW)
    )
    assert [(p["Timestamp"], p["Sum"], p["SampleCount"]) for p in points] == [
        (NOW - 600, 3.0, 2.0),
        (NOW - 300, 4.0, 1.0),
    ]


def test_data_outside_the_range_or_of_another_unit_is_left_out() -> None:
    samples = [
        Sample.raw(NOW - 601, 100.0, "Count"),
        Sample.raw(NOW - 10, 1.0, "Count"),
        Sample.raw(NOW - 10, 2.0, "Seconds"),
        Sample.raw(NOW, 100.0, "Count"),
    ]
    only_counts = datapoints(request(unit="Count"), samples, first_start=NOW - 600)
    assert [(p["Sum"], p["Unit"]) for p in only_counts] == [(1.0, "Count")]
    assert [p["Sum"] for p in datapoints(request(), samples, first_start=NOW - 600)] == [3.0]


def test_each_statistic_of_raw_values_and_statistic_sets() -> None:
    samples = [Sample.raw(NOW - 50, 2.0), Sample(NOW - 40, 3.0, 30.0, 5.0, 15.0)]
    (point,) = datapoints(
        request(statistics=("SampleCount", "Average", "Sum", "Minimum", "Maximum")),
        samples,
        first_start=NOW - 60,
    )
    assert {k: point[k] for k in ("SampleCount", "Average", "Sum", "Minimum", "Maximum")} == {
        "SampleCount": 4.0,
        "Average": 8.0,
        "Sum": 32.0,
        "Minimum": 2.0,
        "Maximum": 15.0,
    }
    assert "ExtendedStatistics" not in point and point["Unit"] == "None"


def test_percentiles_are_the_nearest_rank_of_every_value_counted() -> None:
    # 100 values: 1..99 once each and 1000 once, as Values/Counts or single values deliver them.
    samples = [Sample.raw(NOW - 30, float(v)) for v in range(1, 100)] + [Sample.raw(NOW - 20, 1000.0)]
    (point,) = datapoints(
        request(statistics=(), extended=("p50", "p99", "p99.5", "p100", "p0")), samples, first_start=NOW - 60
    )
    assert point["ExtendedStatistics"] == {
        "p50": 50.0,
        "p99": 99.0,
        "p99.5": 1000.0,
        "p100": 1000.0,
        "p0": 1.0,
    }
    assert "Sum" not in point


def test_percentiles_count_a_statistic_set_only_when_its_values_are_known() -> None:
    asked = request(statistics=(), extended=("p50",))
    equal = [Sample(NOW - 30, 3.0, 21.0, 7.0, 7.0), Sample.raw(NOW - 20, 1.0)]
    assert datapoints(asked, equal, first_start=NOW - 60)[0]["ExtendedStatistics"] == {"p50": 7.0}
    single = [Sample(NOW - 30, 1.0, 4.0, 4.0, 4.0)]
    assert datapoints(asked, single, first_start=NOW - 60)[0]["ExtendedStatistics"] == {"p50": 4.0}
    spread = [Sample(NOW - 30, 3.0, 21.0, 1.0, 10.0), Sample.raw(NOW - 20, 1.0)]
    assert "ExtendedStatistics" not in datapoints(asked, spread, first_start=NOW - 60)[0]


def test_no_percentile_when_a_value_is_negative() -> None:
    samples = [Sample.raw(NOW - 30, -1.0), Sample.raw(NOW - 20, 5.0)]
    (point,) = datapoints(request(statistics=(), extended=("p99",)), samples, first_start=NOW - 60)
    assert "ExtendedStatistics" not in point


def test_percentile_of_raw_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 99), percentile(values, 50), percentile(values, 0)) == (99.0, 50.0, 1.0)
    assert percentile([7.0], 99.9) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="not in"):
        percentile(values, 100.5)
