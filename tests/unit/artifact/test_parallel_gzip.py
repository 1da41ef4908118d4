from __future__ import annotations

import gzip
import io
import os
import subprocess

import pytest

from tasks.artifact.parallel_gzip import ParallelGzipWriter

BLOCK = 64 * 1024
DATA = os.urandom(5 * BLOCK + 123) + b"weights " * 40000 + bytes(BLOCK)


def _compress(data: bytes, *, threads: int, slices: int, level: int = 1, block: int = BLOCK) -> bytes:
    out = io.BytesIO()
    with ParallelGzipWriter(out, level=level, threads=threads, block_size=block) as gz:
        step = max(1, len(data) // slices)
        for start in range(0, len(data), step):
            gz.write(data[start : start + step])
    return out.getvalue()


def test_output_is_standard_gzip() -> None:
    packed = _compress(DATA, threads=3, slices=7)
    assert gzip.decompress(packed) == DATA
    tested = subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True)
    assert tested.stdout == DATA
    assert len(packed) < len(DATA), "the repetitive part must compress"


def test_bytes_depend_only_on_input_level_and_block_size() -> None:
    reference = _compress(DATA, threads=1, slices=1)
    assert _compress(DATA, threads=4, slices=1) == reference
    assert _compress(DATA, threads=2, slices=13) == reference
    assert _compress(DATA, threads=2, slices=len(DATA) // 1000) == reference
    assert _compress(DATA, threads=2, slices=1, level=3) != reference
    assert _compress(DATA, threads=2, slices=1, block=2 * BLOCK) != reference


def test_empty_and_tiny_inputs() -> None:
    assert gzip.decompress(_compress(b"", threads=2, slices=1)) == b""
    assert gzip.decompress(_compress(b"x", threads=2, slices=1)) == b"x"
    assert gzip.decompress(_compress(bytes(BLOCK), threads=2, slices=1)) == bytes(BLOCK)


def test_flush_lets_the_caller_reuse_its_buffer() -> None:
    out = io.BytesIO()
    buffer = bytearray(os.urandom(3 * BLOCK))
    expected = bytes(buffer)
    with ParallelGzipWriter(out, threads=2, block_size=BLOCK) as gz:
        gz.write(buffer)
        gz.flush()
        buffer[:] = bytes(len(buffer))
        gz.write(b"tail")
    assert gzip.decompress(out.getvalue()) == expected + b"tail"


def test_an_error_inside_the_block_leaves_no_trailer() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError), ParallelGzipWriter(out, threads=2, block_size=BLOCK) as gz:
        gz.write(DATA)
        raise RuntimeError("source vanished")
    with pytest.raises(EOFError):
        gzip.decompress(out.getvalue())


def test_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="level"):
        ParallelGzipWriter(io.BytesIO(), level=6)
    with pytest.raises(ValueError, match="threads"):
        ParallelGzipWriter(io.BytesIO(), threads=0)
