"""Package: a deterministic model.tar.gz compressed on every core, or the files as they are for an S3 prefix.

Determinism is what makes uploads skippable: entries are sorted and carry a fixed mtime, owner and mode,
and the gzip stream has no timestamp or file name, so the same files always give the same bytes and the
same sha256 -- the archive's S3 key. Compression is isal's deflate on every core
(tasks/artifact/parallel_gzip.py): blocks are cut by size, not by thread, so the output does not depend on
how many threads made it.

The uncompressed layout (SageMaker's S3Prefix with CompressionType None) skips compression and lets
SageMaker fetch the files in parallel; for multi-GB weights, which barely compress, it is the better
choice. Its digest covers every file's path, size and sha256.
"""

from __future__ import annotations

import errno
import hashlib
import io
import mmap
import os
import shutil
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from prefect import task

from tasks.artifact import package_cache
from tasks.artifact.model_source import ModelSnapshot
from tasks.artifact.parallel_gzip import ParallelGzipWriter
from tasks.config import PackagingConfig
from tasks.core.errors import PackagingFailed
from tasks.core.logs import run_logger
from tasks.core.progress import ByteProgress, ProgressCallback, no_progress
from tasks.core.retry import task_options
from tasks.core.state_dir import STATE_DIR_ENV, state_subdir

ARCHIVE_NAME = "model.tar.gz"
FIXED_MTIME = 0
FILE_MODE = 0o644
BLOCK_SIZE = 1 << 20  # igzip block; part of the output's identity, so never derive it from the machine
READ_CHUNK = 4 << 20
# Archives are uploaded within minutes of being written; older ones on the worker only fill its disk.
PACKAGE_TTL_S = 24 * 3600


@dataclass(frozen=True)
class FileDigest:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelArtifact:
    """What goes to S3: one archive (`kind` "tar.gz") or a folder of files (`kind` "prefix").

    `digest` is the archive's sha256, or for a prefix the sha256 of its manifest; it names the S3 key.
    `files` are the model's relative paths; `file_digests` (prefix only) their sizes and sha256s.
    `reused`: the archive was already on this worker from an earlier release of the same files.
    """

    kind: Literal["tar.gz", "prefix"]
    path: str
    digest: str
    size_bytes: int
    source_bytes: int
    files: tuple[str, ...]
    file_digests: tuple[FileDigest, ...] = ()
    reused: bool = False

    @property
    def compression(self) -> Literal["Gzip", "None"]:
        return "Gzip" if self.kind == "tar.gz" else "None"


class _HashingWriter(io.RawIOBase):
    """Writes to a file while hashing and counting the bytes (the compressed stream)."""

    def __init__(self, file: io.BufferedWriter) -> None:
        self._file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.sha256.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _check_member(name: str) -> None:
    if name.startswith("/") or ".." in Path(name).parts or not name:
        raise ValueError(
            f"refusing to package {name!r}: archive members must be relative paths inside the model"
        )


def worker_threads(requested: int) -> int:
    """Compression threads: `requested`, or every CPU this process may use when 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def write_tar_gz(
    source: Path,
    files: Sequence[str],
    dest: Path,
    *,
    level: int = 1,
    threads: int = 0,
    on_progress: ProgressCallback = no_progress,
) -> tuple[str, int]:
    """Write `files` (relative to `source`) into a deterministic tar.gz at `dest`; return (sha256, size).

    Symlinks (the Hub cache's layout) are followed: the archive holds the files' contents.
    """
    names = sorted(files)
    for name in names:
        _check_member(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as raw:
        hashed = _HashingWriter(raw)
        with ParallelGzipWriter(
            hashed, level=level, threads=worker_threads(threads), block_size=BLOCK_SIZE
        ) as gz:
            _write_tar_stream(gz, source, names, on_progress)
    return hashed.sha256.hexdigest(), hashed.size


def _write_tar_stream(
    out: ParallelGzipWriter, source: Path, names: Sequence[str], on_progress: ProgressCallback
) -> None:
    # The file data is memory-mapped and handed to the compressor without a copy; tarfile's own
    # writer would copy it through a 16 KiB buffer. The headers are tarfile's (pax format).
    offset = 0
    for name in names:
        with (source / name).open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header = _tar_info(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            out.write(header)
            if size:
                _write_mapped(out, handle, size, on_progress)
        padding = -size % tarfile.BLOCKSIZE
        out.write(bytes(padding))
        offset += len(header) + size + padding
    # End of archive: two zero blocks, then zeros up to a whole record, as tar(1) and tarfile write it.
    offset += 2 * tarfile.BLOCKSIZE
    out.write(bytes(2 * tarfile.BLOCKSIZE + (-offset % tarfile.RECORDSIZE)))


def _write_mapped(
    out: ParallelGzipWriter, handle: IO[bytes], size: int, on_progress: ProgressCallback
) -> None:
    with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        failure: BaseException | None = None
        try:
            for start in range(0, size, READ_CHUNK):
                out.write(view[start : start + READ_CHUNK])  # no name kept: the map must close afterwards
                on_progress(min(READ_CHUNK, size - start))
            out.flush()  # every block cut from the map is compressed before the map closes
        except BaseException as exc:
            # A failed write (a full disk) leaves slices of the map in the compressor and in the
            # traceback's frames; closing the map would then raise BufferError and hide the real error.
            out.abort()
            failure = exc.with_traceback(None)
        finally:
            view.release()
        if failure is not None:
            raise failure


def file_digests(
    source: Path, files: Sequence[str], on_progress: ProgressCallback = no_progress
) -> tuple[FileDigest, ...]:
    """sha256 and size of each file, sorted by path."""
    digests = []
    for name in sorted(files):
        _check_member(name)
        sha = hashlib.sha256()
        size = 0
        with (source / name).open("rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                sha.update(chunk)
                size += len(chunk)
                on_progress(len(chunk))
        digests.append(FileDigest(name, size, sha.hexdigest()))
    return tuple(digests)


def manifest_digest(digests: Sequence[FileDigest]) -> str:
    """One sha256 over every file's path, size and sha256: the identity of an uncompressed model."""
    manifest = "".join(f"{d.sha256}  {d.size}  {d.path}\n" for d in sorted(digests, key=lambda d: d.path))
    return hashlib.sha256(manifest.encode()).hexdigest()


def prune_packages(folder: Path, max_age_s: float, now: float | None = None) -> list[Path]:
    """Delete archives in `folder` older than `max_age_s`; return what was removed."""
    cutoff = (time.time() if now is None else now) - max_age_s
    removed = []
    for archive in folder.glob(f"*/{ARCHIVE_NAME}"):
        try:
            if archive.stat().st_mtime < cutoff:
                archive.unlink()
                archive.parent.rmdir()
                removed.append(archive)
        except FileNotFoundError:  # another release on this worker pruned it first
            continue
    package_cache.prune(folder, max_age_s, now)
    return removed


def build_artifact(
    snapshot: ModelSnapshot,
    packaging: PackagingConfig,
    out_dir: Path | None = None,
    on_progress: ProgressCallback = no_progress,
) -> ModelArtifact:
    """Package a snapshot (plain function; `package_model` is the Prefect task)."""
    source = Path(snapshot.path)
    if packaging.format == "s3_prefix":
        digests = file_digests(source, snapshot.files, on_progress)
        total = sum(d.size for d in digests)
        names = tuple(d.path for d in digests)
        return ModelArtifact("prefix", str(source), manifest_digest(digests), total, total, names, digests)
    if out_dir is None:
        out = state_subdir("packages")
        prune_packages(out, PACKAGE_TTL_S)
    else:
        out = out_dir
    out.mkdir(parents=True, exist_ok=True)
    archive_format = f"tar.gz level {packaging.compression_level} block {BLOCK_SIZE}"
    key = package_cache.source_key(source, snapshot.files, archive_format)
    files = tuple(sorted(snapshot.files))
    known = package_cache.lookup(out, key, ARCHIVE_NAME) if key else None
    if known is not None:
        sha256, size = known
        on_progress(snapshot.total_bytes)
        final = out / sha256 / ARCHIVE_NAME
        return ModelArtifact("tar.gz", str(final), sha256, size, snapshot.total_bytes, files, reused=True)
    partial = out / f".{ARCHIVE_NAME}.{os.getpid()}.partial"
    try:
        sha256, size = write_tar_gz(
            source,
            snapshot.files,
            partial,
            level=packaging.compression_level,
            threads=packaging.threads,
            on_progress=on_progress,
        )
        final = out / sha256 / ARCHIVE_NAME
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
    except BaseException as exc:
        # A half-written archive is never uploaded, and on a full disk it is what fills it.
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise packaging_failure(exc, out, snapshot) from exc
        raise
    # A file that changed while it was packed gives another key now: then the archive is not remembered.
    if key and package_cache.source_key(source, snapshot.files, archive_format) == key:
        package_cache.remember(out, key, sha256, size)
    return ModelArtifact("tar.gz", str(final), sha256, size, snapshot.total_bytes, files)


def packaging_failure(exc: OSError, out: Path, snapshot: ModelSnapshot) -> PackagingFailed:
    """What went wrong writing the archive, in the user's terms: which disk or file, and the fix."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(out).free if out.exists() else 0
        return PackagingFailed(
            str(out),
            f"no space left on device while writing {ARCHIVE_NAME} ({free / 2**20:.1f} MiB free; the "
            f"model is {snapshot.total_bytes / 2**20:.1f} MiB before compression)",
            f"free space on that disk, point {STATE_DIR_ENV} at a larger one, or set "
            "packaging.format: s3_prefix (uploads the files as they are, no archive on the worker)",
        )
    where = str(exc.filename) if exc.filename else str(out)
    if isinstance(exc, FileNotFoundError) and where.startswith(snapshot.path):
        return PackagingFailed(
            where,
            "the model file disappeared between download and packaging",
            "keep other processes from changing the model folder during a release, then release again",
        )
    return PackagingFailed(
        where,
        f"cannot package the model: {exc.strerror or exc}",
        "check that the worker can read the model folder and write to "
        f"{out} (or point {STATE_DIR_ENV} elsewhere), then release again",
    )


@task(name="package-model", timeout_seconds=3 * 3600, **task_options(retries=1))
def package_model(
    snapshot: ModelSnapshot, packaging: PackagingConfig, out_dir: str | None = None
) -> ModelArtifact:
    """Package the model files as a deterministic model.tar.gz, or prepare them for an S3 prefix."""
    what = "packaging model.tar.gz" if packaging.format == "tar.gz" else "hashing model files"
    progress = ByteProgress(what, snapshot.total_bytes)
    artifact = build_artifact(snapshot, packaging, Path(out_dir) if out_dir else None, progress)
    progress.finish()
    ratio = artifact.size_bytes / artifact.source_bytes if artifact.source_bytes else 1.0
    run_logger().info(
        "%s %s as %s %s (%.1f MiB, ratio %.3f)",
        "reused the archive of" if artifact.reused else "packaged",
        snapshot.describe(),
        artifact.kind,
        artifact.digest[:12],
        artifact.size_bytes / 2**20,
        ratio,
    )
    return artifact
