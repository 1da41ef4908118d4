"""Deployments are an attack surface: a release started from one reads local folders only under the allowed
roots (the repository, widened by SAGEMAKER_RELEASE_ALLOWED_ROOTS on the worker), resolved through symlinks,
with the Dockerfile inside its context; refused as bad input before anything exists. By hand, any folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.testing.utilities import prefect_test_harness

from flows import cli
from flows.release import release
from tasks.checks import preflight
from tasks.config import ReleaseConfig
from tasks.core.errors import ConfigError
from tests.unit.deploy_helpers import make_config

DEPLOYMENT_ENV = "PREFECT__RUNTIME__DEPLOYMENT__ID"  # what prefect.runtime.deployment.id reads first


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the repository (the default root), with a model and a build context inside."""
    root = tmp_path / "repo"
    (root / "models" / "tiny").mkdir(parents=True)
    (root / "models" / "tiny" / "model.safetensors").write_bytes(b"w")
    (root / "container").mkdir()
    (root / "container" / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setattr(preflight, "REPOSITORY", root)
    monkeypatch.delenv(preflight.ALLOWED_ROOTS_ENV, raising=False)
    monkeypatch.delenv(preflight.CONFINE_ENV, raising=False)
    monkeypatch.delenv(DEPLOYMENT_ENV, raising=False)
    return root


@pytest.fixture
def deployed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The flow run as a deployment starts it."""
    monkeypatch.setenv(DEPLOYMENT_ENV, str(uuid.uuid4()))
    return repo


def _config(
    model: str | None = None, context: str | None = None, dockerfile: str = "Dockerfile"
) -> ReleaseConfig:
    sections: dict[str, Any] = {}
    if model is not None:
        sections["model"] = {"repo_id": None, "local_path": model}
    if context is not None:
        sections["image"] = {"source": "build", "context": context, "dockerfile": dockerfile}
    else:
        sections["image"] = {
            "source": "prebuilt",
            "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/s:1",
        }
    return make_config(**sections)


def _refused(config: ReleaseConfig) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        preflight.check_confinement(config)
    return caught.value


def test_a_run_is_confined_when_a_deployment_started_it_or_the_worker_says_so(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not preflight.confined()
    monkeypatch.setenv(DEPLOYMENT_ENV, str(uuid.uuid4()))
    assert preflight.confined()
    monkeypatch.delenv(DEPLOYMENT_ENV)
    monkeypatch.setenv(preflight.CONFINE_ENV, "1")
    assert preflight.confined()


def test_folders_inside_the_repository_pass(deployed: Path) -> None:
    preflight.check_confinement(_config(str(deployed / "models" / "tiny"), str(deployed / "container")))


def test_etc_as_the_model_folder_is_refused_naming_the_field_and_the_fix(deployed: Path) -> None:
    error = _refused(_config("/etc"))
    assert error.field == "model.local_path"
    assert "/etc is outside the folders" in error.problem and str(deployed) in error.problem
    assert preflight.ALLOWED_ROOTS_ENV in error.fix


def test_the_root_folder_as_build_context_is_refused(deployed: Path) -> None:
    error = _refused(_config(context="/"))
    assert error.field == "image.context" and "/ is outside" in error.problem


def test_a_symlink_inside_the_repository_pointing_out_is_refused(deployed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"w")
    (deployed / "models" / "link").symlink_to(outside)
    error = _refused(_config(str(deployed / "models" / "link")))
    assert error.field == "model.local_path" and f"resolves to {outside}" in error.problem

    (deployed / "container-link").symlink_to("/")
    assert _refused(_config(context=str(deployed / "container-link"))).field == "image.context"


def test_a_symlinked_file_in_the_model_folder_pointing_out_is_refused(deployed: Path) -> None:
    (deployed / "models" / "tiny" / "tokenizer.json").symlink_to("/etc/passwd")
    error = _refused(_config(str(deployed / "models" / "tiny")))
    assert error.field == "model.local_path"
    assert "tokenizer.json" in error.problem and "/etc/passwd" in error.problem


def test_a_dockerfile_escaping_its_context_is_refused(deployed: Path) -> None:
    error = _refused(_config(context=str(deployed / "container"), dockerfile="../../x"))
    assert error.field == "image.dockerfile" and "outside the build context" in error.problem
    (deployed / "container" / "Dockerfile.link").symlink_to("/etc/passwd")
    assert _refused(_config(context=str(deployed / "container"), dockerfile="Dockerfile.link")).field == (
        "image.dockerfile"
    )


def test_the_worker_widens_the_roots_with_a_colon_separated_list(
    deployed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models, contexts = tmp_path / "shared-models", tmp_path / "contexts"
    (models / "m").mkdir(parents=True)
    (contexts / "c").mkdir(parents=True)
    config = _config(str(models / "m"), str(contexts / "c"))
    assert {i.field for i in _refused(config).issues} == {"model.local_path", "image.context"}
    monkeypatch.setenv(preflight.ALLOWED_ROOTS_ENV, f"{models}:{contexts}")
    preflight.check_confinement(config)
    assert preflight.allowed_roots() == [deployed, models, contexts]


def test_the_command_line_run_by_hand_keeps_accepting_any_folder(repo: Path) -> None:
    preflight.check_confinement(_config("/etc", "/", dockerfile="../../x"))


def test_a_confined_release_sends_only_a_hub_token_variable_to_the_hub(deployed: Path) -> None:
    def with_token_env(name: str) -> ReleaseConfig:
        config = _config()
        return config.model_copy(update={"model": config.model.model_copy(update={"token_env": name})})

    error = _refused(with_token_env("AWS_SECRET_ACCESS_KEY"))
    assert error.field == "model.token_env" and "HF_TOKEN" in error.fix
    preflight.check_confinement(with_token_env("TEAM_HF_TOKEN"))


def test_the_nightly_config_path_is_held_to_the_roots(deployed: Path) -> None:
    preflight.check_confined_path("config_path", str(deployed / "releases" / "demo.yaml"))
    with pytest.raises(ConfigError) as caught:
        preflight.check_confined_path("config_path", "/etc/shadow")
    assert caught.value.field == "config_path"


# --- the flow, run as a deployment runs it --------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_a_deployment_run_with_etc_as_its_model_ends_invalid_before_anything_is_created(
    prefect_api: None, mocked_aws: None, deployed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config("/etc").with_release_id("r-confined")
    state = release(config, wait_for_lock_s=30, return_state=True)
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, dict), summary
    assert summary["status"] == "invalid" and "model.local_path" in summary["error"]
    assert cli.print_summary(state, {"release_id": "r-confined"}) == 2
    assert boto3.client("s3").list_buckets()["Buckets"] == []  # no bucket, no ledger, nothing
    assert boto3.client("sagemaker").list_models()["Models"] == []
