"""The registry side of the serving image: credentials per host, the push, manifests, and deleting an image
pushed to a separate registry.

Pushes go to `$SAGEMAKER_RELEASE_REGISTRY/<repo>:<tag>` when that variable is set, else to the ECR host.
Registry credentials go only to the registry they belong to: ECR's token to the ECR host, and a separate
registry gets the engine's own credentials for that host (docker login), or none.

SageMaker pulls Docker v2 schema 2 images only: CreateModel refuses an OCI manifest or index ("Unsupported
manifest media type"), which engines with the containerd image store and buildx's attestations produce.
`require_pullable` reads the media type of the image a model is about to name (ECR's DescribeImages for
an ECR image, the registry's own API for any other) and refuses those with the fix.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

import docker
import docker.auth

from tasks.core import aws
from tasks.core.errors import ResourceFailed, UnsupportedImageManifest
from tasks.core.logs import run_logger
from tasks.image.build import follow_events
from tasks.image.ecr import Repository, image_manifest_media_type
from tasks.image.image_name import ImageName

REGISTRY_ENV = "SAGEMAKER_RELEASE_REGISTRY"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# Every manifest an image may have, asked for together: a registry then answers with the manifest as
# stored, where one asked for fewer converts it, or answers 404 for an OCI index, hiding what SageMaker
# will find.
MANIFEST_MEDIA_TYPES = (
    DOCKER_MANIFEST,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    OCI_MANIFEST,
    OCI_INDEX,
)
REFUSED_BY_SAGEMAKER = frozenset({OCI_MANIFEST, OCI_INDEX})
REBUILD_FIX = (
    "rebuild the image as Docker v2 without attestations (`docker buildx build --provenance=false "
    "--output type=docker`, or a docker engine without the containerd image store) and push it again"
)
# Docker's own rule: registries on loopback addresses are reached over plain HTTP.
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class RegistryAuth:
    username: str
    password: str

    def as_docker_auth(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


# --- credentials, one registry at a time -----------------------------------------------------------------


def registry_auth() -> RegistryAuth:
    """Docker credentials from ECR's GetAuthorizationToken (base64 "AWS:<password>")."""
    data = aws.client("ecr").get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return RegistryAuth(username, password)


def push_host(repository: Repository) -> str:
    """Where `docker push` sends the image: the override registry when set, else the ECR host."""
    return os.environ.get(REGISTRY_ENV, "").strip().rstrip("/") or repository.host


def engine_auth(host: str) -> RegistryAuth | None:
    """The engine's own credentials for `host` (docker login, credential helpers), or None."""
    found = docker.auth.resolve_authconfig(docker.auth.load_config(), host)
    if not found or not found.get("username") or not found.get("password"):
        return None
    return RegistryAuth(str(found["username"]), str(found["password"]))


def auth_for(host: str, repository: Repository) -> RegistryAuth | None:
    """Credentials for `host` only: ECR's token for the repository's ECR host, and for a separate
    registry the engine's own credentials for it (never ECR's token, which is not that registry's)."""
    if host == repository.host:
        return registry_auth()
    return engine_auth(host)


def _basic(auth: RegistryAuth | None) -> dict[str, str]:
    if auth is None:
        return {}
    token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
    return {"Authorization": "Basic " + token}


# --- push and manifests ----------------------------------------------------------------------------------


def docker_push(
    client: docker.DockerClient,
    local_ref: str,
    target_repo: str,
    tag: str,
    auth: RegistryAuth | None,
    *,
    timeout_s: float,
) -> str:
    """Tag `local_ref` as `target_repo:tag`, push it, and return the digest the push reported.

    The registry tag is only a handle for the push: it is removed afterwards, so the engine keeps the
    image under its local name alone."""
    client.api.tag(local_ref, target_repo, tag)
    run_logger().info("pushing %s:%s", target_repo, tag)
    try:
        events = client.api.push(
            target_repo,
            tag=tag,
            stream=True,
            decode=True,
            auth_config=auth.as_docker_auth() if auth is not None else None,
        )
        aux = follow_events(
            events,
            f"image push {target_repo}:{tag}",
            "PushFailed",
            timeout_s=timeout_s,
            log_key="status",
            per_layer=True,
        )
    finally:
        client.api.remove_image(f"{target_repo}:{tag}", noprune=True)
    digest = aux.get("Digest")
    if not digest:
        raise ResourceFailed(
            f"image push {target_repo}:{tag}",
            "PushFailed",
            "the engine reported no digest for the pushed image",
        )
    return str(digest)


def registry_digest(client: docker.DockerClient, ref: str, auth: RegistryAuth | None) -> str:
    """The manifest digest the registry serves for `ref` (the engine's distribution inspect)."""
    data = client.images.get_registry_data(
        ref, auth_config=auth.as_docker_auth() if auth is not None else None
    )
    return str(data.id)


def fetch_manifest(host: str, repository: str, tag: str, auth: RegistryAuth | None) -> tuple[bytes, str]:
    """The raw manifest and its media type from the registry at `host` (OCI distribution API), with
    `auth` (which must be `host`'s own credentials) when given."""
    with urllib.request.urlopen(_manifest_request(host, repository, tag, auth), timeout=30) as response:
        body: bytes = response.read()
        media_type = response.headers.get("Content-Type", MANIFEST_MEDIA_TYPES[0]).split(";")[0]
    return body, media_type


def _manifest_request(
    host: str, repository: str, reference: str, auth: RegistryAuth | None, *, method: str = "GET"
) -> urllib.request.Request:
    """A request for the manifest `reference` (a tag or a digest) of `repository` at `host`, accepting
    every manifest type, with `auth` (which must be `host`'s own credentials) when given."""
    scheme = "http" if _is_loopback(host) else "https"
    return urllib.request.Request(
        f"{scheme}://{host}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES), **_basic(auth)},
        method=method,
    )


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def delete_from_registry(host: str, repository: str, tag: str, digest: str) -> None:
    """Delete the manifest `digest`, pushed as `repository:tag`, from the separate registry at `host`.

    Only while the tag still names that digest there: that registry's tags are mutable, and a tag
    pushed again since is not the release's to delete. A missing tag or manifest is fine.
    """
    # This registry's own credentials: ECR's token is not for it.
    auth = engine_auth(host)
    try:
        with urllib.request.urlopen(
            _manifest_request(host, repository, tag, auth, method="HEAD"), timeout=30
        ) as response:
            current = response.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return
        raise
    if current != digest:
        return
    try:
        with urllib.request.urlopen(
            _manifest_request(host, repository, digest, auth, method="DELETE"), timeout=30
        ):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return
        raise ResourceFailed(
            f"image {host}/{repository}@{digest}",
            "DeleteFailed",
            f"the registry answered {exc.code} {exc.reason} to deleting the manifest; fix: enable deletes "
            "in the registry (storage: delete: enabled: true) or delete the image there by hand",
        ) from exc


# --- the media type SageMaker will find --------------------------------------------------------------


def manifest_media_type(uri: str) -> str | None:
    """The media type of the manifest `uri` names, where SageMaker pulls it from, or None when it cannot
    be read from here (no such image, or no access: CreateModel then says what is wrong).

    ECR's own API for an ECR image (DescribeImages' imageManifestMediaType, the type as pushed: a
    registry's GET may convert it); the registry's HTTP API for any other host."""
    name = ImageName.parse(uri)
    if name.is_ecr:
        return image_manifest_media_type(name)
    if name.host is None:
        # Docker Hub, by Docker's rule; SageMaker pulls from ECR or a private registry only.
        _unreadable(uri, "it names no registry host")
        return None
    return _registry_media_type(name, name.host)


def require_pullable(uri: str, *, fix: str = REBUILD_FIX) -> str | None:
    """Refuse an image SageMaker cannot pull (an OCI manifest or index) with UnsupportedImageManifest
    naming `fix`; return the media type found (None when it could not be read)."""
    media_type = manifest_media_type(uri)
    if media_type in REFUSED_BY_SAGEMAKER:
        raise UnsupportedImageManifest(image=uri, media_type=str(media_type), fix=fix)
    return media_type


def _unreadable(uri: str, why: str) -> None:
    run_logger().warning(
        "could not read the manifest media type of %s (%s); CreateModel checks the image itself", uri, why
    )


def _registry_media_type(name: ImageName, host: str) -> str | None:
    request = _manifest_request(host, name.repository, name.reference, engine_auth(host), method="HEAD")
    uri = f"{host}/{name.repository}:{name.reference}"
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            content_type = response.headers.get("Content-Type")
    except urllib.error.HTTPError as exc:
        # No such image, no access from this worker, or the registry failing: CreateModel, which
        # pulls with the model's own access, has the last word.
        _unreadable(uri, f"the registry answered {exc.code} {exc.reason}")
        return None
    except (urllib.error.URLError, OSError) as exc:
        # A registry SageMaker reaches through the model's VPC may be out of the worker's reach.
        _unreadable(uri, f"the registry is not reachable: {exc}")
        return None
    return content_type.split(";")[0].strip() if content_type else None
