"""Every way an endpoint can fail to come up ends in Failed with a FailureReason that says what broke.

The failing endpoints are created together in one module fixture so their waits overlap. A container
that never answers /ping is waited for on a private emulator whose default health-check timeout is
4 s: SageMaker accepts no ContainerStartupHealthCheckTimeoutInSeconds below 60.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import (
    Aws,
    PrivateEmulator,
    Resources,
    delete_endpoint,
    make_clients,
    tarball,
)

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.fixture(scope="module")
def failed(aws: Aws, bucket: str, double_image: str) -> Iterator[dict[str, dict[str, Any]]]:
    """Create one endpoint per failure at once; yield their settled DescribeEndpoint answers by case."""
    made = Resources(aws, bucket)
    missing_image = double_image.replace("emulator-tests/double", "emulator-tests/does-not-exist")
    vanished = made.upload(tarball({"weights.txt": b"w"}))
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        # Not an ECR host, so CreateModel cannot check it; the pull at deploy time fails.
        "image": (made.model(f"127.0.0.1:5000/{missing_image.split('/', 1)[1]}"), {}),
        "model_data": (made.model(double_image, vanished), {}),
        "exit": (made.model(double_image, container={"Environment": {"DOUBLE_EXIT": "3"}}), {}),
        "escape": (
            made.model(double_image, made.upload(_tar_with(tarfile.TarInfo("../evil.txt"), b"x"))),
            {},
        ),
        "symlink": (made.model(double_image, made.upload(_tar_with(_symlink("passwd", "/etc/passwd")))), {}),
        "symlink_up": (
            made.model(double_image, made.upload(_tar_with(_symlink("up", "../../../../etc/passwd")))),
            {},
        ),
    }
    # The object existed at CreateModel; it disappears before the endpoint fetches it.
    bucket_name, key = vanished[5:].split("/", 1)
    aws.s3.delete_object(Bucket=bucket_name, Key=key)
    endpoints = {
        case: made.endpoint(made.single(model, **variant)) for case, (model, variant) in cases.items()
    }

    settled: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while len(settled) < len(endpoints):
        assert time.monotonic() < deadline, f"still not settled: {sorted(set(endpoints) - set(settled))}"
        for case, name in endpoints.items():
            if case not in settled:
                described = aws.sagemaker.describe_endpoint(EndpointName=name)
                if described["EndpointStatus"] not in ("Creating",):
                    settled[case] = described
        time.sleep(1)
    yield settled
    made.cleanup()


def test_image_that_cannot_be_pulled(failed: dict[str, dict[str, Any]]) -> None:
    described = failed["image"]
    assert described["EndpointStatus"] == "Failed"
    assert (
        "Failed to pull the image 127.0.0.1:5000/emulator-tests/does-not-exist" in described["FailureReason"]
    )
    assert "production variant AllTraffic" in described["FailureReason"]


def test_model_data_gone_from_s3(failed: dict[str, dict[str, Any]]) -> None:
    described = failed["model_data"]
    assert described["EndpointStatus"] == "Failed"
    assert "Failed to prepare model data" in described["FailureReason"]
    assert "no S3 object is there" in described["FailureReason"]


def test_container_never_healthy(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator(SAGEMAKER_EMULATOR_STARTUP_TIMEOUT="4")
    made = Resources(make_clients(emulator.client_env), bucket)
    try:
        model = made.model(double_image, container={"Environment": {"DOUBLE_PING": "never"}})
        described = made.wait_status(made.endpoint(made.single(model)), "Failed", timeout=60)
    finally:
        made.cleanup()
    reason = described["FailureReason"]
    assert described["EndpointStatus"] == "Failed"
    assert "The primary container for production variant AllTraffic did not pass the ping health" in reason
    assert "within 4 s (/ping answered 503)" in reason
    assert '"GET /ping HTTP/1.1" 503' in reason  # the container's own log lines
    assert emulator.containers() == []


def test_container_exits(failed: dict[str, dict[str, Any]]) -> None:
    reason = failed["exit"]["FailureReason"]
    assert failed["exit"]["EndpointStatus"] == "Failed"
    assert (
        "The primary container for production variant AllTraffic exited before it passed the ping" in reason
    )
    assert "exited with code 3" in reason
    assert "cannot go on, exiting with code 3 as told" in reason


@pytest.mark.parametrize("case", ["escape", "symlink", "symlink_up"])
def test_unsafe_tarball_is_not_unpacked(failed: dict[str, dict[str, Any]], case: str) -> None:
    assert failed[case]["EndpointStatus"] == "Failed"
    assert "model data tarball is unsafe and was not unpacked" in failed[case]["FailureReason"]


def test_failed_endpoint_accepts_only_delete(failed: dict[str, dict[str, Any]], aws: Aws) -> None:
    described = failed["exit"]
    name, config = described["EndpointName"], described["EndpointConfigName"]
    arn = described["EndpointArn"]
    with pytest.raises(ClientError) as update:
        aws.sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)
    assert update.value.response["Error"]["Code"] == "ValidationException"
    assert f'Cannot update failed endpoint "{arn}"' in update.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as weights:
        aws.sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredWeight": 1}]
        )
    assert weights.value.response["Error"]["Code"] == "ValidationException"

    delete_endpoint(aws, name)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        aws.sagemaker.describe_endpoint(EndpointName=name)


def test_failed_endpoint_leaves_no_container(failed: dict[str, dict[str, Any]]) -> None:
    import docker

    client = docker.from_env()
    for case, described in failed.items():
        left = client.containers.list(
            all=True, filters={"label": f"sagemaker-release.endpoint={described['EndpointName']}"}
        )
        assert left == [], f"{case}: containers left behind: {[c.name for c in left]}"
