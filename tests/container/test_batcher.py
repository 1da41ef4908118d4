"""The dynamic batcher with a recording predictor: what runs together, in which order, and what fails."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from serving.batcher import DynamicBatcher

WAIT_S = 10.0


class RecordingPredictor:
    """Answers `x` with `x!`; the first forward pass blocks until the test releases it."""

    task = "recording"

    def __init__(self, poison: str | None = None) -> None:
        self.calls: list[tuple[list[Any], dict[str, Any]]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.poison = poison

    def check(self, inputs: list[Any], parameters: Mapping[str, Any]) -> None:
        pass

    def predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        self.calls.append((list(inputs), dict(parameters)))
        if len(self.calls) == 1:
            self.first_started.set()
            assert self.release_first.wait(WAIT_S), "the test never released the first forward pass"
        if self.poison is not None and self.poison in inputs:
            raise ValueError(f"cannot embed {self.poison!r}")
        return [f"{item}!" for item in inputs]


async def _started(predictor: RecordingPredictor) -> None:
    assert await asyncio.to_thread(predictor.first_started.wait, WAIT_S)


def _run(
    jobs: Sequence[tuple[list[Any], Mapping[str, Any]]],
    predictor: RecordingPredictor,
    max_batch_size: int = 32,
    max_delay_s: float = 0.0,
) -> list[Any]:
    """Submit jobs[0], wait until its forward pass runs, queue the rest behind it, then release it."""

    async def scenario() -> list[Any]:
        batcher = DynamicBatcher(predictor, max_batch_size, max_delay_s)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(*jobs[0]))
            await _started(predictor)
            rest = [asyncio.ensure_future(batcher.submit(*job)) for job in jobs[1:]]
            await asyncio.sleep(0)  # let every submit enqueue
            predictor.release_first.set()
            return await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), WAIT_S)
        finally:
            await batcher.stop()

    return asyncio.run(scenario())


def test_requests_arriving_during_a_forward_pass_run_together_in_the_next() -> None:
    predictor = RecordingPredictor()
    results = _run([(["a"], {})] + [([name], {}) for name in "bcde"], predictor)

    assert results == [["a!"], ["b!"], ["c!"], ["d!"], ["e!"]]
    assert [inputs for inputs, _ in predictor.calls] == [["a"], ["b", "c", "d", "e"]]


def test_batches_never_exceed_the_maximum_size() -> None:
    predictor = RecordingPredictor()
    _run([([str(i)], {}) for i in range(8)], predictor, max_batch_size=3)

    assert [len(inputs) for inputs, _ in predictor.calls] == [1, 3, 3, 1]


def test_a_request_larger_than_the_maximum_runs_in_chunks_and_keeps_its_order() -> None:
    predictor = RecordingPredictor()
    results = _run([(["x"], {}), (list("abcdefg"), {})], predictor, max_batch_size=3)

    assert results[1] == [f"{c}!" for c in "abcdefg"]
    assert [inputs for inputs, _ in predictor.calls] == [["x"], ["a", "b", "c"], ["d", "e", "f"], ["g"]]


def test_only_requests_with_the_same_parameters_share_a_batch() -> None:
    predictor = RecordingPredictor()
    _run([(["a"], {}), (["b"], {"k": 1}), (["c"], {"k": 2}), (["d"], {"k": 1})], predictor)

    assert predictor.calls[1:] == [(["b", "d"], {"k": 1}), (["c"], {"k": 2})]


def test_a_failing_input_fails_only_its_own_request() -> None:
    predictor = RecordingPredictor(poison="bad")
    results = _run([(["a"], {}), (["b"], {}), (["bad"], {}), (["c"], {})], predictor)

    assert results[0] == ["a!"] and results[1] == ["b!"] and results[3] == ["c!"]
    assert isinstance(results[2], ValueError) and "cannot embed 'bad'" in str(results[2])
    # The shared batch failed, then each request ran alone.
    assert [inputs for inputs, _ in predictor.calls] == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]


def test_a_request_abandoned_while_queued_never_runs() -> None:
    predictor = RecordingPredictor()

    async def scenario() -> None:
        batcher = DynamicBatcher(predictor, 32, 0.0)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(["a"], {}))
            await _started(predictor)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(batcher.submit(["gone"], {}), timeout=0.01)
            kept = asyncio.ensure_future(batcher.submit(["b"], {}))
            predictor.release_first.set()
            assert await asyncio.wait_for(asyncio.gather(first, kept), WAIT_S) == [["a!"], ["b!"]]
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert [inputs for inputs, _ in predictor.calls] == [["a"], ["b"]]


def test_an_idle_server_waits_up_to_the_delay_for_company() -> None:
    predictor = RecordingPredictor()
    predictor.release_first.set()
    delay = 0.3

    async def scenario() -> float:
        batcher = DynamicBatcher(predictor, 32, delay)
        batcher.start()
        try:
            started = time.monotonic()
            first = asyncio.ensure_future(batcher.submit(["a"], {}))
            await asyncio.sleep(0.01)
            second = asyncio.ensure_future(batcher.submit(["b"], {}))
            await asyncio.wait_for(asyncio.gather(first, second), WAIT_S)
            return time.monotonic() - started
        finally:
            await batcher.stop()

    elapsed = asyncio.run(scenario())
    assert [inputs for inputs, _ in predictor.calls] == [["a", "b"]]
    assert elapsed >= delay * 0.9


def test_a_full_batch_does_not_wait_for_the_delay() -> None:
    predictor = RecordingPredictor()
    predictor.release_first.set()

    async def scenario() -> float:
        batcher = DynamicBatcher(predictor, 2, max_delay_s=30.0)
        batcher.start()
        try:
            started = time.monotonic()
            await asyncio.wait_for(
                asyncio.gather(batcher.submit(["a"], {}), batcher.submit(["b"], {})), WAIT_S
            )
            return time.monotonic() - started
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) < 5.0
    assert [inputs for inputs, _ in predictor.calls] == [["a", "b"]]


def test_stop_fails_requests_still_queued() -> None:
    predictor = RecordingPredictor()

    async def scenario() -> None:
        batcher = DynamicBatcher(predictor, 32, 0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], {}))
        await _started(predictor)
        queued = asyncio.ensure_future(batcher.submit(["b"], {}))
        await asyncio.sleep(0)
        await batcher.stop()
        predictor.release_first.set()
        with pytest.raises(RuntimeError, match="shutting down"):
            await queued
        first.cancel()

    asyncio.run(scenario())
