"""Unpacking archives nobody vetted: model data a user uploaded, as SageMaker would unpack it.

tarfile is no defence here, neither its extraction filters nor its reader: Debian 12's Python
(3.11.2) has no filters, before 3.11.13 they can be bypassed (a chain of links that resolves outside
the folder once written), and before 3.11.10 its reader reads a pax or long-name header whole into
memory (a 200 KB archive can claim 200 MiB of header), recurses once per chained header (a few
hundred headers end in RecursionError) and parses pax records with a regex that is quadratic in the
record's length. So the tar format is read here, linearly and within limits, and nothing of an
archive is written by tarfile: every member is checked on its own, then written by this module, only
as a regular file or a folder, never following a link.

Refused: symbolic and hard links, device files, FIFOs, sparse files and any other kind of member;
absolute names and names with `..`; a member that would sit under anything but a folder this module
made; more than `max_members` members; more than `max_bytes` bytes of decompressed archive (headers
included), refused before the data is read, so a decompression bomb never fills the disk; more than
HEADER_LIMIT bytes of headers for one member.
"""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

from isal import igzip, isal_zlib

CHUNK = 1 << 20
BLOCK = 512
# Pax records and GNU long names before one member: real ones are a few KiB (a 4 KiB path, some
# xattrs); they are held in memory while the member's header is read.
HEADER_LIMIT = 1 << 20

_REGULAR = (b"0", b"\0", b"7")  # "7" is a contiguous file: a regular file to everyone but old Masscomp
_FOLDER = b"5"
_PAX, _PAX_GLOBAL, _LONG_NAME, _LONG_LINK = b"x", b"g", b"L", b"K"
# isal's stubs declare its error as an instance; at run time it is the class igzip raises on bad deflate data.
_READ_ERRORS = (OSError, EOFError, zlib.error, cast(type[Exception], isal_zlib.error))
_KINDS = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"S": "a sparse file",
    b"D": "a GNU dump folder",
    b"M": "a multi-volume continuation",
    b"V": "a volume label",
}


@dataclass(frozen=True)
class ArchiveLimits:
    # SageMaker's own disk for /opt/ml/model bounds what a real endpoint unpacks; 64 GiB and a
    # million members keep the largest real models in, and a bomb out.
    max_bytes: int = 64 << 30
    max_members: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_bytes < BLOCK or self.max_members < 1:
            raise ValueError(
                f"ArchiveLimits(max_bytes={self.max_bytes}, max_members={self.max_members}): "
                f"max_bytes must be at least {BLOCK} and max_members at least 1"
            )


class UnsafeArchive(Exception):
    """The archive holds a member that may not be unpacked; `member` names it."""

    def __init__(self, *, member: str, reason: str) -> None:
        super().__init__(f"member {member!r} {reason}")
        self.member = member
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (UnsafeArchive, self.member, self.reason))


class UnpackFailed(Exception):
    """A vetted member could not be written (a full disk, a name the filesystem refuses)."""

    def __init__(self, *, member: str, reason: str) -> None:
        super().__init__(f"member {member!r} could not be written: {reason}")
        self.member = member
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (UnpackFailed, self.member, self.reason))


def _rebuild(kind: type[UnsafeArchive | UnpackFailed], member: str, reason: str) -> Exception:
    return kind(member=member, reason=reason)


class UnreadableArchive(Exception):
    """The bytes are not a (gzipped) tar archive, or end before it does."""


def unpack_tar_gz(archive: Path, target: Path, limits: ArchiveLimits | None = None) -> None:
    """Unpack a gzipped tar archive into the existing folder `target`, member by member."""
    try:
        stream = igzip.open(archive, "rb")
    except OSError as error:
        raise UnreadableArchive(f"cannot open {archive.name}: {error}") from error
    with stream:
        unpack_tar_stream(stream, target, limits)


def unpack_tar_stream(stream: IO[bytes], target: Path, limits: ArchiveLimits | None = None) -> None:
    """Unpack an (already decompressed) tar stream into the existing folder `target`."""
    limits = limits or ArchiveLimits()
    reader = _TarReader(stream, limits.max_bytes)
    root = target.resolve()
    members = 0
    while (member := reader.next_member()) is not None:
        members += 1
        if members > limits.max_members:
            raise UnsafeArchive(
                member=member.name, reason=f"is past the limit of {limits.max_members} members"
            )
        relative = vetted_name(member)
        if member.is_folder and member.size:
            raise UnsafeArchive(member=member.name, reason="is a folder that carries data")
        if relative is None:  # the archive's own root folder ("." or "./")
            continue
        if member.is_file:
            reader.check_room(member)
        with _writing(member.name):
            _check_parents(root, relative, member.name)
            if member.is_folder:
                _make_folder(root.joinpath(*relative.parts), member.name)
            else:
                _write_file(reader, root.joinpath(*relative.parts), member)


@dataclass(frozen=True)
class Member:
    """One member's header, as the reader assembled it from its header blocks."""

    name: str
    type_flag: bytes
    size: int  # bytes of data that follow the header
    mode: int
    linkname: str
    sparse: bool = False  # pax GNU.sparse.* records: the data is a sparse map, not the file

    @property
    def is_folder(self) -> bool:
        return self.type_flag == _FOLDER

    @property
    def is_file(self) -> bool:
        return self.type_flag in _REGULAR and not self.sparse


def vetted_name(member: Member) -> PurePosixPath | None:
    """The member's path relative to the folder, or UnsafeArchive; None for the root folder itself."""
    name = member.name
    if not (member.is_file or member.is_folder):
        kind = "a sparse file" if member.sparse else _KINDS.get(member.type_flag)
        if kind is None:
            kind = f"of unknown type {member.type_flag!r}"
        target = f" (to {member.linkname!r})" if member.type_flag in (b"1", b"2") else ""
        raise UnsafeArchive(
            member=name, reason=f"is {kind}{target}; only regular files and folders are unpacked"
        )
    if "\x00" in name or name.startswith("/"):
        raise UnsafeArchive(member=name, reason="has an absolute name")
    parts = [part for part in PurePosixPath(name).parts if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(member=name, reason="has '..' in its name and would land outside the folder")
    if not parts:
        if member.is_folder:
            return None
        raise UnsafeArchive(member=name, reason="has an empty name")
    return PurePosixPath(*parts)


class _TarReader:
    """The ustar, GNU and pax formats, read block by block without trusting any size in them."""

    def __init__(self, stream: IO[bytes], max_bytes: int) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.position = 0  # bytes of decompressed archive read so far

    def next_member(self) -> Member | None:
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        metadata = 0
        while True:
            start = self.position
            label = pax.get("path") or long_name or f"(header at byte {start})"
            block = self._read(BLOCK)
            if not block:
                if start == 0:
                    raise UnreadableArchive("the archive is empty: it holds no tar header")
                return None  # the end without its two zero blocks; GNU tar accepts that too
            if len(block) < BLOCK:
                raise UnreadableArchive(f"the archive ends inside the header at byte {start}")
            if block == bytes(BLOCK):
                return None  # the end-of-archive marker, read past the limit without counting
            self._check_limit(label, "its header")
            _check_sum(block, start)
            type_flag = block[156:157]
            size = _number(block[124:136], "size", start)
            if type_flag in (_PAX, _PAX_GLOBAL, _LONG_NAME, _LONG_LINK):
                metadata += BLOCK + _padded(size)
                if metadata > HEADER_LIMIT:
                    raise UnsafeArchive(
                        member=label,
                        reason=f"has more than {HEADER_LIMIT} bytes of pax or long-name headers "
                        "(real ones are a few KiB)",
                    )
                self._check_limit(label, "its header", _padded(size))
                data = self._read(_padded(size))
                if len(data) < _padded(size):
                    raise UnreadableArchive(f"the archive ends inside the extended header at byte {start}")
                data = data[:size]
                if type_flag == _PAX:
                    pax.update(_pax_records(data, start))
                elif type_flag == _PAX_GLOBAL:
                    _pax_records(data, start)  # checked, then ignored: git archive puts its commit id there
                elif type_flag == _LONG_NAME:
                    long_name = _text(data.split(b"\0", 1)[0])
                else:
                    long_link = _text(data.split(b"\0", 1)[0])
                continue
            name = pax.get("path") or long_name or _header_name(block)
            if "size" in pax:
                size = _pax_size(pax["size"], name)
            if type_flag == b"\0" and name.endswith("/"):
                type_flag = _FOLDER  # pre-POSIX tar marks folders only by the trailing slash
            return Member(
                name=name,
                type_flag=type_flag,
                size=size,
                mode=_number(block[100:108], "mode", start),
                linkname=pax.get("linkpath") or long_link or _text(block[157:257].split(b"\0", 1)[0]),
                sparse=any(key.startswith("GNU.sparse.") for key in pax),
            )

    def check_room(self, member: Member) -> None:
        """Refuse a member whose data would pass max_bytes, before any of it is read."""
        if self.position + _padded(member.size) > self.max_bytes:
            raise UnsafeArchive(
                member=member.name,
                reason=f"has {member.size} bytes, which would unpack past the limit of {self.max_bytes} "
                "bytes",
            )

    def copy_data(self, member: Member, out: IO[bytes]) -> None:
        remaining = member.size
        while remaining:
            chunk = self._read(min(CHUNK, remaining))
            if not chunk:
                raise UnreadableArchive(f"the archive ends inside the data of member {member.name!r}")
            out.write(chunk)
            remaining -= len(chunk)
        padding = _padded(member.size) - member.size
        if len(self._read(padding)) < padding:
            raise UnreadableArchive(f"the archive ends inside the data of member {member.name!r}")

    def _check_limit(self, label: str, what: str, more: int = 0) -> None:
        if self.position + more > self.max_bytes:
            raise UnsafeArchive(
                member=label, reason=f"would unpack past the limit of {self.max_bytes} bytes ({what})"
            )

    def _read(self, size: int) -> bytes:
        parts: list[bytes] = []
        wanted = size
        try:
            while wanted:
                part = self.stream.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
        except _READ_ERRORS as error:
            raise UnreadableArchive(f"not a readable gzipped tar archive: {error}") from error
        self.position += size - wanted
        return b"".join(parts)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _text(raw: bytes) -> str:
    # tarfile's default too: names that are not UTF-8 keep their bytes through os.fsencode.
    return raw.decode("utf-8", "surrogateescape")


def _header_name(block: bytes) -> str:
    name = _text(block[0:100].split(b"\0", 1)[0])
    if block[257:265] == b"ustar\x0000":  # POSIX ustar keeps the front of long names in `prefix`
        prefix = _text(block[345:500].split(b"\0", 1)[0])
        if prefix:
            return f"{prefix}/{name}"
    return name


def _check_sum(block: bytes, start: int) -> None:
    try:
        stored = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        stored = -1
    rest = block[:148] + block[156:]
    unsigned = sum(rest) + 8 * 32  # the checksum field itself counts as eight spaces
    signed = unsigned - 256 * sum(1 for byte in rest if byte > 127)  # old Sun tar summed signed bytes
    if stored not in (unsigned, signed):
        raise UnreadableArchive(
            f"the header at byte {start} has a wrong checksum: this is not a tar archive, or it is corrupt"
        )


def _number(field: bytes, what: str, start: int) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for values octal cannot hold
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise UnreadableArchive(f"the header at byte {start} has a negative {what}")
    digits = field.replace(b"\0", b" ").strip()
    if not digits:
        return 0
    if not all(48 <= b <= 55 for b in digits):
        raise UnreadableArchive(f"the header at byte {start} has a {what} that is not an octal number")
    return int(digits, 8)


def _pax_records(data: bytes, start: int) -> dict[str, str]:
    """`LENGTH KEY=VALUE\\n` records, read in one pass (tarfile's regex is quadratic before 3.11.10)."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.find(b" ", position, position + 21)
        length_text = data[position:space] if space > position else b""
        if not length_text.isdigit():
            raise UnreadableArchive(f"the pax header at byte {start} has a record without its length")
        end = position + int(length_text)
        if end <= space + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise UnreadableArchive(f"the pax header at byte {start} has a record of the wrong length")
        key, equals, value = data[space + 1 : end - 1].partition(b"=")
        if not equals:
            raise UnreadableArchive(f"the pax header at byte {start} has a record without '='")
        records[_text(key)] = _text(value)
        position = end
    return records


def _pax_size(raw: str, name: str) -> int:
    if not raw.isdigit():
        raise UnreadableArchive(f"member {name!r} has a pax size {raw!r} that is not a whole number")
    return int(raw)


@contextmanager
def _writing(name: str) -> Iterator[None]:
    # Reading errors are UnreadableArchive by now; an OSError here is the folder's, not the archive's.
    try:
        yield
    except OSError as error:
        raise UnpackFailed(member=name, reason=str(error)) from error


def _check_parents(root: Path, relative: PurePosixPath, name: str) -> None:
    # Only folders this module made can be parents; a link or file in the way means a crafted archive
    # (or a folder shared with something else) and is refused rather than followed.
    current = root
    for part in relative.parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(mode):
            raise UnsafeArchive(
                member=name, reason=f"would be written under {current.name!r}, which is no folder"
            )


def _make_folder(destination: Path, name: str) -> None:
    try:
        mode = os.lstat(destination).st_mode
    except FileNotFoundError:
        destination.mkdir(mode=0o755, parents=True)
        return
    if not stat.S_ISDIR(mode):
        raise UnsafeArchive(member=name, reason="names a folder where a file was already unpacked")


def _write_file(reader: _TarReader, destination: Path, member: Member) -> None:
    destination.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    # Permission bits only, never setuid/setgid/sticky; an executable file stays executable.
    mode = 0o755 if member.mode & 0o111 else 0o644
    try:
        descriptor = os.open(destination, flags, mode)
    except FileExistsError:
        raise UnsafeArchive(member=member.name, reason="appears twice in the archive") from None
    with os.fdopen(descriptor, "wb") as out:
        reader.copy_data(member, out)


def gunzip(data: bytes, max_bytes: int, what: str) -> bytes:
    """Decompress gzip `data` (one or more gzip members), refusing output past `max_bytes`.

    UnsafeArchive names `what` when the output would pass the limit, UnreadableArchive when the data
    is not gzip; gzip.decompress has no limit and raises zlib.error, which is no OSError.
    """
    out = bytearray()
    pending = data
    while pending:
        inflater = zlib.decompressobj(wbits=31)
        try:
            while not inflater.eof:
                out += inflater.decompress(pending, max_bytes - len(out) + 1)
                if len(out) > max_bytes:
                    raise UnsafeArchive(
                        member=what, reason=f"decompresses to more than the limit of {max_bytes} bytes"
                    )
                pending = inflater.unconsumed_tail
                if not pending and not inflater.eof:
                    raise UnreadableArchive(f"{what} ends before its gzip stream does")
        except zlib.error as error:
            raise UnreadableArchive(f"{what} is not gzip data: {error}") from error
        pending = inflater.unused_data.lstrip(b"\0")  # gzip pads with zeros after the last member
    return bytes(out)
