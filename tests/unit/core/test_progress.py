from __future__ import annotations

import logging
import threading

import pytest

from tasks.core.progress import ByteProgress


def test_a_slow_transfer_logs_each_tenth_once_and_reaches_100(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    now = [0.0]
    progress = ByteProgress("uploading model", 1000, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 1.0  # 100 s in all: a tenth every 10 s
        progress(10)
    assert progress.logged == [1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert "uploading model: 100.0% (1000 B of 1000 B" in caplog.text


def test_a_quick_transfer_logs_its_start_and_its_end_only() -> None:
    now = [0.0]
    progress = ByteProgress("uploading model", 1000, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 0.02  # two seconds in all
        progress(10)
    assert progress.logged == [1.0, 100.0]


def test_lines_are_at_least_the_interval_apart_and_on_a_tenth() -> None:
    now = [0.0]
    progress = ByteProgress("uploading model", 1000, clock=lambda: now[0], log_interval_s=5.0)
    for _ in range(100):
        now[0] += 0.25  # 25 s in all: a tenth every 2.5 s
        progress(10)
    assert progress.logged == [1.0, 21.0, 41.0, 61.0, 81.0, 100.0]


def test_counts_from_many_threads() -> None:
    progress = ByteProgress("parts", 64 * 1000)

    def send() -> None:
        for _ in range(1000):
            progress(1)

    workers = [threading.Thread(target=send) for _ in range(64)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert progress.done == 64 * 1000 and progress.percent == 100.0


def test_finish_reports_what_was_skipped() -> None:
    progress = ByteProgress("hashing", 2 * 2**30)
    progress(2**30)
    progress.finish()
    assert progress.percent == 100.0 and progress.logged[-1] == 100.0


def test_nothing_to_transfer_is_done() -> None:
    progress = ByteProgress("nothing", 0)
    progress.finish()
    assert progress.percent == 100.0 and progress.logged == [100.0]
