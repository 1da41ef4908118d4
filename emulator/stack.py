"""Start, stop and inspect every local server of the stack.

`up` is idempotent: a part whose health check already answers is left alone, the others are started
detached (own session, so they outlive the shell or test run that started them) with their pid in
.state/pids/ and their output in .state/logs/, and each is waited for with a timeout; a part that
does not come up is reported with the last lines of its log. `down` stops, by pid, what `up`
started, and removes the emulator's containers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from emulator import settings
from emulator.code_version import code_version

START_TIMEOUT = float(os.environ.get("SAGEMAKER_RELEASE_START_TIMEOUT", "90"))
STOP_TIMEOUT = 15.0
LOG_TAIL = 25


class StackError(Exception):
    """A part of the stack cannot be started or stopped; the message says which and why."""


def progress(message: str) -> None:
    # stdout carries only `export` lines (eval "$(python -m emulator up)"); everything else goes here.
    print(f"==> {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Part:
    name: str
    port: int
    health_urls: tuple[str, ...]
    marker: str  # appears in the process's command line; guards against stopping a recycled pid
    command: Callable[[Path], list[str]]
    prepare: Callable[[Path], None] = field(default=lambda state: None)
    # The code the checkout would start; compared with what the first health URL reports.
    code_version: Callable[[], str] | None = None
    # The Debian package that provides the command's program, installed by `up` when it is missing.
    debian_package: str | None = None

    def pid_file(self, state: Path) -> Path:
        return state / "pids" / f"{self.name}.pid"

    def log_file(self, state: Path) -> Path:
        return state / "logs" / f"{self.name}.log"


def _registry_config(state: Path) -> None:
    folder = state / "registry"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  fields:\n    service: registry\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {settings.HOST}:{settings.REGISTRY_PORT}\n"
    )


def _seed_hub(state: Path) -> None:
    from emulator.hub import seed_default_repos

    seed_default_repos(state / "hub")


def _venv_script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


PARTS: tuple[Part, ...] = (
    Part(
        name="registry",
        port=settings.REGISTRY_PORT,
        health_urls=(f"http://{settings.HOST}:{settings.REGISTRY_PORT}/v2/",),
        marker="docker-registry",
        command=lambda state: ["docker-registry", "serve", str(state / "registry" / "config.yml")],
        prepare=_registry_config,
        debian_package="docker-registry",
    ),
    Part(
        name="moto",
        port=settings.MOTO_PORT,
        health_urls=(f"http://{settings.HOST}:{settings.MOTO_PORT}/moto-api/config",),
        marker="moto_server",
        command=lambda state: [
            _venv_script("moto_server"),
            "-H",
            settings.HOST,
            "-p",
            str(settings.MOTO_PORT),
        ],
    ),
    Part(
        name="sagemaker",
        port=settings.SAGEMAKER_PORT,
        health_urls=(
            f"http://{settings.HOST}:{settings.SAGEMAKER_PORT}/_emulator/health",
            f"http://{settings.HOST}:{settings.RUNTIME_PORT}/_emulator/health",
        ),
        marker="emulator.server",
        command=lambda state: [sys.executable, "-m", "emulator.server", "--state", str(state)],
        code_version=code_version,
    ),
    Part(
        name="hub",
        port=settings.HUB_PORT,
        health_urls=(f"http://{settings.HOST}:{settings.HUB_PORT}/api/health",),
        marker="emulator.hub",
        command=lambda state: [
            sys.executable,
            "-m",
            "emulator.hub",
            "--root",
            str(state / "hub"),
            "--host",
            settings.HOST,
            "--port",
            str(settings.HUB_PORT),
            "--log-level",
            "warning",
        ],
        prepare=_seed_hub,
    ),
)
PART_NAMES = tuple(p.name for p in PARTS)


def part(name: str) -> Part:
    for candidate in PARTS:
        if candidate.name == name:
            return candidate
    raise StackError(f"unknown part {name!r}; the parts are {', '.join(PART_NAMES)}")


# -- health --------------------------------------------------------------------------------------


def healthy(p: Part) -> bool:
    for url in p.health_urls:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        if not 200 <= response.status_code < 300:
            return False
    return True


def reported_code_version(p: Part) -> str | None:
    try:
        answer = httpx.get(p.health_urls[0], timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    return str(answer.get("code_version")) if isinstance(answer, dict) else None


def _outdated(p: Part, state: Path) -> bool:
    """True when `p` runs other code than the checkout and was stopped here so `up` starts it again."""
    if p.code_version is None:
        return False
    running, expected = reported_code_version(p), p.code_version()
    if running == expected:
        return False
    if not stop(p, state):
        progress(
            f"{p.name} on {settings.HOST}:{p.port} runs other code ({running}, checkout {expected}) but "
            "was not started by this checkout; leaving it alone"
        )
        return False
    progress(
        f"stopped {p.name}: it ran other code ({running}) than this checkout ({expected}); starting it again"
    )
    return True


def docker_healthy() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def running_parts() -> list[str]:
    """Names of the parts (and "docker") that answer their health check now."""
    names = ["docker"] if docker_healthy() else []
    return names + [p.name for p in PARTS if healthy(p)]


# -- processes -----------------------------------------------------------------------------------


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or f"({path} is empty)"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive_with_marker(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def _ensure_installed(p: Part, state: Path) -> None:
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


def _spawn(p: Part, state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    _ensure_installed(p, state)
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


def _wait_healthy(p: Part, state: Path, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(p):
        if process is not None and process.poll() is not None:
            raise StackError(
                f"{p.name} exited with code {process.returncode} before answering {p.health_urls[0]}; "
                f"last lines of {p.log_file(state)}:\n{_tail(p.log_file(state))}"
            )
        if time.monotonic() >= deadline:
            raise StackError(
                f"{p.name} did not answer {', '.join(p.health_urls)} within {timeout:g} s; last lines of "
                f"{p.log_file(state)}:\n{_tail(p.log_file(state))}"
            )
        time.sleep(0.25)


def _port_taken(port: int) -> bool:
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


# -- commands ------------------------------------------------------------------------------------


def ensure_docker() -> None:
    script = settings.REPO_ROOT / "scripts" / "ensure-docker.sh"
    result = subprocess.run([str(script)], stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise StackError(
            f"{script} could not make a Docker Engine answer (exit {result.returncode}); see above"
        )


def base_image(build: bool) -> str | None:
    """The image the serving image builds FROM on this engine (scripts/ensure-base-image.sh).

    With `build`, pulls or debootstraps it when absent (StackError if that fails); without, only
    reports one that is already there.
    """
    script = settings.REPO_ROOT / "scripts" / "ensure-base-image.sh"
    command = [str(script)] if build else [str(script), "--present"]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    lines = result.stdout.split()
    if result.returncode == 0 and lines:
        return lines[-1]
    if build:
        raise StackError(f"{script} could not provide a base image (exit {result.returncode}); see above")
    return None


def client_exports(build_base_image: bool) -> list[str]:
    """The `export` lines a shell evaluates to reach the stack, with the base image when there is one."""
    lines = settings.client_env().export_lines()
    base = base_image(build=build_base_image)
    if base is not None:
        lines.append(f"export {settings.BASE_IMAGE_ENV}={base}")
    return lines


def up(names: Iterable[str] = PART_NAMES, timeout: float = START_TIMEOUT) -> list[str]:
    """Start every part that is not answering yet; returns the names of the parts it started."""
    state = settings.state_dir()
    for folder in ("pids", "logs", "emulator"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    ensure_docker()
    env = server_env(state)
    wanted = [part(n) for n in names]
    spawned: dict[str, subprocess.Popen[bytes] | None] = {}
    for p in wanted:
        if healthy(p) and not _outdated(p, state):
            progress(f"{p.name} is already up on {settings.HOST}:{p.port}")
            continue
        if _port_taken(p.port):
            # Possibly a start in progress by a concurrent `up`: wait for it rather than fight over the port.
            progress(f"{p.name}: {settings.HOST}:{p.port} is taken; waiting for it to answer")
            spawned[p.name] = None
            continue
        progress(f"starting {p.name} on {settings.HOST}:{p.port} (log: {p.log_file(state)})")
        spawned[p.name] = _spawn(p, state, env)
    for p in wanted:
        if p.name in spawned:
            try:
                _wait_healthy(p, state, spawned[p.name], timeout)
            except StackError:
                if spawned[p.name] is None:
                    raise StackError(
                        f"{settings.HOST}:{p.port} is taken by a process that does not answer as {p.name}; "
                        f"stop it (ss -ltnp 'sport = :{p.port}') and run up again"
                    ) from None
                raise
            progress(f"{p.name} is up")
    return [name for name, process in spawned.items() if process is not None]


def stop(p: Part, state: Path) -> bool:
    """Stop the part's process if `up` started it (pid file); True when something was stopped."""
    pid_file = p.pid_file(state)
    pid = _read_pid(pid_file)
    if pid is None:
        return False
    if not _alive_with_marker(pid, p.marker):
        pid_file.unlink(missing_ok=True)
        return False
    progress(f"stopping {p.name} (pid {pid})")
    os.killpg(pid, signal.SIGTERM)  # its own session: the group holds the process and its children
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive_with_marker(pid, p.marker):
        if time.monotonic() >= deadline:
            progress(f"{p.name} ignored SIGTERM for {STOP_TIMEOUT:g} s; killing it")
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def remove_emulator_containers() -> int:
    import docker

    try:
        client = docker.from_env(timeout=60)
        containers = client.containers.list(all=True, filters={"label": f"{settings.CONTAINER_LABEL}=1"})
    except docker.errors.DockerException as error:
        progress(f"cannot list the emulator's containers: {error}")
        return 0
    for container in containers:
        container.remove(force=True)
    return len(containers)


def stop_docker(state: Path) -> None:
    """Stop dockerd only when scripts/ensure-docker.sh started it (its pid file)."""
    pid_file = state / "pids" / "dockerd.pid"
    pid = _read_pid(pid_file)
    if pid is None:
        return
    if _alive_with_marker(pid, "dockerd"):
        progress(f"stopping dockerd (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive_with_marker(pid, "dockerd") and time.monotonic() < deadline:
            time.sleep(0.2)
    pid_file.unlink(missing_ok=True)


def down(names: Iterable[str] = (*PART_NAMES, "docker")) -> None:
    """Stop the named parts that `up` started; the emulator's containers go with the sagemaker part."""
    state = settings.state_dir()
    chosen = set(names)
    for name in chosen - {"docker"}:
        part(name)  # unknown names are an error, not a silent no-op
    for p in reversed(PARTS):
        if p.name in chosen:
            stop(p, state)
    # Containers go only once no emulator runs: one that `up` did not start still needs its fleet.
    if "sagemaker" in chosen and not healthy(part("sagemaker")):
        removed = remove_emulator_containers()
        if removed:
            progress(f"removed {removed} emulator container(s)")
    if "docker" in chosen:
        stop_docker(state)


def status() -> list[tuple[str, str, str]]:
    """(part, address, state) rows for every part."""
    state = settings.state_dir()
    rows = [("docker", "unix:///var/run/docker.sock", "up" if docker_healthy() else "down")]
    for p in PARTS:
        pid = _read_pid(p.pid_file(state))
        owner = f"pid {pid}" if pid is not None and _alive_with_marker(pid, p.marker) else "not started by up"
        rows.append((p.name, f"{settings.HOST}:{p.port}", f"{'up' if healthy(p) else 'down'} ({owner})"))
    return rows
