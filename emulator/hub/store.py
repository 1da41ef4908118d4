"""The on-disk store of the local hub: content-addressed blobs and, per repo, commits and refs.

Layout under the root folder:

    blobs/<sha256>                               file contents, shared by every repo
    repos/<models|datasets>/<ns>/<name>/
        repo.json                                {"private", "read_tokens", "created_at"}
        refs.json                                {"branches": {name: commit}, "tags": {name: commit}}
        commits/<commit id>.json                 {"id", "created_at", "message", "files": [...]}

Commits are immutable once written, so the server may cache them; refs and repo settings are read on
every request so that `publish` from another process is visible at once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from emulator.hub.hashing import lfs_pointer

DEFAULT_BRANCH = "main"
REPO_TYPES = {"model": "models", "dataset": "datasets"}

_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REF_NAME = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")


class HubError(Exception):
    """A request the Hub answers with a 4xx and an `X-Error-Code` that huggingface_hub maps to a type."""

    status = 404
    code = ""

    def __init__(self, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.commit = commit


class RepoNotFound(HubError):
    code = "RepoNotFound"


class RepoUnauthorized(RepoNotFound):
    # The Hub answers 401 with RepoNotFound for a private repo asked for without a valid token.
    status = 401


class RevisionNotFound(HubError):
    code = "RevisionNotFound"


class EntryNotFound(HubError):
    code = "EntryNotFound"


class StoreCorrupted(RuntimeError):
    """The store contradicts itself (e.g. a commit names a blob that is missing): a server-side fault."""


def is_commit_id(revision: str) -> bool:
    return _COMMIT_ID.fullmatch(revision) is not None


def validate_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) and ".." not in p for p in parts):
        raise ValueError(
            f"repo_id {repo_id!r} is not of the form 'namespace/name' (letters, digits, '.', '_', '-'; "
            "at most 96 characters each), e.g. 'sentence-transformers/all-MiniLM-L6-v2'"
        )


def validate_ref_name(kind: str, name: str) -> None:
    if not _REF_NAME.fullmatch(name) or ".." in name.split("/") or is_commit_id(name):
        raise ValueError(
            f"{kind} name {name!r} is invalid: use letters, digits, '.', '_', '-' and '/' separators, "
            "and not a 40-hex string (that would read as a commit id)"
        )


def repo_type_folder(repo_type: str) -> str:
    try:
        return REPO_TYPES[repo_type]
    except KeyError:
        raise ValueError(
            f"repo_type {repo_type!r} is not served by the local hub; use one of {sorted(REPO_TYPES)}"
        ) from None


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    oid: str  # git blob id: of the content, or of the LFS pointer for LFS files
    lfs: bool

    @property
    def etag(self) -> str:
        # The Hub's ETag: sha256 for LFS files, the git blob id otherwise.
        return self.sha256 if self.lfs else self.oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "oid": self.oid, "lfs": self.lfs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileEntry:
        return cls(
            path=str(data["path"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            oid=str(data["oid"]),
            lfs=bool(data["lfs"]),
        )


@dataclass(frozen=True)
class Commit:
    id: str
    created_at: str
    message: str
    files: tuple[FileEntry, ...]

    def file(self, path: str) -> FileEntry | None:
        return next((f for f in self.files if f.path == path), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "message": self.message,
            "files": [f.to_json() for f in self.files],
        }


@dataclass(frozen=True)
class RepoSettings:
    private: bool
    read_tokens: tuple[str, ...]
    created_at: str


@dataclass(frozen=True)
class Refs:
    branches: dict[str, str]
    tags: dict[str, str]


@lru_cache(maxsize=1024)
def _load_commit(path: Path) -> Commit:
    data = json.loads(path.read_text())
    return Commit(
        id=data["id"],
        created_at=data["created_at"],
        message=data["message"],
        files=tuple(FileEntry.from_json(f) for f in data["files"]),
    )


def write_json_atomically(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class HubStore:
    """Read access to a store folder, plus the path helpers `publish` writes through."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type_folder(repo_type) / repo_id

    def repo_exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "repo.json").is_file()

    def settings(self, repo_type: str, repo_id: str) -> RepoSettings:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        if not path.is_file():
            raise RepoNotFound(f"Repository {repo_id!r} ({repo_type}) not found on the local hub")
        data = json.loads(path.read_text())
        return RepoSettings(
            private=bool(data["private"]),
            read_tokens=tuple(data["read_tokens"]),
            created_at=str(data["created_at"]),
        )

    def refs(self, repo_type: str, repo_id: str) -> Refs:
        path = self.repo_dir(repo_type, repo_id) / "refs.json"
        data = json.loads(path.read_text()) if path.is_file() else {}
        return Refs(branches=dict(data.get("branches", {})), tags=dict(data.get("tags", {})))

    def commit_path(self, repo_type: str, repo_id: str, commit: str) -> Path:
        return self.repo_dir(repo_type, repo_id) / "commits" / f"{commit}.json"

    def has_commit(self, repo_type: str, repo_id: str, commit: str) -> bool:
        return is_commit_id(commit) and self.commit_path(repo_type, repo_id, commit).is_file()

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Branch, then tag, then full commit id -> commit id (the order git rev-parse uses for refs)."""
        refs = self.refs(repo_type, repo_id)
        if revision in refs.branches:
            return refs.branches[revision]
        if revision in refs.tags:
            return refs.tags[revision]
        if self.has_commit(repo_type, repo_id, revision):
            return revision
        raise RevisionNotFound(
            f"Invalid rev id: {revision!r} is not a branch, tag or commit of {repo_id!r} "
            f"(branches: {sorted(refs.branches)}, tags: {sorted(refs.tags)})"
        )

    def commit(self, repo_type: str, repo_id: str, commit: str) -> Commit:
        path = self.commit_path(repo_type, repo_id, commit)
        if not path.is_file():
            raise StoreCorrupted(f"{repo_id}: a ref points at commit {commit} but {path} does not exist")
        return _load_commit(path)

    def blob_for(self, repo_id: str, entry: FileEntry) -> Path:
        path = self.blob_path(entry.sha256)
        if not path.is_file():
            raise StoreCorrupted(
                f"{repo_id}: file {entry.path!r} has content {entry.sha256} but {path} is missing; "
                "publish the repo again to restore it"
            )
        return path
