"""What a fleet of releases tells its people (flows/fleet.py): one row per release with its status,
action, duration and error, as a Prefect markdown artifact (key `release-fleet`) and a JSON summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext

from tasks.config.reference import table_cell

ARTIFACT_KEY = "release-fleet"
ERROR_CHARS = 300  # of an error shown in the table; the release's own artifact has all of it


@dataclass
class FleetRelease:
    """One config of the fleet and, once its run ends, how it went."""

    config_path: str
    endpoint: str | None  # None: the config could not be read, so it is not run
    status: str = "pending"  # then succeeded | failed | rolled-back | invalid | timed out | not run
    action: str | None = None
    duration_s: float | None = None
    error: str | None = None
    release_id: str | None = None
    flow_run_name: str | None = None
    flow_run_id: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def fleet_summary(releases: Sequence[FleetRelease]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for release in releases:
        counts[release.status] = counts.get(release.status, 0) + 1
    return {
        "releases": [asdict(r) for r in releases],
        "counts": counts,
        "succeeded": all(r.succeeded for r in releases),
    }


def fleet_markdown(releases: Sequence[FleetRelease]) -> str:
    done = sum(r.succeeded for r in releases)
    lines = [
        f"# Fleet of {len(releases)} releases: {done} succeeded, {len(releases) - done} not",
        "",
        "| endpoint | status | action | duration | error | config | flow run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in releases:
        duration = f"{r.duration_s:.0f} s" if r.duration_s is not None else "-"
        status = r.status if r.succeeded or r.status in ("pending", "running") else f"**{r.status}**"
        lines.append(
            f"| `{r.endpoint or '-'}` | {status} | {r.action or '-'} | {duration} | {_error_cell(r.error)} "
            f"| `{r.config_path}` | {r.flow_run_name or '-'} |"
        )
    return "\n".join(lines) + "\n"


def _error_cell(text: str | None) -> str:
    if not text:
        return "-"
    flat = table_cell(text)
    return flat if len(flat) <= ERROR_CHARS else flat[: ERROR_CHARS - 1] + "…"


def publish_fleet(releases: Sequence[FleetRelease]) -> None:
    """The fleet's table as the run's artifact (nothing outside a flow run)."""
    if FlowRunContext.get() is None:
        return
    done = sum(r.succeeded for r in releases)
    create_markdown_artifact(
        markdown=fleet_markdown(releases),
        key=ARTIFACT_KEY,
        description=f"Fleet of {len(releases)} releases: {done} succeeded",
    )
