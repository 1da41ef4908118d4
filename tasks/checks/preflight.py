"""Pre-flight: what the release can decide from the live endpoint, decided before anything is created.

The config is validated on its own when it is loaded (tasks/config/); some of it can only be judged
against the endpoint as it serves now -- a guardrails canary or linear shift needs 2+ live instances
and the live variant's name. `preflight` describes the endpoint and plans the traffic shift before the
release creates a bucket, a ledger or any resource, so a strategy that cannot work on this endpoint is
refused as bad input (ConfigError naming the field and the fix; the CLI exits 2), not as a failed
release that had to unwind.

Whoever may run a deployment chooses the whole config, so a release started from one (or on a worker
that sets SAGEMAKER_RELEASE_CONFINE_PATHS=1) reads only folders under the allowed roots: the repository
(the folder holding flows/), widened by SAGEMAKER_RELEASE_ALLOWED_ROOTS, a colon-separated list read from
the worker's environment, never from the config. Paths are compared after Path.resolve(), so a symlink
cannot lead out, and the Dockerfile must lie inside its build context. The command line run by hand
keeps accepting any folder. Secret references must name secrets that exist (their values are read only
when the release hands them on), and secret build arguments need a docker CLI that builds with BuildKit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.runtime import deployment

from tasks.config import ReleaseConfig, SecretReference, check_local_folders, secret_references, secret_values
from tasks.core import aws
from tasks.core.errors import ConfigError, ConfigIssue
from tasks.core.retry import task_options
from tasks.image import build
from tasks.rollout.planning import RolloutPlan
from tasks.rollout.traffic_shift import plan_traffic_shift
from tasks.sagemaker.deploy import inspect_endpoint
from tasks.sagemaker.hosting import LiveEndpoint


@dataclass(frozen=True)
class Preflight:
    """The endpoint before the release (None: there is none) and how traffic will reach the new model.

    Both are None for a batch release, which leaves no endpoint running."""

    live: LiveEndpoint | None
    plan: RolloutPlan | None


# Retried like any describe on transient errors; a ConfigError (a ReleaseError) is never retried.
@task(name="preflight", **task_options())
def preflight(config: ReleaseConfig) -> Preflight:
    """Describe the live endpoint and plan the rollout; ConfigError when the plan cannot work on it.

    Run it while holding the endpoint's lock, so the endpoint it judged is the one the release updates.
    A Failed endpoint raises ResourceFailed (it accepts only DeleteEndpoint): a state to fix, not input.
    """
    require_region()
    # Before the folders are looked at: whether a path outside the roots exists is not the caller's to learn.
    check_confinement(config)
    # Again here, not only on load: a release started from a deployment gets its config as parameters.
    check_local_folders(config)
    check_secrets(config)
    if config.endpoint.type == "batch":
        return Preflight(None, None)
    live = inspect_endpoint.fn(config.endpoint.name)
    return Preflight(live, plan_traffic_shift.fn(config, live))


def require_region() -> None:
    """Refuse a release whose AWS clients have no region, before any call fails three steps later."""
    if not aws.session().region_name:
        raise ConfigError(
            "AWS_DEFAULT_REGION",
            "no AWS region is configured, so no AWS client can be made",
            "set AWS_DEFAULT_REGION (e.g. us-east-1) or a profile with a region; on the local stack run "
            'eval "$(make env)" first',
            subject="environment",
        )


# --- allowed roots -----------------------------------------------------------------------------------

ALLOWED_ROOTS_ENV = "SAGEMAKER_RELEASE_ALLOWED_ROOTS"
CONFINE_ENV = "SAGEMAKER_RELEASE_CONFINE_PATHS"
# The checkout: the folder holding tasks/ (this file is tasks/checks/preflight.py).
REPOSITORY = Path(__file__).resolve().parents[2]
_ON = frozenset({"1", "true", "yes", "on"})
# What a Hub token variable is called (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, TEAM_HF_TOKEN): a confined
# release must not send another of the worker's variables (AWS_SECRET_ACCESS_KEY) to the Hub as a token.
_HUB_TOKEN_ENV = re.compile(r"^(?:[A-Z0-9]+_)*(?:HF|HUGGING_?FACE)(?:_[A-Z0-9]+)*_TOKEN\Z", re.IGNORECASE)


def confined() -> bool:
    """Whether local paths must lie under the allowed roots: the flow run was started by a Prefect
    deployment, or the worker sets SAGEMAKER_RELEASE_CONFINE_PATHS. Nothing in the run's parameters or
    job variables can turn it off for a deployment's run."""
    if os.environ.get(CONFINE_ENV, "").strip().lower() in _ON:
        return True
    try:
        return bool(deployment.id)
    except Exception:
        # Not knowing whether a deployment started the run: confine, the side that cannot be abused.
        return True


def allowed_roots() -> list[Path]:
    """The repository, then each folder of SAGEMAKER_RELEASE_ALLOWED_ROOTS, resolved."""
    roots = [REPOSITORY]
    for item in os.environ.get(ALLOWED_ROOTS_ENV, "").split(":"):
        if item.strip():
            roots.append(Path(item.strip()).expanduser().resolve())
    return roots


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _outside(field: str, given: str, resolved: Path, roots: list[Path], what: str) -> ConfigIssue:
    shown = ", ".join(str(r) for r in roots)
    via = "" if str(resolved) == given else f" (it resolves to {resolved})"
    return ConfigIssue(
        field,
        f"{given}{via} is outside the folders a release started from a deployment may read ({shown})",
        f"put the {what} under {REPOSITORY}, or widen the roots on the worker: add its folder to "
        f"{ALLOWED_ROOTS_ENV} (a colon-separated list) in the worker's environment",
    )


def confinement_issues(config: ReleaseConfig, roots: list[Path] | None = None) -> list[ConfigIssue]:
    """What of the config reaches outside the allowed roots (regardless of `confined()`)."""
    roots = roots if roots is not None else allowed_roots()
    issues: list[ConfigIssue] = []
    local = config.model.local_path
    if local is not None:
        folder = Path(local).expanduser().resolve()
        if not _under(folder, roots):
            issues.append(_outside("model.local_path", local, folder, roots, "model folder"))
        elif folder.is_dir():
            issues += _escaping_links(folder, roots)
    if not _HUB_TOKEN_ENV.match(config.model.token_env):
        issues.append(
            ConfigIssue(
                "model.token_env",
                f"{config.model.token_env} is not a Hub token variable; a release started from a "
                "deployment sends only such a variable to the Hub",
                "name the worker's Hub token variable (HF_TOKEN, or one like TEAM_HF_TOKEN), or leave "
                "it at its default",
            )
        )
    settings = config.image
    if settings.source == "build":
        context = Path(settings.context).expanduser().resolve()
        if not _under(context, roots):
            issues.append(_outside("image.context", settings.context, context, roots, "build context"))
        else:
            dockerfile = (context / settings.dockerfile).resolve()
            if not dockerfile.is_relative_to(context):
                issues.append(
                    ConfigIssue(
                        "image.dockerfile",
                        f"{settings.dockerfile} resolves to {dockerfile}, outside the build context "
                        f"{context}",
                        "name a Dockerfile inside image.context (default Dockerfile)",
                    )
                )
    return issues


def _escaping_links(folder: Path, roots: list[Path]) -> list[ConfigIssue]:
    """A symlink in the model folder that leads outside the roots: packaging reads what it points to."""
    for directory, dirnames, filenames in os.walk(folder):
        for name in (*dirnames, *filenames):
            path = Path(directory, name)
            if path.is_symlink() and not _under(path.resolve(), roots):
                relative = path.relative_to(folder)
                return [
                    ConfigIssue(
                        "model.local_path",
                        f"{relative} in {folder} is a symlink to {path.resolve()}, outside the folders a "
                        "release started from a deployment may read",
                        "copy the file into the model folder instead of linking it, or add its folder "
                        f"to {ALLOWED_ROOTS_ENV} in the worker's environment",
                    )
                ]
    return []


def check_confinement(config: ReleaseConfig) -> None:
    """ConfigError naming each field that reaches outside the allowed roots, when the run is confined."""
    if not confined():
        return
    issues = confinement_issues(config)
    if issues:
        raise ConfigError.from_issues(issues)


def check_confined_path(field: str, path: str) -> None:
    """A single path parameter (a deployment's config_path), held to the allowed roots when confined."""
    if not confined():
        return
    roots = allowed_roots()
    resolved = Path(path).expanduser().resolve()
    if not _under(resolved, roots):
        raise ConfigError.from_issues([_outside(field, path, resolved, roots, "file")])


# --- secrets ---------------------------------------------------------------------------------------------


def check_secrets(config: ReleaseConfig) -> None:
    """Every secret reference names a secret that exists; secret build arguments have a BuildKit CLI."""
    issues: list[ConfigIssue] = []
    references = secret_references(config)
    for field, reference in references:
        try:
            secret_values.check_available(reference, field=field)
        except ConfigError as exc:
            issues += exc.issues
    building_with_secrets = any(
        isinstance(value, SecretReference) for value in config.image.build_args.values()
    )
    if config.image.source == "build" and building_with_secrets and build.buildkit_command() is None:
        issues.append(
            ConfigIssue(
                "image.build_args",
                "secret build arguments are BuildKit secrets, and no docker CLI on this worker builds "
                "with BuildKit (no buildx plugin, and the docker CLI is 23 or newer)",
                "install the buildx plugin (Debian: apt-get install docker-buildx), or set "
                f"{build.DOCKER_CLI_ENV} to a docker CLI that has it, or remove the secret build arguments",
            )
        )
    if issues:
        raise ConfigError.from_issues(issues)
