"""The rollout as Prefect tasks (traffic shift and retiring earlier releases), for flows/release.py.

    plan = plan_traffic_shift(config, live)                 # before anything is created
    ...model and the release's single-variant endpoint config...
    if live is None: create_endpoint(...)                  # then shift_traffic bakes the new endpoint
    shift_traffic(config, release_id, plan=plan, live=live, model_name=…, final_config=…,
                  ledger=ledger, on_report=keep)
    ...after the release succeeded...
    retire_previous_releases(config, release_id, previous_config=live.config_name if live else None)

`shift_traffic` does the endpoint update itself (guardrails, or the variant shift) and records it in
the ledger, so the flow makes no other endpoint update. `on_report` receives the rollout's
report after every step and at the end, also when the rollout fails, so the release artifact can show
the shift (tasks/report/rollout_chart.py). With `rollout.approval: manual`, `before_approval` receives
it once the first step has baked, just before the run pauses for a decision (tasks/rollout/approval.py):
the flow publishes the artifact there, so the approver judges from the UI.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task

from tasks.config import ReleaseConfig
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.lifecycle.ledger import Ledger
from tasks.lifecycle.retention import Retired, delete_unkept_releases
from tasks.rollout import alarms, planning
from tasks.rollout.runner import Rollout, RolloutReport
from tasks.sagemaker import scaling
from tasks.sagemaker.hosting import LiveEndpoint


@task(name="plan-traffic-shift", **task_options(retries=0))
def plan_traffic_shift(config: ReleaseConfig, live: LiveEndpoint | None) -> planning.RolloutPlan:
    """The strategy and steps for this endpoint; ConfigError (with the fix) when they cannot work.
    An autoscaled endpoint's new fleet is sized from the capacity it serves on."""
    return planning.plan_rollout(config, live, fleet=scaling.fleet_size(config, live))


# No retries: a rollout that failed half-way has changed the endpoint; the ledger's unwind undoes it.
@task(name="shift-traffic", **task_options(retries=0))
def shift_traffic(
    config: ReleaseConfig,
    release_id: str,
    *,
    plan: planning.RolloutPlan,
    live: LiveEndpoint | None,
    model_name: str,
    final_config: str,
    ledger: Ledger,
    before_traffic: Callable[[str], None] | None = None,
    on_report: Callable[[RolloutReport], None] | None = None,
    before_approval: Callable[[RolloutReport], None] | None = None,
) -> RolloutReport:
    """Move the endpoint to `final_config` by the plan, under the release's alarms."""
    runner = Rollout(
        config,
        release_id,
        plan=plan,
        live=live,
        model_name=model_name,
        final_config=final_config,
        ledger=ledger,
        before_traffic=before_traffic,
        on_step=on_report,
        before_approval=before_approval,
    )
    try:
        return runner.run()
    finally:
        if on_report is not None:
            on_report(runner.report)


@task(name="retire-previous-releases", **task_options(retries=0))
def retire_previous_releases(
    config: ReleaseConfig, release_id: str, *, previous_config: str | None
) -> Retired:
    """Once the release stands: replace the earlier releases' guard alarms and delete what releases
    older than the kept ones left. Failures are logged and reported, never raised: the release succeeded,
    and a rerun finishes the job.

    Not earlier: until the release stands, an unwind may put the endpoint back on the previous release,
    whose guard alarms must still be there to watch it.
    """
    deleted: list[str] = []
    failed: list[str] = []
    try:
        deleted += [f"alarm {name}" for name in alarms.replace_earlier_guard_alarms(config, release_id)]
    except Exception as exc:
        failed.append(f"guard alarms of earlier releases: {type(exc).__name__}: {exc}")
    try:
        retired = delete_unkept_releases(
            config.endpoint.name,
            release_id,
            previous_config=previous_config,
            keep_previous=config.rollout.keep_previous,
            storage=config.storage,
        )
    except Exception as exc:
        failed.append(f"older releases of {config.endpoint.name}: {type(exc).__name__}: {exc}")
    else:
        deleted += retired.deleted
        failed += retired.failed
    for failure in failed:
        run_logger().warning("could not retire %s; fix: rerun the release, or delete it by hand", failure)
    return Retired(tuple(deleted), tuple(failed))
