"""A release killed mid-flight is unwound by flows/cleanup.py (once its lease ran out, or with --force);
releases of one endpoint never overlap; a release that loses its lock stops and unwinds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.lifecycle.lock import RENEW_ENV, active_slots, endpoint_lock, release_lease
from tests.e2e.inspect_stack import (
    ledger,
    resources_of_release,
    scaling_of,
    serving_config,
    unresolved_entries,
)
from tests.e2e.release_support import E2E, REPO_ROOT, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def _cli(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def test_a_killed_release_is_unwound_by_the_cleanup_flow(
    e2e: E2E, serving: dict[str, Any], tmp_path: Path
) -> None:
    endpoint = e2e.endpoint("killed")
    release_id = f"e2e-{e2e.token}-killed"
    config_file = tmp_path / "release.yaml"
    config_file.write_text(yaml.safe_dump(e2e.config_data(endpoint)))
    log = (tmp_path / "release.log").open("w")
    # Its own process group: the kill takes the whole release down at once, as a lost worker would.
    running = subprocess.Popen(
        _cli("flows.release", "--config", str(config_file), "--release-id", release_id),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            "the release creating its endpoint",
            lambda: (serving_config(endpoint) or "").startswith("Creating") or running.poll() is not None,
            timeout_s=300,
        )
        assert running.poll() is None, (tmp_path / "release.log").read_text()[-3000:]
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait(timeout=30)
        log.close()
    assert ledger(e2e.bucket, release_id)["state"] == "running"
    assert active_slots(endpoint) == 1  # the dead release still holds the endpoint's lock

    cleanup = _cli("flows.cleanup", release_id, "--bucket", e2e.bucket, "--prefix", e2e.prefix)
    # Its lease has not run out: from here, a dead worker and a live one look alike.
    refused = subprocess.run(cleanup, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1, refused.stderr[-3000:]
    error = json.loads(refused.stdout.strip().splitlines()[-1])["error"]
    assert error.startswith(
        f"ReleaseRunning: release {release_id} still holds the lock of endpoint {endpoint}"
    )
    assert "--force" in error
    assert ledger(e2e.bucket, release_id)["state"] == "running"

    done = subprocess.run([*cleanup, "--force"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["state_before"], result["state"]) == ("running", "unwound")
    assert {e["kind"] for e in result["entries"]} >= {
        "sagemaker:model",
        "sagemaker:endpoint-config",
        "sagemaker:endpoint",
    }
    assert unresolved_entries(e2e.bucket, release_id) == []
    assert resources_of_release(release_id, e2e.bucket) == []
    assert serving_config(endpoint) is None
    assert scaling_of(endpoint) == {"targets": [], "policies": []}
    assert active_slots(endpoint) == 0


def test_a_second_release_of_the_same_endpoint_waits_then_is_refused(
    e2e: E2E, serving: dict[str, Any], tmp_path: Path
) -> None:
    endpoint = e2e.endpoint("serving")
    config_file = tmp_path / "release.yaml"
    config_file.write_text(yaml.safe_dump(e2e.config_data(endpoint)))
    with endpoint_lock(endpoint, timeout_s=10):  # as a first release in progress holds it
        done = subprocess.run(
            _cli("flows.release", "--config", str(config_file), "--wait-for-lock", "3"),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed"
    assert summary["error"].startswith(
        f"ReleaseBusy: endpoint {endpoint} is being released by another release"
    )
    assert "stayed full for 3 s" in summary["error"]
    assert ledger_absent(e2e, summary["release_id"])  # refused before it touched anything
    assert serving_config(endpoint) == f"InService {serving['endpoint_config_name']}"
    assert active_slots(endpoint) == 0


def ledger_absent(e2e: E2E, release_id: str) -> bool:
    import boto3

    listed = boto3.client("s3").list_objects_v2(
        Bucket=e2e.bucket, Prefix=f"{e2e.prefix}/releases/{release_id}/"
    )
    return listed.get("KeyCount", 0) == 0


def test_a_release_that_loses_its_lock_stops_and_unwinds(
    e2e: E2E, serving: dict[str, Any], tmp_path: Path
) -> None:
    endpoint = e2e.endpoint("lost-lock")
    release_id = f"e2e-{e2e.token}-lost-lock"
    config_file = tmp_path / "release.yaml"
    config_file.write_text(yaml.safe_dump(e2e.config_data(endpoint)))
    log = (tmp_path / "release.log").open("w")
    running = subprocess.Popen(
        _cli("flows.release", "--config", str(config_file), "--release-id", release_id),
        cwd=REPO_ROOT,
        env={**os.environ, RENEW_ENV: "1"},  # notice a lost lease within about a second
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        lease = wait_for(
            "the release holding its lock",
            lambda: _lease_of(e2e, release_id) or running.poll() is not None,
            timeout_s=300,
        )
        assert running.poll() is None, (tmp_path / "release.log").read_text()[-3000:]
        # The lease goes away under the release, as when the Prefect server reclaimed it.
        release_lease(str(lease))
        out, _ = running.communicate(timeout=600)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait(timeout=30)
        log.close()
    assert running.returncode == 1, (tmp_path / "release.log").read_text()[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["error"].startswith(f"LeaseLost: the release of endpoint {endpoint} lost its lock")
    assert ledger(e2e.bucket, release_id)["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, release_id) == []
    assert resources_of_release(release_id, e2e.bucket) == []
    assert serving_config(endpoint) is None
    assert active_slots(endpoint) == 0


def _lease_of(e2e: E2E, release_id: str) -> str | None:
    """The lease id in the release's ledger, once the ledger exists."""
    import botocore.exceptions

    try:
        return ledger(e2e.bucket, release_id)["meta"].get("lock_lease")
    except botocore.exceptions.ClientError:
        return None
