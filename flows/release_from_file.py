"""The short release form: a config file of releases/ and the few fields people change.

    prefect deployment run 'release-model/release-from-file' \\
        --param config_path=releases/demo.yaml --param revision=<commit>

The `release` deployment takes the whole config (for automation); this one reads the config from a file
of releases/ and changes what a person changes from one release to the next: the model revision, the
endpoint name, the rollout strategy, the instance count, plus any other field as `key=value` lines (the
syntax of the command line's `--set`). An empty field keeps the file's value. The release itself is the
`release` flow, run as a subflow.

Both are flows named `release-model` (Prefect keys a deployment by its flow's name and its own name, and
runs each deployment's entrypoint), so `prefect deployment run 'release-model/release-from-file'` names
this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from prefect import flow
from prefect.context import FlowRunContext
from prefect.states import State
from pydantic import Field

from flows.parameters import labelled
from flows.release import DEFAULT_LOCK_WAIT_S, refuse, release, subflow_outcome
from flows.run_names import config_endpoint_and_release_id, release_id_or_runs, run_name
from tasks.checks.preflight import REPOSITORY, check_confined_path
from tasks.config import (
    Approval,
    ReleaseConfig,
    RolloutStrategy,
    config_files,
    load_config,
    parse_override,
    shown_value,
)
from tasks.config.fields import SAGEMAKER_NAME_MAX_LENGTH, SAGEMAKER_NAME_PATTERN
from tasks.config.sections import MAX_INSTANCE_COUNT
from tasks.core.errors import ConfigError

# The worker's checkout, the root its path parameters are confined to.
CHECKOUT = REPOSITORY
RELEASES = CHECKOUT / "releases"


def offered_files(folder: Path = RELEASES) -> tuple[str, ...]:
    """The release configs of `folder` as the form offers them: `releases/<name>.yaml`, sorted."""
    found = config_files(folder)
    if not found:
        raise RuntimeError(
            f"{folder} holds no release config (*.yaml); add one (e.g. releases/demo.yaml) before "
            "deploying release-from-file, whose form lists them"
        )
    return tuple(f"{folder.name}/{p.name}" for p in found)


# Read when the module is imported: `prefect deploy` puts the files present then into the deployment's
# schema (the form's dropdown), and a worker accepts the files of its own checkout.
CONFIG_FILES = offered_files()
if TYPE_CHECKING:
    ConfigFile = str
else:
    ConfigFile = Literal[CONFIG_FILES]

# The form's fields and the config field each one sets.
FORM_FIELDS: dict[str, str] = {
    "revision": "model.revision",
    "endpoint_name": "endpoint.name",
    "strategy": "rollout.strategy",
    "instance_count": "endpoint.instance_count",
    "approval": "rollout.approval",
}

OVERRIDES_FIELD = "overrides"
# What errors about the form's own fields call it (a config field's errors say "release config").
FORM = "release form"


def form_run_name() -> str:
    """`flow_run_name` of the form: the endpoint (the form's, else the file's) and the release id the body
    uses (the form's or the file's, else the run's)."""
    context = FlowRunContext.get()
    parameters: dict[str, Any] = dict(context.parameters or {}) if context is not None else {}
    endpoint, release_id = form_identity(parameters)
    return run_name(endpoint, release_id_or_runs(release_id) if context is not None else release_id)


def form_identity(parameters: dict[str, Any]) -> tuple[str, str | None]:
    """The endpoint a form's run releases (its field or override, else its file's, else the file's stem)
    and the release id the form or the file gives (None: none does). Read before the config is
    validated, so that a refused run has a name and an event too."""
    path = str(parameters.get("config_path") or "release")
    file_endpoint, file_release_id = _file_values(path)
    try:
        changes = form_changes(parameters)
    except ConfigError:
        # The run fails on the same error in its body, which says what to fix; the name only has to read.
        changes = {}
    endpoint = changes.get("endpoint.name") or file_endpoint or Path(path).stem
    release_id = changes.get("release_id") or file_release_id
    return str(endpoint), str(release_id) if release_id else None


def _file_values(path: str) -> tuple[str | None, str | None]:
    """The endpoint name and release id a config file gives, None for each it does not."""
    if path not in CONFIG_FILES:
        # Only an offered file is read: an absolute path would replace CHECKOUT and read any file.
        return None, None
    return config_endpoint_and_release_id(CHECKOUT / path)


def form_changes(parameters: dict[str, Any]) -> dict[str, Any]:
    """The config values the form changes, by dotted field: its fields (empty ones keep the file's value),
    then each `key=value` line of its overrides. A field set twice is refused, naming both places."""
    changes: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, dotted in FORM_FIELDS.items():
        value = parameters.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        changes[dotted], origin[dotted] = value, f"the {name} field"
    for number, line in enumerate(_override_lines(parameters.get(OVERRIDES_FIELD)), start=1):
        try:
            key, value = parse_override(line)
        except ConfigError as exc:
            # parse_override words its fixes for the command line's --set; the form has lines.
            fix = (
                "write one field per line as section.field=value (e.g. endpoint.instance_count=2); the "
                "value is YAML"
                if exc.field == "--set"
                else exc.fix
            )
            raise ConfigError(
                f"{OVERRIDES_FIELD}[{number}]", f"{line!r}: {exc.problem}", fix, subject=FORM
            ) from None
        if key in changes:
            raise ConfigError(
                key,
                f"is set twice: by {origin[key]} ({shown_value(key, changes[key])}) and by override line "
                f"{number} ({shown_value(key, value)})",
                f"set {key} once",
                subject=FORM,
            )
        changes[key], origin[key] = value, f"override line {number}"
    return changes


def _override_lines(given: Any) -> list[str]:
    # One item of the form's list may hold several lines (a pasted block); blank lines and # comments go.
    if given is None:
        return []
    items = [given] if isinstance(given, str) else list(given)
    lines = [line.strip() for item in items for line in str(item).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def load_form_config(parameters: dict[str, Any]) -> ReleaseConfig:
    """The release config of the form: the file, changed by the form's fields and overrides."""
    path = str(parameters["config_path"])
    if path not in CONFIG_FILES:
        raise ConfigError(
            "config_path",
            f"{path!r} is not a release config of {RELEASES}",
            f"choose one of {', '.join(CONFIG_FILES)}",
            subject=FORM,
        )
    file = CHECKOUT / path
    # The worker's checkout holds the file; a symlink out of it is refused as any path parameter is.
    check_confined_path("config_path", str(file))
    return load_config(file, form_changes(parameters), path_field="config_path")


@flow(name="release-model", flow_run_name=form_run_name, log_prints=True)
def release_from_file(
    config_path: Annotated[ConfigFile, labelled("Config file")],
    revision: Annotated[str | None, Field(max_length=255), labelled("Model revision")] = None,
    endpoint_name: Annotated[
        str | None,
        Field(max_length=SAGEMAKER_NAME_MAX_LENGTH, pattern=SAGEMAKER_NAME_PATTERN),
        labelled("Endpoint name"),
    ] = None,
    strategy: Annotated[RolloutStrategy | None, labelled("Rollout strategy")] = None,
    instance_count: Annotated[
        int | None, Field(ge=1, le=MAX_INSTANCE_COUNT), labelled("Instance count")
    ] = None,
    approval: Annotated[Approval | None, labelled("Approval")] = None,
    overrides: Annotated[list[str] | None, labelled("Other fields (key=value)")] = None,
    wait_for_lock_s: Annotated[int, Field(ge=0, le=86400), labelled("Wait for the endpoint (s)")] = (
        DEFAULT_LOCK_WAIT_S
    ),
) -> dict[str, Any] | State:
    """Release a model from a config file of releases/, changing the fields people change.

    Args:
        config_path: The release config, one of the files of releases/ when this deployment was made.
        revision: Branch, tag or commit of the Hub model (model.revision). Empty keeps the file's.
        endpoint_name: The endpoint to release to (endpoint.name). Empty keeps the file's.
        strategy: How traffic moves to the new model (rollout.strategy). Empty keeps the file's.
        instance_count: Instances of the endpoint (endpoint.instance_count). Empty keeps the file's.
        approval: `manual` pauses the release once its first step has baked, until someone promotes or
            rolls back from the flow run's Resume form (rollout.approval). Empty keeps the file's.
        overrides: Any other field of the config, one `section.field=value` per line, the value in
            YAML, as the command line's `--set` takes them (e.g. `rollout.bake_s=300`).
        wait_for_lock_s: Seconds to wait while another release of the same endpoint runs.
    """
    parameters = {
        "config_path": config_path,
        "revision": revision,
        "endpoint_name": endpoint_name,
        "strategy": strategy,
        "instance_count": instance_count,
        "approval": approval,
        "overrides": overrides,
    }
    try:
        config = load_form_config(parameters)
        # The id the run is named after, unless the file or an override gives one.
        config = config.with_release_id(release_id_or_runs(config.release_id))
    except ConfigError as exc:
        endpoint, release_id = form_identity(parameters)
        return refuse(exc, endpoint=endpoint, release_id=release_id_or_runs(release_id))
    return subflow_outcome(release(config, wait_for_lock_s=wait_for_lock_s, return_state=True))
