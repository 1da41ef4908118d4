"""A failure at every step of a release, each through a real seam, and what exists afterwards.

Each case breaks one step the way it breaks for users: a revision that does not exist, S3 refusing an
upload, a Dockerfile that fails, a registry that is down, an image that is not in ECR, an instance type
SageMaker does not know, a model the container cannot load, Application Auto Scaling refusing a
policy, answers that fail the smoke test. Service refusals come from a proxy in front of the local
service (tests/e2e/faults.py), reached through the service's standard AWS_ENDPOINT_URL_* variable.

Afterwards nothing tagged with the release exists in S3, ECR, SageMaker, Application Auto Scaling,
CloudWatch or SNS, every ledger entry is settled, a repository that existed before is still there,
and an endpoint that served before serves the same config again and answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest

from tasks.core import aws
from tasks.core.state_dir import STATE_DIR_ENV, state_subdir
from tests.e2e.faults import Fault, FaultProxy, Request, json_error, s3_error
from tests.e2e.inspect_stack import (
    embed,
    ledger,
    resources_of_release,
    scaling_of,
    serving_config,
    unresolved_entries,
)
from tests.e2e.release_support import E2E, HERE, SHARED_REPOSITORY, run_release

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


@dataclass(frozen=True)
class Proxied:
    """Send one service through a FaultProxy: its endpoint variable, upstream variable, rule and answer."""

    variable: str
    upstream: str
    matches: Callable[[Request], bool]
    fault: Fault


@dataclass(frozen=True)
class Breakage:
    release: str  # short: release ids are at most 32 characters
    changes: dict[str, Any]
    error: str
    env: dict[str, str] = field(default_factory=dict)
    proxy: Proxied | None = None


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


NEW_ENDPOINT_CASES = [
    Breakage("dl", {"model": {"revision": "no-such-revision"}}, "no-such-revision"),
    Breakage(
        "upload",
        # Several objects (an uncompressed prefix): the ones that made it must go too.
        {"packaging": {"format": "s3_prefix"}},
        "AccessDenied",
        proxy=Proxied(
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
            lambda r: r.method in ("PUT", "POST") and "model.safetensors" in r.path,
            s3_error("AccessDenied", "Access Denied"),
        ),
    ),
    Breakage("build", {"image": {"context": str(HERE / "contexts" / "broken")}}, "BuildFailed"),
    Breakage(
        "push",
        {"image": {"context": str(HERE / "contexts" / "tiny"), "repository": "e2e-{token}/push-fails"}},
        "PushFailed",
        env={"SAGEMAKER_RELEASE_REGISTRY": _closed_port()},
    ),
    Breakage(
        "model",
        {
            "image": {
                "source": "prebuilt",
                "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/e2e-missing/serving:none",
                "context": "container",
            }
        },
        "not found",
    ),
    Breakage("epconfig", {"endpoint": {"instance_type": "ml.nonexistent.xlarge"}}, "CreateEndpointConfig"),
    Breakage("endpoint", {"endpoint": {"environment": {"HF_TASK": "no-such-task"}}}, "EndpointFailed"),
    Breakage(
        "scaling",
        {},
        "PutScalingPolicy",
        proxy=Proxied(
            "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING",
            "AWS_ENDPOINT_URL",
            lambda r: r.target.endswith(".PutScalingPolicy"),
            json_error("ValidationException", "PutScalingPolicy refused by the e2e fault proxy"),
        ),
    ),
]

LIVE_ENDPOINT_CASES = [
    Breakage("update", {"endpoint": {"environment": {"HF_TASK": "no-such-task"}}}, "EndpointRolledBack"),
    Breakage(
        "smoke",
        # A different environment makes a new model (so the endpoint is updated), then the smoke fails.
        {"endpoint": {"environment": {"E2E_CASE": "smoke"}}, "smoke": {"expect_dim": 999}},
        "SmokeFailed",
    ),
]


@contextmanager
def broken(case: Breakage, e2e: E2E) -> Iterator[list[Request]]:
    """The environment of a case: extra variables and, when asked, a fault proxy; yields its hits."""
    patch = pytest.MonkeyPatch()
    hits: list[Request] = []
    with ExitStack() as stack:
        for name, value in case.env.items():
            patch.setenv(name, value)
        if case.proxy is not None:
            proxy = FaultProxy(os.environ[case.proxy.upstream], case.proxy.matches, case.proxy.fault, hits)
            stack.enter_context(proxy.running())
            patch.setenv(case.proxy.variable, proxy.url())
        aws.reset_clients()
        try:
            yield hits
        finally:
            patch.undo()
            aws.reset_clients()


def _changes(case: Breakage, e2e: E2E) -> dict[str, Any]:
    image = dict(case.changes.get("image", {}))
    if "repository" in image:
        image["repository"] = image["repository"].format(token=e2e.token)
    return {**case.changes, **({"image": image} if image else {})}


def _assert_release_left_nothing(e2e: E2E, summary: dict[str, Any], expected_error: str) -> None:
    release_id = summary["release_id"]
    assert summary["status"] == "failed"
    assert expected_error in (summary["error"] or ""), summary["error"]
    assert ledger(e2e.bucket, release_id)["state"] == "unwound", ledger(e2e.bucket, release_id)
    assert unresolved_entries(e2e.bucket, release_id) == []
    assert resources_of_release(release_id, e2e.bucket) == []


@pytest.mark.parametrize("case", NEW_ENDPOINT_CASES, ids=lambda c: c.release)
def test_a_failed_release_of_a_new_endpoint_leaves_nothing(
    e2e: E2E, serving: dict[str, Any], case: Breakage
) -> None:
    endpoint = e2e.endpoint(case.release)
    config = e2e.config(endpoint, release_id=f"e2e-{e2e.token}-{case.release}", **_changes(case, e2e))
    with broken(case, e2e) as hits:
        ok, summary = run_release(config)
    assert not ok
    if case.proxy is not None:
        assert hits, "the fault proxy was never asked: the case did not break what it meant to"
    _assert_release_left_nothing(e2e, summary, case.error)
    assert serving_config(endpoint) is None
    assert scaling_of(endpoint) == {"targets": [], "policies": []}
    repositories = {r["repositoryName"] for r in boto3.client("ecr").describe_repositories()["repositories"]}
    assert SHARED_REPOSITORY in repositories  # existed before every case: never removed
    assert f"e2e-{e2e.token}/push-fails" not in repositories  # created by the push case: removed
    if case.release == "push":
        _remove_local_images(f"e2e-{e2e.token}/push-fails")


@pytest.fixture
def full_package_disk(tmp_path: Path) -> Iterator[Path]:
    """A state dir whose `packages` folder is a 1 MiB tmpfs: the worker's disk fills while packaging.

    The Hub cache is the usual one (a symlink), so the download succeeds and only the package step breaks.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill the packaging disk needs root")
    state = tmp_path / "state"
    packages = state / "packages"
    packages.mkdir(parents=True)
    (state / "hf-cache").symlink_to(state_subdir("hf-cache"), target_is_directory=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(packages)], check=True)
    patch = pytest.MonkeyPatch()
    patch.setenv(STATE_DIR_ENV, str(state))
    try:
        yield packages
    finally:
        patch.undo()
        subprocess.run(["umount", str(packages)], check=True)


def test_a_full_package_disk_fails_the_release_naming_it_and_leaves_nothing(
    e2e: E2E, full_package_disk: Path
) -> None:
    endpoint = e2e.endpoint("package")
    ok, summary = run_release(e2e.config(endpoint, release_id=f"e2e-{e2e.token}-package"))
    assert not ok
    _assert_release_left_nothing(e2e, summary, f"PackagingFailed: {full_package_disk}: no space left")
    assert "SAGEMAKER_RELEASE_STATE_DIR" in summary["error"]
    assert summary["uploaded_bytes"] in (None, 0) and summary["image_uri"] is None
    assert list(full_package_disk.iterdir()) == [], "no half-written archive may stay on the worker"
    assert serving_config(endpoint) is None


@pytest.mark.parametrize("case", LIVE_ENDPOINT_CASES, ids=lambda c: c.release)
def test_a_failed_update_puts_the_serving_endpoint_back(
    e2e: E2E, serving: dict[str, Any], case: Breakage
) -> None:
    endpoint = e2e.endpoint("serving")
    before = serving_config(endpoint), scaling_of(endpoint)
    assert before[0] == f"InService {serving['endpoint_config_name']}"
    config = e2e.config(endpoint, release_id=f"e2e-{e2e.token}-{case.release}", **_changes(case, e2e))
    ok, summary = run_release(config)
    assert not ok
    assert summary["previous_config"] == serving["endpoint_config_name"]
    _assert_release_left_nothing(e2e, summary, case.error)
    assert (serving_config(endpoint), scaling_of(endpoint)) == before
    assert len(embed(endpoint)) == 384


def _remove_local_images(repository: str) -> None:
    client = docker.from_env()
    tags = {
        tag for image in client.images.list() for tag in image.tags if tag.rsplit(":", 1)[0] == repository
    }
    for tag in sorted(tags):
        client.images.remove(tag)
