"""Typed errors of a release.

Every error carries its facts as attributes (so flows, reports and tests branch on data, not on message
text) and reads as one line that names the resource, its status and what to do. They pickle with their
fields, because Prefect persists a failed task's exception and re-raises it in the flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ReleaseError(Exception):
    """Base of every error a release raises on purpose."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self._fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling calls cls(*args) with the formatted message, which the
        # subclasses' keyword-only constructors cannot take. Notes (a ledger that could not be saved,
        # say) travel as state: they are the second half of what the release reports.
        notes = getattr(self, "__notes__", None)
        return (_rebuild, (type(self), self._fields), {"__notes__": list(notes)} if notes else None)


def _rebuild(cls: type[ReleaseError], fields: dict[str, Any]) -> ReleaseError:
    return cls(**fields)


class ConfigIssue:
    """One problem in a release config: the dotted field path, what is wrong, and how to fix it."""

    __slots__ = ("field", "fix", "problem")

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}; fix: {self.fix}"

    def __repr__(self) -> str:
        return f"ConfigIssue({self.field!r}, {self.problem!r}, {self.fix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigIssue) and (self.field, self.problem, self.fix) == (
            other.field,
            other.problem,
            other.fix,
        )

    def __hash__(self) -> int:
        return hash((self.field, self.problem, self.fix))


class ConfigError(ReleaseError):
    """The release config (or the model source it names) is invalid; raised before any resource exists.

    `field`, `problem` and `fix` describe the first issue; `issues` holds all of them. `subject` says what
    was refused: the release config, or a command line's own flags (which are no config field).
    """

    field: str
    problem: str
    fix: str
    issues: tuple[ConfigIssue, ...]
    source: str | None
    subject: str

    def __init__(
        self,
        field: str,
        problem: str,
        fix: str,
        *,
        issues: Sequence[ConfigIssue] = (),
        source: str | None = None,
        subject: str = "release config",
    ) -> None:
        all_issues = tuple(issues) or (ConfigIssue(field, problem, fix),)
        where = f"{source}: " if source else ""
        if len(all_issues) == 1:
            message = f"invalid {subject}: {where}{all_issues[0]}"
        else:
            lines = "\n".join(f"  - {issue}" for issue in all_issues)
            message = f"invalid {subject}: {where}{len(all_issues)} problems\n{lines}"
        super().__init__(
            message,
            field=field,
            problem=problem,
            fix=fix,
            issues=all_issues,
            source=source,
            subject=subject,
        )

    @classmethod
    def from_issues(
        cls, issues: Sequence[ConfigIssue], *, source: str | None = None, subject: str = "release config"
    ) -> ConfigError:
        first = issues[0]
        return cls(first.field, first.problem, first.fix, issues=issues, source=source, subject=subject)


class WaitTimeout(ReleaseError):
    """A resource did not reach the wanted state in time."""

    resource: str
    last_status: str
    waited_s: float

    def __init__(
        self, resource: str, last_status: str, waited_s: float, *, timeout_s: float | None = None
    ) -> None:
        limit = f" (timeout {timeout_s:.0f} s)" if timeout_s is not None else ""
        message = (
            f"WaitTimeout: {resource} still {last_status} after {waited_s:.0f} s{limit}; "
            "fix: look at its status and logs, or raise the timeout in the release config"
        )
        super().__init__(
            message, resource=resource, last_status=last_status, waited_s=waited_s, timeout_s=timeout_s
        )


class ResourceFailed(ReleaseError):
    """A resource reached a terminal failure status (Failed, RollingBack…) while we waited for it."""

    resource: str
    status: str
    reason: str
    waited_s: float | None

    def __init__(self, resource: str, status: str, reason: str, *, waited_s: float | None = None) -> None:
        after = f" after {waited_s:.0f} s" if waited_s is not None else ""
        kind = resource.split(" ", 1)[0].replace("-", " ").title().replace(" ", "")
        message = f'{kind}Failed: {resource} went {status}{after}: "{reason or "no reason given"}"'
        super().__init__(message, resource=resource, status=status, reason=reason, waited_s=waited_s)


class EndpointRolledBack(ReleaseError):
    """An endpoint update ended InService on a config other than the one we asked for."""

    endpoint: str
    expected_config: str
    actual_config: str
    reason: str

    def __init__(self, endpoint: str, expected_config: str, actual_config: str, *, reason: str = "") -> None:
        said = f' (FailureReason: "{reason}")' if reason else ""
        message = (
            f"EndpointRolledBack: endpoint {endpoint} is InService on endpoint config {actual_config}, "
            f"not {expected_config}: SageMaker rolled the update back{said}; fix: see the endpoint's "
            "FailureReason and the new variant's logs, then release again"
        )
        super().__init__(
            message,
            endpoint=endpoint,
            expected_config=expected_config,
            actual_config=actual_config,
            reason=reason,
        )


class SmokeFailed(ReleaseError):
    """The smoke test's expectations failed on the new endpoint's answers."""

    endpoint: str
    failures: tuple[str, ...]
    requests: int | None
    p50_ms: float | None

    def __init__(
        self,
        endpoint: str,
        failures: Sequence[str],
        *,
        requests: int | None = None,
        p50_ms: float | None = None,
    ) -> None:
        listed = "; ".join(failures) or "no detail"
        message = f"SmokeFailed: endpoint {endpoint} failed {len(failures)} smoke expectation(s): {listed}"
        super().__init__(
            message, endpoint=endpoint, failures=tuple(failures), requests=requests, p50_ms=p50_ms
        )


class AlarmFired(ReleaseError):
    """One or more alarms went to ALARM while traffic was shifting or baking."""

    alarms: tuple[str, ...]
    reasons: tuple[str, ...]
    endpoint: str | None

    def __init__(self, alarms: Sequence[str], reasons: Sequence[str], *, endpoint: str | None = None) -> None:
        pairs = "; ".join(
            f"{name}: {reason}"
            for name, reason in zip(alarms, list(reasons) + [""] * len(alarms), strict=False)
        )
        where = f" on endpoint {endpoint}" if endpoint else ""
        message = f"AlarmFired{where}: {pairs}; traffic went back to the previous model"
        super().__init__(message, alarms=tuple(alarms), reasons=tuple(reasons), endpoint=endpoint)


class AlarmsAlreadyFiring(ReleaseError):
    """Rollback alarms were in ALARM before the update began: SageMaker would roll it back at once."""

    alarms: tuple[str, ...]
    reasons: tuple[str, ...]
    endpoint: str

    def __init__(self, endpoint: str, alarms: Sequence[str], reasons: Sequence[str]) -> None:
        pairs = "; ".join(f"{name}: {reason}" for name, reason in zip(alarms, reasons, strict=True))
        message = (
            f"AlarmsAlreadyFiring on endpoint {endpoint} before the update: {pairs}; the endpoint was not "
            "changed. The endpoint may be failing now, or the alarms still judge errors of a release that "
            "just rolled back; fix: check the alarms' metrics, and release again once they are OK"
        )
        super().__init__(message, alarms=tuple(alarms), reasons=tuple(reasons), endpoint=endpoint)


class UnwindFailed(ReleaseError):
    """Some resources of a release could not be deleted; the others were (the ledger says which)."""

    release_id: str
    failures: tuple[str, ...]

    def __init__(self, release_id: str, failures: Sequence[str]) -> None:
        listed = "; ".join(failures)
        message = (
            f"UnwindFailed: release {release_id} left {len(failures)} resource(s) behind: {listed}; "
            f"fix: resolve the cause, then run `python -m flows.cleanup {release_id}`"
        )
        super().__init__(message, release_id=release_id, failures=tuple(failures))


class ReleaseBusy(ReleaseError):
    """Another release of the same endpoint is running."""

    endpoint: str
    holder: str

    def __init__(self, endpoint: str, holder: str) -> None:
        message = (
            f"ReleaseBusy: endpoint {endpoint} is being released by {holder}; "
            "fix: wait for it to finish, or run cleanup on it if it was killed"
        )
        super().__init__(message, endpoint=endpoint, holder=holder)


class PackagingFailed(ReleaseError):
    """The model could not be packaged on the worker: its disk is full, or a model file is unreadable."""

    path: str
    problem: str
    fix: str

    def __init__(self, path: str, problem: str, fix: str) -> None:
        message = f"PackagingFailed: {path}: {problem}; fix: {fix}"
        super().__init__(message, path=path, problem=problem, fix=fix)


class LedgerSaveFailed(ReleaseError):
    """The release's ledger could not be written to its store; the worker keeps a local copy."""

    release_id: str
    store: str
    local_copy: str | None
    reason: str

    def __init__(self, release_id: str, store: str, *, reason: str, local_copy: str | None = None) -> None:
        kept = f"; the latest copy is at {local_copy} on the worker" if local_copy else ""
        copy_back = f"copy {local_copy} to {store}, then " if local_copy else ""
        message = (
            f"LedgerSaveFailed: the ledger of release {release_id} could not be saved to {store}: "
            f"{reason}{kept}; fix: restore access to {store}, {copy_back}run "
            f"`python -m flows.cleanup {release_id}` to remove whatever the release left"
        )
        super().__init__(message, release_id=release_id, store=store, reason=reason, local_copy=local_copy)


class ResourceTaken(ReleaseError):
    """A create found its name taken by a resource this release did not create (its release-id tag
    names another release, or none)."""

    resource: str
    release_id: str
    owner: str | None
    fix: str

    def __init__(self, resource: str, *, release_id: str, owner: str | None, fix: str) -> None:
        whose = f"release {owner}" if owner else "no release of ours (it has no release-id tag)"
        message = (
            f"ResourceTaken: {resource} already exists and belongs to {whose}, not to release "
            f"{release_id}; it was left alone; fix: {fix}"
        )
        super().__init__(message, resource=resource, release_id=release_id, owner=owner, fix=fix)


class LeaseLost(ReleaseError):
    """The release lost its hold on the endpoint lock; another release may now hold the endpoint."""

    endpoint: str
    lease_id: str
    reason: str

    def __init__(self, endpoint: str, *, lease_id: str, reason: str) -> None:
        message = (
            f"LeaseLost: the release of endpoint {endpoint} lost its lock (lease {lease_id}): {reason}; "
            "it stopped before its next change and unwound what it created, since another release may "
            "now hold the endpoint; fix: check that the Prefect API is reachable from the worker, then "
            "release again"
        )
        super().__init__(message, endpoint=endpoint, lease_id=lease_id, reason=reason)


class ReleaseRunning(ReleaseError):
    """Cleanup was asked for a release that still holds its endpoint lock: it may still be running."""

    release_id: str
    endpoint: str
    lease_id: str
    expires_at: str

    def __init__(self, release_id: str, *, endpoint: str, lease_id: str, expires_at: str) -> None:
        message = (
            f"ReleaseRunning: release {release_id} still holds the lock of endpoint {endpoint} (lease "
            f"{lease_id}, renewed until {expires_at}); unwinding it now would race the release itself; "
            f"fix: wait for it to end (a dead worker's lease runs out at {expires_at}), or pass "
            "force=True (--force) if you know its worker is gone"
        )
        super().__init__(
            message, release_id=release_id, endpoint=endpoint, lease_id=lease_id, expires_at=expires_at
        )


class UnsupportedImageManifest(ReleaseError):
    """The serving image's manifest is of a media type SageMaker refuses to pull (an OCI manifest or
    index, as engines with the containerd image store and buildx produce): CreateModel would fail with
    "Unsupported manifest media type"."""

    image: str
    media_type: str
    fix: str

    def __init__(self, *, image: str, media_type: str, fix: str) -> None:
        message = (
            f"UnsupportedImageManifest: image {image} has manifest media type {media_type}, which "
            'SageMaker refuses ("Unsupported manifest media type"): it pulls Docker v2 schema 2 '
            "images (application/vnd.docker.distribution.manifest.v2+json); no model was created "
            f"from it; fix: {fix}"
        )
        super().__init__(message, image=image, media_type=media_type, fix=fix)
