"""timeouts.download_s and timeouts.upload_s bound the model's download and upload."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tasks.artifact import model_source, storage
from tasks.artifact.model_source import ModelSnapshot, fetch_snapshot
from tasks.artifact.packaging import ModelArtifact, build_artifact
from tasks.config import ModelSourceConfig, PackagingConfig, StorageConfig
from tasks.core.errors import WaitTimeout
from tasks.core.waiting import FakeClock
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore

REPO = "local-test/tiny-model"
COMMIT = "0" * 40
BUCKET = "models-bucket"


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit is resolved without a Hub: these tests are about the download that follows."""
    monkeypatch.setattr(model_source, "resolve_commit", lambda source, token: COMMIT)


@pytest.fixture
def stuck_download(monkeypatch: pytest.MonkeyPatch, pinned: None) -> Iterator[threading.Event]:
    """A download that never ends until the test lets it go."""
    release = threading.Event()

    def never_done(*args: Any, **kwargs: Any) -> str:
        release.wait(60)
        raise RuntimeError("released")

    monkeypatch.setattr(model_source, "snapshot_download", never_done)
    yield release
    release.set()


def test_a_download_within_its_timeout_returns_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned: None
) -> None:
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 10)
    monkeypatch.setattr(model_source, "snapshot_download", lambda *args, **kwargs: str(folder))
    snapshot = fetch_snapshot(ModelSourceConfig(repo_id=REPO), tmp_path / "cache", timeout_s=30)
    assert snapshot.commit == COMMIT and snapshot.files == ("config.json", "model.safetensors")


def test_a_download_past_timeouts_download_s_is_a_wait_timeout_naming_the_field(
    tmp_path: Path, stuck_download: threading.Event
) -> None:
    with pytest.raises(WaitTimeout) as caught:
        fetch_snapshot(ModelSourceConfig(repo_id=REPO), tmp_path / "cache", timeout_s=0.2)
    assert "timeouts.download_s" in str(caught.value) and f"{REPO}@{COMMIT}" in str(caught.value)
    assert caught.value.last_status == "downloading"


def test_a_failing_download_raises_its_own_error_under_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned: None
) -> None:
    def refused(*args: Any, **kwargs: Any) -> str:
        raise PermissionError("the cache folder is read-only")

    monkeypatch.setattr(model_source, "snapshot_download", refused)
    with pytest.raises(PermissionError, match="read-only"):
        fetch_snapshot(ModelSourceConfig(repo_id=REPO), tmp_path / "cache", timeout_s=30)


def _artifact(tmp_path: Path) -> ModelArtifact:
    root = tmp_path / "model"
    root.mkdir()
    files = {"config.json": b"{}", "model.safetensors": b"w" * 4096}
    for name, data in files.items():
        (root / name).write_bytes(data)
    snapshot = ModelSnapshot(str(root), tuple(sorted(files)), sum(map(len, files.values())))
    return build_artifact(snapshot, PackagingConfig.model_validate({"format": "tar.gz"}), tmp_path / "pkg")


def _ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(LocalLedgerStore(tmp_path / "r1.json"), "r1")


def _storage() -> StorageConfig:
    return StorageConfig.model_validate({"bucket": BUCKET, "prefix": "team/sr"})


def test_an_upload_within_its_timeout_stores_the_model(mocked_aws: None, tmp_path: Path) -> None:
    storage.ensure_bucket(_storage().model_copy(update={"create_bucket": True}))
    uploaded = storage.store_artifact(_artifact(tmp_path), _storage(), _ledger(tmp_path), timeout_s=60)
    assert uploaded.uploaded_objects == 1 and uploaded.model_data_url.startswith(f"s3://{BUCKET}/")


class _Unfinished:
    def done(self) -> bool:
        return False

    def result(self) -> None:
        raise AssertionError("an unfinished upload's result is never asked for")


class _StuckManager:
    """A transfer manager whose uploads never finish; records how the `with` block ended."""

    def __init__(self) -> None:
        self.exited_with: BaseException | None = None

    def __enter__(self) -> _StuckManager:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exited_with = exc

    def upload(self, *args: Any, **kwargs: Any) -> _Unfinished:
        return _Unfinished()


def test_an_upload_past_timeouts_upload_s_is_cancelled_and_names_the_field(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.ensure_bucket(_storage().model_copy(update={"create_bucket": True}))
    manager = _StuckManager()
    monkeypatch.setattr(storage, "create_transfer_manager", lambda client, config: manager)
    clock = FakeClock()
    ledger = _ledger(tmp_path)
    with pytest.raises(WaitTimeout) as caught:
        storage.store_artifact(_artifact(tmp_path), _storage(), ledger, timeout_s=45, clock=clock)
    assert "timeouts.upload_s" in str(caught.value) and "1 of 1 file(s) unfinished" in str(caught.value)
    assert clock.now == pytest.approx(45)
    # The exception left the transfer manager's block: that is what cancels the uploads in flight.
    assert manager.exited_with is caught.value
    assert not [e for e in ledger.entries if "/model-refs/" not in e.resource_id]
