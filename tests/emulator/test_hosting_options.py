"""Model data sources, serial inference pipelines and serverless variants."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.emulator.emulator_support import ROLE_ARN, Aws, Resources, tarball, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker]


def _model_files(aws: Aws, resources: Resources, model: str) -> dict[str, str]:
    endpoint = resources.endpoint(resources.single(model))
    assert resources.wait_status(endpoint, "InService")["EndpointStatus"] == "InService"
    body = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["Body"].read()
    return dict(json.loads(body)["model_files"])


@pytest.mark.parametrize(
    ("data_type", "compression", "expected"),
    [
        ("S3Prefix", "None", {"config.json": "{}", "weights/part-1.bin": "one"}),
        ("S3Object", "Gzip", {"inside.txt": "from the tarball"}),
        ("S3Object", "None", {"single.bin": "just one file"}),
    ],
)
def test_model_data_source(
    aws: Aws,
    resources: Resources,
    bucket: str,
    double_image: str,
    data_type: str,
    compression: str,
    expected: dict[str, str],
) -> None:
    prefix = unique("source")
    if data_type == "S3Prefix":
        for name, content in expected.items():
            aws.s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=content.encode())
        uri = f"s3://{bucket}/{prefix}/"
    elif compression == "Gzip":
        uri = resources.upload(
            tarball({k: v.encode() for k, v in expected.items()}), f"{prefix}/model.tar.gz"
        )
    else:
        uri = resources.upload(b"just one file", f"{prefix}/single.bin")
    source = {"S3DataSource": {"S3Uri": uri, "S3DataType": data_type, "CompressionType": compression}}
    model = resources.model(double_image, container={"ModelDataSource": source})
    assert _model_files(aws, resources, model) == expected


def test_serial_inference_pipeline_pipes_each_output_to_the_next(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    def step(name: str, **environment: str) -> dict[str, Any]:
        return {
            "Image": double_image,
            "ContainerHostname": name,
            "Environment": {"DOUBLE_MODE": "pipe", "DOUBLE_NAME": name, **environment},
        }

    model = unique("pipeline")
    aws.sagemaker.create_model(
        ModelName=model, ExecutionRoleArn=ROLE_ARN, Containers=[step("features"), step("predictor")]
    )
    resources.models.append(model)
    endpoint = resources.endpoint(resources.single(model))
    described = resources.wait_status(endpoint, "InService")
    assert len(described["ProductionVariants"][0]["DeployedImages"]) == 2

    response = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"1,2,3", ContentType="text/csv")

    assert response["Body"].read() == b"1,2,3|features|predictor"
    assert response["ContentType"] == "text/x-predictor"


def test_pipeline_error_names_the_failing_container(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    model = unique("pipeline")
    aws.sagemaker.create_model(
        ModelName=model,
        ExecutionRoleArn=ROLE_ARN,
        Containers=[
            {"Image": double_image, "ContainerHostname": "features", "Environment": {"DOUBLE_MODE": "pipe"}},
            {
                "Image": double_image,
                "ContainerHostname": "predictor",
                "Environment": {"DOUBLE_STATUS": "400"},
            },
        ],
    )
    resources.models.append(model)
    endpoint = resources.endpoint(resources.single(model))
    resources.wait_status(endpoint, "InService")

    with pytest.raises(aws.runtime.exceptions.ModelError, match=r"client error \(400\) from predictor"):
        aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"1,2,3", ContentType="text/csv")


def test_serverless_variant(aws: Aws, resources: Resources, double_image: str) -> None:
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    config = resources.config(
        [
            {
                "VariantName": "AllTraffic",
                "ModelName": resources.model(double_image),
                "ServerlessConfig": serverless,
            }
        ]
    )
    endpoint = resources.endpoint(config)
    variant = resources.wait_status(endpoint, "InService")["ProductionVariants"][0]

    assert variant["CurrentServerlessConfig"] == serverless
    assert "CurrentInstanceCount" not in variant
    response = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    assert response["InvokedProductionVariant"] == "AllTraffic"
    with pytest.raises(aws.runtime.exceptions.ValidationError, match="4194304-byte limit of serverless"):
        aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"x" * (4 * 1024 * 1024 + 1))
