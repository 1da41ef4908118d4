"""The release CLI refuses a bad config before anything runs, with a JSON summary as its last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows import release


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
    assert release._parse_override("endpoint.instance_count=2") == ("endpoint.instance_count", 2)
    assert release._parse_override('endpoint.environment={"A": "1"}') == ("endpoint.environment", {"A": "1"})
    with pytest.raises(Exception, match="KEY=VALUE"):
        release._parse_override("no-equals-sign")


def test_a_run_refused_before_creating_anything_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.states import Completed, Failed

    from flows.cli import print_summary

    refused = {"release_id": "r1", "status": "invalid", "error": "invalid release config: rollout.strategy"}
    assert print_summary(Failed(message="refused", data=refused), {"release_id": "r1"}) == 2
    assert json.loads(capsys.readouterr().out.strip())["status"] == "invalid"
    failed = {"release_id": "r1", "status": "failed", "error": "EndpointFailed"}
    assert print_summary(Failed(message="failed", data=failed), {"release_id": "r1"}) == 1
    assert print_summary(Completed(data={"status": "succeeded"}), {"release_id": "r1"}) == 0
