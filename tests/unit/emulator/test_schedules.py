"""Scheduled actions' schedules (emulator/autoscaling/schedules.py): what is read, refused and due when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from emulator.autoscaling.schedules import ScheduleError, due, parse, zone


def epoch(*parts: int, tz: str = "UTC") -> float:
    return datetime(*parts, tzinfo=zone(tz)).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("at(2026-13-01T00:00:00)", "no valid time"),
        ("rate(0 minutes)", "value of 1 or more"),
        ("rate(1 minutes)", "singular unit for 1"),
        ("rate(5 minute)", "plural one above"),
        ("rate(5 weeks)", "is not at("),
        ("cron(0 20 * * *)", "takes 6 fields"),
        ("cron(0 20 * * * *)", "? in exactly one"),
        ("cron(0 20 ? * ? *)", "? in exactly one"),
        ("cron(60 20 * * ? *)", "Minutes '60'"),
        ("cron(0 20 ? * 8 *)", "'8' is not in 1-7"),
        ("cron(0 20 ? * 6#3 *)", "L, W and # are not supported by the emulator"),
        ("cron(0 20 L * ? *)", "Day-of-month 'L'"),
        ("cron(0 9-5 * * ? *)", "runs backwards"),
        ("cron(*/0 * * * ? *)", "not a positive number"),
        ("every day", "is not at("),
    ],
)
def test_schedules_aws_refuses_or_the_emulator_cannot_run(expression: str, words: str) -> None:
    with pytest.raises(ScheduleError, match=words.replace("(", r"\(").replace("?", r"\?")):
        parse(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match="Europe/Atlantis"):
        zone("Europe/Atlantis")


def test_at_runs_once_in_its_time_zone() -> None:
    schedule = parse("at(2026-12-02T09:00:00)")
    berlin = epoch(2026, 12, 2, 9, 0, 0, tz="Europe/Berlin")  # 08:00 UTC
    assert due(schedule, after=berlin - 1, until=berlin + 1, timezone="Europe/Berlin", anchor=0) == berlin
    assert due(schedule, after=berlin, until=berlin + 60, timezone="Europe/Berlin", anchor=0) is None
    utc = epoch(2026, 12, 2, 9, 0, 0)
    assert due(schedule, after=utc - 1, until=utc, timezone=None, anchor=0) == utc


def test_a_rate_counts_from_its_anchor_and_shortens_with_the_time_scale() -> None:
    schedule = parse("rate(5 minutes)")
    assert due(schedule, after=1000, until=1299, timezone=None, anchor=1000) is None
    assert due(schedule, after=1299, until=1300, timezone=None, anchor=1000) == 1300
    assert due(schedule, after=1300, until=1599, timezone=None, anchor=1000) is None
    assert due(schedule, after=1000, until=1010, timezone=None, anchor=1000, real=lambda s: s / 30) == 1010
    assert parse("rate(1 day)").rate_s == 86_400


def test_cron_matches_minutes_in_its_time_zone_with_names_lists_ranges_and_steps() -> None:
    weekdays_evening = parse("cron(0,30 18-19 ? * MON-FRI *)")
    friday = epoch(2026, 12, 4, 18, 30, 0, tz="America/New_York")
    assert (
        due(weekdays_evening, after=friday - 5, until=friday + 5, timezone="America/New_York", anchor=0)
        == friday
    )
    saturday = epoch(2026, 12, 5, 18, 30, 0, tz="America/New_York")
    assert (
        due(weekdays_evening, after=saturday - 5, until=saturday + 5, timezone="America/New_York", anchor=0)
        is None
    )
    quarter = parse("cron(*/15 * * JAN,DEC ? 2026)")
    noon = epoch(2026, 12, 2, 12, 45, 0)
    assert due(quarter, after=noon - 60, until=noon + 10, timezone=None, anchor=0) == noon
    assert due(quarter, after=noon + 1, until=noon + 840, timezone=None, anchor=0) is None
    assert due(parse("cron(0 0 1 * ? *)"), after=noon - 60, until=noon, timezone=None, anchor=0) is None
    # Day-of-week 1 is Sunday.
    sunday = epoch(2026, 12, 6, 0, 0, 0)
    assert due(parse("cron(0 0 ? * 1 *)"), after=sunday - 1, until=sunday, timezone=None, anchor=0) == sunday


def test_a_long_window_looks_back_one_day_at_most() -> None:
    daily = parse("cron(0 3 * * ? *)")
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
    assert due(daily, after=0, until=now, timezone=None, anchor=0) == epoch(2026, 12, 2, 3, 0, 0)
    assert due(daily, after=now, until=now, timezone=None, anchor=0) is None
