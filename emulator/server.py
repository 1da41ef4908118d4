"""The SageMaker emulator process: control plane and runtime in one event loop, on two ports.

Both APIs share one view of the endpoints (the runtime routes to the containers the control plane
started), so they run in one process: one uvicorn server listening on two sockets, dispatching on
the port a request arrived at. The control plane's port also answers Application Auto Scaling
(X-Amz-Target AnyScaleFrontendService.*), whose acting side scales these endpoints. One clock
(emulator/clock.py, `--time-scale`) paces metrics, alarms, queue metrics and autoscaling.
`python -m emulator.server` is what `python -m emulator up` starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import docker
import httpx
import uvicorn
from botocore.config import Config
from starlette.requests import Request

from emulator import settings
from emulator.autoscaling.models import AutoScaler
from emulator.autoscaling.responses import AutoScalingApi, handle, is_autoscaling_request
from emulator.autoscaling.responses import service_model as autoscaling_model
from emulator.clock import Clock
from emulator.cloudwatch.monitoring import Monitoring
from emulator.fleet.container_http import ContainerClient
from emulator.fleet.containers import Fleet, owner_of
from emulator.fleet.model_data import ModelDataCache
from emulator.runtime.async_inference import AsyncInference
from emulator.runtime.invocations import InvocationLog
from emulator.runtime.queue_metrics import QueueMetrics
from emulator.runtime.responses import Runtime
from emulator.runtime.responses import build_app as build_runtime_app
from emulator.sagemaker import arns
from emulator.sagemaker.capacity import SageMakerCapacity
from emulator.sagemaker.endpoints import EndpointEngine
from emulator.sagemaker.responses import SageMakerApi, service_model
from emulator.sagemaker.responses import build_app as build_control_app
from emulator.sagemaker.store import Store
from emulator.sagemaker.transform_jobs import TransformJobs

log = logging.getLogger("emulator.server")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass
class Emulator:
    """Everything one emulator process holds; later work (metrics, alarms) hooks in here."""

    store: Store
    engine: EndpointEngine
    runtime: Runtime
    jobs: AsyncInference
    transforms: TransformJobs
    invocations: InvocationLog
    http: httpx.AsyncClient
    clock: Clock
    limits: settings.Limits


def _client_config() -> Config:
    return Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)


async def build(state: Path, clock: Clock) -> Emulator:
    limits = settings.Limits.from_env()
    store = Store.open(state / "emulator")
    fleet = Fleet(docker.from_env(timeout=300), owner_of(state), limits)
    session = boto3.session.Session(region_name=settings.region())
    s3 = session.client("s3", config=_client_config())
    sns = session.client("sns", config=_client_config())
    model_data = ModelDataCache(state / "emulator" / "model-data", lambda: s3, limits)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=512, max_keepalive_connections=128))
    engine = EndpointEngine(store, fleet, model_data, http, limits, clock)
    invocations = InvocationLog()
    runtime = Runtime(engine, ContainerClient(), invocations, limits.invocation_timeout)
    jobs = AsyncInference(runtime, lambda: s3, lambda: sns, state / "emulator" / "async-jobs")
    transforms = TransformJobs(store, fleet, model_data, http, limits, lambda: s3)
    return Emulator(store, engine, runtime, jobs, transforms, invocations, http, clock, limits)


def dispatch_by_port(by_port: dict[int, ASGIApp]) -> ASGIApp:
    async def app(
        scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        port = scope["server"][1]
        await by_port[port](scope, receive, send)

    return app


def judges(store: Store, alarm: Mapping[str, Any]) -> bool:
    """Whether this emulator sets an alarm's state: not when it watches another emulator's endpoint.

    A private emulator (tests) shares moto with the stack's; both would judge every alarm, each on its
    own clock, and set it back and forth. An alarm on an endpoint's metrics belongs to the emulator that
    runs the endpoint; any other alarm is judged by every emulator.
    """
    for dimension in alarm.get("Dimensions") or []:
        if dimension.get("Name") == "EndpointName":
            return arns.key(str(dimension.get("Value"))) in store.endpoints
    return True


def control_plane(sagemaker: ASGIApp, autoscaling: AutoScalingApi) -> ASGIApp:
    """The control plane's port: Application Auto Scaling by its X-Amz-Target, SageMaker otherwise."""

    async def app(
        scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if is_autoscaling_request(headers):
                response = await handle(autoscaling, Request(scope, receive))
                await response(scope, receive, send)
                return
        await sagemaker(scope, receive, send)

    return app


def bind(host: str, port: int) -> socket.socket:
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say so; without it every
    # keep-alive response stalls ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    state: Path,
    host: str,
    control_port: int,
    runtime_port: int,
    on_serving: Callable[[], None],
    clock: Clock | None = None,
) -> None:
    clock = clock or Clock.from_env()
    control_sock, runtime_sock = bind(host, control_port), bind(host, runtime_port)
    emulator = await build(state, clock)
    api = SageMakerApi(
        emulator.engine, emulator.engine.model_data, emulator.http, service_model(), emulator.transforms
    )
    # CloudWatch metrics from real invocations and queues, and alarms evaluated on them (moto does neither).
    monitoring = Monitoring.from_env(clock=clock, judges=lambda alarm: judges(emulator.store, alarm))
    scaler = AutoScaler(SageMakerCapacity(api), monitoring.evaluator, clock, state / "emulator")
    api.scalable_variants = scaler.registered_variants
    monitoring.evaluator.on_change(lambda outcome: scaler.poke())
    autoscaling = AutoScalingApi(scaler, emulator.http, autoscaling_model())
    app = dispatch_by_port(
        {
            control_sock.getsockname()[1]: control_plane(build_control_app(api), autoscaling),
            runtime_sock.getsockname()[1]: build_runtime_app(emulator.runtime, emulator.jobs),
        }
    )
    await emulator.engine.restore()
    emulator.engine.start_background()
    emulator.jobs.restore()
    await emulator.transforms.restore()
    monitoring.start(emulator.runtime.invocations)
    queue_metrics = QueueMetrics(
        emulator.jobs, clock, monitoring.publisher.publish_queue, emulator.limits.queue_metrics_period_s
    )
    queue_metrics.start()
    scaler.start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30)
    server = uvicorn.Server(config)
    log.info(
        "SageMaker emulator on %s:%d (control plane, Application Auto Scaling) and %s:%d (runtime), "
        "state in %s, time scale %g",
        host,
        control_sock.getsockname()[1],
        host,
        runtime_sock.getsockname()[1],
        state,
        clock.scale,
    )
    on_serving()
    try:
        await server.serve(sockets=[control_sock, runtime_sock])
    finally:
        await scaler.stop()
        await queue_metrics.stop()
        monitoring.stop()
        await emulator.jobs.shutdown()
        await emulator.transforms.shutdown()
        await emulator.engine.shutdown()
        await emulator.http.aclose()
        await emulator.runtime.containers.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator.server", description=__doc__)
    parser.add_argument("--state", type=Path, default=settings.state_dir())
    parser.add_argument("--host", default=settings.HOST)
    parser.add_argument("--control-port", type=int, default=settings.SAGEMAKER_PORT)
    parser.add_argument("--runtime-port", type=int, default=settings.RUNTIME_PORT)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help=f"run AWS durations this many times faster (default: ${settings.TIME_SCALE_ENV}, else 1)",
    )
    args = parser.parse_args(argv)
    try:
        clock = Clock(args.time_scale) if args.time_scale is not None else Clock.from_env()
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # While uvicorn serves, it handles SIGTERM/SIGINT itself (graceful stop) and afterwards re-raises
    # the signal to the handler installed here; before that (restoring endpoints) a signal stops us.
    serving = False

    def stop(signum: int, frame: object) -> None:
        if not serving:
            raise KeyboardInterrupt

    def now_serving() -> None:
        nonlocal serving
        serving = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.state, args.host, args.control_port, args.runtime_port, now_serving, clock))
    log.info("stopped")


if __name__ == "__main__":
    main()
