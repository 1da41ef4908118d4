"""A restart of the emulator loses nothing: resources, tags, endpoints InService with their containers.

Each test runs its own emulator process (own state folder and ports, the stack's moto and registry)
so it can be stopped and started without disturbing the shared stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from emulator.fleet.containers import LABEL_ENDPOINT
from tests.emulator.emulator_support import Aws, PrivateEmulator, Resources, make_clients, tarball

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def _serve_one(made: Resources, image: str, instances: int = 2, **environment: str) -> str:
    data = made.upload(tarball({"weights.txt": b"persisted"}))
    model = made.model(image, data, container={"Environment": environment}, Tags=[{"Key": "k", "Value": "v"}])
    return made.endpoint(made.single(model, instances=instances))


def _answer(clients: Aws, endpoint: str) -> dict[str, object]:
    response = clients.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    return dict(json.loads(response["Body"].read()))


def _container_ids(emulator: PrivateEmulator, endpoint: str) -> set[str]:
    return {c.id for c in emulator.containers() if c.labels.get(LABEL_ENDPOINT) == endpoint}


def _canary(wait_s: int) -> dict[str, object]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": wait_s,
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
            },
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": 600,
        }
    }


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
    fleet of the first attempt is neither counted as old fleet nor left running. Another endpoint's
    containers are adopted untouched."""
    emulator = private_emulator()
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    endpoint = _serve_one(made, double_image, instances=2, DOUBLE_NAME="blue")
    bystander = _serve_one(made, double_image, instances=1, DOUBLE_NAME="bystander")
    made.wait_status(endpoint, "InService")
    made.wait_status(bystander, "InService")
    bystander_containers = _container_ids(emulator, bystander)
    # The new fleet takes 8 s to start: long enough to see who answers while the update starts over.
    environment = {"DOUBLE_NAME": "green", "DOUBLE_START_DELAY": "8"}
    green = made.single(made.model(double_image, container={"Environment": environment}), instances=2)
    clients.sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=_canary(20)
    )
    deadline = time.monotonic() + 90
    # The green fleet beside the blue one, the canary baking with its share of the traffic.
    while len(_container_ids(emulator, endpoint)) < 4 or _answer(clients, endpoint)["name"] != "green":
        assert time.monotonic() < deadline, "the green fleet did not start"
        time.sleep(0.5)

    emulator.stop()
    emulator.start()

    assert _container_ids(emulator, bystander) == bystander_containers
    # The update starts over: until its new fleet is up, the old one alone answers (the half-made fleet,
    # kept as "old fleet", would answer with the new model, and stay after a rollback).
    assert {_answer(clients, endpoint)["name"] for _ in range(8)} == {"blue"}
    described = made.wait_status(endpoint, "InService", timeout=180)
    assert described["EndpointConfigName"] == green
    # The new fleet only (the first attempt's is gone too); the old fleet's go just after InService.
    deadline = time.monotonic() + 60
    while len(_container_ids(emulator, endpoint)) != 2:
        count = len(_container_ids(emulator, endpoint))
        assert time.monotonic() < deadline, f"{count} containers, not the new fleet's 2"
        time.sleep(0.5)
    assert {_answer(clients, endpoint)["name"] for _ in range(6)} == {"green"}
    assert _container_ids(emulator, bystander) == bystander_containers
    assert clients.sagemaker.describe_endpoint(EndpointName=bystander)["EndpointStatus"] == "InService"
    made.cleanup()


def test_an_interrupted_blue_green_update_to_the_config_in_use_drops_its_half_made_fleet(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    """An update to the config the endpoint already uses (SageMaker takes it: a redeploy) has both fleets
    under one EndpointConfigName; after a restart the old fleet is kept and the first attempt's new
    fleet goes, told apart by its deployment, not by its config's name."""
    emulator = private_emulator()
    clients = make_clients(emulator.client_env)
    made = Resources(clients, bucket)
    endpoint = _serve_one(made, double_image, instances=2, DOUBLE_START_DELAY="4")
    config = made.wait_status(endpoint, "InService")["EndpointConfigName"]
    old_fleet = _container_ids(emulator, endpoint)
    clients.sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=config, DeploymentConfig=_canary(30)
    )
    deadline = time.monotonic() + 90
    while True:
        pending = clients.sagemaker.describe_endpoint(EndpointName=endpoint).get("PendingDeploymentSummary")
        if pending and pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Baking":
            break
        assert time.monotonic() < deadline, "the canary did not start baking"
        time.sleep(0.5)
    first_attempt = _container_ids(emulator, endpoint) - old_fleet
    assert len(first_attempt) == 2

    emulator.stop()
    emulator.start()

    running = _container_ids(emulator, endpoint)
    assert old_fleet <= running
    assert not first_attempt & running, "the first attempt's new fleet was kept as old fleet"
    assert made.wait_status(endpoint, "InService", timeout=180)["EndpointConfigName"] == config
    deadline = time.monotonic() + 60
    while (running := _container_ids(emulator, endpoint)) & old_fleet or len(running) != 2:
        assert time.monotonic() < deadline, f"{len(running)} containers, not the new fleet's 2"
        time.sleep(0.5)
    assert not running & first_attempt
    made.cleanup()
