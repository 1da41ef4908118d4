"""The manual approval gate: its config, its wait under the alarms, the rollout's pause, the artifact line.

The gate itself is a fake here (the Prefect pause is proven against a real server in
tests/e2e/test_approval.py); the alarms are moto's, the endpoint is the SageMaker double."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.core.errors import AlarmFired, ConfigError
from tasks.lifecycle.ledger import Ledger
from tasks.report.summary import ReleaseReport
from tasks.rollout.approval import (
    Approval,
    ApprovalRecord,
    ApprovalUnavailable,
    ReleaseRejected,
    await_approval,
)
from tasks.rollout.bake_traffic import BakeTraffic
from tasks.rollout.planning import plan_rollout
from tasks.rollout.runner import Rollout, RolloutReport
from tasks.sagemaker import hosting
from tests.unit.deploy_helpers import local_ledger, make_config
from tests.unit.rollout.test_rollout import BASE_TIME, ENDPOINT, add_final_config, fire, rollout
from tests.unit.rollout_fakes import FakeClock, FakeSageMaker, StepClock, serving_old_model


class FakeGate:
    """Answers `answer` once polled `after` times (never when None); records what the release did."""

    def __init__(self, answer: Approval | None = None, *, after: int = 1) -> None:
        self.answer, self.after = answer, after
        self.opened: list[int] = []
        self.polls = 0
        self.closed: list[Approval] = []

    def open(self, timeout_s: int) -> None:
        self.opened.append(timeout_s)

    def poll(self) -> Approval | None:
        self.polls += 1
        return self.answer if self.answer is not None and self.polls >= self.after else None

    def close(self, decided: Approval) -> None:
        self.closed.append(decided)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, mocked_aws: None) -> Iterator[FakeSageMaker]:
    with serving_old_model(monkeypatch, ENDPOINT, instance_count=2) as double:
        yield double


def manual(count: int = 1, **rollout_settings: Any) -> Any:
    settings = {
        "strategy": "variant_shift",
        "steps": [20, 60],
        "bake_s": 40,
        "final_bake_s": 40,
        "alarms": {"period_s": 10},
        "approval": "manual",
        "approval_timeout_s": 600,
        **rollout_settings,
    }
    return make_config(endpoint={"instance_count": count}, rollout=settings)


# -- config -----------------------------------------------------------------------------------------


def test_approval_defaults_to_none_and_manual_takes_its_timeout_and_default() -> None:
    assert make_config().rollout.approval == "none"
    settings = manual().rollout
    assert (settings.approval, settings.approval_timeout_s, settings.on_approval_timeout) == (
        "manual",
        600,
        "roll_back",
    )


@pytest.mark.parametrize("strategy", ["canary", "linear", "all_at_once"])
def test_manual_approval_is_refused_with_strategies_sagemaker_steps(strategy: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(rollout={"strategy": strategy, "approval": "manual"})
    text = str(raised.value)
    assert "rollout.approval" in text and strategy in text
    assert "use rollout.strategy variant_shift or auto" in text


def test_the_approval_timeout_is_bounded() -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(rollout={"strategy": "variant_shift", "approval": "manual", "approval_timeout_s": 5})
    assert "approval_timeout_s" in str(raised.value)


def test_auto_with_manual_approval_steps_the_traffic_itself(fake: FakeSageMaker) -> None:
    live = hosting.live_endpoint(ENDPOINT)
    # Two instances on both sides: without approval auto picks a guardrails canary.
    assert plan_rollout(
        make_config(endpoint={"instance_count": 2}, rollout={"strategy": "auto"}), live
    ).strategy == ("canary")
    plan = plan_rollout(manual(2, strategy="auto", steps=None), live)
    assert plan.strategy == "variant_shift" and "manual approval" in plan.reason


# -- the wait ---------------------------------------------------------------------------------------


def test_the_wait_returns_the_approvers_decision() -> None:
    gate = FakeGate(Approval(decision="promote", comment=" p99 fine ", decided_by="alice"), after=3)
    clock = FakeClock(0.0)
    decided = await_approval(
        gate, timeout_s=600, on_timeout="roll_back", firing=list, interval_s=10, clock=clock
    )
    assert decided == ApprovalRecord("promote", "alice", "p99 fine", 20.0)
    assert gate.opened == [600] and gate.closed == []
    assert decided.line() == "promoted by alice after 20 s: p99 fine"


def test_an_alarm_during_the_wait_rolls_back_at_once_whatever_the_form_says() -> None:
    gate = FakeGate(Approval(decision="promote", decided_by="alice"), after=5)
    polls = iter([[], [], ["r1-5xx"]])
    decided = await_approval(
        gate,
        timeout_s=600,
        on_timeout="promote",
        firing=lambda: next(polls),
        interval_s=10,
        clock=FakeClock(0.0),
    )
    assert (decided.decision, decided.decided_by, decided.waited_s) == ("roll_back", "alarm", 20.0)
    assert "r1-5xx" in decided.comment
    # The run is resumed with the release's own decision, so the run's input records it.
    assert [(c.decision, c.decided_by) for c in gate.closed] == [("roll_back", "alarm")]


@pytest.mark.parametrize("on_timeout", ["roll_back", "promote"])
def test_nobody_deciding_applies_on_approval_timeout(on_timeout: Any) -> None:
    gate = FakeGate()
    decided = await_approval(
        gate, timeout_s=60, on_timeout=on_timeout, firing=list, interval_s=25, clock=FakeClock(0.0)
    )
    assert (decided.decision, decided.decided_by, decided.waited_s) == (on_timeout, "timeout", 60.0)
    assert gate.polls == 4  # at 0, 25, 50 and 60 s: the wait ends on time
    assert [c.decided_by for c in gate.closed] == ["timeout"]
    assert "approval timeout after 60 s" in decided.line()


# -- the rollout's pause ------------------------------------------------------------------------------


def run_with(
    gate: FakeGate, fake: FakeSageMaker, ledger: Ledger, clock: StepClock, **settings: Any
) -> Rollout:
    published: list[tuple[bool, list[float]]] = []

    def publish(report: RolloutReport) -> None:
        published.append((report.awaiting_approval, [s.weight_percent for s in report.steps]))

    runner = rollout(manual(**settings), fake, ledger, clock, gate=lambda: gate, before_approval=publish)
    runner.published = published  # type: ignore[attr-defined]
    return runner


def test_a_promoted_canary_goes_on_to_one_variant_and_the_decision_is_recorded(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    gate = FakeGate(Approval(decision="promote", comment="looks good", decided_by="alice"), after=2)
    ledger = local_ledger(tmp_path)
    runner = run_with(gate, fake, ledger, StepClock())
    report = runner.run()

    assert report.outcome == "completed" and report.approval is not None
    assert (report.approval.decision, report.approval.decided_by, report.approval.comment) == (
        "promote",
        "alice",
        "looks good",
    )
    # Published once, after the first step's bake and before the pause, for the approver to judge.
    assert runner.published == [(True, [20.0])]  # type: ignore[attr-defined]
    assert [s.weight_percent for s in report.steps] == [20.0, 60.0, 100.0]
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "demo-embedder-r1"
    assert Ledger.load(ledger.store).meta["approval"] == {
        "decision": "promote",
        "decided_by": "alice",
        "comment": "looks good",
        "waited_s": 10.0,
    }


def test_a_rolled_back_canary_sends_the_traffic_back_and_fails_the_release(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    gate = FakeGate(Approval(decision="roll_back", comment="p99 doubled", decided_by="bob"))
    ledger = local_ledger(tmp_path)
    runner = run_with(gate, fake, ledger, StepClock())
    with pytest.raises(ReleaseRejected) as raised:
        runner.run()

    assert (raised.value.decided_by, raised.value.comment) == ("bob", "p99 doubled")
    assert "bob" in str(raised.value) and ENDPOINT in str(raised.value)
    assert fake.weights(ENDPOINT) == {"AllTraffic": 1.0, "AllTraffic-r1": 0.0}
    report = runner.report
    assert report.outcome == "rolled back"
    assert [(s.weight_percent, s.outcome) for s in report.steps] == [(20.0, "passed"), (0.0, "rolled back")]
    assert ledger.meta["approval"]["decision"] == "roll_back"


def test_an_alarm_while_paused_rolls_back_as_an_alarm_does(fake: FakeSageMaker, tmp_path: Path) -> None:
    clock = StepClock()
    closed_at: list[float] = []

    class Unanswered(FakeGate):
        def close(self, decided: Approval) -> None:
            closed_at.append(clock.now)
            super().close(decided)

    gate = Unanswered()
    runner = run_with(gate, fake, local_ledger(tmp_path), clock)
    clock.at(200.0, lambda: fire("demo-embedder-r1-5xx"))  # well into the wait: the first bake is over

    with pytest.raises(AlarmFired) as raised:
        runner.run()

    assert raised.value.alarms == ("demo-embedder-r1-5xx",)
    assert fake.weights(ENDPOINT) == {"AllTraffic": 1.0, "AllTraffic-r1": 0.0}
    assert runner.report.approval is not None and runner.report.approval.decided_by == "alarm"
    # Rolled back within one poll interval of the alarm, not at the 600 s timeout.
    assert 200.0 <= closed_at[0] <= 201.0 and runner.report.approval.waited_s < 200
    assert [c.decided_by for c in gate.closed] == ["alarm"]


def test_an_unanswered_canary_rolls_back_at_the_timeout(fake: FakeSageMaker, tmp_path: Path) -> None:
    runner = run_with(FakeGate(), fake, local_ledger(tmp_path), StepClock(), approval_timeout_s=120)
    with pytest.raises(ReleaseRejected) as raised:
        runner.run()
    assert raised.value.decided_by == "timeout"
    assert fake.weights(ENDPOINT) == {"AllTraffic": 1.0, "AllTraffic-r1": 0.0}


def test_without_manual_approval_no_gate_is_asked(fake: FakeSageMaker, tmp_path: Path) -> None:
    def no_gate() -> Any:
        raise AssertionError("no approval was configured")

    runner = rollout(manual(approval="none"), fake, local_ledger(tmp_path), StepClock(), gate=no_gate)
    assert runner.run().approval is None


def test_a_new_endpoint_waits_after_its_bake_and_a_roll_back_leaves_it_to_the_unwind(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """No fleet served before: the approver judges the new endpoint's bake; rolling back fails the
    release, whose unwind deletes the endpoint (nothing to send traffic back to)."""
    config = manual(strategy="auto", steps=None)
    clock = StepClock()
    gate = FakeGate(Approval(decision="roll_back", comment="not today", decided_by="carol"))
    runner = Rollout(
        config,
        "r1",
        plan=plan_rollout(config, None),
        live=None,
        model_name="demo-embedder-r1",
        final_config="demo-embedder-r1",
        ledger=local_ledger(tmp_path),
        clock=clock,
        wall=lambda: BASE_TIME + clock.now,
        traffic=BakeTraffic([], lambda body: (None, 200), rate_per_s=0),
        gate=lambda: gate,
    )
    with pytest.raises(ReleaseRejected) as raised:
        runner.run()
    assert raised.value.decided_by == "carol" and gate.opened == [600]
    assert runner.report.strategy == "create" and runner.report.outcome == "rolled back"
    assert [(s.label, s.outcome) for s in runner.report.steps] == [("new endpoint", "passed")]
    assert fake.called("UpdateEndpoint") == []


def test_an_async_endpoint_waits_after_its_bake_and_a_roll_back_restores_its_config(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """auto on an async endpoint updates all at once (no variants to shift): the approver judges the
    bake, and rolling back puts the endpoint on the config it served."""
    config = make_config(
        endpoint={"type": "async", "async_inference": {"output_path": "s3://models-bucket/out/"}},
        rollout={
            "strategy": "auto",
            "bake_s": 0,
            "final_bake_s": 0,
            "alarms": {"period_s": 60},
            "approval": "manual",
            "approval_timeout_s": 60,
        },
    )
    live = hosting.live_endpoint(ENDPOINT)
    clock = StepClock()
    gate = FakeGate()  # nobody answers: on_approval_timeout rolls back
    runner = Rollout(
        config,
        "r1",
        plan=plan_rollout(config, live),
        live=live,
        model_name="demo-embedder-r1",
        final_config=add_final_config(fake),
        ledger=local_ledger(tmp_path),
        clock=clock,
        wall=lambda: BASE_TIME + clock.now,
        traffic=BakeTraffic([], lambda body: (None, 200), rate_per_s=0),
        gate=lambda: gate,
    )
    with pytest.raises(ReleaseRejected) as raised:
        runner.run()
    assert runner.report.strategy == "all_at_once" and raised.value.decided_by == "timeout"
    assert [c["EndpointConfigName"] for c in fake.called("UpdateEndpoint")] == [
        "demo-embedder-r1",
        "old-config",
    ]
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "old-config"
    assert [s.outcome for s in runner.report.steps] == ["passed", "rolled back"]


# -- the artifact -------------------------------------------------------------------------------------


def report_with(rollout_report: RolloutReport, status: str) -> ReleaseReport:
    report = ReleaseReport("r1", ENDPOINT, "realtime", status=status, rollout=rollout_report)
    return report


def test_the_artifact_shows_the_wait_then_the_decision_under_the_traffic_shift() -> None:
    shift = RolloutReport(
        ENDPOINT, "variant_shift", "variant_shift", "as configured", "AllTraffic-r1", "c", "o"
    )
    shift.awaiting_approval = True
    waiting = report_with(shift, "awaiting approval").markdown()
    assert "**awaiting approval**" in waiting and "**Approval**: waiting for a decision" in waiting

    shift.awaiting_approval = False
    shift.approval = ApprovalRecord("roll_back", "bob", "see [this](http://x) <b>now</b>", 42.0)
    done = report_with(shift, "failed").markdown()
    line = next(line for line in done.splitlines() if line.startswith("**Approval**"))
    assert done.index("## Traffic shift") < done.index(line)
    assert "rolled back by bob after 42 s" in line
    # The approver's words render as text: no link or HTML of theirs.
    assert "\\[this\\]\\(http://x\\)" in line and "\\<b\\>" in line


def test_a_run_that_cannot_pause_fails_before_the_endpoint_changes(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """Outside a flow run the Prefect pause is unavailable: the rollout refuses at once, with the
    endpoint untouched, instead of after its update and first bake."""
    runner = rollout(manual(), fake, local_ledger(tmp_path), StepClock())  # the real gate: PrefectPause
    with pytest.raises(ApprovalUnavailable):
        runner.run()
    changes = [name for name, _ in fake.calls if name.startswith(("Create", "Update", "Delete"))]
    assert changes == [] and runner.report.steps == []
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "old-config"
