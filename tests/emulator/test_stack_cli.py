"""`python -m emulator up | env | status | down` as a user runs them, on the running stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulator import settings
from emulator import stack as local_stack
from emulator.stack import parts as stack_parts
from emulator.stack import processes as stack_processes

pytestmark = [pytest.mark.stack]

EXPORTS = [
    "export AWS_ENDPOINT_URL=http://127.0.0.1:4566",
    "export AWS_ENDPOINT_URL_SAGEMAKER=http://127.0.0.1:4577",
    "export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:4578",
    "export AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING=http://127.0.0.1:4577",
    "export HF_ENDPOINT=http://127.0.0.1:4588",
    "export SAGEMAKER_RELEASE_REGISTRY=127.0.0.1:5000",
    "export AWS_DEFAULT_REGION=us-east-1",
    "export AWS_ACCESS_KEY_ID=testing",
    "export AWS_SECRET_ACCESS_KEY=testing",
]


def _emulator(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        env={**os.environ, **env},
        timeout=120,
    )


def test_up_again_starts_nothing_and_prints_only_exports(stack: dict[str, str]) -> None:
    result = _emulator("up")
    assert result.returncode == 0, result.stderr
    *exports, base = result.stdout.splitlines()
    assert exports == EXPORTS
    # The base image the serving image builds FROM, so a release by hand needs no public registry.
    assert base.startswith(f"export {settings.BASE_IMAGE_ENV}=") and len(base) > 40
    for name in local_stack.PART_NAMES:
        assert f"{name} is already up" in result.stderr


def test_env_prints_the_same_exports(stack: dict[str, str]) -> None:
    result = _emulator("env")
    assert result.returncode == 0, result.stderr
    *exports, base = result.stdout.splitlines()
    assert exports == EXPORTS
    assert base == _emulator("up").stdout.splitlines()[-1]
    assert {line.split("=", 1)[0].removeprefix("export ") for line in EXPORTS} == set(stack)


def test_eval_of_up_configures_an_unchanged_aws_cli(stack: dict[str, str]) -> None:
    aws_cli = Path(sys.executable).parent / "aws"
    script = (
        f'set -e; eval "$({sys.executable} -m emulator up)"; {aws_cli} sagemaker list-endpoints --max-items 1'
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=settings.REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert '"Endpoints"' in result.stdout


def test_status_shows_every_part_up(stack: dict[str, str]) -> None:
    result = _emulator("status")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(rows) == {"docker", *local_stack.PART_NAMES}
    assert all(" up" in row for row in rows.values())


def test_down_stops_only_what_up_started(stack: dict[str, str], tmp_path: Path) -> None:
    # A state folder whose `up` found everything running holds no pids, so its `down` stops nothing.
    state = str(tmp_path / "state")
    assert _emulator("up", SAGEMAKER_RELEASE_STATE_DIR=state).returncode == 0
    result = _emulator("down", SAGEMAKER_RELEASE_STATE_DIR=state)
    assert result.returncode == 0, result.stderr
    assert "stopping" not in result.stderr and "removed" not in result.stderr
    assert set(local_stack.running_parts()) >= set(local_stack.PART_NAMES)


def test_unknown_part_is_an_error() -> None:
    result = _emulator("down", "warp-drive")
    assert result.returncode == 1
    assert "unknown part 'warp-drive'; the parts are registry, moto, sagemaker, hub" in result.stderr


def test_part_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    (tmp_path / "logs").mkdir()
    broken = local_stack.Part(
        name="broken",
        port=1,
        health_urls=("http://127.0.0.1:1/health",),
        marker="never",
        command=lambda state: [sys.executable, "-c", "print('cannot bind, giving up'); raise SystemExit(3)"],
    )
    process = stack_processes.spawn(broken, tmp_path, {})
    with pytest.raises(local_stack.StackError) as raised:
        stack_processes.wait_healthy(broken, tmp_path, process, timeout=30)
    assert "broken exited with code 3" in str(raised.value)
    assert "cannot bind, giving up" in str(raised.value)


def test_up_restarts_an_emulator_it_started_from_other_code(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """After a `git pull` the running emulator still serves the old code; `up` must not keep it."""
    import dataclasses

    sagemaker = local_stack.part("sagemaker")
    state = settings.state_dir()
    before = stack_processes.read_pid(sagemaker.pid_file(state))
    if before is None:
        pytest.skip("the running emulator was not started from this checkout's state folder")
    running = stack_processes.reported_code_version(sagemaker)
    assert running is not None and len(running) == 16
    # The checkout "moved on": it would start other code than the running emulator reports.
    moved_on = dataclasses.replace(sagemaker, code_version=lambda: "0" * 16)
    monkeypatch.setattr(
        stack_parts, "PARTS", tuple(moved_on if p.name == "sagemaker" else p for p in local_stack.PARTS)
    )
    assert local_stack.up(["sagemaker"]) == ["sagemaker"]
    after = stack_processes.read_pid(sagemaker.pid_file(state))
    assert after is not None and after != before
    assert stack_processes.healthy(sagemaker)
    assert "ran other code" in capfd.readouterr().err


@pytest.mark.docker
def test_down_removes_its_own_emulators_containers_and_no_private_emulators(
    double_image: str, tmp_path: Path
) -> None:
    """Containers of another state folder (a private emulator a test runs) stay; a folder of our own
    stands for the shared stack's, whose real containers must not go."""
    import docker
    import docker.errors

    from emulator.fleet.containers import LABEL_OWNER, owner_of
    from tests.emulator.emulator_support import ECR_HOST

    client = docker.from_env()
    image = double_image.replace(ECR_HOST, settings.registry_host())
    shared, private = tmp_path / "shared", tmp_path / "private"
    made = [
        client.containers.create(image, labels={settings.CONTAINER_LABEL: "1", LABEL_OWNER: owner_of(state)})
        for state in (shared, private)
    ]
    try:
        assert stack_processes.remove_emulator_containers(shared) == 1
        left = {c.id for c in client.containers.list(all=True, filters={"label": settings.CONTAINER_LABEL})}
        assert made[0].id not in left
        assert made[1].id in left
    finally:
        for container in made:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                continue
