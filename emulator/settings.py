"""Fixed addresses, the state folder and the environment a client needs to reach the local stack.

CONTRIBUTING.md fixes these values; everything that starts a server or prints the client environment
reads them from here so the stack, the emulator and the tests cannot disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REGISTRY_PORT = 5000
MOTO_PORT = 4566
SAGEMAKER_PORT = 4577
RUNTIME_PORT = 4578
HUB_PORT = 4588

ACCOUNT_ID = "123456789012"  # moto's account; every ARN the emulator makes uses it
DEFAULT_REGION = "us-east-1"
CONTAINER_LABEL = "sagemaker-release.emulator"
# The serving image's base on this engine; the release reads it (tasks/config/model.py BASE_IMAGE_ENV) so an
# offline machine builds FROM the image scripts/ensure-base-image.sh made instead of pulling one.
BASE_IMAGE_ENV = "SAGEMAKER_RELEASE_BASE_IMAGE"
# How many times faster than AWS the emulator runs metric periods, alarm evaluation and cooldowns
# (emulator/clock.py); `python -m emulator up` reads it and starts the SageMaker emulator with it.
TIME_SCALE_ENV = "EMULATOR_TIME_SCALE"


def state_dir() -> Path:
    """The one ignored folder holding logs, pids and the emulator's persisted resources."""
    override = os.environ.get("SAGEMAKER_RELEASE_STATE_DIR")
    return Path(override).resolve() if override else REPO_ROOT / ".state"


def region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION


def time_scale() -> float:
    """EMULATOR_TIME_SCALE as a number >= 1 (default 1: AWS's own pace)."""
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"{TIME_SCALE_ENV}={raw!r} is not a number; set it to a number >= 1 (e.g. 30 makes a "
            "one-minute metric period last 2 s)"
        ) from None
    if not value >= 1.0 or value == float("inf"):
        raise ValueError(f"{TIME_SCALE_ENV}={raw} is out of range; set it to a finite number >= 1")
    return value


def registry_host() -> str:
    """host:port that stands in for ECR: images are pushed there and the emulator pulls from there."""
    return os.environ.get("SAGEMAKER_RELEASE_REGISTRY") or f"{HOST}:{REGISTRY_PORT}"


@dataclass(frozen=True)
class ClientEnv:
    """What `python -m emulator env` prints: standard AWS/HF variables pointing at the local servers."""

    values: dict[str, str]

    def export_lines(self) -> list[str]:
        return [f"export {name}={value}" for name, value in self.values.items()]


def client_env() -> ClientEnv:
    return ClientEnv(
        {
            "AWS_ENDPOINT_URL": f"http://{HOST}:{MOTO_PORT}",
            "AWS_ENDPOINT_URL_SAGEMAKER": f"http://{HOST}:{SAGEMAKER_PORT}",
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://{HOST}:{RUNTIME_PORT}",
            # The emulator serves Application Auto Scaling in front of moto (emulator/autoscaling/):
            # moto keeps the targets and policies, the emulator adds what moto lacks.
            "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": f"http://{HOST}:{SAGEMAKER_PORT}",
            "HF_ENDPOINT": f"http://{HOST}:{HUB_PORT}",
            "SAGEMAKER_RELEASE_REGISTRY": f"{HOST}:{REGISTRY_PORT}",
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; set it to an integer >= {minimum}") from None
    if value < minimum:
        raise ValueError(f"{name}={value} is too small; set it to an integer >= {minimum}")
    return value


def _env_optional_float(name: str, minimum: float) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set it to a number >= {minimum}") from None
    if not value >= minimum:
        raise ValueError(f"{name}={raw} is too small; set it to a number >= {minimum}")
    return value


@dataclass(frozen=True)
class Limits:
    """Timeouts and quotas of the emulator; AWS's values unless an environment variable overrides."""

    startup_health_timeout: float  # when the variant sets no ContainerStartupHealthCheckTimeoutInSeconds
    model_download_timeout: float  # when the variant sets no ModelDataDownloadTimeoutInSeconds
    image_pull_timeout: float
    invocation_timeout: float  # real-time InvokeEndpoint: 60 s on SageMaker
    instance_quota: int  # instances per instance type across endpoints ("ml.m5.large for endpoint usage")
    # A model.tar.gz is unpacked only up to these (decompressed bytes, headers included; members).
    archive_max_bytes: int = 64 << 30
    archive_max_members: int = 1_000_000
    # A transform input object with CompressionType Gzip is held in memory decompressed.
    input_max_bytes: int = 1 << 30
    # Containers get their instance type's vCPUs and memory (emulator/fleet/instance_types.py), never more
    # than the machine has, and never more than these when set (tests make an instance small).
    container_max_memory_mib: int | None = None
    container_max_cpus: float | None = None
    container_pids_limit: int = 4096
    # Serverless variants: an instance (one request at a time, as SageMaker gives each concurrent request
    # its own) stops after this many AWS seconds without a request, unless provisioned concurrency keeps
    # it; at most this many containers run per variant, beyond which requests share the least busy one.
    serverless_idle_s: float = 300.0
    serverless_max_containers: int = 4
    # How often (AWS seconds) an async endpoint's queue metrics are published: SageMaker's one minute.
    queue_metrics_period_s: float = 60.0

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            startup_health_timeout=_env_float("SAGEMAKER_EMULATOR_STARTUP_TIMEOUT", 600.0),
            model_download_timeout=_env_float("SAGEMAKER_EMULATOR_DOWNLOAD_TIMEOUT", 1200.0),
            image_pull_timeout=_env_float("SAGEMAKER_EMULATOR_PULL_TIMEOUT", 900.0),
            invocation_timeout=_env_float("SAGEMAKER_EMULATOR_INVOCATION_TIMEOUT", 60.0),
            instance_quota=int(_env_float("SAGEMAKER_EMULATOR_INSTANCE_QUOTA", 10)),
            archive_max_bytes=_env_int("SAGEMAKER_EMULATOR_ARCHIVE_MAX_BYTES", 64 << 30, minimum=512),
            archive_max_members=_env_int("SAGEMAKER_EMULATOR_ARCHIVE_MAX_MEMBERS", 1_000_000, minimum=1),
            input_max_bytes=_env_int("SAGEMAKER_EMULATOR_INPUT_MAX_BYTES", 1 << 30, minimum=1),
            container_max_memory_mib=_env_int("SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB", 0, minimum=6)
            or None,
            container_max_cpus=_env_optional_float("SAGEMAKER_EMULATOR_MAX_CONTAINER_CPUS", 0.01),
            container_pids_limit=_env_int("SAGEMAKER_EMULATOR_CONTAINER_PIDS_LIMIT", 4096, minimum=16),
            serverless_idle_s=_env_optional_float("SAGEMAKER_EMULATOR_SERVERLESS_IDLE_S", 0.1) or 300.0,
            serverless_max_containers=_env_int("SAGEMAKER_EMULATOR_SERVERLESS_MAX_CONTAINERS", 4, minimum=1),
            queue_metrics_period_s=_env_optional_float("SAGEMAKER_EMULATOR_QUEUE_METRICS_PERIOD_S", 1.0)
            or 60.0,
        )
