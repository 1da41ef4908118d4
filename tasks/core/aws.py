"""boto3 clients for every task: one per service, thread and environment, with standard retries.

boto3 reads `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` by itself, so the same code talks to AWS or
to the local stack. Clients are cached per thread (boto3 sessions are not thread-safe, clients are cheap
to share within one) and keyed on the environment that shapes them, so a test that changes the endpoint
variables gets a fresh client.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Any, cast

import boto3
import botocore.exceptions
import botocore.session
from botocore.config import Config

if TYPE_CHECKING:  # the boto3 type stubs are a dev dependency: production imports none of them
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sts import STSClient

# Standard mode retries throttling, 5xx and connection errors with backoff; the read timeout exceeds
# SageMaker Runtime's 60 s invocation limit so a slow model is reported by the service, not by us.
BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=10,
    read_timeout=75,
    tcp_keepalive=True,
    max_pool_connections=32,
)

_local = threading.local()


@functools.cache
def endpoint_variable(service: str) -> str:
    """The variable boto3 reads for this service's endpoint: named after the service id, not the client
    name (application-autoscaling reads AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING)."""
    try:
        name = str(botocore.session.get_session().get_service_model(service).service_id)
    except botocore.exceptions.UnknownServiceError:
        name = service  # no model to name it: boto3 would not make the client either
    return "AWS_ENDPOINT_URL_" + name.upper().replace(" ", "_").replace("-", "_")


def _env_key(service: str, region: str | None) -> tuple[str | None, ...]:
    service_var = endpoint_variable(service)
    return (
        service,
        region,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get(service_var),
        os.environ.get("AWS_DEFAULT_REGION"),
        os.environ.get("AWS_REGION"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_PROFILE"),
    )


def session() -> boto3.session.Session:
    """This thread's boto3 session."""
    current = getattr(_local, "session", None)
    key = _env_key("", None)
    if current is None or getattr(_local, "session_key", None) != key:
        current = boto3.session.Session()
        _local.session = current
        _local.session_key = key
        _local.clients = {}
    return current


def client(service: str, *, region: str | None = None) -> Any:
    """A cached boto3 client for `service` ("s3", "sagemaker", "sagemaker-runtime", …)."""
    sess = session()
    clients: dict[tuple[str | None, ...], Any] = _local.clients
    key = _env_key(service, region)
    found = clients.get(key)
    if found is None:
        found = sess.client(service, region_name=region, config=BOTO_CONFIG)
        clients[key] = found
    return found


# Typed factories: the same cached clients as `client`, typed by the boto3 stubs. The casts name the
# type only; `client` is looked up at call time, so a test that replaces `aws.client` replaces these too.


def sagemaker() -> SageMakerClient:
    """The SageMaker control plane; only tasks/sagemaker calls it (tests/unit/test_boundaries.py)."""
    return cast("SageMakerClient", client("sagemaker"))


def autoscaling() -> ApplicationAutoScalingClient:
    """Application Auto Scaling; only tasks/sagemaker calls it (tests/unit/test_boundaries.py)."""
    return cast("ApplicationAutoScalingClient", client("application-autoscaling"))


def sagemaker_runtime() -> SageMakerRuntimeClient:
    """SageMaker Runtime, the data plane (InvokeEndpoint): any room may call it."""
    return cast("SageMakerRuntimeClient", client("sagemaker-runtime"))


def s3() -> S3Client:
    return cast("S3Client", client("s3"))


def ecr() -> ECRClient:
    return cast("ECRClient", client("ecr"))


def cloudwatch() -> CloudWatchClient:
    return cast("CloudWatchClient", client("cloudwatch"))


def sns() -> SNSClient:
    return cast("SNSClient", client("sns"))


def sts() -> STSClient:
    return cast("STSClient", client("sts"))


def region_name() -> str:
    """The region the clients use."""
    name = session().region_name
    if not name:
        raise RuntimeError("no AWS region configured; fix: set AWS_DEFAULT_REGION (e.g. us-east-1)")
    return name


def account_id() -> str:
    """The caller's account id (STS GetCallerIdentity)."""
    return str(sts().get_caller_identity()["Account"])


def reset_clients() -> None:
    """Forget this thread's session and clients (tests that start moto after a client was made)."""
    for name in ("session", "session_key", "clients"):
        if hasattr(_local, name):
            delattr(_local, name)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


_NOT_FOUND_CODES = frozenset(
    {
        "404",
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "NoSuchEntity",
        "ResourceNotFound",
        "ResourceNotFoundException",
        "RepositoryNotFoundException",
        "ImageNotFoundException",
        "ObjectNotFoundException",
        "NotFoundException",
    }
)


def is_not_found(exc: BaseException) -> bool:
    """True when an AWS error says the resource does not exist.

    SageMaker answers a missing model/endpoint/config with ValidationException "Could not find …";
    that is the only ValidationException treated as NotFound.
    """
    code = error_code(exc)
    if code is None:
        return False
    if code in _NOT_FOUND_CODES:
        return True
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    return code == "ValidationException" and message.startswith(("Could not find", "Cannot find"))
