"""The serving image: build it from `container/`, push it to ECR, and hand SageMaker its URI.

The tag is the hash of the build context (and the base image name), computed exactly as
`scripts/build-image.sh` does, so an unchanged container is never rebuilt: when the tag is already in
ECR the whole step is a DescribeImages call. A prebuilt image (the user's URI, or a Hugging Face deep
learning container looked up with the SageMaker SDK) replaces build and push.

Pushes go to `$SAGEMAKER_RELEASE_REGISTRY/<repo>:<tag>` when that variable is set, else to the ECR host.
SageMaker always gets the ECR `repositoryUri:tag`. When the data plane is such a separate registry, the
pushed manifest is also put into the ECR API (PutImage) so DescribeImages, the skip check and cleanup
see the image there as they would after a push to ECR itself, and an unwind deletes it from both.

Build arguments given as secret references are BuildKit secrets (`RUN --mount=type=secret,id=<name>`),
never `--build-arg`s, which stay in the image's history. The docker SDK's build API has no BuildKit
session to carry them, so a build with secrets runs the docker CLI (`docker buildx build`, or a pre-23
`docker build` with DOCKER_BUILDKIT=1), handing each value over in the CLI's environment only. Registry
credentials go only to the registry they belong to: ECR's token to the ECR host, and a separate registry
($SAGEMAKER_RELEASE_REGISTRY) gets the engine's own credentials for that host (docker login), or none.

Every endpoint built from the same context shares the tag, and a repository holds the images of many
releases; only the release that pushed a tag (or created the repository) records it. Given the
release's storage, the release first writes a reference to the tag (tasks/image/image_refs.py), so an unwind
keeps what other releases use.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import docker
import docker.auth
import docker.errors
from prefect import task

from tasks.config import ImageConfig, SecretReference, StorageConfig, secret_values
from tasks.core import aws
from tasks.core.errors import ResourceFailed, WaitTimeout
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.image import image_refs
from tasks.image.image_refs import HeldImage
from tasks.lifecycle import ownership
from tasks.lifecycle.kinds import ECR_IMAGE, ECR_REPOSITORY
from tasks.lifecycle.ledger import Ledger

REGISTRY_ENV = "SAGEMAKER_RELEASE_REGISTRY"
DOCKER_CLI_ENV = "SAGEMAKER_RELEASE_DOCKER_CLI"
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
# Docker's own rule: registries on loopback addresses are reached over plain HTTP.
_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class ServingImage:
    """The image a release serves: `uri` goes to CreateModel; `built`/`pushed` say what this run did."""

    uri: str
    digest: str | None
    built: bool
    pushed: bool
    source: Literal["build", "prebuilt", "huggingface"]


@dataclass(frozen=True)
class Repository:
    name: str
    uri: str
    registry_id: str
    created: bool

    @property
    def host(self) -> str:
        return self.uri.split("/", 1)[0]


@dataclass(frozen=True)
class RegistryAuth:
    username: str
    password: str

    def as_docker_auth(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


# --- the build context ------------------------------------------------------------------------------


def context_tag(
    context: Path,
    base_image: str,
    *,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str | SecretReference] | None = None,
) -> str:
    """12 hex characters identifying the build: the base image name plus every file of the context.

    Byte-for-byte the digest `scripts/build-image.sh` computes (`sha256sum` lines of the sorted files,
    `__pycache__` and `*.pyc` left out), so `make image` and a release agree on the tag. A Dockerfile
    other than the default, or extra build args, also go into the hash: they change the image. A secret
    build arg counts by its reference: its value is not in the image, and a tag must not hash it.
    """
    head = f"{base_image}\n"
    if dockerfile != "Dockerfile" or build_args:
        hashed = {
            key: value if isinstance(value, str) else {"secret": value.secret}
            for key, value in (build_args or {}).items()
        }
        head += json.dumps({"dockerfile": dockerfile, "build_args": hashed}, sort_keys=True)
    outer = hashlib.sha256(head.encode())
    for relative in _context_files(context):
        inner = hashlib.sha256()
        with open(context / relative, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{inner.hexdigest()}  ./{relative}\n".encode())
    return outer.hexdigest()[:12]


def _context_files(context: Path) -> list[str]:
    found: list[str] = []
    for directory, dirnames, filenames in os.walk(context):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for filename in filenames:
            path = Path(directory, filename)
            if filename.endswith(".pyc") or path.is_symlink() or not path.is_file():
                continue
            found.append(path.relative_to(context).as_posix())
    # `LC_ALL=C sort -z` orders by bytes; "./" is a common prefix so it does not change the order.
    return sorted(found, key=lambda p: p.encode())


def fill_wheelhouse(context: Path, *, timeout_s: float = 1800) -> None:
    """Download the container's wheels into `<context>/wheelhouse` on this host.

    Inside `docker build` the package index may be unreachable (TLS interception, no egress), so the
    Dockerfile installs with `--no-index` from the wheelhouse. Same stamp as
    `scripts/fill-wheelhouse.sh`: skipped when requirements.txt has not changed since the last fill.
    """
    requirements = context / "requirements.txt"
    if not requirements.is_file():
        return
    dest = context / "wheelhouse"
    stamp = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    stamp_file = dest / ".filled"
    if stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return
    run_logger().info("filling %s from %s", dest, requirements)
    dest.mkdir(parents=True, exist_ok=True)
    platforms = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
    ]
    for platform in platforms:
        command += ["--platform", platform]
    command += ["-r", str(requirements), "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise ResourceFailed(
            f"wheelhouse {dest}",
            "DownloadFailed",
            f"pip download exited {result.returncode}: {result.stderr.strip()[-800:]}; "
            "fix: check the pins in requirements.txt and that the package index is reachable",
        )
    stamp_file.write_text(stamp + "\n")


# --- ECR -------------------------------------------------------------------------------------------------


def ensure_repository(
    name: str, tags: list[dict[str, str]], ledger: Ledger, *, held: HeldImage | None = None
) -> Repository:
    """The ECR repository `name`, created with scan-on-push and immutable tags when absent.

    Only a repository this call created goes into the ledger: one that existed before is shared and
    must survive the release's cleanup. Even one it created may come to hold other releases' images;
    `held` (this release's image reference) lets the unwind see who else refers to it.
    """
    ecr = aws.client("ecr")
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return Repository(name, found["repositoryUri"], found["registryId"], created=False)
    except Exception as exc:
        if aws.error_code(exc) != "RepositoryNotFoundException":
            raise
    entry = ledger.intend(ECR_REPOSITORY, name)
    try:
        made = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            tags=[{"Key": t["Key"], "Value": t["Value"]} for t in tags],
        )["repository"]
    except Exception as exc:
        if aws.error_code(exc) != "RepositoryAlreadyExistsException":
            raise
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        owner = ownership.release_tag(
            ecr.list_tags_for_resource(resourceArn=found["repositoryArn"]).get("tags")
        )
        if owner != ledger.release_id:
            # Another release created it between our describe and create: it is theirs, not ours.
            ledger.disown(entry, "created by another release or tool meanwhile; shared, not this release's")
            return Repository(name, found["repositoryUri"], found["registryId"], created=False)
        made = found  # this release's own create, sent again after its answer was lost
    refs = held.repository_attrs() if held is not None else {}
    ledger.confirm(entry, uri=made["repositoryUri"], registry_id=made["registryId"], **refs)
    return Repository(name, made["repositoryUri"], made["registryId"], created=True)


def image_digest_in_ecr(repository: str, tag: str) -> str | None:
    """The digest ECR holds under `repository:tag`, or None when there is no such image."""
    try:
        details = aws.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except Exception as exc:
        if aws.error_code(exc) == "ImageNotFoundException":
            return None
        raise
    images = details.get("imageDetails", [])
    return str(images[0]["imageDigest"]) if images else None


def digest_in_ecr(repository: str, digest: str) -> bool:
    """Whether ECR holds the image `digest` in `repository` under any tag."""
    try:
        details = aws.client("ecr").describe_images(
            repositoryName=repository, imageIds=[{"imageDigest": digest}]
        )
    except Exception as exc:
        if aws.error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return False
        raise
    return bool(details.get("imageDetails"))


def repository_has_images(name: str) -> bool:
    """Whether the repository holds any image, tagged or not (a missing repository holds none)."""
    try:
        listed = aws.client("ecr").list_images(repositoryName=name, maxResults=1)
    except Exception as exc:
        if aws.error_code(exc) == "RepositoryNotFoundException":
            return False
        raise
    return bool(listed.get("imageIds"))


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


# --- docker ----------------------------------------------------------------------------------------------


def docker_client(timeout_s: int = 900) -> docker.DockerClient:
    """A docker SDK client; the socket timeout bounds how long a build or push may stay silent."""
    return docker.from_env(timeout=timeout_s)


def local_image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(
    client: docker.DockerClient,
    context: Path,
    base_image: str,
    ref: str,
    *,
    timeout_s: float,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> None:
    """`docker build --build-arg BASE_IMAGE=… -t ref context`, streaming its output to the run log.

    With `secrets` (id -> value) the build runs through the docker CLI with BuildKit instead."""
    if secrets:
        build_with_buildkit(
            context,
            base_image,
            ref,
            timeout_s=timeout_s,
            dockerfile=dockerfile,
            build_args=build_args,
            secrets=secrets,
        )
        return
    log = run_logger()
    log.info("building %s from %s (FROM %s)", ref, context, base_image)
    events = client.api.build(
        path=str(context),
        dockerfile=dockerfile,
        tag=ref,
        buildargs={**dict(build_args or {}), "BASE_IMAGE": base_image},
        rm=True,
        forcerm=True,
        decode=True,
    )
    _follow(events, f"image build {ref}", "BuildFailed", timeout_s=timeout_s, log_key="stream")


def buildkit_command() -> tuple[list[str], dict[str, str]] | None:
    """The docker CLI command that builds with BuildKit on this worker and the environment it needs, or
    None. `docker buildx build` where the buildx plugin is installed; a docker CLI older than 23 builds
    with BuildKit by itself under DOCKER_BUILDKIT=1 (23 and newer need buildx for that). Every docker
    on PATH is tried in order, or only $SAGEMAKER_RELEASE_DOCKER_CLI when set."""
    override = os.environ.get(DOCKER_CLI_ENV, "").strip()
    for binary in [override] if override else _docker_binaries():
        if _succeeds([binary, "buildx", "version"]):
            return [binary, "buildx", "build", "--load"], {}
        major = _cli_major_version(binary)
        if major is not None and major < 23:
            return [binary, "build"], {"DOCKER_BUILDKIT": "1"}
    return None


def _docker_binaries() -> list[str]:
    found: list[str] = []
    real: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("docker", path=folder) if folder else None
        if candidate and os.path.realpath(candidate) not in real:
            found.append(candidate)
            real.add(os.path.realpath(candidate))
    return found


def _succeeds(command: list[str]) -> bool:
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _cli_major_version(binary: str) -> int | None:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"version (\d+)\.", done.stdout)
    return int(match.group(1)) if done.returncode == 0 and match else None


def build_with_buildkit(
    context: Path,
    base_image: str,
    ref: str,
    *,
    timeout_s: float,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    secrets: Mapping[str, str],
) -> None:
    """The docker CLI's BuildKit build, each secret handed over as `--secret id=<name>,env=<variable>`:
    the value is in the CLI's environment only, not on its command line (visible to every user of the
    machine) nor in the image. Output goes to the run log with secret values masked."""
    found = buildkit_command()
    if found is None:
        raise ResourceFailed(
            f"image build {ref}",
            "BuildFailed",
            "secret build arguments need a docker CLI that builds with BuildKit and none was found; "
            "fix: install the buildx plugin (Debian: apt-get install docker-buildx) or set "
            f"{DOCKER_CLI_ENV} to a docker CLI that has it",
        )
    command, extra_env = found
    env = {**os.environ, **extra_env}
    command = [*command, "--progress=plain", "-f", str(context / dockerfile), "-t", ref]
    for key, value in (build_args or {}).items():
        command += ["--build-arg", f"{key}={value}"]
    command += ["--build-arg", f"BASE_IMAGE={base_image}"]
    for index, (name, value) in enumerate(sorted(secrets.items())):
        variable = f"SAGEMAKER_RELEASE_BUILD_SECRET_{index}"
        env[variable] = value
        command += ["--secret", f"id={name},env={variable}"]
    command.append(str(context))
    log = run_logger()
    log.info(
        "building %s from %s (FROM %s) with BuildKit secrets %s", ref, context, base_image, sorted(secrets)
    )
    _run_build(command, env, ref, timeout_s=timeout_s, log=log)


def _run_build(command: list[str], env: dict[str, str], ref: str, *, timeout_s: float, log: Any) -> None:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    tail: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = secret_values.redact(raw.rstrip())
            if line:
                tail.append(line)
                del tail[:-20]
                log.info("%s", line)

    # The run logger is bound to this run; the copied context keeps Prefect's run context for the thread.
    reader = threading.Thread(target=contextvars.copy_context().run, args=(pump,), daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        reader.join(timeout=10)
        raise WaitTimeout(
            f"image build {ref}", tail[-1] if tail else "started", timeout_s, timeout_s=timeout_s
        ) from None
    reader.join(timeout=60)
    if code != 0:
        raise ResourceFailed(
            f"image build {ref}", "BuildFailed", f"docker build exited {code}: " + " | ".join(tail[-5:])
        )


def push_image(
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
        aux = _follow(
            events, f"image push {target_repo}:{tag}", "PushFailed", timeout_s=timeout_s, log_key="status"
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


def _follow(
    events: Iterable[dict[str, Any]], resource: str, failed_status: str, *, timeout_s: float, log_key: str
) -> dict[str, Any]:
    """Drain a build/push event stream; raise on its error event; return the last `aux` payload."""
    log = run_logger()
    start = time.monotonic()
    aux: dict[str, Any] = {}
    last_line = "started"
    for event in events:
        if "error" in event:
            detail = event.get("errorDetail", {}).get("message") or event["error"]
            raise ResourceFailed(resource, failed_status, str(detail).strip())
        if isinstance(event.get("aux"), dict):
            aux = event["aux"]
        line = str(event.get(log_key, "")).rstrip()
        # Push progress repeats "Pushing" for every chunk of every layer; log the milestones only.
        if line and not event.get("progressDetail"):
            log.info("%s%s", f"{event['id']}: " if event.get("id") else "", line)
            last_line = line
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            raise WaitTimeout(resource, last_line, elapsed, timeout_s=timeout_s)
    return aux


def registry_digest(client: docker.DockerClient, ref: str, auth: RegistryAuth | None) -> str:
    """The manifest digest the registry serves for `ref` (the engine's distribution inspect)."""
    data = client.images.get_registry_data(
        ref, auth_config=auth.as_docker_auth() if auth is not None else None
    )
    return str(data.id)


# --- registering a push made to a separate registry ------------------------------------------------------


def fetch_manifest(host: str, repository: str, tag: str, auth: RegistryAuth | None) -> tuple[bytes, str]:
    """The raw manifest and its media type from the registry at `host` (OCI distribution API), with
    `auth` (which must be `host`'s own credentials) when given."""
    scheme = "http" if _is_loopback(host) else "https"
    request = urllib.request.Request(
        f"{scheme}://{host}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES), **_basic(auth)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
        media_type = response.headers.get("Content-Type", MANIFEST_MEDIA_TYPES[0]).split(";")[0]
    return body, media_type


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def register_in_ecr(repository: Repository, tag: str, manifest: bytes, media_type: str, digest: str) -> None:
    """PutImage the manifest pushed to the separate registry, so ECR's API knows the image."""
    try:
        aws.client("ecr").put_image(
            repositoryName=repository.name,
            imageManifest=manifest.decode(),
            imageManifestMediaType=media_type,
            imageTag=tag,
            imageDigest=digest,
        )
    except Exception as exc:
        # Immutable tags: a rerun that pushed the very same manifest finds it already registered.
        if aws.error_code(exc) != "ImageAlreadyExistsException":
            raise


def delete_from_registry(host: str, repository: str, tag: str, digest: str) -> None:
    """Delete the manifest `digest`, pushed as `repository:tag`, from the separate registry at `host`.

    Only while the tag still names that digest there: that registry's tags are mutable, and a tag
    pushed again since is not the release's to delete. A missing tag or manifest is fine.
    """
    # This registry's own credentials: ECR's token is not for it.
    scheme = "http" if _is_loopback(host) else "https"
    headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES), **_basic(engine_auth(host))}
    base = f"{scheme}://{host}/v2/{repository}/manifests/"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(base + tag, headers=headers, method="HEAD"), timeout=30
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
            urllib.request.Request(base + digest, headers=headers, method="DELETE"), timeout=30
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


# --- the step ----------------------------------------------------------------------------------------------


def build_and_push(
    *,
    context: Path,
    base_image: str,
    repository_name: str,
    tags: list[dict[str, str]],
    ledger: Ledger,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str | SecretReference] | None = None,
    build_timeout_s: float = 3600,
    push_timeout_s: float = 1800,
    client: docker.DockerClient | None = None,
    storage: StorageConfig | None = None,
) -> ServingImage:
    """Make sure ECR holds the serving image of `context`, building and pushing only what is missing.

    With `storage`, the release's reference to the tag is written first (tasks/image/image_refs.py): from
    then on no other release's unwind deletes the image or its repository.
    """
    log = run_logger()
    fill_wheelhouse(context)
    tag = context_tag(context, base_image, dockerfile=dockerfile, build_args=build_args)
    held = image_refs.hold(storage, repository_name, tag, ledger) if storage is not None else None
    repository = ensure_repository(repository_name, tags, ledger, held=held)
    uri = f"{repository.uri}:{tag}"
    existing = image_digest_in_ecr(repository.name, tag)
    if existing is not None:
        log.info("%s is already in ECR (%s); nothing to build or push", uri, existing)
        return ServingImage(uri, existing, built=False, pushed=False, source="build")

    client = client or docker_client()
    local_ref = f"{repository.name}:{tag}"
    built = not local_image_exists(client, local_ref)
    if built:
        given = dict(build_args or {})
        plain = {key: value for key, value in given.items() if isinstance(value, str)}
        references = {key: value for key, value in given.items() if isinstance(value, SecretReference)}
        # Fetched only when a build runs; a failing build's output leaves with the values masked.
        with secret_values.scrubbed():
            build_image(
                client,
                context,
                base_image,
                local_ref,
                timeout_s=build_timeout_s,
                dockerfile=dockerfile,
                build_args=plain,
                secrets=secret_values.resolve_all(references, field="image.build_args"),
            )
    else:
        log.info("%s is already built locally; pushing it", local_ref)

    host = push_host(repository)
    auth = auth_for(host, repository)
    target_repo = f"{host}/{repository.name}"
    pushed = push_image(client, local_ref, target_repo, tag, auth, timeout_s=push_timeout_s)
    served = registry_digest(client, f"{target_repo}:{tag}", auth)
    if served != pushed:
        raise ResourceFailed(
            f"image {target_repo}:{tag}",
            "DigestMismatch",
            f"the push reported {pushed} but the registry serves {served}; fix: push again "
            "(a concurrent push of the same tag or a broken registry cache)",
        )
    if host != repository.host:
        manifest, media_type = fetch_manifest(host, repository.name, tag, auth)
        if "sha256:" + hashlib.sha256(manifest).hexdigest() != pushed:
            raise ResourceFailed(
                f"image {target_repo}:{tag}",
                "DigestMismatch",
                "the registry's manifest does not hash to " + pushed,
            )
        register_in_ecr(repository, tag, manifest, media_type, pushed)
    in_ecr = image_digest_in_ecr(repository.name, tag)
    if in_ecr != pushed:
        raise ResourceFailed(
            f"image {uri}",
            "DigestMismatch",
            f"ECR holds {in_ecr or 'nothing'} under tag {tag} after pushing {pushed}",
        )
    extra: dict[str, str] = held.image_attrs() if held is not None else {}
    if host != repository.host:
        extra["registry"] = host  # the unwind deletes the image where it was pushed, too
    ledger.record(
        ECR_IMAGE, f"{repository.name}:{tag}", repository=repository.name, tag=tag, digest=pushed, **extra
    )
    log.info("pushed %s (%s)", uri, pushed)
    return ServingImage(uri, pushed, built=built, pushed=True, source="build")


def huggingface_image_uri(
    *,
    region: str,
    transformers_version: str,
    pytorch_version: str,
    py_version: str,
    instance_type: str | None,
) -> str:
    """A Hugging Face inference DLC from the SageMaker SDK's image URI tables (no network needed)."""
    from sagemaker.core import image_uris

    return str(
        image_uris.retrieve(
            "huggingface",
            region=region,
            version=transformers_version,
            base_framework_version=f"pytorch{pytorch_version}",
            py_version=py_version,
            instance_type=instance_type,
            image_scope="inference",
        )
    )


@task(name="build-and-push-image", **task_options(retries=2))
def serving_image(
    image: ImageConfig,
    *,
    instance_type: str,
    tags: list[dict[str, str]],
    ledger: Ledger,
    storage: StorageConfig | None = None,
) -> ServingImage:
    """The image the release serves: built and pushed from the context, prebuilt, or a Hugging Face DLC.

    `storage` is where the release keeps its references to shared data; a built image is referenced
    there (tasks/image/image_refs.py)."""
    if image.source == "prebuilt":
        assert image.image_uri is not None  # the config requires it for this source
        return ServingImage(image.image_uri, None, built=False, pushed=False, source="prebuilt")
    if image.source == "huggingface_dlc":
        dlc = image.huggingface_dlc
        uri = huggingface_image_uri(
            region=aws.region_name(),
            transformers_version=dlc.transformers_version,
            pytorch_version=dlc.pytorch_version,
            py_version=dlc.py_version,
            instance_type=instance_type,
        )
        run_logger().info("serving the Hugging Face inference image %s", uri)
        return ServingImage(uri, None, built=False, pushed=False, source="huggingface")
    return build_and_push(
        context=Path(image.context),
        base_image=image.resolved_base_image(),
        repository_name=image.repository,
        tags=tags,
        ledger=ledger,
        dockerfile=image.dockerfile,
        build_args=image.build_args,
        storage=storage,
    )
