"""deployments.yaml on a local `prefect server start`, run by a process worker (`prefect deployment run`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort

from tests.e2e.inspect_stack import ledger, serving_config
from tests.e2e.release_support import E2E, REPO_ROOT, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

POOL = "sagemaker-release"


def _prefect(*args: str, timeout_s: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, (
        f"prefect {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    return done.stdout


@pytest.fixture
def worker(e2e: E2E, tmp_path: Path) -> Iterator[None]:
    """The work pool, the deployments of deployments.yaml, and a process worker polling the pool."""
    _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
    _prefect("--no-prompt", "deploy", "--prefect-file", "deployments.yaml", "--all")
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            # The session's build context and the nightly config are copies outside the repository.
            "SAGEMAKER_RELEASE_ALLOWED_ROOTS": f"{e2e.context}:{tmp_path}",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def _run_deployment(name: str, *params: str) -> FlowRun:
    """`prefect deployment run NAME --param …`, then wait for the worker to finish the run."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
    _prefect("deployment", "run", name, *params)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        assert runs, f"prefect deployment run {name} created no flow run"
        run_id: UUID = runs[0].id

        def finished() -> FlowRun | None:
            current = client.read_flow_run(run_id)
            return current if current.state is not None and current.state.is_final() else None

        return wait_for(f"flow run of {name} to finish", finished, timeout_s=600, interval_s=1)


def test_deployments_run_releases_through_a_process_worker(
    e2e: E2E, serving: dict[str, Any], worker: None, tmp_path: Path
) -> None:
    endpoint = e2e.endpoint("serving")
    with get_client(sync_client=True) as client:
        release = client.read_deployment_by_name("release-model/release")
        nightly = client.read_deployment_by_name("nightly-redeploy/nightly-redeploy")
        fleet = client.read_deployment_by_name("release-fleet/nightly-fleet")
    # The manual deployment's parameter is the release config: the UI renders its schema as a form.
    schema = release.parameter_openapi_schema
    assert schema is not None and schema["required"] == ["config"]
    assert "ReleaseConfig" in json.dumps(schema["properties"]["config"])
    # The nightly schedule runs the fleet, which runs nightly-redeploy once per config.
    assert [s.schedule.cron for s in fleet.schedules] == ["0 2 * * *"]  # type: ignore[union-attr]
    assert nightly.schedules == []

    config = e2e.config_data(endpoint, release_id=f"e2e-{e2e.token}-deployed")
    run = _run_deployment("release-model/release", "--params", json.dumps({"config": config}))
    assert run.state is not None and run.state.is_completed(), run.state
    assert ledger(e2e.bucket, config["release_id"])["state"] == "succeeded"

    config_file = tmp_path / "nightly.yaml"
    config_file.write_text(yaml.safe_dump(e2e.config_data(endpoint)))
    run = _run_deployment("nightly-redeploy/nightly-redeploy", "--param", f"config_path={config_file}")
    assert run.state is not None and run.state.is_completed(), run.state
    # Nothing changed: the endpoint still serves the config of the first release.
    assert serving_config(endpoint) == f"InService {serving['endpoint_config_name']}"


def test_a_deployment_run_may_not_read_folders_outside_the_allowed_roots(e2e: E2E, worker: None) -> None:
    # Whoever may run the deployment chooses the config; the worker refuses /etc as the model folder
    # (its roots are the repository and the test's copies) before anything is created.
    config = e2e.config_data(
        e2e.endpoint("confined"),
        release_id=f"e2e-{e2e.token}-confined",
        model={"repo_id": None, "local_path": "/etc", "task": None, "ignore_patterns": None},
    )
    run = _run_deployment("release-model/release", "--params", json.dumps({"config": config}))
    assert run.state is not None and run.state.is_failed(), run.state
    assert "model.local_path" in (run.state.message or "") and "outside the folders" in (
        run.state.message or ""
    )
    run = _run_deployment("nightly-redeploy/nightly-redeploy", "--param", "config_path=/etc/passwd")
    assert run.state is not None and run.state.is_failed(), run.state
    assert "config_path" in (run.state.message or "")
