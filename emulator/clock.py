"""The emulator's one clock: real time, with AWS's durations run `scale` times faster.

AWS waits minutes where a test or a demo cannot: a target-tracking policy scales in after 15 one-minute
datapoints, cooldowns last 300 s. With EMULATOR_TIME_SCALE=30 (`python -m emulator up` passes it to the
server) every such duration is divided by 30 (a metric "minute" lasts 2 s, a 300 s cooldown 10 s), while
timestamps stay real epoch seconds, so CloudWatch data, alarm reasons and activities read as wall-clock
times. What the clock shortens: metric periods and the alarm evaluation's intervals (cloudwatch/), the
queue metrics' publishing period and the ages they report (runtime/), cooldowns and re-invocations of
scaling policies (autoscaling/), and how long an idle serverless container is kept (sagemaker/). What it
does not: anything a container does (a model that takes 2 s still takes 2 s), HTTP timeouts, and the
SageMaker control plane's own timeouts.

Components take a `Clock`; tests hand them a `ManualClock` and move it by hand.
"""

from __future__ import annotations

import time

from emulator import settings


class Clock:
    """Real time (`time()`, `monotonic()`) and the conversion of AWS durations to real ones."""

    def __init__(self, scale: float = 1.0) -> None:
        if not scale >= 1.0:
            raise ValueError(
                f"time scale {scale!r} is below 1; set {settings.TIME_SCALE_ENV} to a number >= 1 "
                "(1 is AWS's own pace)"
            )
        self.scale = float(scale)

    @classmethod
    def from_env(cls) -> Clock:
        return cls(settings.time_scale())

    def time(self) -> float:
        """Now, in real epoch seconds (what timestamps carry, at any scale)."""
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def real(self, aws_seconds: float) -> float:
        """How long `aws_seconds` of AWS time last here."""
        return aws_seconds / self.scale

    def aws(self, real_seconds: float) -> float:
        """How much AWS time `real_seconds` stand for (e.g. the age of a queued request)."""
        return real_seconds * self.scale

    def period_index(self, moment: float, period_s: float) -> int:
        """Which scaled period (AWS length `period_s`, aligned on the epoch) holds real time `moment`.

        Computed as floor(moment * scale / period) so boundaries are exact multiples of period/scale.
        """
        return int((moment * self.scale) // period_s)

    def period_start(self, index: int, period_s: float) -> float:
        """Real epoch time at which scaled period `index` (of AWS length `period_s`) starts."""
        return index * period_s / self.scale

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale:g})"


class ManualClock(Clock):
    """A clock that moves only when told: `advance(seconds)` of real time."""

    def __init__(self, start: float = 1_700_000_000.0, scale: float = 1.0) -> None:
        super().__init__(scale)
        self._now = float(start)
        self._mono = 0.0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, real_seconds: float) -> None:
        self._now += real_seconds
        self._mono += real_seconds
