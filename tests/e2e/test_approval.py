"""The manual approval gate through a real Prefect server: promote, roll back, time out, and an alarm
during the pause.

Each release runs in a background thread of this process (a flow run on the e2e package's Prefect
server); the test finds its flow run paused, checks what the UI needs to show the Resume form (a
Paused state with a run input keyset whose schema has the decision dropdown) and that the artifact
already shows the canary, then resumes it through the API as the UI would. The models are the tiny
versioned ones of progressive_models.py on a single-instance endpoint of their own (variant_shift).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.flow_runs import resume_flow_run

from flows.run_names import run_name
from tasks.config import ReleaseConfig, naming
from tests.e2e.inspect_stack import ledger, resources_of_release, serving_config, unresolved_entries
from tests.e2e.progressive_models import FAILING_PAYLOADS, GOOD_PAYLOADS, model_folder, version_served
from tests.e2e.release_support import E2E, run_release, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def approval_config(
    e2e: E2E, release: str, folder: Path, *, payloads: list[Any] = GOOD_PAYLOADS, **rollout: Any
) -> ReleaseConfig:
    return e2e.config(
        e2e.endpoint("approve"),
        release_id=f"e2e-{e2e.token}-approve-{release}",
        model={"repo_id": None, "local_path": str(folder)},
        # An instance type of its own: the emulator's quota is per type, and the other e2e modules'
        # endpoints (ml.m5.large) may hold all of theirs while these run.
        endpoint={"instance_type": "ml.c5.large"},
        scaling={"enabled": False},
        smoke={"payloads": GOOD_PAYLOADS, "repeat": 1, "expect_dim": 4},
        rollout={
            "strategy": "variant_shift",
            "steps": [50],
            "bake_s": 0,
            "final_bake_s": 0,
            "alarms": {"max_5xx_errors": 0, "period_s": 10},
            "bake_traffic": {"rate_per_s": 4, "payloads": payloads},
            **rollout,
        },
    )


class Background:
    """A release running in a thread; `result()` waits for its (succeeded, summary)."""

    def __init__(self, config: ReleaseConfig) -> None:
        self.config = config
        self.outcome: tuple[bool, dict[str, Any]] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"release-{config.release_id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = run_release(self.config)
        except BaseException as exc:  # handed to the test's thread by result()
            self.error = exc

    def result(self, timeout_s: float = 600) -> tuple[bool, dict[str, Any]]:
        wait_for(
            f"release {self.config.release_id} to end",
            lambda: not self.thread.is_alive(),
            timeout_s=timeout_s,
        )
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome

    def paused_run(self, timeout_s: float = 600) -> FlowRun:
        """The release's flow run once it is paused for approval."""
        name = run_name(self.config.endpoint.name, self.config.release_id)

        def paused() -> FlowRun | None:
            if not self.thread.is_alive():
                pytest.fail(
                    f"release {self.config.release_id} ended without pausing: {self.outcome or self.error}"
                )
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
                )
            found = [r for r in runs if r.state is not None and r.state.is_paused()]
            return found[0] if found else None

        run: FlowRun = wait_for(f"release {self.config.release_id} to pause", paused, timeout_s=timeout_s)
        return run


def artifacts(endpoint: str, release_id: str) -> list[str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"release-{endpoint}"]))
        )
    return [str(a.data) for a in found if f"# Release `{release_id}`" in str(a.data)]


def assert_the_ui_can_show_the_form(run: FlowRun, release_id: str) -> None:
    """What the UI reads for the Resume form: the Paused state's keyset and the schema stored under it."""
    assert run.state is not None
    keyset = run.state.state_details.run_input_keyset
    assert keyset is not None, "a Paused state without a run input keyset shows no form"
    with get_client(sync_client=True) as client:
        schema = client.read_flow_run_input(flow_run_id=run.id, key=keyset["schema"])
        description = client.read_flow_run_input(flow_run_id=run.id, key=keyset["description"])
    assert '"promote"' in schema and '"roll_back"' in schema and '"Decided by"' in schema, schema
    # The markdown the UI shows above the form names the release and what a timeout does.
    assert release_id in description and "rolls back by itself" in description, description


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("approval")


@pytest.fixture(scope="module")
def first_release(e2e: E2E, models: Path) -> dict[str, Any]:
    """The approve endpoint on model v1, created without approval."""
    ok, summary = run_release(approval_config(e2e, "v1", model_folder(models, 1)))
    assert ok, summary["error"]
    return summary


def test_a_promoted_canary_goes_live_and_the_decision_is_in_the_artifact_and_the_ledger(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("approve")
    config = approval_config(e2e, "v2", model_folder(models, 2), approval="manual", approval_timeout_s=600)
    release = Background(config)
    run = release.paused_run()
    assert_the_ui_can_show_the_form(run, config.require_release_id)
    # Before the pause, the artifact shows the canary for the approver to judge.
    waiting = artifacts(endpoint, config.require_release_id)
    assert any("**awaiting approval**" in a and "**50%** of traffic on the new model" in a for a in waiting)
    assert version_served(endpoint) in (1.0, 2.0)  # both serve while the run waits

    resume_flow_run(run.id, run_input={"decision": "promote", "comment": "p99 flat", "decided_by": "alice"})
    ok, summary = release.result()

    assert ok, summary["error"]
    assert summary["rollout"]["approval"] == {
        "decision": "promote",
        "decided_by": "alice",
        "comment": "p99 flat",
        "waited_s": summary["rollout"]["approval"]["waited_s"],
    }
    assert version_served(endpoint) == 2.0
    assert serving_config(endpoint) == f"InService {summary['endpoint_config_name']}"
    assert any(
        "**Approval**: promoted by alice after" in a and "p99 flat" in a
        for a in artifacts(endpoint, summary["release_id"])
    )
    assert ledger(e2e.bucket, summary["release_id"])["meta"]["approval"]["decided_by"] == "alice"


def test_a_rolled_back_canary_puts_the_endpoint_back_on_its_config(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("approve")
    before, served_before = serving_config(endpoint), version_served(endpoint)
    config = approval_config(e2e, "v3", model_folder(models, 3), approval="manual", approval_timeout_s=600)
    release = Background(config)
    run = release.paused_run()
    resume_flow_run(run.id, run_input={"decision": "roll_back", "comment": "errors up", "decided_by": "bob"})
    ok, summary = release.result()

    assert not ok
    assert "ReleaseRejected" in summary["error"] and "bob" in summary["error"], summary["error"]
    assert summary["rollout"]["outcome"] == "rolled back"
    assert (summary["rollout"]["approval"]["decision"], summary["rollout"]["approval"]["comment"]) == (
        "roll_back",
        "errors up",
    )
    assert_back_on(e2e, summary, before, served_before)
    assert any("**Approval**: rolled back by bob" in a for a in artifacts(endpoint, summary["release_id"]))


def test_nobody_deciding_rolls_back_at_the_approval_timeout(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("approve")
    before, served_before = serving_config(endpoint), version_served(endpoint)
    config = approval_config(e2e, "v4", model_folder(models, 4), approval="manual", approval_timeout_s=60)
    release = Background(config)
    release.paused_run()
    ok, summary = release.result()

    assert not ok
    assert "ReleaseRejected" in summary["error"] and "timeout" in summary["error"], summary["error"]
    decided = summary["rollout"]["approval"]
    assert (decided["decision"], decided["decided_by"]) == ("roll_back", "timeout")
    assert 60 <= decided["waited_s"] < 120
    assert_back_on(e2e, summary, before, served_before)
    assert ledger(e2e.bucket, summary["release_id"])["meta"]["approval"]["decided_by"] == "timeout"
    # The run left the pause with the release's own decision as its input.
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[run_name(endpoint, config.release_id)])
            )
        )
        assert runs and runs[0].state is not None and not runs[0].state.is_paused()


def test_an_alarm_during_the_pause_rolls_back_without_waiting_for_anyone(
    e2e: E2E, models: Path, first_release: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("approve")
    before, served_before = serving_config(endpoint), version_served(endpoint)
    folder = model_folder(models, 5, fail_on="fail")
    config = approval_config(
        e2e, "v5", folder, payloads=FAILING_PAYLOADS, approval="manual", approval_timeout_s=900
    )
    release = Background(config)
    run = release.paused_run()
    ok, summary = release.result(timeout_s=300)  # well before the 900 s timeout: nobody resumed it

    assert not ok
    alarm = naming.alarm_name(config, config.require_release_id, "5xx")
    assert "AlarmFired" in summary["error"] and alarm in summary["error"], summary["error"]
    assert summary["rollout"]["approval"]["decided_by"] == "alarm"
    assert_back_on(e2e, summary, before, served_before)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(str(run.id))).state
    assert state is not None and not state.is_paused()


def assert_back_on(e2e: E2E, summary: dict[str, Any], before: str | None, served_before: float) -> None:
    endpoint = e2e.endpoint("approve")
    steps = summary["rollout"]["steps"]
    assert [s["outcome"] for s in steps] == ["passed", "rolled back"], steps
    assert serving_config(endpoint) == before
    assert version_served(endpoint) == served_before
    assert ledger(e2e.bucket, summary["release_id"])["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, summary["release_id"]) == []
    assert resources_of_release(summary["release_id"], e2e.bucket) == []
