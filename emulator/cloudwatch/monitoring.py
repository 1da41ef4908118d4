"""CloudWatch for the emulator: endpoint metrics from real invocations, alarms evaluated on them.

The emulator process owns one `Monitoring`: its publisher listens to the runtime's InvocationLog and
sends AWS/SageMaker metrics to moto's CloudWatch ($AWS_ENDPOINT_URL); its evaluator judges every
metric alarm there on a short cycle, percentiles from the publisher's own samples. Both run in
background threads, so neither slows an invocation down.

Settings (environment): SAGEMAKER_EMULATOR_METRICS_FLUSH_S (default 1), SAGEMAKER_EMULATOR_ALARM_INTERVAL_S
(default 5; CloudWatch evaluates every minute, high-resolution alarms every period) and
SAGEMAKER_EMULATOR_ALARM_SETTLE_S (default 2: how long after a period ends its datapoints count).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from emulator import settings
from emulator.cloudwatch.alarms import AlarmEvaluator
from emulator.cloudwatch.metrics import MetricsPublisher, SampleWindow
from emulator.runtime.invocations import InvocationLog


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


@dataclass
class Monitoring:
    publisher: MetricsPublisher
    evaluator: AlarmEvaluator
    _unsubscribe: Callable[[], None] | None = None

    @classmethod
    def from_env(cls, client: Any | None = None) -> Monitoring:
        cloudwatch = client if client is not None else cloudwatch_client()
        samples = SampleWindow()
        publisher = MetricsPublisher(
            lambda: cloudwatch,
            flush_interval_s=_env_float("SAGEMAKER_EMULATOR_METRICS_FLUSH_S", 1.0),
            samples=samples,
        )
        evaluator = AlarmEvaluator(
            lambda: cloudwatch,
            samples=samples,
            interval_s=_env_float("SAGEMAKER_EMULATOR_ALARM_INTERVAL_S", 5.0),
            settle_s=_env_float("SAGEMAKER_EMULATOR_ALARM_SETTLE_S", 2.0),
        )
        return cls(publisher, evaluator)

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
