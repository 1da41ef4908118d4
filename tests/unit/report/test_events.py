"""The release's Prefect event: its name by outcome, the endpoint as its resource, the summary as payload,
emitted by the release flow where it publishes its report (refused, failed, succeeded)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.events.clients import AssertingEventsClient
from prefect.events.schemas.events import Event
from prefect.events.worker import EventsWorker
from prefect.states import State
from prefect.testing.utilities import prefect_test_harness

import flows.release
from flows import release_from_file
from flows.release import nightly_redeploy, release
from tasks.checks import preflight
from tasks.report import events
from tests.unit.deploy_helpers import BASE, make_config

RUN_RELEASE_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}\Z")
SUMMARY: dict[str, Any] = {
    "release_id": "r1",
    "endpoint_name": "demo-embedder",
    "status": "succeeded",
    "action": "updated",
    "rollout": {"strategy": "canary", "outcome": "completed", "fired": []},
    "error": None,
}


def _summary(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(SUMMARY), **changes}


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({}, "sagemaker-release.release.succeeded"),
        ({"action": "unchanged", "rollout": None}, "sagemaker-release.release.succeeded"),
        ({"status": "invalid", "action": None, "rollout": None}, "sagemaker-release.release.invalid"),
        ({"status": "failed", "rollout": None}, "sagemaker-release.release.failed"),
        (
            {"status": "failed", "rollout": {"outcome": "completed"}, "error": "SmokeFailed: ..."},
            "sagemaker-release.release.failed",
        ),
        (
            {"status": "failed", "rollout": {"outcome": "rolled back", "fired": ["demo-5xx"]}},
            "sagemaker-release.release.rolled-back",
        ),
    ],
)
def test_the_event_is_named_after_the_outcome(changes: dict[str, Any], name: str) -> None:
    assert events.event_name(_summary(**changes)) == name


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """A test server: without one, Prefect starts an ephemeral server of its own to relate events."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[Event]]]:
    """Events go to Prefect's asserting client; call the fixture's value to drain and read them."""
    AssertingEventsClient.reset()
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    monkeypatch.setattr("prefect.events.utilities.should_emit_events", lambda: True)

    def drained() -> list[Event]:
        worker.drain()
        return [e for c in AssertingEventsClient.all for e in c.events]

    yield drained
    worker.drain()
    AssertingEventsClient.reset()


def _release_events(found: list[Event]) -> list[Event]:
    return [e for e in found if e.event.startswith(events.EVENT_PREFIX)]


def test_the_event_names_the_endpoint_and_carries_the_summary(
    prefect_api: None, sent: Callable[[], list[Event]]
) -> None:
    summary = _summary(status="failed", rollout={"outcome": "rolled back", "fired": ["demo-5xx"]})
    assert events.emit_release_event(summary) is not None
    [event] = _release_events(sent())
    assert event.event == "sagemaker-release.release.rolled-back"
    assert event.resource.id == "sagemaker-release.endpoint.demo-embedder"
    assert event.resource.name == "demo-embedder"
    assert event.resource["sagemaker-release.release-id"] == "r1"
    assert event.payload == summary


def test_an_event_that_cannot_be_sent_leaves_the_release_as_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: Any) -> None:
        raise ConnectionError("events API unreachable")

    monkeypatch.setattr(events, "emit_event", broken)
    assert events.emit_release_event(_summary()) is None
    assert "event was not sent: events API unreachable" in caplog.text


# --- the release flow emits it -----------------------------------------------------------------------------


def test_a_refused_release_emits_invalid_with_its_summary(
    prefect_api: None, mocked_aws: None, monkeypatch: pytest.MonkeyPatch, sent: Callable[[], list[Event]]
) -> None:
    monkeypatch.setenv(preflight.CONFINE_ENV, "1")
    config = make_config(model={"repo_id": None, "local_path": "/etc"}).with_release_id("r-refused")
    state = release(config, wait_for_lock_s=30, return_state=True)
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, dict) and summary["status"] == "invalid"
    [event] = _release_events(sent())
    assert event.event == "sagemaker-release.release.invalid"
    assert event.resource.id == f"sagemaker-release.endpoint.{config.endpoint.name}"
    assert event.payload["release_id"] == "r-refused"
    assert "model.local_path" in event.payload["error"]
    # Prefect relates the event to the flow run that released, which automations and the UI link to.
    assert any(r.id.startswith("prefect.flow-run.") for r in event.related)


def test_a_failed_release_emits_failed_with_its_error(
    prefect_api: None, mocked_aws: None, monkeypatch: pytest.MonkeyPatch, sent: Callable[[], list[Event]]
) -> None:
    def outage(*_: Any, **__: Any) -> None:
        raise RuntimeError("SageMaker is down")

    monkeypatch.setattr(flows.release, "preflight", outage)
    config = make_config().with_release_id("r-failed")
    state = release(config, wait_for_lock_s=30, return_state=True)
    assert state.is_failed()
    [event] = _release_events(sent())
    assert event.event == "sagemaker-release.release.failed"
    assert event.payload["status"] == "failed" and "SageMaker is down" in event.payload["error"]


def test_a_refused_form_run_emits_invalid_for_the_files_endpoint(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch, sent: Callable[[], list[Event]]
) -> None:
    def no_release(*_: Any, **__: Any) -> Any:
        raise AssertionError("a refused form must not start a release")

    monkeypatch.setattr(release_from_file, "release", no_release)
    state = release_from_file.release_from_file(
        config_path="releases/demo.yaml", overrides=["endpoint.instance_count=0"], return_state=True
    )
    assert state.is_failed()
    [event] = _release_events(sent())
    assert event.event == "sagemaker-release.release.invalid"
    assert event.resource.id == "sagemaker-release.endpoint.demo-embedder"
    assert event.payload["field"] == "endpoint.instance_count"
    assert event.payload == state.result(raise_on_failure=False)
    # The release id is the one the run is named with.
    assert event.payload["release_id"] and event.payload["release_id"] in _run_name(state)


@pytest.mark.parametrize(
    ("text", "endpoint", "release_id", "field"),
    [
        pytest.param(
            yaml.safe_dump(
                {
                    **BASE,
                    "release_id": "r-nightly",
                    "endpoint": {**BASE["endpoint"], "name": "nightly-embedder", "instance_count": 0},
                }
            ),
            "nightly-embedder",
            "r-nightly",
            "endpoint.instance_count",
            id="refused config",
        ),
        pytest.param(None, "nightly", None, "config_path", id="no such file"),
    ],
)
def test_a_refused_nightly_config_emits_invalid(
    prefect_api: None,
    tmp_path: Path,
    sent: Callable[[], list[Event]],
    text: str | None,
    endpoint: str,
    release_id: str | None,
    field: str,
) -> None:
    config = tmp_path / "nightly.yaml"
    if text is not None:
        config.write_text(text)
    state = nightly_redeploy(config_path=str(config), wait_for_lock_s=0, return_state=True)
    assert state.is_failed()
    [event] = _release_events(sent())
    assert event.event == "sagemaker-release.release.invalid"
    assert event.resource.id == f"sagemaker-release.endpoint.{endpoint}"
    assert event.payload["field"] == field and field in event.payload["error"]
    # The file's release id, else the run's.
    if release_id is not None:
        assert event.payload["release_id"] == release_id
    else:
        assert RUN_RELEASE_ID.match(event.payload["release_id"])


def _run_name(state: State) -> str:
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        assert run_id is not None
        return client.read_flow_run(run_id).name
