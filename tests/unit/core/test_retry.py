from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from tasks.core.errors import ConfigError, ResourceFailed, SmokeFailed, WaitTimeout
from tasks.core.retry import (
    backoff_delays,
    call_with_retries,
    exception_is_retryable,
    is_retryable,
    task_options,
)
from tasks.core.waiting import FakeClock


def _client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    "exc",
    [
        _client_error("ThrottlingException", "Rate exceeded"),
        _client_error("SlowDown", status=503),
        _client_error("InternalFailure", status=500),
        _client_error("SomethingNew", status=502),
        _client_error("ValidationException", "Could not find model demo-r1."),
        _client_error("ValidationException", "Could not find endpoint configuration demo-r1."),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:4577"),
        ConnectionResetError("reset"),
        httpx.ConnectError("hub unreachable"),
        requests.exceptions.ConnectionError("registry unreachable"),
        type("APIError", (Exception,), {"status_code": 503})("registry 503"),
    ],
)
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert exception_is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        _client_error("ValidationException", "1 validation error detected: Value 'x' at 'instanceType'"),
        _client_error("ResourceLimitExceeded", "quota"),
        _client_error("AccessDeniedException", status=403),
        ConfigError("endpoint.name", "too long", "shorten it"),
        ResourceFailed("endpoint e", "Failed", "ping"),
        WaitTimeout("endpoint e", "Creating", 10),
        SmokeFailed("e", ["status"]),
        ValueError("bad"),
        type("APIError", (Exception,), {"status_code": 400})("bad request"),
    ],
)
def test_mistakes_and_verdicts_are_not_retried(exc: BaseException) -> None:
    assert not exception_is_retryable(exc)


def test_prefect_retry_condition_reads_the_failed_state() -> None:
    assert is_retryable(None, None, Failed(data=_client_error("ThrottlingException")))
    assert not is_retryable(None, None, Failed(data=ConfigError("f", "p", "x")))


def test_task_options_never_cache_and_back_off() -> None:
    options: dict[str, Any] = task_options(3, base_s=2)
    assert options["retry_delay_seconds"] == [2, 4, 8]
    assert options["retry_condition_fn"] is is_retryable
    assert options["cache_policy"] is NO_CACHE
    assert backoff_delays(8, base_s=10, cap_s=60)[-1] == 60


def test_call_with_retries_backs_off_then_succeeds() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _client_error("ThrottlingException")
        return "ok"

    clock = FakeClock()
    assert call_with_retries(flaky, attempts=5, base_s=1, clock=clock) == "ok"
    assert clock.sleeps == [1, 2]


def test_call_with_retries_raises_non_transient_at_once() -> None:
    clock = FakeClock()
    with pytest.raises(ClientError):
        call_with_retries(lambda: (_ for _ in ()).throw(_client_error("AccessDenied")), clock=clock)
    assert clock.sleeps == []
