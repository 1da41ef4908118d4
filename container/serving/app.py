"""The HTTP surface SageMaker talks to: GET /ping, POST /invocations, GET /execution-parameters.

The model loads on a background thread once the server is up, so /ping answers 503 while it loads
and 200 after. Each request gets an id (the caller's X-Amzn-RequestId / X-Request-Id, else a new one)
that is returned in X-Request-Id and written in every log line about the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from serving.errors import ClientError, ModelLoadError, PayloadTooLarge, RequestTimeout
from serving.handlers.base import ServedModel
from serving.loading import load_served_model
from serving.settings import Settings

log = logging.getLogger("serving.requests")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ModelSlot:
    """The model's lifecycle as /ping reports it: loading -> ready, or loading -> failed."""

    def __init__(self) -> None:
        self.status = "loading"
        self.model: ServedModel | None = None
        self.reason = ""
        self.settled = asyncio.Event()  # set once ready or failed; requests that arrive early wait on it


def describe_load_failure(exc: BaseException) -> str:
    if isinstance(exc, ModelLoadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def create_app(
    settings: Settings,
    loader: Callable[[Settings], ServedModel] = load_served_model,
    on_ready: Callable[[], None] | None = None,
    on_failed: Callable[[str], None] | None = None,
    all_workers_ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    """`all_workers_ready`: /ping says 200 only when every worker sharing the port has its model, so
    SageMaker never routes traffic while some workers would still make requests wait for a load."""
    slot = ModelSlot()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        async def activate(model: ServedModel) -> None:
            try:
                await model.start()
            except Exception as exc:
                logging.getLogger("serving.loading").error("starting the model failed", exc_info=exc)
                fail(describe_load_failure(exc))
                return
            slot.model, slot.status = model, "ready"
            slot.settled.set()
            if on_ready is not None:
                on_ready()

        def fail(reason: str) -> None:
            slot.status, slot.reason = "failed", reason
            slot.settled.set()
            if on_failed is not None:
                on_failed(reason)

        def load() -> None:
            try:
                model = loader(settings)
            except Exception as exc:
                logging.getLogger("serving.loading").error(
                    "loading the model failed:\n%s", "".join(traceback.format_exception(exc)).rstrip()
                )
                loop.call_soon_threadsafe(fail, describe_load_failure(exc))
                return
            asyncio.run_coroutine_threadsafe(activate(model), loop)

        # Daemon: a SIGTERM during a long load must not wait for the weights to finish reading.
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield
        if slot.model is not None:
            await slot.model.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.slot = slot

    @app.get("/ping")
    async def ping() -> Response:
        if slot.status == "ready" and all_workers_ready():
            return _json(200, {"status": "ready"})
        if slot.status == "ready":
            return _json(503, {"status": "loading", "reason": "other workers are still loading the model"})
        return _json(503, {"status": slot.status, **({"reason": slot.reason} if slot.reason else {})})

    @app.get("/execution-parameters")
    async def execution_parameters() -> Response:
        # SageMaker batch transform asks this to size its requests.
        return _json(
            200,
            {
                "MaxConcurrentTransforms": settings.workers,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": max(1, settings.max_payload_bytes // (1024 * 1024)),
            },
        )

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        request_id = _request_id(request)
        deadline = asyncio.timeout(settings.request_timeout_s)
        try:
            body = await _read_body(request, settings.max_payload_bytes, settings.body_timeout_s)
            async with deadline:
                # A request that reaches this worker while its model still loads waits for it.
                await slot.settled.wait()
                if slot.model is None:
                    return _error(503, f"the model failed to load: {slot.reason}", request_id)
                reply = await slot.model.invoke(
                    body, request.headers.get("content-type"), request.headers.get("accept")
                )
        except ClientError as exc:
            log.info("request %s: %d %s", request_id, exc.status, exc.message)
            # After a 408 the rest of the body may still come: the connection cannot carry another request.
            close = {"Connection": "close"} if isinstance(exc, RequestTimeout) else None
            return _error(exc.status, exc.message, request_id, close)
        except ClientDisconnect:
            # Nobody is left to answer; not the model's failure.
            log.info("request %s: the client disconnected before sending its whole body", request_id)
            return _error(400, "the client disconnected before sending its whole body", request_id)
        except TimeoutError as exc:
            if not deadline.expired():
                return _model_failed(request_id, exc)
            if slot.status == "loading":
                return _error(503, "the model is still loading; retry once /ping answers 200", request_id)
            log.error(
                "request %s: inference did not finish within %g s", request_id, settings.request_timeout_s
            )
            return _error(
                504,
                f"inference did not finish within {settings.request_timeout_s:g} s "
                "(raise SAGEMAKER_MODEL_SERVER_TIMEOUT or send fewer inputs per request)",
                request_id,
            )
        except Exception as exc:
            return _model_failed(request_id, exc)
        return Response(reply.body, media_type=reply.content_type, headers={"X-Request-Id": request_id})

    return app


def _model_failed(request_id: str, exc: Exception) -> Response:
    # The exception's text may carry the request's data or the model's internals: it goes to the log,
    # under the request id; the caller gets the id and the class to find it there.
    log.error("request %s: the model failed", request_id, exc_info=exc)
    kind = type(exc).__name__
    return _json(
        500,
        {
            "error": f"the model failed on this request with {kind} (request id {request_id}; the message "
            "and traceback are in the container log under that id)",
            "error_class": kind,
            "request_id": request_id,
        },
        {"X-Request-Id": request_id},
    )


def _request_id(request: Request) -> str:
    for header in ("x-amzn-requestid", "x-request-id"):
        value = request.headers.get(header)
        if value and _SAFE_ID.match(value):
            return value
    return uuid.uuid4().hex


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    # A chunked body without Content-Length: stop reading as soon as it passes the limit.
                    raise PayloadTooLarge(_too_large(size, limit, at_least=True))
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout:g} s ({size} bytes came); send it at once "
            "(the server waits SERVING_BODY_TIMEOUT seconds for it)"
        ) from None
    return b"".join(chunks)


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    return (
        f"the body is {'more than ' if at_least else ''}{size} bytes, above the {limit}-byte limit; "
        "send fewer inputs per request or raise SERVING_MAX_PAYLOAD_MB"
    )


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, request_id: str, headers: dict[str, str] | None = None) -> Response:
    return _json(
        status, {"error": message, "request_id": request_id}, {"X-Request-Id": request_id, **(headers or {})}
    )
