from __future__ import annotations

import logging
import threading

import pytest

from tasks.core.progress import ByteProgress


def test_logs_each_tenth_once_and_reaches_100(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    progress = ByteProgress("uploading model", 1000)
    for _ in range(100):
        progress(10)
    assert progress.logged == [1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert "uploading model: 100.0% (1000 B of 1000 B" in caplog.text


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
