"""Unpacking archives nobody vetted: model data a user uploaded, as SageMaker would unpack it.

tarfile's extraction filters are no defence here: Debian 12's Python (3.11.2) has none, and before
3.11.13 they can be bypassed (a chain of links that resolves outside the folder once written). So
nothing of an archive is written by tarfile: every member is checked on its own, then written by this
module, only as a regular file or a folder, never following a link.

Refused: symbolic and hard links, device files and FIFOs, absolute names and names with `..`, a member
that would sit under a file, more than `max_members` members or more than `max_bytes` bytes unpacked
(a decompression bomb is refused while it is read, not after it filled the disk).
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from isal import igzip

CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    # SageMaker's own disk for /opt/ml/model bounds what a real endpoint unpacks; 64 GiB and a
    # million members keep the largest real models in, and a bomb out.
    max_bytes: int = 64 << 30
    max_members: int = 1_000_000


class UnsafeArchive(Exception):
    """The archive holds a member that may not be unpacked; `member` names it."""

    def __init__(self, *, member: str, reason: str) -> None:
        super().__init__(f"member {member!r} {reason}")
        self.member = member
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_unsafe, (self.member, self.reason))


def _rebuild_unsafe(member: str, reason: str) -> UnsafeArchive:
    return UnsafeArchive(member=member, reason=reason)


class UnreadableArchive(Exception):
    """The bytes are not a (gzipped) tar archive, or end before it does."""


def unpack_tar_gz(archive: Path, target: Path, limits: ArchiveLimits | None = None) -> None:
    """Unpack a gzipped tar archive into the existing folder `target`, member by member."""
    try:
        with igzip.open(archive, "rb") as stream:
            unpack_tar_stream(stream, target, limits or ArchiveLimits())
    except (OSError, EOFError) as error:
        raise UnreadableArchive(f"not a readable gzipped tar archive: {error}") from error


def unpack_tar_stream(stream: IO[bytes], target: Path, limits: ArchiveLimits | None = None) -> None:
    limits = limits or ArchiveLimits()
    root = target.resolve()
    members = 0
    written = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                members += 1
                if members > limits.max_members:
                    raise UnsafeArchive(
                        member=member.name, reason=f"is past the limit of {limits.max_members} members"
                    )
                relative = vetted_name(member)
                if relative is None:  # the archive's own root folder ("." or "./")
                    continue
                destination = root.joinpath(*relative.parts)
                _check_parents(root, relative, member.name)
                if member.isdir():
                    _make_folder(destination, member.name)
                    continue
                if member.size > limits.max_bytes - written:
                    raise UnsafeArchive(
                        member=member.name,
                        reason=f"would unpack past the limit of {limits.max_bytes} bytes",
                    )
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - vetted_name lets only regular files through
                    raise UnsafeArchive(member=member.name, reason="has no data")
                written += _write_file(source, destination, member)
    except tarfile.TarError as error:
        raise UnreadableArchive(f"not a readable tar archive: {error}") from error


def vetted_name(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's path relative to the folder, or UnsafeArchive; None for the root folder itself."""
    name = member.name
    if member.issym() or member.islnk():
        raise UnsafeArchive(member=name, reason=f"is a link (to {member.linkname!r}); links are not unpacked")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchive(member=name, reason="is a device file or FIFO, not a file or folder")
    if "\x00" in name or name.startswith("/") or PurePosixPath(name).is_absolute():
        raise UnsafeArchive(member=name, reason="has an absolute name")
    parts = [part for part in PurePosixPath(name).parts if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(member=name, reason="has '..' in its name and would land outside the folder")
    if not parts:
        if member.isdir():
            return None
        raise UnsafeArchive(member=name, reason="has an empty name")
    return PurePosixPath(*parts)


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


def _write_file(source: IO[bytes], destination: Path, member: tarfile.TarInfo) -> int:
    destination.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(destination, flags, 0o644)
    except FileExistsError:
        raise UnsafeArchive(member=member.name, reason="appears twice in the archive") from None
    total = 0
    with os.fdopen(descriptor, "wb") as out:
        while chunk := source.read(CHUNK):
            total += len(chunk)
            if total > member.size:  # pragma: no cover - tarfile reads at most the header's size
                raise UnsafeArchive(member=member.name, reason="holds more bytes than its header says")
            out.write(chunk)
    return total
