"""Put an endpoint back on its previous release, on demand.

Where the previous release comes from: the endpoint configs themselves. Every release tags its
config with managed-by=sagemaker-release, release-id and sagemaker-release:endpoint=<endpoint>, and
a successful release keeps the config it replaced (it is never deleted while a later release may roll
back to it). The previous release is the newest such config of the endpoint created before the one
the endpoint serves now, skipping the short-lived staging configs of variant shifts and configs whose
models are gone. No ledger or bucket is needed, so `python -m flows.rollback ENDPOINT` works from any
machine that can reach the account. `to_config` names a config explicitly instead.

The switch itself is an UpdateEndpoint to that config, waited on; autoscaling is taken off variants
the old config removes or re-types first (SageMaker refuses the update otherwise) and put back if
the update fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tasks.config import naming
from tasks.core import aws
from tasks.core.errors import ReleaseError, ResourceFailed
from tasks.core.logs import run_logger
from tasks.core.purpose import PURPOSE_KEY, ROLLOUT_STAGING
from tasks.core.waiting import Clock
from tasks.sagemaker import hosting, lookup, scaling


class NoPreviousRelease(ReleaseError):
    """Nothing to roll back to: the endpoint has no earlier release config that can still serve."""

    endpoint: str
    current_config: str
    skipped: tuple[str, ...]

    def __init__(self, endpoint: str, current_config: str, skipped: Sequence[str] = ()) -> None:
        why = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        super().__init__(
            f"NoPreviousRelease: endpoint {endpoint} serves {current_config} and no earlier release config "
            f"of it can serve{why}; fix: name a config with --to, or release the model you want",
            endpoint=endpoint,
            current_config=current_config,
            skipped=tuple(skipped),
        )


@dataclass(frozen=True)
class ReleaseConfigRef:
    """An endpoint config that a release created."""

    name: str
    release_id: str | None
    created: datetime
    staging: bool


@dataclass(frozen=True)
class RollbackResult:
    endpoint: str
    from_config: str
    to_config: str
    to_release: str | None
    status: Literal["rolled back", "unchanged"]

    def summary(self) -> dict[str, Any]:
        return {
            "endpoint_name": self.endpoint,
            "from_config": self.from_config,
            "to_config": self.to_config,
            "to_release": self.to_release,
            "status": self.status,
        }


def release_configs(endpoint: str) -> list[ReleaseConfigRef]:
    """Endpoint configs that releases made for `endpoint`, oldest first."""
    found = []
    # Release config names start with the endpoint's name (tasks/config/naming.py keeps the readable start).
    for summary in lookup.endpoint_configs(endpoint[:40]):
        tags = lookup.tags(summary["EndpointConfigArn"])
        if (
            tags.get(naming.MANAGED_BY_KEY) != naming.MANAGED_BY_VALUE
            or tags.get(naming.ENDPOINT_KEY) != endpoint
        ):
            continue
        found.append(
            ReleaseConfigRef(
                name=str(summary["EndpointConfigName"]),
                release_id=tags.get(naming.RELEASE_ID_KEY),
                created=summary["CreationTime"],
                staging=tags.get(PURPOSE_KEY) == ROLLOUT_STAGING,
            )
        )
    return sorted(found, key=lambda ref: (ref.created, ref.name))


def unusable_reason(config_name: str) -> str | None:
    """Why `config_name` cannot serve any more (a model of it was deleted), or None when it can."""
    described = lookup.endpoint_config(config_name)
    for variant in described["ProductionVariants"]:
        try:
            lookup.model(variant["ModelName"])
        except Exception as exc:
            if aws.is_not_found(exc):
                return f"{config_name}: its model {variant['ModelName']} was deleted"
            raise
    return None


def previous_release(endpoint: str, current_config: str) -> ReleaseConfigRef:
    """The release config the endpoint served before `current_config`."""
    configs = release_configs(endpoint)
    current = next((ref for ref in configs if ref.name == current_config), None)
    earlier = [
        ref
        for ref in configs
        if ref.name != current_config
        and not ref.staging
        and (current is None or ref.created < current.created)
        and (current is None or current.release_id is None or ref.release_id != current.release_id)
    ]
    skipped = []
    for ref in reversed(earlier):
        reason = unusable_reason(ref.name)
        if reason is None:
            return ref
        skipped.append(reason)
    raise NoPreviousRelease(endpoint, current_config, skipped)


def roll_back(
    endpoint: str,
    *,
    to_config: str | None = None,
    timeout_s: float,
    interval_s: float = 10.0,
    clock: Clock | None = None,
) -> RollbackResult:
    """Put `endpoint` back on `to_config`, or on its previous release's config; waits until InService."""
    log = run_logger()
    live = hosting.live_endpoint(endpoint)
    if live is None:
        raise ResourceFailed(
            f"endpoint {endpoint}", "NotFound", "there is no such endpoint; fix: check the name and region"
        )
    if live.status != "InService":
        live_status: str = live.status
        if live.status in hosting.TRANSITIONAL:
            rested = hosting.wait_until_resting(
                endpoint, timeout_s=timeout_s, interval_s=interval_s, clock=clock
            )
            live_status = str(rested["EndpointStatus"])
            live = hosting.live_endpoint(endpoint) if live_status == "InService" else live
        if live is None or live_status != "InService":
            raise ResourceFailed(
                f"endpoint {endpoint}",
                live_status,
                f"{live.failure_reason if live else ''}; only an InService endpoint can be rolled back "
                "(a Failed one accepts only DeleteEndpoint), fix: delete it and release again",
            )
    if to_config is None:
        target = previous_release(endpoint, live.config_name)
        to_config, to_release = target.name, target.release_id
    else:
        reason = unusable_reason(to_config)
        if reason is not None:
            raise NoPreviousRelease(endpoint, live.config_name, [reason])
        to_release = None
    if to_config == live.config_name:
        log.info("endpoint %s already serves %s", endpoint, to_config)
        return RollbackResult(endpoint, live.config_name, to_config, to_release, "unchanged")

    log.info("rolling endpoint %s back from %s to %s", endpoint, live.config_name, to_config)
    target_variants = lookup.endpoint_config(to_config)["ProductionVariants"]
    suspended = _suspend_scaling(live, target_variants)
    try:
        hosting.send_endpoint_update(endpoint, to_config)
        hosting.wait_for_endpoint(
            endpoint, expect_config=to_config, timeout_s=timeout_s, interval_s=interval_s, clock=clock
        )
    except Exception:
        for snapshot in suspended:
            scaling.restore(snapshot)
        raise
    return RollbackResult(endpoint, live.config_name, to_config, to_release, "rolled back")


def _suspend_scaling(
    live: hosting.LiveEndpoint, target_variants: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Deregister autoscaling of live variants the target config removes or re-types; snapshots."""
    wanted = {v["VariantName"]: v.get("InstanceType") for v in target_variants}
    snapshots = []
    for served in live.variants:
        if wanted.get(served.variant, "<gone>") == served.instance_type:
            continue
        resource_id = naming.scalable_resource_id(live.name, served.variant)
        snapshot = scaling.snapshot(resource_id)
        if snapshot is None:
            continue
        scaling.remove_target(resource_id)
        run_logger().info(
            "took %s off autoscaling: the previous config does not keep that variant", resource_id
        )
        snapshots.append(snapshot)
    return snapshots
