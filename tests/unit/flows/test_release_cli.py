"""The command lines end every outcome with a JSON summary line: a bad config is refused before anything
runs (exit 2), and an exception nobody expected is still a summary (status failed, exit 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from flows import cleanup, release, rollback
from tasks.config import parse_override
from tasks.core.errors import ConfigError
from tasks.lifecycle.lock import LEASE_STORAGE_ENV, SHARED_LEASE_STORAGE


def test_a_bad_config_exits_2_with_the_field_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "role_arn: arn:aws:iam::123456789012:role/x\n"
        "model: {repo_id: a/b}\nstorage: {bucket: my-bucket}\n"
        "endpoint: {name: demo, instance_type: c5.large}\n"
    )
    assert release.main(["--config", str(config), "--release-id", "r1"]) == 2
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["status"], summary["release_id"]) == ("invalid", "r1")
    assert "endpoint.instance_type" in summary["error"] and "fix: use an ml.* type" in summary["error"]
    assert "endpoint.instance_type" in err


def test_overrides_are_yaml_values() -> None:
    assert parse_override("endpoint.instance_count=2") == ("endpoint.instance_count", 2)
    assert parse_override('endpoint.environment={"A": "1"}') == ("endpoint.environment", {"A": "1"})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("no-equals-sign")
    with pytest.raises(ConfigError, match=r"smoke.payloads: YAML syntax error"):
        parse_override("smoke.payloads=[unclosed")


def test_a_run_refused_before_creating_anything_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.states import Completed, Failed

    from flows.cli import print_summary

    refused = {"release_id": "r1", "status": "invalid", "error": "invalid release config: rollout.strategy"}
    assert print_summary(Failed(message="refused", data=refused), {"release_id": "r1"}) == 2
    assert json.loads(capsys.readouterr().out.strip())["status"] == "invalid"
    failed = {"release_id": "r1", "status": "failed", "error": "EndpointFailed"}
    assert print_summary(Failed(message="failed", data=failed), {"release_id": "r1"}) == 1
    assert print_summary(Completed(data={"status": "succeeded"}), {"release_id": "r1"}) == 0


@pytest.fixture
def lease_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() points Prefect's lease storage at a shared folder; keep that setting to this test.
    monkeypatch.setenv(LEASE_STORAGE_ENV, os.environ.get(LEASE_STORAGE_ENV, SHARED_LEASE_STORAGE))


def _last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary


def _raises(*_: Any, **__: Any) -> Any:
    raise RuntimeError("the worker lost its disk")


def test_an_unexpected_exception_in_a_release_is_still_a_json_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lease_setting: None
) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        "role_arn: arn:aws:iam::123456789012:role/x\nmodel: {repo_id: a/b}\nstorage: {bucket: my-bucket}\n"
        "image: {source: prebuilt, image_uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/s:1}\n"
        "endpoint: {name: demo}\n"
    )
    monkeypatch.setattr(release, "release", _raises)
    assert release.main(["--config", str(config), "--release-id", "r1"]) == 1
    assert _last_line(capsys) == {
        "release_id": "r1",
        "status": "failed",
        "error": "RuntimeError: the worker lost its disk",
    }


def test_an_unexpected_exception_in_a_rollback_or_cleanup_is_still_a_json_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lease_setting: None
) -> None:
    monkeypatch.setattr(rollback, "rollback", _raises)
    assert rollback.main(["demo-embedder"]) == 1
    assert _last_line(capsys) == {
        "endpoint_name": "demo-embedder",
        "status": "failed",
        "error": "RuntimeError: the worker lost its disk",
    }
    monkeypatch.setattr(cleanup, "cleanup", _raises)
    assert cleanup.main(["r1", "--bucket", "ledgers"]) == 1
    assert _last_line(capsys) == {
        "release_id": "r1",
        "status": "failed",
        "error": "RuntimeError: the worker lost its disk",
    }
    monkeypatch.setattr(cleanup, "cleanup_orphans", _raises)
    assert cleanup.main(["--orphans", "--bucket", "ledgers"]) == 1
    assert _last_line(capsys)["error"] == "RuntimeError: the worker lost its disk"


def test_a_flow_that_failed_with_an_exception_names_its_class(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.states import Failed, State

    from flows.cli import print_summary

    state: State[Any] = Failed(message="boom", data=KeyError("model.safetensors"))
    assert print_summary(state, {"endpoint_name": "e"}) == 1
    assert _last_line(capsys) == {
        "endpoint_name": "e",
        "status": "failed",
        "error": "KeyError: 'model.safetensors'",
    }


def test_an_interrupted_command_line_still_prints_its_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lease_setting: None
) -> None:
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(rollback, "rollback", interrupted)
    assert rollback.main(["demo-embedder"]) == 130
    assert _last_line(capsys)["status"] == "failed"


def test_usage_errors_name_the_argument() -> None:
    from flows.cli import usage_error

    assert usage_error("argument --poll: 'x' is not a number; fix: give a number", "p").fix == "give a number"
    missing = usage_error("the following arguments are required: ENDPOINT, --to", "prog")
    assert (missing.field, missing.problem) == ("ENDPOINT", "is required")
    assert "prog --help" in missing.fix
    assert usage_error("unrecognized arguments: --x 1", "prog").field == "--x"
    other = usage_error("something argparse says", "prog")
    assert (other.field, other.problem) == ("arguments", "something argparse says")
