"""Images SageMaker can pull: an OCI manifest or index is refused as SageMaker refuses it ("Unsupported
manifest media type … for image …"), by CreateModel for an ECR image and when an endpoint starts
(an image of another registry, an ECR tag pushed again since CreateModel, an update); and the release's
own build pushes a Docker v2 manifest.

The OCI images are the test double's own config and layers under OCI manifests, PUT to the local
registry with its HTTP API: Docker would run them, so only the media type can fail them. Each test
runs on a private emulator (the stack's moto and registry): it runs the emulator code of this checkout.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator import settings
from emulator.fleet.images import unsupported_manifest_message
from tasks.core import aws
from tasks.image import registry, release_image
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore
from tests.emulator.emulator_support import ECR_HOST, PrivateEmulator, Resources, make_clients

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REPOSITORY = "emulator-tests/double"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _registry(path: str, *, method: str = "GET", body: bytes | None = None, **headers: str) -> Any:
    request = urllib.request.Request(
        f"http://{settings.registry_host()}/v2/{path}", data=body, headers=headers, method=method
    )
    return urllib.request.urlopen(request, timeout=30)


def _put_manifest(tag: str, manifest: dict[str, Any]) -> tuple[str, int]:
    """PUT `manifest` as REPOSITORY:tag; its digest and size."""
    body = json.dumps(manifest).encode()
    with _registry(
        f"{REPOSITORY}/manifests/{tag}", method="PUT", body=body, **{"Content-Type": manifest["mediaType"]}
    ) as answer:
        assert answer.status == 201
    return "sha256:" + hashlib.sha256(body).hexdigest(), len(body)


def _media_type(tag: str) -> str:
    accept = ", ".join([DOCKER_V2, OCI_MANIFEST, OCI_INDEX])
    with _registry(f"{REPOSITORY}/manifests/{tag}", method="HEAD", Accept=accept) as answer:
        return str(answer.headers["Content-Type"])


@dataclass
class OciVariants:
    """Tags of the double's image in REPOSITORY: as Docker v2 (the double's own manifest), and as an
    OCI manifest and an OCI index over the same config and layers."""

    docker_v2: str
    docker_v2_manifest: dict[str, Any]
    oci_manifest: str
    oci_index: str
    oci_digests: list[str]

    def repoint(self, tag: str, manifest: dict[str, Any]) -> None:
        """Push `manifest` under `tag`, as `docker push` of another build would (ECR tags may move)."""
        digest, _ = _put_manifest(tag, manifest)
        if manifest["mediaType"] != DOCKER_V2:
            self.oci_digests.append(digest)

    def as_oci_index(self) -> dict[str, Any]:
        with _registry(f"{REPOSITORY}/manifests/{self.oci_index}", Accept=OCI_INDEX) as answer:
            return dict(json.loads(answer.read()))


@pytest.fixture(scope="module")
def variants(double_image: str) -> Iterator[OciVariants]:
    tag = double_image.rsplit(":", 1)[1]
    with _registry(f"{REPOSITORY}/manifests/{tag}", Accept=DOCKER_V2) as answer:
        assert answer.headers["Content-Type"] == DOCKER_V2
        docker_manifest = json.loads(answer.read())
    token = uuid.uuid4().hex[:8]
    oci = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**docker_manifest["config"], "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [
            {**layer, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
            for layer in docker_manifest["layers"]
        ],
    }
    oci_digest, oci_size = _put_manifest(f"oci-manifest-{token}", oci)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": oci_digest,
                "size": oci_size,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    index_digest, _ = _put_manifest(f"oci-index-{token}", index)
    found = OciVariants(tag, docker_manifest, f"oci-manifest-{token}", f"oci-index-{token}", [])
    found.oci_digests += [index_digest, oci_digest]
    assert (_media_type(found.oci_manifest), _media_type(found.oci_index)) == (OCI_MANIFEST, OCI_INDEX)
    yield found
    # Indexes first: a manifest an index refers to is still in use. The Docker v2 manifest is the
    # double's own, which other tests pull: it stays.
    for digest in found.oci_digests:
        try:
            _registry(f"{REPOSITORY}/manifests/{digest}", method="DELETE").close()
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise


@pytest.fixture
def made(private_emulator: Callable[..., PrivateEmulator], bucket: str) -> Iterator[Resources]:
    """Resources on a private emulator, deleted after the test."""
    emulator = private_emulator()
    created = Resources(make_clients(emulator.client_env), bucket)
    yield created
    created.cleanup()


def _local_uri(tag: str) -> str:
    """The image in the local registry by its own host: not an ECR URI, so CreateModel cannot check it
    and the endpoint's pull is the first to see it."""
    return f"{settings.registry_host()}/{REPOSITORY}:{tag}"


def test_an_oci_index_of_another_registry_fails_the_endpoint_with_sagemakers_reason(
    made: Resources, variants: OciVariants
) -> None:
    uri = _local_uri(variants.oci_index)
    endpoint = made.endpoint(made.single(made.model(uri)))
    described = made.wait_status(endpoint, "Failed", timeout=120)
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"] == unsupported_manifest_message(uri, OCI_INDEX)
    assert described["FailureReason"] == (
        f"Unsupported manifest media type {OCI_INDEX} for image {uri}. "
        "Ensure that valid manifest media type is used for specified image."
    )


def test_the_same_layers_under_a_docker_v2_manifest_serve(made: Resources, variants: OciVariants) -> None:
    endpoint = made.endpoint(made.single(made.model(_local_uri(variants.docker_v2))))
    described = made.wait_status(endpoint, "InService", timeout=120)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")


def test_create_model_refuses_an_ecr_image_with_an_oci_manifest(
    made: Resources, variants: OciVariants
) -> None:
    uri = f"{ECR_HOST}/{REPOSITORY}:{variants.oci_manifest}"
    with pytest.raises(ClientError) as caught:
        made.aws.sagemaker.create_model(
            ModelName=f"oci-{uuid.uuid4().hex[:8]}",
            ExecutionRoleArn=f"arn:aws:iam::{settings.ACCOUNT_ID}:role/emulator-tests",
            PrimaryContainer={"Image": uri},
        )
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert error["Message"] == unsupported_manifest_message(uri, OCI_MANIFEST)


def test_an_ecr_tag_pushed_again_as_oci_after_create_model_fails_the_endpoint(
    made: Resources, variants: OciVariants
) -> None:
    tag = f"moved-{uuid.uuid4().hex[:8]}"
    variants.repoint(tag, variants.docker_v2_manifest)
    uri = f"{ECR_HOST}/{REPOSITORY}:{tag}"
    model = made.model(uri)  # accepted: the tag is Docker v2 now
    variants.repoint(tag, variants.as_oci_index())
    endpoint = made.endpoint(made.single(model))
    described = made.wait_status(endpoint, "Failed", timeout=120)
    assert described["FailureReason"] == unsupported_manifest_message(uri, OCI_INDEX)


def test_an_update_to_an_oci_image_rolls_back_with_the_reason(
    made: Resources, variants: OciVariants, double_image: str
) -> None:
    endpoint = made.endpoint(made.single(made.model(double_image)))
    first = made.wait_status(endpoint, "InService", timeout=120)
    assert first["EndpointStatus"] == "InService", first.get("FailureReason")
    uri = _local_uri(variants.oci_manifest)
    new_config = made.single(made.model(uri))
    made.aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
    made.wait_status(endpoint, "Updating", timeout=30)
    after = made.wait_status(endpoint, "InService", timeout=120)
    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == first["EndpointConfigName"]
    assert unsupported_manifest_message(uri, OCI_MANIFEST) in after["FailureReason"]


# --- the release's build pushes Docker v2 -------------------------------------------------------------


def test_the_release_build_pushes_a_docker_v2_manifest(
    stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = subprocess.run(
        [str(REPO_ROOT / "scripts" / "ensure-base-image.sh"), "--present"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[-1]
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY marker.txt /marker.txt\n")
    (context / "marker.txt").write_text(uuid.uuid4().hex)  # a tag of its own
    host = settings.registry_host()
    monkeypatch.setenv(registry.REGISTRY_ENV, host)
    aws.reset_clients()
    repository = f"emulator-tests/built-{uuid.uuid4().hex[:8]}"
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), "manifest-test")
    try:
        served = release_image.build_and_push(
            context=context, base_image=base, repository_name=repository, tags=[], ledger=ledger
        )
        assert served.built and served.pushed and served.digest
        tag = served.uri.rsplit(":", 1)[1]
        body, media_type = registry.fetch_manifest(host, repository, tag, None)
        assert media_type == DOCKER_V2
        manifest = json.loads(body)
        assert manifest["mediaType"] == DOCKER_V2
        assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        (detail,) = boto3.client("ecr").describe_images(repositoryName=repository)["imageDetails"]
        assert detail["imageManifestMediaType"] == DOCKER_V2
    finally:
        for entry in ledger.entries:
            if entry.kind == "ecr:image":
                registry.delete_from_registry(host, repository, entry.attrs["tag"], entry.attrs["digest"])
        subprocess.run(["docker", "image", "rm", "-f", *_local_refs(repository)], capture_output=True)
        try:
            boto3.client("ecr").delete_repository(repositoryName=repository, force=True)
        except ClientError as error:
            if error.response["Error"]["Code"] != "RepositoryNotFoundException":
                raise
        aws.reset_clients()


def _local_refs(repository: str) -> list[str]:
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository],
        capture_output=True,
        text=True,
        check=False,
    )
    return listed.stdout.split()
