"""`python -m emulator up | down | env | status`: what each command does to the parts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from emulator import settings
from emulator.stack.parts import PART_NAMES, PARTS, Part, StackError, part, progress
from emulator.stack.processes import (
    alive_with_marker,
    docker_healthy,
    healthy,
    port_taken,
    read_pid,
    remove_emulator_containers,
    reported_code_version,
    reported_time_scale,
    server_env,
    spawn,
    stop,
    stop_docker,
    wait_healthy,
)

START_TIMEOUT = float(os.environ.get("SAGEMAKER_RELEASE_START_TIMEOUT", "90"))


def _outdated(p: Part, state: Path) -> bool:
    """True when `p` runs other code than the checkout, or at another time scale than
    EMULATOR_TIME_SCALE asks for, and was stopped here so `up` starts it again."""
    problems = []  # what differs, read after "it runs" (left alone) or "it ran" (stopped)
    if p.code_version is not None:
        running, expected = reported_code_version(p), p.code_version()
        if running != expected:
            problems.append(f"other code ({running}) than this checkout ({expected})")
    if p.time_scaled:
        scale, wanted = reported_time_scale(p), settings.time_scale()
        if scale != wanted:
            shown = "unknown" if scale is None else f"{scale:g}"
            problems.append(f"at time scale {shown} where {settings.TIME_SCALE_ENV} asks for {wanted:g}")
    if not problems:
        return False
    if not stop(p, state):
        progress(
            f"{p.name} on {settings.HOST}:{p.port} runs {' and '.join(problems)} but was not started by this "
            "checkout; leaving it alone"
        )
        return False
    progress(f"stopped {p.name}: it ran {' and '.join(problems)}; starting it again")
    return True


def running_parts() -> list[str]:
    """Names of the parts (and "docker") that answer their health check now."""
    names = ["docker"] if docker_healthy() else []
    return names + [p.name for p in PARTS if healthy(p)]


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
    try:
        scale = settings.time_scale()
    except ValueError as error:
        raise StackError(str(error)) from None
    for folder in ("pids", "logs", "emulator"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    ensure_docker()
    if scale != 1.0:
        progress(f"time scale {scale:g}: metric periods, alarms and cooldowns run {scale:g} times faster")
    env = server_env(state)
    wanted = [part(n) for n in names]
    spawned: dict[str, subprocess.Popen[bytes] | None] = {}
    for p in wanted:
        if healthy(p) and not _outdated(p, state):
            progress(f"{p.name} is already up on {settings.HOST}:{p.port}")
            continue
        if port_taken(p.port):
            # Possibly a start in progress by a concurrent `up`: wait for it rather than fight over the port.
            progress(f"{p.name}: {settings.HOST}:{p.port} is taken; waiting for it to answer")
            spawned[p.name] = None
            continue
        progress(f"starting {p.name} on {settings.HOST}:{p.port} (log: {p.log_file(state)})")
        spawned[p.name] = spawn(p, state, env)
    for p in wanted:
        if p.name in spawned:
            try:
                wait_healthy(p, state, spawned[p.name], timeout)
            except StackError:
                if spawned[p.name] is None:
                    raise StackError(
                        f"{settings.HOST}:{p.port} is taken by a process that does not answer as {p.name}; "
                        f"stop it (ss -ltnp 'sport = :{p.port}') and run up again"
                    ) from None
                raise
            progress(f"{p.name} is up")
    return [name for name, process in spawned.items() if process is not None]


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
        removed = remove_emulator_containers(state)
        if removed:
            progress(f"removed {removed} emulator container(s)")
    if "docker" in chosen:
        stop_docker(state)


def status() -> list[tuple[str, str, str]]:
    """(part, address, state) rows for every part."""
    state = settings.state_dir()
    rows = [("docker", "unix:///var/run/docker.sock", "up" if docker_healthy() else "down")]
    for p in PARTS:
        pid = read_pid(p.pid_file(state))
        owner = f"pid {pid}" if pid is not None and alive_with_marker(pid, p.marker) else "not started by up"
        up_now = healthy(p)
        if up_now and p.time_scaled:
            scale = reported_time_scale(p)
            owner += f", time scale {'unknown' if scale is None else f'{scale:g}'}"
        rows.append((p.name, f"{settings.HOST}:{p.port}", f"{'up' if up_now else 'down'} ({owner})"))
    return rows
