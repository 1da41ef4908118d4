"""References to shared serving images, so one release's unwind never deletes an image another one uses.

The image tag is the hash of the build context, so every endpoint built from the same context serves
the same `repository:tag`, yet only the release that pushed it records it in its ledger (and only the
release that created the repository records that). If endpoint B's release reused the tag that
endpoint A's release had just pushed, and A then failed, A's unwind would delete B's image (or the
whole repository), and B's next instance (autoscaling, a host replacement) could not pull it.

So, as for model data (tasks/artifact/model_refs.py), every release that builds its image first writes a
reference object, `<prefix>/image-refs/<repository>:<tag>/<release_id>` in its storage bucket, and only
then looks for the tag in ECR. An unwind keeps the image while another release holds a reference to
that tag, and the repository while another release holds a reference to any tag in it. `:` separates
repository and tag because repository names cannot contain it: the references of `team` are never
mistaken for those of `team/serving`.

References only see releases that keep their ledgers in the same bucket; tasks/lifecycle/unwind.py also keeps
any image a live endpoint's model names, whoever referenced it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.artifact import model_refs
from tasks.config import StorageConfig
from tasks.core import aws
from tasks.lifecycle.ledger import Ledger, LedgerEntry

# Attributes of ecr:image and ecr:repository ledger entries: where their references are, and whose
# references are the release's own.
REFS_BUCKET_ATTR = "refs_bucket"
REFS_PREFIX_ATTR = "refs_prefix"
OWN_RELEASE_ATTR = "own_release"


def repository_prefix(prefix: str, repository: str) -> str:
    """Key prefix of the references to every tag of `repository`."""
    return "/".join(p for p in (prefix.strip("/"), "image-refs") if p) + f"/{repository}:"


def image_prefix(prefix: str, repository: str, tag: str) -> str:
    """Key prefix of the references to `repository:tag`."""
    return f"{repository_prefix(prefix, repository)}{tag}/"


@dataclass(frozen=True)
class HeldImage:
    """This release's reference to `repository:tag`: what the image's ledger entries carry."""

    bucket: str
    prefix: str
    repository: str
    tag: str
    release_id: str

    def image_attrs(self) -> dict[str, str]:
        return self._attrs(image_prefix(self.prefix, self.repository, self.tag))

    def repository_attrs(self) -> dict[str, str]:
        return self._attrs(repository_prefix(self.prefix, self.repository))

    def _attrs(self, refs_prefix: str) -> dict[str, str]:
        return {
            REFS_BUCKET_ATTR: self.bucket,
            REFS_PREFIX_ATTR: refs_prefix,
            OWN_RELEASE_ATTR: self.release_id,
        }


def hold(storage: StorageConfig, repository: str, tag: str, ledger: Ledger) -> HeldImage:
    """Write this release's reference to `repository:tag` (before it looks the tag up in ECR)."""
    key = image_prefix(storage.prefix, repository, tag) + ledger.release_id
    model_refs.put_ref(storage.bucket, key, ledger, mark=model_refs.IMAGE_REF_MARK)
    return HeldImage(storage.bucket, storage.prefix, repository, tag, ledger.release_id)


def other_holders(entry: LedgerEntry) -> list[str]:
    """References (relative to the entry's refs prefix) of releases other than the entry's own; []
    when the entry carries no references (recorded before references existed, or without storage)."""
    bucket = entry.attrs.get(REFS_BUCKET_ATTR)
    refs_prefix = entry.attrs.get(REFS_PREFIX_ATTR)
    if not bucket or not refs_prefix:
        return []
    own = str(entry.attrs.get(OWN_RELEASE_ATTR, ""))
    return [
        held for held in model_refs.holders(str(bucket), str(refs_prefix)) if held.rsplit("/", 1)[-1] != own
    ]


def drop(storage: StorageConfig, repository: str, tag: str, release_id: str) -> None:
    """Drop a release's reference to `repository:tag` (a missing one is fine)."""
    key = image_prefix(storage.prefix, repository, tag) + release_id
    aws.client("s3").delete_object(Bucket=storage.bucket, Key=key)
