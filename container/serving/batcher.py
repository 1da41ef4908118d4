"""Dynamic batching: concurrent requests are gathered into one forward pass.

A batch closes when it holds `max_batch_size` inputs or when its oldest request has waited
`max_delay_s`. While one batch runs on the inference thread, the next one fills up, so under load
batches grow by themselves and at low load a request waits at most `max_delay_s`. Requests are only
batched with requests carrying the same parameters. If a batch fails, its requests are re-run one by
one so a single bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from serving.predictors.base import Predictor

log = logging.getLogger(__name__)


@dataclass
class _Job:
    inputs: list[Any]
    parameters: Mapping[str, Any]
    key: str
    future: asyncio.Future[list[Any]]
    enqueued_at: float


@dataclass
class BatchStats:
    """How many forward passes ran at each batch size (in inputs): bounded by max_batch_size keys."""

    passes_by_size: Counter[int] = field(default_factory=Counter)


class DynamicBatcher:
    def __init__(self, predictor: Predictor, max_batch_size: int, max_delay_s: float) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.stats = BatchStats()
        self._pending: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        # One inference thread: torch already spreads a forward pass over the worker's CPU threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dynamic-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the model server is shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        key = json.dumps(parameters, sort_keys=True, default=str)
        job = _Job(inputs, parameters, key, loop.create_future(), loop.time())
        self._pending.append(job)
        self._wakeup.set()
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_abandoned()
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first = self._pending[0]
            deadline = first.enqueued_at + self.max_delay_s
            while self._queued_inputs(first.key) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(first.key)
            if batch:
                await self._execute(batch)

    def _drop_abandoned(self) -> None:
        # A request that timed out or whose client left has a done future: never run it.
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()

    def _queued_inputs(self, key: str) -> int:
        return sum(len(job.inputs) for job in self._pending if job.key == key and not job.future.done())

    def _take(self, key: str) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        kept: deque[_Job] = deque()
        for job in self._pending:
            if job.future.done():
                continue
            fits = not batch or size + len(job.inputs) <= self.max_batch_size
            if job.key == key and fits and size < self.max_batch_size:
                batch.append(job)
                size += len(job.inputs)
            else:
                kept.append(job)
        self._pending = kept
        return batch

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        inputs = [item for job in batch for item in job.inputs]
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict, inputs, batch[0].parameters)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc=exc)
                return
            log.warning(
                "a batch of %d requests failed (%s: %s); running them one by one",
                len(batch),
                type(exc).__name__,
                exc,
            )
            for job in batch:
                try:
                    _settle(
                        job,
                        await loop.run_in_executor(self._executor, self._predict, job.inputs, job.parameters),
                    )
                except Exception as single_exc:
                    _settle(job, exc=single_exc)
            return
        start = 0
        for job in batch:
            _settle(job, outputs[start : start + len(job.inputs)])
            start += len(job.inputs)

    def _predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        outputs: list[Any] = []
        # A single request larger than the batch limit runs as several forward passes of at most the limit.
        for start in range(0, len(inputs), self.max_batch_size):
            chunk = inputs[start : start + self.max_batch_size]
            self.stats.passes_by_size[len(chunk)] += 1
            result = self.predictor.predict(chunk, parameters)
            if len(result) != len(chunk):
                raise RuntimeError(
                    f"{type(self.predictor).__name__} returned {len(result)} outputs for {len(chunk)} inputs"
                )
            outputs.extend(result)
        return outputs


def _settle(job: _Job, result: list[Any] | None = None, exc: BaseException | None = None) -> None:
    if job.future.done():
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result if result is not None else [])
