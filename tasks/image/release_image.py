"""The release's image steps as Prefect tasks: `build-image` (tag, reference, skip check, docker build) and
`push-image` (push, verify the digest, register in ECR, record in the ledger).

A prebuilt image (the user's URI, or a Hugging Face deep learning container looked up with the SageMaker
SDK) replaces both: nothing is built or pushed. When the context's tag is already in ECR the build step
is a DescribeImages call and the push step does nothing. SageMaker always gets the ECR
`repositoryUri:tag`; when the data plane is a separate registry ($SAGEMAKER_RELEASE_REGISTRY), the pushed
manifest is also put into the ECR API (PutImage) so DescribeImages, the skip check and cleanup see the
image there as they would after a push to ECR itself, and an unwind deletes it from both.

Whatever its source, the push step ends by reading the image's manifest media type (registry.py's
`require_pullable`): an OCI manifest or index, which CreateModel would refuse, stops the release before
any model exists, with the fix for where the image came from.

Every endpoint built from the same context shares the tag, and a repository holds the images of many
releases; only the release that pushed a tag (or created the repository) records it. Given the
release's storage, the release first writes a reference to the tag (tasks/image/image_refs.py), so an
unwind keeps what other releases use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import docker
from prefect import task

from tasks.config import ImageConfig, SecretReference, StorageConfig, secret_values
from tasks.core import aws
from tasks.core.errors import ResourceFailed
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.image import build, dlc, ecr, image_refs, registry
from tasks.image.ecr import Repository
from tasks.image.image_refs import HeldImage
from tasks.lifecycle.kinds import ECR_IMAGE
from tasks.lifecycle.ledger import Ledger

ImageSource = Literal["build", "prebuilt", "huggingface"]


@dataclass(frozen=True)
class ServingImage:
    """The image a release serves: `uri` goes to CreateModel; `built`/`pushed` say what this run did."""

    uri: str
    digest: str | None
    built: bool
    pushed: bool
    source: ImageSource


@dataclass(frozen=True)
class BuiltImage:
    """What the build step leaves for the push step.

    `local_ref` is set when the engine holds an image the registry lacks (built now, or by an earlier
    run): the push step pushes it. Otherwise the image is already where SageMaker reads it (a prebuilt
    URI, a DLC, or a tag ECR holds as `digest`) and the push step does nothing."""

    uri: str
    source: ImageSource
    built: bool
    digest: str | None = None
    repository: Repository | None = None
    tag: str | None = None
    local_ref: str | None = None
    held: HeldImage | None = None

    @property
    def needs_push(self) -> bool:
        return self.local_ref is not None


def build_context_image(
    *,
    context: Path,
    base_image: str,
    repository_name: str,
    tags: list[dict[str, str]],
    ledger: Ledger,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str | SecretReference] | None = None,
    build_timeout_s: float = 3600,
    client: docker.DockerClient | None = None,
    storage: StorageConfig | None = None,
) -> BuiltImage:
    """The serving image of `context` in the engine, unless ECR already holds its tag (then nothing is
    built, and the push step has nothing to do).

    With `storage`, the release's reference to the tag is written first (tasks/image/image_refs.py): from
    then on no other release's unwind deletes the image or its repository.
    """
    log = run_logger()
    build.fill_wheelhouse(context)
    tag = build.context_tag(context, base_image, dockerfile=dockerfile, build_args=build_args)
    held = image_refs.hold(storage, repository_name, tag, ledger) if storage is not None else None
    repository = ecr.ensure_repository(repository_name, tags, ledger, held=held)
    uri = f"{repository.uri}:{tag}"
    existing = ecr.image_digest_in_ecr(repository.name, tag)
    if existing is not None:
        log.info("%s is already in ECR (%s); nothing to build or push", uri, existing)
        return BuiltImage(uri, "build", built=False, digest=existing, repository=repository, tag=tag)

    client = client or build.docker_client()
    local_ref = f"{repository.name}:{tag}"
    built = not build.local_image_exists(client, local_ref)
    if built:
        given = dict(build_args or {})
        plain = {key: value for key, value in given.items() if isinstance(value, str)}
        references = {key: value for key, value in given.items() if isinstance(value, SecretReference)}
        # Fetched only when a build runs; a failing build's output leaves with the values masked.
        with secret_values.scrubbed():
            build.docker_build(
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
    return BuiltImage(
        uri, "build", built=built, repository=repository, tag=tag, local_ref=local_ref, held=held
    )


def push_built_image(
    image: BuiltImage,
    ledger: Ledger,
    *,
    push_timeout_s: float = 1800,
    client: docker.DockerClient | None = None,
) -> ServingImage:
    """Push what the build step left in the engine, check the registry and ECR serve the pushed digest,
    and record the image in the ledger; an image already in place passes through untouched."""
    if not image.needs_push:
        registry.require_pullable(image.uri, fix=_fix_in_place(image))
        return ServingImage(image.uri, image.digest, built=image.built, pushed=False, source=image.source)
    repository, tag, local_ref = image.repository, image.tag, image.local_ref
    assert repository is not None and tag is not None and local_ref is not None  # set with local_ref
    client = client or build.docker_client()
    host = registry.push_host(repository)
    auth = registry.auth_for(host, repository)
    target_repo = f"{host}/{repository.name}"
    pushed = registry.docker_push(client, local_ref, target_repo, tag, auth, timeout_s=push_timeout_s)
    served = registry.registry_digest(client, f"{target_repo}:{tag}", auth)
    if served != pushed:
        raise ResourceFailed(
            f"image {target_repo}:{tag}",
            "DigestMismatch",
            f"the push reported {pushed} but the registry serves {served}; fix: push again "
            "(a concurrent push of the same tag or a broken registry cache)",
        )
    if host != repository.host:
        manifest, media_type = registry.fetch_manifest(host, repository.name, tag, auth)
        if "sha256:" + hashlib.sha256(manifest).hexdigest() != pushed:
            raise ResourceFailed(
                f"image {target_repo}:{tag}",
                "DigestMismatch",
                "the registry's manifest does not hash to " + pushed,
            )
        ecr.register_in_ecr(repository, tag, manifest, media_type, pushed)
    in_ecr = ecr.image_digest_in_ecr(repository.name, tag)
    if in_ecr != pushed:
        raise ResourceFailed(
            f"image {image.uri}",
            "DigestMismatch",
            f"ECR holds {in_ecr or 'nothing'} under tag {tag} after pushing {pushed}",
        )
    extra: dict[str, str] = image.held.image_attrs() if image.held is not None else {}
    if host != repository.host:
        extra["registry"] = host  # the unwind deletes the image where it was pushed, too
    ledger.record(
        ECR_IMAGE, f"{repository.name}:{tag}", repository=repository.name, tag=tag, digest=pushed, **extra
    )
    run_logger().info("pushed %s (%s)", image.uri, pushed)
    # Checked once recorded: a refused image is this release's own, and its unwind deletes it.
    registry.require_pullable(image.uri, fix=build.engine_fix(local_ref))
    return ServingImage(image.uri, pushed, built=image.built, pushed=True, source=image.source)


def _fix_in_place(image: BuiltImage) -> str:
    """How to replace an image the release found in place rather than pushed."""
    if image.source == "build" and image.repository is not None and image.tag is not None:
        # The tag is the context's hash and ECR's tags are immutable: a rebuild would find the same
        # image in ECR and skip itself, so the old image has to go first.
        return (
            f"delete it from ECR (aws ecr batch-delete-image --repository-name {image.repository.name} "
            f"--image-ids imageTag={image.tag}) and release again: the release then builds and pushes "
            "it as a Docker v2 image"
        )
    if image.source == "prebuilt":
        return registry.REBUILD_FIX + ", or name another image in image.image_uri"
    return registry.REBUILD_FIX


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
    """Both halves at once, for callers outside the release flow: ECR ends up holding the serving image
    of `context`, building and pushing only what is missing."""
    built = build_context_image(
        context=context,
        base_image=base_image,
        repository_name=repository_name,
        tags=tags,
        ledger=ledger,
        dockerfile=dockerfile,
        build_args=build_args,
        build_timeout_s=build_timeout_s,
        client=client,
        storage=storage,
    )
    return push_built_image(built, ledger, push_timeout_s=push_timeout_s, client=client)


@task(name="build-image", **task_options(retries=2))
def build_image(
    image: ImageConfig,
    *,
    instance_type: str,
    tags: list[dict[str, str]],
    ledger: Ledger,
    storage: StorageConfig | None = None,
) -> BuiltImage:
    """The image the release serves: built from the context (unless ECR holds its tag), prebuilt, or a
    Hugging Face DLC.

    `storage` is where the release keeps its references to shared data; a built image is referenced
    there (tasks/image/image_refs.py)."""
    if image.source == "prebuilt":
        assert image.image_uri is not None  # the config requires it for this source
        return BuiltImage(image.image_uri, "prebuilt", built=False)
    if image.source == "huggingface_dlc":
        config = image.huggingface_dlc
        uri = dlc.huggingface_image_uri(
            region=aws.region_name(),
            transformers_version=config.transformers_version,
            pytorch_version=config.pytorch_version,
            py_version=config.py_version,
            instance_type=instance_type,
        )
        run_logger().info("serving the Hugging Face inference image %s", uri)
        return BuiltImage(uri, "huggingface", built=False)
    return build_context_image(
        context=Path(image.context),
        base_image=image.resolved_base_image(),
        repository_name=image.repository,
        tags=tags,
        ledger=ledger,
        dockerfile=image.dockerfile,
        build_args=image.build_args,
        storage=storage,
    )


@task(name="push-image", **task_options(retries=2))
def push_image(image: BuiltImage, *, ledger: Ledger) -> ServingImage:
    """Push the built image to ECR (or the release's registry) and record it; nothing to do for an image
    already there, prebuilt, or a DLC."""
    return push_built_image(image, ledger)
