"""Tiny models for the progressive-delivery e2e tests, and what those tests read back from the stack.

Each model is a folder with a code/inference.py that answers a vector of its version number, so a
test can tell which model served; a broken one raises (HTTP 500) on inputs containing `fail_on`,
which only the bake traffic of its release sends, the way a model breaks on part of production's
inputs; a slow one sleeps `delay_s` before answering.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

INFERENCE = '''"""Model v{version}: [{version}] * 4 after {delay_s} s; raises on inputs with {fail_on!r}."""

import json
import time

VERSION = {version}
FAIL_ON = {fail_on!r}
DELAY_S = {delay_s}


def model_fn(model_dir):
    return VERSION


def predict_fn(data, model):
    if FAIL_ON and FAIL_ON in json.dumps(data):
        raise RuntimeError("this model cannot handle " + FAIL_ON)
    time.sleep(DELAY_S)
    return [float(model)] * 4
'''

GOOD_PAYLOADS: list[Any] = [{"inputs": "a release should be boring"}]
# Only the bake traffic sends the second payload; the model that fails on it answers the first.
FAILING_PAYLOADS: list[Any] = [*GOOD_PAYLOADS, {"inputs": "inputs that fail this model"}]


def model_folder(root: Path, version: int, fail_on: str = "", delay_s: float = 0.0) -> Path:
    folder = root / f"model-v{version}"
    (folder / "code").mkdir(parents=True)
    code = INFERENCE.format(version=version, fail_on=fail_on, delay_s=delay_s)
    (folder / "code" / "inference.py").write_text(code)
    return folder


def version_served(endpoint: str) -> float:
    """The version of the model that answered one request."""
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps({"inputs": "which model?"}), ContentType="application/json"
    )
    return float(json.loads(answer["Body"].read())[0])


def endpoint_configs(endpoint: str) -> set[str]:
    listed = boto3.client("sagemaker").list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]
    return {c["EndpointConfigName"] for c in listed}


def release_artifact(endpoint: str, release_id: str) -> str:
    """The markdown artifact the release published; AssertionError when there is none."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"release-{endpoint}"]))
        )
    ours = [str(a.data) for a in artifacts if f"# Release `{release_id}`" in str(a.data)]
    assert ours, f"release {release_id} published no markdown artifact"
    return ours[0]
