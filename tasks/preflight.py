"""Pre-flight: what the release can decide from the live endpoint, decided before anything is created.

The config is validated on its own when it is loaded (tasks/config.py); some of it can only be judged
against the endpoint as it serves now -- a guardrails canary or linear shift needs 2+ live instances
and the live variant's name. `preflight` describes the endpoint and plans the traffic shift before the
release creates a bucket, a ledger or any resource, so a strategy that cannot work on this endpoint is
refused as bad input (ConfigError naming the field and the fix; the CLI exits 2), not as a failed
release that had to unwind.

Secret references must name secrets that exist (their values are read only when the release hands them
on), and secret build arguments need a docker CLI that builds with BuildKit.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from tasks import aws, image, secret_values
from tasks.config import ReleaseConfig, SecretReference, check_local_folders, secret_references
from tasks.deploy import inspect_endpoint
from tasks.errors import ConfigError, ConfigIssue
from tasks.hosting import LiveEndpoint
from tasks.progressive import plan_traffic_shift
from tasks.retry import task_options
from tasks.rollout_plan import RolloutPlan


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
    if config.image.source == "build" and building_with_secrets and image.buildkit_command() is None:
        issues.append(
            ConfigIssue(
                "image.build_args",
                "secret build arguments are BuildKit secrets, and no docker CLI on this worker builds "
                "with BuildKit (no buildx plugin, and the docker CLI is 23 or newer)",
                "install the buildx plugin (Debian: apt-get install docker-buildx), or set "
                f"{image.DOCKER_CLI_ENV} to a docker CLI that has it, or remove the secret build arguments",
            )
        )
    if issues:
        raise ConfigError.from_issues(issues)
