"""The JSON bodies of the Hub API, shaped as huggingface_hub's ModelInfo, RepoFile and GitRefs parse them."""

from __future__ import annotations

from typing import Any

from emulator.hub.hashing import tree_oid
from emulator.hub.store import Commit, FileEntry, Refs, RepoSettings


def repo_info(
    repo_type: str, repo_id: str, settings: RepoSettings, commit: Commit, blobs: bool
) -> dict[str, Any]:
    """GET /api/{models,datasets}/{repo_id}[/revision/{rev}]; `blobs` adds sizes and LFS data to siblings."""
    siblings: list[dict[str, Any]] = []
    for entry in commit.files:
        sibling: dict[str, Any] = {"rfilename": entry.path}
        if blobs:
            sibling["size"] = entry.size
            sibling["blobId"] = entry.oid
            if entry.lfs:
                sibling["lfs"] = {
                    "size": entry.size,
                    "sha256": entry.sha256,
                    "pointerSize": entry.pointer_size,
                }
        siblings.append(sibling)
    info: dict[str, Any] = {
        "_id": commit.id[:24],
        "id": repo_id,
        "author": repo_id.split("/", 1)[0],
        "sha": commit.id,
        "lastModified": commit.created_at,
        "createdAt": settings.created_at,
        "private": settings.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(e.size for e in commit.files),
    }
    if repo_type == "model":
        info["modelId"] = repo_id
    return info


def _file_entry(entry: FileEntry) -> dict[str, Any]:
    # No "xetHash": without it huggingface_hub downloads over plain HTTP instead of asking for Xet tokens.
    data: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": entry.path}
    if entry.lfs:
        data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return data


def _folder_oids(commit: Commit) -> dict[str, str]:
    """Every folder of the commit (without the root) -> an id over its children, deepest first."""
    children: dict[str, list[tuple[str, str]]] = {}
    for entry in commit.files:
        parent, _, name = entry.path.rpartition("/")
        children.setdefault(parent, []).append((name, entry.oid))
        while parent:
            children.setdefault(parent.rpartition("/")[0], [])
            parent = parent.rpartition("/")[0]
    oids: dict[str, str] = {}
    for folder in sorted(children, key=lambda f: f.count("/") if f else -1, reverse=True):
        if not folder:
            continue
        oids[folder] = tree_oid(children[folder])
        parent, _, name = folder.rpartition("/")
        children[parent].append((name, oids[folder]))
    return oids


def tree(commit: Commit, folder: str, recursive: bool) -> list[dict[str, Any]] | None:
    """GET /api/{type}s/{repo_id}/tree/{rev}[/{folder}]; None when `folder` is not a folder of the commit."""
    folder = folder.strip("/")
    folders = _folder_oids(commit)
    if folder and folder not in folders:
        return None
    prefix = f"{folder}/" if folder else ""

    def listed(path: str) -> bool:
        if not path.startswith(prefix):
            return False
        return recursive or "/" not in path[len(prefix) :]

    out: list[dict[str, Any]] = [
        {"type": "directory", "oid": oid, "size": 0, "path": path}
        for path, oid in sorted(folders.items())
        if listed(path)
    ]
    out.extend(_file_entry(e) for e in commit.files if listed(e.path))
    return out


def refs(repo_refs: Refs) -> dict[str, Any]:
    """GET /api/{type}s/{repo_id}/refs."""
    return {
        "branches": [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit}
            for name, commit in sorted(repo_refs.branches.items())
        ],
        "tags": [
            {"name": name, "ref": f"refs/tags/{name}", "targetCommit": commit}
            for name, commit in sorted(repo_refs.tags.items())
        ],
        "converts": [],
        "pullRequests": [],
    }
