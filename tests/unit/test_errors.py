from __future__ import annotations

import pickle

from tasks.errors import (
    AlarmFired,
    ConfigError,
    ConfigIssue,
    EndpointRolledBack,
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
