"""A gzip writer that compresses fixed-size blocks on every core, like pigz, with isal's deflate.

The output is one standard gzip member (any gunzip, tar -z or Python's gzip reads it). Each block is
deflated independently with the previous block's last 32 KiB as its dictionary and ends on a byte
boundary (a sync flush), so blocks can be compressed in parallel and simply concatenated. Blocks are
cut at fixed offsets of the input stream, so the bytes out depend only on the bytes in, the level and
the block size -- never on the thread count or on how the caller sliced its writes.

Compared with isal.igzip_threaded this lets large inputs (memory-mapped weights) reach the compressor
without a copy, and uses isal's largest hash tables (memLevel 9), which compress weights faster.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Protocol

from isal import isal_zlib

DEFLATE_WINDOW = 32 * 1024
DEFAULT_BLOCK_SIZE = 1 << 20
_MEM_LEVEL = 9
_FEED = 256 * 1024
_GZIP_HEADER = struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, 0, 0, 0, 0xFF)  # no name, mtime 0, OS unknown

Buffer = bytes | bytearray | memoryview


class BinaryWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _pieces(segments: Sequence[memoryview], size: int) -> Iterator[Buffer]:
    """The block `segments` make up, in consecutive pieces of `size` bytes (the last may be shorter).

    A piece inside one segment is a view of it; only a piece that spans two segments is copied."""
    carry: list[memoryview] = []
    carried = 0
    for segment in segments:
        offset = 0
        if carried:
            take = min(size - carried, len(segment))
            carry.append(segment[:take])
            carried += take
            offset = take
            if carried < size:
                continue
            yield b"".join(carry)
            carry, carried = [], 0
        while len(segment) - offset >= size:
            yield segment[offset : offset + size]
            offset += size
        if offset < len(segment):
            carry.append(segment[offset:])
            carried = len(segment) - offset
    if carried:
        yield b"".join(carry)


def _tail(segments: Sequence[memoryview], size: int) -> memoryview:
    """The last `size` bytes of a block given as segments (a view when the last segment holds them)."""
    if segments and len(segments[-1]) >= size:
        return segments[-1][-size:]
    joined = b"".join(segments)
    return memoryview(joined)[-size:]


def _compress_block(
    level: int, segments: Sequence[memoryview], zdict: memoryview | None, last: bool
) -> tuple[list[bytes], int]:
    if zdict is not None and len(zdict):
        compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15, _MEM_LEVEL, zdict=zdict)
    else:
        compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15, _MEM_LEVEL)
    # Fed a whole block at once, isal grows its output buffer to the block's size as it goes, which cost a
    # quarter of the compression CPU; in fixed pieces the output comes in small, reused allocations.
    # The pieces are cut at fixed offsets of the block, so the bytes out depend only on the bytes in.
    parts = [compressor.compress(piece) for piece in _pieces(segments, _FEED)]
    parts.append(compressor.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH))
    crc = 0
    for segment in segments:
        crc = isal_zlib.crc32(segment, crc)
    return parts, crc


class ParallelGzipWriter:
    """Write-only gzip stream; `close()` (or leaving the `with` block) writes the last block and trailer.

    Buffers passed to `write` must stay unchanged until `flush()` or `close()` returns: blocks are
    compressed later, in other threads, straight from them -- a block that spans two writes is kept as
    views of both, not copied.
    """

    def __init__(
        self,
        out: BinaryWriter,
        *,
        level: int = 1,
        threads: int = 1,
        block_size: int = DEFAULT_BLOCK_SIZE,
        on_block: Callable[[int], None] | None = None,
    ) -> None:
        if not 0 <= level <= 3:
            raise ValueError(f"isal compression level must be 0-3, got {level}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if block_size < DEFLATE_WINDOW:
            raise ValueError(f"block_size must be at least {DEFLATE_WINDOW}")
        self._out = out
        self._level = level
        self._block_size = block_size
        self._on_block = on_block
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gzip")
        # Enough queued blocks that workers keep busy while the writer thread waits for a CPU.
        self._max_in_flight = 8 * threads
        self._in_flight: deque[tuple[Future[tuple[list[bytes], int]], int]] = deque()
        self._pending: list[memoryview] = []
        self._pending_size = 0
        self._previous: memoryview | None = None
        self._crc = 0
        self._size = 0
        self._closed = False
        out.write(_GZIP_HEADER)

    def write(self, data: Buffer) -> int:
        if self._closed:
            raise ValueError("write to a closed ParallelGzipWriter")
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            take = min(self._block_size - self._pending_size, len(view))
            self._pending.append(view[:take])
            self._pending_size += take
            view = view[take:]
            if self._pending_size == self._block_size:
                self._submit(last=False)
        return total

    def _submit(self, *, last: bool) -> None:
        segments, length = self._pending, self._pending_size
        self._pending, self._pending_size = [], 0
        future = self._pool.submit(_compress_block, self._level, segments, self._previous, last)
        self._in_flight.append((future, length))
        if length:
            self._previous = _tail(segments, min(DEFLATE_WINDOW, length))
        while len(self._in_flight) > self._max_in_flight:
            self._drain_one()

    def _drain_one(self) -> None:
        future, length = self._in_flight.popleft()
        parts, crc = future.result()
        for part in parts:
            self._out.write(part)
        self._crc = isal_zlib.crc32_combine(self._crc, crc, length)
        self._size += length
        if self._on_block is not None:
            self._on_block(length)

    def flush(self) -> None:
        """Compress and write every whole block handed in so far; afterwards the caller may reuse or
        release the buffers it wrote (the partial block and the dictionary are kept as copies)."""
        while self._in_flight:
            self._drain_one()
        if self._pending:
            self._pending = [memoryview(b"".join(self._pending))]
        if self._previous is not None:
            self._previous = memoryview(bytes(self._previous))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(last=True)
            while self._in_flight:
                self._drain_one()
            self._out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._previous = None

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Give up the stream: no trailer (a half-written archive must not look complete), and no
        reference kept to the caller's buffers, so a memory map they came from can close."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._in_flight.clear()
        self._pending, self._pending_size = [], 0
        self._previous = None
