"""An unchanged model is not compressed again on the same worker; any change to its files is."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tasks.artifact import package_cache, packaging
from tasks.artifact.model_source import ModelSnapshot
from tasks.artifact.packaging import build_artifact, prune_packages
from tasks.config import PackagingConfig

FILES = {"config.json": b'{"hidden_size": 8}', "model.safetensors": os.urandom(1 << 20)}


def _snapshot(root: Path, files: dict[str, bytes] = FILES) -> ModelSnapshot:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return ModelSnapshot(str(root), tuple(sorted(files)), sum(len(d) for d in files.values()))


def _no_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> tuple[str, int]:
        raise AssertionError("the model was compressed again")

    monkeypatch.setattr(packaging, "write_tar_gz", refuse)


def test_the_same_files_reuse_the_archive_without_compressing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = _snapshot(tmp_path / "model")
    first = build_artifact(snap, PackagingConfig(), tmp_path / "out")
    _no_compression(monkeypatch)

    again = build_artifact(snap, PackagingConfig(), tmp_path / "out")

    assert again.reused and not first.reused
    assert (again.digest, again.path, again.size_bytes) == (first.digest, first.path, first.size_bytes)


def test_a_rewritten_file_is_packaged_again_even_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    first = build_artifact(snap, PackagingConfig(), tmp_path / "out")
    weights = tmp_path / "model" / "model.safetensors"
    stat = weights.stat()
    time.sleep(0.01)
    weights.write_bytes(os.urandom(1 << 20))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # cp -p, or a tool that keeps times

    second = build_artifact(snap, PackagingConfig(), tmp_path / "out")

    assert not second.reused and second.digest != first.digest


def test_another_compression_level_is_another_archive(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    build_artifact(snap, PackagingConfig(compression_level=1), tmp_path / "out")

    assert not build_artifact(snap, PackagingConfig(compression_level=3), tmp_path / "out").reused


def test_a_pruned_or_cut_short_archive_is_packaged_again(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    first = build_artifact(snap, PackagingConfig(), tmp_path / "out")
    with open(first.path, "r+b") as archive:
        archive.truncate(100)

    again = build_artifact(snap, PackagingConfig(), tmp_path / "out")

    assert not again.reused and again.digest == first.digest
    assert Path(again.path).stat().st_size == first.size_bytes
    Path(again.path).unlink()
    assert not build_artifact(snap, PackagingConfig(), tmp_path / "out").reused


def test_old_entries_are_pruned_with_the_archives(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    build_artifact(snap, PackagingConfig(), tmp_path / "out")
    index = tmp_path / "out" / package_cache.INDEX_DIR
    assert len(list(index.glob("*.json"))) == 1

    prune_packages(tmp_path / "out", max_age_s=60, now=time.time() + 3600)

    assert list(index.glob("*.json")) == []
    assert list((tmp_path / "out").glob("*/model.tar.gz")) == []
