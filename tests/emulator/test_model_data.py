"""Model data: S3 objects unpacked into the cache, or refused with a reason naming the member.

No Docker and no stack: S3 is moto in-process. The attacks themselves are in tests/unit/test_archives.py;
here, what the cache makes of them: a ModelDataError that says what to fix, and nothing left behind.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator.fleet.model_data import ModelDataCache, ModelDataError, ModelDataSpec, unpack_tarball
from emulator.settings import Limits

BUCKET = "model-data-tests"


def _tar_gz(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(buffer.getvalue())


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _spec(s3: Any, body: bytes, key: str = "m/model.tar.gz") -> ModelDataSpec:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return ModelDataSpec(f"s3://{BUCKET}/{key}", "S3Object", "Gzip")


def _limits(**overrides: int) -> Limits:
    return Limits(
        startup_health_timeout=60,
        model_download_timeout=60,
        image_pull_timeout=60,
        invocation_timeout=60,
        instance_quota=10,
        **overrides,
    )


def test_an_ordinary_tarball_is_unpacked_readable_and_cached(tmp_path: Path, s3: Any) -> None:
    cache = ModelDataCache(tmp_path / "cache", lambda: s3, _limits())
    spec = _spec(s3, _tar_gz(_file("config.json", b"{}", mode=0o600), _file("code/inference.py", b"x=1")))

    prepared = cache.prepare(spec)

    assert (prepared.path / "config.json").read_bytes() == b"{}"
    assert (prepared.path / "config.json").stat().st_mode & 0o444 == 0o444  # any container user reads it
    assert (prepared.path / "code" / "inference.py").read_bytes() == b"x=1"
    assert cache.prepare(spec) == prepared


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        (_symlink("passwd", "/etc/passwd"), "member 'passwd' is a symbolic link (to '/etc/passwd')"),
        (_file("../escape.txt", b"x"), "member '../escape.txt' has '..' in its name"),
        (_file("/etc/evil", b"x"), "member '/etc/evil' has an absolute name"),
    ],
    ids=["symlink", "dotdot", "absolute"],
)
def test_an_unsafe_tarball_fails_naming_the_member_and_leaves_nothing(
    tmp_path: Path, s3: Any, member: tuple[tarfile.TarInfo, bytes], fragment: str
) -> None:
    cache = ModelDataCache(tmp_path / "cache", lambda: s3, _limits())
    spec = _spec(s3, _tar_gz(_file("config.json", b"{}"), member))

    with pytest.raises(ModelDataError) as failed:
        cache.prepare(spec)

    message = str(failed.value)
    assert "model data tarball is unsafe and was not unpacked" in message
    assert fragment in message
    assert "Repack it with regular files and folders only" in message
    assert list((tmp_path / "cache").iterdir()) == []  # the partial unpack is gone
    assert not (tmp_path / "escape.txt").exists()


def test_the_byte_limit_comes_from_the_emulators_limits(tmp_path: Path, s3: Any) -> None:
    bomb = _tar_gz(_file("weights.bin", bytes(32 << 20)))
    assert len(bomb) < 100_000
    small = ModelDataCache(tmp_path / "small", lambda: s3, _limits(archive_max_bytes=1 << 20))
    roomy = ModelDataCache(tmp_path / "roomy", lambda: s3, _limits())
    spec = _spec(s3, bomb)

    with pytest.raises(ModelDataError) as failed:
        small.prepare(spec)
    assert "member 'weights.bin' has 33554432 bytes, which would unpack past the limit of 1048576" in str(
        failed.value
    )
    assert "SAGEMAKER_EMULATOR_ARCHIVE_MAX_BYTES" in str(failed.value)
    assert list((tmp_path / "small").iterdir()) == []
    assert (roomy.prepare(spec).path / "weights.bin").stat().st_size == 32 << 20


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_EMULATOR_ARCHIVE_MAX_BYTES", "4096")
    monkeypatch.setenv("SAGEMAKER_EMULATOR_ARCHIVE_MAX_MEMBERS", "3")
    cache = ModelDataCache(Path("/nonexistent"), lambda: None)
    assert (cache.archive_limits.max_bytes, cache.archive_limits.max_members) == (4096, 3)
    monkeypatch.setenv("SAGEMAKER_EMULATOR_ARCHIVE_MAX_MEMBERS", "many")
    with pytest.raises(ValueError, match="SAGEMAKER_EMULATOR_ARCHIVE_MAX_MEMBERS='many' is not a whole"):
        Limits.from_env()


def test_not_a_tarball(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(os.urandom(64))
    with pytest.raises(ModelDataError, match="not a readable gzipped tarball"):
        unpack_tarball(archive, tmp_path)


def test_a_name_the_disk_refuses_is_reported_as_such(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_tar_gz(_file("n" * 300, b"x")))
    target = tmp_path / "model"
    target.mkdir()
    with pytest.raises(ModelDataError, match="could not be unpacked on this machine: member 'nnn"):
        unpack_tarball(archive, target)


def test_prune_keeps_a_held_copy_until_it_is_released(tmp_path: Path, s3: Any) -> None:
    cache = ModelDataCache(tmp_path / "cache", lambda: s3, _limits())
    held = cache.prepare(
        _spec(s3, _tar_gz(_file("tokenizer.json", b"{}")), key="held/model.tar.gz"), hold=True
    )
    loose = cache.prepare(_spec(s3, _tar_gz(_file("config.json", b"{}")), key="loose/model.tar.gz"))

    cache.prune(keep=set())

    assert (held.path / "tokenizer.json").read_bytes() == b"{}", "a transform job's data outlives prune"
    assert not loose.path.exists()
    cache.release(held.cache_key)
    assert cache.held() == set()
    cache.prune(keep=set())
    assert not held.path.exists()


def test_a_prepare_that_fails_holds_nothing(tmp_path: Path, s3: Any) -> None:
    cache = ModelDataCache(tmp_path / "cache", lambda: s3, _limits())
    spec = _spec(s3, _tar_gz(_symlink("passwd", "/etc/passwd")))

    with pytest.raises(ModelDataError):
        cache.prepare(spec, hold=True)

    assert cache.held() == set()
