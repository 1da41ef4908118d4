"""A restart of the emulator loses nothing: resources, tags, endpoints InService with their containers.

Each test runs its own emulator process (own state folder and ports, the stack's moto and registry)
so it can be stopped and started without disturbing the shared stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.emulator.emulator_support import Aws, PrivateEmulator, Resources, make_clients, tarball

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def _serve_one(made: Resources, image: str, instances: int = 2, **environment: str) -> str:
    data = made.upload(tarball({"weights.txt": b"persisted"}))
    model = made.model(image, data, container={"Environment": environment}, Tags=[{"Key": "k", "Value": "v"}])
    return made.endpoint(made.single(model, instances=instances))


def _answer(clients: Aws, endpoint: str) -> dict[str, object]:
    response = clients.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    return dict(json.loads(response["Body"].read()))


def test_restart_keeps_endpoints_and_their_running_containers(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator()
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    endpoint = _serve_one(made, double_image)
    before = made.wait_status(endpoint, "InService")
    containers = sorted(c.id for c in emulator.containers())
    model_before = clients.sagemaker.describe_model(ModelName=made.models[0])
    tags_before = clients.sagemaker.list_tags(ResourceArn=model_before["ModelArn"])["Tags"]

    emulator.stop()
    emulator.start()

    after = clients.sagemaker.describe_endpoint(EndpointName=endpoint)
    assert after["EndpointStatus"] == "InService"
    assert after["ProductionVariants"] == before["ProductionVariants"]
    assert after["CreationTime"] == before["CreationTime"]
    model_after = clients.sagemaker.describe_model(ModelName=made.models[0])
    assert {k: v for k, v in model_after.items() if k != "ResponseMetadata"} == {
        k: v for k, v in model_before.items() if k != "ResponseMetadata"
    }
    assert clients.sagemaker.list_tags(ResourceArn=model_before["ModelArn"])["Tags"] == tags_before
    assert sorted(c.id for c in emulator.containers()) == containers  # adopted, not restarted
    assert _answer(clients, endpoint)["model_files"] == {"weights.txt": "persisted"}
    made.cleanup()
    assert emulator.containers() == []


def test_restart_recreates_containers_that_are_gone(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator()
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    endpoint = _serve_one(made, double_image, DOUBLE_START_DELAY="2")
    made.wait_status(endpoint, "InService")
    old = {c.id for c in emulator.containers()}

    emulator.stop()
    emulator.remove_containers()  # what `python -m emulator down` does
    emulator.start()

    assert clients.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    # The first invocation waits for the re-created containers instead of failing.
    assert _answer(clients, endpoint)["model_files"] == {"weights.txt": "persisted"}
    new = {c.id for c in emulator.containers()}
    assert len(new) == 2 and not new & old
    made.cleanup()


def test_interrupted_creation_resumes(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator()
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    endpoint = _serve_one(made, double_image, instances=1, DOUBLE_START_DELAY="4")
    assert clients.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"

    emulator.stop()
    emulator.start()

    assert made.wait_status(endpoint, "InService")["EndpointStatus"] == "InService"
    assert len(emulator.containers()) == 1  # the half-started container of the first attempt is gone
    made.cleanup()


def test_an_interrupted_blue_green_update_starts_over_without_its_half_made_fleet(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    """Stopped while the canary bakes, the emulator resumes the update from the old fleet alone: the new
    fleet of the first attempt is neither counted as old fleet nor left running."""
    emulator = private_emulator()
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    endpoint = _serve_one(made, double_image, instances=2, DOUBLE_NAME="blue")
    made.wait_status(endpoint, "InService")
    # The new fleet takes 8 s to start: long enough to see who answers while the update starts over.
    environment = {"DOUBLE_NAME": "green", "DOUBLE_START_DELAY": "8"}
    green = made.single(made.model(double_image, container={"Environment": environment}), instances=2)
    clients.sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=green,
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 20,
                    "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                },
                "TerminationWaitInSeconds": 0,
                "MaximumExecutionTimeoutInSeconds": 600,
            }
        },
    )
    deadline = time.monotonic() + 90
    # The green fleet beside the blue one, the canary baking with its share of the traffic.
    while len(emulator.containers()) < 4 or _answer(clients, endpoint)["name"] != "green":
        assert time.monotonic() < deadline, "the green fleet did not start"
        time.sleep(0.5)

    emulator.stop()
    emulator.start()

    # The update starts over: until its new fleet is up, the old one alone answers (the half-made fleet,
    # kept as "old fleet", would answer with the new model, and stay after a rollback).
    assert {_answer(clients, endpoint)["name"] for _ in range(8)} == {"blue"}
    described = made.wait_status(endpoint, "InService", timeout=180)
    assert described["EndpointConfigName"] == green
    # The new fleet only (the first attempt's is gone too); the old fleet's go just after InService.
    deadline = time.monotonic() + 60
    while len(emulator.containers()) != 2:
        assert time.monotonic() < deadline, f"{len(emulator.containers())} containers, not the new fleet's 2"
        time.sleep(0.5)
    assert {_answer(clients, endpoint)["name"] for _ in range(6)} == {"green"}
    made.cleanup()
