"""Bake traffic: paced, bounded, stops by itself after its duration, summarized per variant."""

from __future__ import annotations

import time

import pytest

from tasks.rollout.bake_traffic import BakeTraffic, p99


def test_traffic_stops_after_its_duration_and_is_summarized_per_variant() -> None:
    answers = iter([("new", 200), ("old", 200), ("new", 500)] * 100)
    traffic = BakeTraffic([b"a", b"b"], lambda body: next(answers), rate_per_s=50)
    traffic.start(duration_s=0.3)
    deadline = time.monotonic() + 5
    while traffic._thread is not None and traffic._thread.is_alive():
        assert time.monotonic() < deadline, "bake traffic did not stop after its duration"
        time.sleep(0.05)
    traffic.stop()
    sent = traffic.sent
    assert 5 <= sent <= 20  # 0.3 s at 50 requests/s, never a burst
    new = traffic.summary(0, time.time() + 1, "new")
    assert new.requests == sum(1 for s in traffic.samples() if s.variant == "new")
    assert new.errors == sum(1 for s in traffic.samples() if s.variant == "new" and s.status == 500)
    assert traffic.summary(0, time.time() + 1).requests == sent


def test_traffic_never_exceeds_max_requests_across_bakes() -> None:
    traffic = BakeTraffic([b"x"], lambda body: (None, 200), rate_per_s=100, max_requests=3)
    for _ in range(2):
        with traffic:
            traffic.start()
            deadline = time.monotonic() + 5
            while traffic.sent < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert traffic.sent == 3


def test_no_rate_sends_nothing_and_needs_no_payloads() -> None:
    traffic = BakeTraffic([], lambda body: (None, 200), rate_per_s=0)
    traffic.start(1.0)
    traffic.stop()
    assert traffic.sent == 0 and not traffic.enabled
    with pytest.raises(ValueError, match=r"rollout\.bake_traffic\.payloads"):
        BakeTraffic([], lambda body: (None, 200), rate_per_s=1)


def test_p99_is_the_nearest_rank() -> None:
    assert p99([float(v) for v in range(1, 201)]) == 198.0
    assert p99([]) is None
