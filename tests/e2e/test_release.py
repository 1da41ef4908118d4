"""The real all-MiniLM-L6-v2 from the local Hub to a live, autoscaled, smoke-tested endpoint; then again."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import boto3
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from tasks.image import build
from tests.e2e.inspect_stack import embed, ledger, scaling_of, serving_config
from tests.e2e.release_support import E2E, REPO_ROOT, run_release

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def test_release_goes_live_autoscaled_and_answers(e2e: E2E, serving: dict[str, Any]) -> None:
    endpoint = e2e.endpoint("serving")
    assert serving["status"] == "succeeded" and serving["action"] == "created"
    assert serving["smoke"]["passed"] is True and serving["smoke"]["n"] == 4
    assert serving["model_data_url"].startswith(f"s3://{e2e.bucket}/e2e/models/")
    assert serving["model_data_url"].endswith("/model.tar.gz")
    tag = build.context_tag(e2e.context, e2e.env["SAGEMAKER_RELEASE_BASE_IMAGE"])
    assert (
        serving["image_uri"]
        == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-release/serving:{tag}"
    )
    assert serving_config(endpoint) == f"InService {serving['endpoint_config_name']}"
    assert len(embed(endpoint)) == 384
    assert scaling_of(endpoint) == {
        "targets": [(f"endpoint/{endpoint}/variant/AllTraffic", 1, 2)],
        "policies": [f"{endpoint}-{serving['release_id']}-invocations"],
    }
    assert ledger(e2e.bucket, serving["release_id"])["state"] == "succeeded"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"release-{endpoint}"]))
        )
    # Every release of the endpoint publishes under the same key (other tests release it too).
    ours = [str(a.data) for a in artifacts if f"# Release `{serving['release_id']}`" in str(a.data)]
    assert ours, "the release published no markdown artifact"
    markdown = ours[0]
    assert "**succeeded**" in markdown and serving["endpoint_config_name"] in markdown
    assert "sagemaker:endpoint" in markdown and "**passed**: 4 requests" in markdown


def test_second_release_of_the_same_commit_uploads_nothing_and_builds_nothing(
    e2e: E2E, serving: dict[str, Any], tmp_path: Any
) -> None:
    """The CLI, as a nightly job runs it: exit 0 and a JSON summary as the last line of output."""
    endpoint = e2e.endpoint("serving")
    config_file = tmp_path / "release.yaml"
    config_file.write_text(yaml.safe_dump(e2e.config_data(endpoint)))
    done = subprocess.run(
        [sys.executable, "-m", "flows.release", "--config", str(config_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["action"] == "unchanged"
    assert (summary["uploaded_bytes"], summary["image_built"]) == (0, False)
    assert summary["package_reused"] is True, "the same commit on the same worker is not compressed again"
    assert summary["endpoint_config_name"] == serving["endpoint_config_name"]
    assert summary["model_data_url"] == serving["model_data_url"]
    assert summary["smoke"]["passed"] is True
    assert serving_config(endpoint) == f"InService {serving['endpoint_config_name']}"
    # It created nothing: only its references to the model data and to the image, dropped as soon as
    # nothing was to deploy.
    entries = ledger(e2e.bucket, summary["release_id"])["entries"]
    assert [(e["kind"], e["resource_id"].split("/")[4], e["status"]) for e in entries] == [
        ("s3:object", "model-refs", "deleted"),
        ("s3:object", "image-refs", "deleted"),
    ]


def test_async_release_notifies_through_its_topics_and_scales_from_zero(
    e2e: E2E, serving: dict[str, Any]
) -> None:
    endpoint = e2e.endpoint("async")
    output = f"s3://{e2e.bucket}/async/{endpoint}"
    config = e2e.config(
        endpoint,
        release_id=f"e2e-{e2e.token}-async",
        endpoint={
            "type": "async",
            "async_inference": {
                "output_path": f"{output}/out/",
                "failure_path": f"{output}/failed/",
                "create_topics": True,
                "max_concurrent_invocations_per_instance": 2,
            },
        },
        scaling={"min_capacity": 0, "max_capacity": 2, "target_backlog_per_instance": 3},
        smoke={"repeat": 1, "latency_percentile": "max", "timeout_s": 120},
    )
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert summary["smoke"]["passed"] is True and summary["smoke"]["n"] == 2  # answers read back from S3

    described = boto3.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=summary["endpoint_config_name"]
    )
    output_config = described["AsyncInferenceConfig"]["OutputConfig"]
    assert (output_config["S3OutputPath"], output_config["S3FailurePath"]) == (
        f"{output}/out/",
        f"{output}/failed/",
    )
    topics = {t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]}
    notification = output_config["NotificationConfig"]
    assert {notification["SuccessTopic"], notification["ErrorTopic"]} <= topics

    resource = f"endpoint/{endpoint}/variant/AllTraffic"
    assert scaling_of(endpoint)["targets"] == [(resource, 0, 2)]
    policies = boto3.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource
    )["ScalingPolicies"]
    step = next(p for p in policies if p["PolicyType"] == "StepScaling")
    tracking = next(p for p in policies if p["PolicyType"] == "TargetTrackingScaling")
    metric = tracking["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "ApproximateBacklogSizePerInstance"
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{endpoint}-")["MetricAlarms"]
    # The scale-from-zero alarm drives the step policy; the others are the release's guard alarms (async
    # endpoints publish their 5xx errors and ModelLatency), which drive nothing.
    (alarm,) = [a for a in alarms if a["AlarmActions"]]
    assert (alarm["MetricName"], alarm["AlarmActions"]) == ("HasBacklogWithoutCapacity", [step["PolicyARN"]])
    guards = sorted(a["MetricName"] for a in alarms if not a["AlarmActions"])
    assert guards == ["Invocation5XXErrors", "ModelLatency"], guards
