from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tasks.artifact.model_source import ModelSnapshot
from tasks.artifact.packaging import build_artifact, manifest_digest, prune_packages, write_tar_gz
from tasks.config import PackagingConfig
from tasks.core.errors import PackagingFailed

FILES = {
    "config.json": b'{"hidden_size": 8}',
    "model.safetensors": os.urandom(3 << 20) + bytes(1 << 20),
    "1_Pooling/config.json": b"{}",
    "tokenizer.json": b"{" + b'"a": 1,' * 5000 + b"}",
}


def _snapshot(root: Path, files: dict[str, bytes] = FILES) -> ModelSnapshot:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return ModelSnapshot(str(root), tuple(sorted(files)), sum(len(d) for d in files.values()))


def test_same_input_gives_the_same_bytes_whatever_the_threads_or_times(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    first = build_artifact(snap, PackagingConfig(threads=1), tmp_path / "a")
    os.utime(tmp_path / "model" / "config.json", (1, 1))
    (tmp_path / "model" / "config.json").chmod(0o600)
    second = build_artifact(snap, PackagingConfig(threads=3), tmp_path / "b")
    assert first.digest == second.digest
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()
    assert hashlib.sha256(Path(first.path).read_bytes()).hexdigest() == first.digest
    assert Path(first.path) == tmp_path / "a" / first.digest / "model.tar.gz"
    assert first.size_bytes == Path(first.path).stat().st_size
    assert first.kind == "tar.gz" and first.compression == "Gzip"


def test_changed_content_changes_the_digest(tmp_path: Path) -> None:
    first = build_artifact(_snapshot(tmp_path / "m1"), PackagingConfig(), tmp_path / "out")
    changed = dict(FILES, **{"config.json": b'{"hidden_size": 9}'})
    second = build_artifact(_snapshot(tmp_path / "m2", changed), PackagingConfig(), tmp_path / "out")
    assert first.digest != second.digest


def test_archive_is_a_plain_tar_gz_with_fixed_metadata(tmp_path: Path) -> None:
    artifact = build_artifact(_snapshot(tmp_path / "model"), PackagingConfig(), tmp_path / "out")
    with tarfile.open(artifact.path, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(FILES)
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.mode, member.uname) == (0, 0, 0, 0o644, "")
            handle = tar.extractfile(member)
            assert handle is not None and handle.read() == FILES[member.name]
    # GNU tar, the way SageMaker unpacks model.tar.gz, reads it too.
    listing = subprocess.run(
        ["tar", "-tzf", artifact.path], check=True, capture_output=True, text=True
    ).stdout
    assert listing.split() == sorted(FILES)
    with open(artifact.path, "rb") as raw:
        header = raw.read(10)
    assert header[4:8] == b"\0\0\0\0", "gzip header must carry no timestamp"


def test_symlinked_files_are_packaged_by_content(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_bytes(b"weights")
    snap_dir = tmp_path / "snapshot"
    snap_dir.mkdir()
    (snap_dir / "model.safetensors").symlink_to(blobs / "abc")
    artifact = build_artifact(
        ModelSnapshot(str(snap_dir), ("model.safetensors",), 7), PackagingConfig(), tmp_path / "out"
    )
    with tarfile.open(artifact.path, "r:gz") as tar:
        member = tar.getmember("model.safetensors")
        assert member.isfile() and member.size == 7


def test_progress_reports_every_source_byte(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    seen: list[int] = []
    build_artifact(snap, PackagingConfig(), tmp_path / "out", on_progress=seen.append)
    assert sum(seen) == snap.total_bytes


def test_refuses_members_outside_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative paths"):
        write_tar_gz(tmp_path, ["../etc/passwd"], tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match="relative paths"):
        write_tar_gz(tmp_path, ["/etc/passwd"], tmp_path / "x.tar.gz")


def test_prefix_layout_keeps_files_as_they_are(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    artifact = build_artifact(snap, PackagingConfig(format="s3_prefix"), tmp_path / "out")
    assert artifact.kind == "prefix" and artifact.compression == "None"
    assert artifact.path == str(tmp_path / "model")
    assert artifact.files == tuple(sorted(FILES))
    by_path = {d.path: d for d in artifact.file_digests}
    assert by_path["config.json"].sha256 == hashlib.sha256(FILES["config.json"]).hexdigest()
    assert artifact.digest == manifest_digest(artifact.file_digests)
    again = build_artifact(_snapshot(tmp_path / "copy"), PackagingConfig(format="s3_prefix"))
    assert again.digest == artifact.digest, "the digest depends on content, not on where the files are"
    assert not (tmp_path / "out").exists(), "the prefix layout writes nothing"


def test_old_archives_are_pruned_from_the_worker(tmp_path: Path) -> None:
    old = tmp_path / ("a" * 64) / "model.tar.gz"
    fresh = tmp_path / ("b" * 64) / "model.tar.gz"
    for archive in (old, fresh):
        archive.parent.mkdir()
        archive.write_bytes(b"x")
    os.utime(old, (1000, 1000))
    assert prune_packages(tmp_path, 3600, now=10_000) == [old]
    assert not old.parent.exists() and fresh.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to make writes fail")
def test_a_full_disk_fails_naming_the_folder_and_leaves_no_partial_archive(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # The archive is written to this name first; /dev/full answers every write with ENOSPC.
    (out / f".model.tar.gz.{os.getpid()}.partial").symlink_to("/dev/full")
    with pytest.raises(PackagingFailed) as failed:
        build_artifact(_snapshot(tmp_path / "model"), PackagingConfig(), out)
    assert failed.value.path == str(out)
    assert "no space left on device" in failed.value.problem
    assert "SAGEMAKER_RELEASE_STATE_DIR" in failed.value.fix and "s3_prefix" in failed.value.fix
    assert str(failed.value).startswith(f"PackagingFailed: {out}: no space left")
    assert list(out.iterdir()) == [], "the partial archive must be removed"


def test_a_model_file_gone_before_packaging_is_named(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path / "model")
    (tmp_path / "model" / "tokenizer.json").unlink()
    with pytest.raises(PackagingFailed, match="disappeared between download and packaging") as failed:
        build_artifact(snap, PackagingConfig(), tmp_path / "out")
    assert failed.value.path == str(tmp_path / "model" / "tokenizer.json")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to make writes fail")
def test_a_full_disk_while_compressing_a_large_mapped_file_is_not_hidden(tmp_path: Path) -> None:
    # Large enough that blocks cut from the memory map are still in flight when the write fails.
    files = {"model.safetensors": os.urandom(24 << 20)}
    out = tmp_path / "out"
    out.mkdir()
    (out / f".model.tar.gz.{os.getpid()}.partial").symlink_to("/dev/full")
    with pytest.raises(PackagingFailed, match="no space left on device") as failed:
        build_artifact(_snapshot(tmp_path / "model", files), PackagingConfig(threads=2), out)
    chain: list[BaseException] = []
    error: BaseException | None = failed.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert not [e for e in chain if isinstance(e, BufferError)], "the map must close cleanly"
    assert list(out.iterdir()) == []
