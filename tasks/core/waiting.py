"""Poll a resource until it is done, failed or out of time, on an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from tasks.core.errors import ResourceFailed, WaitTimeout

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    """A clock that only moves when slept on; tests use it to run long waits instantly."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def poll_until(
    describe: Callable[[], T],
    *,
    is_done: Callable[[T], bool],
    failure_reason: Callable[[T], str | None],
    status_of: Callable[[T], str],
    resource: str,
    timeout_s: float,
    interval_s: float,
    clock: Clock | None = None,
    on_progress: Callable[[T, float], None] | None = None,
) -> T:
    """Call `describe` every `interval_s` until `is_done` holds, and return that last description.

    `failure_reason` returns a reason when the description shows a terminal failure (ResourceFailed is
    raised with it), else None. `resource` names the thing in errors, e.g. "endpoint demo-embedder".
    `on_progress(description, elapsed_s)` is called after every describe, for logs and progress bars.
    The last sleep is shortened so the wait never overshoots `timeout_s` by more than one describe.
    """
    if timeout_s <= 0 or interval_s <= 0:
        raise ValueError(f"poll_until({resource}): timeout_s and interval_s must be > 0")
    clock = clock or SystemClock()
    start = clock.monotonic()
    while True:
        description = describe()
        elapsed = clock.monotonic() - start
        if on_progress is not None:
            on_progress(description, elapsed)
        reason = failure_reason(description)
        if reason is not None:
            raise ResourceFailed(resource, status_of(description), reason, waited_s=elapsed)
        if is_done(description):
            return description
        remaining = timeout_s - elapsed
        if remaining <= 0:
            raise WaitTimeout(resource, status_of(description), elapsed, timeout_s=timeout_s)
        clock.sleep(min(interval_s, remaining))
