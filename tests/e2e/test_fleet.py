"""The nightly-fleet deployment on a local `prefect server start` with two process workers: four endpoints,
one failing its smoke test, released as their own runs of nightly-redeploy; and a Prefect automation that
notifies a webhook on the failed release's event."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from tests.e2e.inspect_stack import serving_config
from tests.e2e.release_support import E2E, REPO_ROOT, wait_for
from tests.e2e.test_deployments import POOL, _prefect, _run_deployment

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def _worker(name: str, log: IO[str], roots: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "process",
            "--name",
            name,
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "SAGEMAKER_RELEASE_ALLOWED_ROOTS": roots,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
def two_workers(e2e: E2E, tmp_path: Path) -> Iterator[list[Path]]:
    """The pool, the deployments of deployments.yaml, and two process workers polling the pool; their logs."""
    _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
    _prefect("--no-prompt", "deploy", "--prefect-file", "deployments.yaml", "--all")
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    files = [path.open("w") for path in logs]
    processes = [
        _worker(f"fleet-{n}", file, f"{e2e.context}:{tmp_path}") for n, file in enumerate(files, start=1)
    ]
    try:
        yield logs
    finally:
        for process in processes:
            _stop(process)
        for file in files:
            file.close()


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook receiver (Slack's or a pager's stand-in): its URL and what it received."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Webhook,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _notify_on_failure(e2e: E2E, url: str) -> Automation:
    """README's automation, with a webhook block instead of Slack's: failed or rolled back -> a message."""
    block = CustomWebhookNotificationBlock(
        name="release-alerts",
        url=url,
        json_data={"text": "{{subject}}: {{body}}"},
        allow_private_urls=True,  # the receiver is this test, on 127.0.0.1
    )
    block_id = block.save(f"e2e-{e2e.token}-release-alerts", overwrite=True)
    automation = Automation(
        name=f"e2e-{e2e.token}-release-alerts",
        trigger=EventTrigger(
            expect={"sagemaker-release.release.failed", "sagemaker-release.release.rolled-back"},
            match={"prefect.resource.id": f"sagemaker-release.endpoint.e2e-{e2e.token}-*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="Release of {{ event.resource.name }}: {{ event.event }}",
                body="{{ event.payload.error }}",
            )
        ],
    ).create()
    assert isinstance(automation, Automation)  # create() is sync outside an event loop
    return automation


def _most_at_once(runs: list[FlowRun]) -> int:
    moments = []
    for run in runs:
        assert run.start_time is not None and run.end_time is not None, run
        moments += [(run.start_time, 1), (run.end_time, -1)]
    current = most = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):
        current += change
        most = max(most, current)
    return most


def test_a_fleet_of_four_through_two_workers_reports_the_one_that_failed(
    e2e: E2E, two_workers: list[Path], webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = webhook
    automation = _notify_on_failure(e2e, url)
    folder = tmp_path / "fleet"
    folder.mkdir()
    endpoints = [e2e.endpoint(f"fleet{n}") for n in range(1, 5)]
    for n, endpoint in enumerate(endpoints, start=1):
        # No autoscaling: the fleet's mechanics are under test, not the release's.
        changes: dict[str, Any] = {"scaling": {"enabled": False}}
        if n == 3:
            changes["smoke"] = {"expect_dim": 385}  # MiniLM answers 384: the smoke test fails
        (folder / f"{n}-{endpoint}.yaml").write_text(yaml.safe_dump(e2e.config_data(endpoint, **changes)))
    failing = endpoints[2]

    run = _run_deployment(
        "release-fleet/nightly-fleet",
        "--params",
        json.dumps({"folder": str(folder), "config_paths": None, "max_parallel": 2}),
    )
    assert run.state is not None and run.state.is_failed(), run.state
    assert f"1 of 4 releases did not succeed: {failing} (failed)" in (run.state.message or "")

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["release-fleet"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
            ),
            sort="CREATED_DESC",  # type: ignore[arg-type]
            limit=1,
        )
        releases = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["fleet"])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["nightly-redeploy"])),
        )
    rows = {
        line.split("|")[1].strip(" `"): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in str(artifact.data).splitlines()
        if line.startswith("| `")
    }
    assert sorted(rows) == sorted(endpoints), artifact.data
    for endpoint in endpoints:
        status, action, duration, error = rows[endpoint][:4]
        if endpoint == failing:
            assert (status, action) == ("**failed**", "created"), rows[endpoint]
            assert "SmokeFailed" in error and "dim" in error, rows[endpoint]
        else:
            # The action comes from the release's event, read back from the server.
            assert (status, action, error) == ("succeeded", "created", "-"), rows[endpoint]
        assert duration.endswith(" s"), rows[endpoint]

    # Each config was its own run of nightly-redeploy in the pool, never more than two at once.
    ours = [r for r in releases if r.parameters["config_path"].startswith(str(folder))]
    assert len(ours) == 4 and all(r.work_pool_name == POOL for r in ours)
    assert _most_at_once(ours) <= 2
    for endpoint in endpoints:
        described = serving_config(endpoint)
        if endpoint == failing:
            assert described is None  # a new endpoint that failed its smoke test is removed
        else:
            assert described is not None and described.startswith("InService"), (endpoint, described)

    # The automation fired on the failed release's event and sent its notification.
    wait_for(
        f"a notification about {failing}",
        lambda: [m for m in received if failing in m["text"]],
        timeout_s=120,
        interval_s=1,
    )
    [message] = [m for m in received if failing in m["text"]]
    assert "sagemaker-release.release.failed" in message["text"] and "SmokeFailed" in message["text"]
    assert not [m for m in received if any(e in m["text"] for e in endpoints if e != failing)]
    automation.delete()


def test_a_fleet_refuses_a_folder_outside_the_allowed_roots(e2e: E2E, two_workers: list[Path]) -> None:
    run = _run_deployment(
        "release-fleet/nightly-fleet", "--params", json.dumps({"folder": "/etc", "config_paths": None})
    )
    assert run.state is not None and run.state.is_failed(), run.state
    assert "folder" in (run.state.message or "") and "outside the folders" in (run.state.message or "")
