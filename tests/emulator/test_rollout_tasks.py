"""The release's variant shift (tasks/rollout/runner.py) against the emulator: real containers, real metrics,
real alarm evaluation. A good model ends alone on its own config; a failing one trips the error alarm
mid-shift, traffic goes back to the old model, and the ledger's unwind leaves nothing of the release."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.config import ReleaseConfig, naming, parse_config
from tasks.core import aws
from tasks.core.errors import AlarmFired
from tasks.lifecycle import unwind
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore
from tasks.rollout import alarms
from tasks.rollout.planning import plan_rollout
from tasks.rollout.runner import Rollout
from tasks.sagemaker import hosting
from tasks.sagemaker.endpoint_spec import endpoint_config_request, production_variant
from tests.emulator.emulator_support import ROLE_ARN, PrivateEmulator, make_clients


@pytest.fixture
def stack_of(
    private_emulator: Callable[..., PrivateEmulator], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A private emulator whose client variables are exported, so the tasks' boto3 clients reach it."""
    emulator = private_emulator(
        SAGEMAKER_EMULATOR_ALARM_INTERVAL_S="0.5", SAGEMAKER_EMULATOR_ALARM_SETTLE_S="1.5"
    )
    for name, value in emulator.client_env.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    yield emulator.client_env
    aws.reset_clients()


def release_config(endpoint: str, release_id: str, instances: int = 1, bake_s: int = 40) -> ReleaseConfig:
    """A release with 10 s alarms (the endpoint config asks for enhanced metrics) whose bakes last the
    40 s the config requires for them: one period, SageMaker's delay and an evaluation."""
    return parse_config(
        {
            "release_id": release_id,
            "role_arn": ROLE_ARN,
            "model": {"local_path": "unused"},
            "storage": {"bucket": "unused-bucket"},
            "endpoint": {"name": endpoint, "instance_type": "ml.m5.large", "instance_count": instances},
            "smoke": {"payloads": [{"inputs": "bake"}]},
            "rollout": {
                "strategy": "auto",
                "steps": [50],
                "bake_s": bake_s,
                "final_bake_s": 0,
                "alarms": {"max_5xx_errors": 0, "max_p99_latency_ms": 2000, "period_s": 10},
                "bake_traffic": {"rate_per_s": 5},
            },
            "timeouts": {"endpoint_s": 180, "poll_interval_s": 1},
        }
    )


def create_release(config: ReleaseConfig, image: str, ledger: Ledger, **environment: str) -> tuple[str, str]:
    """The model and final single-variant config of a release, as the release flow creates them."""
    release_id = config.require_release_id
    model = naming.model_name(config, release_id)
    hosting.create_model(
        model,
        containers=[{"Image": image, "Environment": environment}],
        role_arn=config.role_arn,
        tags=naming.tags(config, release_id),
        ledger=ledger,
    )
    request = endpoint_config_request(config, release_id, [production_variant(config, model)])
    hosting.create_endpoint_config(request, ledger)
    return model, str(request["EndpointConfigName"])


def answered_by(env: dict[str, str], endpoint: str) -> set[str]:
    runtime = make_clients(env).runtime
    return {
        json.loads(runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["Body"].read())["name"]
        for _ in range(6)
    }


@pytest.fixture(params=[1])
def serving_endpoint(
    request: pytest.FixtureRequest, stack_of: dict[str, str], double_image: str, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """An endpoint serving the 'old' model through a first release, on `request.param` instances."""
    endpoint = f"rollout-{uuid.uuid4().hex[:8]}"
    first = release_config(endpoint, "r0", request.param)
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "r0.json"), "r0")
    _, config_name = create_release(first, double_image, ledger, DOUBLE_NAME="old")
    hosting.create_endpoint(
        endpoint, config_name, tags=naming.tags(first, "r0"), ledger=ledger, timeout_s=180, interval_s=1
    )
    yield endpoint, config_name
    ledger.unwind(unwind.deleters(endpoint_timeout_s=180, poll_interval_s=1))


def test_a_good_model_ends_alone_on_its_config(
    stack_of: dict[str, str], serving_endpoint: tuple[str, str], double_image: str, tmp_path: Path
) -> None:
    endpoint, old_config = serving_endpoint
    config = release_config(endpoint, "r1")
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "r1.json"), "r1")
    model, final = create_release(config, double_image, ledger, DOUBLE_NAME="new")
    live = hosting.live_endpoint(endpoint)
    plan = plan_rollout(config, live)
    assert plan.strategy == "variant_shift"
    runner = Rollout(config, "r1", plan=plan, live=live, model_name=model, final_config=final, ledger=ledger)
    try:
        report = runner.run()
        assert report.outcome == "completed"
        described = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)
        assert described["EndpointConfigName"] == final
        assert [v["VariantName"] for v in described["ProductionVariants"]] == ["AllTraffic"]
        assert answered_by(stack_of, endpoint) == {"new"}
        assert [s.weight_percent for s in report.steps] == [50.0, 100.0]
        assert report.steps[0].invocations and report.steps[0].errors_5xx == 0
        assert report.steps[0].bake_requests > 0
        assert all(state == "OK" for s in report.steps for state in s.alarm_states.values())
        # The previous release's config stays for an instant rollback; the staging config is gone.
        configs = {
            c["EndpointConfigName"]
            for c in aws.client("sagemaker").list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]
        }
        assert old_config in configs and f"{final}-shift" not in configs
    finally:
        ledger.unwind(
            unwind.deleters(endpoint_timeout_s=180, poll_interval_s=1), keep=unwind.keep_in_use(endpoint)
        )


def test_a_failing_model_trips_the_alarm_and_the_unwind_leaves_nothing(
    stack_of: dict[str, str], serving_endpoint: tuple[str, str], double_image: str, tmp_path: Path
) -> None:
    endpoint, old_config = serving_endpoint
    config = release_config(endpoint, "r2")
    ledger = Ledger.open(
        LocalLedgerStore(tmp_path / "r2.json"),
        "r2",
        deleters=unwind.deleters(endpoint_timeout_s=180, poll_interval_s=1),
        keep=unwind.keep_in_use(endpoint),
    )
    live = hosting.live_endpoint(endpoint)
    runner: Rollout | None = None
    with pytest.raises(AlarmFired) as raised, ledger:
        model, final = create_release(config, double_image, ledger, DOUBLE_NAME="new", DOUBLE_STATUS="500")
        runner = Rollout(
            config,
            "r2",
            plan=plan_rollout(config, live),
            live=live,
            model_name=model,
            final_config=final,
            ledger=ledger,
        )
        runner.run()
    alarm = naming.alarm_name(config, "r2", "5xx")
    assert raised.value.alarms == (alarm,) and alarm in str(raised.value)
    assert runner is not None and runner.report.steps[0].outcome == "alarm"
    # The unwind put the endpoint back on the old model's config and removed all of the release.
    described: dict[str, Any] = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == old_config
    assert answered_by(stack_of, endpoint) == {"old"}
    configs = {
        c["EndpointConfigName"]
        for c in aws.client("sagemaker").list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]
    }
    assert configs == {old_config}
    assert alarms.alarm_states(runner.report.guard_alarms) == []
    assert {e.status for e in ledger.entries} <= {"deleted", "gone"}


@pytest.mark.parametrize("serving_endpoint", [2], indirect=True)
def test_a_failing_canary_is_rolled_back_by_the_guardrails_and_names_the_alarm(
    stack_of: dict[str, str], serving_endpoint: tuple[str, str], double_image: str, tmp_path: Path
) -> None:
    endpoint, old_config = serving_endpoint
    config = release_config(endpoint, "r3", instances=2)
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "r3.json"), "r3")
    model, final = create_release(config, double_image, ledger, DOUBLE_NAME="new", DOUBLE_STATUS="500")
    live = hosting.live_endpoint(endpoint)
    plan = plan_rollout(config, live)
    assert (plan.strategy, plan.steps) == ("canary", (50.0, 100.0)), plan.reason
    runner = Rollout(config, "r3", plan=plan, live=live, model_name=model, final_config=final, ledger=ledger)
    try:
        with pytest.raises(AlarmFired) as raised:
            runner.run()
        alarm = naming.alarm_name(config, "r3", "5xx")
        assert alarm in raised.value.alarms
        described = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)
        assert described["EndpointConfigName"] == old_config and alarm in described["FailureReason"]
        assert answered_by(stack_of, endpoint) == {"old"}
        assert [s.outcome for s in runner.report.steps] == ["alarm", "rolled back"]
        assert runner.report.steps[0].weight_percent == 50.0
    finally:
        ledger.unwind(
            unwind.deleters(endpoint_timeout_s=180, poll_interval_s=1), keep=unwind.keep_in_use(endpoint)
        )


def test_errors_of_the_old_fleet_do_not_hold_back_a_good_canary(
    stack_of: dict[str, str], double_image: str, tmp_path: Path
) -> None:
    """The old model answers 500 to everything; the new one is good. The guard alarms watch the new
    fleet (EndpointConfigName), so the canary goes through though the variant's series shows errors."""
    endpoint = f"rollout-{uuid.uuid4().hex[:8]}"
    first = release_config(endpoint, "r0", instances=2)
    first_ledger = Ledger.open(LocalLedgerStore(tmp_path / "r0.json"), "r0")
    _, old_config = create_release(first, double_image, first_ledger, DOUBLE_NAME="old", DOUBLE_STATUS="500")
    hosting.create_endpoint(
        endpoint, old_config, tags=naming.tags(first, "r0"), ledger=first_ledger, timeout_s=180, interval_s=1
    )
    config = release_config(endpoint, "r4", instances=2)
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "r4.json"), "r4")
    try:
        started = datetime.now(UTC)
        model, final = create_release(config, double_image, ledger, DOUBLE_NAME="new")
        live = hosting.live_endpoint(endpoint)
        plan = plan_rollout(config, live)
        assert (plan.strategy, plan.steps) == ("canary", (50.0, 100.0)), plan.reason
        runner = Rollout(
            config, "r4", plan=plan, live=live, model_name=model, final_config=final, ledger=ledger
        )
        report = runner.run()

        assert report.outcome == "completed" and report.fired == []
        assert aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == final
        assert answered_by(stack_of, endpoint) == {"new"}
        canary = report.steps[0]
        assert canary.invocations and canary.errors_5xx == 0  # the new fleet's own figures
        # Its p99 is CloudWatch's (ExtendedStatistics of the fleet's ModelLatency), not the bake traffic's.
        assert canary.p99_ms is not None and canary.p99_source == "cloudwatch", canary
        # The old fleet did err during the canary: the variant's series (both fleets) has its 5xx.
        old_errors = aws.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
            StartTime=started - timedelta(minutes=1),
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        assert sum(p["Sum"] for p in old_errors) > 0
    finally:
        ledger.unwind(
            unwind.deleters(endpoint_timeout_s=180, poll_interval_s=1), keep=unwind.keep_in_use(endpoint)
        )
        first_ledger.unwind(unwind.deleters(endpoint_timeout_s=180, poll_interval_s=1))
