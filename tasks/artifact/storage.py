"""Upload: model data to content-addressed S3 keys, skipping what is already there.

Keys derive from the content (`<prefix>/models/<sha256>/model.tar.gz`, or `<prefix>/models/<digest>/`
for an uncompressed model), and every object carries its sha256 in its metadata, so a rerun of the same
model finds it with one HeadObject per object and uploads nothing. Large files go up in parts, many at
once (boto3's transfer manager). Only objects this release wrote are recorded in its ledger: an object
that was already there belongs to an earlier release and must survive this one's failure. Objects this
release wrote survive its failure too while another release holds a reference to them
(tasks/artifact/model_refs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from boto3.s3.transfer import ProgressCallbackInvoker, TransferConfig, create_transfer_manager
from prefect import task

from tasks.artifact import model_refs
from tasks.artifact.packaging import ModelArtifact
from tasks.config import StorageConfig, naming
from tasks.core import aws
from tasks.core.errors import ConfigError, WaitTimeout
from tasks.core.logs import run_logger
from tasks.core.progress import ByteProgress, ProgressCallback, no_progress
from tasks.core.retry import task_options
from tasks.core.waiting import Clock, SystemClock
from tasks.lifecycle.kinds import S3_OBJECT, S3_PREFIX
from tasks.lifecycle.ledger import Ledger

SHA256_METADATA = "sha256"  # x-amz-meta-sha256: the whole object's sha256, hex
MIB = 1 << 20


@dataclass(frozen=True)
class UploadedModel:
    """Where the model data is in S3, in the form CreateModel takes it."""

    model_data_url: str
    compression: Literal["Gzip", "None"]
    digest: str
    uploaded_bytes: int
    uploaded_objects: int
    skipped_objects: int


@dataclass(frozen=True)
class _Upload:
    path: Path
    key: str
    sha256: str
    size: int


def ensure_bucket(storage: StorageConfig) -> bool:
    """Check the bucket exists (creating it when the config allows); True when it was created.

    The bucket is shared by every release, so it is never recorded in a release's ledger.
    """
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=storage.bucket)
        return False
    except Exception as exc:
        status = aws.http_status(exc)
        if status == 403:
            raise ConfigError(
                "storage.bucket",
                f"bucket {storage.bucket} exists but these credentials cannot use it (403)",
                "pick a bucket you own, or grant the release role s3:GetObject/PutObject/ListBucket on it",
            ) from None
        if not aws.is_not_found(exc):
            raise
    if not storage.create_bucket:
        raise ConfigError(
            "storage.bucket",
            f"bucket {storage.bucket} does not exist",
            f"create it (aws s3 mb s3://{storage.bucket}) or set storage.create_bucket: true",
        )
    region = aws.region_name()
    params: dict[str, Any] = {"Bucket": storage.bucket}
    if region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**params)
    except Exception as exc:
        if aws.error_code(exc) != "BucketAlreadyOwnedByYou":  # another release created it just now
            raise
        return False
    run_logger().info("created bucket s3://%s", storage.bucket)
    return True


def stored_sha256(bucket: str, key: str) -> str | None:
    """The sha256 an existing object was stored with, or None when there is no such object."""
    try:
        head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        raise
    return str(head.get("Metadata", {}).get(SHA256_METADATA, "")) or ""


def transfer_config(storage: StorageConfig) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=storage.multipart_threshold_mb * MIB,
        multipart_chunksize=storage.multipart_chunk_mb * MIB,
        max_concurrency=storage.max_concurrency,
        use_threads=True,
    )


def _uploads_of(artifact: ModelArtifact, storage: StorageConfig) -> tuple[str, list[_Upload]]:
    if artifact.kind == "tar.gz":
        key = naming.model_archive_key(storage.prefix, artifact.digest)
        return key, [_Upload(Path(artifact.path), key, artifact.digest, artifact.size_bytes)]
    prefix = naming.model_prefix_key(storage.prefix, artifact.digest)
    root = Path(artifact.path)
    return prefix, [_Upload(root / d.path, prefix + d.path, d.sha256, d.size) for d in artifact.file_digests]


def upload_files(
    uploads: Sequence[_Upload],
    bucket: str,
    storage: StorageConfig,
    *,
    tags: dict[str, str],
    on_progress: ProgressCallback = no_progress,
    timeout_s: float | None = None,
    clock: Clock | None = None,
) -> None:
    """Upload each file to its key with its sha256 in the metadata, several files and parts at once.

    Past `timeout_s` (the config's timeouts.upload_s) the uploads still running are cancelled and
    WaitTimeout names that field."""
    if not uploads:
        return
    manager = create_transfer_manager(aws.client("s3"), transfer_config(storage))
    with manager:
        futures = [
            manager.upload(
                str(item.path),
                bucket,
                item.key,
                extra_args={
                    "Metadata": {SHA256_METADATA: item.sha256},
                    "ContentType": "application/octet-stream",
                    "Tagging": urlencode(tags),
                },
                subscribers=[ProgressCallbackInvoker(on_progress)],
            )
            for item in uploads
        ]
        if timeout_s is not None:
            # Raising inside the `with` makes the transfer manager cancel what is still in flight.
            _wait_for(futures, timeout_s, clock or SystemClock(), f"upload to s3://{bucket}")
        for future in futures:
            future.result()


UPLOAD_TIMEOUT_FIELD = "timeouts.upload_s"
_UPLOAD_POLL_S = 0.1


def _wait_for(futures: Sequence[Any], timeout_s: float, clock: Clock, what: str) -> None:
    start = clock.monotonic()
    while not all(future.done() for future in futures):
        elapsed = clock.monotonic() - start
        if elapsed >= timeout_s:
            running = sum(not future.done() for future in futures)
            raise WaitTimeout(
                f"{what} (limit {UPLOAD_TIMEOUT_FIELD})",
                f"uploading ({running} of {len(futures)} file(s) unfinished)",
                elapsed,
                timeout_s=timeout_s,
            )
        clock.sleep(min(_UPLOAD_POLL_S, timeout_s - elapsed))


def store_artifact(
    artifact: ModelArtifact,
    storage: StorageConfig,
    ledger: Ledger,
    *,
    on_progress: ProgressCallback | None = None,
    timeout_s: float | None = None,
    clock: Clock | None = None,
) -> UploadedModel:
    """Upload what is missing and record it (plain function; `upload_model` is the Prefect task)."""
    bucket = storage.bucket
    root_key, uploads = _uploads_of(artifact, storage)
    # The reference goes first: from here on no other release's unwind deletes this data.
    own_ref = model_refs.hold(storage, artifact.digest, ledger)
    missing = [item for item in uploads if stored_sha256(bucket, item.key) != item.sha256]
    total = sum(item.size for item in missing)
    progress: ProgressCallback
    if on_progress is not None:
        progress = on_progress
    else:
        progress = ByteProgress(f"uploading to s3://{bucket}/{root_key}", total) if missing else no_progress
    tags = {naming.MANAGED_BY_KEY: naming.MANAGED_BY_VALUE, naming.RELEASE_ID_KEY: ledger.release_id}
    try:
        upload_files(
            missing, bucket, storage, tags=tags, on_progress=progress, timeout_s=timeout_s, clock=clock
        )
    finally:
        # Record even after a partial failure: whatever did reach S3 must be unwound with the release.
        shared = {
            model_refs.REFS_PREFIX_ATTR: model_refs.ref_prefix(storage.prefix, artifact.digest),
            model_refs.OWN_REF_ATTR: own_ref,
        }
        _record(ledger, artifact, bucket, root_key, uploads, missing, shared)
    if isinstance(progress, ByteProgress):
        progress.finish()
    url = f"s3://{bucket}/{root_key}"
    run_logger().info(
        "model data at %s: uploaded %d object(s), %.1f MiB; %d already there",
        url,
        len(missing),
        total / MIB,
        len(uploads) - len(missing),
    )
    return UploadedModel(
        model_data_url=url,
        compression=artifact.compression,
        digest=artifact.digest,
        uploaded_bytes=total,
        uploaded_objects=len(missing),
        skipped_objects=len(uploads) - len(missing),
    )


def _record(
    ledger: Ledger,
    artifact: ModelArtifact,
    bucket: str,
    root_key: str,
    uploads: Sequence[_Upload],
    missing: Sequence[_Upload],
    shared: dict[str, str],
) -> None:
    present = [item for item in missing if stored_sha256(bucket, item.key) == item.sha256]
    if not present:
        return
    if artifact.kind == "prefix" and len(missing) == len(uploads):
        # Every object under the prefix is ours: one entry removes them all.
        ledger.record(S3_PREFIX, f"s3://{bucket}/{root_key}", bucket=bucket, prefix=root_key, **shared)
        return
    for item in present:
        ledger.record(
            S3_OBJECT,
            f"s3://{bucket}/{item.key}",
            bucket=bucket,
            key=item.key,
            sha256=item.sha256,
            **shared,
        )


@task(name="upload-model", **task_options())
def upload_model(
    artifact: ModelArtifact, storage: StorageConfig, ledger: Ledger, *, timeout_s: float | None = None
) -> UploadedModel:
    """Put the packaged model in S3 under content-addressed keys; 0 bytes when it is already there.

    `timeout_s` is the config's timeouts.upload_s (the flow passes it; None waits without limit)."""
    return store_artifact(artifact, storage, ledger, timeout_s=timeout_s)
