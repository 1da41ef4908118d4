"""Serving containers through the docker SDK: one per instance per variant (per pipeline step).

Each container runs `IMAGE serve` with the model's Environment, its model data mounted read-only at
/opt/ml/model and port 8080 published on an ephemeral loopback port, and carries labels naming its
endpoint, deployment, variant and instance so a restarted emulator can find it again, and its owner
(the emulator's state folder) so `down` removes the shared emulator's containers and no other's.

It is sized as its instance: the instance type's vCPUs and memory (emulator/fleet/instance_types.py), capped
to the machine and to SAGEMAKER_EMULATOR_MAX_CONTAINER_CPUS / _MEMORY_MB, no swap, and a pids limit.
A model that outgrows the memory is killed by the kernel as on SageMaker; the engine records it
(State.OOMKilled once the container exits, an `oom` event at once), and the messages here say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.models.containers
import httpx

from emulator import settings
from emulator.fleet.instance_types import DEFAULT_SIZE, InstanceSize
from emulator.settings import Limits

LABEL_ENDPOINT = "sagemaker-release.endpoint"
LABEL_DEPLOYMENT = "sagemaker-release.deployment"
LABEL_VARIANT = "sagemaker-release.variant"
LABEL_INSTANCE = "sagemaker-release.instance"
LABEL_STEP = "sagemaker-release.step"
# Which emulator (state folder) made the container: a second emulator, e.g. one a test starts on other
# ports with its own state, must never adopt or remove the containers of the first.
LABEL_OWNER = "sagemaker-release.owner"
CONTAINER_PORT = "8080/tcp"
LOG_LINES = 20
# The kernel kills the process, the connection drops, then the engine reports the oom event: wait
# this long for the event before calling a dropped connection anything else.
OOM_EVENT_WAIT_S = 2.0


def owner_of(state: Path) -> str:
    """The LABEL_OWNER value of the emulator whose state folder is `state`."""
    return hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]


class ContainerFailed(Exception):
    """A container did not become healthy; the message carries its last log lines."""

    def __init__(self, message: str, exited: bool = False) -> None:
        super().__init__(message)
        self.exited = exited


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image_id: str
    environment: dict[str, str]
    model_dir: Path | None
    labels: dict[str, str]
    size: InstanceSize = field(default=DEFAULT_SIZE)  # the instance it stands for, before the caps


@dataclass(frozen=True)
class Machine:
    vcpus: int
    memory_mib: int


@dataclass(frozen=True)
class RunningContainer:
    id: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{settings.HOST}:{self.port}"


class Fleet:
    def __init__(self, client: docker.DockerClient, owner: str, limits: Limits | None = None) -> None:
        self.client = client
        self.owner = owner
        self.limits = limits or Limits.from_env()

    @cached_property
    def machine(self) -> Machine:
        """What the engine's machine has: no container may be given more (the engine refuses CPUs)."""
        info = self.client.info()
        return Machine(vcpus=int(info["NCPU"]), memory_mib=int(info["MemTotal"]) // (1 << 20))

    def resources(self, size: InstanceSize) -> dict[str, Any]:
        """docker run options that make a container the size of its instance, within the caps."""
        cpus = min(size.vcpus, self.machine.vcpus, self.limits.container_max_cpus or math.inf)
        memory = min(
            size.memory_mib, self.machine.memory_mib, self.limits.container_max_memory_mib or math.inf
        )
        return {
            "nano_cpus": int(cpus * 1e9),
            "mem_limit": f"{int(memory)}m",
            "memswap_limit": f"{int(memory)}m",  # SageMaker instances have no swap to grow into
            "pids_limit": self.limits.container_pids_limit,
        }

    def run(self, spec: ContainerSpec) -> RunningContainer:
        volumes = {str(spec.model_dir): {"bind": "/opt/ml/model", "mode": "ro"}} if spec.model_dir else {}
        container = self.client.containers.run(
            spec.image_id,
            command=["serve"],
            name=spec.name,
            detach=True,
            environment=spec.environment,
            labels={settings.CONTAINER_LABEL: "1", LABEL_OWNER: self.owner, **spec.labels},
            ports={CONTAINER_PORT: (settings.HOST, None)},
            volumes=volumes,
            **self.resources(spec.size),
        )
        container.reload()
        port = _host_port(container.attrs)
        if port is None:
            raise ContainerFailed(f"container {spec.name} {self.exit_summary(container.id)}", exited=True)
        return RunningContainer(container.id, spec.name, port)

    def find_running(self, container_id: str) -> RunningContainer | None:
        """The container if it still exists and runs, with its (possibly new) published port."""
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        if container.status != "running":
            return None
        port = _host_port(container.attrs)
        return RunningContainer(container.id, container.name, port) if port else None

    def exit_code(self, container_id: str) -> int | None:
        """The exit code once the container stopped (None while it runs or when it is gone)."""
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        if container.status in ("exited", "dead"):
            return int(container.attrs["State"]["ExitCode"])
        return None

    def logs_tail(self, container_id: str, lines: int = LOG_LINES) -> str:
        try:
            raw = self.client.containers.get(container_id).logs(tail=lines)
        except docker.errors.NotFound:
            return "(container is gone; no logs)"
        text = raw.decode("utf-8", "replace").rstrip()
        return text or "(no output)"

    def exit_summary(self, container_id: str) -> str:
        code = self.exit_code(container_id)
        state = f"exited with code {code}" if code is not None else "is not running"
        oom = self._oom_killed(container_id)
        if oom is not None:
            state += f" after it ran out of memory: {oom}"
        return f"{state}. Last log lines:\n{self.logs_tail(container_id)}"

    def _oom_killed(self, container_id: str) -> str | None:
        try:
            attrs = self.client.containers.get(container_id).attrs
        except docker.errors.NotFound:
            return None
        if not attrs.get("State", {}).get("OOMKilled"):
            return None
        return _out_of_memory(attrs)

    def ran_out_of_memory(
        self, container_id: str, since: float, wait: float = OOM_EVENT_WAIT_S
    ) -> str | None:
        """Why the container's process died after `since` (epoch s) if memory ran out, else None.

        A worker the kernel killed leaves the container running, so State.OOMKilled stays false until
        it exits; the engine's `oom` event is there at once, or within `wait` seconds.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                container = self.client.containers.get(container_id)
                events = self.client.events(
                    since=f"{since:.3f}",
                    until=f"{time.time():.3f}",
                    filters={"container": container_id, "event": "oom"},
                    decode=True,
                )
                try:
                    killed = bool(list(events)) or bool(container.attrs.get("State", {}).get("OOMKilled"))
                finally:
                    events.close()
            except docker.errors.NotFound:
                return None
            if killed:
                return _out_of_memory(container.attrs)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def remove(self, container_id: str, grace_seconds: int = 5) -> None:
        """Stop with SIGTERM (the serving app drains), then remove; a container already gone is fine."""
        try:
            container = self.client.containers.get(container_id)
            if container.status == "running":
                container.stop(timeout=grace_seconds)
            container.remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: removal already in progress
                raise

    def _list(self, labels: dict[str, str]) -> list[docker.models.containers.Container]:
        wanted = {settings.CONTAINER_LABEL: "1", LABEL_OWNER: self.owner, **labels}
        filters = {"label": [f"{k}={v}" for k, v in wanted.items()]}
        # docker-py lists, then inspects each container: one removed in between (a scale-in, another
        # endpoint's delete) would otherwise fail the whole listing with NotFound.
        return list(self.client.containers.list(all=True, filters=filters, ignore_removed=True))

    def containers(self, labels: dict[str, str]) -> list[str]:
        """Ids of this emulator's containers carrying all of `labels`."""
        return [c.id for c in self._list(labels)]

    def containers_by_deployment(self) -> dict[str, str]:
        """Every container of this emulator, mapped to the deployment it belongs to."""
        return {c.id: c.labels.get(LABEL_DEPLOYMENT, "") for c in self._list({})}

    async def wait_healthy(
        self, http: httpx.AsyncClient, container: RunningContainer, timeout: float
    ) -> None:
        """Poll GET /ping until it answers 200; fail early when the container exits."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                response = await http.get(f"{container.url}/ping", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"/ping answered {response.status_code}"
            except httpx.HTTPError as error:
                last = f"/ping failed: {type(error).__name__}"
            code = await asyncio.to_thread(self.exit_code, container.id)
            if code is not None:
                summary = await asyncio.to_thread(self.exit_summary, container.id)
                raise ContainerFailed(f"container {container.name} {summary}", exited=True)
            if time.monotonic() >= deadline:
                logs = await asyncio.to_thread(self.logs_tail, container.id)
                raise ContainerFailed(
                    f"container {container.name} did not pass the ping health check within "
                    f"{timeout:g} s ({last}). Last log lines:\n{logs}"
                )
            await asyncio.sleep(0.5)


def _out_of_memory(attrs: dict[str, Any]) -> str:
    limit = int(attrs.get("HostConfig", {}).get("Memory") or 0) // (1 << 20)
    memory = f"{limit} MiB of its memory" if limit else "its memory"
    return (
        f"the kernel killed a process of the container when it used all {memory} (OOM). Use an "
        "instance type with more memory, or a smaller model, batch or number of workers"
    )


def _host_port(attrs: dict[str, Any]) -> int | None:
    bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(CONTAINER_PORT) or []
    for binding in bindings:
        if binding.get("HostIp") in (settings.HOST, "0.0.0.0", "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    return None
