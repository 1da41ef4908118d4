"""CloudWatch for the emulator: endpoint metrics from real invocations, alarms evaluated on them.

The emulator process owns one `Monitoring`: its publisher listens to the runtime's InvocationLog and
sends AWS/SageMaker metrics to moto's CloudWatch ($AWS_ENDPOINT_URL); its evaluator judges every
metric alarm there on a short cycle, statistics of the emulator's own series from the publisher's
window. Both run in background threads, so neither slows an invocation down.

Settings (environment), in real seconds at time scale 1: SAGEMAKER_EMULATOR_METRICS_FLUSH_S (default
1), SAGEMAKER_EMULATOR_METRICS_DELAY_S (default 15: how long after its period ends SageMaker's datapoint
reaches CloudWatch), SAGEMAKER_EMULATOR_ALARM_INTERVAL_S (default 5; CloudWatch evaluates every minute,
high-resolution alarms every period) and SAGEMAKER_EMULATOR_ALARM_SETTLE_S (default 2: how long after a
period ends its datapoints count; a datapoint that arrives later, as a delayed one does, is judged in the
next round, as CloudWatch judges late data). At a time scale (emulator/clock.py) each is divided by the scale,
down to a floor (`FLOORS`, not for the delay): the publisher and moto still take real time to deliver a
datapoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from emulator import settings
from emulator.clock import Clock
from emulator.cloudwatch.alarms import AlarmEvaluator
from emulator.cloudwatch.metrics import MetricsPublisher, SampleWindow
from emulator.runtime.invocations import InvocationLog

# Shortest real intervals at a high time scale: flush, evaluation round, settle after a period's end.
FLOORS = {"flush": 0.2, "interval": 0.25, "settle": 0.5}
DELAY_ENV = "SAGEMAKER_EMULATOR_METRICS_DELAY_S"
DEFAULT_DELAY_S = 15.0


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def cloudwatch_client() -> Any:
    """CloudWatch as the environment points at it (moto locally), with bounded retries."""
    session = boto3.session.Session(region_name=settings.region())
    return session.client(
        "cloudwatch",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


def scaled(seconds: float, clock: Clock, floor: float) -> float:
    """A real interval configured for scale 1, shortened by the clock's scale but not below `floor`."""
    if clock.scale == 1.0:
        return seconds
    return max(floor, clock.real(seconds))


@dataclass
class Monitoring:
    publisher: MetricsPublisher
    evaluator: AlarmEvaluator
    clock: Clock
    _unsubscribe: Callable[[], None] | None = None

    @classmethod
    def from_env(
        cls,
        client: Any | None = None,
        clock: Clock | None = None,
        judges: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> Monitoring:
        cloudwatch = client if client is not None else cloudwatch_client()
        clock = clock or Clock.from_env()
        samples = SampleWindow(clock=clock.time)
        flush = scaled(_env_float("SAGEMAKER_EMULATOR_METRICS_FLUSH_S", 1.0), clock, FLOORS["flush"])
        delay = _env_float(DELAY_ENV, DEFAULT_DELAY_S)
        if delay < 0:
            raise ValueError(f"{DELAY_ENV}={delay:g} is below 0; set it to a number of seconds >= 0")
        publisher = MetricsPublisher(
            lambda: cloudwatch,
            flush_interval_s=flush,
            samples=samples,
            scale=clock.scale,
            delay_s=delay,
            clock=clock.time,
        )
        evaluator = AlarmEvaluator(
            lambda: cloudwatch,
            samples=samples,
            interval_s=scaled(
                _env_float("SAGEMAKER_EMULATOR_ALARM_INTERVAL_S", 5.0), clock, FLOORS["interval"]
            ),
            settle_s=scaled(
                _env_float("SAGEMAKER_EMULATOR_ALARM_SETTLE_S", 2.0), clock, flush + FLOORS["settle"]
            ),
            clock=clock,
            judges=judges,
        )
        return cls(publisher, evaluator, clock)

    def start(self, invocations: InvocationLog) -> None:
        self._unsubscribe = invocations.subscribe(self.publisher.record)
        self.publisher.start()
        self.evaluator.start()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.evaluator.stop()
        self.publisher.stop()
