"""Serving image: the tag agrees with scripts/build-image.sh; ECR repository, skip and auth against moto."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import docker.errors
import pytest

from tasks.config import ImageConfig
from tasks.core.errors import ResourceFailed
from tasks.image import build, ecr, registry, release_image
from tasks.lifecycle.ledger import Ledger
from tests.unit.deploy_helpers import kinds, local_ledger

BASE = "sagemaker-release/base:bookworm"


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    (context / "serving" / "__pycache__").mkdir(parents=True)
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    (context / "serving" / "app.py").write_text("print('hi')\n")
    (context / "serving" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00")
    (context / "serving" / "stale.pyc").write_bytes(b"\x01")
    (context / "B-upper.txt").write_text("sorted by bytes\n")
    return context


def _script_tag(context: Path, base: str) -> str:
    # The digest line of scripts/build-image.sh, run as the script runs it.
    pipeline = (
        '(echo "$BASE"; cd "$CTX" && find . -type f ! -path "*/__pycache__/*" ! -name "*.pyc" -print0 '
        "| LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12"
    )
    done = subprocess.run(
        ["bash", "-c", pipeline],
        env={"BASE": base, "CTX": str(context), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_tag_is_the_same_digest_as_the_build_script(tmp_path: Path) -> None:
    context = _context(tmp_path)
    tag = build.context_tag(context, BASE)
    assert tag == _script_tag(context, BASE)
    (context / "serving" / "__pycache__" / "other.pyc").write_bytes(b"ignored")
    assert build.context_tag(context, BASE) == tag
    (context / "serving" / "app.py").write_text("print('changed')\n")
    assert build.context_tag(context, BASE) != tag
    assert build.context_tag(context, "python:3.11-slim") != build.context_tag(context, BASE)
    assert build.context_tag(context, BASE, build_args={"X": "1"}) != build.context_tag(context, BASE)


def test_new_repository_is_immutable_scanned_and_recorded(mocked_aws: None, tmp_path: Path) -> None:
    ledger = local_ledger(tmp_path)
    repository = ecr.ensure_repository("team/serving", [{"Key": "release-id", "Value": "r1"}], ledger)
    assert repository.created and repository.host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    (described,) = boto3.client("ecr").describe_repositories(repositoryNames=["team/serving"])["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE"
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}
    assert kinds(ledger) == [("ecr:repository", "team/serving")]


def test_a_repository_that_existed_is_not_recorded(mocked_aws: None, tmp_path: Path) -> None:
    boto3.client("ecr").create_repository(repositoryName="shared")
    ledger = local_ledger(tmp_path)
    assert not ecr.ensure_repository("shared", [], ledger).created
    assert kinds(ledger) == []


def test_a_tag_already_in_ecr_skips_build_and_push(mocked_aws: None, tmp_path: Path) -> None:
    context = _context(tmp_path)
    tag = build.context_tag(context, BASE)
    ecr_api = boto3.client("ecr")
    ecr_api.create_repository(repositoryName="serving")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": registry.MANIFEST_MEDIA_TYPES[0], "layers": []})
    ecr_api.put_image(repositoryName="serving", imageManifest=manifest, imageTag=tag)
    ledger = local_ledger(tmp_path)

    class NoDocker:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"docker was used ({name}) although the image is in ECR")

    served = release_image.build_and_push(
        context=context,
        base_image=BASE,
        repository_name="serving",
        tags=[],
        ledger=ledger,
        client=NoDocker(),
    )
    assert (served.built, served.pushed) == (False, False)
    assert served.uri == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:{tag}"
    assert served.digest == ecr.image_digest_in_ecr("serving", tag)
    assert kinds(ledger) == []


def test_registry_credentials_come_from_the_authorization_token(mocked_aws: None) -> None:
    auth = registry.registry_auth()
    assert auth.username == "AWS" and auth.password


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", False),
    ],
)
def test_loopback_registries_are_spoken_to_over_http(host: str, loopback: bool) -> None:
    assert registry._is_loopback(host) is loopback


def test_push_goes_to_the_override_registry_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    repository = ecr.Repository(
        "serving", "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving", "123456789012", False
    )
    monkeypatch.delenv(registry.REGISTRY_ENV, raising=False)
    assert registry.push_host(repository) == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    monkeypatch.setenv(registry.REGISTRY_ENV, "127.0.0.1:5000/")
    assert registry.push_host(repository) == "127.0.0.1:5000"


def test_prebuilt_and_huggingface_images_replace_build_and_push(mocked_aws: None, tmp_path: Path) -> None:
    ledger = local_ledger(tmp_path)
    prebuilt = ImageConfig(
        source="prebuilt", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1.0"
    )
    served = _served(prebuilt, "ml.m5.large", ledger)
    assert (served.uri, served.source, served.built) == (prebuilt.image_uri, "prebuilt", False)
    dlc = _served(ImageConfig(source="huggingface_dlc"), "ml.m5.large", ledger)
    assert dlc.uri == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.6.0-transformers4.49.0-cpu-py312-ubuntu22.04"
    )
    gpu = _served(ImageConfig(source="huggingface_dlc"), "ml.g5.xlarge", ledger)
    assert "-gpu-" in gpu.uri
    assert kinds(ledger) == []


def _served(image: ImageConfig, instance_type: str, ledger: Ledger) -> release_image.ServingImage:
    built = release_image.build_image.fn(image, instance_type=instance_type, tags=[], ledger=ledger)
    return release_image.push_image.fn(built, ledger=ledger)


class _Engine:
    """The docker SDK's surface the build and push steps use: the image is absent until built, the
    push reports `pushed`, the registry then serves `served`."""

    def __init__(self, pushed: str, served: str) -> None:
        self.pushed, self.served = pushed, served
        self.images, self.api = self, self
        self.calls: list[str] = []

    def get(self, ref: str) -> object:
        if "build" not in self.calls:
            raise docker.errors.ImageNotFound(ref)
        return object()

    def info(self) -> dict[str, Any]:  # an engine with the classic image store
        return {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}

    def build(self, **_: Any) -> Iterator[dict[str, Any]]:
        self.calls.append("build")
        yield {"stream": "Successfully built"}

    def tag(self, *args: Any) -> None:
        pass

    def remove_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def push(self, repo: str, **_: Any) -> Iterator[dict[str, Any]]:
        self.calls.append("push")
        yield {"aux": {"Digest": self.pushed}}

    def get_registry_data(self, ref: str, **_: Any) -> Any:
        return type("Data", (), {"id": self.served})()


def _build_config(context: Path) -> ImageConfig:
    return ImageConfig(source="build", context=str(context), base_image=BASE, repository="serving")


def test_build_image_builds_and_push_image_pushes_and_records_it(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "sha256:" + "a" * 64
    engine = _Engine(digest, digest)
    monkeypatch.setattr(build, "docker_client", lambda timeout_s=900: engine)
    in_ecr: list[str | None] = [None, digest]  # before the build, then after the push
    monkeypatch.setattr(ecr, "image_digest_in_ecr", lambda repository, tag: in_ecr.pop(0))
    ledger = local_ledger(tmp_path)
    config = _build_config(_context(tmp_path))

    built = release_image.build_image.fn(config, instance_type="ml.m5.large", tags=[], ledger=ledger)
    assert (built.built, built.needs_push, engine.calls) == (True, True, ["build"])
    assert [kind for kind, _ in kinds(ledger)] == ["ecr:repository"]  # nothing pushed, nothing recorded

    served = release_image.push_image.fn(built, ledger=ledger)
    assert (served.built, served.pushed, served.digest, served.uri) == (True, True, digest, built.uri)
    assert engine.calls == ["build", "push"]
    assert [kind for kind, _ in kinds(ledger)] == ["ecr:repository", "ecr:image"]


def test_push_image_refuses_a_registry_serving_another_digest_and_records_nothing(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _Engine("sha256:" + "a" * 64, "sha256:" + "b" * 64)
    monkeypatch.setattr(build, "docker_client", lambda timeout_s=900: engine)
    monkeypatch.setattr(ecr, "image_digest_in_ecr", lambda repository, tag: None)
    ledger = local_ledger(tmp_path)
    built = release_image.build_image.fn(
        _build_config(_context(tmp_path)), instance_type="ml.m5.large", tags=[], ledger=ledger
    )
    with pytest.raises(ResourceFailed, match="DigestMismatch") as caught:
        release_image.push_image.fn(built, ledger=ledger)
    assert "fix: push again" in str(caught.value)
    assert [kind for kind, _ in kinds(ledger)] == ["ecr:repository"]


def test_a_tag_already_in_ecr_leaves_both_tasks_nothing_to_do(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = _context(tmp_path)
    tag = build.context_tag(context, BASE)
    ecr_api = boto3.client("ecr")
    ecr_api.create_repository(repositoryName="serving")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": registry.MANIFEST_MEDIA_TYPES[0], "layers": []})
    ecr_api.put_image(repositoryName="serving", imageManifest=manifest, imageTag=tag)

    def no_docker(timeout_s: int = 900) -> Any:
        raise AssertionError("docker was used although the image is in ECR")

    monkeypatch.setattr(build, "docker_client", no_docker)
    ledger = local_ledger(tmp_path)
    served = _served(_build_config(context), "ml.m5.large", ledger)
    assert (served.built, served.pushed) == (False, False)
    assert served.digest == ecr.image_digest_in_ecr("serving", tag)
    assert kinds(ledger) == []


def test_a_push_logs_one_line_that_counts_its_layers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    events: list[dict[str, Any]] = [
        {"status": "The push refers to repository [127.0.0.1:5000/serving]"},
        {"status": "Preparing", "id": "a1"},
        {"status": "Pushing", "id": "a1", "progressDetail": {"current": 1, "total": 2}},
        {"status": "Pushed", "id": "a1"},
        {"status": "Pushed", "id": "b2"},
        {"status": "Layer already exists", "id": "c3"},
        {"status": "Mounted from other/base", "id": "d4"},
        {"status": "r1: digest: sha256:abc size: 1161", "id": "r1"},
        {"aux": {"Tag": "r1", "Digest": "sha256:abc"}},
    ]
    aux = build.follow_events(
        events, "image push serving:r1", "PushFailed", timeout_s=60, log_key="status", per_layer=True
    )
    assert aux == {"Tag": "r1", "Digest": "sha256:abc"}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("image push")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "image push serving:r1: 2 layers pushed, 1 layer already in the registry, 1 layer mounted in "
    )
    assert not any("Pushed" in r.getMessage() for r in caplog.records)
