"""What the e2e tests and their fixtures share: the repository's paths, release configs, running a release
in this process, and polling. Imported by its package path (`from tests.e2e.release_support import ...`);
the fixtures are in conftest.py.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prefect.context
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.release import release
from tasks.config import ReleaseConfig, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
SHARED_REPOSITORY = "sagemaker-release/serving"  # the name scripts/build-image.sh tags its builds with


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class E2E:
    """What every e2e test needs: the session token, the bucket, and how to make release configs."""

    token: str
    bucket: str
    prefix: str
    env: dict[str, str]
    context: Path  # the serving image's build context, as it was when the session started

    def endpoint(self, what: str) -> str:
        return f"e2e-{self.token}-{what}"

    def config_data(self, endpoint: str, /, **changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "role_arn": ROLE,
            "tags": {"suite": "e2e"},
            "model": {
                "repo_id": "sentence-transformers/all-MiniLM-L6-v2",
                "revision": "main",
                "task": "feature-extraction",
                # Weights once, as safetensors (as releases/demo.yaml does).
                "ignore_patterns": [
                    "*.onnx",
                    "onnx/*",
                    "openvino/*",
                    "*.h5",
                    "*.msgpack",
                    "*.ot",
                    "pytorch_model.bin",
                ],
            },
            "packaging": {"format": "tar.gz"},
            "storage": {"bucket": self.bucket, "prefix": self.prefix, "create_bucket": True},
            "image": {
                "source": "build",
                "context": str(self.context),
                "repository": SHARED_REPOSITORY,
            },
            "endpoint": {
                "name": endpoint,
                "type": "realtime",
                "instance_type": "ml.m5.large",
                "instance_count": 1,
            },
            "scaling": {"enabled": True, "min_capacity": 1, "max_capacity": 2},
            "smoke": {
                "payloads": [{"inputs": "SageMaker releases should be boring."}, {"inputs": ["a", "b c"]}],
                "repeat": 2,
                "expect_dim": 384,
                "max_latency_ms": 10000,
            },
            "timeouts": {"endpoint_s": 300, "poll_interval_s": 1},
            # No bakes unless a test asks: the release's mechanics, not its alarms, are tested here.
            "rollout": {"bake_s": 0, "final_bake_s": 0},
        }
        return deep_merge(base, changes)

    def config(self, endpoint: str, /, **changes: Any) -> ReleaseConfig:
        return parse_config(self.config_data(endpoint, **changes))


def run_release(config: ReleaseConfig) -> tuple[bool, dict[str, Any]]:
    """Run the release flow in this process; (succeeded, summary)."""
    state = release(config, wait_for_lock_s=120, return_state=True)
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, dict), f"the flow returned {summary!r}, not a summary"
    return state.is_completed(), summary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Any, *, timeout_s: float, interval_s: float = 0.5) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(interval_s)


def flush_to_prefect(timeout_s: float = 60) -> None:
    """Send the events and logs still queued for the Prefect server, before a fixture stops it.

    Queued for a server that is gone, each item is retried in turn when the interpreter exits, and the
    test process takes many minutes to end after its last test. A drained service is made again on the
    next use (with the next server's address)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker):
        service.drain_all(timeout=timeout_s, at_exit=False)


@contextmanager
def prefect_server(home: Path, *, ui: bool = False) -> Iterator[str]:
    """A `prefect server start` of its own (home and database under `home`), this process pointed at it.

    Yields the API URL. The scheduler is off: runs are started by the tests, and the nightly cron must
    not start one in the middle of them. With `ui`, the server serves the UI and writes its bundle (with
    the API address in it) under `home`, not into the venv."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    if ui:
        # The page calls the API at this address; the UI's own default guesses from the server's host.
        env |= {"PREFECT_UI_API_URL": url, "PREFECT_UI_STATIC_DIRECTORY": str(home / "ui")}
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        # Threads that did not inherit this context (s3transfer's upload workers report progress) read
        # the process-global settings: point those at the server too, as prefect_test_harness does.
        with (
            temporary_settings(updates={PREFECT_API_URL: url}),
            prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()),
        ):
            yield url
    finally:
        flush_to_prefect()
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
