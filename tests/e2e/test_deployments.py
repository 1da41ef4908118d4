"""deployments.yaml on a local `prefect server start`, run by a process worker (`prefect deployment run`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort

from tasks.artifact.model_source import resolve_commit
from tasks.config import ModelSourceConfig
from tests.e2e.inspect_stack import ledger, serving_config
from tests.e2e.release_support import E2E, REPO_ROOT, SHARED_REPOSITORY, wait_for

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


# --- release-from-file: the short form, from the command line ------------------------------------------


def _run_from_cli(name: str, *params: str) -> FlowRun:
    """`prefect deployment run NAME --param …` as a person types it; the run it created, once finished."""
    output = _prefect("deployment", "run", name, *params)
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, f"prefect deployment run {name} printed no flow run id:\n{output}"
    run_id = UUID(found[1])
    with get_client(sync_client=True) as client:

        def finished() -> FlowRun | None:
            current = client.read_flow_run(run_id)
            return current if current.state is not None and current.state.is_final() else None

        return wait_for(f"flow run of {name} to finish", finished, timeout_s=600, interval_s=1)


def _refused_by_server(name: str, *params: str) -> str:
    """`prefect deployment run` that the server refuses to create: the parameters break the schema."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", name, *params],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, f"prefect deployment run {name} was accepted:\n{done.stdout[-2000:]}"
    return " ".join((done.stdout + done.stderr).split())


def _form_overrides(e2e: E2E) -> list[str]:
    # releases/demo.yaml as the e2e session runs it: its bucket, its copy of the build context, no bakes.
    return [
        f"storage.bucket={e2e.bucket}",
        f"storage.prefix={e2e.prefix}",
        f"image.context={e2e.context}",
        f"image.repository={SHARED_REPOSITORY}",
        "tags={suite: e2e}",
        "rollout.bake_s=0",
        "rollout.final_bake_s=0",
        "smoke.max_latency_ms=10000",
        "timeouts.endpoint_s=300\ntimeouts.poll_interval_s=1",
    ]


def test_release_from_file_releases_a_config_of_releases_from_the_command_line(
    e2e: E2E, worker: None
) -> None:
    with get_client(sync_client=True) as client:
        short = client.read_deployment_by_name("release-model/release-from-file")
        full = client.read_deployment_by_name("release-model/release")
    # One flow, two deployments: the whole config for automation, a file and a few fields for people.
    assert short.flow_id == full.flow_id
    schema = short.parameter_openapi_schema
    assert schema is not None and schema["required"] == ["config_path"]
    assert "releases/demo.yaml" in schema["properties"]["config_path"]["enum"]
    # The form opens on the demo (the deployment's default), every other field empty: the file's values.
    assert short.parameters == {"config_path": "releases/demo.yaml", "wait_for_lock_s": 900}
    assert schema["properties"]["revision"]["title"] == "Model revision"

    commit = resolve_commit(
        ModelSourceConfig(repo_id="sentence-transformers/all-MiniLM-L6-v2", revision="main"), None
    )
    endpoint = e2e.endpoint("fromfile")
    run = _run_from_cli(
        "release-model/release-from-file",
        "--param",
        "config_path=releases/demo.yaml",
        "--param",
        f"revision={commit}",
        "--param",
        f"endpoint_name={endpoint}",
        "--param",
        f"overrides={json.dumps(_form_overrides(e2e))}",
    )
    assert run.state is not None and run.state.is_completed(), run.state
    # The runs list reads: the endpoint and the release id, which is the id the release used.
    name, _, release_id = run.name.partition(" / ")
    assert name == endpoint and release_id, run.name
    assert ledger(e2e.bucket, release_id)["state"] == "succeeded"
    assert (serving_config(endpoint) or "").startswith("InService")
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
    # The release itself ran as the release flow's subflow, named the same way.
    assert [child.name for child in children] == [run.name]
    # The revision field reached the release: its artifact names the commit it released.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[children[0].id]))
        )
    released = [a for a in artifacts if a.key == f"release-{endpoint}"]
    assert len(released) == 1, [a.key for a in artifacts]
    assert commit in str(released[0].data) and release_id in str(released[0].description)


def test_the_forms_refuse_what_the_release_would_refuse(e2e: E2E, worker: None) -> None:
    # The schema, before any run exists: a file the form does not offer, a config without a model source.
    refused = _refused_by_server("release-model/release-from-file", "--param", "config_path=/etc/passwd")
    assert "'config_path'" in refused and "releases/demo.yaml" in refused, refused
    config = e2e.config_data(e2e.endpoint("nosource"), model={"repo_id": None})
    assert config["model"]["repo_id"] is None and "local_path" not in config["model"]
    refused = _refused_by_server("release-model/release", "--params", json.dumps({"config": config}))
    assert "Validation failed for field 'config.model" in refused, refused

    # The flow, before anything is created: a value the config refuses, named with its fix.
    endpoint = e2e.endpoint("refused")
    run = _run_from_cli(
        "release-model/release-from-file",
        "--param",
        "config_path=releases/demo.yaml",
        "--param",
        f"endpoint_name={endpoint}",
        "--param",
        'overrides=["rollout.strategy=big_bang"]',
    )
    assert run.state is not None and run.state.is_failed(), run.state
    assert "rollout.strategy" in (run.state.message or ""), run.state.message
    assert run.name.startswith(f"{endpoint} / "), run.name
    assert boto3.client("sagemaker").list_endpoints(NameContains=endpoint)["Endpoints"] == []
