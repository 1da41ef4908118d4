"""A release onto an endpoint that captures data keeps the capture in its own endpoint config (moto's
SageMaker): the endpoint serves on that config afterwards, so without it every release turned capture off."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import boto3
import pytest

from flows import release as release_flow
from tasks.rollout.planning import RolloutPlan
from tasks.sagemaker import hosting
from tasks.sagemaker.deploy import create_endpoint_config
from tasks.sagemaker.endpoint_spec import Topics
from tests.unit.deploy_helpers import ROLE, local_ledger, make_config

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:1"
CAPTURE: dict[str, Any] = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 20,
    "DestinationS3Uri": "s3://models-bucket/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
}


def _live_endpoint(capture: dict[str, Any] | None) -> hosting.LiveEndpoint:
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(ModelName="old-model", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE)
    request: dict[str, Any] = {
        "EndpointConfigName": "old-config",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "old-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    }
    if capture is not None:
        request["DataCaptureConfig"] = capture
    sagemaker.create_endpoint_config(**request)
    sagemaker.create_endpoint(EndpointName="demo-embedder", EndpointConfigName="old-config")
    live = hosting.live_endpoint("demo-embedder")
    assert live is not None
    return live


def _release_config(live: hosting.LiveEndpoint | None, tmp_path: Path) -> dict[str, Any]:
    config = make_config()
    boto3.client("sagemaker").create_model(
        ModelName="new-model", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE
    )
    name = create_endpoint_config.fn(
        config, "r1", model_name="new-model", topics=Topics(), ledger=local_ledger(tmp_path), live=live
    )
    return dict(boto3.client("sagemaker").describe_endpoint_config(EndpointConfigName=name))


def test_the_release_config_keeps_the_live_data_capture(
    mocked_aws: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = _live_endpoint(CAPTURE)
    with caplog.at_level(logging.INFO):
        described = _release_config(live, tmp_path)
    assert described["DataCaptureConfig"] == CAPTURE
    assert (
        "keeps the data capture of demo-embedder" in caplog.text
        and "s3://models-bucket/capture" in caplog.text
    )


def test_an_endpoint_without_capture_gets_none(mocked_aws: None, tmp_path: Path) -> None:
    # moto answers an empty DataCaptureConfig for a config without one.
    assert not _release_config(_live_endpoint(None), tmp_path).get("DataCaptureConfig")


def test_a_new_endpoint_gets_none(mocked_aws: None, tmp_path: Path) -> None:
    assert not _release_config(None, tmp_path).get("DataCaptureConfig")


def test_the_release_flow_hands_the_live_endpoint_to_the_config_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """flows/release.py's deploy passes what preflight found, so the step above sees the live capture."""
    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def recording_create_endpoint_config(*_: Any, **kwargs: Any) -> str:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(release_flow, "create_topics", lambda *a, **k: Topics())
    monkeypatch.setattr(release_flow, "create_model", lambda *a, **k: "new-model")
    monkeypatch.setattr(release_flow, "create_endpoint_config", recording_create_endpoint_config)
    live = hosting.LiveEndpoint("demo-embedder", "InService", "old-config", None, data_capture=CAPTURE)
    with pytest.raises(Stop):
        release_flow.deploy(
            make_config(),
            "r1",
            live,
            RolloutPlan("all_at_once", "all_at_once", "as configured", (100.0,), 0, 0, 3),
            None,  # type: ignore[arg-type]
            "image",
            None,  # type: ignore[arg-type]
            release_flow.ReleaseSteps("a/b@main"),
        )
    assert seen["live"] is live
    assert seen["instance_count"] == 3  # the plan's fleet size, which autoscaling may have set
