"""Model data unpacking refuses anything that would leave /opt/ml/model (no Docker needed)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from emulator.model_data import ModelDataError, unpack_tarball


def _archive(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_ordinary_model_with_inner_links_unpacks_readable(tmp_path: Path) -> None:
    archive = _archive(
        tmp_path,
        (_file("config.json", 0o600), b"{}"),
        (_file("weights/model.safetensors"), b"w"),
        (_link("model.safetensors", "weights/model.safetensors", tarfile.SYMTYPE), b""),
    )
    target = tmp_path / "model"
    target.mkdir()
    unpack_tarball(archive, target)
    assert (target / "config.json").read_text() == "{}"
    assert (target / "model.safetensors").resolve() == (target / "weights/model.safetensors").resolve()


def test_absolute_member_lands_inside(tmp_path: Path) -> None:
    archive = _archive(tmp_path, (_file("/etc/evil"), b"x"))
    target = tmp_path / "model"
    target.mkdir()
    unpack_tarball(archive, target)
    assert (target / "etc" / "evil").read_bytes() == b"x"
    assert not Path("/etc/evil").exists()


@pytest.mark.parametrize(
    ("member", "data"),
    [
        (_file("../escape.txt"), b"x"),
        (_file("a/../../escape.txt"), b"x"),
        (_link("passwd", "/etc/passwd", tarfile.SYMTYPE), b""),
        (_link("up", "../../outside", tarfile.SYMTYPE), b""),
        (_link("hard", "/etc/passwd", tarfile.LNKTYPE), b""),
    ],
    ids=["dotdot", "nested-dotdot", "absolute-symlink", "symlink-up", "hardlink-out"],
)
def test_escaping_member_is_refused(tmp_path: Path, member: tarfile.TarInfo, data: bytes) -> None:
    archive = _archive(tmp_path, (member, data))
    target = tmp_path / "deep" / "model"
    target.mkdir(parents=True)
    with pytest.raises(ModelDataError, match="unsafe and was not unpacked"):
        unpack_tarball(archive, target)
    assert not (tmp_path / "deep" / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_device_file_is_refused(tmp_path: Path) -> None:
    device = tarfile.TarInfo("null")
    device.type = tarfile.CHRTYPE
    device.devmajor, device.devminor = 1, 3
    archive = _archive(tmp_path, (device, b""))
    target = tmp_path / "model"
    target.mkdir()
    with pytest.raises(ModelDataError, match="unsafe"):
        unpack_tarball(archive, target)


def test_not_a_tarball(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(os.urandom(64))
    with pytest.raises(ModelDataError, match="not a readable gzipped tarball"):
        unpack_tarball(archive, tmp_path)
