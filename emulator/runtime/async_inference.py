"""Asynchronous inference: a queue per endpoint, results to S3, notifications to SNS.

InvokeEndpointAsync answers 202 at once; a job reads its input from S3, goes through the same
routing and proxy as InvokeEndpoint, writes the response to the config's S3OutputPath (or the error
to S3FailurePath) and publishes to the SuccessTopic / ErrorTopic. The endpoint takes at most
MaxConcurrentInvocationsPerInstance times instances at a time, each sent to its least busy instance;
the rest wait in the queue, so an endpoint scaled to zero keeps its backlog until it has instances
again. `gauges` reads each queue as SageMaker's backlog metrics report it (runtime/queue_metrics.py
publishes them). Queued jobs are persisted and resumed after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from emulator import settings
from emulator.clock import Clock
from emulator.runtime.invocations import QueueGauge
from emulator.runtime.results import InvokeResult
from emulator.sagemaker import arns
from emulator.sagemaker.endpoints import EndpointEngine
from emulator.sagemaker.exceptions import AwsError

log = logging.getLogger("emulator.async")


class Runtime(Protocol):
    """What the queue needs of the runtime (emulator/runtime/responses.py): its engine, and one
    invocation as InvokeEndpoint makes it."""

    engine: EndpointEngine

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
    ) -> InvokeResult: ...


ClientFactory = Callable[[], Any]
DEFAULT_CONCURRENCY_PER_INSTANCE = 4


@dataclass
class AsyncJob:
    endpoint_name: str
    inference_id: str
    input_location: str | None
    inline_body: bytes | None
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    output_location: str
    failure_location: str | None
    received: float
    ttl_seconds: float
    timeout_seconds: float

    def to_json(self) -> str:
        data = asdict(self)
        data["inline_body"] = base64.b64encode(self.inline_body).decode() if self.inline_body else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> AsyncJob:
        data = json.loads(text)
        data["inline_body"] = base64.b64decode(data["inline_body"]) if data["inline_body"] else None
        return cls(**data)


class JobFailed(Exception):
    pass


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise JobFailed(f"{uri} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class AsyncInference:
    def __init__(self, runtime: Runtime, s3: ClientFactory, sns: ClientFactory, folder: Path) -> None:
        self.runtime = runtime
        self._s3 = s3
        self._sns = sns
        self.folder = folder
        self._queues: dict[str, asyncio.Queue[AsyncJob]] = {}
        # When each queued (not yet running) job arrived, per endpoint: the oldest request's age.
        self._waiting: dict[str, dict[str, float]] = {}
        self._in_flight: dict[str, int] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def backlog(self, endpoint_name: str) -> int:
        """Requests queued or in progress: SageMaker's ApproximateBacklogSize."""
        key = arns.key(endpoint_name)
        # Waiting counts the job the dispatcher already took off the queue and holds until capacity frees:
        # with no instance at all, that one request is the whole backlog.
        return len(self._waiting.get(key) or {}) + self._in_flight.get(key, 0)

    def gauges(self, clock: Clock) -> list[QueueGauge]:
        """Every asynchronous endpoint's queue now (Creating, Deleting and Failed ones report nothing)."""
        now = clock.time()
        readings = []
        for key, record in list(self.runtime.engine.store.endpoints.items()):
            if not record.get("AsyncInferenceConfig") or record["EndpointStatus"] not in (
                "InService",
                "Updating",
            ):
                continue
            deployment = self.runtime.engine.primary(key)
            instances = sum(len(v.instances) for v in deployment.variants.values()) if deployment else 0
            waiting = self._waiting.get(key) or {}
            oldest = min(waiting.values(), default=now)
            readings.append(
                QueueGauge(
                    endpoint_name=record["EndpointName"],
                    timestamp=now,
                    backlog=self.backlog(record["EndpointName"]),
                    instances=instances,
                    oldest_age_s=clock.aws(max(0.0, now - oldest)),
                )
            )
        return readings

    def submit(self, job: AsyncJob) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{job.inference_id}.json").write_text(job.to_json())
        self._enqueue(job)

    def restore(self) -> None:
        if not self.folder.exists():
            return
        for path in sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
            self._enqueue(AsyncJob.from_json(path.read_text()))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _enqueue(self, job: AsyncJob) -> None:
        key = arns.key(job.endpoint_name)
        if key not in self._queues:
            self._queues[key] = asyncio.Queue()
            self._in_flight[key] = 0
            self._wake[key] = asyncio.Event()
            self._keep(self._dispatch(key))
        self._waiting.setdefault(key, {})[job.inference_id] = job.received
        self._queues[key].put_nowait(job)

    def _keep(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _capacity(self, key: str) -> int | None:
        """How many jobs may run now; None once the endpoint is gone."""
        record = self.runtime.engine.store.endpoints.get(key)
        if record is None or record["EndpointStatus"] in ("Deleting", "Failed"):
            return None
        deployment = self.runtime.engine.primary(key)
        if deployment is None:
            return 0
        client = (record.get("AsyncInferenceConfig") or {}).get("ClientConfig") or {}
        per_instance = int(
            client.get("MaxConcurrentInvocationsPerInstance") or DEFAULT_CONCURRENCY_PER_INSTANCE
        )
        return per_instance * sum(len(v.instances) for v in deployment.variants.values())

    async def _dispatch(self, key: str) -> None:
        queue, wake = self._queues[key], self._wake[key]
        while True:
            job = await queue.get()
            while True:
                capacity = self._capacity(key)
                if capacity is None:
                    self._waiting[key].pop(job.inference_id, None)
                    self._keep(
                        self._fail(job, f"Endpoint {job.endpoint_name} was deleted before the request ran")
                    )
                    break
                if self._in_flight[key] < capacity:
                    self._waiting[key].pop(job.inference_id, None)
                    self._in_flight[key] += 1
                    self._keep(self._run(key, job))
                    break
                wake.clear()
                # Capacity also changes when the endpoint scales (an instance passing /ping), which sets
                # no event: look again soon, so a scale-from-zero serves its backlog at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=0.2)

    async def _run(self, key: str, job: AsyncJob) -> None:
        try:
            if time.time() - job.received > job.ttl_seconds:
                raise JobFailed(
                    f"Request expired: it waited longer than its RequestTTLSeconds ({job.ttl_seconds:g} s)"
                )
            body = job.inline_body
            if body is None:
                assert job.input_location is not None
                body = await asyncio.to_thread(self._read, job.input_location)
            result = await self.runtime.invoke(
                job.endpoint_name,
                body,
                job.content_type,
                job.accept,
                job.custom_attributes,
                None,
                job.timeout_seconds,
                "async",
            )
            await asyncio.to_thread(self._write, job.output_location, result.body, result.content_type)
            await asyncio.to_thread(self._notify, job, "Completed", result.content_type, None)
        except (AwsError, JobFailed) as error:
            await self._fail(job, getattr(error, "message", None) or str(error))
        finally:
            self._in_flight[key] -= 1
            self._wake[key].set()
            (self.folder / f"{job.inference_id}.json").unlink(missing_ok=True)

    async def _fail(self, job: AsyncJob, reason: str) -> None:
        if job.failure_location:
            await asyncio.to_thread(self._write, job.failure_location, reason.encode(), "text/plain")
        await asyncio.to_thread(self._notify, job, "Failed", None, reason)
        (self.folder / f"{job.inference_id}.json").unlink(missing_ok=True)

    def _read(self, uri: str) -> bytes:
        bucket, key = _split_s3(uri)
        try:
            return bytes(self._s3().get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError) as error:
            raise JobFailed(f"Failed to read the request payload from {uri}: {error}") from error

    def _write(self, uri: str, body: bytes, content_type: str) -> None:
        bucket, key = _split_s3(uri)
        try:
            self._s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as error:
            # Nowhere left to report it but our log: the caller polls S3 and will time out.
            log.error("async inference %s: writing %s failed: %s", key, uri, error)

    def _notify(self, job: AsyncJob, status: str, content_type: str | None, reason: str | None) -> None:
        record = self.runtime.engine.store.endpoints.get(arns.key(job.endpoint_name)) or {}
        output = (record.get("AsyncInferenceConfig") or {}).get("OutputConfig") or {}
        topics = output.get("NotificationConfig") or {}
        topic = topics.get("SuccessTopic") if status == "Completed" else topics.get("ErrorTopic")
        if not topic:
            return
        response: dict[str, Any] = {}
        if status == "Completed":
            response = {"contentType": content_type, "outputLocation": job.output_location}
        elif job.failure_location:
            response = {"failureLocation": job.failure_location}
        message: dict[str, Any] = {
            "awsRegion": settings.region(),
            "eventTime": _iso(time.time()),
            "receivedTime": _iso(job.received),
            "invocationStatus": status,
            "requestParameters": {
                "contentType": job.content_type,
                "endpointName": job.endpoint_name,
                "inputLocation": job.input_location,
            },
            "responseParameters": response,
            "inferenceId": job.inference_id,
            "eventVersion": "1.0",
            "eventSource": "aws:sagemaker",
            "eventName": "InferenceResult",
        }
        if reason:
            message["failureReason"] = reason
        try:
            self._sns().publish(TopicArn=topic, Message=json.dumps(message))
        except (ClientError, BotoCoreError) as error:
            log.error("async inference %s: publishing to %s failed: %s", job.inference_id, topic, error)
