"""Synthetic bake traffic: sample requests sent at a steady rate while a traffic step bakes.

Without production traffic the release's alarms would see no data and never judge the new model.
One background thread sends one request every 1/rate seconds (it never bursts to catch up when the
endpoint is slow) until stopped, for a given duration, or until `max_requests` were sent over the
whole rollout, and remembers which variant answered each request (SageMaker's
InvokedProductionVariant), its status and its latency.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tasks.core import aws
from tasks.core.logs import run_logger

DEFAULT_MAX_REQUESTS = 20_000

Invoker = Callable[[bytes], tuple[str | None, int]]


@dataclass(frozen=True)
class Sample:
    at: float  # wall-clock epoch seconds when the request was sent
    variant: str | None  # the variant that answered, when the answer says
    status: int  # the model's HTTP status; 0 when nothing answered
    latency_ms: float


@dataclass(frozen=True)
class TrafficSummary:
    requests: int
    errors: int  # 5xx or no answer
    p99_ms: float | None


def runtime_invoker(endpoint: str, *, content_type: str, accept: str) -> Invoker:
    """InvokeEndpoint through boto3; returns (answering variant, model status) and never raises for a
    model error or a throttled/failed call, which are outcomes of the bake, not bugs."""

    def invoke(body: bytes) -> tuple[str | None, int]:
        runtime = aws.client("sagemaker-runtime")
        try:
            answer = runtime.invoke_endpoint(
                EndpointName=endpoint, Body=body, ContentType=content_type, Accept=accept
            )
            answer["Body"].read()
            return answer.get("InvokedProductionVariant"), 200
        except Exception as exc:
            response: dict[str, Any] = getattr(exc, "response", None) or {}
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            variant = headers.get("x-amzn-invoked-production-variant")
            original = response.get("OriginalStatusCode")
            if original is not None:
                return variant, int(original)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return variant, int(status) if status else 0

    return invoke


class BakeTraffic:
    """Sends `payloads` round-robin at `rate_per_s` in the background; a context manager."""

    def __init__(
        self,
        payloads: Sequence[bytes],
        invoke: Invoker,
        *,
        rate_per_s: float,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if rate_per_s < 0:
            raise ValueError("rate_per_s must be >= 0")
        if rate_per_s > 0 and not payloads:
            raise ValueError("bake traffic needs at least one payload (rollout.bake_traffic.payloads)")
        self.payloads = list(payloads)
        self.invoke = invoke
        self.rate_per_s = rate_per_s
        self.max_requests = max_requests
        self.wall = wall
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def start(self, duration_s: float | None = None) -> None:
        """Send in the background until `stop`, or for `duration_s` seconds when given."""
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(duration_s,), name="bake-traffic", daemon=True
        )
        self._thread.start()
        run_logger().info(
            "bake traffic: %.1f requests/s from %d payload(s)%s",
            self.rate_per_s,
            len(self.payloads),
            f" for {duration_s:g} s" if duration_s is not None else "",
        )

    def stop(self, timeout_s: float = 90.0) -> None:
        """Stop sending; waits for the request in flight (bounded by the runtime's own timeout)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> BakeTraffic:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, duration_s: float | None) -> None:
        interval = 1.0 / self.rate_per_s
        started = next_at = time.monotonic()
        while not self._stop.is_set() and self.sent < self.max_requests:
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
            body = self.payloads[self.sent % len(self.payloads)]
            started_wall, began = self.wall(), time.perf_counter()
            variant, status = self.invoke(body)
            sample = Sample(started_wall, variant, status, (time.perf_counter() - began) * 1000)
            with self._lock:
                self._samples.append(sample)
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now  # behind schedule: carry on at the rate, never burst
            self._stop.wait(next_at - now)

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self._samples)

    def summary(self, start: float, end: float, variant: str | None = None) -> TrafficSummary:
        """Requests sent in [start, end) and answered by `variant` (any variant when None)."""
        chosen = [
            s for s in self.samples() if start <= s.at < end and (variant is None or s.variant == variant)
        ]
        errors = sum(1 for s in chosen if s.status == 0 or s.status >= 500)
        return TrafficSummary(len(chosen), errors, p99([s.latency_ms for s in chosen]))


def p99(values: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile, None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(1, math.ceil(0.99 * len(ordered))) - 1], 1)
