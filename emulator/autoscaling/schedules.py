"""Scheduled actions' schedules, as Application Auto Scaling reads them: pure functions.

PutScheduledAction's `Schedule` (API reference, "Schedule"):

* `at(yyyy-mm-ddThh:mm:ss)`: once, at that time in `Timezone` (UTC when none is given);
* `rate(value unit)`: every `value` minutes, hours or days (singular unit for 1, plural above), from the
  action's StartTime or, without one, from when it was created;
* `cron(Minutes Hours Day-of-month Month Day-of-week Year)`: at each minute the six fields match, in
  `Timezone`. Fields take `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a/n`, month names
  JAN-DEC and day names SUN-SAT (1 is Sunday); one of day-of-month and day-of-week is `?`.
  `L`, `W` and `#` are valid on AWS but not run here: `parse` refuses them, naming the field.

`due` answers whether a run falls in a window of real time; the loop (models.py) calls it each round
with the window since its last round. At a time scale a rate's interval shortens with the clock (as
cooldowns do); `at` and `cron` name wall-clock times and do not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_AT = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\(([^()]*)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86_400}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, lowest, highest, names (first name = lowest)
_FIELDS = (
    ("Minutes", 0, 59, ()),
    ("Hours", 0, 23, ()),
    ("Day-of-month", 1, 31, ()),
    ("Month", 1, 12, _MONTHS),
    ("Day-of-week", 1, 7, _DAYS),
    ("Year", 1970, 2199, ()),
)
MAX_CATCH_UP_MINUTES = 24 * 60  # a window longer than a day (a stalled round) looks back one day


class ScheduleError(ValueError):
    """A Schedule or Timezone Application Auto Scaling would refuse (or this emulator cannot run)."""


@dataclass(frozen=True)
class Schedule:
    kind: str  # "at", "rate" or "cron"
    at: datetime | None = None  # naive, in the action's time zone
    rate_s: int = 0
    fields: tuple[frozenset[int] | None, ...] = ()  # None: any value (`*` or `?`)


def zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"Timezone {timezone!r} is not a time zone name (e.g. Europe/Berlin, UTC)"
        ) from None


def parse(expression: str) -> Schedule:
    """The schedule of `expression`; ScheduleError naming what is wrong."""
    text = expression.strip()
    if matched := _AT.fullmatch(text):
        try:
            return Schedule("at", at=datetime.fromisoformat(matched[1]))
        except ValueError:
            raise ScheduleError(f"at() holds no valid time: {expression}") from None
    if matched := _RATE.fullmatch(text):
        value, unit = int(matched[1]), matched[2]
        if value < 1:
            raise ScheduleError(f"rate() needs a value of 1 or more: {expression}")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleError(f"rate() takes a singular unit for 1 and a plural one above: {expression}")
        return Schedule("rate", rate_s=value * _UNIT_S[unit.rstrip("s")])
    if matched := _CRON.fullmatch(text):
        return _cron(expression, matched[1].split())
    raise ScheduleError(
        f"Schedule {expression!r} is not at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(fields)"
    )


def _cron(expression: str, parts: list[str]) -> Schedule:
    if len(parts) != len(_FIELDS):
        raise ScheduleError(
            f"cron() takes 6 fields (Minutes Hours Day-of-month Month Day-of-week Year): {expression}"
        )
    day_of_month, day_of_week = parts[2], parts[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError(f"cron() needs ? in exactly one of Day-of-month and Day-of-week: {expression}")
    fields = tuple(_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True))
    return Schedule("cron", fields=fields)


def _field(part: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int] | None:
    if part in ("*", "?"):
        return None
    bare = part.upper()
    for known in names:
        bare = bare.replace(known, "")
    if any(mark in bare for mark in ("L", "W", "#")):
        raise ScheduleError(f"cron() {name} {part!r}: L, W and # are not supported by the emulator")

    def number(token: str) -> int:
        upper = token.upper()
        if upper in names:
            return low + names.index(upper)
        if not token.isdigit() or not low <= int(token) <= high:
            raise ScheduleError(f"cron() {name} {part!r}: {token!r} is not in {low}-{high}")
        return int(token)

    values: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(
                    f"cron() {name} {part!r}: the step {step_text!r} is not a positive number"
                )
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start_text, end_text = base.split("-", 1)
            first, last = number(start_text), number(end_text)
            if first > last:
                raise ScheduleError(f"cron() {name} {part!r}: the range runs backwards")
        else:
            first = number(base)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def due(
    schedule: Schedule,
    *,
    after: float,
    until: float,
    timezone: str | None,
    anchor: float,
    real: Callable[[float], float] = lambda s: s,
) -> float | None:
    """The latest run of `schedule` in the real-time window (after, until], or None.

    `anchor` is where a rate counts from (the action's StartTime or creation time); `real` turns AWS
    seconds into real seconds at the emulator's time scale.
    """
    if until <= after:
        return None
    tz = zone(timezone)
    if schedule.kind == "at":
        assert schedule.at is not None
        moment = schedule.at.replace(tzinfo=tz).timestamp()
        return moment if after < moment <= until else None
    if schedule.kind == "rate":
        interval = real(schedule.rate_s)
        runs = math.floor((until - anchor) / interval)
        moment = anchor + runs * interval
        return moment if runs >= 1 and moment > after else None
    minute = datetime.fromtimestamp(until, UTC).replace(second=0, microsecond=0)
    earliest = max(after, until - MAX_CATCH_UP_MINUTES * 60)
    while minute.timestamp() > earliest:
        if _matches(schedule, minute.astimezone(tz)):
            return minute.timestamp()
        minute -= timedelta(minutes=1)
    return None


def _matches(schedule: Schedule, moment: datetime) -> bool:
    # Day-of-week: 1 is Sunday (Python's isoweekday() gives 7 for Sunday).
    values = (
        moment.minute,
        moment.hour,
        moment.day,
        moment.month,
        moment.isoweekday() % 7 + 1,
        moment.year,
    )
    return all(field is None or value in field for field, value in zip(schedule.fields, values, strict=True))
