"""The rollout: move an endpoint's traffic to the new model in steps, under alarms.

`Rollout(...).run()` carries out a `RolloutPlan` (tasks/rollout/planning.py) once the release's model and
its final single-variant endpoint config exist:

* `create`: the flow created the endpoint; it bakes under the alarms for `final_bake_s`.
* guardrails (`all_at_once`, `canary`, `linear`): UpdateEndpoint with a DeploymentConfig; SageMaker
  shifts, bakes and rolls back by itself; the rollout watches (alarm states, the deployment's
  ActivatingTraffic/Baking phases) and reports. A rollback by SageMaker raises AlarmFired naming the
  alarm when one fired, else EndpointRolledBack.
* `variant_shift`: a staging config with the live variant(s) plus the new model as a second variant
  at weight 0; UpdateEndpointWeightsAndCapacities moves the new variant's share through the steps,
  each baked; an alarm sends all traffic back to the old variant(s) and raises AlarmFired; success
  ends on the final single-variant config (the previous release's config stays for rollback).

Every step is recorded as a `StepRecord` (weight, invocations, errors, p99, alarm states); the list in
`RolloutReport.steps` is what the release artifact renders (tasks/report/rollout_chart.py). The ledger
records the endpoint update before it starts, so unwinding the release puts the endpoint back on the
config it served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tasks.checks.smoke import encode
from tasks.config import ReleaseConfig, RolloutStrategy, naming
from tasks.core.errors import AlarmFired, EndpointRolledBack, ResourceFailed
from tasks.core.logs import run_logger
from tasks.core.purpose import ROLLOUT_STAGING, purpose_tag
from tasks.core.waiting import Clock, SystemClock, poll_until
from tasks.lifecycle.kinds import SAGEMAKER_ENDPOINT
from tasks.lifecycle.ledger import Ledger
from tasks.rollout import alarms, approval, step_metrics
from tasks.rollout.approval import ApprovalGate, ApprovalRecord, PrefectPause, ReleaseRejected
from tasks.rollout.bake_traffic import BakeTraffic, runtime_invoker
from tasks.rollout.planning import RolloutPlan, Strategy, deployment_config, shifted_weights
from tasks.sagemaker import hosting, lookup, scaling
from tasks.sagemaker.endpoint_spec import endpoint_config_request, kept_data_capture, production_variant
from tasks.sagemaker.hosting import LiveEndpoint

# How one step ended, and how the whole rollout stands: closed sets the JSON summary reports as is.
StepOutcome = Literal["passed", "alarm", "rolled back"]
RolloutOutcome = Literal["running", "completed", "rolled back"]
P99Source = Literal["cloudwatch", "bake traffic"]


@dataclass
class StepRecord:
    """One traffic step as the release artifact shows it."""

    index: int
    label: str
    weight_percent: float  # share of traffic on the new model during this step
    started_at: float  # epoch seconds
    ended_at: float
    invocations: int | None = None  # CloudWatch Invocations of the variant serving the new model
    errors_5xx: int | None = None
    errors_4xx: int | None = None
    p99_ms: float | None = None
    p99_source: P99Source | None = None
    bake_requests: int = 0
    alarm_states: dict[str, str] = field(default_factory=dict)
    outcome: StepOutcome = "passed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RolloutReport:
    """How the rollout went, step by step; filled while it runs, so a failure reports its steps too."""

    endpoint: str
    strategy: Strategy
    requested: RolloutStrategy
    reason: str
    new_variant: str
    final_config: str
    previous_config: str | None
    guard_alarms: list[str] = field(default_factory=list)
    rollback_alarms: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    outcome: RolloutOutcome = "running"
    fired: list[str] = field(default_factory=list)
    awaiting_approval: bool = False  # paused for a person's decision (rollout.approval: manual)
    approval: ApprovalRecord | None = None  # the decision, once taken

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [s.as_dict() for s in self.steps]}


class Rollout:
    """Runs one plan; keep the object to read `report` even when `run` raises."""

    def __init__(
        self,
        config: ReleaseConfig,
        release_id: str,
        *,
        plan: RolloutPlan,
        live: LiveEndpoint | None,
        model_name: str,
        final_config: str,
        ledger: Ledger,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        traffic: BakeTraffic | None = None,
        before_traffic: Callable[[str], None] | None = None,
        on_step: Callable[[RolloutReport], None] | None = None,
        before_approval: Callable[[RolloutReport], None] | None = None,
        gate: Callable[[], ApprovalGate] | None = None,
    ) -> None:
        self.config = config
        self.release_id = release_id
        self.plan = plan
        self.live = live
        self.model_name = model_name
        self.final_config = final_config
        self.ledger = ledger
        self.clock = clock or SystemClock()
        self.wall = wall
        self.before_traffic = before_traffic
        self.on_step = on_step
        self.before_approval = before_approval
        self.gate = gate or (
            lambda: PrefectPause(
                release_id, endpoint=config.endpoint.name, on_timeout=config.rollout.on_approval_timeout
            )
        )
        self._approval_gate: ApprovalGate | None = None  # made by `run`, with rollout.approval manual
        self.endpoint = config.endpoint.name
        self.interval_s = config.timeouts.poll_interval_s
        self.timeout_s = float(config.timeouts.endpoint_s)
        new_variant = (
            naming.variant_name(config, release_id)
            if plan.strategy == "variant_shift"
            else config.endpoint.variant_name
        )
        self.report = RolloutReport(
            endpoint=self.endpoint,
            strategy=plan.strategy,
            requested=plan.requested,
            reason=plan.reason,
            new_variant=new_variant,
            final_config=final_config,
            previous_config=live.config_name if live else None,
        )
        # The endpoint config whose fleet serves the new model: its EndpointConfigName keeps the old
        # fleet's metrics out of the guard alarms and the step figures (the staging config while a
        # variant shift runs, the release's own config otherwise).
        self.fleet_config = final_config
        self.traffic = traffic if traffic is not None else self._default_traffic()
        self.log = run_logger()
        self._fired_reasons: list[str] = []

    def _default_traffic(self) -> BakeTraffic:
        smoke = self.config.smoke
        payloads = self.config.rollout.bake_traffic.payloads or smoke.payloads
        return BakeTraffic(
            [encode(p) for p in payloads],
            runtime_invoker(self.endpoint, content_type=smoke.content_type, accept=smoke.accept),
            rate_per_s=self.config.rollout.bake_traffic.rate_per_s,
            wall=self.wall,
        )

    # -- entry point --------------------------------------------------------------------------------

    def run(self) -> RolloutReport:
        self.log.info(
            "rollout of %s: %s (%s), traffic on the new model: %s",
            self.endpoint,
            self.plan.strategy,
            self.plan.reason,
            " -> ".join(f"{percent:g}%" for percent in self.plan.steps),
        )
        alarms.require_extra_alarms(self.config)
        if self.config.rollout.approval == "manual":
            # Before the endpoint changes: a run that cannot pause (ApprovalUnavailable) must fail while
            # the endpoint still serves as before, not after its update and first bake.
            self._approval_gate = self.gate()
        try:
            with self.traffic:  # stops the bake traffic however the rollout ends
                if self.plan.strategy == "create":
                    self._bake_new_endpoint()
                elif self.plan.strategy == "variant_shift":
                    self._variant_shift()
                elif self.config.endpoint.type == "realtime":
                    self._guardrails()
                else:
                    self._update_then_bake()
        except (AlarmFired, ReleaseRejected):
            self.report.outcome = "rolled back"
            raise
        self.report.outcome = "completed"
        return self.report

    # -- alarms -------------------------------------------------------------------------------------

    def _arm(self, variant: str) -> list[str]:
        """Create the guard alarms on `variant`. Async endpoints get them too: SageMaker publishes their
        Invocation5XXErrors and ModelLatency (not their Invocations), which is what the alarms watch."""
        guard = alarms.create_guard_alarms(
            self.config,
            self.release_id,
            endpoint=self.endpoint,
            variant=variant,
            config_name=self.fleet_config,
            ledger=self.ledger,
        )
        self.report.guard_alarms = guard
        self.report.rollback_alarms = alarms.rollback_alarm_names(self.config, guard)
        return self.report.rollback_alarms

    def _await_quiet_alarms(self, names: list[str]) -> None:
        """Before an update of a variant the old fleet shares, the rollback alarms must be judged and OK."""
        settings = self.config.rollout.alarms
        window_s = settings.period_s * settings.evaluation_periods
        alarms.await_quiet(
            names,
            endpoint=self.endpoint,
            timeout_s=min(self.timeout_s, 2 * window_s + 60),
            interval_s=self.interval_s,
            clock=self.clock,
        )

    def add_step(self, step: StepRecord) -> None:
        self.report.steps.append(step)  # the one place steps are added
        if self.on_step is not None:
            self.on_step(self.report)

    def traffic_duration(self, bake_s: float | None) -> float | None:
        """How long bake traffic runs in a bake: the config's duration_s, never past the bake."""
        duration = self.config.rollout.bake_traffic.duration_s
        if duration is None:
            return bake_s
        return float(duration) if bake_s is None else min(float(duration), bake_s)

    def alarm_states(self) -> list[alarms.AlarmState]:
        return alarms.alarm_states(self.report.rollback_alarms)

    # -- create: bake the new endpoint ---------------------------------------------------------------

    def _bake_new_endpoint(self) -> None:
        self._arm(self.report.new_variant)
        step = self._bake(0, "new endpoint", 100.0, self.plan.final_bake_s)
        if step.outcome == "alarm":
            # Nothing served before: the release's unwind deletes the endpoint.
            raise self._alarm_fired()
        decided = self._await_approval()
        if decided is not None and not decided.promote:
            raise self._rejected(decided)  # the unwind deletes the endpoint, as after an alarm

    # -- variant shift ------------------------------------------------------------------------------

    def _variant_shift(self) -> None:
        assert self.live is not None
        new_variant = self.report.new_variant
        old_weights = self._current_weights()
        staging = self._create_staging_config(new_variant, old_weights)
        self.fleet_config = staging
        self._arm(new_variant)
        hosting.update_endpoint(
            self.endpoint,
            staging,
            previous_config=self.live.config_name,
            ledger=self.ledger,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
            clock=self.clock,
        )
        if self.before_traffic is not None:
            self.before_traffic(new_variant)
        for index, percent in enumerate(self.plan.steps):
            self._set_weights(shifted_weights(old_weights, new_variant, percent), staging)
            last = index == len(self.plan.steps) - 1
            seconds = self.plan.final_bake_s if last else self.plan.bake_s
            step = self._bake(index, f"{percent:g}% on the new model", percent, seconds)
            decided = self._await_approval() if index == 0 and step.outcome == "passed" else None
            if step.outcome == "alarm" or (decided is not None and not decided.promote):
                self._set_weights({**old_weights, new_variant: 0.0}, staging)
                self._record_rollback(len(self.report.steps))
                raise self._alarm_fired() if decided is None else self._rejected(decided)
        self._finish_on_final_config()
        hosting.delete_endpoint_config(staging)
        self.log.info("deleted the staging endpoint config %s", staging)

    def _current_weights(self) -> dict[str, float]:
        described = lookup.endpoint(self.endpoint)
        return {
            str(v["VariantName"]): float(v.get("CurrentWeight", v.get("DesiredWeight", 1.0)))
            for v in described.get("ProductionVariants", [])
        }

    def _create_staging_config(self, new_variant: str, old_weights: Mapping[str, float]) -> str:
        """The live config's variants at their current weights and capacity, plus the new one at 0."""
        assert self.live is not None
        live_config = lookup.endpoint_config(self.live.config_name)
        capacity = hosting.current_instance_counts(lookup.endpoint(self.endpoint))
        variants = []
        for spec in live_config["ProductionVariants"]:
            kept = {k: v for k, v in spec.items() if k not in ("ManagedInstanceScaling", "RoutingConfig")}
            kept["InitialVariantWeight"] = old_weights.get(
                spec["VariantName"], spec.get("InitialVariantWeight", 1.0)
            )
            serving = capacity.get(spec["VariantName"])
            if serving and "InitialInstanceCount" in kept:
                kept["InitialInstanceCount"] = serving  # keep what autoscaling set
            variants.append(kept)
        variants.append(
            production_variant(
                self.config,
                self.model_name,
                variant_name=new_variant,
                weight=0.0,
                instance_count=self.plan.instance_count,
            )
        )
        # The release's own request (data capture kept, the new variant's sub-minute metrics for the
        # alarms), under a name and a purpose tag of its own: a staging config is never a rollback target.
        request = endpoint_config_request(
            self.config, self.release_id, variants, data_capture=kept_data_capture(self.live)
        )
        name = naming.endpoint_config_name(self.config, self.release_id, "shift")
        request["EndpointConfigName"] = name
        request["Tags"] = [*request["Tags"], purpose_tag(ROLLOUT_STAGING)]
        hosting.create_endpoint_config(request, self.ledger, endpoint=self.endpoint)
        return name

    def _set_weights(self, weights: Mapping[str, float], staging: str) -> None:
        self.log.info(
            "weights of %s: %s", self.endpoint, ", ".join(f"{name} {w:g}" for name, w in weights.items())
        )
        hosting.send_variant_weights(self.endpoint, weights)
        hosting.wait_for_endpoint(
            self.endpoint,
            expect_config=staging,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
            clock=self.clock,
        )

    def _finish_on_final_config(self) -> None:
        """Move from the staging config to the release's single-variant config; re-point the alarms."""
        assert self.live is not None
        current = hosting.live_endpoint(self.endpoint)
        final = lookup.endpoint_config(self.final_config)
        if current is not None:
            scaling.suspend_for_update(current, final["ProductionVariants"], self.ledger)
        hosting.update_endpoint(
            self.endpoint,
            self.final_config,
            previous_config=self.live.config_name,
            ledger=self.ledger,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
            clock=self.clock,
        )
        serving = str(final["ProductionVariants"][0]["VariantName"])
        self.fleet_config = self.final_config
        alarms.retarget_guard_alarms(
            self.config,
            self.release_id,
            endpoint=self.endpoint,
            variant=serving,
            config_name=self.final_config,
        )

    # -- guardrails (SageMaker shifts, we watch) ----------------------------------------------------

    def _guardrails(self) -> None:
        assert self.live is not None
        names = self._arm(self.report.new_variant)
        self._await_quiet_alarms(names)
        request = deployment_config(self.plan, names, provisioning_s=self.timeout_s)
        final = lookup.endpoint_config(self.final_config)
        scaling.suspend_for_update(self.live, final["ProductionVariants"], self.ledger)
        self.ledger.record(
            SAGEMAKER_ENDPOINT,
            self.endpoint,
            config=self.final_config,
            previous_config=self.live.config_name,
            created=False,
        )
        hosting.send_endpoint_update(self.endpoint, self.final_config, deployment_config=request)
        self.log.info("updating %s with deployment guardrails: %s", self.endpoint, request)
        self.traffic.start(self.traffic_duration(None))
        watcher = _DeploymentWatcher(self)
        limit = request["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] + self.timeout_s
        described = poll_until(
            lambda: lookup.endpoint(self.endpoint),
            is_done=lambda d: d["EndpointStatus"] not in hosting.TRANSITIONAL,
            failure_reason=lambda d: None,
            status_of=lambda d: str(d["EndpointStatus"]),
            resource=f"endpoint {self.endpoint}",
            timeout_s=limit,
            interval_s=self.interval_s,
            clock=self.clock,
            on_progress=lambda d, _: watcher.observe(d),
        )
        watcher.close()
        if (
            described["EndpointStatus"] == "InService"
            and described["EndpointConfigName"] == self.final_config
        ):
            return
        self._record_rollback(len(self.report.steps))
        if watcher.fired or self._firing():
            raise self._alarm_fired(watcher.fired)
        if described["EndpointStatus"] != "InService":
            raise ResourceFailed(
                f"endpoint {self.endpoint}",
                str(described["EndpointStatus"]),
                str(described.get("FailureReason") or "no FailureReason given"),
            )
        raise EndpointRolledBack(
            self.endpoint,
            self.final_config,
            str(described["EndpointConfigName"]),
            reason=str(described.get("FailureReason") or ""),
        )

    def _update_then_bake(self) -> None:
        """Serverless and async endpoints: update at once, bake, go back on an alarm."""
        assert self.live is not None
        self._await_quiet_alarms(self._arm(self.report.new_variant))
        final = lookup.endpoint_config(self.final_config)
        # An async endpoint scaled on a variant the update removes or re-types: SageMaker refuses the
        # update until that variant is off Application Auto Scaling.
        scaling.suspend_for_update(self.live, final["ProductionVariants"], self.ledger)
        hosting.update_endpoint(
            self.endpoint,
            self.final_config,
            previous_config=self.live.config_name,
            ledger=self.ledger,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
            clock=self.clock,
        )
        step = self._bake(0, "all at once", 100.0, max(self.plan.bake_s, self.plan.final_bake_s))
        decided = self._await_approval() if step.outcome == "passed" else None
        if step.outcome == "alarm" or (decided is not None and not decided.promote):
            hosting.restore_endpoint(
                self.endpoint,
                self.live.config_name,
                timeout_s=self.timeout_s,
                interval_s=self.interval_s,
                clock=self.clock,
            )
            self._record_rollback(1)
            raise self._alarm_fired() if decided is None else self._rejected(decided)

    # -- manual approval ------------------------------------------------------------------------------

    def _await_approval(self) -> ApprovalRecord | None:
        """With rollout.approval manual: the report published, wait for the decision under the alarms.

        None when no approval is asked for. The bake traffic goes on while the run waits, so the alarms
        keep judging the new model; an alarm decides `roll_back` at once (report.fired names it)."""
        settings = self.config.rollout
        gate = self._approval_gate
        if gate is None:
            return None
        self.report.awaiting_approval = True
        self.log.info(
            "release %s of %s waits for approval (up to %d s, then %s): resume its flow run with a decision",
            self.release_id,
            self.endpoint,
            settings.approval_timeout_s,
            settings.on_approval_timeout,
        )
        if self.before_approval is not None:
            self.before_approval(self.report)  # the approver judges from the artifact this publishes
        self.traffic.start(self.traffic_duration(float(settings.approval_timeout_s)))
        try:
            decided = approval.await_approval(
                gate,
                timeout_s=settings.approval_timeout_s,
                on_timeout=settings.on_approval_timeout,
                firing=lambda: [s.name for s in self._firing()],
                interval_s=self.interval_s,
                clock=self.clock,
            )
        finally:
            self.traffic.stop()
            self.report.awaiting_approval = False
        self.report.approval = decided
        self.ledger.set_meta(approval=decided.as_dict())
        self.log.info("approval of release %s: %s", self.release_id, decided.line())
        if self.on_step is not None:
            self.on_step(self.report)
        return decided

    def _rejected(self, decided: ApprovalRecord) -> AlarmFired | ReleaseRejected:
        if decided.decided_by == approval.BY_ALARM:
            return self._alarm_fired()
        return ReleaseRejected(endpoint=self.endpoint, decided_by=decided.decided_by, comment=decided.comment)

    # -- baking and recording ---------------------------------------------------------------------

    def _bake(self, index: int, label: str, percent: float, seconds: float) -> StepRecord:
        """Wait out one step, checking the alarms every poll interval; record what happened."""
        started_wall, started = self.wall(), self.clock.monotonic()
        latest: dict[str, str] = {}
        firing: list[alarms.AlarmState] = []
        self.traffic.start(self.traffic_duration(seconds))
        while True:
            states = self.alarm_states()
            latest.update({s.name: s.state for s in states})
            firing = [s for s in states if s.firing]
            elapsed = self.clock.monotonic() - started
            if firing or elapsed >= seconds:
                break
            self.clock.sleep(min(self.interval_s, seconds - elapsed))
        self.traffic.stop()
        step = self.measure(index, label, percent, started_wall, self.wall(), latest)
        if firing:
            step.outcome = "alarm"
            self.report.fired = [s.name for s in firing]
            self._fired_reasons = [s.reason for s in firing]
            self.log.warning(
                "alarm during step %d of %s: %s", index + 1, self.endpoint, "; ".join(s.name for s in firing)
            )
        self.add_step(step)
        return step

    def measure(
        self, index: int, label: str, percent: float, start: float, end: float, states: dict[str, str]
    ) -> StepRecord:
        variant = self.report.new_variant
        window = step_metrics.variant_window(
            self.endpoint, variant, start, end, config_name=self.fleet_config
        )
        bake = self.traffic.summary(start, end, variant if self.plan.strategy == "variant_shift" else None)
        source: P99Source = "cloudwatch"
        p99 = window.p99_ms
        if p99 is None and bake.p99_ms is not None:
            p99, source = bake.p99_ms, "bake traffic"
        return StepRecord(
            index=index,
            label=label,
            weight_percent=percent,
            started_at=start,
            ended_at=end,
            invocations=window.invocations,
            errors_5xx=window.errors_5xx,
            errors_4xx=window.errors_4xx,
            p99_ms=p99,
            p99_source=source if p99 is not None else None,
            bake_requests=self.traffic.summary(start, end).requests,
            alarm_states=dict(states),
        )

    def _record_rollback(self, index: int) -> None:
        now = self.wall()
        self.add_step(
            StepRecord(
                index=index,
                label="back to the previous model",
                weight_percent=0.0,
                started_at=now,
                ended_at=now,
                alarm_states={s.name: s.state for s in self.alarm_states()},
                outcome="rolled back",
            )
        )

    def _firing(self) -> list[alarms.AlarmState]:
        firing = [s for s in self.alarm_states() if s.firing]
        if firing:
            self.report.fired = [s.name for s in firing]
            self._fired_reasons = [s.reason for s in firing]
        return firing

    def _alarm_fired(self, seen: Mapping[str, str] | None = None) -> AlarmFired:
        if seen:
            names, reasons = list(seen), list(seen.values())
            self.report.fired = names
        else:
            names, reasons = list(self.report.fired), list(self._fired_reasons)
        return AlarmFired(names, reasons, endpoint=self.endpoint)


class _DeploymentWatcher:
    """Turns DescribeEndpoint polls during a guardrails update into step records.

    SageMaker reports the deployment's phases as VariantStatus entries (ActivatingTraffic, Baking)
    of PendingDeploymentSummary; each Baking phase is one step. Alarms that fire are remembered with
    their reasons, since by the time the rollback ends they may be OK again.

    Only alarms firing once traffic moves count: while the new fleet is provisioned it serves
    nothing, and a guard alarm created a moment ago may still judge the variant's previous period
    (e.g. the errors of a release rolled back just before), which says nothing of the new model.
    Without any traffic phase reported, every alarm seen firing counts.
    """

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self._fired_any: dict[str, str] = {}
        self._fired_with_traffic: dict[str, str] = {}
        self._traffic_moved = False
        self._open: tuple[float, float] | None = None  # (wall start, planned percent)
        self._phases_seen: set[tuple[str, str]] = set()
        self._states: dict[str, str] = {}
        self._started = rollout.wall()

    @property
    def fired(self) -> dict[str, str]:
        """Alarm name -> reason, of the alarms that fired while the new fleet had traffic."""
        return dict(self._fired_with_traffic if self._traffic_moved else self._fired_any)

    def observe(self, described: Mapping[str, Any]) -> None:
        phases = _phases(described)
        self._traffic_moved = self._traffic_moved or any(status in TRAFFIC_PHASES for status, _ in phases)
        for state in self.rollout.alarm_states():
            self._states[state.name] = state.state
            if state.firing:
                self._fired_any.setdefault(state.name, state.reason)
                if self._traffic_moved:
                    self._fired_with_traffic.setdefault(state.name, state.reason)
        for status, since in phases:
            key = (status, since)
            if key in self._phases_seen:
                continue
            self._phases_seen.add(key)
            if status == "Baking":
                self._close()
                index = len(self.rollout.report.steps)
                steps = self.rollout.plan.steps
                self._open = (self.rollout.wall(), steps[min(index, len(steps) - 1)])
                # Each bake gets its own bake traffic (duration_s applies per bake).
                self.rollout.traffic.stop()
                self.rollout.traffic.start(self.rollout.traffic_duration(float(self.rollout.plan.bake_s)))
            else:  # traffic moving, or the bake over (e.g. the old fleet's termination wait)
                self._close()

    def _close(self) -> None:
        if self._open is None:
            return
        start, percent = self._open
        self._open = None
        index = len(self.rollout.report.steps)
        step = self.rollout.measure(
            index, f"{percent:g}% of capacity", percent, start, self.rollout.wall(), self._states
        )
        if self.fired:
            step.outcome = "alarm"
        self.rollout.add_step(step)

    def close(self) -> None:
        self._close()
        if not self.rollout.report.steps:
            # The service told us nothing about its phases: one step for the whole update.
            step = self.rollout.measure(
                0, "whole update", 100.0, self._started, self.rollout.wall(), dict(self._states)
            )
            if self.fired:
                step.outcome = "alarm"
            self.rollout.add_step(step)


# VariantStatus values of a deployment whose new fleet takes (or gives back) traffic.
TRAFFIC_PHASES = frozenset({"ActivatingTraffic", "Baking"})


def _phases(described: Mapping[str, Any]) -> list[tuple[str, str]]:
    pending = described.get("PendingDeploymentSummary") or {}
    phases = []
    for variant in pending.get("ProductionVariants", []):
        for status in variant.get("VariantStatus", []):
            phases.append((str(status.get("Status")), str(status.get("StartTime"))))
    return phases
