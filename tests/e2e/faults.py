"""Fault injection at the network boundary: an HTTP proxy in front of a local AWS server.

A test points one service's standard endpoint variable (e.g. AWS_ENDPOINT_URL_S3) at the proxy. The
proxy forwards every request unchanged, except those matching its rule, which get the error answer
AWS itself would send (AccessDenied, ValidationException…). The release's code, its retries and its
cleanup all run unchanged; only the service's answer to one kind of call is changed.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        """The JSON-protocol operation, e.g. "AnyScaleFrontendService.PutScalingPolicy"."""
        return self.headers.get("x-amz-target", "")


@dataclass(frozen=True)
class Fault:
    status: int
    body: bytes
    content_type: str


def json_error(code: str, message: str, status: int = 400) -> Fault:
    """An error of a JSON-protocol service (SageMaker, Application Auto Scaling, …)."""
    body = f'{{"__type": "{code}", "message": "{message}"}}'.encode()
    return Fault(status, body, "application/x-amz-json-1.1")


def s3_error(code: str, message: str, status: int = 403) -> Fault:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
    body += "</Error>"
    return Fault(status, body.encode(), "application/xml")


@dataclass
class FaultProxy:
    """Forwards to `upstream`; answers `fault` to requests for which `matches` is true."""

    upstream: str
    matches: Callable[[Request], bool]
    fault: Fault
    hits: list[Request] = field(default_factory=list)

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        upstream = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _relay(self) -> None:
                body = self._body()
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                if proxy.matches(request):
                    proxy.hits.append(request)
                    self._answer(
                        proxy.fault.status, proxy.fault.body, {"Content-Type": proxy.fault.content_type}
                    )
                    return
                connection = http.client.HTTPConnection(
                    upstream.hostname or "127.0.0.1", upstream.port, timeout=120
                )
                try:
                    dropped = ("host", "expect", "transfer-encoding", "content-length")
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                    headers["Content-Length"] = str(len(body))
                    headers["Host"] = upstream.netloc
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    answer = connection.getresponse()
                    payload = answer.read()
                    passed = {
                        k: v
                        for k, v in answer.getheaders()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection")
                    }
                    self._answer(answer.status, payload, passed)
                finally:
                    connection.close()

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler
