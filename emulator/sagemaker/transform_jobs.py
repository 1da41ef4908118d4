"""Batch transform: CreateTransformJob / DescribeTransformJob / StopTransformJob, run as SageMaker does.

A job starts the model's serving container (`serve`, the model data at /opt/ml/model, the job's
Environment over the model's) on each of its instances, waits for /ping, then reads every object
under TransformInput's S3 prefix from S3, splits it into records (SplitType None: the whole object;
Line: one record per line), sends them to POST /invocations (BatchStrategy SingleRecord: one record a
request; MultiRecord: as many lines as fit in MaxPayloadInMB) and writes `<input key>.out` under
TransformOutput.S3OutputPath, keeping the key's path below the input prefix (AssembleWith Line: one
answer per line). Objects are shared out between the instances; each instance sends one request at
a time. Status: InProgress → Completed, or Failed with a FailureReason naming the object and what the
container said, or Stopping → Stopped. The containers are removed when the job ends, however it ends.
As on SageMaker, CreateTransformJob refuses a model whose containers use ModelDataSource (uncompressed
model data), MaxPayloadInMB above 100 and MaxConcurrentTransforms x MaxPayloadInMB above 100 MB.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from emulator.fleet import images
from emulator.fleet.archives import UnreadableArchive, UnsafeArchive, gunzip
from emulator.fleet.containers import ContainerFailed, ContainerSpec, Fleet, RunningContainer
from emulator.fleet.instance_types import instance_size
from emulator.fleet.model_data import (
    ModelDataCache,
    ModelDataError,
    ModelDataSpec,
    PreparedModelData,
)
from emulator.sagemaker import arns
from emulator.sagemaker.exceptions import ValidationException
from emulator.sagemaker.models import refuse_model_data_source
from emulator.sagemaker.store import Record, Store
from emulator.settings import Limits

log = logging.getLogger("emulator.transform")

LABEL_TRANSFORM_JOB = "sagemaker-release.transform-job"
DEFAULT_MAX_PAYLOAD_MB = 6
MAX_PAYLOAD_MB = 100  # MaxPayloadInMB, and MaxConcurrentTransforms x MaxPayloadInMB
DEFAULT_INVOCATION_TIMEOUT_S = 600.0  # ModelClientConfig.InvocationsTimeoutInSeconds
DEFAULT_MAX_RETRIES = 3  # ModelClientConfig.InvocationsMaxRetries
RUNNING = ("InProgress", "Stopping")
ClientFactory = Callable[[], Any]
Handler = Callable[[Record], Awaitable[Record]]


class JobFailed(Exception):
    """The job cannot finish; the message is its FailureReason."""


@dataclass(frozen=True)
class Batch:
    """One request to /invocations: the body and where its records came from."""

    source: str  # s3:// URI of the input object
    body: bytes
    records: int


def split_records(data: bytes, split_type: str) -> list[bytes]:
    """The records of one input object: the whole object (None) or its non-empty lines (Line)."""
    if split_type == "None":
        return [data]
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r")]


def batches(source: str, records: list[bytes], strategy: str, max_payload_bytes: int) -> Iterator[Batch]:
    """Requests for one object's records: one a request, or as many lines as fit (MultiRecord).

    `max_payload_bytes` 0 means no limit. A record larger than the limit fails the job, as on SageMaker.
    """
    pending: list[bytes] = []
    size = 0
    for record in records:
        if max_payload_bytes and len(record) > max_payload_bytes:
            raise JobFailed(
                f"ClientError: a record of {len(record)} bytes in {source} is larger than MaxPayloadInMB "
                f"({max_payload_bytes // 2**20} MB); split it or raise MaxPayloadInMB"
            )
        if strategy == "SingleRecord":
            yield Batch(source, record, 1)
            continue
        joined = size + len(record) + (1 if pending else 0)
        if pending and max_payload_bytes and joined > max_payload_bytes:
            yield Batch(source, b"\n".join(pending), len(pending))
            pending, size = [], 0
            joined = len(record)
        pending.append(record)
        size = joined
    if pending:
        yield Batch(source, b"\n".join(pending), len(pending))


def assemble(answers: list[bytes], assemble_with: str) -> bytes:
    """The output object from the answers in request order: one per line (Line) or concatenated."""
    if assemble_with == "Line":
        return b"".join(answer.rstrip(b"\r\n") + b"\n" for answer in answers)
    return b"".join(answers)


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def output_key(input_prefix: str, key: str, output_path: str) -> tuple[str, str]:
    """(bucket, key) of the output of input `key`: its path below the input prefix's folder + `.out`."""
    folder = input_prefix.rsplit("/", 1)[0] + "/" if "/" in input_prefix else ""
    relative = key[len(folder) :]
    bucket, out_prefix = _split_s3(output_path)
    out_prefix = out_prefix.rstrip("/")
    return bucket, f"{out_prefix}/{relative}.out" if out_prefix else f"{relative}.out"


class TransformJobs:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        model_data: ModelDataCache,
        http: httpx.AsyncClient,
        limits: Limits,
        s3: ClientFactory,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.model_data = model_data
        self.http = http
        self.limits = limits
        self._s3 = s3
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def handlers(self) -> dict[str, Handler]:
        return {
            "CreateTransformJob": self.create,
            "DescribeTransformJob": self.describe,
            "StopTransformJob": self.stop,
        }

    # -- API --------------------------------------------------------------------------------------

    async def create(self, params: Record) -> Record:
        name = params["TransformJobName"]
        key = arns.key(name)
        arn = arns.arn("transform-job", name)
        if key in self.store.transform_jobs:
            raise ValidationException(
                "Job name must be unique within an AWS account and region, and a job with this name "
                f"already exists ({arn})"
            )
        model = self.store.models.get(arns.key(params["ModelName"]))
        if model is None:
            raise ValidationException(f'Could not find model "{arns.arn("model", params["ModelName"])}".')
        # AWS's own words (CreateTransformJob on a model with uncompressed model data).
        refuse_model_data_source(model, "SageMaker Batch")
        self._check(name, params)
        now = time.time()
        record: Record = {
            "TransformJobName": name,
            "TransformJobArn": arn,
            "TransformJobStatus": "InProgress",
            "CreationTime": now,
            "TransformStartTime": now,
        }
        for field in (
            "ModelName",
            "MaxConcurrentTransforms",
            "ModelClientConfig",
            "MaxPayloadInMB",
            "BatchStrategy",
            "Environment",
            "TransformInput",
            "TransformOutput",
            "TransformResources",
            "DataProcessing",
        ):
            if field in params:
                record[field] = params[field]
        self.store.transform_jobs[key] = record
        tags = {t["Key"]: t.get("Value", "") for t in params.get("Tags", [])}
        self.store.tags[arn] = [{"Key": k, "Value": v} for k, v in tags.items()]
        self.store.save()
        self._tasks[key] = asyncio.create_task(self._run(key))
        return {"TransformJobArn": arn}

    async def describe(self, params: Record) -> Record:
        return dict(self._job(params["TransformJobName"]))

    async def stop(self, params: Record) -> Record:
        job = self._job(params["TransformJobName"])
        if job["TransformJobStatus"] == "InProgress":
            self._set(arns.key(job["TransformJobName"]), TransformJobStatus="Stopping")
            task = self._tasks.get(arns.key(job["TransformJobName"]))
            if task is not None:
                task.cancel()
        return {}

    def _job(self, name: str) -> Record:
        job = self.store.transform_jobs.get(arns.key(name))
        if job is None:
            raise ValidationException(f'Could not find requested job with name "{name}"')
        return job

    @staticmethod
    def _check(name: str, params: Record) -> None:
        where = f"Transform job {name}"
        source = params["TransformInput"]["DataSource"]["S3DataSource"]
        if source["S3DataType"] != "S3Prefix":
            raise ValidationException(
                f"{where}: S3DataType {source['S3DataType']} is not supported by the emulator; use S3Prefix."
            )
        if not source["S3Uri"].startswith("s3://"):
            raise ValidationException(f"{where}: S3Uri {source['S3Uri']} must be an s3:// URI.")
        if not params["TransformOutput"]["S3OutputPath"].startswith("s3://"):
            raise ValidationException(f"{where}: TransformOutput.S3OutputPath must be an s3:// URI.")
        split = params["TransformInput"].get("SplitType", "None")
        if split not in ("None", "Line"):
            raise ValidationException(
                f"{where}: SplitType {split} is not supported by the emulator; use None or Line."
            )
        if params.get("BatchStrategy") == "MultiRecord" and split == "None":
            raise ValidationException(
                f"{where}: BatchStrategy MultiRecord needs a SplitType (Line) to cut records from objects."
            )
        if params.get("DataProcessing") and any(params["DataProcessing"].values()):
            raise ValidationException(f"{where}: DataProcessing is not supported by the emulator.")
        # The API reference's limits on the requests one instance has in flight; the service model gives
        # only minimums. (Environment's 16 entries are the model's map maximum, checked before this.)
        payload = params.get("MaxPayloadInMB")
        if payload is not None and payload > MAX_PAYLOAD_MB:
            raise ValidationException(
                f"MaxPayloadInMB ({payload}) cannot be greater than {MAX_PAYLOAD_MB} MB."
            )
        concurrent = params.get("MaxConcurrentTransforms")
        payload = DEFAULT_MAX_PAYLOAD_MB if payload is None else payload
        if concurrent and concurrent * payload > MAX_PAYLOAD_MB:
            raise ValidationException(
                f"MaxConcurrentTransforms ({concurrent}) * MaxPayloadInMB ({payload}) cannot exceed "
                f"{MAX_PAYLOAD_MB} MB."
            )

    # -- the job ----------------------------------------------------------------------------------

    async def _run(self, key: str) -> None:
        job = self.store.transform_jobs[key]
        ended: dict[str, Any] = {}
        held: list[str] = []  # the model data this job holds against the endpoints' prune
        try:
            containers = await self._start_containers(job, held)
            await self._transform(job, containers)
            ended = {"TransformJobStatus": "Completed"}
        except asyncio.CancelledError:
            if not self._closing:  # StopTransformJob; an emulator shutting down leaves it to restore()
                ended = {"TransformJobStatus": "Stopped"}
        except JobFailed as failure:
            log.info("transform job %s failed: %s", job["TransformJobName"], failure)
            ended = {"TransformJobStatus": "Failed", "FailureReason": str(failure)[:1024]}
        except Exception as error:  # a bug here must still end the job, not leave it InProgress
            log.exception("transform job %s failed inside the emulator", job["TransformJobName"])
            ended = {"TransformJobStatus": "Failed", "FailureReason": f"InternalServerError: {error}"[:1024]}
        finally:
            # The instances stop before the job reports its end, as on SageMaker.
            ids = await asyncio.to_thread(self.fleet.containers, {LABEL_TRANSFORM_JOB: key})
            await asyncio.gather(*(asyncio.to_thread(self.fleet.remove, c) for c in ids))
            for cache_key in held:
                self.model_data.release(cache_key)
            self._tasks.pop(key, None)
            if ended:
                self._set(key, TransformEndTime=time.time(), **ended)

    async def _start_containers(self, job: Record, held: list[str]) -> list[RunningContainer]:
        model = self.store.models.get(arns.key(job["ModelName"]))
        if model is None:
            raise JobFailed(f"ClientError: model {job['ModelName']} was deleted before the job started")
        if "PrimaryContainer" not in model:
            raise JobFailed("ClientError: the emulator runs transform jobs on single-container models only")
        definition = model["PrimaryContainer"]
        image_id = await self._pull(definition["Image"])
        model_dir = await self._model_dir(definition, held)
        environment = {**(definition.get("Environment") or {}), **(job.get("Environment") or {})}
        count = int(job["TransformResources"]["InstanceCount"])
        suffix = uuid.uuid4().hex[:8]
        key = arns.key(job["TransformJobName"])
        started: list[RunningContainer] = []
        for index in range(count):
            spec = ContainerSpec(
                name=f"sm-transform-{key}-{index}-{suffix}",
                image_id=image_id,
                environment=environment,
                model_dir=model_dir,
                labels={LABEL_TRANSFORM_JOB: key},
                size=instance_size(job["TransformResources"].get("InstanceType")),
            )
            try:
                started.append(await asyncio.to_thread(self.fleet.run, spec))
            except ContainerFailed as failure:
                raise JobFailed(f"ClientError: the container could not start: {failure}") from failure
        try:
            async with asyncio.TaskGroup() as group:
                for container in started:
                    group.create_task(
                        self.fleet.wait_healthy(self.http, container, self.limits.startup_health_timeout)
                    )
        except* ContainerFailed as failures:
            first = failures.exceptions[0]
            raise JobFailed(
                f"ClientError: the model container did not pass the ping health check: {first}"
            ) from None
        return started

    async def _pull(self, uri: str) -> str:
        try:
            pulled = await asyncio.wait_for(
                asyncio.to_thread(images.pull, self.fleet.client, uri), self.limits.image_pull_timeout
            )
        except images.ImagePullError as error:
            raise JobFailed(f"ClientError: failed to pull the image {uri}: {error}") from error
        except TimeoutError as error:
            raise JobFailed(f"ClientError: pulling the image {uri} did not finish in time") from error
        return pulled.local_id

    async def _model_dir(self, definition: Record, held: list[str]) -> Path | None:
        """The unpacked model data, held (appended to `held`) until the job ends.

        Endpoints prune model data no deployment references; without the hold, an endpoint deleted
        while the job's container loads removes /opt/ml/model from under it.
        """
        spec = ModelDataSpec.from_container(definition)
        if spec is None:
            return None
        preparing = asyncio.ensure_future(
            asyncio.to_thread(functools.partial(self.model_data.prepare, spec, hold=True))
        )
        try:
            prepared = await asyncio.wait_for(asyncio.shield(preparing), self.limits.model_download_timeout)
        except ModelDataError as error:
            raise JobFailed(f"ClientError: failed to prepare the model data: {error}") from error
        except (TimeoutError, asyncio.CancelledError) as error:
            # The thread cannot be stopped: the hold it takes is dropped when it ends.
            preparing.add_done_callback(self._release_when_prepared)
            if isinstance(error, asyncio.CancelledError):
                raise
            raise JobFailed(f"ClientError: downloading {spec.s3_uri} did not finish in time") from error
        held.append(prepared.cache_key)
        return Path(prepared.path)

    def _release_when_prepared(self, preparing: asyncio.Future[PreparedModelData]) -> None:
        if not preparing.cancelled() and preparing.exception() is None:
            self.model_data.release(preparing.result().cache_key)

    async def _transform(self, job: Record, containers: list[RunningContainer]) -> None:
        prefix = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        keys = await asyncio.to_thread(self._list, prefix)
        if not keys:
            raise JobFailed(
                f'ClientError: No S3 objects found under S3 URL "{prefix}" given in input data source. '
                "Please ensure that the bucket exists in the selected region, that objects exist under "
                "that S3 prefix, and that the role has s3:ListBucket permissions."
            )
        queue: asyncio.Queue[str] = asyncio.Queue()
        for item in keys:
            queue.put_nowait(item)

        async def worker(container: RunningContainer) -> None:
            while not queue.empty():
                await self._transform_object(job, container, prefix, queue.get_nowait())

        await asyncio.gather(*(worker(c) for c in containers))

    async def _transform_object(
        self, job: Record, container: RunningContainer, prefix: str, key: str
    ) -> None:
        bucket, _ = _split_s3(prefix)
        source = f"s3://{bucket}/{key}"
        data = await asyncio.to_thread(self._read, bucket, key)
        if job["TransformInput"].get("CompressionType") == "Gzip":
            data = await asyncio.to_thread(self._gunzip, data, source)
        split = job["TransformInput"].get("SplitType", "None")
        strategy = job.get("BatchStrategy") or ("MultiRecord" if split == "Line" else "SingleRecord")
        max_mb = job.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
        answers: list[bytes] = []
        content_type = None
        for batch in batches(source, split_records(data, split), strategy, int(max_mb) * 2**20):
            body, content_type = await self._invoke(job, container, batch)
            answers.append(body)
        output = job["TransformOutput"]
        out_bucket, out_key = output_key(_split_s3(prefix)[1], key, output["S3OutputPath"])
        payload = assemble(answers, output.get("AssembleWith", "None"))
        kind = output.get("Accept") or content_type or "application/octet-stream"
        await asyncio.to_thread(self._write, out_bucket, out_key, payload, kind)

    async def _invoke(
        self, job: Record, container: RunningContainer, batch: Batch
    ) -> tuple[bytes, str | None]:
        client = job.get("ModelClientConfig") or {}
        timeout = float(client.get("InvocationsTimeoutInSeconds") or DEFAULT_INVOCATION_TIMEOUT_S)
        attempts = 1 + int(client.get("InvocationsMaxRetries", DEFAULT_MAX_RETRIES))
        headers = {}
        if job["TransformInput"].get("ContentType"):
            headers["Content-Type"] = job["TransformInput"]["ContentType"]
        if job["TransformOutput"].get("Accept"):
            headers["Accept"] = job["TransformOutput"]["Accept"]
        what = f"{batch.source} ({batch.records} record(s), {len(batch.body)} bytes)"
        last = "no answer"
        for _ in range(attempts):
            sent = time.time()
            try:
                answer = await self.http.post(
                    f"{container.url}/invocations", content=batch.body, headers=headers, timeout=timeout
                )
            except httpx.TimeoutException:
                last = f"no answer within InvocationsTimeoutInSeconds ({timeout:g} s)"
                continue
            except httpx.HTTPError as error:
                last = f"the request failed: {type(error).__name__}: {error}"
                oom = await asyncio.to_thread(self.fleet.ran_out_of_memory, container.id, sent)
                if oom is not None:
                    last = f"the container ran out of memory on it: {oom}"
                continue
            if answer.status_code == 200:
                return answer.content, answer.headers.get("content-type")
            last = f"the container answered {answer.status_code}: {answer.text[:300]}"
            if answer.status_code < 500:
                break  # the container refused the request; sending it again changes nothing
        raise JobFailed(f"ClientError: invoking the model on {what} failed: {last}")

    # -- S3 and the store -------------------------------------------------------------------------

    def _list(self, prefix_uri: str) -> list[str]:
        bucket, prefix = _split_s3(prefix_uri)
        keys: list[str] = []
        try:
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
        except (ClientError, BotoCoreError) as error:
            raise JobFailed(f"ClientError: cannot list the input {prefix_uri}: {error}") from error
        return sorted(keys)

    def _read(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self._s3().get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError) as error:
            raise JobFailed(f"ClientError: cannot read s3://{bucket}/{key}: {error}") from error

    def _gunzip(self, data: bytes, source: str) -> bytes:
        limit = self.limits.input_max_bytes
        try:
            return gunzip(data, limit, source)
        except UnsafeArchive as error:
            raise JobFailed(
                f"ClientError: {source} decompresses to more than {limit} bytes (CompressionType Gzip); "
                "split the input into smaller objects or raise SAGEMAKER_EMULATOR_INPUT_MAX_BYTES"
            ) from error
        except UnreadableArchive as error:
            raise JobFailed(f"ClientError: {error} (CompressionType Gzip)") from error

    def _write(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        try:
            self._s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as error:
            raise JobFailed(f"ClientError: cannot write the output s3://{bucket}/{key}: {error}") from error

    def _failed(self, key: str, reason: str) -> None:
        self._set(key, TransformJobStatus="Failed", FailureReason=reason[:1024], TransformEndTime=time.time())

    def _set(self, key: str, **fields: Any) -> None:
        self.store.transform_jobs[key].update(fields)
        self.store.save()

    # -- lifecycle --------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Jobs a stopped emulator was running end now: their containers are gone with the process."""
        for key, job in self.store.transform_jobs.items():
            if job["TransformJobStatus"] == "Stopping":
                self._set(key, TransformJobStatus="Stopped", TransformEndTime=time.time())
            elif job["TransformJobStatus"] == "InProgress":
                self._failed(
                    key,
                    "InternalServerError: the emulator restarted while the job ran; "
                    "start the job again under a new name",
                )
        ids = await asyncio.to_thread(self.fleet.containers, {})
        by_job = await asyncio.to_thread(self._transform_containers, ids)
        await asyncio.gather(*(asyncio.to_thread(self.fleet.remove, c) for c in by_job))

    def _transform_containers(self, ids: list[str]) -> list[str]:
        found = []
        for container_id in ids:
            try:
                labels = self.fleet.client.containers.get(container_id).labels
            except Exception:  # gone meanwhile
                continue
            if LABEL_TRANSFORM_JOB in labels:
                found.append(container_id)
        return found

    async def shutdown(self) -> None:
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
