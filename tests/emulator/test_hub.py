"""The local hub, driven by unchanged huggingface_hub through HF_ENDPOINT.

huggingface_hub reads HF_ENDPOINT when it is imported, so every client call runs in a fresh Python
subprocess with the variable set, exactly as a user's script would run against the local stack.
"""

from __future__ import annotations

import filecmp
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.hub import MINILM_REPO_ID, publish, seed_default_repos
from emulator.hub.lfs_rules import LfsRules
from emulator.hub.store import FileEntry, HubStore

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = "local-test/tiny-model"
PRIVATE = "local-test/private-model"
TOKEN = "hf_local_read_token"
START_TIMEOUT_S = 20.0
CLIENT_TIMEOUT_S = 120.0
HUB_COMMAND = (sys.executable, "-m", "emulator.hub", "--host", "127.0.0.1", "--log-level", "warning")


@dataclass(frozen=True)
class Hub:
    url: str
    root: Path
    minilm_commit: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen[bytes], url: str) -> bool:
    """True once /api/health answers 200; False if the process died (e.g. the port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the hub at {url} was not healthy within {START_TIMEOUT_S} s")


def _write_tree(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub-store")
    minilm_commit = seed_default_repos(root)[MINILM_REPO_ID]
    log_path = root.parent / "hub.log"
    for _ in range(3):
        url = f"http://127.0.0.1:{_free_port()}"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*HUB_COMMAND, "--root", str(root), "--port", url.rsplit(":", 1)[1]],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_healthy(proc, url):
                yield Hub(url=url, root=root, minilm_commit=minilm_commit)
                return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    raise AssertionError(f"the hub exited at start three times; its log:\n{log_path.read_text()[-3000:]}")


_PRELUDE = """
import json, os
import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download, list_repo_files, snapshot_download

P = json.loads(os.environ["HUB_TEST_PARAMS"])

def emit(value):
    print("RESULT " + json.dumps(value))

def error_of(fn):
    try:
        fn()
    except Exception as exc:
        return type(exc).__name__
    return None

def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
        for d, _, fs in os.walk(folder) for f in fs
    )
"""


def run_client(hub: Hub, home: Path, code: str, token: str | None = None, **params: Any) -> Any:
    """Run `code` with huggingface_hub in a subprocess pointed at the hub; return what it emit()s.

    `params` reach the code as the dict `P`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HUB_TEST_PARAMS=json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in params.items()}),
    )
    if token is not None:
        env["HF_TOKEN"] = token
    out = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
    )
    assert out.returncode == 0, f"client failed:\n{out.stdout}\n{out.stderr}"
    results = [line[len("RESULT ") :] for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, f"client emitted {len(results)} results:\n{out.stdout}\n{out.stderr}"
    return json.loads(results[0])


def _entry(hub: Hub, repo_id: str, commit: str, path: str) -> FileEntry:
    entry = HubStore(hub.root).commit("model", repo_id, commit).file(path)
    assert entry is not None, f"{path} is not in {repo_id}@{commit}"
    return entry


def test_snapshot_pinned_to_a_commit_is_byte_identical(hub: Hub, minilm_dir: Path, tmp_path: Path) -> None:
    got = run_client(
        hub,
        tmp_path / "home",
        """
        path = snapshot_download(P["repo"], revision=P["commit"], cache_dir=P["cache"])
        emit({"path": path, "files": files_under(path)})
        """,
        repo=MINILM_REPO_ID,
        commit=hub.minilm_commit,
        cache=tmp_path,
    )
    snapshot = Path(got["path"])
    assert snapshot.name == hub.minilm_commit
    expected = sorted(p.relative_to(minilm_dir).as_posix() for p in minilm_dir.rglob("*") if p.is_file())
    assert got["files"] == expected
    mismatched = [rel for rel in expected if not filecmp.cmp(minilm_dir / rel, snapshot / rel, shallow=False)]
    assert mismatched == []
    # Plain HTTP, never Xet: hf_xet would have created its cache under HF_HOME.
    assert not (tmp_path / "home" / "xet").exists()


def test_branch_and_tag_resolve_to_their_commit(hub: Hub, tmp_path: Path) -> None:
    src = _write_tree(tmp_path / "v1", {"config.json": b'{"v": 1}', "weights/model.safetensors": b"w1" * 100})
    commit = publish(hub.root, TINY, src, tag="v1.0")
    assert publish(hub.root, TINY, src, branch="release/2026") == commit
    got = run_client(
        hub,
        tmp_path / "home",
        """
        api = HfApi()
        info = api.model_info(P["minilm"], revision="main")
        tiny = api.model_info(P["tiny"], revision="v1.0", files_metadata=True)
        emit({
            "minilm_sha": info.sha,
            "minilm_siblings": sorted(s.rfilename for s in info.siblings),
            "tiny_sha": tiny.sha,
            "tiny_siblings": {s.rfilename: [s.size, s.lfs.sha256 if s.lfs else None] for s in tiny.siblings},
            "tag_snapshot": snapshot_download(P["tiny"], revision="v1.0", cache_dir=P["cache"]),
            "slash_branch_sha": api.model_info(P["tiny"], revision="release/2026").sha,
            "slash_branch_file": hf_hub_download(P["tiny"], "config.json", revision="release/2026"),
            "files": list_repo_files(P["minilm"]),
        })
        """,
        minilm=MINILM_REPO_ID,
        tiny=TINY,
        cache=tmp_path,
    )
    assert got["minilm_sha"] == hub.minilm_commit
    assert got["minilm_siblings"] == sorted(got["files"])
    assert "1_Pooling/config.json" in got["files"] and "model.safetensors" in got["files"]
    assert got["tiny_sha"] == commit
    weights = _entry(hub, TINY, commit, "weights/model.safetensors")
    assert weights.lfs
    assert got["tiny_siblings"] == {
        "config.json": [8, None],
        "weights/model.safetensors": [200, weights.sha256],
    }
    assert Path(got["tag_snapshot"]).name == commit
    assert got["slash_branch_sha"] == commit
    assert Path(got["slash_branch_file"]).read_bytes() == b'{"v": 1}'


def test_allow_and_ignore_patterns_select_files(hub: Hub, tmp_path: Path) -> None:
    got = run_client(
        hub,
        tmp_path / "home",
        """
        path = snapshot_download(
            P["repo"], revision="main", cache_dir=P["cache"],
            allow_patterns=["*.json", "*.txt"], ignore_patterns=["tokenizer*"],
        )
        emit(files_under(path))
        """,
        repo=MINILM_REPO_ID,
        cache=tmp_path,
    )
    assert got == [
        "1_Pooling/config.json",
        "config.json",
        "config_sentence_transformers.json",
        "data_config.json",
        "modules.json",
        "sentence_bert_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ]


def test_new_revision_moves_the_branch_and_old_commit_still_serves_old_content(
    hub: Hub, tmp_path: Path
) -> None:
    repo = "local-test/moving-model"
    old = publish(hub.root, repo, _write_tree(tmp_path / "a", {"config.json": b"old", "keep.txt": b"k"}))
    new_src = _write_tree(tmp_path / "b", {"config.json": b"new!", "keep.txt": b"k"})
    new = publish(hub.root, repo, new_src)
    assert new != old
    assert publish(hub.root, repo, new_src) == new, "the same content must give the same commit"
    got = run_client(
        hub,
        tmp_path / "home",
        """
        def read(revision):
            path = hf_hub_download(P["repo"], "config.json", revision=revision, cache_dir=P["cache"])
            with open(path) as f:
                return f.read()
        emit({"main_sha": HfApi().model_info(P["repo"]).sha, "main": read("main"), "old": read(P["old"])})
        """,
        repo=repo,
        old=old,
        cache=tmp_path,
    )
    assert got == {"main_sha": new, "main": "new!", "old": "old"}


def test_private_repo_needs_its_token(hub: Hub, tmp_path: Path) -> None:
    commit = publish(
        hub.root,
        PRIVATE,
        _write_tree(tmp_path / "src", {"config.json": b"{}"}),
        private=True,
        read_tokens=[TOKEN],
    )
    code = """
        emit({
            "info": error_of(lambda: HfApi().model_info(P["repo"])),
            "file": error_of(lambda: hf_hub_download(P["repo"], "config.json", cache_dir=P["cache"])),
            "snapshot": error_of(lambda: snapshot_download(P["repo"], cache_dir=P["cache"])),
            "public": error_of(lambda: HfApi().model_info(P["public"])),
        })
        """
    # Any token is accepted for a public repo, as on the Hub.
    params = {"repo": PRIVATE, "public": MINILM_REPO_ID}
    denied = {**dict.fromkeys(("info", "file", "snapshot"), "RepositoryNotFoundError"), "public": None}
    for home, token in (("anonymous", None), ("wrong-token", "hf_not_this_one")):
        assert run_client(hub, tmp_path / home, code, token, **params, cache=tmp_path / home) == denied
    allowed = run_client(hub, tmp_path / "reader", code, TOKEN, **params, cache=tmp_path / "reader")
    assert allowed == dict.fromkeys(("info", "file", "snapshot", "public"))
    resolve = f"{hub.url}/{PRIVATE}/resolve/{commit}/config.json"
    assert httpx.head(resolve).status_code == 401
    assert httpx.head(resolve, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_missing_repo_revision_and_file_raise_typed_errors(hub: Hub, tmp_path: Path) -> None:
    got = run_client(
        hub,
        tmp_path / "home",
        """
        repo, cache, api = P["repo"], P["cache"], HfApi()
        emit({
            "repo_info": error_of(lambda: api.model_info("nobody/nothing")),
            "repo_file": error_of(lambda: hf_hub_download("nobody/nothing", "config.json", cache_dir=cache)),
            "repo_snapshot": error_of(lambda: snapshot_download("nobody/nothing", cache_dir=cache)),
            "rev_info": error_of(lambda: api.model_info(repo, revision="no-such-branch")),
            "rev_file": error_of(lambda: hf_hub_download(repo, "vocab.txt", revision="v9", cache_dir=cache)),
            "rev_snapshot": error_of(lambda: snapshot_download(repo, revision="v9", cache_dir=cache)),
            "commit_file": error_of(
                lambda: hf_hub_download(repo, "config.json", revision="0" * 40, cache_dir=cache)
            ),
            "entry_file": error_of(lambda: hf_hub_download(repo, "no_such.bin", cache_dir=cache)),
        })
        """,
        repo=MINILM_REPO_ID,
        cache=tmp_path,
    )
    assert got == {
        "repo_info": "RepositoryNotFoundError",
        "repo_file": "RepositoryNotFoundError",
        "repo_snapshot": "RepositoryNotFoundError",
        "rev_info": "RevisionNotFoundError",
        "rev_file": "RevisionNotFoundError",
        "rev_snapshot": "RevisionNotFoundError",
        "commit_file": "RevisionNotFoundError",
        "entry_file": "RemoteEntryNotFoundError",
    }


def test_file_headers_ranges_and_no_xet(hub: Hub, minilm_dir: Path) -> None:
    weights = (minilm_dir / "model.safetensors").read_bytes()
    entry = _entry(hub, MINILM_REPO_ID, hub.minilm_commit, "model.safetensors")
    url = f"{hub.url}/{MINILM_REPO_ID}/resolve/main/model.safetensors"

    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == hub.minilm_commit
    assert head.headers["ETag"] == f'"{entry.sha256}"' == head.headers["X-Linked-Etag"]
    assert int(head.headers["Content-Length"]) == int(head.headers["X-Linked-Size"]) == len(weights)
    assert not [h for h in head.headers if h.lower().startswith("x-xet")]

    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(weights)}"
    assert part.content == weights[1000:2000]
    tail = httpx.get(url, headers={"Range": f"bytes={len(weights) - 10}-"})
    assert tail.status_code == 206 and tail.content == weights[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={len(weights)}-"}).status_code == 416

    config = httpx.head(f"{hub.url}/{MINILM_REPO_ID}/resolve/main/config.json")
    assert config.headers["ETag"] == f'"{_entry(hub, MINILM_REPO_ID, hub.minilm_commit, "config.json").oid}"'
    assert "X-Linked-Etag" not in config.headers

    listing = httpx.get(f"{hub.url}/api/models/{MINILM_REPO_ID}/tree/main", params={"recursive": "true"})
    assert listing.status_code == 200
    assert all("xetHash" not in e for e in listing.json())


def test_seeding_again_is_fast_and_copies_nothing(hub: Hub, minilm_dir: Path) -> None:
    weights = _entry(hub, MINILM_REPO_ID, hub.minilm_commit, "model.safetensors")
    blob = HubStore(hub.root).blob_path(weights.sha256)
    before = blob.stat()
    started = time.monotonic()
    assert seed_default_repos(hub.root) == {MINILM_REPO_ID: hub.minilm_commit}
    assert time.monotonic() - started < 1.0
    after = blob.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    if blob.stat().st_dev == (minilm_dir / "model.safetensors").stat().st_dev:
        # Same filesystem: the 90 MB are a hardlink to the installed package, not a copy.
        assert os.path.samefile(blob, minilm_dir / "model.safetensors")


def test_commit_ids_are_content_addressed(tmp_path: Path) -> None:
    src = _write_tree(tmp_path / "src", {"a.txt": b"a", "sub/b.bin": b"b"})
    first = publish(tmp_path / "one", "x/y", src)
    assert first == publish(tmp_path / "two", "other/repo", src)
    assert len(first) == 40 and int(first, 16) >= 0
    (src / "sub" / "b.bin").write_bytes(b"c")
    assert publish(tmp_path / "one", "x/y", src) != first


def test_publish_refuses_bad_input(tmp_path: Path) -> None:
    src = _write_tree(tmp_path / "src", {"a.txt": b"a"})
    with pytest.raises(ValueError, match="namespace/name"):
        publish(tmp_path / "store", "../escape", src)
    with pytest.raises(ValueError, match="read_tokens"):
        publish(tmp_path / "store", "x/private", src, private=True)
    publish(tmp_path / "store", "x/y", src, tag="v1")
    (src / "a.txt").write_bytes(b"changed")
    with pytest.raises(ValueError, match="tags do not move"):
        publish(tmp_path / "store", "x/y", src, tag="v1")


def test_lfs_rules_follow_gitattributes() -> None:
    rules = LfsRules.parse(
        "*.bin filter=lfs diff=lfs merge=lfs -text\nsaved_model/**/* filter=lfs\nkeep.bin -filter\n"
    )
    assert rules.is_lfs("pytorch_model.bin", 10)
    assert rules.is_lfs("onnx/deep/model.bin", 10)
    assert not rules.is_lfs("keep.bin", 10)
    assert rules.is_lfs("saved_model/variables/data", 10)
    assert not rules.is_lfs("config.json", 10)
    assert rules.is_lfs("config.json", 11 * 1024 * 1024)
    assert LfsRules.hub_default().is_lfs("model.safetensors", 1)
