"""InvokeEndpoint: routing by weights and TargetVariant, ModelError, concurrency, the time limit."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.emulator.emulator_support import Aws, PrivateEmulator, Resources, make_clients, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker]


def _variant(name: str, model: str, weight: float, instances: int = 1) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": instances,
        "InitialVariantWeight": weight,
    }


@pytest.fixture
def two_variants(resources: Resources, double_image: str) -> str:
    """Endpoint with variant Blue (weight 3) and Green (weight 1), each naming itself in answers."""
    blue = resources.model(double_image, container={"Environment": {"DOUBLE_NAME": "blue"}})
    green = resources.model(double_image, container={"Environment": {"DOUBLE_NAME": "green"}})
    endpoint = resources.endpoint(resources.config([_variant("Blue", blue, 3), _variant("Green", green, 1)]))
    assert resources.wait_status(endpoint, "InService")["EndpointStatus"] == "InService"
    return endpoint


def _invoke(aws: Aws, endpoint: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    response = aws.runtime.invoke_endpoint(
        EndpointName=endpoint, Body=b"{}", ContentType="application/json", **extra
    )
    return response["InvokedProductionVariant"], json.loads(response["Body"].read())


def test_traffic_follows_variant_weights(aws: Aws, two_variants: str) -> None:
    seen = Counter(_invoke(aws, two_variants)[0] for _ in range(200))
    assert set(seen) == {"Blue", "Green"}
    assert 0.6 < seen["Blue"] / 200 < 0.9, seen


def test_target_variant_is_honoured(aws: Aws, two_variants: str) -> None:
    answers = [_invoke(aws, two_variants, TargetVariant="Green") for _ in range(20)]
    assert {variant for variant, _ in answers} == {"Green"}
    assert {answer["name"] for _, answer in answers} == {"green"}


def test_unknown_target_variant_is_a_validation_error(aws: Aws, two_variants: str) -> None:
    with pytest.raises(aws.runtime.exceptions.ValidationError, match="TargetVariant Purple"):
        _invoke(aws, two_variants, TargetVariant="Purple")


def test_weights_update_moves_all_traffic(aws: Aws, resources: Resources, two_variants: str) -> None:
    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=two_variants,
        DesiredWeightsAndCapacities=[
            {"VariantName": "Blue", "DesiredWeight": 0},
            {"VariantName": "Green", "DesiredWeight": 1},
        ],
    )
    described = resources.wait_status(two_variants, "InService")
    weights = {
        v["VariantName"]: (v["CurrentWeight"], v["DesiredWeight"]) for v in described["ProductionVariants"]
    }
    assert weights == {"Blue": (0.0, 0.0), "Green": (1.0, 1.0)}
    assert {_invoke(aws, two_variants)[0] for _ in range(30)} == {"Green"}
    # A variant at weight 0 still answers when asked by name.
    assert _invoke(aws, two_variants, TargetVariant="Blue")[0] == "Blue"


def test_capacity_update_adds_and_removes_instances(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    endpoint = resources.endpoint(resources.single(resources.model(double_image)))
    resources.wait_status(endpoint, "InService")

    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
    )
    assert aws.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"
    variant = resources.wait_status(endpoint, "InService")["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (3, 3)
    hosts = {_invoke(aws, endpoint)[1]["hostname"] for _ in range(9)}
    assert len(hosts) == 3  # round robin over the three containers

    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
    )
    variant = resources.wait_status(endpoint, "InService")["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 1
    assert len({_invoke(aws, endpoint)[1]["hostname"] for _ in range(4)}) == 1


@pytest.mark.parametrize(("status", "side"), [(500, "server"), (422, "client")])
def test_container_error_is_a_model_error(
    aws: Aws, resources: Resources, double_image: str, status: int, side: str
) -> None:
    model = resources.model(double_image, container={"Environment": {"DOUBLE_STATUS": str(status)}})
    endpoint = resources.endpoint(resources.single(model))
    resources.wait_status(endpoint, "InService")

    with pytest.raises(aws.runtime.exceptions.ModelError) as raised:
        aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")

    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == status
    assert response["OriginalMessage"] == f"double fails with {status}, as told"
    assert response["LogStreamArn"] == (
        f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    )
    assert response["Error"]["Message"].startswith(
        f"Received {side} error ({status}) from primary with message"
    )


def test_concurrent_invocations_run_concurrently(
    stack: dict[str, str], resources: Resources, double_image: str
) -> None:
    model = resources.model(double_image, container={"Environment": {"DOUBLE_DELAY": "1"}})
    endpoint = resources.endpoint(resources.single(model))
    resources.wait_status(endpoint, "InService")
    runtime = make_clients(stack).runtime

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        variants = list(
            pool.map(lambda _: runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}"), range(8))
        )
    elapsed = time.monotonic() - started

    assert len(variants) == 8
    assert elapsed < 4, f"8 one-second invocations took {elapsed:.1f} s: they were not proxied concurrently"


def test_custom_attributes_pass_both_ways(aws: Aws, resources: Resources, double_image: str) -> None:
    endpoint = resources.endpoint(resources.single(resources.model(double_image)))
    resources.wait_status(endpoint, "InService")
    response = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}", CustomAttributes="trace=1")
    assert response["CustomAttributes"] == "seen=trace=1"


def test_invocations_are_recorded_with_latencies(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    endpoint = resources.endpoint(resources.single(resources.model(double_image)))
    resources.wait_status(endpoint, "InService")
    since = time.time()
    for _ in range(3):
        _invoke(aws, endpoint)

    url = f"{stack['AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME']}/_emulator/invocations"
    records = httpx.get(url, params={"EndpointName": endpoint, "since": since}).json()["Invocations"]

    assert len(records) == 3
    for record in records:
        assert (record["VariantName"], record["Kind"], record["ModelStatus"]) == ("AllTraffic", "sync", 200)
        assert record["ModelLatency"] > 0
        assert record["OverheadLatency"] >= 0


def test_invocation_time_limit(
    private_emulator: Callable[..., PrivateEmulator], aws: Aws, bucket: str, double_image: str
) -> None:
    # SageMaker's limit is 60 s; this emulator is given 2 s so the test does not wait a minute.
    emulator = private_emulator(SAGEMAKER_EMULATOR_INVOCATION_TIMEOUT="2")
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    try:
        model = made.model(double_image, container={"Environment": {"DOUBLE_DELAY": "5"}})
        endpoint = made.endpoint(made.single(model))
        made.wait_status(endpoint, "InService")
        started = time.monotonic()
        with pytest.raises(clients.runtime.exceptions.ModelError, match="Your invocation timed out"):
            clients.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
        assert time.monotonic() - started < 4.5
    finally:
        made.cleanup()


def test_a_real_time_request_over_six_megabytes_is_refused(aws: Aws) -> None:
    """botocore does not check the BodyBlob maximum (6291456 bytes); SageMaker refuses it on the server."""
    oversized = b"x" * (6 * 1024 * 1024 + 1)
    with pytest.raises(aws.runtime.exceptions.ValidationError, match="exceeds the 6291456-byte limit"):
        aws.runtime.invoke_endpoint(EndpointName=unique("no-such-endpoint"), Body=oversized)
