"""The CloudWatch alarm evaluator moto lacks: reads alarms and datapoints, sets alarm states.

Every `interval_s` it lists the metric alarms (DescribeAlarms), fetches each one's evaluation range
of datapoints, judges it with `emulator.cloudwatch.rules` and calls SetAlarmState when the state changes,
with a StateReason worded as CloudWatch words it. Periods are aligned to multiples of Period since the
epoch, as CloudWatch aligns them; only periods that ended at least `settle_s` ago are evaluated, so a
datapoint still in the publisher's queue (or its delay) is not mistaken for a missing one.
High-resolution periods (10 s, 30 s) find data only in series published at high resolution (SageMaker's
enhanced metrics); on a one-minute series every such period is empty, so the alarm lapses into
INSUFFICIENT_DATA (or what its TreatMissingData makes of missing data), as on CloudWatch. At a time
scale (emulator/clock.py) a period of P seconds lasts P/scale real seconds, its bounds multiples of
P/scale since the epoch; alarms still say Period P.

Where datapoints come from:
* Series the emulator publishes (the `SampleWindow` knows them): every statistic, pNN included, from
  the window, with no request per period.
* Other series (a user's own PutMetricData): GetMetricStatistics, one call per period with
  StartTime/EndTime on the period's bounds, marked as the emulator's own
  (emulator/cloudwatch/internal_requests.py) so that the local moto takes a time-scaled period and a
  statistic with SampleCount in one call; pNN from its ExtendedStatistics, as CloudWatch answers them.

Several emulators may share one moto (a test's private emulator beside the stack's), each at its own time
scale; `judges` keeps each to its own alarms (server.py: those on its endpoints' metrics), so two clocks
never take turns setting one alarm. Alarm actions are not executed here: subscribers (`on_change`) hear
of every state change, and Application Auto Scaling (emulator/autoscaling/) acts on the alarms that name
its policies. moto creates alarms in state OK with the reason "Unchecked: Initial alarm creation";
CloudWatch creates them in INSUFFICIENT_DATA, so that is the state judged from.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulator.clock import Clock
from emulator.cloudwatch.internal_requests import mark_internal
from emulator.cloudwatch.metrics import (
    STANDARD_RESOLUTION,
    CloudWatchClientFactory,
    SampleWindow,
)
from emulator.cloudwatch.periodic import Periodic
from emulator.cloudwatch.rules import (
    INSUFFICIENT_DATA,
    AlarmRule,
    Datapoint,
    UnsupportedAlarm,
    Verdict,
    evaluate,
    parse_percentile,
)
from emulator.cloudwatch.statistics import percentile, statistic
from emulator.runtime.invocations import STANDARD_PERIOD_S

log = logging.getLogger("emulator.cloudwatch.alarms")

UNCHECKED_REASON = "Unchecked: Initial alarm creation"
STANDARD_STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")


def period_starts(rule: AlarmRule, now: float, settle_s: float, *, scale: float = 1.0) -> list[float]:
    """Start times of the evaluation range's periods, oldest first; the newest ended by now - settle_s.

    At a time scale each period lasts rule.period / scale real seconds.
    """
    current = int(((now - settle_s) * scale) // rule.period)  # the period still in progress
    count = rule.evaluation_range
    return [float((current - count + i) * rule.period / scale) for i in range(count)]


def low_sample_limit(p: float) -> float:
    """Fewer samples than this make a percentile statistically weak (CloudWatch's rule)."""
    share = p / 100.0
    if share >= 0.5:
        return 10.0 / (1.0 - share) if share < 1.0 else float("inf")
    return 10.0 / share


class DatapointReader:
    """Fetches one alarm's datapoints per period from CloudWatch, or from the sample window.

    Periods handed in have ended (and settled), so what CloudWatch answered for one is remembered:
    each evaluation round then asks only for the periods that ended since the last one. moto scans all
    its metric data on every GetMetricStatistics, so this is what keeps evaluation cheap. The memory
    is bounded (oldest entries go first).
    """

    def __init__(
        self,
        cloudwatch: CloudWatchClientFactory,
        samples: SampleWindow | None = None,
        *,
        cache_size: int = 20_000,
    ) -> None:
        self._cloudwatch = cloudwatch
        self.samples = samples
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[tuple[Any, ...], Datapoint] = collections.OrderedDict()
        # The evaluator's thread and Application Auto Scaling (reading a policy's metric) share it.
        self._lock = threading.Lock()
        self.requests = 0

    def read(self, rule: AlarmRule, starts: Sequence[float], *, scale: float = 1.0) -> list[Datapoint]:
        """The datapoint of each period starting at `starts` (real epoch s; each rule.period/scale long)."""
        length = rule.period / scale
        if self.samples is not None and self.samples.knows(rule.namespace, rule.metric_name, rule.dimensions):
            resolution = self.samples.resolution(rule.namespace, rule.metric_name, rule.dimensions)
            if rule.period < STANDARD_PERIOD_S and resolution == STANDARD_RESOLUTION:
                # A 10 or 30 s period on a one-minute metric finds no datapoint in any of its periods.
                return [Datapoint(start, None) for start in starts]
            return [self._from_samples(rule, start, length) for start in starts]
        with self._lock:
            return [self._cached(rule, start, length) for start in starts]

    def _cached(self, rule: AlarmRule, start: float, length: float) -> Datapoint:
        key = (
            rule.namespace,
            rule.metric_name,
            rule.dimensions,
            rule.statistic,
            rule.unit,
            length,
            start,
        )
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        point = self._from_cloudwatch(rule, start, length)
        self._cache[key] = point
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return point

    def _from_samples(self, rule: AlarmRule, start: float, length: float) -> Datapoint:
        assert self.samples is not None
        values = self.samples.values(rule.namespace, rule.metric_name, rule.dimensions, start, start + length)
        if not values:
            return Datapoint(start, None)
        p = parse_percentile(rule.statistic) if rule.extended else None
        if p is not None:
            return Datapoint(
                start,
                percentile(values, p),
                float(len(values)),
                low_sample=len(values) < low_sample_limit(p),
            )
        return Datapoint(start, statistic(values, rule.statistic), float(len(values)))

    def _from_cloudwatch(self, rule: AlarmRule, start: float, length: float) -> Datapoint:
        # moto reads StartTime and EndTime to the second: a scaled period shorter than one is read as
        # the whole second it starts in.
        first = math.floor(start)
        last = max(math.floor(start + length), first + 1)
        request: dict[str, Any] = {
            "Namespace": rule.namespace,
            "MetricName": rule.metric_name,
            "Dimensions": [{"Name": name, "Value": value} for name, value in rule.dimensions],
            "StartTime": datetime.fromtimestamp(start if length >= 1 else first, UTC),
            "EndTime": datetime.fromtimestamp(start + length if length >= 1 else last, UTC),
            "Period": max(1, round(length)),
        }
        if rule.extended:
            request["ExtendedStatistics"] = [rule.statistic]
            request["Statistics"] = ["SampleCount"]
        else:
            request["Statistics"] = sorted({rule.statistic, "SampleCount"})
        if rule.unit:
            request["Unit"] = rule.unit
        self.requests += 1
        points = mark_internal(self._cloudwatch()).get_metric_statistics(**request).get("Datapoints", [])
        if not points:
            return Datapoint(start, None)
        point = points[0]
        if rule.extended:
            value = (point.get("ExtendedStatistics") or {}).get(rule.statistic)
        else:
            value = point.get(rule.statistic)
        count = point.get("SampleCount")
        if value is None:
            return Datapoint(start, None)
        return Datapoint(start, float(value), float(count) if count is not None else None)


@dataclass(frozen=True)
class AlarmOutcome:
    """What one evaluation of one alarm concluded."""

    name: str
    previous: str
    state: str
    changed: bool
    reason: str


ChangeListener = Callable[[AlarmOutcome], None]


def effective_state(alarm: Mapping[str, Any]) -> str:
    """The alarm's state as CloudWatch would have it (moto's fresh alarms say OK, unchecked)."""
    if str(alarm.get("StateReason") or "").startswith(UNCHECKED_REASON):
        return INSUFFICIENT_DATA
    return str(alarm.get("StateValue") or INSUFFICIENT_DATA)


class AlarmEvaluator:
    """Evaluates every metric alarm periodically, as CloudWatch does, and sets their states."""

    def __init__(
        self,
        cloudwatch: CloudWatchClientFactory,
        *,
        samples: SampleWindow | None = None,
        interval_s: float = 10.0,
        settle_s: float = 2.0,
        clock: Clock | None = None,
        judges: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        """`judges(alarm)` says whether this evaluator sets the alarm's state (default: every alarm)."""
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.judges = judges
        self._cloudwatch = cloudwatch
        self.reader = DatapointReader(cloudwatch, samples)
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.clock = clock or Clock()
        self._loop = Periodic(
            self.evaluate_once, interval_s, name="alarm-evaluator", next_wait=self.until_next_verdict
        )
        self._periods: set[int] = set()  # the periods of the alarms last evaluated
        self._reported_unsupported: set[str] = set()
        self._reported_failures: set[str] = set()
        self._listeners: list[ChangeListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(outcome)` after each state this evaluator sets (from its thread: keep it cheap)."""
        self._listeners.append(listener)

    def evaluate_once(
        self, now: float | None = None, *, alarm_names: Sequence[str] | None = None
    ) -> list[AlarmOutcome]:
        """Evaluate every metric alarm (or those named) at `now` (epoch seconds; default: the clock's)."""
        moment = self.clock.time() if now is None else now
        outcomes = []
        for alarm in self._metric_alarms(alarm_names):
            if self.judges is not None and not self.judges(alarm):
                continue
            try:
                outcome = self.evaluate_alarm(alarm, moment)
            except Exception:
                # One alarm CloudWatch cannot answer for must not keep every other alarm from its verdict.
                name = str(alarm.get("AlarmName"))
                if name not in self._reported_failures:
                    self._reported_failures.add(name)
                    log.exception("evaluating alarm %s failed; it keeps its state", name)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        for outcome in outcomes:
            if outcome.changed:
                for listener in self._listeners:
                    try:
                        listener(outcome)
                    except Exception:
                        log.exception("alarm change listener failed on %s", outcome.name)
        return outcomes

    def until_next_verdict(self) -> float:
        """Seconds until the next moment a period of some alarm has ended and settled.

        Evaluating then, rather than on the fixed interval alone, gives a verdict `settle_s` after the
        period ends (at most `interval_s` later otherwise), which is what an alarm action waits for.
        """
        now = self.clock.time()
        moments = [
            self.clock.period_start(self.clock.period_index(now - self.settle_s, p) + 1, p) + self.settle_s
            for p in self._periods
        ]
        return min((m - now for m in moments), default=self.interval_s) + 0.01

    def latest_value(self, alarm: Mapping[str, Any], now: float | None = None) -> float | None:
        """The newest datapoint in the alarm's evaluation range (what a scaling policy acts on)."""
        try:
            rule = AlarmRule.from_description(alarm)
        except UnsupportedAlarm:
            return None
        moment = self.clock.time() if now is None else now
        starts = period_starts(rule, moment, self.settle_s, scale=self.clock.scale)
        points = self.reader.read(rule, starts, scale=self.clock.scale)
        real = [p.value for p in points if p.value is not None]
        return real[-1] if real else None

    def evaluate_alarm(self, alarm: Mapping[str, Any], now: float) -> AlarmOutcome | None:
        """Evaluate one DescribeAlarms entry; None when the alarm cannot be judged here."""
        name = str(alarm["AlarmName"])
        try:
            rule = AlarmRule.from_description(alarm)
        except UnsupportedAlarm as why:
            if name not in self._reported_unsupported:
                self._reported_unsupported.add(name)
                log.info("leaving alarm %s alone: %s", name, why)
            return None
        self._periods.add(rule.period)
        current = effective_state(alarm)
        scale = self.clock.scale
        datapoints = self.reader.read(rule, period_starts(rule, now, self.settle_s, scale=scale), scale=scale)
        verdict = evaluate(rule, datapoints, current, query_time=now)
        state = verdict.state or current
        changed = state != current or _is_unchecked(alarm)
        if changed:
            self._set_state(name, state, verdict)
            log.info("alarm %s: %s -> %s: %s", name, current, state, verdict.reason)
        return AlarmOutcome(name, current, state, changed, verdict.reason)

    def _set_state(self, name: str, state: str, verdict: Verdict) -> None:
        reason = verdict.reason if verdict.state is not None else f"{verdict.reason}."
        self._cloudwatch().set_alarm_state(
            AlarmName=name,
            StateValue=state,
            StateReason=reason[:1023],
            StateReasonData=verdict.reason_data_json(),
        )

    def _metric_alarms(self, names: Sequence[str] | None) -> list[dict[str, Any]]:
        paginator = self._cloudwatch().get_paginator("describe_alarms")
        request: dict[str, Any] = {"AlarmTypes": ["MetricAlarm"]}
        if names is not None:
            if not names:
                return []
            request["AlarmNames"] = list(names)
        alarms: list[dict[str, Any]] = []
        for page in paginator.paginate(**request):
            alarms.extend(page.get("MetricAlarms", []))
        return alarms

    # -- background loop --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._loop.stop(timeout_s)


def _is_unchecked(alarm: Mapping[str, Any]) -> bool:
    return str(alarm.get("StateReason") or "").startswith(UNCHECKED_REASON)
