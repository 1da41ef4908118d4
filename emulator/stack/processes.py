"""The processes behind the parts: health checks, starting detached, stopping by pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from emulator import settings
from emulator.stack.parts import Part, StackError, progress

STOP_TIMEOUT = 15.0
LOG_TAIL = 25


def healthy(p: Part) -> bool:
    for url in p.health_urls:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        if not 200 <= response.status_code < 300:
            return False
    return True


def reported_health(p: Part) -> dict[str, object]:
    """What the part's first health URL answers (empty when it does not answer JSON)."""
    try:
        answer = httpx.get(p.health_urls[0], timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


def reported_code_version(p: Part) -> str | None:
    version = reported_health(p).get("code_version")
    return str(version) if version is not None else None


def reported_time_scale(p: Part) -> float | None:
    scale = reported_health(p).get("time_scale")
    return float(scale) if isinstance(scale, int | float) else None


def docker_healthy() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or f"({path} is empty)"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive_with_marker(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline and not is_zombie(pid)


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def ensure_installed(p: Part, state: Path) -> None:
    program = p.command(state)[0]
    if p.debian_package is None or shutil.which(program):
        return
    progress(f"installing {p.debian_package} (Debian) for {p.name}")
    script = settings.REPO_ROOT / "scripts" / "apt-install.sh"
    result = subprocess.run([str(script), p.debian_package], stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0 or not shutil.which(program):
        raise StackError(
            f"{p.name} needs {program!r} from Debian's {p.debian_package} package, and "
            f"`{script} {p.debian_package}` did not install it (exit {result.returncode}); see above"
        )


def spawn(p: Part, state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    ensure_installed(p, state)
    p.prepare(state)
    log_path = p.log_file(state)
    with log_path.open("ab") as log:
        log.write(f"\n--- starting {p.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        log.flush()
        process = subprocess.Popen(
            p.command(state),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell / pytest session that ran `up`
            cwd=settings.REPO_ROOT,
            env=env,
        )
    p.pid_file(state).write_text(f"{process.pid}\n")
    return process


def wait_healthy(p: Part, state: Path, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(p):
        if process is not None and process.poll() is not None:
            raise StackError(
                f"{p.name} exited with code {process.returncode} before answering {p.health_urls[0]}; "
                f"last lines of {p.log_file(state)}:\n{tail(p.log_file(state))}"
            )
        if time.monotonic() >= deadline:
            raise StackError(
                f"{p.name} did not answer {', '.join(p.health_urls)} within {timeout:g} s; last lines of "
                f"{p.log_file(state)}:\n{tail(p.log_file(state))}"
            )
        time.sleep(0.25)


def port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((settings.HOST, port)) == 0


def server_env(state: Path) -> dict[str, str]:
    """Environment of the servers: the client variables, so the emulator reaches moto's S3 and SNS."""
    env = dict(os.environ)
    env.update(settings.client_env().values)
    env["SAGEMAKER_RELEASE_STATE_DIR"] = str(state)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop(p: Part, state: Path) -> bool:
    """Stop the part's process if `up` started it (pid file); True when something was stopped."""
    pid_file = p.pid_file(state)
    pid = read_pid(pid_file)
    if pid is None:
        return False
    if not alive_with_marker(pid, p.marker):
        pid_file.unlink(missing_ok=True)
        return False
    progress(f"stopping {p.name} (pid {pid})")
    os.killpg(pid, signal.SIGTERM)  # its own session: the group holds the process and its children
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive_with_marker(pid, p.marker):
        if time.monotonic() >= deadline:
            progress(f"{p.name} ignored SIGTERM for {STOP_TIMEOUT:g} s; killing it")
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def remove_emulator_containers(state: Path) -> int:
    """Remove the containers of the emulator whose state folder is `state`. Private emulators (tests
    start them with state folders of their own) keep theirs: they may still be running."""
    import docker

    from emulator.fleet.containers import LABEL_OWNER, owner_of

    labels = [f"{settings.CONTAINER_LABEL}=1", f"{LABEL_OWNER}={owner_of(state)}"]
    try:
        client = docker.from_env(timeout=60)
        containers = client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)
    except docker.errors.DockerException as error:
        progress(f"cannot list the emulator's containers: {error}")
        return 0
    for container in containers:
        container.remove(force=True)
    return len(containers)


def stop_docker(state: Path) -> None:
    """Stop dockerd only when scripts/ensure-docker.sh started it (its pid file)."""
    pid_file = state / "pids" / "dockerd.pid"
    pid = read_pid(pid_file)
    if pid is None:
        return
    if alive_with_marker(pid, "dockerd"):
        progress(f"stopping dockerd (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive_with_marker(pid, "dockerd") and time.monotonic() < deadline:
            time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
