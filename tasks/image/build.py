"""Building the serving image from `container/`: the context-hash tag, the wheelhouse, `docker build`, and
BuildKit builds for secret build arguments.

The tag is the hash of the build context (and the base image name), computed exactly as
`scripts/build-image.sh` does, so an unchanged container is never rebuilt.

Build arguments given as secret references are BuildKit secrets (`RUN --mount=type=secret,id=<name>`),
never `--build-arg`s, which stay in the image's history. The docker SDK's build API has no BuildKit
session to carry them, so a build with secrets runs the docker CLI (`docker buildx build`, or a pre-23
`docker build` with DOCKER_BUILDKIT=1), handing each value over in the CLI's environment only.

SageMaker pulls Docker v2 schema 2 images only. The SDK's build is the engine's classic builder (it
never asks for BuildKit): no attestations, and an engine with the classic image store pushes the result
as Docker v2. An engine with the containerd image store keeps what it builds as OCI, so there the build
goes through `docker buildx build --load` (the docker exporter, Docker media types); buildx runs with
`--provenance=false`, as its default provenance attestation turns the image into an OCI index.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors

from tasks.config import SecretReference, secret_values
from tasks.core.errors import ResourceFailed, WaitTimeout
from tasks.core.logs import run_logger

DOCKER_CLI_ENV = "SAGEMAKER_RELEASE_DOCKER_CLI"
# `docker info`'s driver-type on an engine with the containerd image store ("io.containerd.snapshotter.v1").
_CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter"
# The two ways out of an OCI image on such an engine, in every fix that names them.
_INSTALL_BUILDX = "install the buildx plugin (Debian: apt-get install docker-buildx)"
_GET_BUILDX = f"{_INSTALL_BUILDX} or set {DOCKER_CLI_ENV} to a docker CLI that has it"
_DISABLE_CONTAINERD_STORE = (
    'disable the containerd image store ("features": {"containerd-snapshotter": false} in '
    "/etc/docker/daemon.json)"
)


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


def docker_build(
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

    With `secrets` (id -> value), or on an engine with the containerd image store, the build runs
    through the docker CLI with BuildKit instead."""
    containerd = uses_containerd_store(client)
    if secrets or containerd:
        build_with_buildkit(
            context,
            base_image,
            ref,
            timeout_s=timeout_s,
            dockerfile=dockerfile,
            build_args=build_args,
            secrets=secrets or {},
            # Whatever brought the build here, on this engine only buildx gives Docker media types.
            docker_media_types=containerd,
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
    follow_events(events, f"image build {ref}", "BuildFailed", timeout_s=timeout_s, log_key="stream")


def uses_containerd_store(client: docker.DockerClient) -> bool:
    """Whether the engine keeps images in the containerd image store, where a classic build is an OCI
    image (`docker info`: DriverStatus ["driver-type", "io.containerd.snapshotter.v1"])."""
    status = client.info().get("DriverStatus") or []
    return any(
        isinstance(pair, list | tuple) and len(pair) == 2 and str(pair[1]).startswith(_CONTAINERD_SNAPSHOTTER)
        for pair in status
    )


def engine_fix(local_ref: str) -> str:
    """What to do when the engine pushed an image SageMaker refuses."""
    return (
        f"the docker engine made an OCI image; {_INSTALL_BUILDX}, which the build then runs with "
        f"--provenance=false --load, or {_DISABLE_CONTAINERD_STORE}, remove the local image "
        f"(docker image rm {local_ref}) and release again"
    )


def buildkit_command() -> tuple[list[str], dict[str, str]] | None:
    """The docker CLI command that builds with BuildKit on this worker and the environment it needs, or
    None. `docker buildx build` where the buildx plugin is installed (loaded into the engine as a
    Docker image, without the provenance attestation buildx 0.10 and newer add); a docker CLI older
    than 23 builds with BuildKit by itself under DOCKER_BUILDKIT=1 (23 and newer need buildx for that).
    Every docker on PATH is tried in order, or only $SAGEMAKER_RELEASE_DOCKER_CLI when set."""
    override = os.environ.get(DOCKER_CLI_ENV, "").strip()
    for binary in [override] if override else _docker_binaries():
        buildx = _buildx_version(binary)
        if buildx is not None:
            no_attestations = ["--provenance=false"] if buildx >= (0, 10) else []
            return [binary, "buildx", "build", "--load", *no_attestations], {}
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


def _buildx_version(binary: str) -> tuple[int, int] | None:
    """buildx's (major, minor) for this docker CLI; None without buildx, (0, 0) when it prints none."""
    try:
        done = subprocess.run(
            [binary, "buildx", "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    # "github.com/docker/buildx v0.10.4 c513d34", or Debian's "github.com/docker/buildx 0.13.1+ds1-3"
    match = re.search(r"\bv?(\d+)\.(\d+)\.\d+", done.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


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
    docker_media_types: bool = False,
) -> None:
    """The docker CLI's BuildKit build, each secret handed over as `--secret id=<name>,env=<variable>`:
    the value is in the CLI's environment only, not on its command line (visible to every user of the
    machine) nor in the image. Output goes to the run log with secret values masked.

    `docker_media_types`: the engine keeps images in the containerd image store, where only buildx's
    docker exporter gives Docker media types (a pre-23 CLI's BuildKit makes OCI), with secrets or without."""
    found = buildkit_command()
    if docker_media_types and (found is None or "buildx" not in found[0]):
        raise ResourceFailed(
            f"image build {ref}",
            "BuildFailed",
            "the docker engine uses the containerd image store, where `docker build` makes an OCI image "
            'that SageMaker refuses ("Unsupported manifest media type"), and no docker CLI with buildx '
            f"was found; fix: {_GET_BUILDX}, or {_DISABLE_CONTAINERD_STORE}",
        )
    if found is None:
        raise ResourceFailed(
            f"image build {ref}",
            "BuildFailed",
            "secret build arguments need a docker CLI that builds with BuildKit and none was found; "
            f"fix: {_GET_BUILDX}",
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
        "building %s from %s (FROM %s) with BuildKit%s",
        ref,
        context,
        base_image,
        f" secrets {sorted(secrets)}" if secrets else " for Docker media types",
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


def follow_events(
    events: Iterable[dict[str, Any]],
    resource: str,
    failed_status: str,
    *,
    timeout_s: float,
    log_key: str,
    per_layer: bool = False,
) -> dict[str, Any]:
    """Drain a build/push event stream; raise on its error event; return the last `aux` payload.

    With `per_layer` (a push) the layers' milestones are counted and logged as one line at the end:
    a line per layer tells a reader nothing a count does not."""
    log = run_logger()
    start = time.monotonic()
    aux: dict[str, Any] = {}
    last_line = "started"
    layers: dict[str, str] = {}
    for event in events:
        if "error" in event:
            detail = event.get("errorDetail", {}).get("message") or event["error"]
            raise ResourceFailed(resource, failed_status, str(detail).strip())
        if isinstance(event.get("aux"), dict):
            aux = event["aux"]
        line = str(event.get(log_key, "")).rstrip()
        # Push progress repeats "Pushing" for every chunk of every layer; keep the milestones only.
        if line and not event.get("progressDetail"):
            last_line = line
            if per_layer and event.get("id"):
                layers[str(event["id"])] = line
            elif not per_layer:
                log.info("%s%s", f"{event['id']}: " if event.get("id") else "", line)
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            raise WaitTimeout(resource, last_line, elapsed, timeout_s=timeout_s)
    if per_layer:
        log.info("%s: %s in %.0f s", resource, _layer_tally(layers), time.monotonic() - start)
    return aux


def _layer_tally(layers: dict[str, str]) -> str:
    """E.g. `2 layers pushed, 3 already in the registry, 1 mounted` from each layer's last status."""
    pushed = sum(status == "Pushed" for status in layers.values())
    present = sum(status == "Layer already exists" for status in layers.values())
    mounted = sum(status.startswith("Mounted from") for status in layers.values())
    counted = [(pushed, "pushed"), (present, "already in the registry"), (mounted, "mounted")]
    parts = [f"{count} {'layer' if count == 1 else 'layers'} {what}" for count, what in counted if count]
    return ", ".join(parts) or "no layer to send"
