"""End-to-end fixtures: the local stack, one Prefect server, one bucket, and one live endpoint.

Everything here is shared by the whole e2e package because every release that deploys starts a real
serving container: the serving image is the one `make test` built (SERVING_IMAGE, reused because the
release tags it from the same context hash), and the `serving` endpoint is released once and then
re-released, updated and broken by the tests in turn. At the end every resource the e2e tests made
is removed.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import prefect.context
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.release import release
from tasks.config.model import ReleaseConfig, parse_config
from tasks.core import aws
from tasks.sagemaker import hosting, scaling

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
SHARED_REPOSITORY = "sagemaker-release/serving"  # the name scripts/build-image.sh tags its builds with


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class E2E:
    """What every e2e test needs: the session token, the bucket, and how to make release configs."""

    token: str
    bucket: str
    prefix: str
    env: dict[str, str]
    context: Path  # the serving image's build context, as it was when the session started

    def endpoint(self, what: str) -> str:
        return f"e2e-{self.token}-{what}"

    def config_data(self, endpoint: str, /, **changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "role_arn": ROLE,
            "tags": {"suite": "e2e"},
            "model": {
                "repo_id": "sentence-transformers/all-MiniLM-L6-v2",
                "revision": "main",
                "task": "feature-extraction",
                # Weights once, as safetensors (as releases/demo.yaml does).
                "ignore_patterns": [
                    "*.onnx",
                    "onnx/*",
                    "openvino/*",
                    "*.h5",
                    "*.msgpack",
                    "*.ot",
                    "pytorch_model.bin",
                ],
            },
            "packaging": {"format": "tar.gz"},
            "storage": {"bucket": self.bucket, "prefix": self.prefix, "create_bucket": True},
            "image": {
                "source": "build",
                "context": str(self.context),
                "repository": SHARED_REPOSITORY,
            },
            "endpoint": {
                "name": endpoint,
                "type": "realtime",
                "instance_type": "ml.m5.large",
                "instance_count": 1,
            },
            "scaling": {"enabled": True, "min_capacity": 1, "max_capacity": 2},
            "smoke": {
                "payloads": [{"inputs": "SageMaker releases should be boring."}, {"inputs": ["a", "b c"]}],
                "repeat": 2,
                "expect_dim": 384,
                "max_latency_ms": 10000,
            },
            "timeouts": {"endpoint_s": 300, "poll_interval_s": 1},
            # No bakes unless a test asks: the release's mechanics, not its alarms, are tested here.
            "rollout": {"bake_s": 0, "final_bake_s": 0},
        }
        return deep_merge(base, changes)

    def config(self, endpoint: str, /, **changes: Any) -> ReleaseConfig:
        return parse_config(self.config_data(endpoint, **changes))


def run_release(config: ReleaseConfig) -> tuple[bool, dict[str, Any]]:
    """Run the release flow in this process; (succeeded, summary)."""
    state = release(config, wait_for_lock_s=120, return_state=True)
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, dict), f"the flow returned {summary!r}, not a summary"
    return state.is_completed(), summary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Any, *, timeout_s: float, interval_s: float = 0.5) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(interval_s)


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
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # Runs are started by the tests; the nightly cron must not start one in the middle of them.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        # Threads that did not inherit this context (s3transfer's upload workers report progress) read
        # the process-global settings: point those at the server too, as prefect_test_harness does.
        with (
            temporary_settings(updates={PREFECT_API_URL: url}),
            prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()),
        ):
            yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


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
