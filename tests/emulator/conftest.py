"""Fixtures for the emulator tests: boto3 clients on the local stack, images in its registry, and a
`resources` fixture that deletes every SageMaker resource a test created."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.emulator.emulator_support import (
    HERE,
    Aws,
    PrivateEmulator,
    Resources,
    folder_tarball,
    make_clients,
    push_to_registry,
)


@pytest.fixture(scope="session")
def aws(stack: dict[str, str]) -> Aws:
    return make_clients(stack)


@pytest.fixture(scope="session")
def bucket(aws: Aws) -> str:
    name = f"emulator-tests-{uuid.uuid4().hex[:8]}"
    aws.s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def double_image(stack: dict[str, str]) -> str:
    """ECR URI of the stdlib test double (tests/emulator/double), built and pushed once."""
    context = HERE / "double"
    digest = hashlib.sha256(
        b"".join((context / name).read_bytes() for name in ("Dockerfile", "double.py"))
    ).hexdigest()[:12]
    local = f"sagemaker-release-tests/double:{digest}"
    exists = subprocess.run(["docker", "image", "inspect", local], capture_output=True).returncode == 0
    if not exists:
        subprocess.run(["docker", "build", "-q", "-t", local, str(context)], check=True, capture_output=True)
    return push_to_registry(local, "emulator-tests/double")


@pytest.fixture(scope="session")
def serving_ecr_image(stack: dict[str, str], serving_image: str) -> str:
    """ECR URI of the real serving image, pushed to the local registry as a release would."""
    return push_to_registry(serving_image, "emulator-tests/serving")


@pytest.fixture
def resources(aws: Aws, bucket: str) -> Iterator[Resources]:
    created = Resources(aws, bucket)
    yield created
    created.cleanup()


@pytest.fixture
def private_emulator(tmp_path: Path, stack: dict[str, str]) -> Iterator[Callable[..., PrivateEmulator]]:
    """Start private emulators (own state, ports, limits); each is stopped and its containers removed."""
    started: list[PrivateEmulator] = []

    def start(**limits: str) -> PrivateEmulator:
        emulator = PrivateEmulator(tmp_path / f"state-{len(started)}", stack, **limits)
        started.append(emulator)
        emulator.start()
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
        emulator.remove_containers()


@pytest.fixture(scope="session")
def minilm_model_data(aws: Aws, bucket: str, minilm_dir: Path) -> str:
    """s3:// URI of all-MiniLM-L6-v2 packaged as SageMaker model data (model.tar.gz)."""
    key = "minilm/model.tar.gz"
    aws.s3.put_object(Bucket=bucket, Key=key, Body=folder_tarball(minilm_dir))
    return f"s3://{bucket}/{key}"
