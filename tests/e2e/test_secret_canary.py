"""Secrets never leak: canary values planted in a Prefect Secret block and in Secrets Manager (the stack's
moto) reach the serving container, and appear in no output of the release: not the CLI's stdout or
stderr, the flow run's parameters, state messages, logs or artifacts (read back through the Prefect
client), the ledger in S3 or the JSON summary; not even the error of a release that SageMaker refused
with the environment quoted in its message. A secret build arg is a BuildKit secret, not in the image.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import docker
import pytest
import yaml
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import FlowRunSort

from tasks.image import build
from tests.e2e.inspect_stack import ledger, resources_of_release
from tests.e2e.release_support import E2E, REPO_ROOT

pytestmark = [pytest.mark.slow]


def _canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


def _release_cli(e2e: E2E, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{config['release_id']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "flows.release", "--config", str(path)],
        cwd=REPO_ROOT,
        env={**os.environ, **e2e.env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _flow_run_id(release_id: str) -> UUID:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release-model"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=50,
        )
    found = [r.id for r in runs if (r.parameters.get("config") or {}).get("release_id") == release_id]
    assert found, f"no flow run of release {release_id} in the Prefect API"
    return found[0]


def _everything_prefect_kept(run_id: UUID) -> str:
    """The run's parameters, states, task runs, every log line and every artifact, as one text."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        parts: list[Any] = [run.parameters, run.state.message if run.state else None]
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        parts += [(t.name, t.state.message if t.state else None) for t in task_runs]
        logs: list[str] = []
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                limit=200,
                offset=len(logs),
            )
            logs += [entry.message for entry in page]
            if len(page) < 200:
                break
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        parts += [logs, [(a.key, a.description, a.data) for a in artifacts]]
    assert logs and artifacts, "the run left no logs or no artifact to search"
    return json.dumps(parts, default=str)


@pytest.mark.stack
@pytest.mark.docker
def test_canary_secrets_reach_the_container_and_no_output_of_the_release(e2e: E2E, tmp_path: Path) -> None:
    from_prefect, from_aws = _canary(), _canary()
    block = f"e2e-{e2e.token}-api-key"
    Secret(value=from_prefect).save(block, overwrite=True)
    arn = boto3.client("secretsmanager").create_secret(Name=f"e2e-{e2e.token}-db", SecretString=from_aws)[
        "ARN"
    ]
    endpoint = e2e.endpoint("secrets")
    environment = {"API_KEY": {"secret": f"prefect:{block}"}, "DB_PASSWORD": {"secret": arn}, "MODE": "plain"}
    release_id = f"e2e-{e2e.token}-secrets"
    config = e2e.config_data(
        endpoint, release_id=release_id, endpoint={"environment": environment}, scaling={"enabled": False}
    )

    done = _release_cli(e2e, config, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    # The values reached SageMaker: the secrets were resolved, not dropped.
    served = boto3.client("sagemaker").describe_model(ModelName=summary["model_name"])
    assert served["PrimaryContainer"]["Environment"]["API_KEY"] == from_prefect
    assert served["PrimaryContainer"]["Environment"]["DB_PASSWORD"] == from_aws

    kept = _everything_prefect_kept(_flow_run_id(release_id))
    assert f"prefect:{block}" in kept  # the parameters hold the reference ...
    outputs = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "prefect": kept,
        "ledger": json.dumps(ledger(e2e.bucket, release_id)),
    }
    for where, text in outputs.items():
        for value in (from_prefect, from_aws):
            assert value not in text, f"a secret value leaked into the {where}"  # ... never the value

    # The same release again: "unchanged" is judged against the resolved values.
    again = _release_cli(e2e, {**config, "release_id": f"{release_id}-2"}, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["action"] == "unchanged"
    assert from_prefect not in again.stdout + again.stderr and from_aws not in again.stdout + again.stderr


@pytest.mark.stack
@pytest.mark.docker
def test_a_release_sagemaker_refuses_quoting_the_environment_fails_without_the_value(
    e2e: E2E, tmp_path: Path
) -> None:
    value = _canary()
    block = f"e2e-{e2e.token}-quoted"
    Secret(value=value).save(block, overwrite=True)
    # 100 variables pass the config; the model's task adds HF_TASK, and SageMaker refuses the 101-entry
    # map with all of it quoted in the message, as AWS does.
    environment: dict[str, Any] = {f"V{i:02d}": "x" for i in range(99)}
    environment["API_KEY"] = {"secret": f"prefect:{block}"}
    release_id = f"e2e-{e2e.token}-quoted"
    config = e2e.config_data(
        e2e.endpoint("quoted"),
        release_id=release_id,
        endpoint={"environment": environment},
        scaling={"enabled": False},
    )

    done = _release_cli(e2e, config, tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed"
    assert "failed to satisfy constraint" in summary["error"] and "***" in summary["error"]
    for where, text in {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "prefect": _everything_prefect_kept(_flow_run_id(release_id)),
        "ledger": json.dumps(ledger(e2e.bucket, release_id)),
    }.items():
        assert value not in text, f"the secret value leaked into the {where} of a failed release"
    assert resources_of_release(release_id, e2e.bucket) == []


@pytest.mark.docker
def test_a_secret_build_arg_is_used_by_the_build_and_kept_out_of_the_image(
    base_image: str, tmp_path: Path
) -> None:
    value = _canary()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        # NONCE, used by a RUN before the secret's, keeps BuildKit from reusing an earlier test's layer:
        # a secret's content is not part of the cache key.
        'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG PLAIN\nARG NONCE\nRUN echo "$NONCE" > /nonce\n'
        "RUN --mount=type=secret,id=TOKEN sha256sum /run/secrets/TOKEN | cut -c1-64 > /token.sha256\n"
        'RUN echo "$PLAIN" > /plain\n'
    )
    ref = f"sagemaker-release-tests/secret-build:{uuid.uuid4().hex[:12]}"
    client = docker.from_env()
    try:
        build.docker_build(
            client,
            context,
            base_image,
            ref,
            timeout_s=600,
            build_args={"PLAIN": "p", "NONCE": uuid.uuid4().hex},
            secrets={"TOKEN": value},
        )
        seen = client.containers.run(ref, ["cat", "/token.sha256", "/plain"], remove=True).decode()
        assert seen.split() == [hashlib.sha256(value.encode()).hexdigest(), "p"]  # the build had it ...
        history = json.dumps(client.api.history(ref)) + json.dumps(client.api.inspect_image(ref))
        assert value not in history  # ... and the image does not
    finally:
        client.images.remove(ref, force=True)
