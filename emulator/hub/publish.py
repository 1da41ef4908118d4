"""Push a folder to a repo of the local hub as a new revision, like `git commit && git push` on the Hub."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from emulator.hub.hashing import DigestCache, commit_id, git_blob_sha1, lfs_pointer
from emulator.hub.lfs_rules import LfsRules
from emulator.hub.store import (
    DEFAULT_BRANCH,
    Commit,
    FileEntry,
    HubStore,
    repo_type_folder,
    validate_ref_name,
    validate_repo_id,
    write_json_atomically,
)

# Local metadata that is never part of a repo: git's own folder and huggingface_hub's local_dir cache.
_SKIPPED_DIRS = {".git", ".cache"}


@contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """Serialises publishes into one store, across processes."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".publish.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _repo_files(src_dir: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(src_dir):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) == src_dir and d in _SKIPPED_DIRS))
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():  # follows symlinks, e.g. a huggingface_hub snapshot folder
                files.append((path.relative_to(src_dir).as_posix(), path))
    return sorted(files)


def _store_blob(store: HubStore, src: Path, sha256: str, hardlink: bool) -> None:
    dest = store.blob_path(sha256)
    if dest.is_file():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{sha256}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    linked = False
    if hardlink:
        try:
            os.link(src.resolve(), tmp)
            linked = True
        except OSError:
            linked = False  # another filesystem, or links not allowed: fall back to a copy
    if not linked:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def publish(
    root: Path,
    repo_id: str,
    src_dir: Path,
    branch: str = DEFAULT_BRANCH,
    *,
    repo_type: str = "model",
    tag: str | None = None,
    message: str | None = None,
    private: bool | None = None,
    read_tokens: Iterable[str] | None = None,
    hardlink: bool = False,
) -> str:
    """Publish every file under `src_dir` as the new head of `branch`; return the commit id.

    The commit id is a sha1 over the sorted (path, sha256) list, so publishing the same content again
    returns the same id (and moves nothing), while any changed file gives a new id. Older commits stay
    downloadable by their id. `tag` additionally names the commit; a tag never moves once created.
    `private`/`read_tokens` change the repo's access (None keeps it; new repos are public): a private
    repo answers 401 unless the client sends `Authorization: Bearer <one of read_tokens>`.
    `hardlink=True` links blobs to the source files instead of copying them; only use it for sources
    nobody rewrites in place (an installed package), since the store would change with them.
    """
    repo_type_folder(repo_type)
    validate_repo_id(repo_id)
    validate_ref_name("branch", branch)
    if tag is not None:
        validate_ref_name("tag", tag)
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"cannot publish {repo_id}: source folder {src_dir} does not exist")
    files = _repo_files(src_dir)
    if not files:
        raise ValueError(f"cannot publish {repo_id}: source folder {src_dir} has no files")
    tokens = tuple(read_tokens) if read_tokens is not None else None
    if private and not tokens:
        raise ValueError(f"cannot make {repo_id} private without read_tokens: nobody could download it")

    gitattributes = src_dir / ".gitattributes"
    rules = LfsRules.parse(gitattributes.read_text()) if gitattributes.is_file() else LfsRules.hub_default()
    store = HubStore(Path(root))
    with _store_lock(store.root):
        cache = DigestCache(store.root / "cache" / "digests.json")
        entries: list[FileEntry] = []
        for rel, path in files:
            digest = cache.digest(path)
            lfs = rules.is_lfs(rel, digest.size)
            oid = git_blob_sha1(lfs_pointer(digest.sha256, digest.size)) if lfs else digest.git_sha1
            entries.append(FileEntry(path=rel, size=digest.size, sha256=digest.sha256, oid=oid, lfs=lfs))
            _store_blob(store, path, digest.sha256, hardlink)
        cache.save()

        commit = commit_id((e.path, e.sha256) for e in entries)
        repo_dir = store.repo_dir(repo_type, repo_id)
        current = store.settings(repo_type, repo_id) if (repo_dir / "repo.json").is_file() else None
        new_private = private if private is not None else (current.private if current else False)
        new_tokens = tokens if tokens is not None else (current.read_tokens if current else ())
        if new_private and not new_tokens:
            raise ValueError(f"{repo_id} is private: pass read_tokens to publish it")
        refs = store.refs(repo_type, repo_id)
        if tag is not None and refs.tags.get(tag, commit) != commit:
            raise ValueError(
                f"tag {tag!r} of {repo_id} already points at commit {refs.tags[tag]}; tags do not move, "
                "choose a new tag name"
            )

        now = _utc_now()
        commit_path = store.commit_path(repo_type, repo_id, commit)
        if not commit_path.is_file():
            record = Commit(
                id=commit, created_at=now, message=message or f"Publish {src_dir.name}", files=tuple(entries)
            )
            write_json_atomically(commit_path, record.to_json())
        # refs before repo.json: a new repo becomes visible only once its branch resolves
        refs.branches[branch] = commit
        if tag is not None:
            refs.tags[tag] = commit
        write_json_atomically(repo_dir / "refs.json", {"branches": refs.branches, "tags": refs.tags})
        write_json_atomically(
            repo_dir / "repo.json",
            {
                "private": new_private,
                "read_tokens": list(new_tokens),
                "created_at": current.created_at if current else now,
            },
        )
    return commit
