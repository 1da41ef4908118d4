"""Progressive delivery through the release flow on a single-instance endpoint (variant_shift).

The models are the tiny code/inference.py folders of progressive_models.py: each answers its version
number; a broken one fails (HTTP 500) on inputs only the bake traffic of its release sends. Alarms
use 10 s periods, so a whole shift takes seconds; the emulator evaluates them every 5 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tasks.config import ReleaseConfig, naming
from tests.e2e.inspect_stack import ledger, resources_of_release, serving_config, unresolved_entries
from tests.e2e.progressive_models import (
    FAILING_PAYLOADS,
    GOOD_PAYLOADS,
    endpoint_configs,
    model_folder,
    release_artifact,
    version_served,
)
from tests.e2e.release_support import E2E, REPO_ROOT, run_release, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def shift_config(
    e2e: E2E,
    release: str,
    folder: Path,
    *,
    bake_s: int,
    payloads: list[Any],
    max_p99_latency_ms: int = 5000,
    rate_per_s: float = 4,
) -> ReleaseConfig:
    return e2e.config(
        e2e.endpoint("shift"),
        release_id=f"e2e-{e2e.token}-{release}",
        model={"repo_id": None, "local_path": str(folder)},
        scaling={"enabled": False},
        # The smoke test is the gate (checked on the new variant before it gets traffic); the bake
        # traffic is what production sends, including inputs a broken model fails on.
        smoke={"payloads": GOOD_PAYLOADS, "repeat": 1, "expect_dim": 4},
        rollout={
            "strategy": "variant_shift",
            "steps": [50],
            "bake_s": bake_s,
            "final_bake_s": 0,
            "alarms": {"max_5xx_errors": 0, "max_p99_latency_ms": max_p99_latency_ms, "period_s": 10},
            "bake_traffic": {"rate_per_s": rate_per_s, "payloads": payloads},
        },
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("progressive")


@pytest.fixture(scope="module")
def first_release(e2e: E2E, models: Path) -> dict[str, Any]:
    """The shift endpoint created on model v1 (the `create` strategy: a new endpoint, no bake)."""
    config = shift_config(e2e, "v1", model_folder(models, 1), bake_s=0, payloads=GOOD_PAYLOADS)
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert summary["rollout"]["strategy"] == "create"
    return summary


def test_a_good_model_shifts_in_steps_to_one_variant_and_keeps_the_previous_release(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("shift")
    # 10 s alarms on enhanced metrics: a bake the alarms can watch lasts at least 40 s.
    config = shift_config(e2e, "v2", model_folder(models, 2), bake_s=40, payloads=GOOD_PAYLOADS)
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert (summary["action"], summary["previous_config"]) == (
        "updated",
        first_release["endpoint_config_name"],
    )
    rollout = summary["rollout"]
    assert (rollout["strategy"], rollout["outcome"]) == ("variant_shift", "completed")
    assert [s["weight_percent"] for s in rollout["steps"]] == [50.0, 100.0]
    assert all(s["outcome"] == "passed" for s in rollout["steps"])
    assert rollout["steps"][0]["bake_requests"] > 0
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == summary["endpoint_config_name"]
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["AllTraffic"]
    assert version_served(endpoint) == 2.0
    # The previous release's config stays for rollback; the staging config of the shift is gone.
    configs = endpoint_configs(endpoint)
    assert first_release["endpoint_config_name"] in configs
    assert naming.endpoint_config_name(config, config.require_release_id, "shift") not in configs
    assert ledger(e2e.bucket, summary["release_id"])["state"] == "succeeded"
    # The artifact shows the shift as a chart and a table, one row per step.
    artifact = release_artifact(endpoint, summary["release_id"])
    assert "## Traffic shift: variant_shift — completed" in artifact
    assert "data:image/svg+xml" in artifact and "| 2 | 100% on the new model" in artifact


def test_a_model_failing_part_of_its_inputs_trips_the_error_alarm_and_traffic_returns(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("shift")
    before = serving_config(endpoint)
    served_before = version_served(endpoint)
    config = shift_config(
        e2e, "v3", model_folder(models, 3, fail_on="fail"), bake_s=40, payloads=FAILING_PAYLOADS
    )
    ok, summary = run_release(config)
    assert not ok
    alarm = naming.alarm_name(config, config.require_release_id, "5xx")
    assert "AlarmFired" in summary["error"] and alarm in summary["error"], summary["error"]
    assert summary["rollout"]["steps"][0]["errors_5xx"]
    _assert_rolled_back(e2e, summary, alarm, before, served_before)


def test_a_slower_model_trips_the_latency_alarm_and_traffic_returns(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("shift")
    before = serving_config(endpoint)
    served_before = version_served(endpoint)
    folder = model_folder(models, 5, delay_s=1.2)
    config = shift_config(
        e2e, "v5", folder, bake_s=40, payloads=GOOD_PAYLOADS, max_p99_latency_ms=800, rate_per_s=2
    )
    ok, summary = run_release(config)
    assert not ok
    alarm = naming.alarm_name(config, config.require_release_id, "p99-latency")
    assert "AlarmFired" in summary["error"] and alarm in summary["error"], summary["error"]
    _assert_rolled_back(e2e, summary, alarm, before, served_before)


def test_a_model_failing_the_smoke_test_is_refused_before_any_traffic_reaches_it(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    """The new variant joins at weight 0 and is smoke-tested there (TargetVariant): a model that fails
    the smoke payloads never gets a single production request, and the old one serves on alone."""
    endpoint = e2e.endpoint("shift")
    before = serving_config(endpoint)
    served_before = version_served(endpoint)
    folder = model_folder(models, 6, fail_on="boring")  # the smoke payload is "a release should be boring"
    config = shift_config(e2e, "v6", folder, bake_s=40, payloads=GOOD_PAYLOADS)
    ok, summary = run_release(config)
    assert not ok
    assert "SmokeFailed" in summary["error"] and "before traffic" in summary["error"], summary["error"]
    assert summary["smoke_before_traffic"]["passed"] is False
    assert summary["rollout"]["steps"] == [], "no traffic step may start after a failed smoke"
    assert serving_config(endpoint) == before
    assert version_served(endpoint) == served_before
    assert ledger(e2e.bucket, summary["release_id"])["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, summary["release_id"]) == []
    assert resources_of_release(summary["release_id"], e2e.bucket) == []
    artifact = release_artifact(endpoint, summary["release_id"])
    assert "Before traffic, on the new variant at weight 0:" in artifact


def _assert_rolled_back(
    e2e: E2E, summary: dict[str, Any], alarm: str, before: str | None, served_before: float
) -> None:
    """The alarm stopped the shift at its first step; the model that served still answers alone."""
    endpoint = e2e.endpoint("shift")
    steps = summary["rollout"]["steps"]
    assert [s["outcome"] for s in steps] == ["alarm", "rolled back"], steps
    assert steps[0]["weight_percent"] == 50.0
    assert summary["rollout"]["fired"] == [alarm]
    assert serving_config(endpoint) == before
    assert version_served(endpoint) == served_before
    assert ledger(e2e.bucket, summary["release_id"])["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, summary["release_id"]) == []
    assert resources_of_release(summary["release_id"], e2e.bucket) == []


def test_rollback_on_demand_puts_the_endpoint_on_its_previous_release(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("shift")
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    if described["EndpointConfigName"] == first_release["endpoint_config_name"]:
        # Run alone: give the endpoint a release to roll back from.
        config = shift_config(e2e, "v4", model_folder(models, 4), bake_s=0, payloads=GOOD_PAYLOADS)
        ok, summary = run_release(config)
        assert ok, summary["error"]
    done = subprocess.run(
        [sys.executable, "-m", "flows.rollback", endpoint, "--timeout", "300", "--poll", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["to_config"] == first_release["endpoint_config_name"], result
    wait_for(
        f"{endpoint} to serve {first_release['endpoint_config_name']}",
        lambda: serving_config(endpoint) == f"InService {first_release['endpoint_config_name']}",
        timeout_s=60,
    )
    assert version_served(endpoint) == 1.0
