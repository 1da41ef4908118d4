"""Running the serving image under Docker for tests: labelled containers on 127.0.0.1, always removed."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

LABEL = "sagemaker-release.test"
START_TIMEOUT_S = 180.0


@dataclass
class Served:
    """A running serving container and what its start looked like."""

    container: Container
    base_url: str
    ping_statuses: list[int] = field(default_factory=list)

    def logs(self) -> str:
        return str(self.container.logs().decode(errors="replace"))

    def post(
        self,
        body: bytes,
        content_type: str = "application/json",
        accept: str | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        request = urllib.request.Request(
            f"{self.base_url}/invocations", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def post_json(self, payload: Any, **kwargs: Any) -> tuple[int, Any]:
        status, _, body = self.post(json.dumps(payload).encode(), **kwargs)
        return status, json.loads(body)


def docker_client() -> docker.DockerClient:
    client = docker.from_env(timeout=120)
    client.ping()  # fails the test when no Docker Engine answers: these tests never skip
    return client


def start(
    client: docker.DockerClient,
    image: str,
    model_dir: Path,
    environment: dict[str, str] | None = None,
    purpose: str = "serving",
    **run_options: Any,
) -> Container:
    """`docker run -d -v MODEL:/opt/ml/model:ro -p 127.0.0.1::8080 IMAGE serve`, labelled for cleanup."""
    options: dict[str, Any] = {"ports": {"8080/tcp": ("127.0.0.1", None)}, **run_options}
    if options.get("network_mode") == "none":
        options.pop("ports")
    return client.containers.run(
        image,
        ["serve"],
        detach=True,
        name=f"sr-test-{purpose}-{uuid.uuid4().hex[:8]}",
        labels={LABEL: purpose},
        volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        environment=environment or {},
        **options,
    )


def remove(container: Container) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)


def wait_serving(container: Container, timeout: float = START_TIMEOUT_S) -> Served:
    """Poll /ping (every 0.1 s) until it answers 200; fail with the container's log if it exits first."""
    container.reload()
    port = container.ports["8080/tcp"][0]["HostPort"]
    served = Served(container, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{served.base_url}/ping", timeout=2) as response:
                served.ping_statuses.append(response.status)
                return served
        except urllib.error.HTTPError as error:
            served.ping_statuses.append(error.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            container.reload()
            if container.status == "exited":
                raise AssertionError(
                    f"the container exited before serving:\n{served.logs()[-3000:]}"
                ) from None
        time.sleep(0.1)
    raise AssertionError(f"/ping did not answer 200 within {timeout} s:\n{served.logs()[-3000:]}")


def wait_exit(container: Container, timeout: float) -> int:
    result = container.wait(timeout=timeout)
    return int(result["StatusCode"])


def exec_python(container: Container, code: str) -> tuple[int, str]:
    """Run Python inside the container (for one that has no published port, e.g. --network none)."""
    result = container.exec_run(["/opt/venv/bin/python", "-c", code])
    return int(result.exit_code), result.output.decode(errors="replace")
