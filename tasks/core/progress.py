"""Progress of long byte transfers (packaging, uploads): a Prefect progress artifact plus log lines.

Inside a Prefect run the UI shows a progress bar; outside (CLI tools, tests) the log lines alone carry
the percentages. Updates are throttled so a 100k-part transfer does not flood the API.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext

from tasks.core.logs import run_logger

ProgressCallback = Callable[[int], None]


class ByteProgress:
    """Accumulates transferred bytes from any thread; call it with each chunk's size."""

    def __init__(
        self,
        what: str,
        total_bytes: int,
        *,
        log_every_percent: float = 10.0,
        min_interval_s: float = 1.0,
        log_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = max(total_bytes, 0)
        self.done = 0
        self.log_every = log_every_percent
        self.min_interval_s = min_interval_s
        # A line per 10% of a transfer that takes two seconds is noise: lines are also at least
        # `log_interval_s` apart, except the last one.
        self.log_interval_s = log_interval_s
        self._last_log = float("-inf")
        self._clock = clock
        self._lock = threading.Lock()
        self._next_log = 0.0
        self._last_update = float("-inf")
        self._artifact: UUID | None = None
        self._started = clock()
        self.logged: list[float] = []
        # Chunks are reported from transfer worker threads, which have neither the run's logger nor its
        # Prefect context: keep both from the thread that made this object.
        self._logger = run_logger()
        self._context = contextvars.copy_context()
        if TaskRunContext.get() is not None:
            # Called from sync code, Prefect's sync_compatible helper returns the UUID itself.
            self._artifact = cast(UUID, create_progress_artifact(0.0, description=what))

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else min(100.0, 100.0 * self.done / self.total)

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            percent = self.percent
            now = self._clock()
            should_log = percent >= self._next_log and (
                percent >= 100.0 or now - self._last_log >= self.log_interval_s
            )
            if should_log:
                self._next_log = (percent // self.log_every + 1) * self.log_every
                self._last_log = now
            should_update = self._artifact is not None and (
                now - self._last_update >= self.min_interval_s or percent >= 100.0
            )
            if should_update:
                self._last_update = now
        if should_log:
            self._log(percent, now)
        if should_update:
            self._update(percent)

    def finish(self) -> None:
        """Report 100% (for transfers whose last chunk was skipped, e.g. already uploaded)."""
        remaining = self.total - self.done
        if remaining > 0:
            self(remaining)
        elif self.percent >= 100.0 and (not self.logged or self.logged[-1] < 100.0):
            self._log(100.0, self._clock())
            self._update(100.0)

    def _log(self, percent: float, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed / 2**20
        self.logged.append(percent)
        done, total = _size(self.done), _size(self.total)
        self._logger.info("%s: %5.1f%% (%s of %s, %.0f MiB/s)", self.what, percent, done, total, rate)

    def _update(self, percent: float) -> None:
        if self._artifact is not None:
            # A copy per call: one Context object cannot be entered by two threads at once.
            self._context.copy().run(update_progress_artifact, self._artifact, percent)


def _size(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{int(nbytes)} B"
    for unit in ("KiB", "MiB"):
        nbytes /= 1024
        if nbytes < 1024:
            return f"{nbytes:.1f} {unit}"
    return f"{nbytes / 1024:.2f} GiB"


def no_progress(_: int) -> None:
    """A callback that ignores progress."""
