"""The identifiers the Hub gives files and commits, computed the way git and git-lfs do."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20

# A file modified within this window of being hashed could be modified again without its mtime
# changing (timestamps have a coarse tick), so its hash is not remembered ("racy git").
_RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class ContentDigest:
    """What the Hub needs to know about one file's bytes."""

    size: int
    sha256: str
    git_sha1: str  # sha1 of the git blob object holding these bytes


def git_blob_sha1(data: bytes) -> str:
    """The object id git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git-lfs commits in place of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def digest_file(path: Path) -> ContentDigest:
    """Read the file once and compute its sha256 and its git blob sha1."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    read = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
            read += len(chunk)
    if read != size:
        raise RuntimeError(f"{path} changed size while it was being hashed ({size} -> {read} bytes); retry")
    return ContentDigest(size=size, sha256=sha256.hexdigest(), git_sha1=sha1.hexdigest())


def commit_id(files: Iterable[tuple[str, str]]) -> str:
    """A 40-hex commit id over (path, sha256) pairs: the same tree always gets the same id."""
    h = hashlib.sha1(b"sagemaker-release local hub tree v1\n", usedforsecurity=False)
    for path, sha256 in sorted(files):
        h.update(f"{path}\0{sha256}\n".encode())
    return h.hexdigest()


def tree_oid(children: Iterable[tuple[str, str]]) -> str:
    """An id for a folder of the tree listing, over its (name, oid) children."""
    h = hashlib.sha1(b"tree\n", usedforsecurity=False)
    for name, oid in sorted(children):
        h.update(f"{name}\0{oid}\n".encode())
    return h.hexdigest()


class DigestCache:
    """Remembers digests by inode, size and mtime so re-publishing an unchanged 90 MB file is a stat().

    Keyed by inode rather than path: a blob hardlinked into the store and its source share one entry.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._entries: dict[str, dict[str, object]] = {}
        self._dirty = False
        if path.is_file():
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                self._entries = loaded

    def digest(self, path: Path) -> ContentDigest:
        st = path.stat()
        key = f"{st.st_dev}:{st.st_ino}"
        entry = self._entries.get(key)
        if entry is not None and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return ContentDigest(
                size=st.st_size, sha256=str(entry["sha256"]), git_sha1=str(entry["git_sha1"])
            )
        digest = digest_file(path)
        if time.time_ns() - st.st_mtime_ns > _RACY_WINDOW_NS:
            self._entries[key] = {
                "size": digest.size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": digest.sha256,
                "git_sha1": digest.git_sha1,
            }
            self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries))
        os.replace(tmp, self._path)
        self._dirty = False
