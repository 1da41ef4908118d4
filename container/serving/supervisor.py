"""PID 1 of the container: binds the port, runs the workers, drains them on SIGTERM.

- Workers are spawned (not forked) and share one listening socket.
- A worker that cannot load the model ends the container: the others are stopped and the reason is
  logged as the very last line, exit code 1 (SageMaker shows the last log lines of a failed endpoint).
- SIGTERM/SIGINT: workers stop accepting, finish their in-flight requests, exit; then exit 0.
- A worker that dies after it was serving is restarted, unless workers keep dying (crash loop).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from serving.settings import Settings
from serving.worker import LOAD_FAILED, run_worker

log = logging.getLogger("serving.supervisor")
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
POLL_S = 0.2


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    events: Connection
    ready: bool = False


@dataclass
class _State:
    stopping: bool = False
    failure: str | None = None
    crashes: list[float] = field(default_factory=list)


def bind_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.state = _State()
        self.workers: dict[int, _Worker] = {}
        self.sock: socket.socket | None = None
        # Set once every worker has loaded: until then /ping answers 503 in all of them.
        self.all_ready = self.context.Event()

    def run(self) -> int:
        settings = self.settings
        try:
            self.sock = bind_socket(settings.port)
        except OSError as exc:
            log.error(
                "cannot listen on port %d: %s; free the port or set SAGEMAKER_BIND_TO_PORT",
                settings.port,
                exc,
            )
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info(
            "serving %s on port %d: %d worker(s) x %d torch thread(s), batches of up to %d within %g ms",
            settings.model_dir,
            settings.port,
            settings.workers,
            settings.torch_threads,
            settings.max_batch_size,
            settings.max_batch_delay_s * 1000,
        )
        for index in range(settings.workers):
            self._spawn(index)
        while not self.state.stopping and self.state.failure is None:
            self._tick()
        self._stop_workers()
        self.sock.close()
        if self.state.failure is not None:
            # Last line on purpose: it is what an operator sees first in `docker logs --tail` or CloudWatch.
            log.error("model server stopped: %s", self.state.failure)
            return 1
        log.info("drained and stopped")
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.state.stopping:
            log.info("%s received: draining in-flight requests", signal.Signals(signum).name)
        self.state.stopping = True

    def _spawn(self, index: int) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=run_worker,
            args=(self.settings, self.sock, writer, index, self.all_ready),
            name=f"worker-{index}",
            daemon=False,
        )
        process.start()
        writer.close()
        self.workers[index] = _Worker(index, process, reader)

    def _tick(self) -> None:
        handles: list[object] = []
        for worker in self.workers.values():
            handles.extend([worker.events, worker.process.sentinel])
        ready = wait(handles, timeout=POLL_S)  # type: ignore[arg-type]
        for worker in list(self.workers.values()):
            if worker.events in ready:
                self._read_events(worker)
            if worker.process.sentinel in ready:
                self._reap(worker)

    def _read_events(self, worker: _Worker) -> None:
        try:
            while worker.events.poll():
                kind, value = worker.events.recv()
                if kind == "ready":
                    worker.ready = True
                    if all(w.ready for w in self.workers.values()) and not self.all_ready.is_set():
                        self.all_ready.set()
                        log.info("all %d worker(s) are serving", len(self.workers))
                elif kind == "failed" and self.state.failure is None:
                    self.state.failure = f"the model failed to load: {value}"
        except (EOFError, OSError):
            pass

    def _reap(self, worker: _Worker) -> None:
        worker.process.join(timeout=1)
        self._read_events(worker)
        code = worker.process.exitcode
        del self.workers[worker.index]
        worker.events.close()
        if self.state.failure is not None or self.state.stopping:
            return
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        if code == LOAD_FAILED or not worker.ready:
            hint = " (signal 9 while loading usually means out of memory)" if code == -signal.SIGKILL else ""
            self.state.failure = f"worker {worker.index} {how} while loading the model{hint}"
            return
        now = time.monotonic()
        self.state.crashes = [t for t in self.state.crashes if now - t < CRASH_WINDOW_S] + [now]
        if len(self.state.crashes) > CRASH_LIMIT:
            self.state.failure = (
                f"workers died {len(self.state.crashes)} times within {CRASH_WINDOW_S:.0f} s (last: worker "
                f"{worker.index} {how}); see the log lines above for the cause"
            )
            return
        log.error("worker %d %s; starting a new one", worker.index, how)
        self._spawn(worker.index)

    def _stop_workers(self) -> None:
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn stops accepting and drains
        deadline = time.monotonic() + self.settings.graceful_timeout_s + 3
        for worker in self.workers.values():
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker %d did not stop within the grace period; killing it", worker.index)
                worker.process.kill()
                worker.process.join(timeout=5)
