"""What SageMaker refuses of uncompressed model data (ModelDataSource) and of a transform job's limits.

A model whose container takes its files from an S3 prefix (ModelDataSource) serves on instance-backed
endpoints only: a serverless variant and a transform job refuse it. A transform job keeps
MaxConcurrentTransforms x MaxPayloadInMB within 100 MB and its Environment within 16 entries.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import Aws, Resources, tarball, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker]

SERVERLESS = {"MemorySizeInMB": 1024, "MaxConcurrency": 1}


def _error(call: Any, *args: Any, **params: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call(*args, **params)
    return dict(raised.value.response["Error"])


def _prefix_model(resources: Resources, image: str) -> str:
    """A model whose files are an uncompressed S3 prefix (ModelDataSource), as packaging s3_prefix makes."""
    prefix = unique("uncompressed")
    resources.aws.s3.put_object(Bucket=resources.bucket, Key=f"{prefix}/weights.txt", Body=b"w")
    source = {
        "S3Uri": f"s3://{resources.bucket}/{prefix}/",
        "S3DataType": "S3Prefix",
        "CompressionType": "None",
    }
    return resources.model(image, container={"ModelDataSource": {"S3DataSource": source}})


def _serverless(model: str) -> list[dict[str, Any]]:
    return [{"VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": SERVERLESS}]


def test_a_serverless_variant_refuses_a_model_with_uncompressed_data(
    aws: Aws, resources: Resources, double_image: str
) -> None:
    uncompressed = _prefix_model(resources, double_image)
    error = _error(
        aws.sagemaker.create_endpoint_config,
        EndpointConfigName=unique("config"),
        ProductionVariants=_serverless(uncompressed),
    )
    assert error == {
        "Code": "ValidationException",
        "Message": "SageMaker Serverless Inference currently doesn't support Model entity with container "
        "definitions which use ModelDataSource attribute.",
    }
    # The same model on instances, and a model.tar.gz on serverless, are what SageMaker takes.
    resources.single(uncompressed)
    archived = resources.model(double_image, resources.upload(tarball({"weights.txt": b"w"})))
    resources.config(_serverless(archived))


def _transform(aws: Aws, bucket: str, model: str, **extra: Any) -> str:
    name = unique("transform")
    prefix = unique("batch")
    aws.sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}/in/"}
            },
            "ContentType": "application/json",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{bucket}/{prefix}/out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **extra,
    )
    return name


def _stopped(aws: Aws, name: str, timeout: float = 60) -> None:
    """Stop a job these tests started only to see it accepted, and wait until it has ended."""
    aws.sagemaker.stop_transform_job(TransformJobName=name)
    deadline = time.monotonic() + timeout
    while aws.sagemaker.describe_transform_job(TransformJobName=name)["TransformJobStatus"] not in (
        "Stopped",
        "Completed",
        "Failed",
    ):
        assert time.monotonic() < deadline, f"transform job {name} did not end within {timeout} s"
        time.sleep(0.3)


def test_a_transform_job_refuses_a_model_with_uncompressed_data(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    error = _error(_transform, aws, bucket, _prefix_model(resources, double_image))
    assert error == {
        "Code": "ValidationException",
        "Message": "SageMaker Batch currently doesn't support Model entity with container definitions "
        "which use ModelDataSource attribute.",
    }


def test_a_transform_job_keeps_its_payload_in_flight_and_environment_within_limits(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    model = resources.model(double_image, resources.upload(tarball({"weights.txt": b"w"})))
    error = _error(_transform, aws, bucket, model, MaxConcurrentTransforms=17, MaxPayloadInMB=6)
    assert error == {
        "Code": "ValidationException",
        "Message": "MaxConcurrentTransforms (17) * MaxPayloadInMB (6) cannot exceed 100 MB.",
    }
    # MaxPayloadInMB defaults to 6 MB when not given, and counts so.
    error = _error(_transform, aws, bucket, model, MaxConcurrentTransforms=17)
    assert error["Message"] == "MaxConcurrentTransforms (17) * MaxPayloadInMB (6) cannot exceed 100 MB."
    error = _error(_transform, aws, bucket, model, MaxPayloadInMB=101)
    assert error["Message"] == "MaxPayloadInMB (101) cannot be greater than 100 MB."
    seventeen = {f"VAR_{index}": "x" for index in range(17)}
    error = _error(_transform, aws, bucket, model, Environment=seventeen)
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("1 validation error detected: Value '{")
    assert error["Message"].endswith(
        "' at 'environment' failed to satisfy constraint: Member must have length less than or equal to 16"
    )
    # At the limits the job is accepted.
    sixteen = {f"VAR_{index}": "x" for index in range(16)}
    _stopped(aws, _transform(aws, bucket, model, MaxConcurrentTransforms=10, MaxPayloadInMB=10))
    _stopped(aws, _transform(aws, bucket, model, MaxConcurrentTransforms=16, Environment=sixteen))
