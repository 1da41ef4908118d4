"""Container images: ECR URIs resolve to the local registry, everything else is pulled as given.

CreateModel always names the ECR `repositoryUri:tag`; the release pushed the same repository and tag
to $SAGEMAKER_RELEASE_REGISTRY, which stands in for ECR here. DeployedImages reports the digest the
pull resolved to, in the ECR spelling, as SageMaker does.

SageMaker pulls Docker image manifests only. An OCI manifest or index (what buildx's attestations and
the containerd image store make) is refused as AWS refuses it, "Unsupported manifest media type … for
image …": by CreateModel for an ECR image (`check_in_registry`), and when an endpoint starts (`pull`:
an ECR tag pushed again since CreateModel, or an image of another registry). Docker itself would run
either, so the check reads the manifest's type before pulling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import docker
import docker.errors
import httpx

from emulator import settings
from emulator.sagemaker.exceptions import ServiceUnavailable, ValidationException

_ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# Every type is accepted from the registry, so an OCI image is seen as what it is and refused.
_MANIFEST_TYPES = ", ".join([DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])
UNSUPPORTED_MEDIA_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX})


def unsupported_manifest_message(uri: str, media_type: str) -> str:
    """SageMaker's words for an image whose manifest it does not pull."""
    return (
        f"Unsupported manifest media type {media_type} for image {uri}. "
        "Ensure that valid manifest media type is used for specified image."
    )


class ImagePullError(Exception):
    """The image cannot be pulled; the message says from where and why."""


class UnsupportedManifest(ImagePullError):
    """The image's manifest is of a media type SageMaker does not pull; the message is SageMaker's."""

    def __init__(self, uri: str, media_type: str) -> None:
        super().__init__(unsupported_manifest_message(uri, media_type))
        self.uri = uri
        self.media_type = media_type


@dataclass(frozen=True)
class ImageRef:
    host: str | None
    repository: str  # path without host
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, uri: str) -> ImageRef:
        rest, _, digest = uri.partition("@")
        host: str | None = None
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            host, rest = first, remainder
        tag: str | None = None
        if ":" in rest.rsplit("/", 1)[-1]:
            rest, tag = rest.rsplit(":", 1)
        return cls(host, rest, tag, digest or None)

    @property
    def is_ecr(self) -> bool:
        return self.host is not None and _ECR_HOST.match(self.host) is not None

    def name(self, host: str | None = None) -> str:
        """Repository with its host; `host` replaces the original one."""
        use = host if host is not None else self.host
        return f"{use}/{self.repository}" if use else self.repository

    def reference(self, host: str | None = None) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return self.name(host) + suffix


@dataclass(frozen=True)
class PulledImage:
    specified: str  # as given in CreateModel
    resolved: str  # repository@sha256:… in the spelling of `specified`
    local_id: str  # docker image id to run


def pull_reference(uri: str) -> str:
    """What the engine pulls for `uri`: ECR hosts map to the local registry."""
    ref = ImageRef.parse(uri)
    return ref.reference(settings.registry_host()) if ref.is_ecr else ref.reference()


def pull(client: docker.DockerClient, uri: str) -> PulledImage:
    ref = ImageRef.parse(uri)
    local = pull_reference(uri)
    if not ref.is_ecr:
        try:
            image = client.images.get(local)
            return PulledImage(uri, _resolved(ref, image.attrs.get("RepoDigests", []), image.id), image.id)
        except docker.errors.ImageNotFound:
            pass
    _refuse_unsupported(client, uri, local)
    try:
        image = client.images.pull(local)
    except docker.errors.APIError as error:
        explanation = getattr(error, "explanation", None) or str(error)
        raise ImagePullError(f"pulling {local} failed: {explanation}") from error
    return PulledImage(uri, _resolved(ref, image.attrs.get("RepoDigests", []), image.id), image.id)


def _refuse_unsupported(client: docker.DockerClient, uri: str, local: str) -> None:
    """Raise UnsupportedManifest when the registry holds `local` as an OCI manifest or index.

    The engine's distribution inspect reads the top-level manifest's type with the engine's own
    registry access; one that fails leaves the verdict to the pull, which says why."""
    try:
        descriptor = client.api.inspect_distribution(local).get("Descriptor") or {}
    except docker.errors.APIError:
        return
    media_type = str(descriptor.get("mediaType") or "")
    if media_type in UNSUPPORTED_MEDIA_TYPES:
        raise UnsupportedManifest(uri, media_type)


def _resolved(ref: ImageRef, repo_digests: list[str], image_id: str) -> str:
    if ref.digest:
        return ref.name() + "@" + ref.digest
    for entry in repo_digests:
        name, _, digest = entry.partition("@")
        if name.endswith("/" + ref.repository) or name == ref.repository:
            return ref.name() + "@" + digest
    # A local-only image has no registry digest; its content id is the closest stable identity.
    return ref.name() + "@" + image_id


async def check_in_registry(http: httpx.AsyncClient, uri: str) -> bool | None:
    """CreateModel's check of an ECR image: whether it exists in the local registry (None when `uri` is
    not an ECR image), and ValidationException when it exists as an OCI manifest or index, as
    CreateModel refuses it on SageMaker."""
    ref = ImageRef.parse(uri)
    if not ref.is_ecr:
        return None
    version = ref.digest or ref.tag or "latest"
    url = f"http://{settings.registry_host()}/v2/{ref.repository}/manifests/{version}"
    try:
        response = await http.head(url, headers={"Accept": _MANIFEST_TYPES}, timeout=10)
    except httpx.HTTPError as error:
        raise ServiceUnavailable(
            f"The registry standing in for ECR at {settings.registry_host()} does not answer "
            f"({type(error).__name__}); start it with `python -m emulator up`."
        ) from error
    if response.status_code != 200:
        return False
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if media_type in UNSUPPORTED_MEDIA_TYPES:
        raise ValidationException(unsupported_manifest_message(uri, media_type))
    return True
