"""The browser path: the Prefect UI's forms in headless Chromium, on the local stack.

A release of releases/demo.yaml through the short form (release-from-file), run by a process worker,
whose artifact renders in the subflow run's Artifacts tab; the full form (release) refusing a config
without a model source; a paused canary approved through the Resume form. Each page is kept as a
screenshot under .state/ui-screenshots/, named by test and step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from playwright.sync_api import Locator, Page, expect
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun

from tests.e2e.inspect_stack import ledger, serving_config
from tests.e2e.progressive_models import model_folder
from tests.e2e.release_support import E2E, wait_for
from tests.e2e.test_approval import Background, approval_config, models
from tests.e2e.test_deployments import _form_overrides, worker

__all__ = ["models", "worker"]

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def field(scope: Page | Locator, label: str) -> Locator:
    """A schema form's field by its label: the label's block, which holds its description and inputs."""
    return scope.get_by_text(label, exact=True).locator("xpath=ancestor::label[1]/../..")


def shot(page: Page, folder: Path, name: str) -> None:
    # What the window shows: the UI scrolls inside its own pane, which a full-page capture does not
    # unroll, and a toast is placed in the window.
    page.screenshot(path=folder / f"{name}.png")


def custom_run_form(page: Page, ui_url: str, deployment: str) -> None:
    """The deployment's page, then Run > Custom run, as a person gets to the form."""
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
    page.goto(f"{ui_url}/deployments/deployment/{found.id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.wait_for_url(re.compile(r"/run(\?|$)"))
    expect(page.get_by_text("Parameters", exact=True)).to_be_visible()


def finished(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:

        def final() -> FlowRun | None:
            current = client.read_flow_run(run_id)
            return current if current.state is not None and current.state.is_final() else None

        found: FlowRun = wait_for(f"flow run {run_id} to finish", final, timeout_s=600, interval_s=1)
        return found


def test_the_short_form_releases_the_demo_and_its_artifact_renders(
    e2e: E2E, worker: None, page: Page, ui_url: str, screenshots: Path
) -> None:
    endpoint = e2e.endpoint("uiform")
    custom_run_form(page, ui_url, "release-model/release-from-file")
    # The form opens on the demo's file, every other field empty (the file's values).
    expect(field(page, "Config file").get_by_role("button", name="releases/demo.yaml")).to_be_visible()
    shot(page, screenshots, "short-form-1-opened")

    name = field(page, "Endpoint name (Optional)")
    name.get_by_role("button", name="str", exact=True).click()
    name.get_by_role("textbox").fill(endpoint)
    overrides = field(page, "Other fields (key=value) (Optional)")
    overrides.get_by_role("button", name="list", exact=True).click()
    lines = _form_overrides(e2e)
    for number, line in enumerate(lines):
        overrides.get_by_role("button", name="Add item").click()
        overrides.get_by_role("textbox").nth(number).fill(line)
    shot(page, screenshots, "short-form-2-filled")

    page.get_by_role("button", name="Submit", exact=True).click()
    # The UI goes back to the deployment's runs, where the new run is listed.
    page.wait_for_url(re.compile(r"\?tab=Runs"))
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("release-model/release-from-file")
        created = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    assert len(created) == 1, [r.name for r in created]
    shot(page, screenshots, "short-form-3-submitted")
    run = finished(created[0].id)
    assert run.state is not None and run.state.is_completed(), run.state
    page.goto(f"{ui_url}/runs/flow-run/{run.id}")
    header = page.get_by_role("banner")
    expect(header.get_by_text("Completed", exact=True)).to_be_visible()
    # The runs list reads: the run is named after the endpoint (the form's) and the release id.
    expect(header).to_contain_text(run.name)
    assert run.name.startswith(f"{endpoint} / "), run.name
    shot(page, screenshots, "short-form-4-run-completed")

    release_id = run.name.partition(" / ")[2]
    assert ledger(e2e.bucket, release_id)["state"] == "succeeded"
    assert (serving_config(endpoint) or "").startswith("InService")
    # The release ran as the release flow's subflow: its run holds the release artifact.
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
    assert len(children) == 1, [child.name for child in children]
    page.goto(f"{ui_url}/runs/flow-run/{children[0].id}")
    page.get_by_role("tablist").get_by_text("Artifacts", exact=True).click()
    artifact = page.get_by_text(f"release-{endpoint}", exact=True)
    expect(artifact).to_be_visible()
    shot(page, screenshots, "short-form-5-artifacts-tab")
    artifact.click()
    # The markdown renders: its title is a heading, not `# Release ...` as text.
    expect(page.get_by_role("heading", name=re.compile(rf"Release\s+{release_id}"))).to_be_visible()
    expect(page.get_by_role("table").first).to_be_visible()
    shot(page, screenshots, "short-form-6-release-artifact")


def test_the_full_form_refuses_a_config_without_a_model_source(
    e2e: E2E, worker: None, page: Page, ui_url: str, screenshots: Path
) -> None:
    custom_run_form(page, ui_url, "release-model/release")
    # 95 fields as a form; the JSON view of the same parameters is how a whole config is pasted.
    page.get_by_text("Parameters", exact=True).locator("xpath=..").get_by_role("button").click()
    page.get_by_text("Use JSON input", exact=True).click()
    config = e2e.config_data(e2e.endpoint("uinosource"), model={"repo_id": None})
    assert config["model"]["repo_id"] is None and "local_path" not in config["model"]
    editor = page.get_by_role("textbox").last
    editor.fill(json.dumps({"config": config, "wait_for_lock_s": 900}, indent=2))
    shot(page, screenshots, "refusal-1-filled")

    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_text(re.compile(r"Validation failed for field 'config\.model")).first).to_be_visible()
    shot(page, screenshots, "refusal-2-refused")
    # The form stays open and the server created no run.
    assert re.search(r"/run(\?|$)", page.url), page.url
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("release-model/release")
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    assert runs == [], [r.name for r in runs]


@pytest.fixture(scope="module")
def approve_endpoint(e2e: E2E, models: Path) -> dict[str, Any]:
    """The approve endpoint on model v1, created without approval (as tests/e2e/test_approval.py's).

    Released in a thread: Playwright's sync API keeps an event loop running in this one, where a flow's
    `state.result()` would hand back a coroutine instead of the summary."""
    ok, summary = Background(approval_config(e2e, "v1", model_folder(models, 1))).result()
    assert ok, summary["error"]
    return summary


def test_a_paused_canary_is_approved_in_the_resume_form(
    e2e: E2E, approve_endpoint: dict[str, Any], models: Path, page: Page, ui_url: str, screenshots: Path
) -> None:
    config = approval_config(e2e, "v2", model_folder(models, 2), approval="manual", approval_timeout_s=600)
    release = Background(config)
    run = release.paused_run()
    page.goto(f"{ui_url}/runs/flow-run/{run.id}")
    expect(page.get_by_role("banner").get_by_text("Paused", exact=True)).to_be_visible()
    shot(page, screenshots, "approval-1-paused")

    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    decision = field(dialog, "Decision")
    # The select opens from the keyboard once its control has the focus.
    decision.get_by_role("button").last.click()
    if not page.get_by_role("option").count():
        page.keyboard.press("ArrowDown")
    page.get_by_role("option", name="promote", exact=True).click()
    field(dialog, "Comment (Optional)").get_by_role("textbox").fill("canary looks fine in the UI")
    field(dialog, "Decided by (Optional)").get_by_role("textbox").fill("ui-approver")
    shot(page, screenshots, "approval-2-resume-form")
    dialog.get_by_role("button", name="Submit", exact=True).click()

    ok, summary = release.result()
    assert ok, summary["error"]
    assert summary["rollout"]["approval"]["decision"] == "promote"
    assert summary["rollout"]["approval"]["decided_by"] == "ui-approver"
    assert summary["rollout"]["approval"]["comment"] == "canary looks fine in the UI"
    page.reload()
    expect(page.get_by_role("banner").get_by_text("Completed", exact=True)).to_be_visible()
    shot(page, screenshots, "approval-3-completed")
