"""emulator/fleet/archives.py: model archives a user uploaded, unpacked member by member by our own reader.

Each attack gets its own crafted archive, built by hand with tarfile.TarInfo; each must be refused
naming the member, with nothing written outside the folder. No stack needed.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from emulator.fleet.archives import (
    HEADER_LIMIT,
    ArchiveLimits,
    UnpackFailed,
    UnreadableArchive,
    UnsafeArchive,
    gunzip,
    unpack_tar_gz,
)
from tasks.artifact.packaging import write_tar_gz

Member = tuple[tarfile.TarInfo, bytes]


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _folder(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, b""


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def _tar(*members: Member, fmt: int = tarfile.PAX_FORMAT, pax_headers: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, pax_headers=pax_headers) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The folder archives unpack into, two levels below tmp_path so escapes have somewhere to go."""
    folder = tmp_path / "deep" / "model"
    folder.mkdir(parents=True)
    return folder


def _unpack(raw_tar: bytes, target: Path, **limits: int) -> None:
    archive = target.parent / "model.tar.gz"
    archive.write_bytes(gzip.compress(raw_tar, 6))
    unpack_tar_gz(archive, target, ArchiveLimits(**limits))


def _everything_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _refused(raw_tar: bytes, target: Path, member: str, reason: str, **limits: int) -> UnsafeArchive:
    before = _everything_under(target.parents[1])
    with pytest.raises(UnsafeArchive) as refused:
        _unpack(raw_tar, target, **limits)
    assert refused.value.member == member
    assert reason in refused.value.reason
    outside = _everything_under(target.parents[1]) - before
    assert {path for path in outside if not path.startswith(("deep/model", "deep/model.tar.gz"))} == set()
    return refused.value


# -- archives that unpack -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["ustar", "gnu", "pax"]
)
def test_an_ordinary_model_unpacks_byte_for_byte(model: Path, fmt: int) -> None:
    long_folder = "tokenizer/" + "n" * 90 + "/" + "m" * 60  # past ustar's 100-byte name field
    files = {
        "config.json": b'{"hidden_size": 32}',
        "model.safetensors": os.urandom(300_000),
        "empty.txt": b"",
        f"{long_folder}/vocab.txt": b"a\nb\n",
        "code/inference.py": b"def model_fn(d):\n    return d\n",
    }
    members = [_folder("."), _folder("code"), _folder("./tokenizer")]
    members += [_file(f"./{name}" if name == "config.json" else name, data) for name, data in files.items()]
    members.append(_file("code/run.sh", b"#!/bin/sh\n", mode=0o4755))
    if fmt == tarfile.PAX_FORMAT:
        members.append(_file("código/ünïcode.txt", b"u"))

    _unpack(_tar(*members, fmt=fmt), model)

    for name, data in files.items():
        assert (model / name).read_bytes() == data
    run = (model / "code" / "run.sh").stat().st_mode
    assert run & 0o111 and not run & (0o4000 | 0o2000)  # executable stays so; setuid never
    assert (model / "config.json").stat().st_mode & 0o777 == 0o644
    if fmt == tarfile.PAX_FORMAT:
        assert (model / "código" / "ünïcode.txt").read_bytes() == b"u"


def test_archives_made_by_gnu_tar_and_by_git_archive_unpack(tmp_path: Path, model: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / ("w" * 150)).write_bytes(b"weights")
    (source / "config.json").write_text("{}")
    archive = tmp_path / "deep" / "model.tar.gz"
    subprocess.run(["tar", "--format=pax", "-czf", str(archive), "-C", str(source), "."], check=True)
    unpack_tar_gz(archive, model)
    assert (model / "sub" / ("w" * 150)).read_bytes() == b"weights"

    # git archive starts with a pax global header holding the commit id.
    again = tmp_path / "again"
    again.mkdir()
    _unpack(_tar(_file("a.txt", b"a"), pax_headers={"comment": "0" * 40}), again)
    assert (again / "a.txt").read_bytes() == b"a"


def test_the_releases_own_packaging_unpacks(tmp_path: Path, model: Path) -> None:
    source = tmp_path / "snapshot"
    (source / "onnx").mkdir(parents=True)
    (source / "onnx" / "model.onnx").write_bytes(os.urandom(5 << 20))
    (source / "config.json").write_text("{}")
    archive = tmp_path / "deep" / "model.tar.gz"
    write_tar_gz(source, ["config.json", "onnx/model.onnx"], archive, threads=2)
    unpack_tar_gz(archive, model)
    assert (model / "onnx" / "model.onnx").read_bytes() == (source / "onnx" / "model.onnx").read_bytes()


# -- one crafted archive per attack -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "name", "reason"),
    [
        (_file("../escape.txt"), "../escape.txt", "'..' in its name"),
        (_file("a/../../escape.txt"), "a/../../escape.txt", "'..' in its name"),
        (_file("/etc/evil"), "/etc/evil", "absolute name"),
        (_special("passwd", tarfile.SYMTYPE, "/etc/passwd"), "passwd", "a symbolic link (to '/etc/passwd')"),
        (_special("up", tarfile.SYMTYPE, "../../outside"), "up", "a symbolic link"),
        (_special("inside", tarfile.SYMTYPE, "config.json"), "inside", "a symbolic link"),
        (_special("hard", tarfile.LNKTYPE, "/etc/passwd"), "hard", "a hard link (to '/etc/passwd')"),
        (_special("hard", tarfile.LNKTYPE, "config.json"), "hard", "a hard link"),
        (_special("null", tarfile.CHRTYPE), "null", "a character device"),
        (_special("sda", tarfile.BLKTYPE), "sda", "a block device"),
        (_special("pipe", tarfile.FIFOTYPE), "pipe", "a FIFO"),
        (_special("holes", tarfile.GNUTYPE_SPARSE), "holes", "a sparse file"),
        (_special("label", b"V"), "label", "a volume label"),
        (_special("odd", b"Z"), "odd", "of unknown type b'Z'"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-absolute",
        "symlink-up",
        "symlink-inside",
        "hardlink-out",
        "hardlink-inside",
        "char-device",
        "block-device",
        "fifo",
        "gnu-sparse",
        "volume-label",
        "unknown-type",
    ],
)
def test_a_dangerous_member_is_refused_by_name(model: Path, member: Member, name: str, reason: str) -> None:
    _refused(_tar(_file("config.json", b"{}"), member, fmt=tarfile.GNU_FORMAT), model, name, reason)
    assert not (model.parents[1] / "escape.txt").exists()


def test_a_pax_sparse_file_is_refused(model: Path) -> None:
    info, data = _file("holes.bin", b"\0" * 512)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "10"}
    _refused(_tar((info, data)), model, "holes.bin", "a sparse file")


def test_a_member_under_a_file_is_refused(model: Path) -> None:
    _refused(_tar(_file("weights"), _file("weights/evil")), model, "weights/evil", "which is no folder")


def test_a_member_under_a_link_already_in_the_folder_is_not_followed(tmp_path: Path, model: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (model / "cache").symlink_to(outside)
    _refused(_tar(_file("cache/evil.txt")), model, "cache/evil.txt", "'cache', which is no folder")
    assert list(outside.iterdir()) == []


def test_a_file_twice_is_refused_rather_than_overwritten(model: Path) -> None:
    _refused(_tar(_file("a.txt", b"1"), _file("a.txt", b"2")), model, "a.txt", "appears twice")


def test_the_filter_bypass_chain_is_refused_at_its_first_link(tmp_path: Path, model: Path) -> None:
    """The CVE-2025-4517 shape: links through folders whose resolved path passes PATH_MAX, so
    os.path.realpath stops resolving and tarfile's data filter (before 3.11.13) judges the last link by
    its spelling, while the kernel follows it out of the folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    long_part, steps = "d" * 247, "abcdefghijklmnop"
    members: list[Member] = []
    prefix = ""
    for step in steps:
        members.append(_folder(os.path.join(prefix, long_part)))
        members.append(_special(os.path.join(prefix, step), tarfile.SYMTYPE, long_part))
        prefix = os.path.join(prefix, long_part)
    deepest = os.path.join(*steps, "l" * 254)
    members.append(_special(deepest, tarfile.SYMTYPE, "../" * len(steps)))
    members.append(_special("escape", tarfile.SYMTYPE, deepest + "/../../outside"))
    members.append(_file("escape/pwned.txt", b"pwned"))

    _refused(_tar(*members), model, "a", "a symbolic link (to '" + long_part + "')")
    assert list(outside.iterdir()) == []
    assert not any(path.is_symlink() for path in model.rglob("*"))


def test_a_decompression_bomb_is_refused_before_its_data_is_read(model: Path) -> None:
    raw = _tar(_file("config.json", b"{}"), _file("weights.bin", bytes(256 << 20)))
    archive = model.parent / "model.tar.gz"
    archive.write_bytes(gzip.compress(raw, 9))
    assert archive.stat().st_size < 300_000  # 256 MiB of zeros in a few hundred KiB

    started = time.monotonic()
    with pytest.raises(UnsafeArchive) as refused:
        unpack_tar_gz(archive, model, ArchiveLimits(max_bytes=1 << 20))
    assert refused.value.member == "weights.bin"
    assert f"has {256 << 20} bytes, which would unpack past the limit of {1 << 20} bytes" in str(
        refused.value
    )
    assert not (model / "weights.bin").exists()
    assert time.monotonic() - started < 5  # refused from the header, not after inflating it


def test_many_small_files_stop_at_the_byte_limit(model: Path) -> None:
    members = [_file(f"shard-{n:03}.bin", bytes(100_000)) for n in range(30)]
    refused = _refused(_tar(*members), model, "shard-010.bin", "past the limit of 1048576", max_bytes=1 << 20)
    assert refused.member == "shard-010.bin"
    assert sum(path.stat().st_size for path in model.iterdir()) <= 1 << 20


def test_the_member_count_is_capped(model: Path) -> None:
    members = [_file(f"f{n}.txt") for n in range(6)]
    _refused(_tar(*members), model, "f5.txt", "past the limit of 5 members", max_members=5)


def _pax_claiming(size: int) -> bytes:
    """A pax header that says `size` bytes of records follow (zeros), then an ordinary file."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, size
    body = header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(size + (-size % 512))
    return body + _tar(_file("a.txt"), fmt=tarfile.USTAR_FORMAT)


def test_a_huge_pax_header_is_refused_without_reading_it_into_memory(model: Path) -> None:
    archive = model.parent / "model.tar.gz"
    archive.write_bytes(gzip.compress(_pax_claiming(200 << 20), 9))
    assert archive.stat().st_size < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchive) as refused:
            unpack_tar_gz(archive, model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.member == "(header at byte 0)"
    assert f"more than {HEADER_LIMIT} bytes of pax or long-name headers" in refused.value.reason
    assert peak < 8 << 20  # tarfile before 3.11.10 held all 200 MiB
    assert list(model.iterdir()) == []


def test_chained_long_name_headers_are_refused_without_recursion(model: Path) -> None:
    link = tarfile.TarInfo("././@LongLink")
    link.type, link.size = tarfile.GNUTYPE_LONGNAME, 2
    one = link.tobuf(format=tarfile.USTAR_FORMAT) + b"a\0" + bytes(510)
    # 3,000 chained headers: tarfile recursed once per header and raised RecursionError.
    raw = one * 3000 + _tar(_file("b.txt"), fmt=tarfile.USTAR_FORMAT)
    _refused(raw, model, "a", f"more than {HEADER_LIMIT} bytes of pax or long-name headers")


def test_a_malformed_pax_record_is_read_in_linear_time(model: Path) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    body = b"9" * 60_000  # tarfile's regex before 3.11.10 took seconds on this, per header
    header.type, header.size = tarfile.XHDTYPE, len(body)
    raw = header.tobuf(format=tarfile.USTAR_FORMAT) + body + bytes(-len(body) % 512)
    started = time.monotonic()
    with pytest.raises(UnreadableArchive, match="record without its length"):
        _unpack(raw + _tar(_file("a.txt"), fmt=tarfile.USTAR_FORMAT), model)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the archive is empty"),
        (os.urandom(64), "not a readable gzipped tar archive"),
        (gzip.compress(os.urandom(4096)), "wrong checksum"),
        (gzip.compress(_tar(_file("a.bin", os.urandom(4096))))[:-200], "not a readable gzipped tar"),
        (gzip.compress(_tar(_file("a.bin", os.urandom(4096)))[:2048]), "inside the data of member 'a.bin'"),
    ],
    ids=["empty-file", "not-gzip", "not-tar", "truncated-gzip", "truncated-tar"],
)
def test_what_is_not_a_whole_tar_gz_is_unreadable(model: Path, raw: bytes, message: str) -> None:
    archive = model.parent / "model.tar.gz"
    archive.write_bytes(raw)
    with pytest.raises(UnreadableArchive, match=message):
        unpack_tar_gz(archive, model)


def test_corrupt_deflate_data_is_unreadable_not_an_internal_error(model: Path) -> None:
    packed = bytearray(gzip.compress(_tar(_file("a.bin", os.urandom(100_000)))))
    packed[40] ^= 0xFF  # isal raises its own IsalError here, which is no OSError
    archive = model.parent / "model.tar.gz"
    archive.write_bytes(bytes(packed))
    with pytest.raises(UnreadableArchive):
        unpack_tar_gz(archive, model)


def test_a_name_the_filesystem_refuses_is_a_write_failure_naming_it(model: Path) -> None:
    name = "n" * 300  # longer than NAME_MAX (255)
    with pytest.raises(UnpackFailed) as failed:
        _unpack(_tar(_file(name)), model)
    assert failed.value.member == name
    assert "File name too long" in failed.value.reason


def test_errors_survive_pickling_with_their_fields() -> None:
    for error in (UnsafeArchive(member="m", reason="r"), UnpackFailed(member="m", reason="r")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.member, copy.reason, str(copy)) == (error.member, error.reason, str(error))


def test_limits_below_one_block_or_member_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes must be at least 512"):
        ArchiveLimits(max_bytes=100)
    with pytest.raises(ValueError, match="max_members at least 1"):
        ArchiveLimits(max_members=0)


# -- gzip bodies (batch transform inputs) ---------------------------------------------------------


def test_gunzip_reads_every_gzip_member_up_to_the_limit() -> None:
    data = gzip.compress(b"a\n" * 10) + gzip.compress(b"b\n") + bytes(8)
    assert gunzip(data, 22, "s3://b/in.csv.gz") == b"a\n" * 10 + b"b\n"


def test_gunzip_refuses_a_bomb_past_the_limit() -> None:
    bomb = gzip.compress(bytes(64 << 20), 9)
    with pytest.raises(UnsafeArchive) as refused:
        gunzip(bomb, 1 << 20, "s3://b/in.csv.gz")
    assert refused.value.member == "s3://b/in.csv.gz"
    assert "decompresses to more than the limit of 1048576 bytes" in refused.value.reason


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"not gzip at all", "is not gzip data"), (gzip.compress(b"x" * 1000)[:-12], "ends before")],
    ids=["not-gzip", "truncated"],
)
def test_gunzip_of_broken_data_is_unreadable(data: bytes, message: str) -> None:
    with pytest.raises(UnreadableArchive, match=message):
        gunzip(data, 1 << 20, "s3://b/in.csv.gz")
