"""How CloudWatch decides a metric alarm's state from its recent datapoints: pure functions.

Follows "How alarm state is evaluated when data is missing" in the CloudWatch user guide:

* CloudWatch retrieves an evaluation range longer than EvaluationPeriods (N); here N + 2 periods,
  the range the guide's examples use for N = 3.
* With at least N real datapoints in the range, the most recent N real ones are evaluated and
  TreatMissingData is not consulted: ALARM when at least DatapointsToAlarm (M) of them breach, else OK.
* With fewer, every real datapoint counts and missing ones are filled in as few times as possible:
  `breaching` fills them as breaching, `notBreaching` as not breaching, `ignore` keeps the current
  state unless the real datapoints decide it, `missing` goes to INSUFFICIENT_DATA when the whole range
  is empty. The guide's "premature alarm" rule for `missing`: when every real datapoint in the range
  breaches and the oldest of them is at least M periods old, the alarm goes to ALARM even with fewer
  than M real datapoints. (The guide's prose and its tables differ on this rule; this wording is the
  one that reproduces every row of both tables, which the tests check.)

One interpretation the guide leaves open: with `missing`/`ignore`, a partial range whose real
datapoints all breach but are fewer than M (and not premature) keeps the current state; with a
non-breaching real datapoint among them it is OK (the guide's `0 - - - -` row).

StateReason and StateReasonData mimic CloudWatch's wording and JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)
TREAT_MISSING = ("missing", "ignore", "breaching", "notBreaching")
EXTRA_RANGE = 2

_PHRASES = {
    "GreaterThanThreshold": "greater than",
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}
COMPARISONS = tuple(_PHRASES)


class UnsupportedAlarm(ValueError):
    """An alarm this evaluator cannot judge (metric math, anomaly bands, composite…); it is left alone."""


@dataclass(frozen=True)
class AlarmRule:
    """The parts of a MetricAlarm that decide its state."""

    name: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str  # Sum, Average… or an extended statistic such as p99
    extended: bool
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing: str
    unit: str | None = None
    low_sample_ignore: bool = False

    @classmethod
    def from_description(cls, alarm: Mapping[str, Any]) -> AlarmRule:
        """Build from one DescribeAlarms MetricAlarms entry; UnsupportedAlarm when it cannot be judged."""
        name = str(alarm["AlarmName"])
        if alarm.get("Metrics"):
            raise UnsupportedAlarm(f"alarm {name} uses metric math (Metrics), which is not evaluated here")
        comparison = str(alarm.get("ComparisonOperator") or "")
        if comparison not in _PHRASES:
            raise UnsupportedAlarm(f"alarm {name} uses ComparisonOperator {comparison!r}, not evaluated here")
        if not alarm.get("MetricName") or not alarm.get("Namespace"):
            raise UnsupportedAlarm(f"alarm {name} names no metric")
        extended = alarm.get("ExtendedStatistic")
        statistic = str(extended or alarm.get("Statistic") or "")
        if not statistic:
            raise UnsupportedAlarm(f"alarm {name} has neither Statistic nor ExtendedStatistic")
        if extended and parse_percentile(statistic) is None:
            raise UnsupportedAlarm(f"alarm {name} uses ExtendedStatistic {statistic}; only pNN is evaluated")
        evaluation_periods = int(alarm["EvaluationPeriods"])
        treat = str(alarm.get("TreatMissingData") or "missing")
        if treat not in TREAT_MISSING:
            raise UnsupportedAlarm(f"alarm {name} has TreatMissingData {treat!r}")
        return cls(
            name=name,
            namespace=str(alarm["Namespace"]),
            metric_name=str(alarm["MetricName"]),
            dimensions=tuple(
                sorted((str(d["Name"]), str(d["Value"])) for d in alarm.get("Dimensions") or [])
            ),
            statistic=statistic,
            extended=bool(extended),
            period=int(alarm["Period"]),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or evaluation_periods),
            threshold=float(alarm["Threshold"]),
            comparison=comparison,
            treat_missing=treat,
            unit=alarm.get("Unit"),
            low_sample_ignore=alarm.get("EvaluateLowSampleCountPercentile") == "ignore",
        )

    @property
    def evaluation_range(self) -> int:
        return self.evaluation_periods + EXTRA_RANGE

    def breaches(self, value: float) -> bool:
        if self.comparison == "GreaterThanThreshold":
            return value > self.threshold
        if self.comparison == "GreaterThanOrEqualToThreshold":
            return value >= self.threshold
        if self.comparison == "LessThanThreshold":
            return value < self.threshold
        return value <= self.threshold


def parse_percentile(statistic: str) -> float | None:
    """99.0 for "p99", 99.9 for "p99.9"; None for anything else."""
    if not statistic.startswith("p"):
        return None
    try:
        value = float(statistic[1:])
    except ValueError:
        return None
    return value if 0 < value <= 100 else None


@dataclass(frozen=True)
class Datapoint:
    """The statistic of one period; `value` None means the period had no data."""

    timestamp: float  # start of the period, epoch seconds
    value: float | None
    sample_count: float | None = None
    low_sample: bool = False


@dataclass(frozen=True)
class Verdict:
    """The state an evaluation arrives at; `state` None keeps the current one (no SetAlarmState)."""

    state: str | None
    reason: str
    reason_data: dict[str, Any]

    def reason_data_json(self) -> str:
        return json.dumps(self.reason_data, separators=(",", ":"))


def evaluate(rule: AlarmRule, datapoints: Sequence[Datapoint], current: str, *, query_time: float) -> Verdict:
    """Judge `datapoints` (the evaluation range, oldest first) as CloudWatch would."""
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    real = [d for d in datapoints if d.value is not None]
    if rule.extended and rule.low_sample_ignore and any(d.low_sample for d in real[-n:]):
        return Verdict(None, "low sample count for a percentile; alarm state kept", {})
    if len(real) >= n:
        evaluated = real[-n:]
        breaching = sum(rule.breaches(_value(d)) for d in evaluated)
        state = ALARM if breaching >= m else OK
        return _crossed(rule, state, evaluated, breaching, 0, query_time)

    fill = n - len(real)
    breaching_real = sum(rule.breaches(_value(d)) for d in real)
    mode = rule.treat_missing
    if not real:
        if mode == "missing":
            return _insufficient(rule, n, datapoints, query_time)
        if mode == "ignore":
            return Verdict(None, "missing data ignored; alarm state kept", {})
        state = ALARM if mode == "breaching" else OK
        return _crossed(rule, state, [], n if mode == "breaching" else 0, fill, query_time)
    if mode == "breaching":
        breaching = breaching_real + fill
        return _crossed(rule, ALARM if breaching >= m else OK, real, breaching, fill, query_time)
    if mode == "notBreaching":
        return _crossed(rule, ALARM if breaching_real >= m else OK, real, breaching_real, fill, query_time)
    # missing / ignore: decided by the real datapoints when they can decide.
    if breaching_real >= m:
        return _crossed(rule, ALARM, real, breaching_real, 0, query_time)
    if mode == "missing" and _premature_alarm(rule, datapoints):
        return _crossed(rule, ALARM, real, breaching_real, 0, query_time)
    if breaching_real < len(real):
        return _crossed(rule, OK, real, breaching_real, 0, query_time)
    return Verdict(None, "too few datapoints to decide; alarm state kept", {})


def _premature_alarm(rule: AlarmRule, datapoints: Sequence[Datapoint]) -> bool:
    """Every real datapoint in the range breaches and the oldest is at least M periods old."""
    real = [(i, d) for i, d in enumerate(datapoints) if d.value is not None]
    if not real or not all(rule.breaches(_value(d)) for _, d in real):
        return False
    age = len(datapoints) - real[0][0]  # the newest period has age 1
    return age >= rule.datapoints_to_alarm


def _value(datapoint: Datapoint) -> float:
    assert datapoint.value is not None
    return datapoint.value


def _crossed(
    rule: AlarmRule,
    state: str,
    evaluated: Sequence[Datapoint],
    breaching: int,
    filled: int,
    query_time: float,
) -> Verdict:
    """'Threshold Crossed: 2 out of the last 2 datapoints [5.0 (21/11/25 10:00:10), …] were greater than
    the threshold (5.0) (minimum 2 datapoints for OK -> ALARM transition).'"""
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    phrase = _PHRASES[rule.comparison]
    newest_first = list(reversed(evaluated))
    if state == ALARM:
        listed = [d for d in newest_first if rule.breaches(_value(d))]
        count, negation, minimum, transition = breaching, "", m, "OK -> ALARM"
    else:
        listed = [d for d in newest_first if not rule.breaches(_value(d))]
        count = len(listed) + (filled if rule.treat_missing == "notBreaching" else 0)
        negation, minimum, transition = "not ", n - m + 1, "ALARM -> OK"
    threshold = _number(rule.threshold)
    fill_kind = "Breaching" if rule.treat_missing == "breaching" else "NonBreaching"
    if not evaluated:
        periods, missing = _plural(n, "period"), _plural(filled, "missing datapoint")
        reason = (
            f"Threshold Crossed: no datapoints were received for {periods} and {missing} "
            f"{'was' if filled == 1 else 'were'} treated as [{fill_kind}]."
        )
    else:
        shown = ", ".join(f"{_number(_value(d))} ({_when(d.timestamp)})" for d in listed)
        verb = "was" if count == 1 else "were"
        if len(evaluated) == 1 and filled == 0:
            head = f"1 datapoint [{shown}] {verb}"
        else:
            head = f"{count} out of the last {len(evaluated) + filled} datapoints [{shown}] {verb}"
        filled_part = (
            f", and {_plural(filled, 'missing datapoint')} {'was' if filled == 1 else 'were'} "
            f"treated as [{fill_kind}]"
            if filled
            else ""
        )
        reason = (
            f"Threshold Crossed: {head} {negation}{phrase} the threshold ({threshold}){filled_part} "
            f"(minimum {_plural(minimum, 'datapoint')} for {transition} transition)."
        )
    return Verdict(state, reason, _reason_data(rule, evaluated, query_time))


def _insufficient(
    rule: AlarmRule, unknown: int, datapoints: Sequence[Datapoint], query_time: float
) -> Verdict:
    verb = "was" if unknown == 1 else "were"
    reason = f"Insufficient Data: {_plural(unknown, 'datapoint')} {verb} unknown."
    return Verdict(INSUFFICIENT_DATA, reason, _reason_data(rule, [], query_time, start=datapoints))


def _reason_data(
    rule: AlarmRule,
    evaluated: Sequence[Datapoint],
    query_time: float,
    *,
    start: Sequence[Datapoint] | None = None,
) -> dict[str, Any]:
    first = (start or evaluated)[0].timestamp if (start or evaluated) else query_time
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _iso(query_time),
        "startDate": _iso(first),
        "period": rule.period,
        "recentDatapoints": [_value(d) for d in evaluated],
        "threshold": rule.threshold,
        "evaluatedDatapoints": [
            {
                "timestamp": _iso(d.timestamp),
                **({"sampleCount": d.sample_count} if d.sample_count is not None else {}),
                "value": _value(d),
            }
            for d in reversed(evaluated)
        ],
    }
    data["extendedStatistic" if rule.extended else "statistic"] = rule.statistic
    if rule.unit:
        data["unit"] = rule.unit
    return data


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _number(value: float) -> str:
    return repr(float(value))


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%d/%m/%y %H:%M:%S")


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
