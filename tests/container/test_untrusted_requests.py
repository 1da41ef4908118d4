"""What the model server refuses: a SAGEMAKER_PROGRAM outside the model, CSV that would misalign rows,
a body that never finishes arriving, and exception text in a 500. In-process, no Docker.
"""

from __future__ import annotations

import logging
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.content_types import decode
from serving.errors import BadRequest
from serving.settings import Settings

from tests.container.serving_support import serve_in_process, wait_for_status

ECHO = """
def model_fn(model_dir):
    return lambda data: data
"""

OUTSIDE = """
from pathlib import Path
Path(__file__).with_name("ran.txt").write_text("outside code ran")

def model_fn(model_dir):
    return lambda data: "outside"
"""


def _model(root: Path, source: str = ECHO, program: str = "inference.py") -> Path:
    folder = root / "model"
    script = folder / "code" / program
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(textwrap.dedent(source))
    return folder


# ---------------------------------------------------------------- SAGEMAKER_PROGRAM
@pytest.mark.parametrize(
    ("program", "fragment"),
    [
        ("{outside}/evil.py", "is not a file inside"),
        ("../../evil.py", "is not a file inside"),
        ("link.py", "leads through a link to"),
    ],
    ids=["absolute", "dotdot", "symlink-out"],
)
def test_a_program_outside_the_code_folder_fails_the_load_and_never_runs(
    tmp_path: Path, program: str, fragment: str
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "evil.py").write_text(OUTSIDE)
    folder = _model(tmp_path / "deep")  # model at deep/model: ../../evil.py is deep/evil.py
    (tmp_path / "deep" / "evil.py").write_text(OUTSIDE)
    (folder / "code" / "link.py").symlink_to(outside / "evil.py")
    program = program.format(outside=outside)
    settings = Settings.from_env({"MODEL_DIR": str(folder), "SAGEMAKER_PROGRAM": program})

    with TestClient(create_app(settings)) as client:
        body = wait_for_status(client, lambda code, body: body["status"] != "loading", timeout=60)
        ping = client.get("/ping")

    assert body["status"] == "failed"
    assert f"SAGEMAKER_PROGRAM={program!r}" in body["reason"] and fragment in body["reason"]
    assert ping.status_code == 503
    assert not (outside / "ran.txt").exists() and not (tmp_path / "deep" / "ran.txt").exists()


def test_a_program_in_a_subfolder_of_code_is_served(tmp_path: Path) -> None:
    folder = _model(tmp_path, "def model_fn(d):\n    return lambda data: 'nested'\n", "handlers/main.py")
    with serve_in_process(folder, SAGEMAKER_PROGRAM="handlers/main.py") as client:
        assert client.post("/invocations", json=[1]).json() == "nested"


# ---------------------------------------------------------------- CSV
def test_an_unclosed_quote_is_refused_instead_of_swallowing_the_rows_after_it() -> None:
    with pytest.raises(BadRequest, match="unclosed quote in the record that starts on line 2"):
        decode(b'first\n"second, still open\nthird\nfourth\n', "text/csv")
    with pytest.raises(BadRequest, match="on line 1: ',' expected after '\"'"):
        decode(b'a,"b"c\n', "text/csv")


def test_a_quoted_field_may_still_hold_a_newline() -> None:
    assert decode(b'a,"two\nlines"\nnext\n', "text/csv") == {"inputs": [["a", "two\nlines"], "next"]}


def test_an_unclosed_quote_is_a_400_naming_the_problem(tmp_path: Path) -> None:
    with serve_in_process(_model(tmp_path)) as client:
        bad = client.post("/invocations", content=b'a\n"b\nc\n', headers={"Content-Type": "text/csv"})
        good = client.post("/invocations", content=b'a\n"b"\nc\n', headers={"Content-Type": "text/csv"})
    assert bad.status_code == 400
    assert "unclosed quote in the record that starts on line 2" in bad.json()["error"]
    assert good.status_code == 200 and good.json() == {"inputs": ["a", "b", "c"]}


# ---------------------------------------------------------------- the body under a timeout
@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[int]:
    """The app under uvicorn on a real socket, as a worker runs it, with a 0.5 s body timeout."""
    settings = Settings.from_env({"MODEL_DIR": str(_model(tmp_path)), "SERVING_BODY_TIMEOUT": "0.5"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, http="httptools", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not _ping_ok(port):
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def _ping_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return _read_all(sock, timeout=5).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Everything until the server closes the connection; fails if it keeps it open past `timeout`."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _head(body_length: int) -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    ).encode()


def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed(live_server: int) -> None:
    with socket.create_connection(("127.0.0.1", live_server), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(_head(100) + b'{"inputs": "only the')
        answer = _read_all(sock, timeout=10)  # socket.timeout here means the worker is still held
        elapsed = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 0.5 s" in answer and b"SERVING_BODY_TIMEOUT" in answer
    assert b"connection: close" in answer.lower()
    assert 0.4 < elapsed < 5


def test_a_body_sent_in_pieces_within_the_timeout_is_served(live_server: int) -> None:
    body = b'{"inputs": "in three pieces"}'
    with socket.create_connection(("127.0.0.1", live_server), timeout=10) as sock:
        sock.sendall(_head(len(body)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        for piece in (body[:5], body[5:12], body[12:]):
            sock.sendall(piece)
        answer = _read_all(sock, timeout=10)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b'{"inputs":"in three pieces"}')


# ---------------------------------------------------------------- what a 500 says
def test_a_500_carries_the_request_id_and_the_error_class_not_the_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = """
        def model_fn(model_dir):
            return None

        def predict_fn(data, model):
            raise KeyError("customer 4711 has no row in " + repr(data))
    """
    with serve_in_process(_model(tmp_path, source)) as client:
        caplog.set_level(logging.ERROR)
        response = client.post(
            "/invocations", json={"inputs": "private text"}, headers={"X-Amzn-RequestId": "req-42"}
        )

    assert response.status_code == 500
    assert response.json() == {
        "error": "the model failed on this request with KeyError (request id req-42; the message and "
        "traceback are in the container log under that id)",
        "error_class": "KeyError",
        "request_id": "req-42",
    }
    assert "4711" not in response.text and "private text" not in response.text
    [logged] = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged.exc_info is not None and "customer 4711" in str(logged.exc_info[1])
