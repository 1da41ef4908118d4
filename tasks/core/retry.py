"""Which failures deserve a retry, for Prefect's `retry_condition_fn` and for in-task calls.

Retry what may succeed unchanged a moment later: throttling, 5xx, dropped connections, and SageMaker's
eventual consistency ("Could not find model …" right after CreateModel). Never retry a caller's
mistake (validation errors, ConfigError) or a verdict (ResourceFailed, SmokeFailed, AlarmFired…).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from prefect.cache_policies import NO_CACHE

from tasks.core.aws import error_code, http_status
from tasks.core.errors import ReleaseError
from tasks.core.waiting import Clock, SystemClock

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
SERVER_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# SageMaker's answers while a just-created resource is not yet visible to the next call.
EVENTUAL_CONSISTENCY_PREFIXES = (
    "Could not find model",
    "Could not find endpoint configuration",
    "Could not access model data",
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionError,
    TimeoutError,
)


def exception_is_retryable(exc: BaseException) -> bool:
    """True when `exc` is transient: the same call may succeed unchanged a moment later."""
    if isinstance(exc, ReleaseError):
        return False
    if _is_connection_cause(exc):
        return True
    code = error_code(exc)
    if code is not None:
        if code in THROTTLING_CODES or code in SERVER_CODES:
            return True
        if code == "ValidationException":
            message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
            return message.startswith(EVENTUAL_CONSISTENCY_PREFIXES)
        status = http_status(exc)
        return status is not None and (status >= 500 or status == 429)
    status = _status_of_other_http_error(exc)
    if status is not None:
        return status >= 500 or status == 429
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _is_connection_cause(cause)


def _status_of_other_http_error(exc: BaseException) -> int | None:
    # docker.errors.APIError exposes status_code; huggingface_hub/requests/httpx errors carry a response.
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


# Transport failures of the HTTP clients under huggingface_hub (httpx) and the docker SDK (requests),
# matched by name so this module does not import either.
_TRANSPORT_ERROR_NAMES = frozenset(
    {"ConnectError", "ConnectTimeout", "ReadTimeout", "ReadError", "RemoteProtocolError", "ConnectionError"}
)


def _is_connection_cause(exc: BaseException) -> bool:
    return isinstance(exc, _CONNECTION_ERRORS) or type(exc).__name__ in _TRANSPORT_ERROR_NAMES


def is_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the task only when its exception is transient."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return exception_is_retryable(data)
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # the state re-raises the task's own exception here
        return exception_is_retryable(exc)
    return False


def backoff_delays(retries: int, *, base_s: float = 2.0, cap_s: float = 60.0) -> list[float]:
    """Exponential delays for `retries` attempts: base, 2·base, 4·base … capped."""
    return [min(cap_s, base_s * 2**attempt) for attempt in range(retries)]


def task_options(retries: int = 4, *, base_s: float = 2.0) -> dict[str, Any]:
    """Keyword arguments for `@task(...)` shared by every release task.

    NO_CACHE because tasks take ledgers and clients, which are not hashable and must never be replayed.
    """
    return {
        "retries": retries,
        "retry_delay_seconds": backoff_delays(retries, base_s=base_s),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": is_retryable,
        "cache_policy": NO_CACHE,
    }


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 5,
    base_s: float = 1.0,
    cap_s: float = 30.0,
    clock: Clock | None = None,
) -> T:
    """Run `call`, retrying transient failures with backoff; non-transient ones raise at once."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    clock = clock or SystemClock()
    delays = backoff_delays(attempts - 1, base_s=base_s, cap_s=cap_s)
    for delay in delays:
        try:
            return call()
        except Exception as exc:
            if not exception_is_retryable(exc):
                raise
            clock.sleep(delay)
    return call()
