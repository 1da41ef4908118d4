"""The parts of the local stack: what each runs, where it answers, what it needs installed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emulator import settings
from emulator.code_version import code_version


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
    # Whether the part runs on the emulator's clock (its health reports "time_scale").
    time_scaled: bool = False
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
        marker="emulator.stack.moto_server",
        command=lambda state: [
            sys.executable,
            "-m",
            "emulator.stack.moto_server",
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
        command=lambda state: [
            sys.executable,
            "-m",
            "emulator.server",
            "--state",
            str(state),
            "--time-scale",
            f"{settings.time_scale():g}",
        ],
        code_version=code_version,
        time_scaled=True,
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
