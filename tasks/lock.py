"""One release per endpoint at a time: a Prefect global concurrency limit of 1 keyed on the endpoint.

Releases of different endpoints run in parallel; a second release of the same endpoint waits for the
slot up to its timeout and is then refused with ReleaseBusy. The slot is held through a lease that a
background thread renews. The lease id goes into the release's ledger, so the cleanup of a release
whose worker died gives its slot back at once (`release_lease`); a Prefect server also reclaims it by
itself once the lease expires.

Ephemeral Prefect APIs (no `prefect server start`) keep leases in each process's memory, where a
killed release's lease would be lost and its slot held forever; `use_shared_lease_storage` points them
at Prefect's file-based lease storage under PREFECT_HOME, which every local process shares.

The lease calls are Prefect's own (`prefect.concurrency._sync`, `_leases`), used instead of the public
`concurrency()` context manager because it does not expose the lease id; prefect is pinned to 3.8.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import (
    acquire_concurrency_slots_with_lease,
    release_concurrency_slots_with_lease,
)
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from tasks.errors import ReleaseBusy
from tasks.logs import run_logger

# Renewed about every half of this by Prefect; a dead holder's slot is reclaimed after this long.
LEASE_DURATION_S = 120.0
LEASE_STORAGE_ENV = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"
SHARED_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"


def use_shared_lease_storage() -> None:
    """Make an ephemeral Prefect API started from this process keep leases on disk (unless set)."""
    os.environ.setdefault(LEASE_STORAGE_ENV, SHARED_LEASE_STORAGE)


def lock_name(endpoint: str) -> str:
    """The concurrency limit of an endpoint (Prefect names cannot contain '/')."""
    return f"sagemaker-release:endpoint:{endpoint}"


def ensure_limit(name: str) -> None:
    """Create the limit with one slot unless it exists (two first releases may race: both fine)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        with suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def active_slots(endpoint: str) -> int:
    """Slots of the endpoint's limit in use right now (0 when the limit does not exist)."""
    with get_client(sync_client=True) as client:
        try:
            return int(client.read_global_concurrency_limit_by_name(lock_name(endpoint)).active_slots)
        except ObjectNotFound:
            return 0


def release_lease(lease_id: str) -> None:
    """Give back the slot held under `lease_id` (a no-op when the lease already expired or ended)."""
    release_concurrency_slots_with_lease(UUID(lease_id))


@contextmanager
def endpoint_lock(endpoint: str, *, timeout_s: float) -> Iterator[str]:
    """Hold the endpoint's slot for the block and yield the lease id; wait up to `timeout_s` for the
    slot, else raise ReleaseBusy."""
    name = lock_name(endpoint)
    ensure_limit(name)
    holder: Any = None
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        holder = ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)
    try:
        acquired = acquire_concurrency_slots_with_lease(
            [name], 1, timeout_seconds=timeout_s, strict=True, lease_duration=LEASE_DURATION_S, holder=holder
        )
    except TimeoutError:
        raise ReleaseBusy(
            endpoint,
            f"another release (Prefect concurrency limit {name!r} stayed full for {timeout_s:.0f} s)",
        ) from None
    lease_id = acquired.lease_id
    run_logger().info("holding %s (lease %s)", name, lease_id)
    try:
        # A missed renewal must not kill a release half-way: its cleanup would then race the next one.
        with maintain_concurrency_lease(lease_id, LEASE_DURATION_S, raise_on_lease_renewal_failure=False):
            yield str(lease_id)
    finally:
        release_concurrency_slots_with_lease(lease_id)
