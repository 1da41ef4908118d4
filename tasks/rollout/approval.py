"""The manual approval gate (`rollout.approval: manual`): a person promotes or rolls back the canary.

Once the first step has baked, the rollout pauses the flow run the way Prefect's `pause_flow_run` does
(a Paused state with a pause key and a run input schema), so the Prefect UI shows the run as paused with
a Resume form: the `Approval` fields, a decision dropdown, a comment and who decided. Unlike
`pause_flow_run`, which sleeps until the run resumes, `await_approval` keeps the rollout's own loop:
every poll interval it checks the rollback alarms, then whether the run was resumed. So an alarm still
rolls back at once, and when nobody decides within `approval_timeout_s` the release applies
`on_approval_timeout` itself; in both cases it resumes the run with that decision as its input, so the
run's record says what happened.

    gate = PrefectPause(release_id, endpoint=name, on_timeout="roll_back")  # or any ApprovalGate (tests)
    decided = await_approval(gate, timeout_s=..., on_timeout="roll_back", firing=..., interval_s=...,
                             clock=...)
    decided.promote          # False: the traffic goes back, ReleaseRejected is raised

Prefect OSS knows no user: `decided_by` is what the approver typed (or `alarm` / `timeout`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import FlowRunContext
from prefect.input import RunInput, keyset_from_paused_state
from prefect.states import Paused, Running, State
from prefect.utilities.engine import propose_state_sync
from pydantic import Field

from tasks.core.errors import ReleaseError
from tasks.core.logs import run_logger
from tasks.core.waiting import Clock

Decision = Literal["promote", "roll_back"]

# Who decided when no person did.
BY_ALARM = "alarm"
BY_TIMEOUT = "timeout"

# The Paused state's own timeout outlasts the release's by this much: the release resumes the run itself
# when its wait is over, and a server-side expiry first would turn that resume into a failed run.
PAUSE_GRACE_S = 300


class Approval(RunInput):
    """Promote the new model to all traffic, or send the traffic back to the previous model."""

    decision: Decision = Field(
        title="Decision",
        description="promote: the rollout goes on to 100% on the new model. roll_back: all traffic goes "
        "back to the previous model and the release fails.",
    )
    comment: str = Field("", title="Comment", description="Why; it goes into the release artifact.")
    decided_by: str = Field(
        "", title="Decided by", description="Your name: Prefect records no user, the release records this."
    )


@dataclass(frozen=True)
class ApprovalRecord:
    """The decision as the release artifact and the ledger keep it."""

    decision: Decision
    decided_by: str
    comment: str
    waited_s: float

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def line(self) -> str:
        verb = "promoted" if self.promote else "rolled back"
        who = self.decided_by or "someone who left no name"
        if self.decided_by == BY_TIMEOUT:
            text = f"{verb} by the approval timeout after {self.waited_s:.0f} s"
        elif self.decided_by == BY_ALARM:
            text = f"rolled back by an alarm after {self.waited_s:.0f} s of waiting for approval"
        else:
            text = f"{verb} by {who} after {self.waited_s:.0f} s"
        return f"{text}: {self.comment}" if self.comment else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReleaseRejected(ReleaseError):
    """The approver (or the approval timeout) rolled the release back; traffic is on the previous model."""

    endpoint: str
    decided_by: str
    comment: str

    def __init__(self, *, endpoint: str, decided_by: str, comment: str) -> None:
        who = decided_by or "the approver"
        because = f": {comment}" if comment else ""
        message = (
            f"ReleaseRejected on endpoint {endpoint}: rolled back by {who} at the approval gate{because}; "
            "traffic went back to the previous model"
        )
        super().__init__(message, endpoint=endpoint, decided_by=decided_by, comment=comment)


class ApprovalGate(Protocol):
    """Where the rollout asks for a decision: `open` shows the form, `poll` reads the answer (None: none
    yet), `close` ends the wait with a decision the release took itself (alarm, timeout)."""

    def open(self, timeout_s: int) -> None: ...

    def poll(self) -> Approval | None: ...

    def close(self, decided: Approval) -> None: ...


def await_approval(
    gate: ApprovalGate,
    *,
    timeout_s: int,
    on_timeout: Decision,
    firing: Callable[[], Sequence[str]],
    interval_s: float,
    clock: Clock,
) -> ApprovalRecord:
    """Wait for the approver, checking `firing()` (the names of alarms in ALARM) every `interval_s`.

    The alarms come first in each round: a decision to promote cannot outrun an alarm seen in the same
    round."""
    gate.open(timeout_s)
    started = clock.monotonic()
    while True:
        fired = list(firing())
        if fired:
            decided = Approval(
                decision="roll_back",
                comment=f"alarm(s) fired while waiting: {', '.join(fired)}",
                decided_by=BY_ALARM,
            )
            gate.close(decided)
            return _record(decided, clock.monotonic() - started)
        answer = gate.poll()
        if answer is not None:
            return _record(answer, clock.monotonic() - started)
        elapsed = clock.monotonic() - started
        if elapsed >= timeout_s:
            decided = Approval(
                decision=on_timeout,
                comment=f"no decision within {timeout_s} s (rollout.on_approval_timeout: {on_timeout})",
                decided_by=BY_TIMEOUT,
            )
            gate.close(decided)
            return _record(decided, elapsed)
        clock.sleep(min(interval_s, timeout_s - elapsed))


def _record(decided: Approval, waited_s: float) -> ApprovalRecord:
    return ApprovalRecord(decided.decision, decided.decided_by.strip(), decided.comment.strip(), waited_s)


class ApprovalUnavailable(ReleaseError):
    """The flow run could not be paused for approval (not a flow run, or the server refused)."""

    endpoint: str
    reason: str

    def __init__(self, *, endpoint: str, reason: str) -> None:
        super().__init__(
            f"ApprovalUnavailable on endpoint {endpoint}: cannot pause the flow run for approval ({reason}); "
            "fix: run the release as a Prefect flow run against a Prefect server, or set rollout.approval "
            "to none",
            endpoint=endpoint,
            reason=reason,
        )


class PrefectPause:
    """The gate as a paused Prefect flow run: the UI shows its Resume form with the `Approval` fields."""

    def __init__(self, release_id: str, *, endpoint: str, on_timeout: Decision) -> None:
        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            raise ApprovalUnavailable(endpoint=endpoint, reason="no flow run is active")
        self.flow_run_id: UUID = context.flow_run.id
        self.endpoint = endpoint
        self.release_id = release_id
        self.on_timeout = on_timeout
        # One pause per release: a retried task must not find the keys of an earlier pause taken.
        self.pause_key = f"approval-{release_id}"
        self.keyset: dict[Literal["description", "response", "schema"], str] | None = None

    def open(self, timeout_s: int) -> None:
        proposed: State[Any] = Paused(
            timeout_seconds=timeout_s + PAUSE_GRACE_S, reschedule=False, pause_key=self.pause_key
        )
        keyset = keyset_from_paused_state(proposed)
        proposed.state_details.run_input_keyset = cast(dict[str, str], keyset)
        with get_client(sync_client=True) as client:
            state = propose_state_sync(client=client, state=proposed, flow_run_id=self.flow_run_id)
        if not state.is_paused():
            raise ApprovalUnavailable(
                endpoint=self.endpoint, reason=f"the server answered {state.type.value}"
            )
        # The schema is what makes the UI offer the form (and the server validate what it sends); the
        # description is the markdown the UI shows above it.
        form = Approval.with_initial_data(description=self._description(timeout_s))
        form.save(keyset, flow_run_id=self.flow_run_id)
        self.keyset = keyset
        run_logger().info(
            "flow run %s is paused for approval: Resume it in the Prefect UI, or call "
            "prefect.flow_runs.resume_flow_run(%r, run_input={'decision': 'promote' or 'roll_back', "
            "'comment': ..., 'decided_by': ...})",
            self.flow_run_id,
            str(self.flow_run_id),
        )

    def _description(self, timeout_s: int) -> str:
        verb = "rolls back" if self.on_timeout == "roll_back" else "promotes"
        return (
            f"**Release `{self.release_id}` of `{self.endpoint}`**: the first step has baked. Judge it from "
            "the release artifact (Artifacts tab: steps, errors, p99), then **promote** (on to 100% on the "
            f"new model) or **roll back** (all traffic to the previous model). Without a decision within "
            f"{timeout_s} s the release {verb} by itself; an alarm rolls it back at once."
        )

    def poll(self) -> Approval | None:
        assert self.keyset is not None, "open() first"
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(self.flow_run_id)
        state = run.state
        if state is not None and state.is_paused():
            return None
        if state is not None and state.is_running():
            return cast(Approval, Approval.load(self.keyset, flow_run_id=self.flow_run_id))
        # Cancelled or failed while paused: nobody may promote this release any more.
        name = state.name if state is not None else "no state"
        return Approval(
            decision="roll_back", comment=f"the flow run left the pause as {name}", decided_by="prefect"
        )

    def close(self, decided: Approval) -> None:
        with get_client(sync_client=True) as client:
            response = client.resume_flow_run(self.flow_run_id, run_input=decided.model_dump())
            resumed = response.status == SetStateStatus.ACCEPT
            run = client.read_flow_run(self.flow_run_id)
            if not resumed and run.state is not None and run.state.is_paused():
                # The server refused the input (say, a pause already past its own timeout): the flow must
                # run again for the rollback and the unwind, whatever the server thinks of the pause.
                client.set_flow_run_state(self.flow_run_id, Running(), force=True)
