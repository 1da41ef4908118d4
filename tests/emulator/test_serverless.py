"""Serverless variants as SageMaker serves them: MaxConcurrency, cold starts, memory, provisioned concurrency.

A private emulator keeps an idle serverless instance 3 s (SAGEMAKER_EMULATOR_SERVERLESS_IDLE_S) instead of
minutes, so a test can watch instances come and go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import PrivateEmulator, Resources, make_clients
from tests.emulator.scaling_support import poll

pytestmark = [pytest.mark.stack, pytest.mark.docker]

IDLE_S = "3"


@pytest.fixture
def serverless(
    private_emulator: Callable[..., PrivateEmulator], bucket: str
) -> Iterator[tuple[PrivateEmulator, Resources]]:
    emulator = private_emulator(SAGEMAKER_EMULATOR_SERVERLESS_IDLE_S=IDLE_S)
    made = Resources(make_clients(emulator.client_env), bucket)
    yield emulator, made
    made.cleanup()


def _endpoint(made: Resources, image: str, config: dict[str, Any], **environment: str) -> str:
    model = made.model(image, container={"Environment": environment} if environment else {})
    endpoint = made.endpoint(
        made.config([{"VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": config}])
    )
    made.wait_status(endpoint, "InService")
    return endpoint


def _containers(emulator: PrivateEmulator, endpoint: str) -> list[Any]:
    return [
        c
        for c in emulator.containers()
        if c.labels.get("sagemaker-release.endpoint") == endpoint and c.status == "running"
    ]


def _runtime_without_retries(emulator: PrivateEmulator) -> Any:
    env = emulator.client_env
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        # botocore retries ThrottlingException by itself; one attempt shows what the service answered.
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60),
    )


def _at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """Run `call` from `count` threads released together; each result or the exception it raised."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = call()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_requests_beyond_max_concurrency_are_throttled(
    serverless: tuple[PrivateEmulator, Resources], double_image: str
) -> None:
    emulator, made = serverless
    endpoint = _endpoint(made, double_image, {"MemorySizeInMB": 1024, "MaxConcurrency": 2}, DOUBLE_DELAY="2")
    runtime = _runtime_without_retries(emulator)

    results = _at_once(3, lambda: runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}"))

    throttled = [r for r in results if isinstance(r, ClientError)]
    assert len(throttled) == 1, results
    error = throttled[0].response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ThrottlingException",
        400,
    )
    assert "MaxConcurrency of 2" in error["Error"]["Message"]
    assert sum(isinstance(r, dict) for r in results) == 2
    # Below the limit again, a request is served.
    assert (
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["InvokedProductionVariant"] == "AllTraffic"
    )


def test_the_first_request_after_idle_pays_a_cold_start_and_idle_instances_stop(
    serverless: tuple[PrivateEmulator, Resources], double_image: str
) -> None:
    emulator, made = serverless
    endpoint = _endpoint(made, double_image, {"MemorySizeInMB": 2048, "MaxConcurrency": 5})
    poll(lambda: not _containers(emulator, endpoint), "the idle instance stopped", timeout=30)

    sent = datetime.now().astimezone()
    started = time.monotonic()
    made.aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    cold = time.monotonic() - started
    started = time.monotonic()
    made.aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    warm = time.monotonic() - started

    (container,) = _containers(emulator, endpoint)
    created = datetime.fromisoformat(container.attrs["Created"].replace("Z", "+00:00")[:26] + "+00:00")
    assert created >= sent.replace(microsecond=0).astimezone(created.tzinfo), "no container started on demand"
    assert cold > warm, f"cold {cold:.3f} s, warm {warm:.3f} s"
    # The memory limit is the variant's MemorySizeInMB, with no swap to grow into.
    assert container.attrs["HostConfig"]["Memory"] == 2048 << 20
    assert container.attrs["HostConfig"]["MemorySwap"] == 2048 << 20
    poll(lambda: not _containers(emulator, endpoint), "the instance stopped again once idle", timeout=30)


def test_provisioned_concurrency_keeps_instances_warm(
    serverless: tuple[PrivateEmulator, Resources], double_image: str
) -> None:
    emulator, made = serverless
    config = {"MemorySizeInMB": 1024, "MaxConcurrency": 3, "ProvisionedConcurrency": 1}
    endpoint = _endpoint(made, double_image, config, DOUBLE_DELAY="1")
    (warm,) = _containers(emulator, endpoint)

    # Two at once: the provisioned instance takes one, the other pays a cold start on a second instance.
    results = _at_once(2, lambda: made.aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}"))
    assert all(isinstance(r, dict) for r in results), results
    assert len(_containers(emulator, endpoint)) == 2

    # Once idle the on-demand instance stops; the provisioned one stays, and serves without a cold start.
    poll(lambda: len(_containers(emulator, endpoint)) == 1, "the on-demand instance stopped", timeout=30)
    assert [c.id for c in _containers(emulator, endpoint)] == [warm.id]
    made.aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    assert [c.id for c in _containers(emulator, endpoint)] == [warm.id]
