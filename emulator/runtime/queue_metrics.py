"""Asynchronous endpoints' backlog metrics, read once per metric period as SageMaker publishes them.

SageMaker reports ApproximateBacklogSize, ApproximateBacklogSizePerInstance, HasBacklogWithoutCapacity
and ApproximateAgeOfOldestRequest for an async endpoint once a minute, whether or not requests come.
This loop reads every async queue (AsyncInference.gauges) shortly before each period ends, so the
reading describes that period and reaches CloudWatch before the alarm evaluator judges it, and hands
the readings to `publish` (blocking; run in a thread). The period is `Limits.queue_metrics_period_s`
AWS seconds: 60 s, 2 s of real time at time scale 30.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from emulator.clock import Clock
from emulator.runtime.async_inference import AsyncInference
from emulator.runtime.invocations import QueueGauge

log = logging.getLogger("emulator.runtime.queue_metrics")

Publish = Callable[[Sequence[QueueGauge]], object]
# How long before a period's end the queue is read: a tenth of the period, at most 1 s of real time.
LEAD_SHARE = 0.1
MAX_LEAD_S = 1.0


class QueueMetrics:
    def __init__(self, jobs: AsyncInference, clock: Clock, publish: Publish, period_s: float = 60.0) -> None:
        if period_s <= 0:
            raise ValueError("the queue metrics period must be > 0 s")
        self.jobs = jobs
        self.clock = clock
        self.publish = publish
        self.period_s = period_s
        self._task: asyncio.Task[None] | None = None

    def next_reading_at(self, now: float) -> float:
        """Real time of the next reading: just before the end of the period holding `now` (or the next)."""
        lead = min(MAX_LEAD_S, LEAD_SHARE * self.clock.real(self.period_s))
        index = self.clock.period_index(now, self.period_s)
        moment = self.clock.period_start(index + 1, self.period_s) - lead
        if moment <= now:
            moment = self.clock.period_start(index + 2, self.period_s) - lead
        return moment

    async def read_and_publish(self) -> list[QueueGauge]:
        readings = self.jobs.gauges(self.clock)
        if readings:
            await asyncio.to_thread(self.publish, readings)
        return readings

    async def run(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.next_reading_at(self.clock.time()) - self.clock.time()))
            try:
                await self.read_and_publish()
            except Exception:
                # CloudWatch (moto) away for a moment: the next period's reading tries again.
                log.exception("publishing async queue metrics failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
