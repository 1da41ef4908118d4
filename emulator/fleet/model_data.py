"""Model data: fetched from S3 (moto here), unpacked safely, cached by content, mounted read-only.

A tarball is unpacked member by member by emulator/fleet/archives.py (no links, devices, absolute or
`..` names, bounded size and member count); an S3 prefix may not hold keys that escape it. Each
unpacked copy is keyed by the S3 URI and the object ETags, so redeploying the same data reuses it
and re-creating containers after a restart does not need S3 at all.

Endpoints prune the copies no deployment references; a transform job is no deployment, so it holds
its copy (prepare(hold=True) ... release) and prune leaves a held copy alone: removing the folder
under a loading container empties /opt/ml/model, and the model fails to load files that were there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from emulator.fleet.archives import (
    ArchiveLimits,
    UnpackFailed,
    UnreadableArchive,
    UnsafeArchive,
    unpack_tar_gz,
)
from emulator.settings import Limits

S3ClientFactory = Callable[[], Any]


class ModelDataError(Exception):
    """Model data cannot be used; the message names the S3 location and what is wrong."""


@dataclass(frozen=True)
class ModelDataSpec:
    s3_uri: str
    data_type: str  # S3Object | S3Prefix
    compression: str  # Gzip | None

    @classmethod
    def from_container(cls, container: dict[str, Any]) -> ModelDataSpec | None:
        if container.get("ModelDataUrl"):
            return cls(container["ModelDataUrl"], "S3Object", "Gzip")
        source = (container.get("ModelDataSource") or {}).get("S3DataSource")
        if source:
            return cls(source["S3Uri"], source["S3DataType"], source["CompressionType"])
        return None

    @property
    def bucket_and_key(self) -> tuple[str, str]:
        if not self.s3_uri.startswith("s3://"):
            raise ModelDataError(f"model data location {self.s3_uri} is not an s3:// URI")
        bucket, _, key = self.s3_uri[5:].partition("/")
        return bucket, key


@dataclass(frozen=True)
class PreparedModelData:
    cache_key: str
    path: Path  # the folder mounted at /opt/ml/model


class ModelDataCache:
    def __init__(self, root: Path, s3: S3ClientFactory, limits: Limits | None = None) -> None:
        self.root = root
        self._s3 = s3
        limits = limits or Limits.from_env()
        self.archive_limits = ArchiveLimits(
            max_bytes=limits.archive_max_bytes, max_members=limits.archive_max_members
        )
        # prepare runs in worker threads while prune runs on the event loop: the lock makes taking a
        # hold and removing an unheld copy exclusive, so a held copy is never half removed.
        self._lock = threading.Lock()
        self._holds: Counter[str] = Counter()

    # -- S3 ---------------------------------------------------------------------------------------

    def _objects(self, spec: ModelDataSpec) -> list[tuple[str, str, int]]:
        """(key, etag, size) of every object the spec covers; empty when nothing is there."""
        bucket, key = spec.bucket_and_key
        client = self._s3()
        if spec.data_type == "S3Object":
            try:
                head = client.head_object(Bucket=bucket, Key=key)
            except ClientError as error:
                if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                    return []
                raise
            return [(key, head["ETag"], head["ContentLength"])]
        found: list[tuple[str, str, int]] = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                found += [(o["Key"], o["ETag"], o["Size"]) for o in page.get("Contents", [])]
        except ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchBucket":
                return []
            raise
        return [entry for entry in found if not entry[0].endswith("/")]

    def exists(self, spec: ModelDataSpec) -> bool:
        return bool(self._objects(spec))

    # -- cache ------------------------------------------------------------------------------------

    def prepare(self, spec: ModelDataSpec, *, hold: bool = False) -> PreparedModelData:
        """The unpacked copy of the spec's data; with `hold`, prune keeps it until release(cache_key)."""
        objects = self._objects(spec)
        if not objects:
            raise ModelDataError(
                f"Failed to download model data from {spec.s3_uri}: no S3 object is there. "
                "Upload the model data, or fix the model's ModelDataUrl/ModelDataSource."
            )
        identity = json.dumps([spec.s3_uri, spec.data_type, spec.compression, sorted(objects)])
        cache_key = hashlib.sha256(identity.encode()).hexdigest()[:24]
        if not hold:
            return self._prepare(spec, objects, cache_key)
        # Held before the cached copy is looked up, so a prune between the lookup and the caller's
        # use of the folder cannot remove it.
        with self._lock:
            self._holds[cache_key] += 1
        try:
            return self._prepare(spec, objects, cache_key)
        except BaseException:
            self.release(cache_key)
            raise

    def release(self, cache_key: str) -> None:
        """Drop one hold taken by prepare(hold=True); the copy is pruned again once none is left."""
        with self._lock:
            self._holds[cache_key] -= 1
            if self._holds[cache_key] <= 0:
                del self._holds[cache_key]

    def held(self) -> set[str]:
        with self._lock:
            return set(self._holds)

    def _prepare(
        self, spec: ModelDataSpec, objects: list[tuple[str, str, int]], cache_key: str
    ) -> PreparedModelData:
        final = self.root / cache_key
        if (final / "complete").exists():
            return PreparedModelData(cache_key, final / "model")
        partial = self.root / f".{cache_key}.{uuid.uuid4().hex[:8]}"
        target = partial / "model"
        target.mkdir(parents=True)
        try:
            self._fill(spec, objects, partial, target)
            _make_readable(target)
            (partial / "complete").write_text(spec.s3_uri)
            if final.exists():  # a concurrent prepare of the same data finished first
                shutil.rmtree(partial)
            else:
                partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return PreparedModelData(cache_key, final / "model")

    def _fill(
        self, spec: ModelDataSpec, objects: list[tuple[str, str, int]], work: Path, target: Path
    ) -> None:
        bucket, base = spec.bucket_and_key
        client = self._s3()
        if spec.data_type == "S3Prefix":
            for key, _, _ in objects:
                relative = _safe_relative(key[len(base) :], spec.s3_uri)
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(destination))
            return
        if spec.compression == "None":
            client.download_file(bucket, base, str(target / PurePosixPath(base).name))
            return
        archive = work / "model.tar.gz"
        client.download_file(bucket, base, str(archive))
        try:
            unpack_tarball(archive, target, self.archive_limits)
        finally:
            archive.unlink(missing_ok=True)

    def remove_partials(self) -> None:
        """Remove unpacking work a crash interrupted (folders named .KEY.RANDOM)."""
        if self.root.exists():
            for entry in self.root.iterdir():
                if entry.is_dir() and entry.name.startswith("."):
                    shutil.rmtree(entry, ignore_errors=True)

    def prune(self, keep: set[str]) -> None:
        """Remove unpacked data no deployment uses any more and nothing holds (a transform job)."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in keep:
                with self._lock:
                    if entry.name not in self._holds:
                        shutil.rmtree(entry, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    # The serving container may run as any user; SageMaker's /opt/ml/model is world-readable too.
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | (0o555 if path.is_dir() else 0o444))


def _safe_relative(relative: str, uri: str) -> PurePosixPath:
    path = PurePosixPath(relative.lstrip("/"))
    if not relative or relative.startswith("/") or ".." in path.parts:
        raise ModelDataError(
            f"model data under {uri} has an object key {relative!r} that would land outside "
            "/opt/ml/model; rename the object"
        )
    return path


def unpack_tarball(archive: Path, target: Path, limits: ArchiveLimits | None = None) -> None:
    """Unpack a gzipped tarball into `target`, refusing anything that would escape it."""
    try:
        unpack_tar_gz(archive, target, limits or ArchiveLimits())
    except UnsafeArchive as error:
        raise ModelDataError(
            f"model data tarball is unsafe and was not unpacked: {error}. Repack it with regular files and "
            "folders only, under relative names (tar -h stores the files that links point to); the "
            "emulator's size limits are SAGEMAKER_EMULATOR_ARCHIVE_MAX_BYTES and "
            "SAGEMAKER_EMULATOR_ARCHIVE_MAX_MEMBERS"
        ) from error
    except UnreadableArchive as error:
        raise ModelDataError(f"model data is not a readable gzipped tarball: {error}") from error
    except UnpackFailed as error:
        raise ModelDataError(f"model data tarball could not be unpacked on this machine: {error}") from error
