"""Download from a local folder, and from the Hub-compatible server run in-process on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from emulator.hub import publish
from emulator.hub.app import create_app
from tasks.artifact.model_source import fetch_snapshot, has_model_files
from tasks.config import ModelSourceConfig
from tasks.core.errors import ConfigError

REPO = "local-test/tiny-model"
PRIVATE = "local-test/private-model"
TOKEN = "hf_local_read_token"


@dataclass(frozen=True)
class Hub:
    url: str
    root: Path
    first: str
    second: str


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub")
    v1 = _write(
        tmp_path_factory.mktemp("v1"),
        {"config.json": b"{}", "model.safetensors": b"w1" * 100, "onnx/model.onnx": b"o"},
    )
    v2 = _write(
        tmp_path_factory.mktemp("v2"),
        {"config.json": b"{}", "model.safetensors": b"w2" * 100, "onnx/model.onnx": b"o"},
    )
    first = publish(root, REPO, v1)
    second = publish(root, REPO, v2)
    publish(root, PRIVATE, v1, private=True, read_tokens=[TOKEN])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(root), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the in-process hub did not start within 10 s"
        time.sleep(0.02)
    yield Hub(url, root, first, second)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def at_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hub


def test_branch_is_resolved_to_its_commit_and_that_commit_downloaded(at_hub: Hub, tmp_path: Path) -> None:
    snapshot = fetch_snapshot(
        ModelSourceConfig(repo_id=REPO, revision="main", ignore_patterns=["onnx/*"]), tmp_path
    )
    assert snapshot.commit == at_hub.second and snapshot.revision == "main"
    assert snapshot.files == ("config.json", "model.safetensors")
    assert (Path(snapshot.path) / "model.safetensors").read_bytes() == b"w2" * 100
    assert snapshot.total_bytes == 202


def test_an_older_commit_downloads_as_it_was(at_hub: Hub, tmp_path: Path) -> None:
    snapshot = fetch_snapshot(ModelSourceConfig(repo_id=REPO, revision=at_hub.first), tmp_path)
    assert snapshot.commit == at_hub.first
    assert (Path(snapshot.path) / "model.safetensors").read_bytes() == b"w1" * 100
    assert "onnx/model.onnx" in snapshot.files


def test_private_repo_needs_the_token_from_the_environment(
    at_hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = ModelSourceConfig(repo_id=PRIVATE, token_env="MY_HUB_TOKEN")
    monkeypatch.delenv("MY_HUB_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        fetch_snapshot(source, tmp_path)
    assert caught.value.field == "model.repo_id" and "export MY_HUB_TOKEN" in caught.value.fix
    monkeypatch.setenv("MY_HUB_TOKEN", TOKEN)
    assert fetch_snapshot(source, tmp_path).commit is not None


def test_unknown_revision_and_repo_are_config_errors(at_hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        fetch_snapshot(ModelSourceConfig(repo_id=REPO, revision="no-such-branch"), tmp_path)
    assert caught.value.field == "model.revision"
    with pytest.raises(ConfigError) as caught:
        fetch_snapshot(ModelSourceConfig(repo_id="local-test/absent"), tmp_path)
    assert caught.value.field == "model.repo_id" and "check the repo id" in caught.value.fix


def test_patterns_that_drop_every_weight_are_refused(at_hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        fetch_snapshot(ModelSourceConfig(repo_id=REPO, allow_patterns=["*.json"]), tmp_path)
    assert caught.value.field == "model.repo_id"
    assert "model.allow_patterns" in caught.value.fix and "config.json" in caught.value.problem


def test_local_folder(minilm_dir: Path) -> None:
    snapshot = fetch_snapshot(ModelSourceConfig(local_path=str(minilm_dir)))
    assert snapshot.commit is None and snapshot.repo_id is None
    assert "model.safetensors" in snapshot.files and "1_Pooling/config.json" in snapshot.files
    assert list(snapshot.files) == sorted(snapshot.files)


def test_local_folder_without_weights_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"config.json": b"{}", "tokenizer.json": b"{}", "README.md": b"# model"})
    with pytest.raises(ConfigError) as caught:
        fetch_snapshot(ModelSourceConfig(local_path=str(tmp_path)))
    assert caught.value.field == "model.local_path"
    assert "no model files" in caught.value.problem and "*.safetensors" in caught.value.fix


def test_local_folder_with_custom_code_is_a_model(tmp_path: Path) -> None:
    _write(tmp_path, {"code/inference.py": b"def model_fn(d): ...", "code/requirements.txt": b""})
    assert fetch_snapshot(ModelSourceConfig(local_path=str(tmp_path))).files == (
        "code/inference.py",
        "code/requirements.txt",
    )


def test_missing_local_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        fetch_snapshot(ModelSourceConfig(local_path=str(tmp_path / "nope")))
    assert caught.value.field == "model.local_path"


def test_weight_detection() -> None:
    assert has_model_files(["sub/model-00001-of-00002.safetensors"])
    assert (
        has_model_files(["model.gguf"])
        and has_model_files(["pytorch_model.bin"])
        and has_model_files(["m.joblib"])
    )
    assert not has_model_files(["config.json", "tokenizer.model", "vocab.txt"])
