from __future__ import annotations

import importlib
import inspect
import pickle
from pathlib import Path
from typing import Any

from tasks.core.errors import (
    AlarmFired,
    ConfigError,
    ConfigIssue,
    EndpointRolledBack,
    ReleaseError,
    ResourceFailed,
    SmokeFailed,
    UnwindFailed,
    WaitTimeout,
)


def test_resource_failed_reads_like_the_design() -> None:
    err = ResourceFailed("endpoint demo-embedder", "Failed", "ping health check failed", waited_s=212.4)
    assert (
        str(err)
        == 'EndpointFailed: endpoint demo-embedder went Failed after 212 s: "ping health check failed"'
    )
    assert (err.resource, err.status, err.reason) == (
        "endpoint demo-embedder",
        "Failed",
        "ping health check failed",
    )


def test_errors_survive_pickling_with_their_fields() -> None:
    errors = [
        ConfigError("endpoint.name", "too long", "shorten it", source="x.yaml"),
        WaitTimeout("endpoint e", "Creating", 30.0, timeout_s=30),
        ResourceFailed("transform-job j", "Failed", "boom"),
        EndpointRolledBack("e", "new", "old"),
        SmokeFailed("e", ["status 500 != 200"]),
        AlarmFired(["e-5xx"], ["Threshold Crossed"], endpoint="e"),
        UnwindFailed("r1", ["s3:object k: AccessDenied"]),
    ]
    for err in errors:
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err)
        assert str(clone) == str(err)
        assert vars(clone) == vars(err)


def test_config_error_lists_every_issue() -> None:
    issues = [ConfigIssue("a.b", "bad", "fix it"), ConfigIssue("c", "worse", "fix that")]
    err = ConfigError.from_issues(issues, source="demo.yaml")
    assert (err.field, err.problem, err.fix) == ("a.b", "bad", "fix it")
    assert "demo.yaml: 2 problems" in str(err)
    assert "c: worse; fix: fix that" in str(err)


def test_timeout_and_alarm_messages_name_the_resource_and_the_fix() -> None:
    assert "endpoint e still Creating after 31 s (timeout 30 s)" in str(
        WaitTimeout("endpoint e", "Creating", 31, timeout_s=30)
    )
    fired = str(AlarmFired(["e-5xx", "e-p99"], ["5 > 0"], endpoint="e"))
    assert "e-5xx: 5 > 0" in fired and "e-p99" in fired


def _every_release_error() -> list[type[ReleaseError]]:
    # Import every module that may define one, so subclasses anywhere in flows/ and tasks/ are found.
    for root in ("tasks", "flows"):
        repo = Path(__file__).resolve().parents[3]
        for path in sorted((repo / root).rglob("*.py")):
            module = ".".join(path.relative_to(repo).with_suffix("").parts)
            importlib.import_module(module.removesuffix(".__init__"))
    found: list[type[ReleaseError]] = []
    pending = [ReleaseError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _sample(annotation: str, name: str) -> Any:
    """A plausible value for a constructor parameter, from its annotation text (the modules use
    `from __future__ import annotations`, so annotations are strings)."""
    text = annotation.replace(" ", "")
    if text.startswith(("Sequence", "list", "tuple", "Iterable")):
        return ("a", "b") if "str" in text else ()
    if text.startswith(("dict", "Mapping")):
        return {"k": "v"}
    if text.startswith("float"):
        return 12.5
    if text.startswith("int"):
        return 3
    if text.startswith("bool"):
        return True
    return f"{name}-value"


def test_every_release_error_survives_pickling_with_its_fields() -> None:
    # Prefect persists a failed task's exception and re-raises it in the flow: one that cannot be
    # rebuilt turns the release's real error into a pickling error.
    classes = _every_release_error()
    assert len(classes) > 15, [c.__name__ for c in classes]
    for cls in classes:
        if cls is ReleaseError:
            continue
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        args, kwargs = [], {}
        for p in parameters:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
                continue
            value = _sample(str(p.annotation), p.name)
            if p.kind is p.KEYWORD_ONLY:
                kwargs[p.name] = value
            else:
                args.append(value)
        if cls.__name__ == "AlarmsAlreadyFiring":
            args[-1] = ("Threshold Crossed: 1 datapoint", "Threshold Crossed: 2 datapoints")
        err = cls(*args, **kwargs)
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is cls
        assert str(clone) == str(err), cls.__name__
        assert vars(clone) == vars(err), cls.__name__


def test_notes_survive_pickling() -> None:
    err = SmokeFailed("e", ["status 500 != 200"])
    err.add_note("the ledger could not be saved: SlowDown")
    clone = pickle.loads(pickle.dumps(err))
    assert clone.__notes__ == ["the ledger could not be saved: SlowDown"]
