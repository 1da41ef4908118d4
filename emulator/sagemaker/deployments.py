"""What runs behind an endpoint: deployments of an endpoint config onto containers, and routing.

An endpoint has one deployment while it is stable. The list form, each with its share of traffic,
is what a blue/green update (DeploymentConfig) needs: the new fleet serves a growing share while the
old one drains. Records are plain dataclasses persisted in the store, so a restarted emulator knows
every container it had started and how to start it again.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
import random
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

TRANSIENT = {"transient": True}


@dataclass
class ContainerRecord:
    id: str
    name: str
    port: int


@dataclass
class StepPlan:
    """One container of the model (one step of a serial inference pipeline), resolved for running."""

    hostname: str
    image_id: str
    resolved_image: str
    environment: dict[str, str]
    model_data_key: str | None
    model_dir: str | None


@dataclass
class InstanceRecord:
    index: int
    containers: list[ContainerRecord]


@dataclass
class VariantDeployment:
    name: str
    model_name: str
    instance_type: str | None
    serverless: dict[str, Any] | None
    desired_instances: int
    current_weight: float
    desired_weight: float
    deployed_images: list[dict[str, Any]]
    steps: list[StepPlan]
    instances: list[InstanceRecord] = field(default_factory=list)
    # This process's live state, never persisted (see `to_record`): the round-robin turn, requests in
    # progress per instance index and when each instance last finished one (monotonic s), so an
    # instance leaving (scale-in) drains first and an idle serverless instance stops; for serverless,
    # requests admitted (running or waiting for a cold start) and instances being started.
    _turn: itertools.count = field(default_factory=itertools.count, repr=False, compare=False)
    busy_counts: collections.Counter[int] = field(
        default_factory=collections.Counter, repr=False, compare=False, metadata=TRANSIENT
    )
    last_used: dict[int, float] = field(default_factory=dict, repr=False, compare=False, metadata=TRANSIENT)
    admitted: int = field(default=0, repr=False, compare=False, metadata=TRANSIENT)
    starting: int = field(default=0, repr=False, compare=False, metadata=TRANSIENT)
    grown: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False, metadata=TRANSIENT)

    def next_instance(self) -> InstanceRecord | None:
        if not self.instances:
            return None
        return self.instances[next(self._turn) % len(self.instances)]

    def least_busy_instance(self) -> InstanceRecord | None:
        """The instance with the fewest requests in progress (ties in round-robin order)."""
        if not self.instances:
            return None
        offset = next(self._turn)
        ordered = [self.instances[(offset + i) % len(self.instances)] for i in range(len(self.instances))]
        return min(ordered, key=lambda instance: self.busy_counts[instance.index])

    def idle_instance(self) -> InstanceRecord | None:
        """An instance with no request in progress, if there is one."""
        return next((i for i in self.instances if self.busy_counts[i.index] == 0), None)

    def begin(self, instance: InstanceRecord) -> None:
        self.busy_counts[instance.index] += 1

    def end(self, instance: InstanceRecord) -> None:
        self.busy_counts[instance.index] -= 1
        if self.busy_counts[instance.index] <= 0:
            del self.busy_counts[instance.index]
        self.last_used[instance.index] = time.monotonic()

    def busy(self, instance: InstanceRecord) -> int:
        return self.busy_counts[instance.index]

    def idle_since(self, instance: InstanceRecord, now: float) -> float:
        """When the instance last finished a request (first asked: `now`)."""
        return self.last_used.setdefault(instance.index, now)

    def summary(self) -> dict[str, Any]:
        """ProductionVariantSummary as DescribeEndpoint returns it."""
        out: dict[str, Any] = {
            "VariantName": self.name,
            "DeployedImages": self.deployed_images,
            "CurrentWeight": self.current_weight,
            "DesiredWeight": self.desired_weight,
        }
        if self.serverless is not None:
            out["CurrentServerlessConfig"] = self.serverless
            out["DesiredServerlessConfig"] = self.serverless
        else:
            out["CurrentInstanceCount"] = len(self.instances)
            out["DesiredInstanceCount"] = self.desired_instances
        return out


@dataclass
class Deployment:
    id: str
    config_name: str
    share: float
    variants: dict[str, VariantDeployment]
    # Set once every container answers /ping; invocations wait on it after a restart.
    ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)

    def to_record(self) -> dict[str, Any]:
        variants = {}
        for name, variant in self.variants.items():
            kept = [f.name for f in fields(variant) if f.name != "_turn" and not f.metadata.get("transient")]
            variants[name] = {key: _plain(getattr(variant, key)) for key in kept}
        return {"id": self.id, "config_name": self.config_name, "share": self.share, "variants": variants}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Deployment:
        variants = {}
        for name, data in record["variants"].items():
            variants[name] = VariantDeployment(
                name=data["name"],
                model_name=data["model_name"],
                instance_type=data["instance_type"],
                serverless=data["serverless"],
                desired_instances=data["desired_instances"],
                current_weight=data["current_weight"],
                desired_weight=data["desired_weight"],
                deployed_images=data["deployed_images"],
                steps=[StepPlan(**step) for step in data["steps"]],
                instances=[
                    InstanceRecord(i["index"], [ContainerRecord(**c) for c in i["containers"]])
                    for i in data["instances"]
                ],
            )
        return cls(record["id"], record["config_name"], record["share"], variants)

    def container_ids(self) -> list[str]:
        return [c.id for v in self.variants.values() for i in v.instances for c in i.containers]


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return copy.deepcopy(value)


class NoRoute(Exception):
    """No variant can take the request; the message says why."""


def choose_variant(
    deployments: list[Deployment], target_variant: str | None, rng: random.Random
) -> tuple[Deployment, VariantDeployment]:
    """Pick where a request goes: by deployment share, then by variant weight, as SageMaker routes."""
    live = [d for d in deployments if d.share > 0] or deployments
    if target_variant is not None:
        for deployment in sorted(live, key=lambda d: d.share, reverse=True):
            if target_variant in deployment.variants:
                return deployment, deployment.variants[target_variant]
        known = sorted({name for d in deployments for name in d.variants})
        raise NoRoute(f"TargetVariant {target_variant} is not a production variant of this endpoint {known}")
    deployment = rng.choices(live, weights=[d.share for d in live])[0] if len(live) > 1 else live[0]
    weighted = [v for v in deployment.variants.values() if v.current_weight > 0]
    if not weighted:
        raise NoRoute(
            "every production variant of this endpoint has weight 0; set TargetVariant or give a "
            "variant weight with UpdateEndpointWeightsAndCapacities"
        )
    if len(weighted) == 1:
        return deployment, weighted[0]
    return deployment, rng.choices(weighted, weights=[v.current_weight for v in weighted])[0]
