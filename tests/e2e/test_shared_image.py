"""Two endpoints built from one context share one image tag; a failed release never deletes it from
under the other.

Release A pushes the tag (and creates the repository), then is held at CreateModel by a fault proxy
while release B of another endpoint finds the tag in ECR, reuses it and goes live. Then A's CreateModel
is refused and A unwinds. The image stays in ECR and in the registry, the repository stays, and B
scales out to two instances (the new instance needs the image) and answers. A failed release whose
image nobody uses still removes it, from ECR and from the registry it pushed to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tasks.core import aws
from tasks.image.build import context_tag
from tests.e2e.faults import FaultProxy, Request, json_error
from tests.e2e.inspect_stack import ledger, unresolved_entries
from tests.e2e.release_support import E2E, REPO_ROOT, SHARED_REPOSITORY, run_release, wait_for
from tests.e2e.serving_checks import ecr_tags, registry_status, scale_out_and_answer

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

REFUSED = json_error("ValidationException", "CreateModel refused by the e2e fault proxy")


@pytest.fixture
def repository(e2e: E2E, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A repository of its own for the test, and the session image's tag, tagged for it in the engine
    (so releases push the image already built instead of building it again)."""
    name = f"e2e-{e2e.token}/{request.node.name.removeprefix('test_')[:40]}"
    tag = context_tag(e2e.context, e2e.env["SAGEMAKER_RELEASE_BASE_IMAGE"])
    client = docker.from_env()
    client.images.get(f"{SHARED_REPOSITORY}:{tag}").tag(name, tag)
    try:
        yield name, tag
    finally:
        client.images.remove(f"{name}:{tag}")


def _kinds(release_id: str, bucket: str) -> dict[str, str]:
    return {
        e["kind"]: e["status"] for e in ledger(bucket, release_id)["entries"] if e["kind"].startswith("ecr:")
    }


def _image_refs(release_id: str, bucket: str) -> list[str]:
    """`repository:tag` of each image reference in the release's ledger."""
    return [
        e["resource_id"].split("/image-refs/", 1)[1].rsplit("/", 1)[0]
        for e in ledger(bucket, release_id)["entries"]
        if "/image-refs/" in e["resource_id"]
    ]


def test_a_failed_pusher_leaves_the_image_another_endpoint_serves(
    e2e: E2E, repository: tuple[str, str], tmp_path: Path
) -> None:
    name, tag = repository
    image_uri = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:{tag}"
    pusher_id = f"e2e-{e2e.token}-pusher"
    reached, go = threading.Event(), threading.Event()

    def hold_then_refuse(request: Request) -> bool:
        if not request.target.endswith(".CreateModel"):
            return False
        reached.set()
        go.wait(timeout=900)  # A's CreateModel waits here until B serves
        return True

    pusher_file = tmp_path / "pusher.yaml"
    pusher_file.write_text(
        yaml.safe_dump(e2e.config_data(e2e.endpoint("pusher"), image={"repository": name}))
    )
    log_path = tmp_path / "pusher.log"
    held = FaultProxy(os.environ["AWS_ENDPOINT_URL_SAGEMAKER"], hold_then_refuse, REFUSED)
    with held.running() as proxy, log_path.open("w") as log:
        pusher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.release",
                "--config",
                str(pusher_file),
                "--release-id",
                pusher_id,
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "AWS_ENDPOINT_URL_SAGEMAKER": proxy.url()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                "release A pushing the image and reaching CreateModel",
                lambda: reached.is_set() or pusher.poll() is not None,
                timeout_s=900,
            )
            assert pusher.poll() is None, log_path.read_text()[-3000:]
            assert tag in ecr_tags(name), "release A reached CreateModel without the image in ECR"
            survivor = e2e.config(
                e2e.endpoint("survivor"),
                release_id=f"e2e-{e2e.token}-survivor",
                image={"repository": name},
            )
            ok, summary = run_release(survivor)
            assert ok, summary["error"]
            assert summary["image_uri"] == image_uri
            # B found the tag in ECR: it referenced the image and pushed nothing.
            assert _kinds(summary["release_id"], e2e.bucket) == {}
            assert _image_refs(summary["release_id"], e2e.bucket) == [f"{name}:{tag}"]
        finally:
            go.set()
            pusher.wait(timeout=900)
    output = log_path.read_text()
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    assert result["status"] == "failed" and "CreateModel refused by the e2e fault proxy" in result["error"], (
        output[-3000:]
    )
    assert ledger(e2e.bucket, pusher_id)["state"] == "unwound"
    assert unresolved_entries(e2e.bucket, pusher_id) == []
    assert _kinds(pusher_id, e2e.bucket) == {"ecr:repository": "kept", "ecr:image": "kept"}
    # What the survivor's next instance needs is still there: the tag in ECR, the image in the registry.
    assert tag in ecr_tags(name)
    assert registry_status(image_uri) == 200
    assert scale_out_and_answer(e2e.endpoint("survivor"), to=2) == 384


def test_a_failed_release_removes_the_image_it_pushed_when_nothing_uses_it(
    e2e: E2E, repository: tuple[str, str]
) -> None:
    name, tag = repository
    release_id = f"e2e-{e2e.token}-lonely"
    config = e2e.config(e2e.endpoint("lonely"), release_id=release_id, image={"repository": name})
    refuse = FaultProxy(
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER"], lambda r: r.target.endswith(".CreateModel"), REFUSED
    )
    patch = pytest.MonkeyPatch()
    with refuse.running() as proxy:
        patch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", proxy.url())
        aws.reset_clients()
        try:
            ok, summary = run_release(config)
        finally:
            patch.undo()
            aws.reset_clients()
    assert not ok and "CreateModel refused" in (summary["error"] or "")
    assert _kinds(release_id, e2e.bucket) == {"ecr:repository": "deleted", "ecr:image": "deleted"}
    assert ecr_tags(name) == []
    assert registry_status(f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:{tag}") == 404
