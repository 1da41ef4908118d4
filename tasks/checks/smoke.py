"""Smoke test: send the config's payloads to the new endpoint and hold the answers to expectations.

The answers become a pandas DataFrame (one row per request: status, latency, output, shape) that
great-expectations validates in an ephemeral context; any failed expectation fails the release with
SmokeFailed naming it. Real-time and serverless endpoints are called with InvokeEndpoint; async ones
with InvokeEndpointAsync on inputs staged in S3, waiting for the result object to appear.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from prefect import task

from tasks.config import ReleaseConfig, SmokeConfig, naming, split_s3_uri
from tasks.core import aws
from tasks.core.errors import SmokeFailed
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.core.waiting import Clock, SystemClock
from tasks.lifecycle.kinds import S3_OBJECT
from tasks.lifecycle.ledger import Ledger
from tasks.sagemaker import hosting, scaling

_PERCENTILE_SHARE = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "max": 1.0}


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    n: int
    p50_ms: float | None
    p95_ms: float | None
    failures: tuple[str, ...] = ()
    checks: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, Any]:
        return {"passed": self.passed, "n": self.n, "p50_ms": self.p50_ms}


@dataclass(frozen=True)
class Answer:
    """One request's outcome."""

    payload_index: int
    status: int
    latency_ms: float
    body: str
    error: str | None = None


def encode(payload: Any) -> bytes:
    """Strings go as they are (CSV lines, raw text); objects and arrays as JSON."""
    return payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()


# --- calling the endpoint ----------------------------------------------------------------------------------


def invoke_realtime(endpoint: str, smoke: SmokeConfig, target_variant: str | None = None) -> list[Answer]:
    """InvokeEndpoint every payload `smoke.repeat` times (on `target_variant` only, when given, whatever
    its weight); a model error is an answer, not an exception."""
    runtime = aws.client("sagemaker-runtime")
    routing = {"TargetVariant": target_variant} if target_variant else {}
    answers = []
    for index, payload in enumerate(smoke.payloads):
        body = encode(payload)
        for _ in range(smoke.repeat):
            start = time.perf_counter()
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint,
                    Body=body,
                    ContentType=smoke.content_type,
                    Accept=smoke.accept,
                    **routing,
                )
                text = response["Body"].read().decode("utf-8", errors="replace")
                status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200))
                answers.append(Answer(index, status, _ms_since(start), text))
            except Exception as exc:
                judged = _model_status(exc)
                if judged is None:
                    raise
                answers.append(Answer(index, judged, _ms_since(start), "", error=_message(exc)))
    return answers


def _model_status(exc: BaseException) -> int | None:
    """The status the container answered with, when `exc` carries one (ModelError, 4xx from the runtime)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    original = response.get("OriginalStatusCode")
    if original is not None:
        return int(original)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    # 5xx from the runtime itself and throttling stay exceptions: they are retried, not judged.
    return int(status) if status is not None and 400 <= int(status) < 500 and int(status) != 429 else None


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Message") or exc)


def invoke_async(
    endpoint: str,
    smoke: SmokeConfig,
    *,
    staging_uri: str,
    ledger: Ledger,
    clock: Clock | None = None,
    poll_interval_s: float = 1.0,
    wake_timeout_s: float = 3600.0,
) -> list[Answer]:
    """Stage each payload in S3, InvokeEndpointAsync it, and wait for its output or failure object.

    An endpoint autoscaling has taken to zero instances is woken by the first request: the test waits
    for its scale-from-zero alarm and then up to `wake_timeout_s` for the instance to start. The staged
    inputs and the results they produce are recorded in the ledger: a failed release removes them with
    everything else.
    """
    clock = clock or SystemClock()
    s3, runtime = aws.client("s3"), aws.client("sagemaker-runtime")
    bucket, prefix = split_s3_uri(staging_uri.rstrip("/") + "/")
    asleep = _scaled_to_zero(endpoint)
    answers = []
    for index, payload in enumerate(smoke.payloads):
        for attempt in range(smoke.repeat):
            key = f"{prefix}smoke-{index}-{attempt}-{uuid.uuid4().hex[:8]}.input"
            s3.put_object(Bucket=bucket, Key=key, Body=encode(payload), ContentType=smoke.content_type)
            ledger.record(S3_OBJECT, f"s3://{bucket}/{key}", bucket=bucket, key=key)
            response = runtime.invoke_endpoint_async(
                EndpointName=endpoint,
                InputLocation=f"s3://{bucket}/{key}",
                ContentType=smoke.content_type,
                Accept=smoke.accept,
                InvocationTimeoutSeconds=min(smoke.timeout_s, 3600),
            )
            if asleep is not None:
                # The first request is the backlog that wakes the endpoint. Waiting for its instance is
                # bounded by the alarm and the instance start, not by the smoke test's timeout, and the
                # answer's latency counts from the instance being there.
                hosting.wait_for_first_instance(
                    endpoint,
                    timeout_s=asleep.alarm_wait_s + wake_timeout_s,
                    interval_s=poll_interval_s,
                    clock=clock,
                )
                asleep = None
            start = clock.monotonic()
            answers.append(
                _await_result(
                    index,
                    response,
                    start,
                    smoke.timeout_s,
                    ledger=ledger,
                    clock=clock,
                    interval_s=poll_interval_s,
                )
            )
    return answers


def _scaled_to_zero(endpoint: str) -> scaling.ScaleFromZero | None:
    """How the endpoint leaves zero instances when it has none (None when it has some); SmokeFailed when
    nothing would bring an instance back, rather than waiting for an answer that cannot come."""
    described = hosting.describe_endpoint(endpoint)
    if described is None or hosting.instances(described) > 0:
        return None
    variant = str(described["ProductionVariants"][0]["VariantName"])
    waking = scaling.scale_from_zero(endpoint, variant)
    if waking.alarm is None:
        raise SmokeFailed(
            endpoint,
            [
                f"it has 0 instances and nothing scales {waking.resource_id} from zero (no step scaling "
                "policy driven by an alarm is registered); fix: set scaling.enabled, scaling.scale_from_zero "
                "and scaling.min_capacity 0, or keep scaling.min_capacity at 1 or more"
            ],
            requests=0,
        )
    run_logger().info(
        "endpoint %s has 0 instances: the first smoke request wakes it through alarm %s",
        endpoint,
        waking.alarm,
    )
    return waking


def _await_result(
    index: int,
    response: dict[str, Any],
    start: float,
    timeout_s: float,
    *,
    ledger: Ledger,
    clock: Clock,
    interval_s: float,
) -> Answer:
    s3 = aws.client("s3")
    places = [(response["OutputLocation"], 200)]
    if response.get("FailureLocation"):
        places.append((response["FailureLocation"], 500))
    while True:
        for uri, status in places:
            bucket, key = split_s3_uri(uri)
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
            except Exception as exc:
                if aws.is_not_found(exc):
                    continue
                raise
            ledger.record(S3_OBJECT, uri, bucket=bucket, key=key)
            latency = (clock.monotonic() - start) * 1000
            return Answer(
                index, status, latency, body if status == 200 else "", None if status == 200 else body
            )
        waited = clock.monotonic() - start
        if waited >= timeout_s:
            return Answer(index, 504, waited * 1000, "", f"no result at {places[0][0]} after {waited:.0f} s")
        clock.sleep(min(interval_s, timeout_s - waited))


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


# --- judging the answers -----------------------------------------------------------------------------------


def answers_frame(answers: Sequence[Answer]) -> pd.DataFrame:
    """One row per request: status, latency_ms, output (None when empty or holding a null), shape, dim."""
    rows = []
    for answer in answers:
        parsed = _parse(answer.body)
        shape = _shape(parsed)
        rows.append(
            {
                "payload": answer.payload_index,
                "status": answer.status,
                "latency_ms": answer.latency_ms,
                "output": None if _has_null(parsed) else answer.body,
                "shape": "x".join(str(d) for d in shape) if shape else None,
                "dim": shape[-1] if shape else None,
                "error": answer.error,
            }
        )
    return pd.DataFrame(rows, columns=["payload", "status", "latency_ms", "output", "shape", "dim", "error"])


def _parse(body: str) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


def _has_null(value: Any) -> bool:
    """An empty answer, or a null/NaN anywhere inside it (empty containers inside are values)."""
    if value is None or value == "" or value == [] or value == {}:
        return True
    return _holds_null(value)


def _holds_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(_holds_null(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_null(v) for v in value.values())
    return False


def _shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a regular nested list (or of the one list inside a single-key object), else None."""
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if not isinstance(value, list):
        return None
    dims = [len(value)]
    inner = [_shape(v) if isinstance(v, list) else () for v in value]
    if inner and all(s == inner[0] for s in inner) and inner[0] is not None:
        dims.extend(inner[0])
    return tuple(dims)


def shape_regex(shape: Sequence[int]) -> str:
    return "^" + "x".join(r"\d+" if d < 0 else str(d) for d in shape) + "$"


def expectations(smoke: SmokeConfig) -> list[Any]:
    """The great-expectations checks the config asks for."""
    import great_expectations as gx

    checks: list[Any] = [
        gx.expectations.ExpectColumnValuesToBeInSet(column="status", value_set=[smoke.expect_status]),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="latency_ms",
            min_value=0,
            max_value=smoke.max_latency_ms,
            mostly=_PERCENTILE_SHARE[smoke.latency_percentile],
        ),
    ]
    if smoke.expect_non_null:
        checks.append(gx.expectations.ExpectColumnValuesToNotBeNull(column="output"))
    if smoke.expect_shape:
        checks.append(gx.expectations.ExpectColumnValuesToNotBeNull(column="shape"))
        checks.append(
            gx.expectations.ExpectColumnValuesToMatchRegex(
                column="shape", regex=shape_regex(smoke.expect_shape)
            )
        )
    if smoke.expect_dim is not None:
        checks.append(gx.expectations.ExpectColumnValuesToBeInSet(column="dim", value_set=[smoke.expect_dim]))
    return checks


def validate(frame: pd.DataFrame, checks: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Run the checks on the frame in an ephemeral GX context; (descriptions of all, failures)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("smoke")
        .add_dataframe_asset("answers")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="smoke", expectations=list(checks)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="smoke", data=batch, suite=suite)
    )
    outcome = definition.run(batch_parameters={"dataframe": frame})
    described, failed = [], []
    for result in outcome.results:
        text = _describe_check(result.expectation_config)
        described.append(text)
        if not result.success:
            details = result.result or {}
            examples = [_short(v) for v in (details.get("partial_unexpected_list") or [])[:3]]
            count = details.get("element_count", len(frame))
            failed.append(
                f"{text}: {details.get('unexpected_count', '?')} of {count} unexpected, e.g. {examples}"
            )
    return described, failed


def _describe_check(config: Any) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    return f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def _short(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "null"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def run_smoke(
    endpoint: str,
    smoke: SmokeConfig,
    *,
    call: Callable[[], list[Answer]],
) -> SmokeResult:
    """Call the endpoint, validate the answers, raise SmokeFailed when an expectation fails."""
    log = run_logger()
    answers = call()
    frame = answers_frame(answers)
    checks, failures = validate(frame, expectations(smoke))
    latencies = sorted(frame["latency_ms"].tolist())
    p50 = round(statistics.median(latencies), 1) if latencies else None
    p95 = (
        round(latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)], 1)
        if latencies
        else None
    )
    result = SmokeResult(not failures, len(answers), p50, p95, tuple(failures), tuple(checks))
    log.info("smoke test of %s: %d requests, p50 %s ms, p95 %s ms", endpoint, len(answers), p50, p95)
    if failures:
        said = [str(e) for e in frame["error"].dropna().unique().tolist()][:3]
        if said:
            # What the endpoint answered explains a status or null failure better than the counts.
            failures = [
                *failures[:-1],
                f"{failures[-1]} (answers said: {'; '.join(_short(e) for e in said)})",
            ]
        raise SmokeFailed(endpoint, failures, requests=len(answers), p50_ms=p50)
    return result


@task(name="smoke-test", **task_options(retries=2))
def smoke_test(config: ReleaseConfig, release_id: str, ledger: Ledger) -> SmokeResult | None:
    """Smoke-test the endpoint the release deployed; None when the config turns it off or for batch."""
    smoke, endpoint = config.smoke, config.endpoint
    if not smoke.enabled or endpoint.type == "batch":
        return None
    if endpoint.type == "async":
        staging = (
            f"s3://{config.storage.bucket}/{naming.release_key(config.storage.prefix, release_id, 'smoke')}/"
        )
        return run_smoke(
            endpoint.name,
            smoke,
            call=lambda: invoke_async(
                endpoint.name,
                smoke,
                staging_uri=staging,
                ledger=ledger,
                poll_interval_s=config.timeouts.poll_interval_s,
                wake_timeout_s=config.timeouts.endpoint_s,
            ),
        )
    return run_smoke(endpoint.name, smoke, call=lambda: invoke_realtime(endpoint.name, smoke))


@task(name="smoke-test-new-variant", **task_options(retries=2))
def smoke_test_variant(config: ReleaseConfig, variant: str) -> SmokeResult | None:
    """Smoke-test the new model's variant while it still has weight 0 (TargetVariant), so a model that
    answers wrongly is refused before any production request reaches it."""
    if not config.smoke.enabled:
        return None
    endpoint = config.endpoint.name
    return run_smoke(
        f"{endpoint} (variant {variant}, before traffic)",
        config.smoke,
        call=lambda: invoke_realtime(endpoint, config.smoke, target_variant=variant),
    )
