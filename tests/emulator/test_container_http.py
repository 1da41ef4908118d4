"""The runtime's HTTP/1.1 client for the hop to containers, against scripted asyncio servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from emulator.fleet.container_http import ContainerClient, ContainerConnectionError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _run(coroutine: Awaitable[None]) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def test_content_length_and_keep_alive() -> None:
    connections = 0
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                seen.append(await _read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 3\r\n\r\nabc")
            await writer.drain()

    async def scenario() -> None:
        server, port = await _serve(handler)
        client = ContainerClient()
        for _ in range(3):
            response = await client.post("127.0.0.1", port, "/invocations", b"1,2", {"Accept": "text/csv"}, 5)
            assert (response.status, response.headers["content-type"], response.body) == (
                200,
                "text/csv",
                b"abc",
            )
        await client.aclose()
        server.close()

    _run(scenario())
    assert connections == 1
    assert seen[0].startswith(b"POST /invocations HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 3\r\n" in seen[0] and b"\r\nAccept: text/csv\r\n" in seen[0]
    assert seen[0].endswith(b"\r\n\r\n1,2")


def test_chunked_body_and_connection_close() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbad \r\n5;x=y\r\nmodel\r\n0\r\n\r\n"
        )
        await writer.drain()

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        client = ContainerClient()
        server, port = await _serve(chunked)
        response = await client.post("127.0.0.1", port, "/invocations", b"{}", {}, 5)
        assert (response.status, response.body) == (500, b"bad model")
        server.close()
        server, port = await _serve(closing)
        assert (await client.post("127.0.0.1", port, "/invocations", b"{}", {}, 5)).body == b"until the end"
        server.close()
        await client.aclose()

    _run(scenario())


def test_stale_kept_alive_connection_is_replaced() -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # without saying Connection: close, as a restarting container does

    async def scenario() -> None:
        server, port = await _serve(one_answer_then_close)
        client = ContainerClient()
        for _ in range(3):
            assert (await client.post("127.0.0.1", port, "/invocations", b"{}", {}, 5)).body == b"ok"
        await client.aclose()
        server.close()

    _run(scenario())


def test_timeout_and_refused_connection() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(10)

    async def scenario() -> None:
        server, port = await _serve(silent)
        client = ContainerClient()
        with pytest.raises(TimeoutError):
            await client.post("127.0.0.1", port, "/invocations", b"{}", {}, 0.3)
        server.close()
        await server.wait_closed()
        with pytest.raises(ContainerConnectionError, match=f"127.0.0.1:{port}"):
            await client.post("127.0.0.1", port, "/invocations", b"{}", {}, 2)

    _run(scenario())
