"""Endpoint lifecycle: Creating → InService | Failed, Updating, Deleting, run in the background.

API calls return at once, as on AWS: they set the status, record the operation in the store and
start a task here. The task pulls images, prepares model data, starts one container per instance
per variant, waits for /ping and then flips the status. An interrupted operation is resumed when the
emulator starts again, and endpoints that were InService get their containers back (re-created if
they are gone).

Scaling (UpdateEndpointWeightsAndCapacities, which Application Auto Scaling calls too) starts the new
instances and adds each to routing once it answers /ping; leaving instances go out of routing first
and are stopped once their requests in progress finished. Serverless variants run instances on
demand: one request at a time each (as SageMaker gives every concurrent request its own), a cold start
when none is idle, stopped after `Limits.serverless_idle_s` (AWS seconds, shortened by the time scale)
without a request unless ProvisionedConcurrency keeps them warm.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import docker.errors
import httpx

from emulator.clock import Clock
from emulator.fleet import images
from emulator.fleet.containers import (
    LABEL_DEPLOYMENT,
    LABEL_ENDPOINT,
    LABEL_INSTANCE,
    LABEL_STEP,
    LABEL_VARIANT,
    ContainerFailed,
    ContainerSpec,
    Fleet,
    RunningContainer,
)
from emulator.fleet.instance_types import instance_size
from emulator.fleet.model_data import ModelDataCache, ModelDataError, ModelDataSpec
from emulator.sagemaker import arns, guardrails
from emulator.sagemaker.deployments import (
    ContainerRecord,
    Deployment,
    InstanceRecord,
    StepPlan,
    VariantDeployment,
)
from emulator.sagemaker.exceptions import ServiceUnavailable
from emulator.sagemaker.models import model_containers
from emulator.sagemaker.store import Record, Store
from emulator.settings import Limits

log = logging.getLogger("emulator.sagemaker.endpoints")

IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


class DeploymentFailed(Exception):
    """A deployment could not be brought up; `reason` is the endpoint's FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def now() -> float:
    return time.time()


class EndpointEngine:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        model_data: ModelDataCache,
        http: httpx.AsyncClient,
        limits: Limits,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.model_data = model_data
        self.http = http
        self.limits = limits
        self.clock = clock or Clock()
        self.deployments: dict[str, list[Deployment]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- reading ----------------------------------------------------------------------------------

    def live(self, key: str) -> list[Deployment]:
        return self.deployments.get(key, [])

    def primary(self, key: str) -> Deployment | None:
        deployments = self.live(key)
        return max(deployments, key=lambda d: d.share) if deployments else None

    def describe(self, key: str) -> dict[str, Any]:
        record = self.store.endpoints[key]
        out = {k: v for k, v in record.items()}
        primary = self.primary(key)
        if primary is not None:
            out["ProductionVariants"] = [v.summary() for v in primary.variants.values()]
        operation = self.store.operations.get(key)
        if operation and operation["kind"] in ("create", "update"):
            out["PendingDeploymentSummary"] = _pending_summary(operation)
        return out

    def instances_in_use(self) -> Counter[str]:
        """Instances per instance type that endpoints run or are being given."""
        used: Counter[str] = Counter()
        for key in self.store.endpoints:
            for deployment in self.live(key):
                for variant in deployment.variants.values():
                    if variant.instance_type:
                        used[variant.instance_type] += variant.desired_instances
            operation = self.store.operations.get(key)
            if operation and operation["kind"] in ("create", "update"):
                used.update(config_instances(operation["config"]))
        return used

    # -- starting operations (called from API handlers; they return at once) ----------------------

    def start_create(self, key: str, config: Record) -> None:
        self.store.operations[key] = {"kind": "create", "config": config, "started": now()}
        self.store.save()
        self._spawn(key, self._create(key))

    def start_update(
        self, key: str, config: Record, retain: Record, deployment_config: Record | None
    ) -> None:
        operation = {"kind": "update", "config": config, "retain": retain, "started": now()}
        if deployment_config is not None:
            operation["deployment_config"] = deployment_config
        self.store.operations[key] = operation
        self._set(key, EndpointStatus="Updating")
        self._spawn(key, self._update(key))

    def start_update_weights(self, key: str, desired: list[Record]) -> None:
        self.store.operations[key] = {"kind": "weights", "desired": desired, "started": now()}
        self._set(key, EndpointStatus="Updating")
        self._spawn(key, self._update_weights(key))

    def start_delete(self, key: str) -> None:
        self.store.operations[key] = {"kind": "delete", "started": now()}
        self._set(key, EndpointStatus="Deleting")
        self._spawn(key, self._delete(key))

    def _spawn(self, key: str, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(key, work))
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._tasks.pop(key, None) if self._tasks.get(key) is t else None)

    async def _guard(self, key: str, work: Any) -> None:
        """A bug in an operation must show on the endpoint, not leave it Creating forever."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("endpoint operation on %s failed inside the emulator", key)
            if key in self.store.endpoints:
                self.store.operations.pop(key, None)
                self._set(
                    key,
                    EndpointStatus="Failed",
                    FailureReason=f"The SageMaker emulator failed internally: {type(error).__name__}: "
                    f"{error} (see .state/logs/sagemaker.log)",
                )

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def start_background(self) -> None:
        """Start the loop that stops idle serverless instances (once the event loop runs)."""
        self._spawn("#serverless-reaper", self._reap_idle_serverless())

    # -- operations -------------------------------------------------------------------------------

    async def _create(self, key: str) -> None:
        record = self.store.endpoints[key]
        config = self.store.operations[key]["config"]
        try:
            deployment = await self._deploy(record["EndpointName"], config, previous=None, retain=None)
        except DeploymentFailed as failure:
            self.store.operations.pop(key, None)
            self._set(key, EndpointStatus="Failed", FailureReason=failure.reason)
            return
        self.deployments[key] = [deployment]
        self.store.operations.pop(key, None)
        self._persist_deployments(key)
        self._set(key, EndpointStatus="InService")

    async def _update(self, key: str) -> None:
        record = self.store.endpoints[key]
        operation = self.store.operations[key]
        config = operation["config"]
        old = self.live(key)
        try:
            deployment = await self._deploy(
                record["EndpointName"], config, previous=self.primary(key), retain=operation["retain"]
            )
        except DeploymentFailed as failure:
            # SageMaker rolls back: the old fleet keeps serving and the endpoint is InService again,
            # still on its old EndpointConfigName, with the reason in FailureReason.
            self.store.operations.pop(key, None)
            self._set(
                key,
                EndpointStatus="InService",
                FailureReason=f"Failed to update endpoint to endpoint config {config['EndpointConfigName']}"
                f", rolled back to {record['EndpointConfigName']}: {failure.reason}",
            )
            return
        # DeploymentConfig: traffic moves to the new fleet in baked steps and may roll back.
        if guardrails.uses_blue_green(operation) and not await guardrails.run_update(
            self, key, old, deployment, operation
        ):
            return
        self.deployments[key] = [deployment]
        self.store.operations.pop(key, None)
        self._persist_deployments(key)
        fields: dict[str, Any] = {
            "EndpointStatus": "InService",
            "EndpointConfigName": config["EndpointConfigName"],
        }
        fields.update(endpoint_fields_from_config(config))
        if "deployment_config" in operation:
            fields["LastDeploymentConfig"] = operation["deployment_config"]
        self._set(key, drop=(*_CONFIG_FIELDS, "FailureReason"), **fields)
        await self._remove_containers([cid for d in old for cid in d.container_ids()])
        self._prune_model_data()

    async def _update_weights(self, key: str) -> None:
        record = self.store.endpoints[key]
        desired = self.store.operations[key]["desired"]
        deployment = self.primary(key)
        assert deployment is not None, f"endpoint {key} is Updating weights without a deployment"
        failures: list[str] = []
        for entry in desired:
            variant = deployment.variants[entry["VariantName"]]
            if entry.get("DesiredWeight") is not None:
                variant.desired_weight = float(entry["DesiredWeight"])
            if entry.get("DesiredInstanceCount") is not None and variant.serverless is None:
                variant.desired_instances = int(entry["DesiredInstanceCount"])
                failure = await self._scale(record["EndpointName"], deployment, variant)
                if failure:
                    failures.append(failure)
        for variant in deployment.variants.values():
            variant.current_weight = variant.desired_weight
        self.store.operations.pop(key, None)
        self._persist_deployments(key)
        if failures:
            self._set(key, EndpointStatus="InService", FailureReason="; ".join(failures))
        else:
            self._set(key, EndpointStatus="InService", drop=("FailureReason",))

    async def _scale(
        self, endpoint_name: str, deployment: Deployment, variant: VariantDeployment
    ) -> str | None:
        """Start or stop instances until the variant has its desired count; the failure, if any."""
        extra = len(variant.instances) - variant.desired_instances
        if extra > 0:
            leaving = variant.instances[-extra:]
            variant.instances = variant.instances[:-extra]  # out of routing before containers stop
            await self._drain(variant, leaving)
            await self._remove_containers([c.id for i in leaving for c in i.containers])
            return None
        first = max((i.index for i in variant.instances), default=-1) + 1
        timeout = self._startup_timeout(deployment, variant)
        started = await asyncio.gather(
            *(
                self._start_instance(endpoint_name, deployment.id, variant, first + n, timeout)
                for n in range(-extra)
            ),
            return_exceptions=True,
        )
        problems = []
        for result in started:
            if isinstance(result, InstanceRecord):
                variant.instances.append(result)
            elif isinstance(result, DeploymentFailed):
                problems.append(result.reason)
            elif isinstance(result, BaseException):
                raise result
        if problems:
            variant.desired_instances = len(variant.instances)
            return f"Failed to scale production variant {variant.name}: {problems[0]}"
        return None

    async def _drain(self, variant: VariantDeployment, leaving: list[InstanceRecord]) -> None:
        """Wait (up to the invocation timeout) for the requests in progress on leaving instances."""
        deadline = time.monotonic() + self.limits.invocation_timeout
        while any(variant.busy(i) for i in leaving) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- serverless ---------------------------------------------------------------------------------

    async def serverless_instance(
        self, endpoint_name: str, deployment: Deployment, variant: VariantDeployment
    ) -> InstanceRecord:
        """An instance for one request of a serverless variant: an idle one, else a cold start.

        The caller marks the instance busy (`variant.begin`) before its next await, so two requests
        never take the same idle instance. Past `Limits.serverless_max_containers` instances, requests
        share the least busy one instead of starting more containers on this machine.
        """
        while True:
            idle = variant.idle_instance()
            if idle is not None:
                return idle
            if len(variant.instances) + variant.starting < self.limits.serverless_max_containers:
                return await self._cold_start(endpoint_name, deployment, variant)
            shared = variant.least_busy_instance()
            if shared is not None:
                return shared
            variant.grown.clear()
            await variant.grown.wait()  # every instance is still starting: take the first one up

    async def _cold_start(
        self, endpoint_name: str, deployment: Deployment, variant: VariantDeployment
    ) -> InstanceRecord:
        index = max((i.index for i in variant.instances), default=-1) + 1 + variant.starting
        variant.starting += 1
        try:
            instance = await self._start_instance(
                endpoint_name, deployment.id, variant, index, self._startup_timeout(deployment, variant)
            )
        except DeploymentFailed as failure:
            raise ServiceUnavailable(
                f"Serverless variant {variant.name} of endpoint {endpoint_name} could not start an instance "
                f"for this request: {failure.reason}"
            ) from None
        finally:
            variant.starting -= 1
        variant.instances.append(instance)
        variant.last_used[instance.index] = time.monotonic()
        variant.grown.set()
        key = arns.key(endpoint_name)
        if key in self.store.endpoints and deployment in self.live(key):
            self._persist_deployments(key)
        log.info("serverless %s/%s: cold start of instance %d", endpoint_name, variant.name, index)
        return instance

    async def _reap_idle_serverless(self) -> None:
        while True:
            idle_s = self.clock.real(self.limits.serverless_idle_s)
            await asyncio.sleep(min(1.0, max(0.05, idle_s / 4)))
            for key, deployments in list(self.deployments.items()):
                if key in self.store.operations:
                    continue  # an update or delete owns the containers now
                for deployment in deployments:
                    for variant in deployment.variants.values():
                        if variant.serverless is None:
                            continue
                        try:
                            await self._reap_variant(key, variant, idle_s)
                        except Exception:
                            # One container that will not stop must not end the loop for every endpoint.
                            log.exception("stopping idle serverless instances of %s failed", key)

    async def _reap_variant(self, key: str, variant: VariantDeployment, idle_s: float) -> None:
        assert variant.serverless is not None
        warm = min(
            int(variant.serverless.get("ProvisionedConcurrency") or 0), self.limits.serverless_max_containers
        )
        now = time.monotonic()
        # The provisioned instances are the first ones started (lowest index); only the others stop.
        provisioned = sorted(variant.instances, key=lambda i: i.index)[:warm]
        leaving = [
            i
            for i in variant.instances
            if i not in provisioned and variant.busy(i) == 0 and now - variant.idle_since(i, now) >= idle_s
        ]
        if not leaving:
            return
        variant.instances = [i for i in variant.instances if i not in leaving]
        for instance in leaving:
            variant.last_used.pop(instance.index, None)
        self._persist_deployments(key)
        log.info("serverless %s/%s: stopping %d idle instance(s)", key, variant.name, len(leaving))
        await self._remove_containers([c.id for i in leaving for c in i.containers])

    async def _delete(self, key: str) -> None:
        record = self.store.endpoints[key]
        deployments = self.deployments.pop(key, [])  # no more routing from here on
        ids = {cid for d in deployments for cid in d.container_ids()}
        ids.update(await asyncio.to_thread(self.fleet.containers, {LABEL_ENDPOINT: record["EndpointName"]}))
        await self._remove_containers(sorted(ids))
        del self.store.endpoints[key]
        self.store.deployments.pop(key, None)
        self.store.operations.pop(key, None)
        self.store.tags.pop(record["EndpointArn"], None)
        self.store.save()
        self._prune_model_data()

    # -- restart ----------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Bring back what the store holds: containers of live endpoints, interrupted operations."""
        for key, records in self.store.deployments.items():
            self.deployments[key] = [Deployment.from_record(r) for r in records]
        for key, interrupted in self.store.operations.items():
            if interrupted["kind"] == "update" and key in self.deployments:
                self._drop_interrupted_fleet(key, interrupted)
        known = {d.id for ds in self.deployments.values() for d in ds}
        await self._remove_orphans(known)
        self.model_data.remove_partials()
        for key, record in list(self.store.endpoints.items()):
            operation = self.store.operations.get(key)
            if operation is None or operation["kind"] != "delete":
                for deployment in self.live(key):
                    self._spawn(
                        f"{key}#revive#{deployment.id}", self._revive(record["EndpointName"], deployment)
                    )
            if operation is None:
                continue
            kind = operation["kind"]
            if kind == "create":
                self._spawn(key, self._create(key))
            elif kind == "update":
                self._spawn(key, self._update(key))
            elif kind == "weights":
                self._spawn(key, self._update_weights(key))
            elif kind == "delete":
                self._spawn(key, self._delete(key))

    def _drop_interrupted_fleet(self, key: str, operation: Record) -> None:
        """A blue/green update the restart interrupted had its new fleet beside the old one. The update
        starts over, so that fleet is forgotten (its containers go with the orphans) and the old fleet
        takes all the traffic again; kept, it would count as old fleet and serve the new model after a
        rollback. The new fleet is told by the deployment id BlueGreen recorded, not by its config name,
        which the old fleet shares after an update to the config the endpoint already uses."""
        new_fleet = operation.get(guardrails.NEW_FLEET)
        if new_fleet is None:
            return
        fleets = self.deployments[key]
        kept = [d for d in fleets if d.id != new_fleet]
        if not kept or len(kept) == len(fleets):
            return
        total = sum(d.share for d in kept)
        for deployment in kept:
            deployment.share = deployment.share / total if total > 0 else 1.0 / len(kept)
        self.deployments[key] = kept
        self._persist_deployments(key)
        log.info("endpoint %s: the interrupted update starts over; its new fleet is dropped", key)

    async def _remove_orphans(self, known: set[str]) -> None:
        ours = await asyncio.to_thread(self.fleet.containers_by_deployment)
        kept = {
            cid for deployments in self.deployments.values() for d in deployments for cid in d.container_ids()
        }
        # Containers of unknown deployments, and of instances a scaling interrupted by the restart was
        # still starting (their deployment is known, they are not among its instances: their names would
        # be taken when the scaling resumes).
        orphans = [
            cid for cid, deployment_id in ours.items() if deployment_id not in known or cid not in kept
        ]
        if orphans:
            log.info("removing %d containers of deployments the store does not know", len(orphans))
            await self._remove_containers(orphans)

    async def _revive(self, endpoint_name: str, deployment: Deployment) -> None:
        problems = []
        for variant in deployment.variants.values():
            timeout = self._startup_timeout(deployment, variant)
            for position, instance in enumerate(list(variant.instances)):
                running = [
                    await asyncio.to_thread(self.fleet.find_running, c.id) for c in instance.containers
                ]
                if all(r is not None for r in running):
                    instance.containers = [
                        ContainerRecord(r.id, r.name, r.port) for r in running if r is not None
                    ]
                    continue
                await self._remove_containers([c.id for c in instance.containers])
                try:
                    variant.instances[position] = await self._start_instance(
                        endpoint_name, deployment.id, variant, instance.index, timeout
                    )
                except DeploymentFailed as failure:
                    problems.append(failure.reason)
                    variant.instances.remove(instance)
        key = arns.key(endpoint_name)
        if key in self.store.endpoints:
            self._persist_deployments(key)
            if problems:
                self._set(
                    key, FailureReason="Instances lost when the emulator restarted: " + "; ".join(problems)
                )
        deployment.ready.set()

    # -- deploying a config -----------------------------------------------------------------------

    async def _deploy(
        self, endpoint_name: str, config: Record, previous: Deployment | None, retain: Record | None
    ) -> Deployment:
        deployment = Deployment(f"d-{uuid.uuid4().hex[:12]}", config["EndpointConfigName"], 1.0, {})
        results = await asyncio.gather(
            *(
                self._deploy_variant(endpoint_name, deployment, variant, previous, retain)
                for variant in config["ProductionVariants"]
            ),
            return_exceptions=True,
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self._remove_containers(
                await asyncio.to_thread(self.fleet.containers, {LABEL_DEPLOYMENT: deployment.id})
            )
            self._prune_model_data()
            raise failure
        for result in results:
            assert isinstance(result, VariantDeployment)
            deployment.variants[result.name] = result
        deployment.ready.set()
        return deployment

    async def _deploy_variant(
        self,
        endpoint_name: str,
        deployment: Deployment,
        spec: Record,
        previous: Deployment | None,
        retain: Record | None,
    ) -> VariantDeployment:
        name = spec["VariantName"]
        model = self.store.models.get(arns.key(spec["ModelName"]))
        if model is None:
            raise DeploymentFailed(
                f'Could not find model "{arns.arn("model", spec["ModelName"])}" for production variant '
                f"{name}: it was deleted after the endpoint configuration was created."
            )
        definitions = model_containers(model)
        plans = await asyncio.gather(
            *(self._plan_step(name, model, d, i, len(definitions)) for i, d in enumerate(definitions))
        )
        serverless = spec.get("ServerlessConfig")
        weight = float(spec.get("InitialVariantWeight", 1.0))
        if serverless:
            # One instance proves the model starts (a broken one fails the endpoint, as on SageMaker);
            # provisioned concurrency keeps that many warm.
            warm = int(serverless.get("ProvisionedConcurrency") or 1)
            count = min(warm, self.limits.serverless_max_containers)
        else:
            count = int(spec["InitialInstanceCount"])
        old = previous.variants.get(name) if previous else None
        if old is not None and retain and retain.get("RetainAllVariantProperties"):
            excluded = {p["VariantPropertyType"] for p in retain.get("ExcludeRetainedVariantProperties", [])}
            if "DesiredWeight" not in excluded:
                weight = old.desired_weight
            if "DesiredInstanceCount" not in excluded and serverless is None:
                count = old.desired_instances
        variant = VariantDeployment(
            name=name,
            model_name=model["ModelName"],
            instance_type=None if serverless else spec.get("InstanceType"),
            serverless=serverless,
            desired_instances=count,
            current_weight=weight,
            desired_weight=weight,
            deployed_images=[
                {"SpecifiedImage": d["Image"], "ResolvedImage": p.resolved_image, "ResolutionTime": now()}
                for d, p in zip(definitions, plans, strict=True)
            ],
            steps=list(plans),
        )
        timeout = float(
            spec.get("ContainerStartupHealthCheckTimeoutInSeconds") or self.limits.startup_health_timeout
        )
        started = await asyncio.gather(
            *(self._start_instance(endpoint_name, deployment.id, variant, i, timeout) for i in range(count)),
            return_exceptions=True,
        )
        for result in started:
            if isinstance(result, BaseException):
                raise result
        variant.instances = [r for r in started if isinstance(r, InstanceRecord)]
        return variant

    async def _plan_step(
        self, variant_name: str, model: Record, definition: Record, index: int, count: int
    ) -> StepPlan:
        hostname = definition.get("ContainerHostname") or (
            "primary" if count == 1 else f"container-{index + 1}"
        )
        what = f"container {hostname} of model {model['ModelName']} (production variant {variant_name})"
        uri = definition["Image"]
        try:
            pulled = await asyncio.wait_for(
                asyncio.to_thread(images.pull, self.fleet.client, uri), self.limits.image_pull_timeout
            )
        except images.UnsupportedManifest as error:
            # SageMaker's own words: the image is there, but not in a form it pulls.
            raise DeploymentFailed(str(error)) from error
        except images.ImagePullError as error:
            raise DeploymentFailed(
                f"Failed to pull the image {uri} for {what}: {error}. Push the image "
                f"(docker push {images.pull_reference(uri)}) or fix the model's Image."
            ) from error
        except TimeoutError as error:
            raise DeploymentFailed(
                f"Pulling the image {uri} for {what} did not finish within "
                f"{self.limits.image_pull_timeout:g} s."
            ) from error
        data_spec = ModelDataSpec.from_container(definition)
        prepared = None
        if data_spec is not None:
            try:
                prepared = await asyncio.wait_for(
                    asyncio.to_thread(self.model_data.prepare, data_spec), self.limits.model_download_timeout
                )
            except ModelDataError as error:
                raise DeploymentFailed(f"Failed to prepare model data for {what}: {error}") from error
            except TimeoutError as error:
                raise DeploymentFailed(
                    f"Downloading model data {data_spec.s3_uri} for {what} did not finish within "
                    f"{self.limits.model_download_timeout:g} s."
                ) from error
        return StepPlan(
            hostname=hostname,
            image_id=pulled.local_id,
            resolved_image=pulled.resolved,
            environment=dict(definition.get("Environment") or {}),
            model_data_key=prepared.cache_key if prepared else None,
            model_dir=str(prepared.path) if prepared else None,
        )

    async def _start_instance(
        self, endpoint_name: str, deployment_id: str, variant: VariantDeployment, index: int, timeout: float
    ) -> InstanceRecord:
        started: list[RunningContainer] = []
        try:
            for step_index, step in enumerate(variant.steps):
                spec = ContainerSpec(
                    name=f"sm-{endpoint_name}-{variant.name}-{index}-{step_index}-{deployment_id[2:10]}",
                    image_id=step.image_id,
                    environment=step.environment,
                    model_dir=Path(step.model_dir) if step.model_dir else None,
                    labels={
                        LABEL_ENDPOINT: endpoint_name,
                        LABEL_DEPLOYMENT: deployment_id,
                        LABEL_VARIANT: variant.name,
                        LABEL_INSTANCE: str(index),
                        LABEL_STEP: str(step_index),
                    },
                    size=instance_size(variant.instance_type, variant.serverless),
                )
                started.append(await self._run(spec, step))
            async with asyncio.TaskGroup() as group:
                for container in started:
                    group.create_task(self.fleet.wait_healthy(self.http, container, timeout))
        except* ContainerFailed as failures:
            await self._remove_containers([c.id for c in started])
            first = failures.exceptions[0]
            label = variant.steps[0].hostname if len(variant.steps) == 1 else "a container"
            who = "primary container" if label == "primary" else f"container {label}"
            what = (
                "exited before it passed the ping health check"
                if isinstance(first, ContainerFailed) and first.exited
                else "did not pass the ping health check"
            )
            raise DeploymentFailed(
                f"The {who} for production variant {variant.name} {what}: {first}"
            ) from None
        return InstanceRecord(index, [ContainerRecord(c.id, c.name, c.port) for c in started])

    async def _run(self, spec: ContainerSpec, step: StepPlan) -> RunningContainer:
        try:
            return await asyncio.to_thread(self.fleet.run, spec)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as error:
            raise ContainerFailed(
                f"container {spec.name} could not be started: {error.explanation or error}"
            ) from error
        # The image left the engine since it was deployed: pull the digest DeployedImages pinned.
        try:
            pulled = await asyncio.to_thread(images.pull, self.fleet.client, step.resolved_image)
        except images.ImagePullError as error:
            raise ContainerFailed(f"container {spec.name} could not be started: {error}") from error
        step.image_id = pulled.local_id
        return await asyncio.to_thread(self.fleet.run, dataclasses.replace(spec, image_id=pulled.local_id))

    # -- helpers ----------------------------------------------------------------------------------

    def _startup_timeout(self, deployment: Deployment, variant: VariantDeployment) -> float:
        config = self.store.endpoint_configs.get(arns.key(deployment.config_name)) or {}
        for spec in config.get("ProductionVariants", []):
            if spec["VariantName"] == variant.name and spec.get(
                "ContainerStartupHealthCheckTimeoutInSeconds"
            ):
                return float(spec["ContainerStartupHealthCheckTimeoutInSeconds"])
        return self.limits.startup_health_timeout

    async def _remove_containers(self, ids: list[str]) -> None:
        await asyncio.gather(*(asyncio.to_thread(self.fleet.remove, cid) for cid in ids))

    def _persist_deployments(self, key: str) -> None:
        self.store.deployments[key] = [d.to_record() for d in self.live(key)]
        self.store.save()

    def _prune_model_data(self) -> None:
        keep = {
            step.model_data_key
            for deployments in self.deployments.values()
            for d in deployments
            for v in d.variants.values()
            for step in v.steps
            if step.model_data_key
        }
        for operation in self.store.operations.values():
            if operation["kind"] in ("create", "update"):
                return  # a deployment in progress may be unpacking data nobody references yet
        self.model_data.prune(keep)

    def _set(self, key: str, drop: tuple[str, ...] = (), **fields: Any) -> None:
        record = self.store.endpoints[key]
        for name in drop:
            record.pop(name, None)
        record.update(fields)
        record["LastModifiedTime"] = now()
        self.store.save()


_CONFIG_FIELDS = ("DataCaptureConfig", "AsyncInferenceConfig")


def endpoint_fields_from_config(config: Record) -> dict[str, Any]:
    """The parts of an endpoint config that DescribeEndpoint repeats."""
    fields: dict[str, Any] = {}
    capture = config.get("DataCaptureConfig")
    if capture:
        enabled = capture.get("EnableCapture", True)
        fields["DataCaptureConfig"] = {
            "EnableCapture": enabled,
            "CaptureStatus": "Started" if enabled else "Stopped",
            "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
            "DestinationS3Uri": capture["DestinationS3Uri"],
            "KmsKeyId": capture.get("KmsKeyId", ""),
        }
    if config.get("AsyncInferenceConfig"):
        fields["AsyncInferenceConfig"] = config["AsyncInferenceConfig"]
    return fields


def config_instances(config: Record) -> Counter[str]:
    counts: Counter[str] = Counter()
    for variant in config["ProductionVariants"]:
        if variant.get("InstanceType") and not variant.get("ServerlessConfig"):
            counts[variant["InstanceType"]] += int(variant.get("InitialInstanceCount", 1))
    return counts


def _pending_summary(operation: Record) -> dict[str, Any]:
    config = operation["config"]
    variants = []
    for spec in config["ProductionVariants"]:
        summary: dict[str, Any] = {
            "VariantName": spec["VariantName"],
            "DesiredWeight": float(spec.get("InitialVariantWeight", 1.0)),
            "VariantStatus": operation.get("variant_status")
            or [{"Status": "Creating", "StartTime": operation["started"]}],
        }
        if spec.get("ServerlessConfig"):
            summary["DesiredServerlessConfig"] = spec["ServerlessConfig"]
        else:
            summary["DesiredInstanceCount"] = int(spec["InitialInstanceCount"])
            summary["InstanceType"] = spec["InstanceType"]
        variants.append(summary)
    return {
        "EndpointConfigName": config["EndpointConfigName"],
        "ProductionVariants": variants,
        "StartTime": operation["started"],
    }
