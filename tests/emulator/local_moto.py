"""A real moto server in a subprocess on an ephemeral loopback port, for tests that need only moto."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
from botocore.config import Config

START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's server as the stack starts it (with CloudWatch's statistics rules), wait until it
    answers, yield its URL, stop it."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator.stack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode}: {process.stderr!r}")
            try:
                httpx.get(f"{url}/moto-api/", timeout=2).raise_for_status()
                break
            except httpx.HTTPError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto server on port {port} did not answer within {START_TIMEOUT_S} s"
                    ) from error
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def cloudwatch_client(url: str) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )
