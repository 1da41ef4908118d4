"""Clients nobody here wrote, unchanged, on the local stack: the AWS CLI and sagemaker-core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.emulator_support import ROLE_ARN, Aws, tarball, unique, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.docker]

AWS_CLI = str(Path(sys.executable).parent / "aws")


def _cli(env: dict[str, str], *args: str) -> Any:
    result = subprocess.run(
        [AWS_CLI, *args, "--output", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert result.returncode == 0, f"aws {' '.join(args)} failed: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_sequence(
    stack: dict[str, str], aws: Aws, bucket: str, double_image: str, tmp_path: Path
) -> None:
    name = unique("cli")
    key = f"{name}/model.tar.gz"
    aws.s3.put_object(Bucket=bucket, Key=key, Body=tarball({"weights.txt": b"cli"}))

    created = _cli(
        stack,
        "sagemaker",
        "create-model",
        "--model-name",
        name,
        "--execution-role-arn",
        ROLE_ARN,
        "--primary-container",
        f"Image={double_image},ModelDataUrl=s3://{bucket}/{key}",
    )
    assert created["ModelArn"] == f"arn:aws:sagemaker:us-east-1:123456789012:model/{name}"
    _cli(
        stack,
        "sagemaker",
        "create-endpoint-config",
        "--endpoint-config-name",
        name,
        "--production-variants",
        f"VariantName=AllTraffic,ModelName={name},InstanceType=ml.m5.large,InitialInstanceCount=1",
    )
    _cli(stack, "sagemaker", "create-endpoint", "--endpoint-name", name, "--endpoint-config-name", name)
    try:
        # Polled with boto3: the CLI's waiter sleeps its model's 30 s between checks.
        assert wait_for_status(aws, name, "InService")["EndpointStatus"] == "InService"
        described = _cli(stack, "sagemaker", "describe-endpoint", "--endpoint-name", name)
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
        _cli(stack, "sagemaker", "wait", "endpoint-in-service", "--endpoint-name", name)

        out = tmp_path / "answer.json"
        invoked = _cli(
            stack,
            "sagemaker-runtime",
            "invoke-endpoint",
            "--endpoint-name",
            name,
            "--content-type",
            "application/json",
            "--body",
            '{"inputs": "from the cli"}',
            str(out),
        )
        assert invoked["InvokedProductionVariant"] == "AllTraffic"
        answer = json.loads(out.read_text())
        assert answer["body"] == '{"inputs": "from the cli"}'
        assert answer["model_files"] == {"weights.txt": "cli"}

        # --endpoint-url works as well as the AWS_ENDPOINT_URL_SAGEMAKER variable.
        plain = {k: v for k, v in stack.items() if not k.startswith("AWS_ENDPOINT_URL")}
        listed = _cli(
            plain,
            "sagemaker",
            "list-endpoints",
            "--endpoint-url",
            stack["AWS_ENDPOINT_URL_SAGEMAKER"],
            "--name-contains",
            name,
        )
        assert [e["EndpointName"] for e in listed["Endpoints"]] == [name]
    finally:
        _cli(stack, "sagemaker", "delete-endpoint", "--endpoint-name", name)
        aws.sagemaker.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 1})
        _cli(stack, "sagemaker", "delete-endpoint-config", "--endpoint-config-name", name)
        _cli(stack, "sagemaker", "delete-model", "--model-name", name)


@pytest.mark.slow
def test_sagemaker_core_resources(
    stack_env: dict[str, str], serving_ecr_image: str, minilm_model_data: str
) -> None:
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
    from sagemaker.core.utils.utils import SageMakerClient

    SageMakerClient.reset()  # clients cached by an earlier test would miss this test's endpoint variables
    name = unique("core")
    model = Model.create(
        model_name=name,
        primary_container=ContainerDefinition(image=serving_ecr_image, model_data_url=minilm_model_data),
        execution_role_arn=ROLE_ARN,
    )
    config = EndpointConfig.create(
        endpoint_config_name=name,
        production_variants=[
            ProductionVariant(
                variant_name="AllTraffic",
                model_name=name,
                instance_type="ml.m5.large",
                initial_instance_count=1,
            )
        ],
    )
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name)
    try:
        endpoint.wait_for_status("InService", poll=1, timeout=300)
        assert endpoint.refresh().production_variants[0].current_instance_count == 1
        result = endpoint.invoke(body=json.dumps({"inputs": ["hello"]}), content_type="application/json")
        assert result.invoked_production_variant == "AllTraffic"
        assert len(json.loads(result.body.read())[0]) == 384
    finally:
        endpoint.delete()
        endpoint.wait_for_delete(poll=1, timeout=120)
        config.delete()
        model.delete()
    assert [e.endpoint_name for e in Endpoint.get_all(name_contains=name)] == []
