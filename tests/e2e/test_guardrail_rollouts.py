"""SageMaker deployment guardrails (canary, linear) through the release flow on a 2-instance endpoint.

The release updates the endpoint with a blue/green DeploymentConfig whose AutoRollbackConfiguration
names the release's own alarms; the emulator provisions the new fleet beside the old one, moves
traffic in baked steps and rolls back by itself when an alarm fires. The models are the tiny
code/inference.py folders of progressive_models.py (each answers its version number). Alarms use
10 s periods and the bakes are seconds long, so each release takes well under a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import docker
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
from tests.e2e.release_support import E2E, run_release, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

INSTANCES = 2
ONE_INSTANCE = {"Type": "INSTANCE_COUNT", "Value": 1}  # canary / linear step: half of 2 instances
# The emulator's labels on the containers it runs (emulator/fleet/containers.py).
ENDPOINT_LABEL = "sagemaker-release.endpoint"
DEPLOYMENT_LABEL = "sagemaker-release.deployment"


def guard_config(
    e2e: E2E,
    release: str,
    folder: Path,
    *,
    strategy: str,
    bake_s: int,
    final_bake_s: int = 0,
    payloads: list[Any] = GOOD_PAYLOADS,
    max_p99_latency_ms: int = 5000,
    rate_per_s: float = 4,
) -> ReleaseConfig:
    return e2e.config(
        e2e.endpoint("guard"),
        release_id=f"e2e-{e2e.token}-{release}",
        model={"repo_id": None, "local_path": str(folder)},
        endpoint={"instance_count": INSTANCES},
        scaling={"enabled": False},
        smoke={"payloads": payloads, "repeat": 1, "expect_dim": 4},
        rollout={
            "strategy": strategy,
            # Only the field of the chosen strategy: the config refuses the one it would ignore.
            ("canary_percent" if strategy == "canary" else "linear_step_percent"): 50,
            "bake_s": bake_s,
            "final_bake_s": final_bake_s,
            "alarms": {"max_5xx_errors": 0, "max_p99_latency_ms": max_p99_latency_ms, "period_s": 10},
            "bake_traffic": {"rate_per_s": rate_per_s},
        },
    )


def guard_alarms(config: ReleaseConfig) -> list[str]:
    release_id = config.require_release_id
    return [
        naming.alarm_name(config, release_id, "5xx"),
        naming.alarm_name(config, release_id, "p99-latency"),
    ]


def existing_alarms(names: list[str]) -> dict[str, list[dict[str, str]]]:
    """Alarm name -> its metric dimensions, for the alarms among `names` that exist."""
    found = boto3.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    return {a["AlarmName"]: a["Dimensions"] for a in found}


def fleet(endpoint: str) -> dict[str, str]:
    """The endpoint's running containers on the emulator: container id -> deployment id."""
    running = docker.from_env().containers.list(filters={"label": f"{ENDPOINT_LABEL}={endpoint}"})
    return {c.id: c.labels.get(DEPLOYMENT_LABEL, "") for c in running}


def quiet_alarms(endpoint: str) -> None:
    """Send good requests until no alarm of the endpoint is in ALARM, before a release.

    Guardrails alarms watch the variant (both fleets share its name) and CloudWatch judges the most
    recent datapoints of the last few periods, so on an idle endpoint a guard alarm created soon
    after a rolled-back release would judge that release's errors. Requests, as production sends
    them, give the alarms a fresh period; the alarms the serving release kept say when it counted."""

    def quiet() -> bool:
        version_served(endpoint)
        listed = boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{endpoint}-")["MetricAlarms"]
        return all(a["StateValue"] != "ALARM" for a in listed)

    wait_for(f"the alarms of {endpoint} to leave ALARM", quiet, timeout_s=60, interval_s=1)


def routing(described: dict[str, Any]) -> dict[str, Any]:
    policy = described["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]
    return dict(policy["TrafficRoutingConfiguration"])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guardrails")


@pytest.fixture(scope="module")
def first_release(e2e: E2E, models: Path) -> dict[str, Any]:
    """The guard endpoint created on model v1 with 2 instances (the `create` strategy, no bake)."""
    config = guard_config(e2e, "g1", model_folder(models, 1), strategy="canary", bake_s=0, final_bake_s=0)
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert summary["rollout"]["strategy"] == "create"
    return summary


def test_a_good_model_passes_the_canary_and_the_old_fleet_retires(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("guard")
    sagemaker = boto3.client("sagemaker")
    previous = first_release["endpoint_config_name"]
    assert serving_config(endpoint) == f"InService {previous}"
    old_fleet = fleet(endpoint)
    assert len(old_fleet) == INSTANCES, old_fleet
    quiet_alarms(endpoint)
    earlier_alarms = _endpoint_alarms(endpoint)  # the guards the serving release kept
    # 10 s alarms on enhanced metrics: a bake the alarms can watch lasts at least 40 s.
    config = guard_config(e2e, "g2", model_folder(models, 2), strategy="canary", bake_s=40)
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert (summary["action"], summary["previous_config"]) == ("updated", previous)

    # The flow followed the emulator's baked steps: the canary (1 of 2 instances), then everything.
    rollout = summary["rollout"]
    assert (rollout["strategy"], rollout["outcome"]) == ("canary", "completed")
    assert [s["weight_percent"] for s in rollout["steps"]] == [50.0, 100.0], rollout["steps"]
    assert all(s["outcome"] == "passed" for s in rollout["steps"])
    assert rollout["steps"][0]["bake_requests"] > 0
    assert rollout["rollback_alarms"] == guard_alarms(config)
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
        "InService",
        summary["endpoint_config_name"],
    )
    assert "FailureReason" not in described
    assert [(v["VariantName"], v["CurrentInstanceCount"]) for v in described["ProductionVariants"]] == [
        ("AllTraffic", INSTANCES)
    ]
    assert routing(described) == {"Type": "CANARY", "WaitIntervalInSeconds": 40, "CanarySize": ONE_INSTANCE}
    rollback = described["LastDeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert [a["AlarmName"] for a in rollback] == guard_alarms(config)

    # 100% on the new model; the old fleet is gone, the previous release stays for a rollback.
    assert {version_served(endpoint) for _ in range(6)} == {2.0}

    def only_new_fleet() -> dict[str, str] | None:
        now = fleet(endpoint)
        return now if len(now) == INSTANCES and not set(now) & set(old_fleet) else None

    new_fleet = wait_for("the old fleet to be terminated", only_new_fleet, timeout_s=60)
    assert len(set(new_fleet.values())) == 1, new_fleet  # one deployment: the new one
    assert previous in endpoint_configs(endpoint)
    kept = sagemaker.describe_endpoint_config(EndpointConfigName=previous)["ProductionVariants"]
    assert sagemaker.describe_model(ModelName=kept[0]["ModelName"])["ModelName"] == kept[0]["ModelName"]
    assert ledger(e2e.bucket, summary["release_id"])["state"] == "succeeded"

    # The release's guard alarms stay, on the serving fleet; earlier releases' are replaced.
    ours = existing_alarms(guard_alarms(config))
    assert set(ours) == set(guard_alarms(config)), ours
    for dimensions in ours.values():
        assert {d["Name"]: d["Value"] for d in dimensions} == {
            "EndpointName": endpoint,
            "VariantName": "AllTraffic",
            "EndpointConfigName": summary["endpoint_config_name"],
        }
    assert earlier_alarms and not earlier_alarms & set(ours), earlier_alarms
    assert _endpoint_alarms(endpoint) == set(ours)

    artifact = release_artifact(endpoint, summary["release_id"])
    assert "## Traffic shift: canary — completed" in artifact
    assert "| 1 | 50% of capacity" in artifact and "| 2 | 100% of capacity" in artifact


def test_a_model_failing_part_of_its_inputs_is_rolled_back_by_the_linear_guardrails(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    folder = model_folder(models, 3, fail_on="fail")
    config = guard_config(e2e, "g3", folder, strategy="linear", bake_s=40, payloads=FAILING_PAYLOADS)
    summary = _release_rolled_back(e2e, config, "5xx")
    assert summary["rollout"]["steps"][0]["errors_5xx"], summary["rollout"]["steps"]
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=e2e.endpoint("guard"))
    assert routing(described) == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 40,
        "LinearStepSize": ONE_INSTANCE,
    }


def test_a_slower_model_is_rolled_back_by_the_canary_latency_alarm(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    folder = model_folder(models, 4, delay_s=1.2)
    config = guard_config(
        e2e, "g4", folder, strategy="canary", bake_s=40, max_p99_latency_ms=800, rate_per_s=2
    )
    summary = _release_rolled_back(e2e, config, "p99-latency")
    assert summary["rollout"]["steps"][0]["p99_ms"] > 800, summary["rollout"]["steps"]
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=e2e.endpoint("guard"))
    assert routing(described) == {"Type": "CANARY", "WaitIntervalInSeconds": 40, "CanarySize": ONE_INSTANCE}


def _release_rolled_back(e2e: E2E, config: ReleaseConfig, alarm_kind: str) -> dict[str, Any]:
    """Run a release that must trip its `alarm_kind` alarm at the first step; check SageMaker's
    rollback kept the old fleet serving and the release left nothing behind. Returns its summary."""
    endpoint = e2e.endpoint("guard")
    quiet_alarms(endpoint)
    before = serving_config(endpoint)
    served_before = version_served(endpoint)
    old_fleet = fleet(endpoint)
    serving_alarms = _endpoint_alarms(endpoint)
    ok, summary = run_release(config)
    assert not ok
    alarm = naming.alarm_name(config, config.require_release_id, alarm_kind)
    assert "AlarmFired" in summary["error"] and alarm in summary["error"], summary["error"]

    rollout = summary["rollout"]
    assert (rollout["strategy"], rollout["outcome"]) == (config.rollout.strategy, "rolled back")
    assert [s["outcome"] for s in rollout["steps"]] == ["alarm", "rolled back"], rollout["steps"]
    assert rollout["steps"][0]["weight_percent"] == 50.0
    assert rollout["fired"] == [alarm]

    # SageMaker (the emulator) rolled back by itself: the same old containers serve, alone.
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    assert serving_config(endpoint) == before
    assert alarm in described["FailureReason"] and "rolled back" in described["FailureReason"]
    assert fleet(endpoint) == old_fleet
    assert {version_served(endpoint) for _ in range(6)} == {served_before}

    assert ledger(e2e.bucket, summary["release_id"])["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, summary["release_id"]) == []
    assert resources_of_release(summary["release_id"], e2e.bucket) == []
    # The serving release's guard alarms are not the failed release's to replace.
    assert _endpoint_alarms(endpoint) == serving_alarms
    artifact = release_artifact(endpoint, summary["release_id"])
    assert f"## Traffic shift: {config.rollout.strategy} — rolled back" in artifact
    return summary


def _endpoint_alarms(endpoint: str) -> set[str]:
    listed = boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{endpoint}-")["MetricAlarms"]
    return {a["AlarmName"] for a in listed}
