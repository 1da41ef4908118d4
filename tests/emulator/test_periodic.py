"""The emulator's background loop: it keeps going when a round fails, and stops when told."""

from __future__ import annotations

import threading
import time

import pytest

from emulator.cloudwatch.periodic import Periodic


def test_a_failing_round_does_not_stop_the_loop() -> None:
    rounds: list[int] = []
    three = threading.Event()

    def job() -> None:
        rounds.append(len(rounds))
        if len(rounds) >= 3:
            three.set()
        if len(rounds) == 1:
            raise ConnectionError("moto is restarting")

    loop = Periodic(job, 0.01, name="test-loop")
    loop.start()
    try:
        assert three.wait(5), f"only {len(rounds)} rounds ran: a failed round stopped the loop"
    finally:
        loop.stop()
    assert not loop.running


def test_start_is_idempotent_and_stop_runs_no_further_round() -> None:
    calls: list[float] = []
    loop = Periodic(lambda: calls.append(time.monotonic()), 3600, name="test-idempotent")
    loop.start()
    loop.start()
    loop.stop(timeout_s=5)
    assert not loop.running
    assert calls == []


def test_stop_gives_up_on_a_stuck_round_after_its_timeout() -> None:
    release = threading.Event()
    loop = Periodic(lambda: release.wait(30), 0.01, name="test-stuck")
    loop.start()
    time.sleep(0.05)
    started = time.monotonic()
    loop.stop(timeout_s=0.2)
    assert time.monotonic() - started < 5
    release.set()


def test_a_zero_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        Periodic(lambda: None, 0, name="bad")


def test_next_wait_brings_the_next_round_forward_but_never_past_the_interval() -> None:
    rounds = threading.Event()
    soon = Periodic(rounds.set, 30.0, name="soon", next_wait=lambda: 0.01)
    soon.start()
    try:
        assert rounds.wait(5), "next_wait of 0.01 s did not bring the round forward from the 30 s interval"
    finally:
        soon.stop()
    late = Periodic(lambda: None, 0.5, name="late", next_wait=lambda: 3600.0)
    assert late._wait() == 0.5
    broken = Periodic(lambda: None, 0.5, name="broken", next_wait=lambda: 1 / 0)
    assert broken._wait() == 0.5
