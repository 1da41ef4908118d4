"""SageMaker Runtime over rest-json: InvokeEndpoint and InvokeEndpointAsync.

Requests are routed by the endpoint's current variant weights (or TargetVariant), proxied to a
container instance with an async HTTP client so concurrent invocations run concurrently, and
answered as SageMaker answers: the invoked variant in `x-Amzn-Invoked-Production-Variant`, a
container error as ModelError (424) with OriginalStatusCode, a 60 s limit, ValidationError for an
endpoint that does not exist. Every routed request is recorded in the InvocationLog.

Within a variant, real-time requests go round robin over the instances that answer /ping, async ones
to the least busy instance (the queue gives each instance MaxConcurrentInvocationsPerInstance), and
serverless ones to an idle instance or a cold start; beyond the variant's MaxConcurrency requests in
progress a serverless variant answers ThrottlingException.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import settings
from emulator.fleet.container_http import ContainerClient, ContainerConnectionError, ContainerResponse
from emulator.runtime.async_inference import AsyncInference, AsyncJob
from emulator.runtime.invocations import Invocation, InvocationLog, Stopwatch
from emulator.runtime.results import InvokeResult
from emulator.runtime.validation import check_request
from emulator.sagemaker import arns
from emulator.sagemaker.deployments import (
    Deployment,
    InstanceRecord,
    NoRoute,
    VariantDeployment,
    choose_variant,
)
from emulator.sagemaker.endpoints import EndpointEngine
from emulator.sagemaker.exceptions import (
    AwsError,
    InternalFailure,
    ModelError,
    RuntimeValidationError,
    ThrottlingException,
)
from emulator.sagemaker.metrics_config import invocation_metrics_period_s

log = logging.getLogger("emulator.runtime")

REALTIME_PAYLOAD_LIMIT = 6 * 1024 * 1024
SERVERLESS_PAYLOAD_LIMIT = 4 * 1024 * 1024
ASYNC_INLINE_LIMIT = 128_000
ASYNC_DEFAULT_TIMEOUT = 900.0
ASYNC_DEFAULT_TTL = 6 * 3600.0


class Runtime:
    def __init__(
        self, engine: EndpointEngine, containers: ContainerClient, invocations: InvocationLog, timeout: float
    ) -> None:
        self.engine = engine
        self.containers = containers
        self.invocations = invocations
        self.timeout = timeout
        self.rng = random.Random()

    def routable(self, endpoint_name: str) -> list[Deployment]:
        key = arns.key(endpoint_name)
        record = self.engine.store.endpoints.get(key)
        deployments = self.engine.live(key)
        if (
            record is None
            or not deployments
            or record["EndpointStatus"] in ("Creating", "Deleting", "Failed")
        ):
            raise RuntimeValidationError(
                f"Endpoint {endpoint_name} of account {settings.ACCOUNT_ID} not found."
            )
        return deployments

    async def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None,
        target_variant: str | None,
        timeout: float,
        kind: str,
    ) -> InvokeResult:
        watch = Stopwatch()
        deployments = self.routable(endpoint_name)
        try:
            deployment, variant = choose_variant(deployments, target_variant, self.rng)
        except NoRoute as error:
            raise RuntimeValidationError(f"Endpoint {endpoint_name}: {error}") from error
        if variant.serverless is not None and len(body) > SERVERLESS_PAYLOAD_LIMIT:
            raise RuntimeValidationError(
                f"Request body of {len(body)} bytes exceeds the {SERVERLESS_PAYLOAD_LIMIT}-byte limit of "
                f"serverless variant {variant.name}"
            )
        if variant.serverless is not None:
            limit = int(variant.serverless.get("MaxConcurrency") or 1)
            if variant.admitted >= limit:
                raise ThrottlingException(
                    f"Rate exceeded: serverless variant {variant.name} of endpoint {endpoint_name} already "
                    f"serves its MaxConcurrency of {limit} requests. Retry with backoff, or raise "
                    "MaxConcurrency in the variant's ServerlessConfig."
                )
            variant.admitted += 1
        status: int | None = None
        try:
            result, status = await self._through_pipeline(
                endpoint_name,
                deployment,
                variant,
                body,
                content_type,
                accept,
                custom_attributes,
                timeout,
                watch,
                kind,
            )
            return result
        except ModelError as error:
            status = error.fields.get("OriginalStatusCode")
            raise
        finally:
            if variant.serverless is not None:
                variant.admitted -= 1
            if watch.reached:
                self.invocations.record(
                    Invocation(
                        endpoint_name=endpoint_name,
                        variant_name=variant.name,
                        kind=kind,
                        timestamp=watch.started,
                        model_status=status,
                        model_latency_us=watch.model_us,
                        overhead_latency_us=watch.overhead_us,
                        instances=len(variant.instances) if variant.serverless is None else None,
                        config_name=deployment.config_name,
                        metrics_period_s=self._metrics_period_s(deployment, variant),
                    )
                )

    def _metrics_period_s(self, deployment: Deployment, variant: VariantDeployment) -> int:
        """How often the fleet's invocation metrics are published (its endpoint config's MetricsConfig)."""
        config = self.engine.store.endpoint_configs.get(arns.key(deployment.config_name)) or {}
        instance_backed = variant.serverless is None and not config.get("AsyncInferenceConfig")
        return invocation_metrics_period_s(config.get("MetricsConfig"), instance_backed=instance_backed)

    async def _through_pipeline(
        self,
        endpoint_name: str,
        deployment: Deployment,
        variant: VariantDeployment,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None,
        timeout: float,
        watch: Stopwatch,
        kind: str,
    ) -> tuple[InvokeResult, int]:
        deadline = time.monotonic() + timeout
        if not deployment.ready.is_set():
            # The emulator restarted and is bringing this fleet's containers back.
            try:
                await asyncio.wait_for(deployment.ready.wait(), timeout)
            except TimeoutError:
                raise _timed_out(endpoint_name, variant.steps[0].hostname) from None
        if variant.serverless is not None:
            instance: InstanceRecord | None = await self.engine.serverless_instance(
                endpoint_name, deployment, variant
            )
            deadline = time.monotonic() + timeout  # a cold start does not count against the model
        elif kind == "async":
            instance = variant.least_busy_instance()
        else:
            instance = variant.next_instance()
        if instance is None:
            raise RuntimeValidationError(
                f"Endpoint {endpoint_name}: production variant {variant.name} has no instances; raise its "
                "DesiredInstanceCount with UpdateEndpointWeightsAndCapacities"
            )
        variant.begin(instance)
        try:
            return await self._through_instance(
                endpoint_name,
                variant,
                instance,
                body,
                content_type,
                accept,
                custom_attributes,
                deadline,
                watch,
            )
        finally:
            variant.end(instance)

    async def _through_instance(
        self,
        endpoint_name: str,
        variant: VariantDeployment,
        instance: InstanceRecord,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None,
        deadline: float,
        watch: Stopwatch,
    ) -> tuple[InvokeResult, int]:
        payload, payload_type, attributes = body, content_type, custom_attributes
        status = 200
        for position, (step, container) in enumerate(zip(variant.steps, instance.containers, strict=True)):
            last = position == len(variant.steps) - 1
            headers = {}
            if payload_type:
                headers["Content-Type"] = payload_type
            if accept and last:
                headers["Accept"] = accept
            if attributes:
                headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
            remaining = deadline - time.monotonic()
            watch.reached = True
            started = time.perf_counter()
            sent = time.time()
            try:
                response = await self.containers.post(
                    settings.HOST, container.port, "/invocations", payload, headers, max(remaining, 0.001)
                )
            except TimeoutError:
                watch.add_model_time(time.perf_counter() - started)
                raise _timed_out(endpoint_name, step.hostname) from None
            except ContainerConnectionError as error:
                watch.add_model_time(time.perf_counter() - started)
                # A dropped connection is most often the kernel killing the model for memory: say so.
                oom = await asyncio.to_thread(self.engine.fleet.ran_out_of_memory, container.id, sent)
                message = f"{type(error).__name__}: {error}" if oom is None else f"Out of memory: {oom}"
                raise ModelError(
                    f'Received server error (0) from {step.hostname} with message "{message}". '
                    f"{_see_logs(endpoint_name)}",
                    ErrorCode="SERVER_ERROR_FROM_MODEL",
                    OriginalStatusCode=0,
                    OriginalMessage=message if oom is not None else str(error),
                    LogStreamArn=arns.log_stream_arn(endpoint_name),
                ) from error
            watch.add_model_time(time.perf_counter() - started)
            status = response.status
            if status >= 400:
                raise _model_error(endpoint_name, step.hostname, response)
            payload = response.body
            payload_type = response.headers.get("content-type")
            attributes = response.headers.get("x-amzn-sagemaker-custom-attributes")
        result = InvokeResult(variant.name, payload, payload_type or "application/json", attributes)
        return result, status


def _see_logs(endpoint_name: str) -> str:
    region = settings.region()
    return (
        f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
        f"group={arns.log_group(endpoint_name)} in account {settings.ACCOUNT_ID} for more information."
    )


def _model_error(endpoint_name: str, hostname: str, response: ContainerResponse) -> ModelError:
    status = response.status
    side = "client" if status < 500 else "server"
    original = response.body.decode("utf-8", "replace")
    return ModelError(
        f'Received {side} error ({status}) from {hostname} with message "{original}". '
        + _see_logs(endpoint_name),
        ErrorCode=f"{side.upper()}_ERROR_FROM_MODEL",
        OriginalStatusCode=status,
        OriginalMessage=original,
        LogStreamArn=arns.log_stream_arn(endpoint_name),
    )


def _timed_out(endpoint_name: str, hostname: str) -> ModelError:
    return ModelError(
        f"Your invocation timed out while waiting for a response from container {hostname}. Review the "
        "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again.",
        ErrorCode="MODEL_TIMEOUT",
        LogStreamArn=arns.log_stream_arn(endpoint_name),
    )


def _error_response(error: AwsError, request_id: str) -> JSONResponse:
    return JSONResponse(
        error.body(),
        status_code=error.status,
        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id},
    )


def build_app(runtime: Runtime, jobs: AsyncInference) -> Starlette:
    async def invoke_endpoint(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        name = request.path_params["name"]
        try:
            body = await request.body()
            if len(body) > REALTIME_PAYLOAD_LIMIT:
                raise RuntimeValidationError(
                    f"Request body of {len(body)} bytes exceeds the {REALTIME_PAYLOAD_LIMIT}-byte limit of "
                    "real-time invocations; use InvokeEndpointAsync for larger payloads"
                )
            result = await runtime.invoke(
                name,
                body,
                request.headers.get("content-type"),
                request.headers.get("accept"),
                request.headers.get("x-amzn-sagemaker-custom-attributes"),
                request.headers.get("x-amzn-sagemaker-target-variant"),
                runtime.timeout,
                "sync",
            )
        except AwsError as error:
            return _error_response(error, request_id)
        except Exception:
            log.exception("InvokeEndpoint on %s failed inside the emulator", name)
            return _error_response(
                InternalFailure("The SageMaker Runtime emulator failed; see its log"), request_id
            )
        headers = {
            # Passed as a header, not media_type: Starlette would append "; charset=utf-8" to text types.
            "Content-Type": result.content_type,
            "x-Amzn-Invoked-Production-Variant": result.variant_name,
            "x-amzn-RequestId": request_id,
        }
        if result.custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = result.custom_attributes
        return Response(result.body, headers=headers)

    async def invoke_endpoint_async(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        name = request.path_params["name"]
        try:
            job = await _async_job(request, name)
            jobs.submit(job)
        except AwsError as error:
            return _error_response(error, request_id)
        headers = {"X-Amzn-SageMaker-OutputLocation": job.output_location, "x-amzn-RequestId": request_id}
        if job.failure_location:
            headers["X-Amzn-SageMaker-FailureLocation"] = job.failure_location
        return JSONResponse({"InferenceId": job.inference_id}, status_code=202, headers=headers)

    async def _async_job(request: Request, name: str) -> AsyncJob:
        check_request("InvokeEndpointAsync", request.headers, {"EndpointName": name})
        record = runtime.engine.store.endpoints.get(arns.key(name))
        if record is None or record["EndpointStatus"] in ("Creating", "Deleting", "Failed"):
            raise RuntimeValidationError(f"Endpoint {name} of account {settings.ACCOUNT_ID} not found.")
        config = record.get("AsyncInferenceConfig")
        if not config:
            raise RuntimeValidationError(
                f"Endpoint {name} is not an asynchronous endpoint: its endpoint configuration has no "
                "AsyncInferenceConfig. Use InvokeEndpoint."
            )
        headers = request.headers
        body = await request.body()
        input_location = headers.get("x-amzn-sagemaker-inputlocation")
        if not input_location and not body:
            raise RuntimeValidationError("InputLocation is required: the S3 URI of the request payload")
        if body and len(body) > ASYNC_INLINE_LIMIT:
            raise RuntimeValidationError(
                f"Inline request body of {len(body)} bytes exceeds {ASYNC_INLINE_LIMIT} bytes; upload it to "
                "S3 and pass InputLocation"
            )
        inference_id = headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        output = config["OutputConfig"]
        base = output["S3OutputPath"].rstrip("/")
        extension = headers.get("x-amzn-sagemaker-s3outputpathextension")
        if extension:
            base = f"{base}/{extension.strip('/')}"
        filename = headers.get("x-amzn-sagemaker-filename") or f"{inference_id}.out"
        failure_path = output.get("S3FailurePath")
        return AsyncJob(
            endpoint_name=record["EndpointName"],
            inference_id=inference_id,
            input_location=input_location,
            inline_body=body if not input_location else None,
            content_type=headers.get("x-amzn-sagemaker-content-type"),
            accept=headers.get("x-amzn-sagemaker-accept"),
            custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
            output_location=f"{base}/{filename}",
            failure_location=f"{failure_path.rstrip('/')}/{inference_id}-error.out" if failure_path else None,
            received=time.time(),
            ttl_seconds=float(headers.get("x-amzn-sagemaker-requestttlseconds") or ASYNC_DEFAULT_TTL),
            timeout_seconds=float(
                headers.get("x-amzn-sagemaker-invocationtimeoutseconds") or ASYNC_DEFAULT_TIMEOUT
            ),
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "sagemaker-runtime"})

    async def recent_invocations(request: Request) -> Response:
        """The InvocationLog window, for tests and benchmarks (not an AWS API)."""
        since = float(request.query_params.get("since", "0"))
        records = runtime.invocations.since(
            since, request.query_params.get("EndpointName"), request.query_params.get("VariantName")
        )
        return JSONResponse({"Invocations": [r.as_dict() for r in records]})

    async def in_progress(request: Request) -> Response:
        """Requests in progress per instance of each variant, for tests and benchmarks (not an AWS API)."""
        name = request.query_params.get("EndpointName", "")
        deployment = runtime.engine.primary(arns.key(name))
        variants = {
            v.name: {str(i.index): v.busy(i) for i in v.instances}
            for v in (deployment.variants.values() if deployment else [])
        }
        return JSONResponse({"EndpointName": name, "InProgress": variants})

    return Starlette(
        routes=[
            Route("/endpoints/{name}/invocations", invoke_endpoint, methods=["POST"]),
            Route("/endpoints/{name}/async-invocations", invoke_endpoint_async, methods=["POST"]),
            Route("/_emulator/health", health, methods=["GET"]),
            Route("/_emulator/invocations", recent_invocations, methods=["GET"]),
            Route("/_emulator/in-progress", in_progress, methods=["GET"]),
        ]
    )
