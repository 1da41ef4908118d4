"""Images SageMaker can pull: the release reads the manifest media type of the image a model is about to
name (ECR's API for an ECR image, the registry's HTTP API for any other) and refuses an OCI manifest or
index with the fix; the build makes Docker v2 images on every engine."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import logging
import pickle
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tasks.config import ImageConfig
from tasks.core.errors import ResourceFailed, UnsupportedImageManifest
from tasks.image import build, ecr, registry, release_image
from tests.unit.deploy_helpers import kinds, local_ledger

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BASE = "sagemaker-release/base:bookworm"


def _manifest(media_type: str) -> bytes:
    entries = "manifests" if media_type in (registry.OCI_INDEX,) else "layers"
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, entries: []}).encode()


def _put_in_ecr(repository: str, tag: str, media_type: str) -> str:
    ecr_api = boto3.client("ecr")
    with contextlib.suppress(ecr_api.exceptions.RepositoryAlreadyExistsException):
        ecr_api.create_repository(repositoryName=repository)
    ecr_api.put_image(
        repositoryName=repository,
        imageManifest=_manifest(media_type).decode(),
        imageManifestMediaType=media_type,
        imageTag=tag,
    )
    return f"{ECR_HOST}/{repository}:{tag}"


# --- ECR images: DescribeImages' imageManifestMediaType ----------------------------------------------


@pytest.mark.parametrize("media_type", [registry.OCI_INDEX, registry.OCI_MANIFEST])
def test_an_oci_image_in_ecr_is_refused_naming_the_image_the_type_and_the_fix(
    mocked_aws: None, media_type: str
) -> None:
    uri = _put_in_ecr("team/serving", "oci", media_type)
    with pytest.raises(UnsupportedImageManifest) as caught:
        registry.require_pullable(uri)
    error = caught.value
    assert (error.image, error.media_type) == (uri, media_type)
    message = str(error)
    assert f"image {uri} has manifest media type {media_type}" in message
    assert "Unsupported manifest media type" in message
    assert "fix: rebuild the image as Docker v2 without attestations" in message
    assert "docker buildx build --provenance=false --output type=docker" in message
    assert "containerd image store" in message


def test_a_docker_v2_image_in_ecr_passes(mocked_aws: None) -> None:
    uri = _put_in_ecr("team/serving", "v2", registry.DOCKER_MANIFEST)
    assert registry.require_pullable(uri) == registry.DOCKER_MANIFEST


def test_an_image_ecr_does_not_hold_is_left_to_create_model(
    mocked_aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    _put_in_ecr("team/serving", "v2", registry.DOCKER_MANIFEST)
    with caplog.at_level(logging.WARNING):
        assert registry.require_pullable(f"{ECR_HOST}/team/serving:absent") is None
        assert registry.require_pullable(f"{ECR_HOST}/no-such/repository:1") is None
    assert "ImageNotFoundException" in caplog.text and "RepositoryNotFoundException" in caplog.text


def test_an_image_named_by_digest_is_looked_up_by_digest(mocked_aws: None) -> None:
    _put_in_ecr("team/serving", "oci", registry.OCI_INDEX)
    digest = boto3.client("ecr").describe_images(repositoryName="team/serving")["imageDetails"][0][
        "imageDigest"
    ]
    with pytest.raises(UnsupportedImageManifest, match=re.escape(registry.OCI_INDEX)):
        registry.require_pullable(f"{ECR_HOST}/team/serving@{digest}")


def test_the_error_pickles_with_its_fields() -> None:
    error = UnsupportedImageManifest(image="r/i:1", media_type=registry.OCI_INDEX, fix="rebuild it")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UnsupportedImageManifest and str(copy) == str(error)
    assert (copy.image, copy.media_type, copy.fix) == ("r/i:1", registry.OCI_INDEX, "rebuild it")


# --- images of other registries: HEAD /v2/<repo>/manifests/<ref> ---------------------------------------


class _Registry(http.server.BaseHTTPRequestHandler):
    """A registry answering manifest requests from `manifests` (path -> media type, body)."""

    manifests: dict[str, tuple[str, bytes]] = {}
    accepts: list[str] = []

    def _answer(self, body: bool) -> None:
        self.accepts.append(self.headers.get("Accept", ""))
        found = self.manifests.get(self.path)
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        media_type, content = found
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(content).hexdigest())
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_registry() -> Iterator[str]:
    """host:port of a registry on loopback (spoken to over HTTP, as Docker does)."""
    _Registry.manifests, _Registry.accepts = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


def test_an_oci_index_in_another_registry_is_refused(fake_registry: str) -> None:
    _Registry.manifests["/v2/team/serving/manifests/oci"] = (
        registry.OCI_INDEX,
        _manifest(registry.OCI_INDEX),
    )
    uri = f"{fake_registry}/team/serving:oci"
    with pytest.raises(UnsupportedImageManifest) as caught:
        registry.require_pullable(uri)
    assert (caught.value.image, caught.value.media_type) == (uri, registry.OCI_INDEX)
    assert f"image {uri} has manifest media type {registry.OCI_INDEX}" in str(caught.value)
    # Asked for every manifest type: a registry asked for fewer may convert the manifest or answer 404.
    assert all(kind in _Registry.accepts[-1] for kind in registry.MANIFEST_MEDIA_TYPES)


def test_a_docker_v2_image_in_another_registry_passes_and_a_missing_one_is_left_to_create_model(
    fake_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    _Registry.manifests["/v2/team/serving/manifests/v2"] = (
        registry.DOCKER_MANIFEST,
        _manifest(registry.DOCKER_MANIFEST),
    )
    assert registry.require_pullable(f"{fake_registry}/team/serving:v2") == registry.DOCKER_MANIFEST
    with caplog.at_level(logging.WARNING):
        assert registry.require_pullable(f"{fake_registry}/team/serving:absent") is None
    assert "404" in caplog.text and "CreateModel checks the image itself" in caplog.text


# --- the push step checks every source before CreateModel ------------------------------------------------


def test_a_prebuilt_oci_image_stops_the_push_step(mocked_aws: None, tmp_path: Path) -> None:
    uri = _put_in_ecr("theirs/serving", "2.0", registry.OCI_MANIFEST)
    ledger = local_ledger(tmp_path)
    built = release_image.build_image.fn(
        ImageConfig(source="prebuilt", image_uri=uri), instance_type="ml.m5.large", tags=[], ledger=ledger
    )
    with pytest.raises(UnsupportedImageManifest) as caught:
        release_image.push_image.fn(built, ledger=ledger)
    assert caught.value.image == uri
    assert "name another image in image.image_uri" in caught.value.fix


def test_a_built_tag_ecr_holds_as_oci_is_refused_with_how_to_replace_it(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    tag = build.context_tag(context, BASE)
    _put_in_ecr("serving", tag, registry.OCI_INDEX)
    monkeypatch.setattr(build, "docker_client", lambda timeout_s=900: pytest.fail("nothing to build"))
    ledger = local_ledger(tmp_path)
    built = release_image.build_image.fn(
        ImageConfig(source="build", context=str(context), base_image=BASE, repository="serving"),
        instance_type="ml.m5.large",
        tags=[],
        ledger=ledger,
    )
    with pytest.raises(UnsupportedImageManifest) as caught:
        release_image.push_image.fn(built, ledger=ledger)
    assert f"aws ecr batch-delete-image --repository-name serving --image-ids imageTag={tag}" in (
        caught.value.fix
    )


class _Engine:
    """The docker SDK's surface of the push step; the push lands `manifest` in the fake registry."""

    def __init__(self, repository: str, manifest: bytes, media_type: str) -> None:
        self.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.images, self.api = self, self
        self.path = f"/v2/{repository}/manifests/"
        self.manifest, self.media_type = manifest, media_type

    def get(self, ref: str) -> object:  # built by an earlier run
        return object()

    def tag(self, *args: Any) -> None:
        pass

    def remove_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def push(self, repo: str, *, tag: str, **_: Any) -> Iterator[dict[str, Any]]:
        _Registry.manifests[self.path + tag] = (self.media_type, self.manifest)
        yield {"aux": {"Digest": self.digest}}

    def get_registry_data(self, ref: str, **_: Any) -> Any:
        return type("Data", (), {"id": self.digest})()


def test_an_engine_that_pushed_an_oci_image_is_refused_and_the_image_stays_the_releases_to_unwind(
    mocked_aws: None, fake_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.REGISTRY_ENV, fake_registry)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    engine = _Engine("serving", _manifest(registry.OCI_INDEX), registry.OCI_INDEX)
    ledger = local_ledger(tmp_path)
    with pytest.raises(UnsupportedImageManifest) as caught:
        release_image.build_and_push(
            context=context,
            base_image="b:1",
            repository_name="serving",
            tags=[],
            ledger=ledger,
            client=engine,
        )
    assert caught.value.media_type == registry.OCI_INDEX
    assert "containerd image store" in caught.value.fix and "docker image rm serving:" in caught.value.fix
    assert [kind for kind, _ in kinds(ledger)] == ["ecr:repository", "ecr:image"]


def test_an_engine_that_pushed_a_docker_v2_image_passes(
    mocked_aws: None, fake_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.REGISTRY_ENV, fake_registry)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    engine = _Engine("serving", _manifest(registry.DOCKER_MANIFEST), registry.DOCKER_MANIFEST)
    served = release_image.build_and_push(
        context=context,
        base_image="b:1",
        repository_name="serving",
        tags=[],
        ledger=local_ledger(tmp_path),
        client=engine,
    )
    assert served.pushed and served.digest == engine.digest
    assert ecr.image_digest_in_ecr("serving", served.uri.rsplit(":", 1)[1]) == engine.digest


# --- the build: Docker media types, no attestations -----------------------------------------------------


class _BuildEngine:
    def __init__(self, driver_status: list[list[str]]) -> None:
        self.api = self
        self.driver_status = driver_status
        self.sdk_builds: list[dict[str, Any]] = []

    def info(self) -> dict[str, Any]:
        return {"DriverStatus": self.driver_status}

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.sdk_builds.append(kwargs)
        yield {"stream": "Successfully built"}


CLASSIC_STORE = [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]
CONTAINERD_STORE = [["driver-type", "io.containerd.snapshotter.v1"]]


def _fake_cli(tmp_path: Path, *, buildx_version: str | None, cli_version: str = "28.2.2") -> Path:
    """A docker CLI stand-in recording its build arguments; `buildx_version` None: no buildx plugin."""
    script = tmp_path / "docker"
    buildx = (
        f'echo "github.com/docker/buildx {buildx_version} abc123"; exit 0'
        if buildx_version is not None
        else "exit 1"
    )
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "Docker version {cli_version}, build x"; exit 0; fi\n'
        f'if [ "$1 $2" = "buildx version" ]; then {buildx}; fi\n'
        f'printf "%s\\n" "$@" > "{tmp_path}/argv"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _docker_build(engine: _BuildEngine, tmp_path: Path) -> None:
    build.docker_build(engine, tmp_path, BASE, "serving:t", timeout_s=60)


def test_a_classic_store_engine_builds_with_the_sdk_which_never_asks_for_buildkit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(build.DOCKER_CLI_ENV, str(_fake_cli(tmp_path, buildx_version="v0.12.1")))
    engine = _BuildEngine(CLASSIC_STORE)
    _docker_build(engine, tmp_path)
    (given,) = engine.sdk_builds
    assert given["tag"] == "serving:t" and "version" not in given  # the classic builder: no attestations
    assert not (tmp_path / "argv").exists()


@pytest.mark.parametrize(("buildx_version", "provenance"), [("v0.12.1", True), ("0.9.1+ds1", False)])
def test_a_containerd_store_engine_builds_with_buildx_loaded_as_docker_without_provenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buildx_version: str, provenance: bool
) -> None:
    monkeypatch.setenv(build.DOCKER_CLI_ENV, str(_fake_cli(tmp_path, buildx_version=buildx_version)))
    engine = _BuildEngine(CONTAINERD_STORE)
    _docker_build(engine, tmp_path)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert engine.sdk_builds == []
    assert argv[:3] == ["buildx", "build", "--load"]  # --load: the docker exporter, Docker media types
    # buildx before 0.10 makes no attestations and knows no --provenance flag.
    assert ("--provenance=false" in argv) is provenance
    assert "--secret" not in argv


def test_a_containerd_store_engine_without_buildx_is_refused_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        build.DOCKER_CLI_ENV, str(_fake_cli(tmp_path, buildx_version=None, cli_version="20.10.24"))
    )
    engine = _BuildEngine(CONTAINERD_STORE)
    with pytest.raises(ResourceFailed) as caught:
        _docker_build(engine, tmp_path)
    assert "containerd image store" in caught.value.reason and "docker-buildx" in caught.value.reason
    assert engine.sdk_builds == [] and not (tmp_path / "argv").exists()


def test_secrets_on_a_containerd_store_engine_build_with_buildx_for_docker_media_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(build.DOCKER_CLI_ENV, str(_fake_cli(tmp_path, buildx_version="v0.12.1")))
    engine = _BuildEngine(CONTAINERD_STORE)
    build.docker_build(engine, tmp_path, BASE, "serving:t", timeout_s=60, secrets={"token": "s3cret"})
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:3] == ["buildx", "build", "--load"] and "--provenance=false" in argv
    assert "--secret" in argv and "s3cret" not in argv


def test_secrets_on_a_containerd_store_engine_without_buildx_are_refused_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pre-23 CLI builds secrets with BuildKit, but on this engine the result is an OCI image.
    monkeypatch.setenv(
        build.DOCKER_CLI_ENV, str(_fake_cli(tmp_path, buildx_version=None, cli_version="20.10.24"))
    )
    engine = _BuildEngine(CONTAINERD_STORE)
    with pytest.raises(ResourceFailed) as caught:
        build.docker_build(engine, tmp_path, BASE, "serving:t", timeout_s=60, secrets={"token": "s3cret"})
    assert "containerd image store" in caught.value.reason and "docker-buildx" in caught.value.reason
    assert engine.sdk_builds == [] and not (tmp_path / "argv").exists()


def test_an_engine_without_driver_status_is_a_classic_store() -> None:
    assert not build.uses_containerd_store(_BuildEngine([]))
    assert build.uses_containerd_store(_BuildEngine(CONTAINERD_STORE))


def test_an_image_without_a_registry_host_is_left_to_create_model(caplog: pytest.LogCaptureFixture) -> None:
    # Docker's rule reads `team/serving` as Docker Hub's; no registry is asked (`team` is no host).
    with caplog.at_level(logging.WARNING):
        assert registry.require_pullable("team/serving:1") is None
    assert "team/serving:1 (it names no registry host)" in caplog.text
