"""The resource ledger: every resource a release creates, persisted the moment it exists.

A release records each create right after it succeeds. When the release fails, the ledger is unwound
last-in-first-out: NotFound counts as deleted, one failed delete does not stop the others, and each
entry is marked as it goes, so an unwind that stopped half-way can be run again. The ledger lives in
S3 beside the release's model data by default, so a release whose worker died can be cleaned up from
another machine (`flows/cleanup.py`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from tasks import aws
from tasks.errors import ConfigError, UnwindFailed

logger = logging.getLogger(__name__)

LEDGER_VERSION = 1

# Entry kinds shared by the tasks that record and the deleters that unwind (tasks/unwind.py).
S3_OBJECT = "s3:object"
S3_PREFIX = "s3:prefix"
ECR_REPOSITORY = "ecr:repository"
ECR_IMAGE = "ecr:image"
SAGEMAKER_MODEL = "sagemaker:model"
SAGEMAKER_ENDPOINT_CONFIG = "sagemaker:endpoint-config"
SAGEMAKER_ENDPOINT = "sagemaker:endpoint"
AUTOSCALING_TARGET = "autoscaling:target"
AUTOSCALING_POLICY = "autoscaling:policy"
CLOUDWATCH_ALARM = "cloudwatch:alarm"
SNS_TOPIC = "sns:topic"
SAGEMAKER_TRANSFORM_JOB = "sagemaker:transform-job"
KINDS = frozenset(
    {
        S3_OBJECT,
        S3_PREFIX,
        ECR_REPOSITORY,
        ECR_IMAGE,
        SAGEMAKER_MODEL,
        SAGEMAKER_ENDPOINT_CONFIG,
        SAGEMAKER_ENDPOINT,
        AUTOSCALING_TARGET,
        AUTOSCALING_POLICY,
        CLOUDWATCH_ALARM,
        SNS_TOPIC,
        SAGEMAKER_TRANSFORM_JOB,
    }
)

EntryStatus = Literal["created", "deleted", "gone", "kept", "failed"]
LedgerState = Literal["running", "succeeded", "unwinding", "unwound", "unwind_failed"]
Deleter = Callable[["LedgerEntry"], None]


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
        """Still to be deleted by an unwind (created, or a delete that failed)."""
        return self.status in ("created", "failed")

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
            ...                         # ledger.record(kind, id, **attrs) after each create
        # on success the ledger is marked "succeeded"; on an exception it is unwound and the
        # exception propagates (with a note listing what could not be deleted, if anything).
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
    ) -> None:
        self.store = store
        self.release_id = release_id
        self._entries: list[LedgerEntry] = list(entries or [])
        self.state: LedgerState = state
        self.meta: dict[str, Any] = dict(meta or {})
        self.created_at = created_at or _now()
        self.deleters = dict(deleters) if deleters is not None else None
        self.keep = keep
        self._lock = threading.RLock()

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
    ) -> Ledger:
        """Start the ledger of a release and persist it at once (so even an empty run leaves a trace).

        Reopening the ledger of a release that did not succeed (a retry, or a rerun after a crash)
        continues it, so a failure unwinds what both runs created.
        """
        existing = store.load()
        if existing is not None:
            ledger = cls._from_document(store, existing, deleters=deleters, keep=keep)
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
            ledger = cls(store, release_id, meta=meta, deleters=deleters, keep=keep)
        ledger._save()
        return ledger

    @classmethod
    def load(
        cls,
        store: LedgerStore,
        *,
        deleters: Mapping[str, Deleter] | None = None,
        keep: Callable[[LedgerEntry], bool] | None = None,
    ) -> Ledger:
        """The persisted ledger at `store` (for the cleanup flow); LookupError when there is none."""
        document = store.load()
        if document is None:
            raise LookupError(f"no release ledger at {store.describe()}")
        return cls._from_document(store, document, deleters=deleters, keep=keep)

    @classmethod
    def _from_document(
        cls,
        store: LedgerStore,
        document: Mapping[str, Any],
        *,
        deleters: Mapping[str, Deleter] | None,
        keep: Callable[[LedgerEntry], bool] | None,
    ) -> Ledger:
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
            deleters=deleters,
            keep=keep,
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

    def _save(self) -> None:
        with self._lock:
            self.store.save(self.to_document())

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
        if kind not in KINDS:
            raise ValueError(f"unknown ledger kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        json.dumps(attrs)  # refuse what cannot be persisted before it is half-recorded
        with self._lock:
            entry = LedgerEntry(
                seq=len(self._entries) + 1, kind=kind, resource_id=resource_id, attrs=dict(attrs)
            )
            self._entries.append(entry)
            self._save()
        logger.info("ledger %s: recorded %s", self.release_id, entry.describe())
        return entry

    def find(self, kind: str, resource_id: str | None = None) -> list[LedgerEntry]:
        """Entries of `kind` (and `resource_id`, when given), oldest first."""
        return [
            e
            for e in self.entries
            if e.kind == kind and (resource_id is None or e.resource_id == resource_id)
        ]

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
        spares an entry (marked "kept"). A failing delete is marked "failed" and the unwind continues;
        UnwindFailed lists all failures at the end.
        """
        deleters = deleters if deleters is not None else self.deleters
        if deleters is None:
            raise ValueError("Ledger.unwind needs deleters (kind -> function deleting one entry)")
        keep = keep if keep is not None else self.keep
        with self._lock:
            self.state = "unwinding"
            self._save()
        handled: list[LedgerEntry] = []
        failures: list[str] = []
        for entry in reversed(self.entries):
            if not entry.pending:
                continue
            handled.append(entry)
            if keep is not None and keep(entry):
                self._mark(entry, "kept", None)
                logger.info("ledger %s: kept %s (still in use)", self.release_id, entry.describe())
                continue
            deleter = deleters.get(entry.kind)
            if deleter is None:
                problem = f"no deleter for kind {entry.kind}"
                self._mark(entry, "failed", problem)
                failures.append(f"{entry.describe()}: {problem}")
                continue
            try:
                deleter(entry)
            except Exception as exc:
                if _is_not_found(exc):
                    self._mark(entry, "gone", None)
                    logger.info("ledger %s: %s was already gone", self.release_id, entry.describe())
                    continue
                problem = f"{type(exc).__name__}: {exc}"
                self._mark(entry, "failed", problem)
                failures.append(f"{entry.describe()}: {problem}")
                logger.warning(
                    "ledger %s: could not delete %s: %s", self.release_id, entry.describe(), problem
                )
                continue
            self._mark(entry, "deleted", None)
            logger.info("ledger %s: deleted %s", self.release_id, entry.describe())
        with self._lock:
            self.state = "unwind_failed" if failures else "unwound"
            self._save()
        if failures:
            raise UnwindFailed(self.release_id, failures)
        return handled

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
                self.succeed()
            return
        if self.deleters is None:
            exc.add_note(
                f"release {self.release_id} left its resources in the ledger at {self.store.describe()}; "
                f"fix: run `python -m flows.cleanup {self.release_id}`"
            )
            return
        name = exc_type.__name__ if exc_type else "error"
        logger.warning("release %s failed (%s); unwinding its ledger", self.release_id, name)
        try:
            self.unwind()
        except UnwindFailed as unwind_error:
            # The release's own error stays the one raised; the leftovers ride along as a note.
            exc.add_note(str(unwind_error))


def _is_not_found(exc: BaseException) -> bool:
    if aws.is_not_found(exc) or isinstance(exc, FileNotFoundError):
        return True
    # docker.errors.NotFound and HTTP clients carry the status instead of an AWS error code.
    return getattr(exc, "status_code", None) == 404
