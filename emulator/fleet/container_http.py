"""A lean HTTP/1.1 client for the loopback hop from the runtime to serving containers.

Every invocation crosses this hop, on the same two cores as the model. httpx spends several
milliseconds of CPU per request in its own layers (anyio, auth and redirect flows), which showed as
a third of the throughput lost behind the proxy; this client writes one request in one buffer over
asyncio streams and keeps connections alive per container, which is all the hop needs.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

MAX_HEADER_LINE = 65536
MAX_IDLE_PER_CONTAINER = 64


class ContainerConnectionError(Exception):
    """The container could not be reached or broke the connection before answering."""


@dataclass(frozen=True)
class ContainerResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ContainerClient:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)

    async def post(
        self, host: str, port: int, path: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> ContainerResponse:
        """POST and read the whole answer; TimeoutError after `timeout` seconds."""
        request = _encode(host, port, path, body, headers)
        async with asyncio.timeout(timeout):
            connection, reused = await self._acquire(host, port)
            try:
                try:
                    response, keep = await _exchange(connection, request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if not reused:
                        raise
                    # A kept-alive connection the container closed meanwhile; a fresh one decides.
                    _close(connection)
                    connection = await self._open(host, port)
                    response, keep = await _exchange(connection, request)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
                _close(connection)
                raise ContainerConnectionError(f"{host}:{port}: {type(error).__name__}: {error}") from error
            except BaseException:
                _close(connection)  # timeout or cancellation mid-exchange: the stream state is unknown
                raise
        if keep and len(self._idle[(host, port)]) < MAX_IDLE_PER_CONTAINER:
            self._idle[(host, port)].append(connection)
        else:
            _close(connection)
        return response

    async def _acquire(self, host: str, port: int) -> tuple[_Connection, bool]:
        idle = self._idle[(host, port)]
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return (reader, writer), True
            _close((reader, writer))
        return await self._open(host, port), False

    @staticmethod
    async def _open(host: str, port: int) -> _Connection:
        try:
            return await asyncio.open_connection(host, port, limit=MAX_HEADER_LINE)
        except OSError as error:
            raise ContainerConnectionError(f"{host}:{port}: {error}") from error

    def forget(self, host: str, port: int) -> None:
        """Drop kept-alive connections to a container that is going away."""
        for connection in self._idle.pop((host, port), []):
            _close(connection)

    async def aclose(self) -> None:
        for key in list(self._idle):
            self.forget(*key)


def _encode(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _exchange(connection: _Connection, request: bytes) -> tuple[ContainerResponse, bool]:
    reader, writer = connection
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before the status line")
    version, _, rest = status_line.decode("latin-1").partition(" ")
    status = int(rest.split(" ", 1)[0])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ConnectionResetError("connection closed inside the response headers")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()  # delimited by the end of the connection
        keep = False
    return ContainerResponse(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after each chunk


def _close(connection: _Connection) -> None:
    connection[1].close()
