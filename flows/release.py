"""The release flow: a model from the Hub (or a folder) to a live, autoscaled, smoke-tested endpoint.

    python -m flows.release --config releases/demo.yaml [--release-id ID] [--set endpoint.instance_count=2]

Exits non-zero when the release fails; the last line printed is the JSON summary. Everything the
release created is recorded in a ledger persisted in S3 and unwound when any step fails; an endpoint
that served before the release is put back on its previous config. Traffic moves to the new model by
the config's rollout strategy under the release's alarms (tasks/rollout/traffic_shift.py); an alarm rolls it
back. One release per endpoint at a time: a release that loses its endpoint lock stops before its next change
and unwinds (LeaseLost).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Failed, State

from flows import cli
from flows.run_names import config_endpoint_and_release_id, release_id_or_runs, release_run_name
from tasks.artifact import model_refs
from tasks.artifact.model_source import download_model
from tasks.artifact.packaging import package_model
from tasks.artifact.storage import ensure_bucket, upload_model
from tasks.checks.preflight import Preflight, check_confined_path, preflight
from tasks.checks.smoke import SmokeResult, smoke_test, smoke_test_variant
from tasks.config import (
    ReleaseConfig,
    check_value,
    load_config,
    naming,
    parse_override,
    secret_values,
    shown_value,
)
from tasks.core.errors import ConfigError, SmokeFailed
from tasks.core.logs import run_logger
from tasks.image.release_image import build_image, push_image
from tasks.lifecycle import unwind
from tasks.lifecycle.ledger import Ledger, S3LedgerStore
from tasks.lifecycle.lock import LEASE_EXPIRY_META, LEASE_META, Lease, endpoint_lock, use_shared_lease_storage
from tasks.report.events import emit_release_event
from tasks.report.summary import ReleaseReport, ReleaseSteps
from tasks.rollout.planning import RolloutPlan
from tasks.rollout.runner import RolloutReport
from tasks.rollout.traffic_shift import retire_previous_releases, shift_traffic
from tasks.sagemaker.deploy import (
    apply_scaling,
    create_endpoint,
    create_endpoint_config,
    create_model,
    create_topics,
    reconcile_scaling,
    run_transform_job,
    serves_release,
    updated_endpoint,
)
from tasks.sagemaker.hosting import LiveEndpoint, ModelData

DEFAULT_LOCK_WAIT_S = 900


def open_ledger(config: ReleaseConfig, release_id: str, *, lease: Lease) -> Ledger:
    """The release's ledger in S3 beside its model data, unwinding with the standard deleters.

    Its meta names the endpoint and the lease of the endpoint lock with its expiry, which is all
    `flows/cleanup.py` needs to clean up after a release whose worker died (and to refuse one that
    still runs). Every record checks the lease: a lost one stops the release at that point."""
    storage = config.storage
    store = S3LedgerStore.of_release(release_id, storage.bucket, storage.prefix)
    return Ledger.open(
        store,
        release_id,
        meta={
            "endpoint": config.endpoint.name,
            "endpoint_type": config.endpoint.type,
            LEASE_META: lease.id,
            LEASE_EXPIRY_META: _timestamp(lease.expires_at),
        },
        guard=lease.check,
        deleters=unwind.deleters(
            endpoint_timeout_s=config.timeouts.endpoint_s, poll_interval_s=config.timeouts.poll_interval_s
        ),
        keep=unwind.keep_in_use(config.endpoint.name if config.endpoint.type != "batch" else None),
    )


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _note_lease_expiry(ledger: Ledger) -> Callable[[datetime], None]:
    """A renewal listener: keep the lease's expiry in the ledger, where cleanup reads it."""

    def note(expires_at: datetime) -> None:
        ledger.set_meta(**{LEASE_EXPIRY_META: _timestamp(expires_at)})

    return note


@flow(name="release-model", flow_run_name=release_run_name, log_prints=True)
def release(config: ReleaseConfig, wait_for_lock_s: int = DEFAULT_LOCK_WAIT_S) -> dict[str, Any] | State:
    """Release a model to SageMaker end to end; the return value is the JSON summary of the release."""
    # The id the run was named with (flows/run_names.py), unless the config brings its own.
    config = config.with_release_id(release_id_or_runs(config.release_id))
    release_id = config.require_release_id
    report = ReleaseReport(release_id, config.endpoint.name, config.endpoint.type)
    log = run_logger()
    try:
        with endpoint_lock(config.endpoint.name, timeout_s=wait_for_lock_s) as lease:
            # Judged against the live endpoint under its lock, before a bucket, ledger or resource exists.
            try:
                checked = preflight(config)
            except ConfigError as exc:
                return _refused(report, exc)
            lease.check()
            ensure_bucket(config.storage)
            ledger = open_ledger(config, release_id, lease=lease)
            steps = ReleaseSteps(config.model.describe(), live=checked.live)
            stop_noting = lease.on_renewed(_note_lease_expiry(ledger))
            try:
                with ledger:
                    _release(
                        config,
                        release_id,
                        checked,
                        ledger,
                        steps,
                        lease.check,
                        before_approval=lambda _: report.publish_awaiting_approval(steps, ledger),
                    )
            finally:
                stop_noting()
                report.absorb_steps(steps)
                report.absorb_ledger(ledger)
            if report.action in ("created", "updated"):
                # Only once the release stands: with keep_previous off it deletes the unwind's target,
                # and the earlier release's guard alarms must still watch it if this one is unwound.
                if lease.lost:
                    # The release stands; deleting older releases' resources without the lock could race
                    # the next release, which retires them instead.
                    log.warning(
                        "release %s: lock lost after it finished; earlier releases not retired", release_id
                    )
                else:
                    retired = retire_previous_releases(
                        config, release_id, previous_config=report.previous_config
                    )
                    report.retired = retired.deleted
    except Exception as exc:
        secret_values.scrub(exc)  # before its text reaches the report, the log and the state message
        if isinstance(exc, SmokeFailed) and not _failed_before_traffic(report):
            report.smoke = _failed_smoke(exc)
        report.status = "failed"
        report.error = (
            f"{type(exc).__name__}: {exc}" if not str(exc).startswith(type(exc).__name__) else str(exc)
        )
        for note in getattr(exc, "__notes__", []):
            report.error += f" | {note}"
        log.error("release %s failed: %s", release_id, report.error, exc_info=exc)
        return Failed(message=report.error, data=_finish(report))
    report.status = "succeeded"
    summary = _finish(report)
    log.info("release %s succeeded: %s", release_id, report.summary_line())
    return summary


def _finish(report: ReleaseReport, **extra: Any) -> dict[str, Any]:
    """The release's last word: its artifact and its event (automations act on it); the summary they show."""
    report.publish()
    summary = {**report.summary(), **extra}
    emit_release_event(summary)
    return summary


def _failed_smoke(exc: SmokeFailed) -> SmokeResult:
    return SmokeResult(False, exc.requests or 0, exc.p50_ms, None, exc.failures)


def _failed_before_traffic(report: ReleaseReport) -> bool:
    return report.smoke_before_traffic is not None and not report.smoke_before_traffic.passed


def _smoke_before_traffic(config: ReleaseConfig, steps: ReleaseSteps) -> Callable[[str], None]:
    """The rollout's hook once the new variant serves at weight 0: smoke it there (variant_shift)."""

    def check(variant: str) -> None:
        try:
            steps.smoke_before_traffic = smoke_test_variant(config, variant)
        except SmokeFailed as exc:
            steps.smoke_before_traffic = _failed_smoke(exc)
            raise

    return check


def _refused(report: ReleaseReport, exc: ConfigError) -> State:
    """Pre-flight refused the config: bad input (status `invalid`, CLI exit 2), nothing was created."""
    report.status, report.error = "invalid", str(exc)
    run_logger().error("release %s refused before creating anything: %s", report.release_id, report.error)
    # The field, as the command lines' refusals name it (flows/cli.py), for scripts to point at.
    return Failed(message=report.error, data=_finish(report, field=exc.field))


def refuse(exc: ConfigError, *, endpoint: str, release_id: str) -> State:
    """A flow that runs the release as its subflow refused its input before the release started: it ends
    as a refused release does, with the `invalid` event and artifact of `endpoint`."""
    # The endpoint's type is in the config that was refused; the report shows a real-time endpoint's sections.
    return _refused(ReleaseReport(release_id, endpoint, "realtime"), exc)


def subflow_outcome(state: State) -> dict[str, Any] | State:
    """What a flow returns once its `release` subflow has ended: the summary, or a Failed state with it."""
    summary = state.result(raise_on_failure=False)
    if state.is_failed() or not isinstance(summary, dict):
        return Failed(message=state.message or "release failed", data=summary)
    return summary


def _release(
    config: ReleaseConfig,
    release_id: str,
    checked: Preflight,
    ledger: Ledger,
    steps: ReleaseSteps,
    safe_point: Callable[[], None],
    *,
    before_approval: Callable[[RolloutReport], None] | None = None,
) -> None:
    """The release, step by step: each task's result goes into `steps`, which the report reads once they
    stop. `safe_point()` runs before each step that creates or changes something (it raises LeaseLost
    once the endpoint lock is lost, and the ledger unwinds)."""
    tags = naming.tags(config, release_id)
    steps.snapshot = download_model(config.model, timeout_s=config.timeouts.download_s)
    steps.artifact = package_model(steps.snapshot, config.packaging)
    safe_point()
    steps.uploaded = upload_model(steps.artifact, config.storage, ledger, timeout_s=config.timeouts.upload_s)
    model_data = ModelData(steps.uploaded.model_data_url, steps.uploaded.compression)
    safe_point()
    built = build_image(
        config.image,
        instance_type=config.endpoint.instance_type,
        tags=tags,
        ledger=ledger,
        storage=config.storage,
    )
    safe_point()
    steps.image = push_image(built, ledger=ledger)
    safe_point()
    if config.endpoint.type == "batch":
        steps.model_name = create_model(
            config, release_id, image_uri=steps.image.uri, model_data=model_data, ledger=ledger
        )
        safe_point()
        steps.transform_job = run_transform_job(
            config, release_id, model_name=steps.model_name, ledger=ledger
        )
        return
    live, plan = checked.live, checked.plan
    assert plan is not None  # preflight plans every endpoint that is not batch
    if live is not None and serves_release(
        live, config, image_uri=steps.image.uri, model_data=model_data, count_managed=plan.capacity_from_live
    ):
        _note_unchanged(live)
        steps.unchanged = live
        model_refs.drop_own(ledger)
        safe_point()
        steps.scaling = reconcile_scaling(config, release_id, ledger)
    else:
        deploy(
            config,
            release_id,
            live,
            plan,
            model_data,
            steps.image.uri,
            ledger,
            steps,
            safe_point=safe_point,
            before_approval=before_approval,
        )
    safe_point()
    steps.smoke = smoke_test(config, release_id, ledger)


def deploy(
    config: ReleaseConfig,
    release_id: str,
    live: LiveEndpoint | None,
    plan: RolloutPlan,
    model_data: ModelData,
    image_uri: str,
    ledger: Ledger,
    steps: ReleaseSteps,
    *,
    safe_point: Callable[[], None] = lambda: None,
    before_approval: Callable[[RolloutReport], None] | None = None,
) -> None:
    """The endpoint (model, endpoint config, a new endpoint when there is none), the traffic shift under
    the release's alarms, and autoscaling (before a new endpoint's bake, after a serving one's update).
    `safe_point()` runs before each step (the lease check).

    `shift_traffic` bakes a new endpoint, or moves a serving one to the release's config by the plan
    (canary, linear, variant shift...) under the release's alarms, recording the update in the ledger;
    an alarm sends the traffic back and raises AlarmFired naming it.
    """
    topics = create_topics(config, release_id, ledger)
    safe_point()
    steps.model_name = create_model(
        config, release_id, image_uri=image_uri, model_data=model_data, ledger=ledger
    )
    safe_point()
    steps.endpoint_config_name = create_endpoint_config(
        config,
        release_id,
        model_name=steps.model_name,
        topics=topics,
        ledger=ledger,
        live=live,
        instance_count=plan.instance_count,
    )
    safe_point()
    if live is None:
        steps.endpoint = create_endpoint(
            config, release_id, config_name=steps.endpoint_config_name, ledger=ledger
        )
        safe_point()
        # A new endpoint has no update in progress, so autoscaling acts during its bake: the bake traffic is
        # the first load its policies see. An updated one is registered once the update is over (AWS
        # refuses scaling activities while an endpoint updates).
        steps.scaling = apply_scaling(config, release_id, ledger)
        safe_point()
    shift_traffic(
        config,
        release_id,
        plan=plan,
        live=live,
        model_name=steps.model_name,
        final_config=steps.endpoint_config_name,
        ledger=ledger,
        before_traffic=_smoke_before_traffic(config, steps),
        on_report=steps.keep_rollout,
        before_approval=before_approval,  # publishes the artifact the approver judges from
    )
    if live is not None:
        steps.endpoint = updated_endpoint(config.endpoint.name, previous=live)
        safe_point()
        steps.scaling = apply_scaling(config, release_id, ledger)


def _note_unchanged(live: LiveEndpoint) -> None:
    run_logger().info(
        "endpoint %s already serves this model and image on %s; nothing to deploy",
        live.name,
        live.config_name,
    )


@flow(name="nightly-redeploy", log_prints=True)
def nightly_redeploy(
    config_path: str = "releases/demo.yaml", wait_for_lock_s: int = 3600
) -> dict[str, Any] | State:
    """Release the config at `config_path` again (its Hub revision resolves to today's commit).

    When nothing changed this costs seconds: 0 bytes uploaded, no image built, no new endpoint config.
    """
    try:
        # The deployment's parameter: whoever runs it must not point it at any file of the worker.
        check_confined_path("config_path", config_path)
    except ConfigError as exc:
        return refuse(exc, endpoint=Path(config_path).stem, release_id=release_id_or_runs(None))
    try:
        config = load_config(config_path, path_field="config_path")
    except ConfigError as exc:
        endpoint, release_id = config_endpoint_and_release_id(Path(config_path))
        return refuse(
            exc, endpoint=endpoint or Path(config_path).stem, release_id=release_id_or_runs(release_id)
        )
    return subflow_outcome(release(config, wait_for_lock_s=wait_for_lock_s, return_state=True))


# --- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    identity: dict[str, Any] = {"release_id": None}
    return cli.run(lambda: _main(argv, identity), identity)


def _main(argv: list[str] | None, identity: dict[str, Any]) -> int:
    parser = cli.Parser(prog="python -m flows.release", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="release YAML, e.g. releases/demo.yaml")
    parser.add_argument("--release-id", help="id of this release (default: generated, time-sortable)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace one config value; VALUE is YAML (e.g. endpoint.instance_count=2)",
    )
    parser.add_argument(
        "--wait-for-lock",
        type=cli.whole_number(0, 86400),
        default=DEFAULT_LOCK_WAIT_S,
        help="seconds to wait while another release of the same endpoint runs (default %(default)s)",
    )
    args = parser.parse_args(argv)
    identity["release_id"] = args.release_id
    if args.release_id is not None:
        check_value("--release-id", args.release_id, "release_id", subject=cli.COMMAND_LINE)
    overrides = _overrides(args.overrides)
    config = load_config(args.config, overrides, path_field="--config").with_release_id(args.release_id)
    identity["release_id"] = config.release_id
    use_shared_lease_storage()
    state = release(config, wait_for_lock_s=args.wait_for_lock, return_state=True)
    return cli.print_summary(state, identity)


def _overrides(given: list[str]) -> dict[str, Any]:
    """The --set values by field; a field set twice is refused, as a duplicate key in the file is."""
    overrides: dict[str, Any] = {}
    for text in given:
        key, value = parse_override(text)
        if key in overrides:
            raise ConfigError(
                key,
                f"is set twice by --set ({shown_value(key, overrides[key])}, then {shown_value(key, value)})",
                f"give --set {key}=... once",
            )
        overrides[key] = value
    return overrides


if __name__ == "__main__":
    sys.exit(main())
