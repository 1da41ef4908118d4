"""Serving image: the tag agrees with scripts/build-image.sh; ECR repository, skip and auth against moto."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import pytest

from tasks.config import ImageConfig
from tasks.image import build
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
    repository = build.ensure_repository("team/serving", [{"Key": "release-id", "Value": "r1"}], ledger)
    assert repository.created and repository.host == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    (described,) = boto3.client("ecr").describe_repositories(repositoryNames=["team/serving"])["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE"
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}
    assert kinds(ledger) == [("ecr:repository", "team/serving")]


def test_a_repository_that_existed_is_not_recorded(mocked_aws: None, tmp_path: Path) -> None:
    boto3.client("ecr").create_repository(repositoryName="shared")
    ledger = local_ledger(tmp_path)
    assert not build.ensure_repository("shared", [], ledger).created
    assert kinds(ledger) == []


def test_a_tag_already_in_ecr_skips_build_and_push(mocked_aws: None, tmp_path: Path) -> None:
    context = _context(tmp_path)
    tag = build.context_tag(context, BASE)
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="serving")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": build.MANIFEST_MEDIA_TYPES[0], "layers": []})
    ecr.put_image(repositoryName="serving", imageManifest=manifest, imageTag=tag)
    ledger = local_ledger(tmp_path)

    class NoDocker:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"docker was used ({name}) although the image is in ECR")

    served = build.build_and_push(
        context=context,
        base_image=BASE,
        repository_name="serving",
        tags=[],
        ledger=ledger,
        client=NoDocker(),
    )
    assert (served.built, served.pushed) == (False, False)
    assert served.uri == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:{tag}"
    assert served.digest == build.image_digest_in_ecr("serving", tag)
    assert kinds(ledger) == []


def test_registry_credentials_come_from_the_authorization_token(mocked_aws: None) -> None:
    auth = build.registry_auth()
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
    assert build._is_loopback(host) is loopback


def test_push_goes_to_the_override_registry_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    repository = build.Repository(
        "serving", "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving", "123456789012", False
    )
    monkeypatch.delenv(build.REGISTRY_ENV, raising=False)
    assert build.push_host(repository) == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    monkeypatch.setenv(build.REGISTRY_ENV, "127.0.0.1:5000/")
    assert build.push_host(repository) == "127.0.0.1:5000"


def test_prebuilt_and_huggingface_images_replace_build_and_push(mocked_aws: None, tmp_path: Path) -> None:
    ledger = local_ledger(tmp_path)
    prebuilt = ImageConfig(
        source="prebuilt", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1.0"
    )
    served = build.serving_image.fn(prebuilt, instance_type="ml.m5.large", tags=[], ledger=ledger)
    assert (served.uri, served.source, served.built) == (prebuilt.image_uri, "prebuilt", False)
    dlc = build.serving_image.fn(
        ImageConfig(source="huggingface_dlc"), instance_type="ml.m5.large", tags=[], ledger=ledger
    )
    assert dlc.uri == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.6.0-transformers4.49.0-cpu-py312-ubuntu22.04"
    )
    gpu = build.serving_image.fn(
        ImageConfig(source="huggingface_dlc"), instance_type="ml.g5.xlarge", tags=[], ledger=ledger
    )
    assert "-gpu-" in gpu.uri
    assert kinds(ledger) == []
