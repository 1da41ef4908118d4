"""The JSON summary and the markdown artifact of a release."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.checks.smoke import SmokeResult
from tasks.report.summary import ReleaseReport
from tasks.rollout.runner import RolloutReport, StepRecord
from tests.unit.deploy_helpers import local_ledger

SUMMARY_KEYS = {
    "release_id",
    "endpoint_name",
    "endpoint_config_name",
    "model_data_url",
    "image_uri",
    "status",
    "uploaded_bytes",
    "image_built",
    "smoke",
}


def _report(tmp_path: Path) -> ReleaseReport:
    report = ReleaseReport("r1", "demo-embedder", "realtime")
    report.status, report.action = "succeeded", "updated"
    report.endpoint_config_name, report.previous_config = "demo-embedder-r1", "demo-embedder-r0"
    report.model_data_url, report.uploaded_bytes = "s3://b/sr/models/abc/model.tar.gz", 3 * 1024 * 1024
    report.image_uri, report.image_built = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc", True
    report.smoke = SmokeResult(True, 6, 12.5, 30.1, (), ("expect_column_values_to_be_in_set(column=status)",))
    ledger = local_ledger(tmp_path)
    ledger.record(
        "sagemaker:model", "demo-embedder-r1", arn="arn:aws:sagemaker:us-east-1:123456789012:model/x"
    )
    ledger.record("sagemaker:endpoint", "demo-embedder", previous_config="demo-embedder-r0", created=False)
    report.absorb_ledger(ledger)
    return report


def test_summary_is_one_json_line_with_the_documented_fields(tmp_path: Path) -> None:
    summary = json.loads(_report(tmp_path).summary_line())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["smoke"] == {"passed": True, "n": 6, "p50_ms": 12.5}
    assert (summary["uploaded_bytes"], summary["image_built"], summary["status"]) == (
        3145728,
        True,
        "succeeded",
    )


def test_markdown_lists_resources_traffic_and_smoke(tmp_path: Path) -> None:
    markdown = _report(tmp_path).markdown()
    assert "moved to config `demo-embedder-r1`" in markdown
    assert "Previous config `demo-embedder-r0` is kept for rollback" in markdown
    assert "| 1 | sagemaker:model | `arn:aws:sagemaker:us-east-1:123456789012:model/x` | live |" in markdown
    assert "updated from `demo-embedder-r0`" in markdown
    assert "**passed**: 6 requests, p50 12.5 ms" in markdown
    assert "3.0 MiB uploaded" in markdown


def test_a_failed_release_reports_its_error_and_the_unwind(tmp_path: Path) -> None:
    report = _report(tmp_path)
    report.status, report.error = (
        "failed",
        "SmokeFailed: endpoint demo-embedder failed 1 smoke expectation(s)",
    )
    report.entries[0].status = "deleted"
    markdown = report.markdown()
    assert "> SmokeFailed: endpoint demo-embedder" in markdown
    assert "was put back on its previous config `demo-embedder-r0`" in markdown
    assert "| deleted |" in markdown
    assert report.publish() is None  # outside a flow run there is nowhere to publish


def test_the_traffic_shift_is_in_the_summary_and_the_artifact(tmp_path: Path) -> None:
    report = _report(tmp_path)
    shift = RolloutReport(
        endpoint="demo-embedder",
        strategy="variant_shift",
        requested="auto",
        reason="1 instance(s) are too few for a guardrails canary",
        new_variant="AllTraffic-r1",
        final_config="demo-embedder-r1",
        previous_config="demo-embedder-r0",
    )
    report.keep_rollout(shift)
    shift.steps.append(
        StepRecord(0, "50% on the new model", 50.0, 100.0, 125.0, invocations=40, errors_5xx=0)
    )
    shift.outcome = "completed"
    report.retired = ("endpoint config demo-embedder-r-1",)
    summary = json.loads(report.summary_line())
    assert summary["rollout"]["strategy"] == "variant_shift" and summary["rollout"]["outcome"] == "completed"
    assert [s["weight_percent"] for s in summary["rollout"]["steps"]] == [50.0]
    assert summary["retired"] == ["endpoint config demo-embedder-r-1"]
    markdown = report.markdown()
    assert "## Traffic shift: variant_shift — completed" in markdown
    assert "| 1 | 50% on the new model (25 s) | 50 | 40 | 0 |" in markdown
    assert "data:image/svg+xml" in markdown
    assert "`endpoint config demo-embedder-r-1`" in markdown


def test_a_model_refused_before_traffic_shows_that_smoke_and_no_endpoint_smoke(tmp_path: Path) -> None:
    report = _report(tmp_path)
    report.status, report.smoke = "failed", None
    report.smoke_before_traffic = SmokeResult(
        False, 3, 8.0, 9.0, ("expect_column_values_to_be_in_set(column=status): 3 of 3",), ()
    )
    summary = report.summary()
    assert summary["smoke_before_traffic"] == {"passed": False, "n": 3, "p50_ms": 8.0}
    assert summary["smoke"]["passed"] is None
    markdown = report.markdown()
    assert "Before traffic, on the new variant at weight 0:" in markdown
    assert "**failed**: 3 requests" in markdown and "On the endpoint: not run." in markdown
