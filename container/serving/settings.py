"""Serving settings, read once from the environment SageMaker (or `docker run -e`) gives the container."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_DIR = "/opt/ml/model"
MIB = 1024 * 1024


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2/v1 CPU quota.

    os.cpu_count() reports the host's CPUs, which over-subscribes a container limited with --cpus.
    """
    count = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    port: int
    workers: int
    hf_task: str | None
    device: str | None
    dtype: str
    torch_threads: int
    max_batch_size: int
    max_batch_delay_s: float
    # Feature extraction lays a batch's texts end to end instead of padding them, where the model allows.
    pack_sequences: bool
    max_payload_bytes: int
    request_timeout_s: float
    # A request body must arrive within this: a client that sends it slowly (or never finishes) would
    # otherwise hold its connection and memory in the worker for as long as it likes.
    body_timeout_s: float
    graceful_timeout_s: float
    default_accept: str
    program: str
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        cpus = available_cpus()
        workers = _int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", cpus, minimum=1)
        # Workers share the CPUs: give each an equal slice of intra-op threads so they do not thrash.
        threads = _int(env, "SERVING_TORCH_THREADS", max(1, cpus // workers), minimum=1)
        return cls(
            model_dir=Path(env.get("MODEL_DIR") or DEFAULT_MODEL_DIR),
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", 8080, minimum=1, maximum=65535),
            workers=workers,
            hf_task=env.get("HF_TASK") or None,
            device=env.get("SERVING_DEVICE") or None,
            dtype=_choice(env, "SERVING_DTYPE", "float32", ("float32", "bfloat16", "float16", "auto")),
            torch_threads=threads,
            max_batch_size=_int(env, "SERVING_MAX_BATCH_SIZE", 32, minimum=1),
            max_batch_delay_s=_float(env, "SERVING_MAX_BATCH_DELAY_MS", 5.0, minimum=0.0) / 1000.0,
            pack_sequences=_choice(env, "SERVING_PACK_SEQUENCES", "auto", ("auto", "off")) == "auto",
            max_payload_bytes=int(_float(env, "SERVING_MAX_PAYLOAD_MB", 6.0, minimum=0.0) * MIB),
            request_timeout_s=_float(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60.0, minimum=0.001),
            body_timeout_s=_float(env, "SERVING_BODY_TIMEOUT", 60.0, minimum=0.001),
            graceful_timeout_s=_float(env, "SERVING_GRACEFUL_TIMEOUT", 25.0, minimum=0.0),
            default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json",
            program=env.get("SAGEMAKER_PROGRAM") or "inference.py",
            log_level=_log_level(env.get("SAGEMAKER_CONTAINER_LOG_LEVEL") or "INFO"),
        )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not an integer; set it to a whole number ≥ {minimum}"
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"≥ {minimum}"
        raise SettingsError(f"{name}={value} is out of range; set it {bounds}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number; set it to a number ≥ {minimum}") from None
    if not math.isfinite(value) or value < minimum:
        raise SettingsError(f"{name}={raw} is out of range; set it to a finite number ≥ {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name}={env.get(name)!r} is not supported; use one of {', '.join(choices)}")
    return value


def _log_level(raw: str) -> str:
    # SageMaker passes numeric levels (20 = INFO); people also write names.
    names = {"10": "DEBUG", "20": "INFO", "30": "WARNING", "40": "ERROR", "50": "CRITICAL"}
    level = names.get(raw.strip(), raw.strip().upper())
    if level not in names.values():
        raise SettingsError(
            f"SAGEMAKER_CONTAINER_LOG_LEVEL={raw!r} is not a log level; "
            "use 10/20/30/40/50 or DEBUG/INFO/WARNING/ERROR"
        )
    return level
