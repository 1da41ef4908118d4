"""The JSON summary and the markdown artifact of a release."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tasks.artifact.model_source import ModelSnapshot
from tasks.artifact.packaging import ModelArtifact
from tasks.artifact.storage import UploadedModel
from tasks.checks.smoke import SmokeResult
from tasks.image.release_image import ServingImage
from tasks.report.summary import ReleaseReport, ReleaseSteps
from tasks.rollout.runner import RolloutReport, StepRecord
from tasks.sagemaker.deploy import EndpointState
from tasks.sagemaker.hosting import LiveEndpoint, ServedModel
from tasks.sagemaker.scaling import AlarmView, AppliedScaling, PolicyView
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
    assert "| live | 1 | sagemaker:model | `arn:aws:sagemaker:us-east-1:123456789012:model/x` |" in markdown
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
    steps = ReleaseSteps(model_source="local folder /models/demo")
    steps.keep_rollout(shift)
    report.absorb_steps(steps)
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


def _steps_up_to_the_image() -> ReleaseSteps:
    steps = ReleaseSteps("org/model@c0ffee (main)", live=_live("demo-embedder-r0"))
    steps.snapshot = ModelSnapshot("/models/demo", ("config.json",), 10, "org/model", "main", "c0ffee")
    steps.artifact = replace(_artifact(), reused=True)
    steps.uploaded = UploadedModel("s3://b/sr/models/abc/model.tar.gz", "Gzip", "abc", 2048, 1, 0)
    steps.image = ServingImage(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc", None, True, True, "build"
    )
    return steps


def _artifact() -> ModelArtifact:
    return ModelArtifact("tar.gz", "/tmp/model.tar.gz", "abc", 1024, 10, ("config.json",))


def _served(model_name: str) -> ServedModel:
    return ServedModel("AllTraffic", model_name, None, None, {}, "ml.m5.large", 1, None)


def _live(config_name: str) -> LiveEndpoint:
    return LiveEndpoint(
        "demo-embedder",
        "InService",
        config_name,
        None,
        (_served("demo-embedder-r0"),),
    )


def test_the_report_reads_the_steps_as_far_as_they_got() -> None:
    report = ReleaseReport("r1", "demo-embedder", "realtime")
    steps = _steps_up_to_the_image()
    report.absorb_steps(steps)
    summary = report.summary()
    assert (summary["model_data_url"], summary["uploaded_bytes"], summary["package_reused"]) == (
        "s3://b/sr/models/abc/model.tar.gz",
        2048,
        True,
    )
    assert (summary["image_built"], report.image_pushed, report.model_commit) == (True, True, "c0ffee")
    # It failed before any endpoint config: the live endpoint was never moved, so no previous config.
    assert (summary["action"], summary["endpoint_config_name"], summary["previous_config"]) == (
        None,
        None,
        None,
    )

    steps.model_name, steps.endpoint_config_name = "demo-embedder-r1", "demo-embedder-r1"
    steps.endpoint = EndpointState("demo-embedder", "arn:x", "demo-embedder-r1", "InService", "updated", None)
    steps.scaling = AppliedScaling(
        "endpoint/demo-embedder/variant/AllTraffic",
        1,
        4,
        (PolicyView("r1-invocations", "TargetTrackingScaling", "InvocationsPerInstance at 70"),),
        (AlarmView("TargetTracking-x-AlarmHigh-1", "r1-invocations", "InvocationsPerInstance > 70", "OK"),),
    )
    report.absorb_steps(steps)
    assert (report.action, report.previous_config, report.endpoint_arn) == (
        "updated",
        "demo-embedder-r0",
        "arn:x",
    )
    assert report.summary()["scaling"] == {
        "resource_id": "endpoint/demo-embedder/variant/AllTraffic",
        "min_capacity": 1,
        "max_capacity": 4,
        "changed": True,
        "policies": ["r1-invocations"],
        "alarms": ["TargetTracking-x-AlarmHigh-1"],
    }
    shown = report.markdown()
    assert "AllTraffic`: **1-4 instances** (registered by this release)" in shown
    assert "| `r1-invocations` | TargetTrackingScaling | InvocationsPerInstance at 70 |" in shown
    assert "| OK | `TargetTracking-x-AlarmHigh-1` | `r1-invocations` | InvocationsPerInstance > 70 |" in shown


def test_a_step_that_never_ran_reports_nothing_and_an_unchanged_endpoint_reports_what_serves() -> None:
    report = ReleaseReport("r1", "demo-embedder", "realtime")
    report.absorb_steps(ReleaseSteps("org/model@c0ffee (main)"))
    assert (report.model_source, report.model_data_url, report.image_uri, report.action) == (
        None,
        None,
        None,
        None,
    )

    steps = _steps_up_to_the_image()
    steps.unchanged = _live("demo-embedder-r0")
    report.absorb_steps(steps)
    assert (report.action, report.endpoint_config_name, report.model_name) == (
        "unchanged",
        "demo-embedder-r0",
        "demo-embedder-r0",
    )
    assert report.previous_config is None


def test_the_state_comes_first_and_a_long_arn_is_shortened_with_the_full_value_below(tmp_path: Path) -> None:
    report = ReleaseReport("r1", "demo-embedder", "realtime")
    ledger = local_ledger(tmp_path)
    long_name = "demo-embedder-" + "x" * 40
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{long_name}"
    ledger.record("sagemaker:endpoint-config", long_name, arn=arn)
    report.absorb_ledger(ledger)
    lines = report.markdown().splitlines()
    assert "| state | # | kind | resource |" in lines
    assert f"| live | 1 | sagemaker:endpoint-config | `…endpoint-config/{long_name}` [1] |" in lines
    assert f"1. `{arn}`" in lines


def test_an_unchanged_release_says_so_and_a_new_endpoint_gets_no_empty_chart(tmp_path: Path) -> None:
    report = _report(tmp_path)
    report.action, report.previous_config = "unchanged", None
    assert "**Unchanged**: Endpoint `demo-embedder` already served config" in report.markdown()
    created = RolloutReport("demo-embedder", "create", "all_at_once", "new", "AllTraffic", "c1", None)
    created.steps.append(StepRecord(0, "new endpoint", 100.0, 0.0, 60.0, invocations=12))
    report.rollout = created
    shown = report.markdown()
    assert "| 1 | new endpoint (60 s) | 100 | 12 |" in shown and "data:image/svg+xml" not in shown
