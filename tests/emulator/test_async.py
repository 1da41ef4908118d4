"""InvokeEndpointAsync: input from S3, output to S3OutputPath, failures to S3FailurePath, SNS notices."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.emulator.emulator_support import Aws, Resources, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker]


def _topic_with_queue(aws: Aws, name: str) -> tuple[str, str]:
    topic = aws.sns.create_topic(Name=name)["TopicArn"]
    queue_url = aws.sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    return topic, queue_url


def _next_notice(aws: Aws, queue_url: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = aws.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            return dict(json.loads(messages[0]["Body"]))
    raise AssertionError(f"no notification on {queue_url} within {timeout} s")


def _s3_object(aws: Aws, uri: str, timeout: float = 30) -> bytes:
    bucket, key = uri[5:].split("/", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bytes(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchKey" or time.monotonic() >= deadline:
                raise
        time.sleep(0.3)


def _async_endpoint(
    resources: Resources, bucket: str, model: str, per_instance: int = 4
) -> tuple[str, dict[str, Any]]:
    prefix = unique("async")
    success, success_queue = _topic_with_queue(resources.aws, f"{prefix}-ok")
    error, error_queue = _topic_with_queue(resources.aws, f"{prefix}-error")
    async_config = {
        "OutputConfig": {
            "S3OutputPath": f"s3://{bucket}/{prefix}/out",
            "S3FailurePath": f"s3://{bucket}/{prefix}/failed",
            "NotificationConfig": {"SuccessTopic": success, "ErrorTopic": error},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": per_instance},
    }
    config = resources.config(
        [
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig=async_config,
    )
    endpoint = resources.endpoint(config)
    described = resources.wait_status(endpoint, "InService")
    assert described["AsyncInferenceConfig"] == async_config
    return endpoint, {"prefix": prefix, "ok": success_queue, "error": error_queue}


def test_async_result_lands_in_s3_and_is_announced(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    endpoint, where = _async_endpoint(resources, bucket, resources.model(double_image))
    input_uri = resources.upload(b'{"inputs": "later"}', f"{where['prefix']}/in/request.json")

    response = aws.runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=input_uri, ContentType="application/json", InferenceId="req-1"
    )

    assert response["InferenceId"] == "req-1"
    assert response["OutputLocation"] == f"s3://{bucket}/{where['prefix']}/out/req-1.out"
    assert response["FailureLocation"] == f"s3://{bucket}/{where['prefix']}/failed/req-1-error.out"
    result = json.loads(_s3_object(aws, response["OutputLocation"]))
    assert (result["body"], result["content_type"]) == ('{"inputs": "later"}', "application/json")
    notice = _next_notice(aws, where["ok"])
    assert notice["invocationStatus"] == "Completed"
    assert notice["inferenceId"] == "req-1"
    assert notice["responseParameters"]["outputLocation"] == response["OutputLocation"]
    assert notice["requestParameters"] == {
        "contentType": "application/json",
        "endpointName": endpoint,
        "inputLocation": input_uri,
    }


def test_async_model_error_goes_to_the_failure_path(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    model = resources.model(double_image, container={"Environment": {"DOUBLE_STATUS": "500"}})
    endpoint, where = _async_endpoint(resources, bucket, model)
    input_uri = resources.upload(b"{}", f"{where['prefix']}/in/request.json")

    response = aws.runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=input_uri)

    failure = _s3_object(aws, response["FailureLocation"]).decode()
    assert "Received server error (500) from primary" in failure
    notice = _next_notice(aws, where["error"])
    assert notice["invocationStatus"] == "Failed"
    assert notice["responseParameters"] == {"failureLocation": response["FailureLocation"]}


def test_async_missing_input_is_a_failure(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    endpoint, where = _async_endpoint(resources, bucket, resources.model(double_image))
    missing = f"s3://{bucket}/{where['prefix']}/in/never-uploaded.json"

    response = aws.runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=missing)

    assert "Failed to read the request payload" in _s3_object(aws, response["FailureLocation"]).decode()


def test_async_respects_concurrency_per_instance(
    aws: Aws, resources: Resources, bucket: str, double_image: str
) -> None:
    model = resources.model(double_image, container={"Environment": {"DOUBLE_DELAY": "1"}})
    endpoint, where = _async_endpoint(resources, bucket, model, per_instance=1)
    input_uri = resources.upload(b"{}", f"{where['prefix']}/in/request.json")

    started = time.monotonic()
    outputs = [
        aws.runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=input_uri)["OutputLocation"]
        for _ in range(3)
    ]
    for uri in outputs:
        _s3_object(aws, uri)

    assert time.monotonic() - started >= 3, "three 1 s requests finished faster than one at a time"


def test_async_needs_an_async_endpoint(aws: Aws, resources: Resources, double_image: str) -> None:
    endpoint = resources.endpoint(resources.single(resources.model(double_image)))
    resources.wait_status(endpoint, "InService")
    with pytest.raises(aws.runtime.exceptions.ValidationError, match="not an asynchronous endpoint"):
        aws.runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation="s3://b/k")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (
            {"InvocationTimeoutSeconds": 3601},
            "at 'invocationTimeoutSeconds' failed to satisfy constraint: "
            "Member must have value less than or equal to 3600",
        ),
        (
            {"RequestTTLSeconds": 30},
            "at 'requestTTLSeconds' failed to satisfy constraint: "
            "Member must have value greater than or equal to 60",
        ),
        ({"Filename": "two.dots.json"}, "at 'filename' failed to satisfy constraint: Member must satisfy"),
        ({"InputLocation": "ftp://bucket/key"}, "at 'inputLocation' failed to satisfy constraint"),
    ],
)
def test_async_requests_are_held_to_the_runtime_model(aws: Aws, options: dict[str, Any], words: str) -> None:
    """botocore checks only minimums on the client; SageMaker checks every range and pattern of the
    sagemaker-runtime model on the server, before it looks the endpoint up. A client with its own
    checks off (as a raw HTTP caller) reaches those."""
    unchecked = boto3.client(
        "sagemaker-runtime",
        endpoint_url=aws.runtime.meta.endpoint_url,
        region_name=aws.runtime.meta.region_name,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    request = {"EndpointName": unique("no-such-endpoint"), "InputLocation": "s3://bucket/key", **options}
    with pytest.raises(ClientError) as refused:
        unchecked.invoke_endpoint_async(**request)
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "1 validation error detected" in str(refused.value) and words in str(refused.value)
