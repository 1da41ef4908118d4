"""References to shared model data, so one release's unwind never deletes data another one uses.

Model data is content-addressed: two releases of the same files share one S3 object (or prefix), yet
only a release that uploaded it records it in its ledger. Nightly redeploys of staging and production
at the same hour both upload the new commit; if staging then fails, its unwind would delete the object
production's endpoint was just created from, and production's next instance (autoscaling, a host
replacement) could not download its model.

So every release that uses model data first writes a small reference object,
`<prefix>/model-refs/<digest>/<release_id>`, and only then looks for the data. An unwind keeps model
data while another release holds a reference to it. Writing the reference before the lookup closes the
race in the order that matters: a release that found the data already there is visible to every unwind
that starts after it looked. A release's reference is its own ledger entry (removed when it fails) and
is deleted when retention retires the release (tasks/lifecycle/retention.py). Images are shared the same way
and use the same kind of reference (tasks/image/image_refs.py).
"""

from __future__ import annotations

from urllib.parse import urlencode

from tasks.config import StorageConfig, naming
from tasks.core import aws
from tasks.lifecycle.kinds import S3_OBJECT
from tasks.lifecycle.ledger import Ledger, LedgerEntry

# Ledger entry attributes of model data: where its references are, and which one is the release's own.
REFS_PREFIX_ATTR = "refs_prefix"
OWN_REF_ATTR = "own_ref"
# Marks on the ledger entries of a release's own reference objects: to model data, and to images.
MODEL_REF_MARK = "model_ref"
IMAGE_REF_MARK = "image_ref"
_REF_MARKS = (MODEL_REF_MARK, IMAGE_REF_MARK)


def ref_prefix(prefix: str, digest: str) -> str:
    return naming.model_refs_prefix(prefix, digest)


def hold(storage: StorageConfig, digest: str, ledger: Ledger) -> str:
    """Write this release's reference to the model data named `digest`; return its key."""
    key = ref_prefix(storage.prefix, digest) + ledger.release_id
    put_ref(storage.bucket, key, ledger, mark=MODEL_REF_MARK)
    return key


def put_ref(bucket: str, key: str, ledger: Ledger, *, mark: str) -> None:
    """Write the empty reference object `key` and record it as the release's own (`mark` says of what)."""
    tags = {naming.MANAGED_BY_KEY: naming.MANAGED_BY_VALUE, naming.RELEASE_ID_KEY: ledger.release_id}
    aws.client("s3").put_object(
        Bucket=bucket, Key=key, Body=b"", ContentType="text/plain", Tagging=urlencode(tags)
    )
    ledger.record(S3_OBJECT, f"s3://{bucket}/{key}", bucket=bucket, key=key, **{mark: True})


def drop_own(ledger: Ledger) -> None:
    """Drop the release's references now: a release that deploys nothing (the endpoint already serves
    this model and image) uses no model data or image, and would otherwise leave references behind on
    every rerun."""
    for entry in ledger.entries:
        if any(entry.attrs.get(mark) for mark in _REF_MARKS) and entry.pending:
            ledger.undo(entry)


def holders(bucket: str, refs_prefix: str) -> list[str]:
    """Release ids holding a reference under `refs_prefix`."""
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    found: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=refs_prefix):
        found.extend(str(item["Key"])[len(refs_prefix) :] for item in page.get("Contents", []))
    return found


def other_holders(entry: LedgerEntry) -> list[str]:
    """Releases other than the entry's own that still reference the model data of `entry` ([] when
    the entry is not model data)."""
    refs_prefix = entry.attrs.get(REFS_PREFIX_ATTR)
    if not refs_prefix:
        return []
    own = str(entry.attrs.get(OWN_REF_ATTR, ""))
    bucket = str(entry.attrs["bucket"])
    return [release for release in holders(bucket, str(refs_prefix)) if str(refs_prefix) + release != own]


def drop(storage: StorageConfig, digest: str, release_id: str) -> None:
    """Drop a release's reference (a missing one is fine)."""
    key = ref_prefix(storage.prefix, digest) + release_id
    aws.client("s3").delete_object(Bucket=storage.bucket, Key=key)
