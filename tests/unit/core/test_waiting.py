from __future__ import annotations

from typing import Any

import pytest

from tasks.core.errors import ResourceFailed, WaitTimeout
from tasks.core.waiting import FakeClock, poll_until


def _statuses(*statuses: str) -> Any:
    remaining = list(statuses)

    def describe() -> dict[str, str]:
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return {"Status": status, "FailureReason": "the container did not pass the ping health check"}

    return describe


def _wait(describe: Any, clock: FakeClock, timeout_s: float = 60, **kwargs: Any) -> dict[str, str]:
    return poll_until(
        describe,
        is_done=lambda d: d["Status"] == "InService",
        failure_reason=lambda d: d["FailureReason"] if d["Status"] == "Failed" else None,
        status_of=lambda d: d["Status"],
        resource="endpoint demo-embedder",
        timeout_s=timeout_s,
        interval_s=10,
        clock=clock,
        **kwargs,
    )


def test_returns_the_description_that_is_done() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    result = _wait(
        _statuses("Creating", "Creating", "InService"),
        clock,
        on_progress=lambda d, t: seen.append((d["Status"], t)),
    )
    assert result["Status"] == "InService"
    assert clock.sleeps == [10, 10]
    assert seen == [("Creating", 0), ("Creating", 10), ("InService", 20)]


def test_failure_raises_resource_failed_with_reason_and_time() -> None:
    clock = FakeClock()
    with pytest.raises(ResourceFailed) as caught:
        _wait(_statuses("Creating", "Creating", "Creating", "Failed"), clock)
    assert caught.value.status == "Failed"
    assert caught.value.waited_s == 30
    assert "ping health check" in caught.value.reason
    assert str(caught.value).startswith("EndpointFailed: endpoint demo-embedder went Failed after 30 s")


def test_times_out_without_overshooting() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        _wait(_statuses("Creating"), clock, timeout_s=25)
    assert caught.value.last_status == "Creating"
    assert caught.value.waited_s == 25
    assert clock.sleeps == [10, 10, 5]


def test_refuses_a_wait_without_a_limit() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        _wait(_statuses("InService"), FakeClock(), timeout_s=0)
