"""A background thread that runs one job every interval until stopped, and survives the job failing.

The emulator's CloudWatch side (metrics publisher, alarm evaluator) talks to moto over HTTP: a round
that fails (moto restarting, a describe it cannot answer) is logged and the next round tries again,
because a dead thread would silently stop every alarm in the stack.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        job: Callable[[], object],
        interval_s: float,
        *,
        name: str,
        next_wait: Callable[[], float] | None = None,
    ) -> None:
        """`next_wait`, when given, says how long to wait before the next round (at most `interval_s`)."""
        if interval_s <= 0:
            raise ValueError(f"{name}: interval must be > 0 s")
        self._job = job
        self._next_wait = next_wait
        self.interval_s = interval_s
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the round in progress, waiting at most `timeout_s`."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", self.name, timeout_s)

    def _wait(self) -> float:
        if self._next_wait is None:
            return self.interval_s
        try:
            return min(self.interval_s, max(0.0, self._next_wait()))
        except Exception:
            log.exception("%s: next_wait failed; waiting the full interval", self.name)
            return self.interval_s

    def _run(self) -> None:
        while not self._stop.wait(self._wait()):
            self._run_once()

    def _run_once(self) -> None:
        try:
            self._job()
        except Exception:
            log.exception("%s: round failed; trying again in %g s", self.name, self.interval_s)
