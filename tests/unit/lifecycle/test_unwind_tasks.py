"""A failed release's unwind, seen in Prefect: one `undo` task run per undone entry, newest first, and the
unwind still complete when the task cannot run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.context import get_run_context
from prefect.testing.utilities import prefect_test_harness

from tasks.core.errors import SmokeFailed, UnwindFailed
from tasks.lifecycle import ledger as ledger_module
from tasks.lifecycle.ledger import Ledger, LedgerEntry, LocalLedgerStore

RESOURCES = [("s3:object", "s3://b/model.tar.gz"), ("sagemaker:model", "m-r1"), ("sagemaker:endpoint", "ep")]


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _deleters(undone: list[str], failing: str | None = None) -> dict[str, ledger_module.Deleter]:
    def delete(entry: LedgerEntry) -> None:
        if entry.resource_id == failing:
            raise RuntimeError("AccessDenied: not allowed")
        undone.append(entry.resource_id)

    return {kind: delete for kind, _ in RESOURCES}


def _failed_release(tmp_path: Path, undone: list[str], failing: str | None = None) -> tuple[str, Ledger]:
    ledger = Ledger.open(
        LocalLedgerStore(tmp_path / "ledger.json"), "r1", deleters=_deleters(undone, failing)
    )

    @flow(name="release-that-fails")
    def release() -> str:
        run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
        try:
            with ledger:
                for kind, resource_id in RESOURCES:
                    ledger.record(kind, resource_id)
                raise SmokeFailed("ep", ["status 500"], requests=1)
        except (SmokeFailed, UnwindFailed):
            return run_id
        raise AssertionError("the release was meant to fail")

    return release(), ledger


def _task_runs(flow_run_id: str) -> list[TaskRun]:
    async def read() -> list[TaskRun]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    # Created in the order the unwind ran them.
    return sorted(asyncio.run(read()), key=lambda run: run.created.isoformat() if run.created else "")


def test_each_undo_of_a_failed_release_is_one_task_run_newest_first(
    prefect_api: None, tmp_path: Path
) -> None:
    undone: list[str] = []
    flow_run_id, ledger = _failed_release(tmp_path, undone)
    assert undone == ["ep", "m-r1", "s3://b/model.tar.gz"]
    runs = _task_runs(flow_run_id)
    assert [run.name for run in runs] == [
        "undo sagemaker:endpoint ep",
        "undo sagemaker:model m-r1",
        "undo s3:object s3://b/model.tar.gz",
    ]
    assert all(run.state is not None and run.state.is_completed() for run in runs)
    assert [entry.status for entry in ledger.entries] == ["deleted"] * 3
    assert ledger.state == "unwound"


def test_an_undo_that_fails_is_a_failed_task_run_and_the_unwind_goes_on(
    prefect_api: None, tmp_path: Path
) -> None:
    undone: list[str] = []
    flow_run_id, ledger = _failed_release(tmp_path, undone, failing="m-r1")
    assert undone == ["ep", "s3://b/model.tar.gz"]
    states = {run.name: run.state for run in _task_runs(flow_run_id)}
    assert states["undo sagemaker:model m-r1"] is not None and states["undo sagemaker:model m-r1"].is_failed()
    assert (
        states["undo sagemaker:endpoint ep"] is not None
        and states["undo sagemaker:endpoint ep"].is_completed()
    )
    assert [entry.status for entry in ledger.entries] == ["deleted", "failed", "deleted"]
    assert ledger.state == "unwind_failed"


def test_the_unwind_undoes_directly_when_the_undo_task_cannot_run(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unreachable:
        def with_options(self, **_: object) -> Unreachable:
            return self

        def __call__(self, *args: object, **kwargs: object) -> None:
            raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(ledger_module, "undo_entry", Unreachable())
    undone: list[str] = []
    flow_run_id, ledger = _failed_release(tmp_path, undone)
    assert undone == ["ep", "m-r1", "s3://b/model.tar.gz"]
    assert [entry.status for entry in ledger.entries] == ["deleted"] * 3
    assert _task_runs(flow_run_id) == []


def test_outside_a_flow_run_the_unwind_runs_no_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_task(**_: object) -> None:
        raise AssertionError("an unwind outside a flow run started a Prefect task")

    monkeypatch.setattr(ledger_module.undo_entry, "with_options", no_task)
    undone: list[str] = []
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), "r1", deleters=_deleters(undone))
    for kind, resource_id in RESOURCES:
        ledger.record(kind, resource_id)
    ledger.unwind()
    assert undone == ["ep", "m-r1", "s3://b/model.tar.gz"]
