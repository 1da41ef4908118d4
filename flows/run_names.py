"""Flow run names that read in the runs list: the endpoint and the release id.

    demo-embedder / 20261201-065000-3fa9

Prefect names a run (`flow_run_name=`) when it starts, before the flow's body has run, from its
parameters. A run whose config names no release id gets one derived from the run itself
(`run_release_id`): its expected start time and the end of its id, in the format of
`tasks.config.naming.new_release_id`, so the name given at start and the id the body uses agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext
from pydantic import BaseModel

from tasks.config import load_yaml
from tasks.config.naming import new_release_id
from tasks.core.errors import ConfigError

SEPARATOR = " / "


def run_name(endpoint: str, release_id: str | None) -> str:
    return f"{endpoint}{SEPARATOR}{release_id}" if release_id else endpoint


def release_id_or_runs(given: str | None) -> str:
    """The release id a config (or a form) gives, else the run's own: the rule of names and bodies alike."""
    return given or run_release_id()


def run_release_id() -> str:
    """The release id of the current flow run: stable for the run (its name and its body agree), unique
    as `new_release_id` is (time to the second, then 4 hex digits, here the random end of the run's id)."""
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None:
        raise RuntimeError("run_release_id() is called inside a flow run only")
    moment = run.expected_start_time or run.created
    return new_release_id(moment, token=run.id.hex[-4:])


def release_run_name() -> str:
    """`flow_run_name` of the release flow: its config's endpoint and release id.

    A config without a release id is given the run's own (`run_release_id`), here and in the flow's
    body alike, so the name shows the id the release uses."""
    context = FlowRunContext.get()
    config = (context.parameters or {}).get("config") if context is not None else None
    endpoint, release_id = _endpoint_and_release_id(config)
    return run_name(endpoint or "release", release_id_or_runs(release_id))


def _endpoint_and_release_id(config: Any) -> tuple[str | None, str | None]:
    # Validated parameters are a ReleaseConfig; a run whose validation is skipped has the plain mapping.
    return endpoint_and_release_id(config.model_dump() if isinstance(config, BaseModel) else config)


def config_endpoint_and_release_id(file: Path) -> tuple[str | None, str | None]:
    """The endpoint name and release id a config file gives, None for each it does not (nor for a file
    that cannot be read or parsed: this names a run, the release itself reports what is wrong)."""
    try:
        text = file.read_text(encoding="utf-8")
        return endpoint_and_release_id(load_yaml(text, field="config_path", source=str(file)))
    except (OSError, UnicodeDecodeError, ConfigError):
        return None, None


def endpoint_and_release_id(data: Any) -> tuple[str | None, str | None]:
    """The endpoint name and release id a config's data gives, None for each it does not."""
    if not isinstance(data, dict):
        return None, None
    endpoint = data.get("endpoint")
    name = endpoint.get("name") if isinstance(endpoint, dict) else None
    release_id = data.get("release_id")
    return (
        name if isinstance(name, str) else None,
        release_id if isinstance(release_id, str) else None,
    )
