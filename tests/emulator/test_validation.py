"""Refusals with AWS's error codes and messages; pagination, sorting and tags of the control plane."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import ROLE_ARN, Aws, Resources, tarball, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker]

ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def _error(call: Any, **params: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return dict(raised.value.response["Error"])


def _variant(model: str, **extra: Any) -> dict[str, Any]:
    return {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", **extra}


def test_names_are_unique_case_insensitively(aws: Aws, resources: Resources, double_image: str) -> None:
    model = resources.model(double_image)
    error = _error(
        aws.sagemaker.create_model, ModelName=model.upper(), PrimaryContainer={"Image": double_image}
    )
    assert error == {
        "Code": "ValidationException",
        "Message": f'Cannot create already existing model "{ARN}:model/{model}".',
    }
    config = resources.config([_variant(model, InitialInstanceCount=1)])
    error = _error(
        aws.sagemaker.create_endpoint_config,
        EndpointConfigName=config,
        ProductionVariants=[_variant(model, InitialInstanceCount=1)],
    )
    assert (
        error["Message"]
        == f'Cannot create already existing endpoint configuration "{ARN}:endpoint-config/{config}".'
    )


def test_references_to_missing_resources(aws: Aws, resources: Resources) -> None:
    missing = unique("missing")
    error = _error(
        aws.sagemaker.create_endpoint_config,
        EndpointConfigName=unique("config"),
        ProductionVariants=[_variant(missing, InitialInstanceCount=1)],
    )
    assert error == {
        "Code": "ValidationException",
        "Message": f'Could not find model "{ARN}:model/{missing}".',
    }
    error = _error(aws.sagemaker.create_endpoint, EndpointName=unique("e"), EndpointConfigName=missing)
    assert error["Message"] == f'Could not find endpoint configuration "{ARN}:endpoint-config/{missing}".'
    for call, field, kind in [
        (aws.sagemaker.describe_model, "ModelName", "model"),
        (aws.sagemaker.delete_model, "ModelName", "model"),
        (aws.sagemaker.describe_endpoint_config, "EndpointConfigName", "endpoint configuration"),
        (aws.sagemaker.delete_endpoint_config, "EndpointConfigName", "endpoint configuration"),
        (aws.sagemaker.describe_endpoint, "EndpointName", "endpoint"),
        (aws.sagemaker.delete_endpoint, "EndpointName", "endpoint"),
        (aws.sagemaker.update_endpoint, "EndpointName", "endpoint"),
    ]:
        params = {field: missing}
        if call == aws.sagemaker.update_endpoint:
            params["EndpointConfigName"] = missing
        error = _error(call, **params)
        assert error["Code"] == "ValidationException"
        assert error["Message"].startswith(f'Could not find {kind} "{ARN}:')


def test_create_model_checks_model_data_and_ecr_image(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    absent_data = f"s3://{bucket}/{unique('nothing')}/model.tar.gz"
    error = _error(
        aws.sagemaker.create_model,
        ModelName=unique("m"),
        PrimaryContainer={"Image": double_image, "ModelDataUrl": absent_data},
    )
    assert error == {"Code": "ValidationException", "Message": f"Could not find model data at {absent_data}."}
    absent_image = double_image.rsplit(":", 1)[0] + ":no-such-tag"
    error = _error(
        aws.sagemaker.create_model, ModelName=unique("m"), PrimaryContainer={"Image": absent_image}
    )
    assert error == {"Code": "ValidationException", "Message": f"Requested image {absent_image} not found."}


@pytest.mark.parametrize(
    ("request_of", "message"),
    [
        (lambda image: {}, "specify exactly one of PrimaryContainer (one container) or Containers"),
        (
            lambda image: {"PrimaryContainer": {"Image": image}, "Containers": [{"Image": image}]},
            "specify exactly one of PrimaryContainer",
        ),
        (
            lambda image: {
                "Containers": [
                    {"Image": image, "ContainerHostname": "same"},
                    {"Image": image, "ContainerHostname": "same"},
                ]
            },
            "ContainerHostname values must be unique",
        ),
        (
            lambda image: {
                "PrimaryContainer": {
                    "Image": image,
                    "ModelDataUrl": "s3://b/model.tar.gz",
                    "ModelDataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "CompressionType": "None",
                            "S3Uri": "s3://b/p/",
                        }
                    },
                }
            },
            "give ModelDataUrl or ModelDataSource, not both",
        ),
        (
            lambda image: {
                "PrimaryContainer": {
                    "ModelPackageName": "arn:aws:sagemaker:us-east-1:123456789012:model-package/p"
                }
            },
            "ModelPackageName is not supported by the emulator",
        ),
    ],
)
def test_create_model_container_rules(
    aws: Aws, double_image: str, request_of: Callable[[str], dict[str, Any]], message: str
) -> None:
    error = _error(aws.sagemaker.create_model, ModelName=unique("m"), **request_of(double_image))
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]


def test_a_resource_holds_at_most_fifty_tags(aws: Aws, resources: Resources, double_image: str) -> None:
    model = resources.model(double_image)
    arn = aws.sagemaker.describe_model(ModelName=model)["ModelArn"]
    aws.sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(45)])
    error = _error(
        aws.sagemaker.add_tags, ResourceArn=arn, Tags=[{"Key": f"n{i}", "Value": "v"} for i in range(6)]
    )
    assert error["Code"] == "ValidationException"
    assert "would have 51 tags; at most 50 are allowed" in error["Message"]
    aws.sagemaker.add_tags(
        ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "w"} for i in range(5)]
    )  # replaced


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"S3DataType": "S3Prefix", "CompressionType": "Gzip", "S3Uri": "s3://b/p/"},
            "needs CompressionType None",
        ),
        ({"S3DataType": "S3Prefix", "CompressionType": "None", "S3Uri": "s3://b/p"}, "must end with '/'"),
    ],
)
def test_model_data_source_rules(aws: Aws, double_image: str, source: dict[str, str], message: str) -> None:
    error = _error(
        aws.sagemaker.create_model,
        ModelName=unique("m"),
        PrimaryContainer={"Image": double_image, "ModelDataSource": {"S3DataSource": source}},
    )
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]


def test_server_checks_constraints_botocore_does_not(stack: dict[str, str]) -> None:
    unchecked = boto3.client(
        "sagemaker",
        endpoint_url=stack["AWS_ENDPOINT_URL_SAGEMAKER"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(parameter_validation=False),
    )
    error = _error(unchecked.create_endpoint, EndpointName="bad_name", EndpointConfigName="x" * 64)
    assert error["Code"] == "ValidationException"
    pattern = "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    long_name = "x" * 64
    assert error["Message"] == (
        "3 validation errors detected: "
        f"Value 'bad_name' at 'endpointName' failed to satisfy constraint: {pattern}; "
        f"Value '{long_name}' at 'endpointConfigName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63; "
        f"Value '{long_name}' at 'endpointConfigName' failed to satisfy constraint: {pattern}"
    )
    error = _error(
        unchecked.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[_variant("m", InitialInstanceCount=0, InstanceType="ml.nope")],
    )
    assert (
        "at 'productionVariants.1.member.initialInstanceCount' failed to satisfy constraint"
        in error["Message"]
    )
    assert (
        "at 'productionVariants.1.member.instanceType' failed to satisfy constraint: Member must satisfy enum"
        in (error["Message"])
    )


def test_variant_rules(aws: Aws, resources: Resources, double_image: str) -> None:
    model = resources.model(double_image)
    cases = [
        ([_variant(model)], "set InstanceType and InitialInstanceCount, or ServerlessConfig"),
        (
            [_variant(model, InitialInstanceCount=1), _variant(model, InitialInstanceCount=1)],
            "VariantName values must be unique",
        ),
        (
            [
                {
                    "VariantName": "S",
                    "ModelName": model,
                    "ServerlessConfig": {"MemorySizeInMB": 1500, "MaxConcurrency": 1},
                }
            ],
            "MemorySizeInMB 1500 must be one of",
        ),
    ]
    for variants, message in cases:
        error = _error(
            aws.sagemaker.create_endpoint_config, EndpointConfigName=unique("c"), ProductionVariants=variants
        )
        assert error["Code"] == "ValidationException"
        assert message in error["Message"]


ASYNC_OUTPUT = {"S3OutputPath": "s3://bucket/out"}
CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://bucket/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
}


@pytest.mark.parametrize(
    ("serverless", "extra", "message"),
    [
        (
            True,
            {"AsyncInferenceConfig": {"OutputConfig": ASYNC_OUTPUT}},
            "not available for serverless variants",
        ),
        (
            False,
            {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "https://bucket.example.com/out"}}},
            "OutputConfig.S3OutputPath must be an s3:// URI",
        ),
        (
            False,
            {"AsyncInferenceConfig": {"OutputConfig": {**ASYNC_OUTPUT, "S3FailurePath": "https://h/failed"}}},
            "OutputConfig.S3FailurePath must be an s3:// URI",
        ),
        (
            False,
            {"DataCaptureConfig": {**CAPTURE, "DestinationS3Uri": "https://h/c"}},
            "DestinationS3Uri must be",
        ),
        (
            False,
            {"DataCaptureConfig": {**CAPTURE, "CaptureOptions": [{"CaptureMode": "Input"}] * 2}},
            "lists a CaptureMode twice",
        ),
    ],
)
def test_async_and_capture_config_rules(
    aws: Aws, resources: Resources, double_image: str, serverless: bool, extra: dict[str, Any], message: str
) -> None:
    model = resources.model(double_image)
    variant = (
        {
            "VariantName": "S",
            "ModelName": model,
            "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1},
        }
        if serverless
        else _variant(model, InitialInstanceCount=1)
    )
    error = _error(
        aws.sagemaker.create_endpoint_config,
        EndpointConfigName=unique("c"),
        ProductionVariants=[variant],
        **extra,
    )
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]


def test_instance_quota_is_a_resource_limit(aws: Aws, resources: Resources, double_image: str) -> None:
    config = resources.config(
        [_variant(resources.model(double_image), InitialInstanceCount=1000, InstanceType="ml.p4d.24xlarge")]
    )
    error = _error(aws.sagemaker.create_endpoint, EndpointName=unique("e"), EndpointConfigName=config)
    assert error["Code"] == "ResourceLimitExceeded"
    # The quota is the stack's setting (SAGEMAKER_EMULATOR_INSTANCE_QUOTA, 10 as on a new AWS account).
    assert re.match(
        r"The account-level service limit 'ml\.p4d\.24xlarge for endpoint usage' is \d+ Instances, with "
        r"current utilization of 0 Instances and a request delta of 1000 Instances\.",
        error["Message"],
    ), error["Message"]


def test_unknown_operation(aws: Aws) -> None:
    error = _error(aws.sagemaker.list_training_jobs)
    assert error["Code"] == "UnknownOperationException"
    assert "does not implement ListTrainingJobs" in error["Message"]


def test_lists_sort_filter_and_page(aws: Aws, resources: Resources, bucket: str, double_image: str) -> None:
    tag = unique("page")
    data = resources.upload(tarball({"w": b"w"}))
    names = []
    for index in range(5):
        name = f"{tag}-{index}"
        aws.sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE_ARN,
            PrimaryContainer={"Image": double_image, "ModelDataUrl": data},
        )
        resources.models.append(name)
        names.append(name)

    seen, token = [], None
    while True:
        page = aws.sagemaker.list_models(
            NameContains=tag,
            SortBy="Name",
            SortOrder="Ascending",
            MaxResults=2,
            **({"NextToken": token} if token else {}),
        )
        seen += [m["ModelName"] for m in page["Models"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == names
    newest_first = [m["ModelName"] for m in aws.sagemaker.list_models(NameContains=tag)["Models"]]
    assert newest_first == names[::-1]
    paginated = [
        m["ModelName"]
        for page in aws.sagemaker.get_paginator("list_models").paginate(
            NameContains=tag, PaginationConfig={"PageSize": 2}
        )
        for m in page["Models"]
    ]
    assert sorted(paginated) == names


def test_tags(aws: Aws, resources: Resources, double_image: str) -> None:
    model = resources.model(double_image, Tags=[{"Key": "managed-by", "Value": "sagemaker-release"}])
    arn = f"{ARN}:model/{model}"
    aws.sagemaker.add_tags(
        ResourceArn=arn, Tags=[{"Key": "release-id", "Value": "r1"}, {"Key": "managed-by", "Value": "x"}]
    )
    assert aws.sagemaker.list_tags(ResourceArn=arn)["Tags"] == [
        {"Key": "managed-by", "Value": "x"},
        {"Key": "release-id", "Value": "r1"},
    ]
    aws.sagemaker.delete_tags(ResourceArn=arn, TagKeys=["managed-by"])
    assert aws.sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "release-id", "Value": "r1"}]
    error = _error(aws.sagemaker.list_tags, ResourceArn=f"{ARN}:model/{unique('gone')}")
    assert error["Code"] == "ValidationException"
    aws.sagemaker.delete_model(ModelName=model)
    assert _error(aws.sagemaker.list_tags, ResourceArn=arn)["Code"] == "ValidationException"


TAG_PATTERN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"


def test_tag_keys_and_values_are_held_to_their_unicode_pattern(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    # botocore checks no pattern on the client: these reach the server, which checks \p{...} classes too.
    error = _error(
        aws.sagemaker.create_model,
        ModelName=unique("m"),
        PrimaryContainer={"Image": double_image},
        Tags=[{"Key": "team#1", "Value": "ml"}, {"Key": "cost", "Value": "a,b"}],
    )
    assert error == {
        "Code": "ValidationException",
        "Message": "2 validation errors detected: "
        f"Value 'team#1' at 'tags.1.member.key' failed to satisfy constraint: Member must satisfy regular "
        f"expression pattern: {TAG_PATTERN}; "
        f"Value 'a,b' at 'tags.2.member.value' failed to satisfy constraint: Member must satisfy regular "
        f"expression pattern: {TAG_PATTERN}",
    }
    # Letters, numbers and separators of any script pass, with _ . : / = + - @.
    tags = [{"Key": "équipe Ω", "Value": "données ٣ / a=b+c-d@e:f_g.h"}]
    model = resources.model(double_image, Tags=tags)
    assert aws.sagemaker.list_tags(ResourceArn=f"{ARN}:model/{model}")["Tags"] == tags
