"""Clean up after releases that did not finish: unwind a persisted ledger, or find orphans by tag.

    python -m flows.cleanup RELEASE_ID --bucket BUCKET [--prefix sagemaker-release]
    python -m flows.cleanup RELEASE_ID --config releases/demo.yaml     # bucket and prefix from the config
    python -m flows.cleanup --orphans --bucket BUCKET [--prefix P] [--delete [--include-endpoints]]

A release whose worker died (killed, OOM, lost node) leaves its ledger in S3 in state "running".
Unwinding it does what the release would have done on failure: delete what it created, put an
endpoint it was updating back on its previous config, register autoscaling it took off again, and
give back its slot of the endpoint lock. A succeeded release is refused: its resources serve traffic.

Orphans are resources tagged managed-by=sagemaker-release whose release's ledger is neither succeeded
nor running (a crash between a create and its ledger record leaves such a thing). Whatever an endpoint
uses is never an orphan, whatever the ledgers say: the sweep reads the endpoints' configs, models,
images, topics, alarms and scaling from the services first (tasks/sagemaker/in_use.py). `--delete` removes
only orphans whose ledger exists and says the release was unwound; a resource whose ledger is not found
(a mistyped --bucket or --prefix, a lifecycle rule that expired it) is "unknown": listed, not deleted.
Endpoints are deleted only with --include-endpoints, and only when Failed or OutOfService.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow

from flows import cli
from tasks.config import naming
from tasks.config.model import check_value, load_config
from tasks.core import aws
from tasks.core.errors import ConfigError, ReleaseError, ReleaseRunning
from tasks.core.logs import run_logger
from tasks.image import build
from tasks.lifecycle import unwind
from tasks.lifecycle.ledger import (
    CLOUDWATCH_ALARM,
    ECR_REPOSITORY,
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    SNS_TOPIC,
    Deleter,
    Ledger,
    LedgerEntry,
    S3LedgerStore,
)
from tasks.lifecycle.lock import live_lease, release_lease, use_shared_lease_storage
from tasks.sagemaker import hosting, in_use

DEFAULT_PREFIX = "sagemaker-release"


class ReleaseSucceeded(ReleaseError):
    """The cleanup of a release that succeeded was asked for: its resources are live."""

    def __init__(self, release_id: str, endpoint: str) -> None:
        super().__init__(
            f"ReleaseSucceeded: release {release_id} finished and endpoint {endpoint} serves it; "
            "fix: release another model to replace it, or pass force=True (--force) to remove what it "
            "created anyway",
            release_id=release_id,
            endpoint=endpoint,
        )


def ledger_store(release_id: str, bucket: str, prefix: str) -> S3LedgerStore:
    return S3LedgerStore(bucket, naming.ledger_key(prefix, release_id))


@flow(name="cleanup-release", log_prints=True)
def cleanup(
    release_id: str,
    bucket: str,
    prefix: str = DEFAULT_PREFIX,
    force: bool = False,
    endpoint_timeout_s: int = 1800,
    poll_interval_s: float = 10.0,
) -> dict[str, Any]:
    """Unwind the persisted ledger of release `release_id` and free its endpoint lock.

    Refused without `force` while the release still holds its lock (its lease, renewed into the
    ledger, has not run out): the release may still be running.
    """
    ledger = Ledger.load(
        ledger_store(release_id, bucket, prefix),
        deleters=unwind.deleters(endpoint_timeout_s=endpoint_timeout_s, poll_interval_s=poll_interval_s),
    )
    endpoint = ledger.meta.get("endpoint")
    if ledger.state == "succeeded" and not force:
        raise ReleaseSucceeded(release_id, str(endpoint))
    held = live_lease(ledger.meta) if ledger.state in ("running", "unwinding") else None
    if held is not None and not force:
        raise ReleaseRunning(
            release_id,
            endpoint=str(endpoint),
            lease_id=held[0],
            expires_at=held[1].isoformat(timespec="seconds"),
        )
    ledger.keep = unwind.keep_in_use(
        str(endpoint) if endpoint and ledger.meta.get("endpoint_type") != "batch" else None
    )
    state_before = ledger.state
    handled = ledger.unwind()
    lease = ledger.meta.get("lock_lease")
    if lease and state_before != "succeeded":
        # The dead release held the endpoint's slot; give it back now rather than at lease expiry.
        release_lease(str(lease))
    run_logger().info("release %s: unwound %d entries (was %s)", release_id, len(handled), state_before)
    return {
        "release_id": release_id,
        "endpoint": endpoint,
        "state_before": state_before,
        "state": ledger.state,
        "entries": [{"kind": e.kind, "id": e.resource_id, "status": e.status} for e in ledger.entries],
    }


# --- orphans ------------------------------------------------------------------------------------------

# Ledger states that make a release's leftovers deletable: its unwind ran (or began) and left them.
DELETABLE_LEDGER_STATES = frozenset({"unwound", "unwind_failed", "unwinding"})
# The only endpoint statuses a sweep may delete from: nothing serves and nothing is in flight.
DELETABLE_ENDPOINT_STATUSES = frozenset({"Failed", "OutOfService"})
# Deletion order: an endpoint before its config, a config before its models, alarms before topics.
_ORDER = (
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    CLOUDWATCH_ALARM,
    SNS_TOPIC,
    ECR_REPOSITORY,
)


@dataclass(frozen=True)
class Tagged:
    """A resource carrying our managed-by tag, with what its listing said about it (`details`)."""

    kind: str
    resource_id: str
    arn: str
    tags: dict[str, str]
    details: dict[str, Any]


@dataclass(frozen=True)
class Orphan:
    """A tagged resource whose release is neither succeeded nor running by its ledger.

    `action` is "delete" only for a resource whose ledger exists and says the release was unwound,
    that no endpoint uses; anything else is "keep", and `reason` says why (and how to proceed).
    """

    kind: str
    resource_id: str
    arn: str
    release_id: str
    ledger_state: str  # missing | unwound | unwind_failed | unwinding
    action: str = "delete"  # delete | keep
    reason: str = ""


def tagged_resources() -> Iterator[Tagged]:
    """Every resource of ours that carries the managed-by tag."""
    sagemaker = aws.client("sagemaker")
    listings: list[tuple[str, str, str, str, str]] = [
        (SAGEMAKER_ENDPOINT, "list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
        (
            SAGEMAKER_ENDPOINT_CONFIG,
            "list_endpoint_configs",
            "EndpointConfigs",
            "EndpointConfigName",
            "EndpointConfigArn",
        ),
        (SAGEMAKER_MODEL, "list_models", "Models", "ModelName", "ModelArn"),
    ]
    for kind, operation, key, name_key, arn_key in listings:
        for page in sagemaker.get_paginator(operation).paginate():
            for item in page[key]:
                tags = _tags(sagemaker.list_tags(ResourceArn=item[arn_key]).get("Tags", []))
                if _ours(tags):
                    yield Tagged(kind, item[name_key], item[arn_key], tags, dict(item))
    cloudwatch = aws.client("cloudwatch")
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for alarm in page["MetricAlarms"]:
            tags = _tags(cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", []))
            if _ours(tags):
                yield Tagged(CLOUDWATCH_ALARM, alarm["AlarmName"], alarm["AlarmArn"], tags, dict(alarm))
    sns = aws.client("sns")
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            tags = _tags(sns.list_tags_for_resource(ResourceArn=topic["TopicArn"]).get("Tags", []))
            if _ours(tags):
                yield Tagged(SNS_TOPIC, topic["TopicArn"], topic["TopicArn"], tags, dict(topic))
    ecr = aws.client("ecr")
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repository in page["repositories"]:
            arn = repository["repositoryArn"]
            tags = _tags(ecr.list_tags_for_resource(resourceArn=arn).get("tags", []))
            if _ours(tags):
                yield Tagged(ECR_REPOSITORY, repository["repositoryName"], arn, tags, dict(repository))


def _tags(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {p.get("Key", p.get("key", "")): p.get("Value", p.get("value", "")) for p in pairs}


def _ours(tags: dict[str, str]) -> bool:
    return tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE


def find_orphans(
    bucket: str,
    prefix: str = DEFAULT_PREFIX,
    *,
    include_endpoints: bool = False,
    usage: in_use.InUse | None = None,
) -> list[Orphan]:
    """Tagged resources whose release is not succeeded or running according to its ledger, each with
    the sweep's verdict. Whatever an endpoint uses (`usage`, read from SageMaker) is no orphan at all."""
    usage = usage if usage is not None else in_use.endpoint_usage()
    states: dict[str, str] = {}
    orphans = []
    for resource in tagged_resources():
        if _user(usage, resource) is not None:
            continue
        release_id = resource.tags.get(naming.RELEASE_ID_KEY, "")
        if release_id not in states:
            document = ledger_store(release_id, bucket, prefix).load() if release_id else None
            states[release_id] = str(document.get("state")) if document else "missing"
        state = states[release_id]
        if state in ("succeeded", "running"):
            continue
        reason = _keep_reason(resource, release_id, state, bucket, prefix, include_endpoints)
        orphans.append(
            Orphan(
                resource.kind,
                resource.resource_id,
                resource.arn,
                release_id,
                state,
                action="keep" if reason else "delete",
                reason=reason or f"release {release_id} was {state}",
            )
        )
    return sorted(orphans, key=lambda o: _ORDER.index(o.kind))


def _user(usage: in_use.InUse, resource: Tagged) -> str | None:
    """The endpoint using the resource, if any (an endpoint is judged by its status instead)."""
    kind, name = resource.kind, resource.resource_id
    if kind == SAGEMAKER_ENDPOINT_CONFIG:
        return usage.config_user(name)
    if kind == SAGEMAKER_MODEL:
        return usage.model_user(name)
    if kind == CLOUDWATCH_ALARM:
        return usage.alarm_user(resource.details or {"AlarmName": name})
    if kind == SNS_TOPIC:
        return usage.topic_user(name)
    if kind == ECR_REPOSITORY:
        return usage.repository_user(name)
    return None


def _keep_reason(
    resource: Tagged, release_id: str, state: str, bucket: str, prefix: str, include_endpoints: bool
) -> str | None:
    if state == "missing":
        where = ledger_store(release_id, bucket, prefix).describe() if release_id else "(no release-id tag)"
        return (
            f"unknown: no ledger at {where}; a sweep deletes only what a ledger says was unwound. "
            "fix: check --bucket and --prefix (the release's storage.bucket and storage.prefix); if it "
            "is really unused, delete it by hand"
        )
    if state not in DELETABLE_LEDGER_STATES:
        return f"unknown: the ledger of release {release_id} is in state {state!r}"
    if resource.kind == SAGEMAKER_ENDPOINT:
        status = str(resource.details.get("EndpointStatus", "unknown"))
        if not include_endpoints:
            return f"endpoint ({status}): a sweep deletes endpoints only with --include-endpoints"
        if status not in DELETABLE_ENDPOINT_STATUSES:
            return f"endpoint is {status}: only a Failed or OutOfService endpoint is deleted by a sweep"
    if resource.kind == ECR_REPOSITORY and build.repository_has_images(resource.resource_id):
        return "the repository holds images; fix: delete the images no model uses, then sweep again"
    return None


@flow(name="cleanup-orphans", log_prints=True)
def cleanup_orphans(
    bucket: str,
    prefix: str = DEFAULT_PREFIX,
    delete: bool = False,
    include_endpoints: bool = False,
    endpoint_timeout_s: int = 1800,
    poll_interval_s: float = 10.0,
) -> dict[str, Any]:
    """List (and with `delete`, remove) orphans.

    Only resources whose ledger exists and says their release was unwound are deleted; without a
    ledger a resource is "unknown" and only listed. Whatever an endpoint uses is never an orphan.
    Endpoints are deleted only with `include_endpoints`, and only when Failed or OutOfService; the
    rest is judged again after them, against what the endpoints use then, so the config and models of
    a deleted endpoint go in the same sweep.
    """
    deleters = unwind.deleters(endpoint_timeout_s=endpoint_timeout_s, poll_interval_s=poll_interval_s)
    removed: list[str] = []
    kept: list[str] = []
    usage = in_use.endpoint_usage()
    found = find_orphans(bucket, prefix, include_endpoints=include_endpoints, usage=usage)
    endpoints = [o for o in found if o.kind == SAGEMAKER_ENDPOINT]
    for orphan in endpoints:
        _sweep_one(orphan, delete, deleters, removed, kept)
    rest = [o for o in found if o.kind != SAGEMAKER_ENDPOINT]
    if delete:
        # Endpoints change under a sweep (releases run meanwhile, and it may have deleted some).
        usage = in_use.endpoint_usage()
        fresh = find_orphans(bucket, prefix, include_endpoints=include_endpoints, usage=usage)
        rest = [o for o in fresh if o.kind != SAGEMAKER_ENDPOINT]
    for orphan in rest:
        _sweep_one(orphan, delete, deleters, removed, kept)
    return {
        "orphans": [asdict(o) for o in (*endpoints, *rest)],
        "deleted": removed,
        "kept": kept,
        "in_use": usage.summary(),
    }


def _sweep_one(
    orphan: Orphan, delete: bool, deleters: Mapping[str, Deleter], removed: list[str], kept: list[str]
) -> None:
    log = run_logger()
    log.info(
        "orphan %s %s of release %s (ledger %s): %s%s",
        orphan.kind,
        orphan.resource_id,
        orphan.release_id,
        orphan.ledger_state,
        orphan.action,
        f" ({orphan.reason})" if orphan.action == "keep" else "",
    )
    if not delete:
        return
    if orphan.action != "delete":
        kept.append(orphan.resource_id)
        return
    if orphan.kind == SAGEMAKER_ENDPOINT:
        status = _endpoint_status(orphan.resource_id)
        if status is not None and status not in DELETABLE_ENDPOINT_STATUSES:
            log.info("kept endpoint %s: it is %s now", orphan.resource_id, status)
            kept.append(orphan.resource_id)
            return
    entry = LedgerEntry(seq=0, kind=orphan.kind, resource_id=orphan.resource_id, attrs={"arn": orphan.arn})
    try:
        _delete(deleters[orphan.kind], entry)
    except Exception as exc:
        if aws.error_code(exc) != "RepositoryNotEmptyException":
            raise
        # An image was pushed into it since the sweep looked: it is someone's now.
        log.info("kept repository %s: it is not empty any more", orphan.resource_id)
        kept.append(orphan.resource_id)
        return
    removed.append(orphan.resource_id)


def _endpoint_status(name: str) -> str | None:
    described = hosting.describe_endpoint(name)
    return str(described["EndpointStatus"]) if described is not None else None


def _delete(deleter: Callable[[LedgerEntry], None], entry: LedgerEntry) -> None:
    try:
        deleter(entry)
    except Exception as exc:
        if not aws.is_not_found(exc):
            raise


# --- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    identity: dict[str, Any] = {"release_id": None}
    return cli.run(lambda: _main(argv, identity), identity)


def _main(argv: list[str] | None, identity: dict[str, Any]) -> int:
    parser = cli.Parser(prog="python -m flows.cleanup", description=__doc__.splitlines()[0])
    parser.add_argument(
        "release_id", nargs="?", metavar="RELEASE_ID", help="the release whose ledger to unwind"
    )
    parser.add_argument("--bucket", help="bucket holding the ledgers (storage.bucket of the release)")
    parser.add_argument("--prefix", help=f"key prefix of the ledgers (default {DEFAULT_PREFIX})")
    parser.add_argument("--config", help="take bucket and prefix from this release config instead")
    parser.add_argument(
        "--force",
        action="store_true",
        help="unwind even a release that succeeded, or one that still holds its endpoint lock",
    )
    parser.add_argument(
        "--orphans", action="store_true", help="list resources of ours no release accounts for"
    )
    parser.add_argument("--delete", action="store_true", help="with --orphans: delete them too")
    parser.add_argument(
        "--include-endpoints",
        action="store_true",
        help="with --orphans --delete: delete orphan endpoints too (only Failed or OutOfService ones)",
    )
    args = parser.parse_args(argv)
    identity["release_id"] = args.release_id
    bucket, prefix = _ledger_location(args)
    use_shared_lease_storage()
    if args.orphans:
        state = cleanup_orphans(
            bucket,
            prefix,
            delete=args.delete,
            include_endpoints=args.include_endpoints,
            return_state=True,
        )
    else:
        state = cleanup(args.release_id, bucket, prefix, force=args.force, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException) or not isinstance(result, dict):
        error = cli.error_text(result) if isinstance(result, BaseException) else str(result)
        print(json.dumps({**identity, "status": "failed", "error": error}, default=str))
        return 1
    print(json.dumps({"status": "done", **result}, default=str))
    return 0


def _ledger_location(args: argparse.Namespace) -> tuple[str, str]:
    """(bucket, prefix) of the ledgers, after refusing flags that contradict or do nothing."""
    line = cli.COMMAND_LINE
    if args.orphans and args.release_id is not None:
        raise ConfigError(
            "RELEASE_ID",
            "is given with --orphans, which sweeps every release",
            "give RELEASE_ID to unwind one release, or --orphans alone",
            subject=line,
        )
    if not args.orphans and args.release_id is None:
        raise ConfigError(
            "RELEASE_ID", "is required", "give the RELEASE_ID to unwind, or --orphans", subject=line
        )
    for flag, given, allowed, needs in (
        ("--delete", args.delete, args.orphans, "--orphans"),
        ("--include-endpoints", args.include_endpoints, args.orphans and args.delete, "--orphans --delete"),
        ("--force", args.force, not args.orphans, "a RELEASE_ID"),
    ):
        if given and not allowed:
            raise ConfigError(
                flag, f"only applies with {needs}", f"drop {flag}, or give {needs}", subject=line
            )
    if args.release_id is not None:
        check_value("RELEASE_ID", args.release_id, "release_id", subject=line)
    bucket, prefix = args.bucket, args.prefix
    if bucket is not None:
        check_value("--bucket", bucket, "bucket", subject=line)
    if prefix is not None:
        check_value("--prefix", prefix, "key_prefix", subject=line)
    if args.config:
        # Only the storage section matters here: the model folder of a dead worker need not exist.
        storage = load_config(args.config, path_field="--config", check_folders=False).storage
        bucket = bucket if bucket is not None else storage.bucket
        prefix = prefix if prefix is not None else storage.prefix
    if bucket is None:
        raise ConfigError(
            "--bucket",
            "is required: no bucket was given",
            "pass --bucket BUCKET, or --config with the release's config",
            subject=line,
        )
    return bucket, prefix or DEFAULT_PREFIX


if __name__ == "__main__":
    sys.exit(main())
