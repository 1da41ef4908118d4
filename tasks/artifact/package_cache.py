"""Which archive a model's files became on this worker, so an unchanged model is not compressed again.

A nightly redeploy of the same commit must cost seconds, and compressing a model of many GB does not.
The key covers the archive format's parameters and, for each file, its path and what `stat` says of the
bytes behind it: device, inode, size, modification and change time. Hub snapshots are links to blobs
that are never rewritten; for a local folder any write changes the change time, which no tool can set
back (git's index relies on the same). The value is the archive's sha256 and size, and a hit counts only
while that archive is still on disk at that size: archives are pruned after a day.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

INDEX_DIR = "sources"


def source_key(source: Path, files: Sequence[str], archive_format: str) -> str | None:
    """Identity of `files` under `source` as they are on disk now, for one archive format; None when
    a file cannot be read (packaging then reports it)."""
    lines = [archive_format]
    for name in sorted(files):
        try:
            info = (source / name).stat()  # follows the Hub cache's links to the blob itself
        except OSError:
            return None
        lines.append(
            f"{name}\0{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"
        )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def lookup(packages: Path, key: str, archive_name: str) -> tuple[str, int] | None:
    """(sha256, size) of the archive these files became, if it is still there whole; else None.

    A hit refreshes the archive's modification time: in use again, it must outlive the pruning of old ones."""
    entry = packages / INDEX_DIR / f"{key}.json"
    try:
        recorded = json.loads(entry.read_text(encoding="utf-8"))
        sha256, size = str(recorded["sha256"]), int(recorded["size"])
        archive = packages / sha256 / archive_name
        whole = archive.stat().st_size == size
        if whole:
            os.utime(archive)
    except (OSError, ValueError, KeyError, TypeError):
        whole = False
    if whole:
        return sha256, size
    entry.unlink(missing_ok=True)  # pruned, cut short or unreadable: forget it
    return None


def remember(packages: Path, key: str, sha256: str, size: int) -> None:
    index = packages / INDEX_DIR
    index.mkdir(parents=True, exist_ok=True)
    partial = index / f".{key}.{os.getpid()}.partial"
    partial.write_text(json.dumps({"sha256": sha256, "size": size}), encoding="utf-8")
    os.replace(partial, index / f"{key}.json")  # two releases of one model on a worker may race


def prune(packages: Path, max_age_s: float, now: float | None = None) -> None:
    """Forget entries older than `max_age_s` (their archives are pruned at the same age)."""
    cutoff = (time.time() if now is None else now) - max_age_s
    for entry in (packages / INDEX_DIR).glob("*.json"):
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
        except FileNotFoundError:
            continue
