"""The resource ledger: every resource a release creates, persisted the moment it exists.

A release records the intent to create a resource before the create is sent (a `pending` entry, which
may or may not exist yet) and confirms it once the create answered, so a create whose answer was lost
(a read timeout after the service acted) is still known. Resources recorded after the fact (`record`)
are written right after they exist. When the release fails, the ledger is unwound last-in-first-out:
NotFound counts as deleted, one failed delete does not stop the others, a pending entry is deleted only
when what exists under its name carries this release's tag, and each entry is marked as it goes, so an
unwind that stopped half-way can be run again. The ledger lives in S3 beside the release's model data
by default, so a release whose worker died can be cleaned up from another machine (`flows/cleanup.py`).

A ledger that cannot be saved never stops an unwind: every save also writes a local copy under the state
dir, the unwind goes on deleting when the store refuses, retries the save at the end, and reports a save
that still fails as a note on the release's own error. While the release runs, a failed save stops it
(LedgerSaveFailed) before it creates anything the store does not know about.

Inside a Prefect flow run each undo is its own run of the task `undo` (named `undo <kind> <resource>`),
so a failed release's graph shows what was removed and what was put back, newest first. The ledger still
decides and records everything; Prefect only shows it. When the task cannot run (Prefect's API is
unreachable), the entry is undone directly: an unwind never depends on Prefect.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from tasks.config import naming, secret_values
from tasks.core import aws
from tasks.core.errors import ConfigError, LedgerSaveFailed, UnwindFailed
from tasks.core.retry import call_with_retries
from tasks.core.state_dir import state_dir
from tasks.core.waiting import Clock
from tasks.lifecycle.kinds import (
    KINDS,
)
from tasks.lifecycle.ownership import ours

logger = logging.getLogger(__name__)

LEDGER_VERSION = 1


# pending: intent recorded, the create may or may not have happened; foreign: the name turned out to
# belong to a resource this release did not create (never unwound).
EntryStatus = Literal["pending", "created", "deleted", "gone", "kept", "failed", "foreign"]
LedgerState = Literal["running", "succeeded", "unwinding", "unwound", "unwind_failed"]
Deleter = Callable[["LedgerEntry"], None]
# (entry, release_id) -> True: exists and is this release's, False: exists and is not, None: absent.
OwnerCheck = Callable[["LedgerEntry", str], "bool | None"]
# Attempts of the save retried at the end of an unwind, or of the save that marks a release succeeded.
FLUSH_ATTEMPTS = 4


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LedgerEntry:
    """One created resource. `attrs` holds what its deleter needs beyond the id (bucket, variant…)."""

    seq: int
    kind: str
    resource_id: str
    attrs: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    status: EntryStatus = "created"
    error: str | None = None

    @property
    def pending(self) -> bool:
        """Still to be undone by an unwind (created, an intent that may exist, or a failed delete)."""
        return self.status in ("pending", "created", "failed")

    @property
    def held(self) -> bool:
        """The release created this resource and it still exists as far as the ledger knows."""
        return self.status in ("created", "kept")

    def describe(self) -> str:
        return f"{self.kind} {self.resource_id}"


class LedgerStore(Protocol):
    """Where a ledger document lives."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, document: dict[str, Any]) -> None: ...

    def describe(self) -> str: ...


class LocalLedgerStore:
    """A JSON file; written atomically (temp file + rename) so a crash never leaves half a ledger."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, document: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def describe(self) -> str:
        return str(self.path)


class S3LedgerStore:
    """An S3 object, `s3://<bucket>/<prefix>/releases/<release_id>/ledger.json` by convention."""

    @classmethod
    def of_release(cls, release_id: str, bucket: str, prefix: str) -> S3LedgerStore:
        """Where a release keeps its ledger: beside its model data, under the storage prefix."""
        return cls(bucket, naming.ledger_key(prefix, release_id))

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key

    def load(self) -> dict[str, Any] | None:
        s3 = aws.client("s3")
        try:
            body = s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except Exception as exc:
            if aws.is_not_found(exc):
                return None
            raise
        return dict(json.loads(body))

    def save(self, document: dict[str, Any]) -> None:
        aws.client("s3").put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=json.dumps(document, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Ledger:
    """The resources of one release, persisted after every change.

    Use as a context manager to unwind when the block raises:

        with Ledger.open(store, release_id, deleters=DELETERS, keep=still_in_use) as ledger:
            entry = ledger.intend(kind, id)      # before a create is sent
            ...                                  # the create
            ledger.confirm(entry, arn=...)       # once it answered
            ledger.record(kind, id, **attrs)     # or, for a create safe to repeat (an S3 put), after it
        # on success the ledger is marked "succeeded"; on an exception it is unwound and the
        # exception propagates (with notes listing what could not be deleted or saved, if anything).

    `guard` is called before each intent and after each record while the release runs: raising there
    (a lost endpoint lock) stops the release before its next change, with the change just recorded
    already in the ledger. `ours` decides whether a pending entry's resource is this release's
    (tasks/lifecycle/ownership.py by default). `local_copy` is where every save is also written (under the
    state dir for a store that is not a local file).
    """

    def __init__(
        self,
        store: LedgerStore,
        release_id: str,
        *,
        entries: list[LedgerEntry] | None = None,
        state: LedgerState = "running",
        meta: Mapping[str, Any] | None = None,
        created_at: str | None = None,
        deleters: Mapping[str, Deleter] | None = None,
        keep: Callable[[LedgerEntry], bool] | None = None,
        ours: OwnerCheck | None = None,
        guard: Callable[[], None] | None = None,
        local_copy: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.release_id = release_id
        self._entries: list[LedgerEntry] = list(entries or [])
        self.state: LedgerState = state
        self.meta: dict[str, Any] = dict(meta or {})
        self.created_at = created_at or _now()
        self.deleters = dict(deleters) if deleters is not None else None
        self.keep = keep
        self.ours = ours
        self.guard = guard
        self.local_copy = local_copy if local_copy is not None else default_local_copy(store, release_id)
        self.clock = clock
        self._lock = threading.RLock()
        self._save_error: str | None = None
        self._local_copy_ok = False
        self._tolerate_save_failures = False
        # What each `undo` task run did, by entry seq (see `_undo_shown`).
        self._undo_outcomes: dict[int, str | None] = {}

    # -- creation and loading -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        store: LedgerStore,
        release_id: str,
        *,
        meta: Mapping[str, Any] | None = None,
        deleters: Mapping[str, Deleter] | None = None,
        keep: Callable[[LedgerEntry], bool] | None = None,
        ours: OwnerCheck | None = None,
        guard: Callable[[], None] | None = None,
        local_copy: Path | None = None,
        clock: Clock | None = None,
    ) -> Ledger:
        """Start the ledger of a release and persist it at once (so even an empty run leaves a trace).

        Reopening the ledger of a release that did not succeed (a retry, or a rerun after a crash)
        continues it, so a failure unwinds what both runs created. LedgerSaveFailed when the first
        save fails: nothing may be created then.
        """
        options: dict[str, Any] = {
            "deleters": deleters,
            "keep": keep,
            "ours": ours,
            "guard": guard,
            "local_copy": local_copy,
            "clock": clock,
        }
        existing = store.load()
        if existing is not None:
            ledger = cls._from_document(store, existing, **options)
            if ledger.release_id != release_id:
                raise ValueError(
                    f"ledger at {store.describe()} belongs to release {ledger.release_id}, not {release_id}"
                )
            if ledger.state == "succeeded":
                # Continuing it would let a failure of this run unwind what that release left serving.
                raise ConfigError(
                    "release_id",
                    f"release {release_id} already succeeded (ledger at {store.describe()})",
                    "leave release_id empty to get a new one, or choose an id not used before",
                )
            ledger.meta.update(meta or {})
            ledger.state = "running"
        else:
            ledger = cls(store, release_id, meta=meta, **options)
        ledger._save()
        return ledger

    @classmethod
    def load(
        cls,
        store: LedgerStore,
        *,
        deleters: Mapping[str, Deleter] | None = None,
        keep: Callable[[LedgerEntry], bool] | None = None,
        ours: OwnerCheck | None = None,
        local_copy: Path | None = None,
        clock: Clock | None = None,
    ) -> Ledger:
        """The persisted ledger at `store` (for the cleanup flow); LookupError when there is none."""
        document = store.load()
        if document is None:
            raise LookupError(f"no release ledger at {store.describe()}")
        return cls._from_document(
            store, document, deleters=deleters, keep=keep, ours=ours, local_copy=local_copy, clock=clock
        )

    @classmethod
    def _from_document(cls, store: LedgerStore, document: Mapping[str, Any], **options: Any) -> Ledger:
        version = document.get("version")
        if version != LEDGER_VERSION:
            raise ValueError(f"ledger at {store.describe()} has version {version}, expected {LEDGER_VERSION}")
        return cls(
            store,
            str(document["release_id"]),
            entries=[LedgerEntry(**entry) for entry in document.get("entries", [])],
            state=document.get("state", "running"),
            meta=document.get("meta", {}),
            created_at=document.get("created_at"),
            **options,
        )

    def to_document(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": LEDGER_VERSION,
                "release_id": self.release_id,
                "state": self.state,
                "created_at": self.created_at,
                "updated_at": _now(),
                "meta": self.meta,
                "entries": [asdict(entry) for entry in self._entries],
            }

    # -- saving -----------------------------------------------------------------------------------

    @property
    def save_error(self) -> str | None:
        """Why the last save to the store failed, or None when the store holds the latest state."""
        return self._save_error

    def _save(self) -> None:
        """Write the local copy, then the store. A store failure raises LedgerSaveFailed while the
        release runs, and is only remembered (for `flush`) while it unwinds."""
        with self._lock:
            # An entry's error text may quote a failed call's request; no secret value is ever stored.
            document = secret_values.redact_any(self.to_document())
            self._write_local_copy(document)
            try:
                self.store.save(document)
            except Exception as exc:
                self._save_error = f"{type(exc).__name__}: {exc}"
                if self._tolerate_save_failures:
                    logger.warning(
                        "ledger %s: could not save to %s (%s); going on, local copy at %s",
                        self.release_id,
                        self.store.describe(),
                        self._save_error,
                        self.local_copy,
                    )
                    return
                raise self._save_failed() from exc
            self._save_error = None

    def _write_local_copy(self, document: dict[str, Any]) -> None:
        if self.local_copy is None:
            return
        try:
            LocalLedgerStore(self.local_copy).save(document)
            self._local_copy_ok = True
        except OSError as exc:
            # The store is the ledger; a full or read-only worker disk must not fail a release on its own.
            self._local_copy_ok = False
            logger.warning(
                "ledger %s: could not write the local copy %s: %s", self.release_id, self.local_copy, exc
            )

    def _save_failed(self) -> LedgerSaveFailed:
        copy = str(self.local_copy) if self.local_copy is not None and self._local_copy_ok else None
        return LedgerSaveFailed(
            self.release_id,
            self.store.describe(),
            reason=self._save_error or "unknown error",
            local_copy=copy,
        )

    def flush(self, *, attempts: int = FLUSH_ATTEMPTS) -> None:
        """Save again after a failed save, retrying transient errors with backoff (on `clock`).

        A no-op when the store already holds the latest state; LedgerSaveFailed when it still fails.
        """
        with self._lock:
            if self._save_error is None:
                return
            document = self.to_document()
            self._write_local_copy(document)
            try:
                call_with_retries(
                    lambda: self.store.save(document), attempts=attempts, base_s=2.0, clock=self.clock
                )
            except Exception as exc:
                self._save_error = f"{type(exc).__name__}: {exc}"
                raise self._save_failed() from exc
            self._save_error = None
        logger.info("ledger %s: saved to %s after an earlier failure", self.release_id, self.store.describe())

    # -- recording --------------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, kind: str, resource_id: str, **attrs: Any) -> LedgerEntry:
        """Note that this release created `resource_id`; persisted before returning.

        `attrs` must be JSON values: they are what the deleter needs besides the id.
        """
        _check_kind(kind)
        json.dumps(attrs)  # refuse what cannot be persisted before it is half-recorded
        with self._lock:
            entry = LedgerEntry(
                seq=len(self._entries) + 1, kind=kind, resource_id=resource_id, attrs=dict(attrs)
            )
            self._entries.append(entry)
            self._save()
        logger.info("ledger %s: recorded %s", self.release_id, entry.describe())
        self._at_safe_point()
        return entry

    def intend(self, kind: str, resource_id: str, **attrs: Any) -> LedgerEntry:
        """Note that this release is about to create `resource_id` (status pending); persisted before
        returning, so the create is only sent once an unwind would look for it.

        A pending entry of the same resource (the create of an earlier attempt, which may or may not
        have happened) is reused rather than doubled.
        """
        _check_kind(kind)
        json.dumps(attrs)
        self._at_safe_point()
        with self._lock:
            for entry in reversed(self._entries):
                if entry.kind == kind and entry.resource_id == resource_id and entry.status == "pending":
                    if attrs:
                        entry.attrs.update(attrs)
                        self._save()
                    return entry
            entry = LedgerEntry(
                seq=len(self._entries) + 1,
                kind=kind,
                resource_id=resource_id,
                attrs=dict(attrs),
                status="pending",
            )
            self._entries.append(entry)
            self._save()
        logger.info("ledger %s: about to create %s", self.release_id, entry.describe())
        return entry

    def confirm(self, entry: LedgerEntry, **attrs: Any) -> None:
        """The create of a pending entry answered: it exists and is this release's (attrs: its ARN…)."""
        json.dumps(attrs)
        with self._lock:
            entry.status = "created"
            entry.error = None
            entry.attrs.update(attrs)
            self._save()
        logger.info("ledger %s: recorded %s", self.release_id, entry.describe())
        self._at_safe_point()

    def disown(self, entry: LedgerEntry, reason: str) -> None:
        """A pending entry's name belongs to a resource this release did not create: never unwind it."""
        with self._lock:
            entry.status = "foreign"
            entry.error = reason
            self._save()
        logger.info("ledger %s: %s is not this release's: %s", self.release_id, entry.describe(), reason)

    def _at_safe_point(self) -> None:
        if self.guard is not None and self.state == "running":
            self.guard()

    def find(self, kind: str, resource_id: str | None = None) -> list[LedgerEntry]:
        """Entries of `kind` (and `resource_id`, when given), oldest first."""
        return [
            e
            for e in self.entries
            if e.kind == kind and (resource_id is None or e.resource_id == resource_id)
        ]

    def holds(self, kind: str, resource_id: str) -> bool:
        """True when this release created `resource_id` and has not undone it (a rerun skips the create).

        A pending entry does not count: whether that create happened is not known.
        """
        return any(e.held for e in self.find(kind, resource_id))

    def set_meta(self, **values: Any) -> None:
        """Store facts about the release (endpoint, previous config…) that cleanup will need."""
        json.dumps(values)
        with self._lock:
            self.meta.update(values)
            self._save()

    def mark_kept(self, entry: LedgerEntry) -> None:
        """Exclude an entry from any later unwind (e.g. the model a successful release now serves)."""
        with self._lock:
            entry.status = "kept"
            self._save()

    def undo(self, entry: LedgerEntry) -> None:
        """Delete one entry now, before the release ends (something it turned out not to need)."""
        deleter = (self.deleters or {}).get(entry.kind)
        if deleter is None:
            raise ValueError(f"no deleter for kind {entry.kind}")
        if entry.status == "pending":
            owned = self._owner_check()(entry, self.release_id)
            if not owned:
                self._mark(entry, "gone" if owned is None else "foreign", None)
                return
        try:
            deleter(entry)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
        self._mark(entry, "deleted", None)

    def succeed(self) -> None:
        """The release finished: its resources stay, and cleanup must not touch them."""
        with self._lock:
            self.state = "succeeded"
            self._save()

    # -- unwinding --------------------------------------------------------------------------------

    def unwind(
        self,
        deleters: Mapping[str, Deleter] | None = None,
        keep: Callable[[LedgerEntry], bool] | None = None,
    ) -> list[LedgerEntry]:
        """Delete every pending entry, last created first; return the entries handled.

        A deleter raising a NotFound error counts as deleted ("gone"). `keep(entry)` returning True
        spares an entry (marked "kept"). An intent (status pending) is deleted only when its resource
        exists and carries this release's tag. A failing delete is marked "failed" and the unwind
        continues; so does a failing save of the ledger (it is retried at the end). UnwindFailed lists
        the failed deletes, LedgerSaveFailed says the final state could not be saved; when both
        happened, the second rides on the first as a note.
        """
        deleters = deleters if deleters is not None else self.deleters
        if deleters is None:
            raise ValueError("Ledger.unwind needs deleters (kind -> function deleting one entry)")
        keep = keep if keep is not None else self.keep
        handled: list[LedgerEntry] = []
        failures: list[str] = []
        with self._lock:
            self._tolerate_save_failures = True
        try:
            with self._lock:
                self.state = "unwinding"
                self._save()
            for entry in reversed(self.entries):
                if not entry.pending:
                    continue
                handled.append(entry)
                problem = self._undo_shown(entry, deleters, keep)
                if problem is not None:
                    failures.append(f"{entry.describe()}: {problem}")
            with self._lock:
                self.state = "unwind_failed" if failures else "unwound"
                self._save()
        finally:
            with self._lock:
                self._tolerate_save_failures = False
        problems: list[Exception] = []
        if failures:
            problems.append(UnwindFailed(self.release_id, failures))
        try:
            self.flush()
        except LedgerSaveFailed as save_failed:
            problems.append(save_failed)
        if problems:
            first = problems[0]
            for other in problems[1:]:
                first.add_note(str(other))
            raise first
        return handled

    def _undo_shown(
        self, entry: LedgerEntry, deleters: Mapping[str, Deleter], keep: Callable[[LedgerEntry], bool] | None
    ) -> str | None:
        """`_undo_one` as a run of the `undo` task inside a flow run, directly outside one or when the task
        cannot run. The outcome comes back through the ledger, not the task's result, so a task whose
        state could not be reported after the undo ran does not undo it twice."""
        if FlowRunContext.get() is None:
            return self._undo_one(entry, deleters, keep)
        self._undo_outcomes.pop(entry.seq, None)
        try:
            undo_entry.with_options(task_run_name=f"undo {entry.describe()}")(
                self, entry.seq, deleters, keep, return_state=True
            )
        except Exception as exc:
            logger.warning(
                "ledger %s: could not run the undo task for %s (%s: %s); undoing it directly",
                self.release_id,
                entry.describe(),
                type(exc).__name__,
                exc,
            )
        if entry.seq in self._undo_outcomes:
            return self._undo_outcomes.pop(entry.seq)
        return self._undo_one(entry, deleters, keep)

    def _undo_one(
        self, entry: LedgerEntry, deleters: Mapping[str, Deleter], keep: Callable[[LedgerEntry], bool] | None
    ) -> str | None:
        """Undo one entry and mark it; the problem when it could not be undone, else None."""
        try:
            if entry.status == "pending":
                owned = self._owner_check()(entry, self.release_id)
                if owned is None:
                    self._mark(entry, "gone", None)
                    logger.info("ledger %s: %s was never created", self.release_id, entry.describe())
                    return None
                if not owned:
                    self._mark(entry, "foreign", "exists, but is not this release's (release-id tag)")
                    logger.info("ledger %s: left %s alone (not ours)", self.release_id, entry.describe())
                    return None
            if keep is not None and keep(entry):
                self._mark(entry, "kept", None)
                logger.info("ledger %s: kept %s (still in use)", self.release_id, entry.describe())
                return None
            deleter = deleters.get(entry.kind)
            if deleter is None:
                problem = f"no deleter for kind {entry.kind}"
                self._mark(entry, "failed", problem)
                return problem
            deleter(entry)
        except Exception as exc:
            if _is_not_found(exc):
                self._mark(entry, "gone", None)
                logger.info("ledger %s: %s was already gone", self.release_id, entry.describe())
                return None
            problem = f"{type(exc).__name__}: {exc}"
            # An intent whose owner could not be read stays an intent: whoever retries must look again.
            self._mark(entry, "pending" if entry.status == "pending" else "failed", problem)
            logger.warning("ledger %s: could not delete %s: %s", self.release_id, entry.describe(), problem)
            return problem
        self._mark(entry, "deleted", None)
        logger.info("ledger %s: deleted %s", self.release_id, entry.describe())
        return None

    def _owner_check(self) -> OwnerCheck:
        if self.ours is not None:
            return self.ours
        return ours

    def _mark(self, entry: LedgerEntry, status: EntryStatus, error: str | None) -> None:
        with self._lock:
            entry.status = status
            entry.error = error
            self._save()

    # -- context manager --------------------------------------------------------------------------

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            if self.state == "running":
                self._commit()
            return
        if self.deleters is None:
            exc.add_note(
                f"release {self.release_id} left its resources in the ledger at {self.store.describe()}; "
                f"fix: run `python -m flows.cleanup {self.release_id}`"
            )
            return
        name = exc_type.__name__ if exc_type else "error"
        logger.warning("release %s failed (%s); unwinding its ledger", self.release_id, name)
        self._unwind_noting(exc)

    def _commit(self) -> None:
        """Mark the release succeeded; a release whose success cannot be saved is unwound.

        A ledger left `running` in the store would let a later cleanup unwind what this release
        serves, so success counts only once the store holds it.
        """
        with suppress(LedgerSaveFailed):  # first try; the flush below retries with backoff
            self.succeed()
            return
        try:
            self.flush()
            return
        except LedgerSaveFailed as failed:
            logger.warning("release %s: its success could not be saved; unwinding it", self.release_id)
            if self.deleters is not None:
                self._unwind_noting(failed)
            raise failed from None

    def _unwind_noting(self, exc: BaseException) -> None:
        # The release's own error stays the one raised; what the unwind could not do rides along as notes.
        try:
            self.unwind()
        except (UnwindFailed, LedgerSaveFailed) as problem:
            exc.add_note(str(problem))
            for note in getattr(problem, "__notes__", []):
                exc.add_note(note)


@task(name="undo", retries=0, cache_policy=NO_CACHE)
def undo_entry(
    ledger: Ledger, seq: int, deleters: Mapping[str, Deleter], keep: Callable[[LedgerEntry], bool] | None
) -> str:
    """Undo the ledger's entry `seq` (delete what it created, or put back what it changed) and mark it.

    Takes the entry by number: Prefect may copy dataclass arguments, and the mark must land on the
    ledger's own entry. A failed undo fails the task run, so the graph shows it; the unwind goes on."""
    entry = next(e for e in ledger.entries if e.seq == seq)
    problem = ledger._undo_one(entry, deleters, keep)
    ledger._undo_outcomes[seq] = problem
    if problem is not None:
        raise UnwindFailed(ledger.release_id, [f"{entry.describe()}: {problem}"])
    return f"{entry.describe()}: {entry.status}"


def default_local_copy(store: LedgerStore, release_id: str) -> Path | None:
    """Where the worker keeps its copy of a ledger: `<state dir>/ledgers/<release_id>.json` (none for a
    ledger that is itself a local file)."""
    if isinstance(store, LocalLedgerStore):
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", release_id)
    return state_dir() / "ledgers" / f"{safe}.json"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")


def _is_not_found(exc: BaseException) -> bool:
    if aws.is_not_found(exc) or isinstance(exc, FileNotFoundError):
        return True
    # docker.errors.NotFound and HTTP clients carry the status instead of an AWS error code.
    return getattr(exc, "status_code", None) == 404
