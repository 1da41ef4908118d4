"""Per-invocation measurements and queue readings, the raw material of SageMaker's CloudWatch metrics.

The runtime records one `Invocation` per request it routed to a variant. Consumers either subscribe
(called synchronously on the event loop, right after the request finished: keep it cheap, hand the
record to your own queue) or read a window with `since()`. Publishing Invocations,
Invocation4XXErrors, Invocation5XXErrors, ModelLatency and OverheadLatency per EndpointName and
VariantName (and per EndpointConfigName, the fleet) to CloudWatch, and evaluating alarms, builds on this
interface. Each record carries how often SageMaker publishes its fleet's invocation metrics
(emulator/sagemaker/metrics_config.py).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.sagemaker.metrics_config import STANDARD_PERIOD_S


@dataclass(frozen=True)
class Invocation:
    endpoint_name: str
    variant_name: str
    kind: str  # "sync" (InvokeEndpoint) or "async" (InvokeEndpointAsync)
    timestamp: float  # epoch seconds when the request arrived
    model_status: int | None  # HTTP status the container answered; None when it never answered
    model_latency_us: int  # time spent in the container(s), as SageMaker's ModelLatency
    overhead_latency_us: int  # the rest of the request inside the emulator, as OverheadLatency
    instances: int | None = None  # the variant's instances when it was routed (InvocationsPerInstance)
    config_name: str | None = None  # the endpoint config of the fleet that served it (EndpointConfigName)
    metrics_period_s: int = STANDARD_PERIOD_S  # how often its fleet's invocation metrics are published

    @property
    def is_4xx(self) -> bool:
        return self.model_status is not None and 400 <= self.model_status < 500

    @property
    def is_5xx(self) -> bool:
        # No answer at all (timeout, container gone) counts as a server error, as on SageMaker.
        return self.model_status is None or self.model_status >= 500

    def as_dict(self) -> dict[str, object]:
        return {
            "EndpointName": self.endpoint_name,
            "VariantName": self.variant_name,
            "Kind": self.kind,
            "Timestamp": self.timestamp,
            "ModelStatus": self.model_status,
            "ModelLatency": self.model_latency_us,
            "OverheadLatency": self.overhead_latency_us,
            "EndpointConfigName": self.config_name,
        }


@dataclass(frozen=True)
class QueueGauge:
    """One asynchronous endpoint's queue at one moment, as SageMaker reports it each period."""

    endpoint_name: str
    timestamp: float  # real epoch seconds of the reading
    backlog: int  # requests queued or in progress (ApproximateBacklogSize)
    instances: int  # instances serving the endpoint's variants
    oldest_age_s: float  # age of the oldest queued request, in AWS seconds (scaled: emulator/clock.py)


Listener = Callable[[Invocation], None]


@dataclass
class InvocationLog:
    """A bounded in-memory window of recent invocations plus listeners for every new one."""

    capacity: int = 100_000
    _records: collections.deque[Invocation] = field(init=False)
    _listeners: list[Listener] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._records = collections.deque(maxlen=self.capacity)

    def record(self, invocation: Invocation) -> None:
        self._records.append(invocation)
        for listener in self._listeners:
            listener(invocation)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for each new invocation; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def since(
        self, start: float, endpoint_name: str | None = None, variant_name: str | None = None
    ) -> list[Invocation]:
        return [
            r
            for r in self._records
            if r.timestamp >= start
            and (endpoint_name is None or r.endpoint_name == endpoint_name)
            and (variant_name is None or r.variant_name == variant_name)
        ]


class Stopwatch:
    """Splits a request's wall time into time inside containers and time of our own."""

    def __init__(self) -> None:
        self.started = time.time()
        self._start = time.perf_counter()
        self._model = 0.0
        self.reached = False  # whether the request got as far as a container

    def add_model_time(self, seconds: float) -> None:
        self._model += seconds

    @property
    def model_us(self) -> int:
        return int(self._model * 1_000_000)

    @property
    def overhead_us(self) -> int:
        return max(0, int((time.perf_counter() - self._start - self._model) * 1_000_000))
