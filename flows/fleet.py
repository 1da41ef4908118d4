"""Release a fleet: every config of a folder (or a list of config files), each as its own flow run.

Each config becomes a run of the `nightly-redeploy` deployment (its `config_path` parameter) in the work
pool, so every worker polling the pool takes a share; at most `max_parallel` run at once, and configs that
name the same endpoint run one after the other (the endpoint lock would serialise them anyway, but a
waiting run would hold a worker's slot for nothing). Every release reports through its Prefect event
(tasks/report/events.py), which the fleet reads back for its table: one row per release with its status,
action, duration and error, as a markdown artifact (key `release-fleet`, tasks/report/fleet.py) and as the
flow's result.

    prefect deployment run 'release-fleet/nightly-fleet' --param folder=releases --param max_parallel=3

The fleet fails when any release did not succeed; the others still ran to their end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventRelatedFilter
from prefect.states import Failed, State
from pydantic import Field

from flows.parameters import labelled
from tasks.checks.preflight import check_confined_path
from tasks.config import config_files, load_config
from tasks.core.errors import ConfigError
from tasks.core.logs import run_logger
from tasks.core.waiting import Clock, SystemClock
from tasks.report import events
from tasks.report.fleet import FleetRelease, fleet_summary, publish_fleet

RELEASE_DEPLOYMENT = "nightly-redeploy/nightly-redeploy"  # the per-config deployment (config_path)
MAX_PARALLEL = 20
POLL_INTERVAL_S = 2.0
EVENT_WAIT_S = 60.0  # the server stores events in batches (every few seconds), after the run has ended
# Polls in a row that may fail to read one run's status (an API hiccup) before that release is reported
# failed; the fleet goes on with the others either way.
STATUS_READ_ATTEMPTS = 5


@dataclass(frozen=True)
class Started:
    run_id: UUID
    name: str


class Launcher(Protocol):
    """How the fleet starts a release and learns how it went (Prefect's API; a fake in unit tests)."""

    def start(self, release: FleetRelease) -> Started: ...

    def finished(self, run_id: UUID) -> bool: ...

    def settle(self, release: FleetRelease, run_id: UUID) -> None:
        """Fill `release` from its ended run: status, action, duration, error, release id."""
        ...


@dataclass
class Fleet:
    """The schedule: a queue of configs per endpoint, at most `max_parallel` runs in flight, one per
    endpoint. A run still going after `run_timeout_s` is left to its endpoint lock and reported
    `timed out`; the later configs of its endpoint are `not run`."""

    releases: list[FleetRelease]
    max_parallel: int
    run_timeout_s: float
    clock: Clock = field(default_factory=SystemClock)
    poll_interval_s: float = POLL_INTERVAL_S
    on_change: Callable[[], None] = lambda: None

    def run(self, launcher: Launcher) -> list[FleetRelease]:
        queues: dict[str, deque[FleetRelease]] = {}
        for release in self.releases:
            if release.endpoint is not None:
                queues.setdefault(release.endpoint, deque()).append(release)
        running: dict[str, tuple[FleetRelease, Started, float]] = {}
        unread: dict[str, int] = {}  # by endpoint: failed reads of its running release's status in a row
        while queues or running:
            for endpoint in list(queues):
                if len(running) >= self.max_parallel:
                    break
                if endpoint in running:
                    continue
                release = queues[endpoint].popleft()
                if not queues[endpoint]:
                    del queues[endpoint]
                try:
                    started = launcher.start(release)
                except Exception as exc:  # that release fails (no such deployment, API refusal); not the rest
                    release.status, release.error = (
                        "failed",
                        f"flow run not started: {type(exc).__name__}: {exc}",
                    )
                    self.on_change()
                    continue
                release.status, release.flow_run_name = "running", started.name
                release.flow_run_id = str(started.run_id)
                running[endpoint] = (release, started, self.clock.monotonic())
                self.on_change()
            self.clock.sleep(self.poll_interval_s)
            for endpoint, (release, started, since) in list(running.items()):
                ended = self._ended(launcher, release, started, unread)
                if ended is None:
                    continue
                if not ended:
                    if self.clock.monotonic() - since <= self.run_timeout_s:
                        continue
                    release.status = "timed out"
                    release.error = (
                        f"flow run {started.name} had not ended after {self.run_timeout_s:.0f} s "
                        "(run_timeout_s); it keeps its endpoint's lock until it ends or is cancelled"
                    )
                    for later in queues.pop(endpoint, ()):
                        later.status = "not run"
                        later.error = f"an earlier release of {endpoint} had not ended ({started.name})"
                del running[endpoint]
                self.on_change()
        return self.releases

    @staticmethod
    def _ended(
        launcher: Launcher, release: FleetRelease, started: Started, unread: dict[str, int]
    ) -> bool | None:
        """Whether `release`'s run has ended (and `release` is settled); None when its status could not
        be read this round. After STATUS_READ_ATTEMPTS such rounds in a row it is failed and ended."""
        endpoint = str(release.endpoint)
        try:
            ended = launcher.finished(started.run_id)
            if ended:
                launcher.settle(release, started.run_id)
        except Exception as exc:  # an API error on one run must not end the fleet and its report
            unread[endpoint] = unread.get(endpoint, 0) + 1
            run_logger().warning(
                "%s: status of flow run %s not read (%d of %d): %s: %s",
                endpoint,
                started.name,
                unread[endpoint],
                STATUS_READ_ATTEMPTS,
                type(exc).__name__,
                exc,
            )
            if unread[endpoint] < STATUS_READ_ATTEMPTS:
                return None
            release.status = "failed"
            release.error = f"status unreadable: {type(exc).__name__}: {exc}"
            ended = True
        unread.pop(endpoint, None)
        return ended


class DeploymentLauncher:
    """Runs each config as a flow run of RELEASE_DEPLOYMENT and reads its release event back."""

    def __init__(self, wait_for_lock_s: int, clock: Clock) -> None:
        self.wait_for_lock_s = wait_for_lock_s
        self.clock = clock

    def start(self, release: FleetRelease) -> Started:
        run = run_deployment(
            RELEASE_DEPLOYMENT,
            parameters={"config_path": release.config_path, "wait_for_lock_s": self.wait_for_lock_s},
            flow_run_name=f"{release.endpoint} ({Path(release.config_path).name})",
            timeout=0,  # started, not awaited: the fleet polls its runs itself
            tags=["fleet"],
        )
        assert isinstance(run, FlowRun)  # run_deployment is sync here (no event loop in a sync flow)
        run_logger().info("%s: flow run %s for %s", release.endpoint, run.name, release.config_path)
        return Started(run.id, run.name)

    def finished(self, run_id: UUID) -> bool:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        return state is not None and state.is_final()

    def settle(self, release: FleetRelease, run_id: UUID) -> None:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            state = run.state
            if run.start_time is not None and run.end_time is not None:
                release.duration_s = round((run.end_time - run.start_time).total_seconds(), 1)
            summary = self._release_summary(client, run)
        if summary is not None:
            release.status = events.outcome(summary)
            release.action = summary.get("action")
            release.release_id = summary.get("release_id")
            release.error = summary.get("error")
            if release.duration_s is None:
                release.duration_s = summary.get("duration_s")
            return
        # No release event: the run ended before a release started (its config_path was refused, the
        # run crashed or was cancelled); its state says why.
        completed = state is not None and state.is_completed()
        release.status = "succeeded" if completed else "failed"
        if not completed:
            release.error = (state.message if state else None) or "the flow run ended without a state"

    def _release_summary(self, client: SyncPrefectClient, run: FlowRun) -> dict[str, Any] | None:
        """The payload of the release event of `run`'s release subflow, once the server has stored it."""
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
        if not subflows:
            return None
        related = [f"prefect.flow-run.{sub.id}" for sub in subflows]
        since = (run.start_time or run.created or datetime.now(UTC)) - timedelta(minutes=5)
        wanted = EventFilter(
            occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(days=1)),
            event=EventNameFilter(prefix=[events.EVENT_PREFIX]),
            related=EventRelatedFilter(id=related),
        )
        deadline = self.clock.monotonic() + EVENT_WAIT_S
        while True:
            page = client.read_events(filter=wanted, limit=10)
            if page.events:
                latest = max(page.events, key=lambda e: e.occurred)
                return dict(latest.payload)
            if self.clock.monotonic() > deadline:
                run_logger().warning(
                    "flow run %s: no %s* event within %.0f s; reporting from its state",
                    run.name,
                    events.EVENT_PREFIX,
                    EVENT_WAIT_S,
                )
                return None
            self.clock.sleep(POLL_INTERVAL_S)


# --- what to release ------------------------------------------------------------------------------------


def fleet_configs(folder: str | None, config_paths: Sequence[str] | None) -> list[str]:
    """The config files of the fleet, each held to the allowed roots when the run is confined."""
    if (folder is None) == (not config_paths):
        raise ConfigError(
            "folder" if folder is not None else "config_paths",
            "give either a folder of configs or a list of config paths" + (", not both" if folder else ""),
            "set folder (e.g. releases) or config_paths (e.g. [releases/demo.yaml]), and leave the other "
            "empty",
        )
    if folder is not None:
        check_confined_path("folder", folder)
        directory = Path(folder)
        if not directory.is_dir():
            raise ConfigError("folder", f"{folder} is not a folder", "name a folder of release configs")
        paths = [str(directory / p.name) for p in config_files(directory)]
        if not paths:
            raise ConfigError(
                "folder", f"{folder} holds no .yaml config", "name a folder of release configs (releases/)"
            )
        for path in paths:  # a symlink in the folder may lead outside the roots
            check_confined_path("folder", path)
        return paths
    assert config_paths
    for index, path in enumerate(config_paths):
        check_confined_path(f"config_paths[{index}]", path)
    return list(config_paths)


def read_fleet(paths: Iterable[str]) -> list[FleetRelease]:
    """Each config with the endpoint it releases; one that cannot be read is `invalid` and not run."""
    releases = []
    for path in paths:
        try:
            config = load_config(path, path_field="config_path", check_folders=False)
        except ConfigError as exc:
            releases.append(FleetRelease(path, None, status="invalid", error=str(exc)))
            continue
        releases.append(FleetRelease(path, config.endpoint.name))
    return releases


# --- the flow -------------------------------------------------------------------------------------------


@flow(name="release-fleet", log_prints=True)
def release_fleet(
    folder: Annotated[
        str | None, labelled("Folder of configs", "Release each .yaml file of this folder, e.g. releases.")
    ] = None,
    config_paths: Annotated[
        list[str] | None, labelled("Config files", "Or release these files, e.g. releases/demo.yaml.")
    ] = None,
    max_parallel: Annotated[
        int, Field(ge=1, le=MAX_PARALLEL), labelled("Releases at once", "One per endpoint at most.")
    ] = 2,
    wait_for_lock_s: Annotated[
        int,
        Field(ge=0, le=86400),
        labelled("Lock wait (s)", "How long a release waits for its endpoint."),
    ] = 3600,
    run_timeout_s: Annotated[
        int,
        Field(ge=60, le=7 * 86400),
        labelled("Run timeout (s)", "A release still running then is reported timed out."),
    ] = 4 * 3600,
) -> dict[str, Any] | State:
    """Release every config of `folder` (its .yaml files) or of `config_paths`, each as a flow run of the
    nightly-redeploy deployment: at most `max_parallel` at once, one at a time per endpoint. The fleet
    fails when any release did not succeed."""
    releases = read_fleet(fleet_configs(folder, config_paths))
    fleet = Fleet(
        releases,
        max_parallel=max_parallel,
        run_timeout_s=run_timeout_s,
        on_change=lambda: publish_fleet(releases),
    )
    publish_fleet(releases)
    fleet.run(DeploymentLauncher(wait_for_lock_s, fleet.clock))
    publish_fleet(releases)
    summary = fleet_summary(releases)
    log = run_logger()
    for release in releases:
        log.info("%s (%s): %s %s", release.endpoint, release.config_path, release.status, release.error or "")
    missed = [r for r in releases if not r.succeeded]
    if missed:
        names = ", ".join(f"{r.endpoint or r.config_path} ({r.status})" for r in missed)
        return Failed(
            message=f"{len(missed)} of {len(releases)} releases did not succeed: {names}", data=summary
        )
    return summary
