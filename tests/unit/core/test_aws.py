from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

from tasks.core import aws


def _error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


def test_clients_are_cached_per_thread_and_follow_the_endpoint_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SAGEMAKER", raising=False)
    aws.reset_clients()
    s3 = aws.client("s3")
    assert aws.client("s3") is s3
    assert s3.meta.endpoint_url == "http://127.0.0.1:4566"
    assert s3.meta.config.retries["mode"] == "standard"

    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:4577")
    assert aws.client("sagemaker").meta.endpoint_url == "http://127.0.0.1:4577"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    assert aws.client("s3") is not s3 and aws.client("s3").meta.endpoint_url == "http://127.0.0.1:9999"

    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(aws.client("s3")))
    thread.start()
    thread.join(timeout=30)
    assert other and other[0] is not aws.client("s3")
    aws.reset_clients()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_error("NoSuchKey", status=404), True),
        (_error("404", status=404), True),
        (_error("RepositoryNotFoundException"), True),
        (_error("ValidationException", 'Could not find endpoint "demo".'), True),
        (_error("ValidationException", "Cannot find endpoint configuration demo-r1."), True),
        (_error("ValidationException", "Value 'x' at 'instanceType' failed to satisfy constraint"), False),
        (_error("AccessDenied", status=403), False),
        (RuntimeError("boom"), False),
    ],
)
def test_not_found_is_recognised_across_services(error: BaseException, expected: bool) -> None:
    assert aws.is_not_found(error) is expected


def test_error_code_and_status() -> None:
    error = _error("ThrottlingException", status=400)
    assert aws.error_code(error) == "ThrottlingException" and aws.http_status(error) == 400
    assert aws.error_code(ValueError()) is None and aws.http_status(ValueError()) is None


def test_a_service_endpoint_variable_is_named_as_boto3_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 names the variable after the service id: a cached client must follow a change of it.
    assert aws.endpoint_variable("application-autoscaling") == "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING"
    assert aws.endpoint_variable("sagemaker-runtime") == "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", "http://127.0.0.1:1")
    aws.reset_clients()
    first = aws.client("application-autoscaling")
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", "http://127.0.0.1:2")
    second = aws.client("application-autoscaling")
    assert first is not second
    assert second.meta.endpoint_url == "http://127.0.0.1:2"
    aws.reset_clients()
