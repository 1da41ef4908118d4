"""End-to-end fixtures: the local stack, one Prefect server, one bucket, and one live endpoint.

Everything here is shared by the whole e2e package because every release that deploys starts a real
serving container: the serving image is the one `make test` built (SERVING_IMAGE, reused because the
release tags it from the same context hash), and the `serving` endpoint is released once and then
re-released, updated and broken by the tests in turn. At the end every resource the e2e tests made
is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tasks.core import aws
from tasks.sagemaker import hosting, scaling
from tests.e2e.release_support import E2E, REPO_ROOT, prefect_server, run_release


@pytest.fixture(scope="package")
def base_image() -> str:
    found = os.environ.get("SAGEMAKER_RELEASE_BASE_IMAGE")
    if found:
        return found
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "ensure-base-image.sh")], check=True, capture_output=True, text=True
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="package")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `prefect server start` of its own (temporary home and database) for the e2e package."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


@pytest.fixture(scope="package")
def build_context(tmp_path_factory: pytest.TempPathFactory, serving_image: str) -> Path:
    """A copy of container/ taken once: every release of the session builds the same image (same tag)
    even while container/ is being edited, and it is the image `make test` built when nothing changed."""
    copy_to = tmp_path_factory.mktemp("build") / "container"
    shutil.copytree(REPO_ROOT / "container", copy_to, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy_to


@pytest.fixture(scope="package")
def e2e(stack: dict[str, str], base_image: str, build_context: Path, prefect_api: str) -> Iterator[E2E]:
    """The stack's variables exported for the package, a bucket, and cleanup of everything at the end."""
    token = uuid.uuid4().hex[:6]
    patch = pytest.MonkeyPatch()
    env = {**stack, "SAGEMAKER_RELEASE_BASE_IMAGE": base_image, "PREFECT_API_URL": prefect_api}
    for name, value in env.items():
        patch.setenv(name, value)
    aws.reset_clients()
    context = E2E(token=token, bucket=f"e2e-{token}", prefix="e2e", env=env, context=build_context)
    try:
        yield context
    finally:
        _remove_everything(context)
        patch.undo()
        aws.reset_clients()


def _remove_everything(context: E2E) -> None:
    """Delete what the e2e tests left on purpose (the live endpoints) and the bucket."""
    sagemaker = boto3.client("sagemaker")
    prefix = f"e2e-{context.token}-"
    for endpoint in sagemaker.list_endpoints(NameContains=prefix)["Endpoints"]:
        name = endpoint["EndpointName"]
        for variant in ("AllTraffic",):
            scaling.remove_target(f"endpoint/{name}/variant/{variant}")
        hosting.delete_endpoint(name, timeout_s=120, interval_s=1)
    for config in sagemaker.list_endpoint_configs(NameContains=prefix)["EndpointConfigs"]:
        sagemaker.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
    for model in sagemaker.list_models(NameContains=prefix)["Models"]:
        sagemaker.delete_model(ModelName=model["ModelName"])
    cloudwatch = boto3.client("cloudwatch")
    alarms = [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]]
    if alarms:
        cloudwatch.delete_alarms(AlarmNames=alarms)
    sns = boto3.client("sns")
    for topic in sns.list_topics()["Topics"]:
        if f":{prefix}" in topic["TopicArn"]:
            sns.delete_topic(TopicArn=topic["TopicArn"])
    ecr = boto3.client("ecr")
    for repository in ecr.describe_repositories()["repositories"]:
        if repository["repositoryName"].startswith(f"e2e-{context.token}"):
            ecr.delete_repository(repositoryName=repository["repositoryName"], force=True)
    s3 = boto3.resource("s3")
    bucket = s3.Bucket(context.bucket)
    if bucket.creation_date is not None:
        bucket.objects.all().delete()
        bucket.delete()


@pytest.fixture(scope="package")
def serving(e2e: E2E) -> dict[str, Any]:
    """The shared endpoint, released once for real: MiniLM from the local Hub, the real serving image."""
    ok, summary = run_release(e2e.config(e2e.endpoint("serving"), release_id=f"e2e-{e2e.token}-first"))
    assert ok, summary["error"]
    return summary
