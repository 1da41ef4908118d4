"""Clean up after releases that did not finish: unwind a persisted ledger, or find orphans by tag.

    python -m flows.cleanup RELEASE_ID --bucket BUCKET [--prefix sagemaker-release]
    python -m flows.cleanup RELEASE_ID --config releases/demo.yaml     # bucket and prefix from the config
    python -m flows.cleanup --orphans --bucket BUCKET [--delete]

A release whose worker died (killed, OOM, lost node) leaves its ledger in S3 in state "running".
Unwinding it does what the release would have done on failure: delete what it created, put an
endpoint it was updating back on its previous config, register autoscaling it took off again, and
give back its slot of the endpoint lock. A succeeded release is refused: its resources serve traffic.

Orphans are resources tagged managed-by=sagemaker-release whose release has no ledger, or a ledger that
is neither succeeded nor running (a crash between a create and its ledger record leaves such a thing).
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow

from flows import cli
from tasks import aws, naming, unwind
from tasks.config import check_value, load_config
from tasks.errors import ConfigError, ReleaseError
from tasks.ledger import (
    CLOUDWATCH_ALARM,
    ECR_REPOSITORY,
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    SNS_TOPIC,
    Ledger,
    LedgerEntry,
    S3LedgerStore,
)
from tasks.lock import release_lease, use_shared_lease_storage
from tasks.logs import run_logger

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
    """Unwind the persisted ledger of release `release_id` and free its endpoint lock."""
    ledger = Ledger.load(
        ledger_store(release_id, bucket, prefix),
        deleters=unwind.deleters(endpoint_timeout_s=endpoint_timeout_s, poll_interval_s=poll_interval_s),
    )
    endpoint = ledger.meta.get("endpoint")
    if ledger.state == "succeeded" and not force:
        raise ReleaseSucceeded(release_id, str(endpoint))
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


@dataclass(frozen=True)
class Orphan:
    kind: str
    resource_id: str
    arn: str
    release_id: str
    ledger_state: str  # missing | unwound | unwind_failed | unwinding


def tagged_resources() -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """(kind, id, arn, tags) of every resource of ours that carries the managed-by tag."""
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
                if tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE:
                    yield kind, item[name_key], item[arn_key], tags
    cloudwatch = aws.client("cloudwatch")
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for alarm in page["MetricAlarms"]:
            tags = _tags(cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", []))
            if tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE:
                yield CLOUDWATCH_ALARM, alarm["AlarmName"], alarm["AlarmArn"], tags
    sns = aws.client("sns")
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            tags = _tags(sns.list_tags_for_resource(ResourceArn=topic["TopicArn"]).get("Tags", []))
            if tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE:
                yield SNS_TOPIC, topic["TopicArn"], topic["TopicArn"], tags
    ecr = aws.client("ecr")
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repository in page["repositories"]:
            arn = repository["repositoryArn"]
            tags = _tags(ecr.list_tags_for_resource(resourceArn=arn).get("tags", []))
            if tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE:
                yield ECR_REPOSITORY, repository["repositoryName"], arn, tags


def _tags(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {p.get("Key", p.get("key", "")): p.get("Value", p.get("value", "")) for p in pairs}


def find_orphans(bucket: str, prefix: str = DEFAULT_PREFIX) -> list[Orphan]:
    """Tagged resources whose release is not succeeded or running according to its ledger."""
    states: dict[str, str] = {}
    orphans = []
    for kind, resource_id, arn, tags in tagged_resources():
        release_id = tags.get(naming.RELEASE_ID_KEY, "")
        if release_id not in states:
            document = ledger_store(release_id, bucket, prefix).load() if release_id else None
            states[release_id] = str(document.get("state")) if document else "missing"
        if states[release_id] not in ("succeeded", "running"):
            orphans.append(Orphan(kind, resource_id, arn, release_id, states[release_id]))
    return orphans


@flow(name="cleanup-orphans", log_prints=True)
def cleanup_orphans(bucket: str, prefix: str = DEFAULT_PREFIX, delete: bool = False) -> dict[str, Any]:
    """List (and with `delete`, remove) orphans; whatever a live endpoint serves is always kept."""
    orphans = find_orphans(bucket, prefix)
    log = run_logger()
    deleters = unwind.deleters()
    removed, kept = [], []
    order = [
        SAGEMAKER_ENDPOINT,
        SAGEMAKER_ENDPOINT_CONFIG,
        SAGEMAKER_MODEL,
        CLOUDWATCH_ALARM,
        SNS_TOPIC,
        ECR_REPOSITORY,
    ]
    for orphan in sorted(orphans, key=lambda o: order.index(o.kind)):
        log.info(
            "orphan %s %s of release %s (ledger %s)",
            orphan.kind,
            orphan.resource_id,
            orphan.release_id,
            orphan.ledger_state,
        )
        if not delete:
            continue
        entry = LedgerEntry(
            seq=0, kind=orphan.kind, resource_id=orphan.resource_id, attrs={"arn": orphan.arn}
        )
        if _in_use(entry):
            kept.append(orphan.resource_id)
            continue
        _delete(deleters[orphan.kind], entry)
        removed.append(orphan.resource_id)
    return {"orphans": [asdict(o) for o in orphans], "deleted": removed, "kept": kept}


def _in_use(entry: LedgerEntry) -> bool:
    if entry.kind not in (SAGEMAKER_ENDPOINT_CONFIG, SAGEMAKER_MODEL):
        return False
    sagemaker = aws.client("sagemaker")
    for page in sagemaker.get_paginator("list_endpoints").paginate():
        for endpoint in page["Endpoints"]:
            if unwind.keep_in_use(endpoint["EndpointName"])(entry):
                return True
    return False


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
    args = parser.parse_args(argv)
    identity["release_id"] = args.release_id
    bucket, prefix = _ledger_location(args)
    use_shared_lease_storage()
    if args.orphans:
        state = cleanup_orphans(bucket, prefix, delete=args.delete, return_state=True)
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
