"""A stand-in serving container for emulator tests: stdlib only, starts in well under a second.

It follows the SageMaker contract (`serve`, port 8080, GET /ping, POST /invocations, model at
/opt/ml/model) and misbehaves on request, through the model's Environment:

DOUBLE_EXIT=N       print a few log lines and exit with code N at start-up
DOUBLE_PING=never   answer /ping with 503 forever
DOUBLE_START_DELAY=S  take S seconds to "load the model" before listening
DOUBLE_STATUS=N     answer /invocations with status N
DOUBLE_DELAY=S      wait S seconds before answering /invocations
DOUBLE_MODE=pipe    answer with the request body + "|" + DOUBLE_NAME (serial pipeline tests)
DOUBLE_NAME=…       a name to tell containers apart in answers
"""

import json
import os
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL_DIR = Path(os.environ.get("MODEL_DIR", "/opt/ml/model"))
NAME = os.environ.get("DOUBLE_NAME", "double")


def model_files() -> dict[str, str]:
    files = {}
    if MODEL_DIR.is_dir():
        for path in sorted(MODEL_DIR.rglob("*")):
            if path.is_file():
                files[str(path.relative_to(MODEL_DIR))] = path.read_bytes()[:64].decode("utf-8", "replace")
    return files


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stall between

    def log_message(self, format: str, *args: object) -> None:
        print(f"{NAME}: {format % args}", flush=True)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._send(404, b"not found", "text/plain")
        elif os.environ.get("DOUBLE_PING") == "never":
            self._send(503, b"never healthy, as told", "text/plain")
        else:
            self._send(200, b"", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/invocations":
            self._send(404, b"not found", "text/plain")
            return
        time.sleep(float(os.environ.get("DOUBLE_DELAY", "0")))
        status = int(os.environ.get("DOUBLE_STATUS", "200"))
        extra = {}
        if self.headers.get("X-Amzn-SageMaker-Custom-Attributes"):
            extra["X-Amzn-SageMaker-Custom-Attributes"] = (
                "seen=" + self.headers["X-Amzn-SageMaker-Custom-Attributes"]
            )
        if status >= 400:
            self._send(status, f"{NAME} fails with {status}, as told".encode(), "text/plain", extra)
        elif os.environ.get("DOUBLE_MODE") == "pipe":
            self._send(200, body + b"|" + NAME.encode(), f"text/x-{NAME}", extra)
        else:
            answer = {
                "name": NAME,
                "hostname": socket.gethostname(),
                "body": body.decode("utf-8", "replace"),
                "content_type": self.headers.get("Content-Type"),
                "accept": self.headers.get("Accept"),
                "model_files": model_files(),
                "environment": {k: v for k, v in os.environ.items() if k.startswith(("DOUBLE_", "USER_"))},
            }
            self._send(200, json.dumps(answer).encode(), "application/json", extra)


def main() -> None:
    if sys.argv[1:] != ["serve"]:
        print(f"usage: serve (got {sys.argv[1:]})", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 gets no default SIGTERM action
    if os.environ.get("DOUBLE_EXIT"):
        print(f"{NAME}: loading the model", flush=True)
        print(f"{NAME}: cannot go on, exiting with code {os.environ['DOUBLE_EXIT']} as told", flush=True)
        sys.exit(int(os.environ["DOUBLE_EXIT"]))
    time.sleep(float(os.environ.get("DOUBLE_START_DELAY", "0")))
    server = ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
    server.daemon_threads = True
    print(f"{NAME}: serving on 8080", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
