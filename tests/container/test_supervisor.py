"""`python -m serving serve` as a process, no Docker: worker restarts, crash loops, bad settings, ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serving.settings import Settings
from serving.supervisor import CRASH_LIMIT, Supervisor, _Worker

from tests.container.serving_support import CONTAINER_DIR

CRASHING_HANDLER = """
import os

def model_fn(model_dir):
    return lambda data: {"pid": os.getpid()}

def input_fn(body, content_type):
    if body == b"crash":
        os._exit(17)
    return body
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.url("/ping"), timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise AssertionError(f"not ready within {timeout} s:\n{self.log.read_text()}")

    def invoke(self, body: bytes) -> bytes:
        request = urllib.request.Request(
            self.url("/invocations"), data=body, headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())


def _serve(tmp_path: Path, model_dir: Path, **env: str) -> Server:
    port = _free_port()
    log = tmp_path / "server.log"
    environment = {
        **os.environ,
        "PYTHONPATH": str(CONTAINER_DIR),
        "MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        **env,
    }
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve"],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Server(process, port, log)


@pytest.fixture
def crashing_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(CRASHING_HANDLER)
    return folder


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)


def test_a_worker_that_dies_while_serving_is_replaced(
    tmp_path: Path, crashing_model: Path, server_factory: list[Server]
) -> None:
    server = _serve(tmp_path, crashing_model, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    server_factory.append(server)
    server.wait_ready()
    first_pid = server.invoke(b"hello")

    with pytest.raises((urllib.error.URLError, ConnectionError)):
        server.invoke(b"crash")
    server.wait_ready()

    assert server.invoke(b"hello") != first_pid
    assert "worker 0 exited with code 17; starting a new one" in server.log.read_text()
    assert server.process.poll() is None


def test_invalid_settings_exit_1_naming_the_variable(tmp_path: Path, crashing_model: Path) -> None:
    server = _serve(tmp_path, crashing_model, SAGEMAKER_MODEL_SERVER_WORKERS="many")
    assert server.process.wait(timeout=60) == 1
    last = server.log.read_text().strip().splitlines()[-1]
    assert "invalid configuration: SAGEMAKER_MODEL_SERVER_WORKERS='many' is not an integer" in last


def test_a_busy_port_exits_1_with_the_fix(tmp_path: Path, crashing_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _serve(tmp_path, crashing_model, SAGEMAKER_BIND_TO_PORT=str(port))
        assert server.process.wait(timeout=60) == 1
    assert f"cannot listen on port {port}" in server.log.read_text()
    assert "SAGEMAKER_BIND_TO_PORT" in server.log.read_text()


# ---------------------------------------------------------------- crash accounting, with stand-in processes
@dataclass
class _DeadProcess:
    exitcode: int

    def join(self, timeout: float | None = None) -> None:
        pass


class _Pipe:
    def poll(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _supervisor(tmp_path: Path) -> tuple[Supervisor, list[int]]:
    supervisor = Supervisor(
        Settings.from_env({"MODEL_DIR": str(tmp_path), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    )
    spawned: list[int] = []
    supervisor._spawn = spawned.append
    return supervisor, spawned


def _reap_crash(supervisor: Supervisor, code: int, ready: bool = True) -> None:
    worker = _Worker(0, _DeadProcess(code), _Pipe(), ready=ready)
    supervisor.workers[0] = worker
    supervisor._reap(worker)


def test_workers_crashing_in_a_loop_end_the_server(tmp_path: Path) -> None:
    supervisor, spawned = _supervisor(tmp_path)
    for _ in range(CRASH_LIMIT):
        _reap_crash(supervisor, -signal.SIGSEGV)
    assert spawned == [0] * CRASH_LIMIT and supervisor.state.failure is None

    _reap_crash(supervisor, -signal.SIGSEGV)

    assert supervisor.state.failure is not None
    assert f"workers died {CRASH_LIMIT + 1} times" in supervisor.state.failure
    assert "killed by signal 11" in supervisor.state.failure


def test_a_worker_killed_while_loading_ends_the_server_with_an_oom_hint(tmp_path: Path) -> None:
    supervisor, spawned = _supervisor(tmp_path)
    _reap_crash(supervisor, -signal.SIGKILL, ready=False)

    assert spawned == []
    assert supervisor.state.failure == (
        "worker 0 was killed by signal 9 while loading the model "
        "(signal 9 while loading usually means out of memory)"
    )
