"""ECR's API for the serving image: the repository (created once, recorded in the ledger), the digests it
holds, the manifest media type of an image (what SageMaker will find), and registering a manifest pushed to
a separate registry (PutImage).

Only a repository this release created goes into its ledger; one that existed before is shared.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core import aws
from tasks.core.logs import run_logger
from tasks.image.image_name import ImageName
from tasks.image.image_refs import HeldImage
from tasks.lifecycle import ownership
from tasks.lifecycle.kinds import ECR_REPOSITORY
from tasks.lifecycle.ledger import Ledger


@dataclass(frozen=True)
class Repository:
    name: str
    uri: str
    registry_id: str
    created: bool

    @property
    def host(self) -> str:
        return self.uri.split("/", 1)[0]


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


# ECR's answers that mean "not readable from here": the image or repository is missing, or the release's
# credentials may not describe another account's repository (SageMaker's execution role may still pull it).
_UNREADABLE = frozenset(
    {"ImageNotFoundException", "RepositoryNotFoundException", "AccessDeniedException", "AccessDenied"}
)


def image_manifest_media_type(name: ImageName) -> str | None:
    """DescribeImages' imageManifestMediaType of the ECR image `name` (the type as pushed: a registry's
    GET may convert it), in the image's own registry and region; None when ECR records none or the image
    is not readable from here (CreateModel then says what is wrong)."""
    ecr_registry = name.ecr_registry
    if ecr_registry is None:
        raise ValueError(f"{name} is not an ECR image")
    registry_id, region = ecr_registry
    image_id = {"imageDigest": name.reference} if name.is_digest else {"imageTag": name.reference}
    try:
        details = (
            aws.client("ecr", region=region)
            .describe_images(registryId=registry_id, repositoryName=name.repository, imageIds=[image_id])
            .get("imageDetails", [])
        )
    except Exception as exc:
        code = aws.error_code(exc)
        if code in _UNREADABLE:
            run_logger().warning(
                "could not read the manifest media type of %s/%s:%s (ECR: %s); CreateModel checks the "
                "image itself",
                name.host,
                name.repository,
                name.reference,
                code,
            )
            return None
        raise
    found = details[0].get("imageManifestMediaType") if details else None
    return str(found) if found else None


def repository_has_images(name: str) -> bool:
    """Whether the repository holds any image, tagged or not (a missing repository holds none)."""
    try:
        listed = aws.client("ecr").list_images(repositoryName=name, maxResults=1)
    except Exception as exc:
        if aws.error_code(exc) == "RepositoryNotFoundException":
            return False
        raise
    return bool(listed.get("imageIds"))


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
