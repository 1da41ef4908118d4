"""One release per endpoint at a time: a Prefect global concurrency limit of 1 keyed on the endpoint.

Releases of different endpoints run in parallel; a second release of the same endpoint waits for the
slot up to its timeout and is then refused with ReleaseBusy. Endpoint names are case-insensitive in
SageMaker, so the limit is named after the lowercased name: `Demo` and `demo` share one lock.

The slot is held through a lease that this module's own thread renews (`LeaseKeeper`). When renewing
fails for good (Prefect answers that the lease is gone, or the lease would run out before the next
attempt), the lease is marked lost and `Lease.check()` raises LeaseLost: the release calls it before
each step that creates or changes something (and its ledger calls it on every record), so it stops at
the next safe point and unwinds. Prefect's own `maintain_concurrency_lease` is not used: it either
ignores a failed renewal or cancels the run wherever it happens to be, half-way through a change.

Each renewal's new expiry is handed to listeners (`Lease.on_renewed`); the release writes it into its
ledger, so `flows/cleanup.py` can tell a release that still holds its lease (it refuses to unwind it
without --force) from one whose worker died. The lease id goes into the ledger too, so that cleanup
gives the slot of a dead release back at once (`release_lease`); a Prefect server also reclaims it by
itself once the lease expires.

Ephemeral Prefect APIs (no `prefect server start`) keep leases in each process's memory, where a
killed release's lease would be lost and its slot held forever; `use_shared_lease_storage` points them
at Prefect's file-based lease storage under PREFECT_HOME, which every local process shares.

The Prefect calls below that are not public API (`prefect.concurrency._sync`) or whose behaviour this
module depends on (the renew call's 410 for a lease it no longer has, TimeoutError from a full limit)
are used only here; tests/unit/test_lock.py pins that behaviour against a real Prefect API, so a
Prefect upgrade that changes it fails a test rather than a release. prefect is pinned to 3.8.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._sync import (
    acquire_concurrency_slots_with_lease,
    release_concurrency_slots_with_lease,
)
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from tasks.core.errors import LeaseLost, ReleaseBusy
from tasks.core.logs import run_logger
from tasks.core.waiting import Clock, SystemClock

logger = logging.getLogger(__name__)

# A dead holder's slot is reclaimed after this long (Prefect refuses leases under 60 s).
LEASE_DURATION_S = 120.0
# How often the lease is renewed; a lost lease is noticed within about this long.
RENEW_ENV = "SAGEMAKER_RELEASE_LEASE_RENEW_S"
DEFAULT_RENEW_S = LEASE_DURATION_S / 3
# Pause between attempts after a failed renewal.
RETRY_S = 5.0
LEASE_STORAGE_ENV = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"
SHARED_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
# Ledger meta keys: the lease the release holds, and until when its last renewal keeps it.
LEASE_META = "lock_lease"
LEASE_EXPIRY_META = "lease_expires_at"


def use_shared_lease_storage() -> None:
    """Make an ephemeral Prefect API started from this process keep leases on disk (unless set)."""
    os.environ.setdefault(LEASE_STORAGE_ENV, SHARED_LEASE_STORAGE)


def lock_name(endpoint: str) -> str:
    """The concurrency limit of an endpoint: lowercased, as SageMaker compares endpoint names
    (Prefect names cannot contain '/')."""
    return f"sagemaker-release:endpoint:{endpoint.lower()}"


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


def renew_lease(lease_id: str, duration_s: float = LEASE_DURATION_S) -> None:
    """Extend the lease to `duration_s` from now; httpx.HTTPStatusError 410 when Prefect no longer has it."""
    with get_client(sync_client=True) as client:
        client.renew_concurrency_lease(lease_id=UUID(lease_id), lease_duration=duration_s)


def lease_is_gone(exc: BaseException) -> bool:
    """True when a renewal failed because Prefect no longer has the lease (expired, released, revoked)."""
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (404, 410)


def renew_interval() -> float:
    """Seconds between renewals: $SAGEMAKER_RELEASE_LEASE_RENEW_S, else a third of the lease."""
    raw = os.environ.get(RENEW_ENV)
    if raw is None or raw == "":
        return DEFAULT_RENEW_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= LEASE_DURATION_S / 2:
        raise ValueError(
            f"{RENEW_ENV}={raw!r} is not a number of seconds in (0, {LEASE_DURATION_S / 2:.0f}]; "
            f"fix: unset it (default {DEFAULT_RENEW_S:.0f}) or give e.g. {RENEW_ENV}=10"
        )
    return value


class Lease:
    """The endpoint lock as one release holds it: its id, whether it is lost, and until when it runs."""

    def __init__(self, lease_id: str, endpoint: str, *, duration_s: float, expires_at: datetime) -> None:
        self.id = lease_id
        self.endpoint = endpoint
        self.duration_s = duration_s
        self._expires_at = expires_at
        self._lost_reason: str | None = None
        self._listeners: list[Callable[[datetime], None]] = []
        self._lock = threading.Lock()

    @property
    def expires_at(self) -> datetime:
        """When the lease runs out unless renewed again (UTC, as of its last renewal)."""
        with self._lock:
            return self._expires_at

    @property
    def lost(self) -> bool:
        with self._lock:
            return self._lost_reason is not None

    def check(self) -> None:
        """A safe point: raise LeaseLost when the lease is lost, so the release stops before its next
        change."""
        with self._lock:
            reason = self._lost_reason
        if reason is not None:
            raise LeaseLost(self.endpoint, lease_id=self.id, reason=reason)

    def on_renewed(self, listener: Callable[[datetime], None]) -> Callable[[], None]:
        """Call `listener(new expiry)` after each renewal; returns the function that stops it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def renewed(self, expires_at: datetime) -> None:
        with self._lock:
            self._expires_at = expires_at
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(expires_at)
            except Exception as exc:
                # A listener (the ledger's note of the expiry) failing must not end the renewals.
                logger.warning("lease %s: a renewal listener failed: %s", self.id, exc)

    def lose(self, reason: str) -> None:
        with self._lock:
            if self._lost_reason is None:
                self._lost_reason = reason
        run_logger().error("lost the lock of endpoint %s (lease %s): %s", self.endpoint, self.id, reason)


class LeaseKeeper:
    """When to renew a lease and when to give it up, on an injectable clock (the thread only waits).

    Renews every `renew_every_s`; after a failure retries every `retry_every_s`. The lease is lost when
    Prefect says it is gone, or when the next retry would come later than `retry_every_s` before the
    lease runs out: past that point this release cannot know that it still holds the endpoint.
    """

    def __init__(
        self,
        lease: Lease,
        renew: Callable[[], None],
        *,
        renew_every_s: float,
        retry_every_s: float = RETRY_S,
        clock: Clock | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.lease = lease
        self.renew = renew
        self.renew_every_s = renew_every_s
        self.retry_every_s = min(retry_every_s, renew_every_s)
        self.clock = clock or SystemClock()
        self.wall = wall or (lambda: datetime.now(UTC))
        now = self.clock.monotonic()
        self.valid_until = now + lease.duration_s
        self.next_at = now + renew_every_s

    def wait_s(self) -> float:
        """Seconds until the next renewal is due."""
        return max(0.0, self.next_at - self.clock.monotonic())

    def step(self) -> bool:
        """Renew now; False once the lease is lost (the keeper's work is over)."""
        started, started_wall = self.clock.monotonic(), self.wall()
        try:
            self.renew()
        except Exception as exc:
            if lease_is_gone(exc):
                self.lease.lose("Prefect no longer has the lease (it expired or was released)")
                return False
            if started + 2 * self.retry_every_s >= self.valid_until:
                self.lease.lose(f"renewing it kept failing until it was about to run out: {exc}")
                return False
            logger.warning(
                "lease %s: renewal failed (%s); next try in %.0f s", self.lease.id, exc, self.retry_every_s
            )
            self.next_at = started + self.retry_every_s
            return True
        # Counted from before the call: the server's expiry is at least this late.
        self.valid_until = started + self.lease.duration_s
        self.next_at = started + self.renew_every_s
        self.lease.renewed(started_wall + timedelta(seconds=self.lease.duration_s))
        return True


def _keep(keeper: LeaseKeeper, stop: threading.Event) -> None:
    while not stop.wait(keeper.wait_s()):
        try:
            if not keeper.step():
                return
        except Exception as exc:  # a bug here must not look like a held lease
            keeper.lease.lose(f"the renewal thread failed: {type(exc).__name__}: {exc}")
            return


@contextmanager
def endpoint_lock(endpoint: str, *, timeout_s: float, renew_every_s: float | None = None) -> Iterator[Lease]:
    """Hold the endpoint's slot for the block and yield its Lease; wait up to `timeout_s` for the
    slot, else raise ReleaseBusy. The lease is renewed in the background until the block ends."""
    name = lock_name(endpoint)
    ensure_limit(name)
    holder: Any = None
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        holder = ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)
    every = renew_every_s if renew_every_s is not None else renew_interval()
    try:
        acquired = acquire_concurrency_slots_with_lease(
            [name], 1, timeout_seconds=timeout_s, strict=True, lease_duration=LEASE_DURATION_S, holder=holder
        )
    except TimeoutError:
        raise ReleaseBusy(
            endpoint,
            f"another release (Prefect concurrency limit {name!r} stayed full for {timeout_s:.0f} s)",
        ) from None
    lease_id = str(acquired.lease_id)
    lease = Lease(
        lease_id,
        endpoint,
        duration_s=LEASE_DURATION_S,
        expires_at=datetime.now(UTC) + timedelta(seconds=LEASE_DURATION_S),
    )
    run_logger().info("holding %s (lease %s)", name, lease_id)
    keeper = LeaseKeeper(lease, lambda: renew_lease(lease_id), renew_every_s=every)
    stop = threading.Event()
    # The copied context carries the run's Prefect settings (its API URL) into the thread.
    context_copy = contextvars.copy_context()
    thread = threading.Thread(
        target=context_copy.run, args=(_keep, keeper, stop), daemon=True, name=f"lease-{lease_id}"
    )
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(timeout=10)
        release_concurrency_slots_with_lease(acquired.lease_id)


def live_lease(meta: Mapping[str, Any], *, now: datetime | None = None) -> tuple[str, datetime] | None:
    """(lease id, expiry) of the lease a release's ledger meta says it holds, when that expiry is still
    ahead; None for a ledger without one or whose lease has run out."""
    lease_id, until = meta.get(LEASE_META), meta.get(LEASE_EXPIRY_META)
    if not lease_id or not until:
        return None
    try:
        expires_at = datetime.fromisoformat(str(until))
    except ValueError:
        return None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return (str(lease_id), expires_at) if expires_at > (now or datetime.now(UTC)) else None
