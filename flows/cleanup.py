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
from dataclasses import asdict
from typing import Any

from prefect import flow

from flows import cli
from tasks.config import check_value, load_config
from tasks.core.errors import ConfigError, ReleaseError, ReleaseRunning
from tasks.core.logs import run_logger
from tasks.lifecycle import orphans, unwind
from tasks.lifecycle.kinds import (
    SAGEMAKER_ENDPOINT,
)
from tasks.lifecycle.ledger import Ledger, S3LedgerStore
from tasks.lifecycle.lock import live_lease, release_lease, use_shared_lease_storage
from tasks.sagemaker import in_use

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
        S3LedgerStore.of_release(release_id, bucket, prefix),
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
    found = orphans.find_orphans(bucket, prefix, include_endpoints=include_endpoints, usage=usage)
    endpoints = [o for o in found if o.kind == SAGEMAKER_ENDPOINT]
    for orphan in endpoints:
        orphans.sweep_one(orphan, delete, deleters, removed, kept)
    rest = [o for o in found if o.kind != SAGEMAKER_ENDPOINT]
    if delete:
        # Endpoints change under a sweep (releases run meanwhile, and it may have deleted some).
        usage = in_use.endpoint_usage()
        fresh = orphans.find_orphans(bucket, prefix, include_endpoints=include_endpoints, usage=usage)
        rest = [o for o in fresh if o.kind != SAGEMAKER_ENDPOINT]
    for orphan in rest:
        orphans.sweep_one(orphan, delete, deleters, removed, kept)
    return {
        "orphans": [asdict(o) for o in (*endpoints, *rest)],
        "deleted": removed,
        "kept": kept,
        "in_use": usage.summary(),
    }


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
