"""Blue/green endpoint updates with deployment guardrails, as SageMaker runs them.

UpdateEndpoint with a DeploymentConfig whose BlueGreenUpdatePolicy routes traffic ALL_AT_ONCE,
CANARY or LINEAR: the new (green) fleet is provisioned beside the old (blue) one, which keeps the
variant names; traffic moves to green in steps (the canary, or one linear step of instances at a
time), each step followed by a baking period of WaitIntervalInSeconds during which the alarms of
AutoRollbackConfiguration are watched. An alarm in ALARM, or running past
MaximumExecutionTimeoutInSeconds, rolls back: the endpoint goes RollingBack, all traffic returns to
blue, green is torn down, and the endpoint is InService again on its old config with a FailureReason
naming the alarm. Otherwise blue is kept TerminationWaitInSeconds longer and then terminated.

While it runs, DescribeEndpoint reports the phase as the PendingDeploymentSummary's VariantStatus
(ActivatingTraffic, Baking), which is how a caller follows the steps. Routing is by the fleets'
shares (emulator/sagemaker/deployments.py); both fleets publish metrics under the same variant name,
as on AWS.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.sagemaker.deployments import Deployment
from emulator.sagemaker.exceptions import ValidationException
from emulator.sagemaker.store import Record, Store

log = logging.getLogger("emulator.sagemaker.guardrails")


class EndpointEngine(Protocol):
    """What a blue/green update drives of the endpoint engine (emulator/sagemaker/endpoints.py), named
    here so the engine can import this module without this module importing the engine."""

    store: Store
    deployments: dict[str, list[Deployment]]

    def _set(self, key: str, drop: tuple[str, ...] = (), **fields: Any) -> None: ...

    def _persist_deployments(self, key: str) -> None: ...

    async def _remove_containers(self, ids: list[str]) -> None: ...

    def _prune_model_data(self) -> None: ...


POLL_S = 1.0
ALARM_STATE = "ALARM"
AlarmReader = Callable[[Sequence[str]], dict[str, tuple[str, str]]]


@dataclass(frozen=True)
class TrafficPlan:
    kind: str  # ALL_AT_ONCE | CANARY | LINEAR
    shares: tuple[float, ...]  # the green fleet's cumulative share of traffic per step, ending at 1.0
    wait_s: float
    termination_wait_s: float
    max_execution_s: float
    alarms: tuple[str, ...]


# The operation's field naming the deployment id of the green fleet once it runs beside blue.
NEW_FLEET = "new_fleet"


def uses_blue_green(operation: Record) -> bool:
    config = operation.get("deployment_config") or {}
    return "BlueGreenUpdatePolicy" in config


# TrafficRoutingConfig's bounds in the API reference: CanarySize "must be less than or equal to 50% of the
# variant's total instance count", LinearStepSize "must be 10-50% of the variant's total instance count".
SIZE_BOUNDS = {"CanarySize": (0, 50), "LinearStepSize": (10, 50)}


def _instances(size: Record, fleet: int, what: str) -> int:
    """The instances of the new fleet one step turns on; ValidationException outside SageMaker's bounds."""
    value = int(size["Value"])
    low, high = SIZE_BOUNDS[what]
    if size["Type"] == "INSTANCE_COUNT":
        count = value
        share = 100 * value / fleet
        given = f"{value} instance(s), {share:.3g}% of the variant's {fleet} instance(s)"
    elif size["Type"] == "CAPACITY_PERCENT":
        count = max(1, math.floor(fleet * value / 100))
        share = float(value)
        given = f"{value}% of the variant's {fleet} instance(s)"
    else:
        raise ValidationException(
            f"{what}.Type must be INSTANCE_COUNT or CAPACITY_PERCENT, not {size['Type']}."
        )
    bounds = f"{low}-{high}%" if low else f"less than or equal to {high}%"
    # count < 1 here too: botocore's model (Value >= 1) is checked by validation.py, not by this module.
    if not low <= share <= high or count < 1 or count > fleet // 2:
        raise ValidationException(
            f"Invalid {what}: {given}. {what} Value must be {bounds} of the variant's total instance "
            f"count, and a step is at least 1 instance and at most half of the fleet ({fleet // 2} "
            "instance(s))."
        )
    return count


def total_wait_s(policy: Record, steps: int) -> float:
    """The deployment's total waiting time: WaitIntervalInSeconds after each traffic step, then
    TerminationWaitInSeconds."""
    routing = policy["TrafficRoutingConfiguration"]
    return float(routing.get("WaitIntervalInSeconds", 0)) * steps + float(
        policy.get("TerminationWaitInSeconds", 0)
    )


def plan(deployment_config: Record, config: Record) -> TrafficPlan:
    """The traffic plan of a DeploymentConfig for endpoint config `config`; ValidationException when
    SageMaker would refuse it."""
    policy = deployment_config.get("BlueGreenUpdatePolicy")
    if not policy:
        raise ValidationException(
            "DeploymentConfig needs a BlueGreenUpdatePolicy (RollingUpdatePolicy is not emulated)."
        )
    routing = policy.get("TrafficRoutingConfiguration")
    if not routing:
        raise ValidationException("BlueGreenUpdatePolicy.TrafficRoutingConfiguration is required.")
    kind = routing["Type"]
    if kind not in ("ALL_AT_ONCE", "CANARY", "LINEAR"):
        raise ValidationException(
            f"TrafficRoutingConfiguration.Type {kind} is not ALL_AT_ONCE, CANARY or LINEAR."
        )
    # A canary or a linear step is a share of the variant's instances; a serverless variant has none.
    if any(v.get("ServerlessConfig") for v in config["ProductionVariants"]) and kind != "ALL_AT_ONCE":
        raise ValidationException(
            f"{kind} traffic routing is not supported for serverless endpoints; use ALL_AT_ONCE."
        )
    fleet = min(int(v.get("InitialInstanceCount", 1)) for v in config["ProductionVariants"])
    if kind == "ALL_AT_ONCE":
        shares: tuple[float, ...] = (1.0,)
    elif kind == "CANARY":
        if "CanarySize" not in routing:
            raise ValidationException("TrafficRoutingConfiguration.CanarySize is required for CANARY.")
        shares = (_instances(routing["CanarySize"], fleet, "CanarySize") / fleet, 1.0)
    else:
        if "LinearStepSize" not in routing:
            raise ValidationException("TrafficRoutingConfiguration.LinearStepSize is required for LINEAR.")
        step = _instances(routing["LinearStepSize"], fleet, "LinearStepSize")
        shares = (*(k * step / fleet for k in range(1, math.ceil(fleet / step))), 1.0)
    timeout = float(policy.get("MaximumExecutionTimeoutInSeconds", 28800))
    waits = total_wait_s(policy, len(shares))
    if timeout <= waits:
        raise ValidationException(
            f"MaximumExecutionTimeoutInSeconds ({timeout:g}) must be larger than the total waiting time "
            f"of the deployment ({waits:g} seconds: WaitIntervalInSeconds "
            f"{float(routing.get('WaitIntervalInSeconds', 0)):g} after each of its {len(shares)} traffic "
            f"step(s) and TerminationWaitInSeconds {float(policy.get('TerminationWaitInSeconds', 0)):g})."
        )
    alarms = tuple(
        a["AlarmName"] for a in (deployment_config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])
    )
    return TrafficPlan(
        kind=kind,
        shares=shares,
        wait_s=float(routing.get("WaitIntervalInSeconds", 0)),
        termination_wait_s=float(policy.get("TerminationWaitInSeconds", 0)),
        max_execution_s=timeout,
        alarms=alarms,
    )


def cloudwatch_alarm_reader(client_factory: Callable[[], Any]) -> AlarmReader:
    """Alarm name -> (state, reason) from CloudWatch's DescribeAlarms."""

    def read(names: Sequence[str]) -> dict[str, tuple[str, str]]:
        if not names:
            return {}
        answer = client_factory().describe_alarms(AlarmNames=list(names))
        alarms = [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]
        return {
            a["AlarmName"]: (a["StateValue"], a.get("StateReason", ""))
            for a in alarms
            if a["AlarmName"] in names
        }

    return read


def missing_alarms(reader: AlarmReader, names: Sequence[str]) -> list[str]:
    found = reader(names)
    return [name for name in names if name not in found]


class BlueGreen:
    """Runs one blue/green update on the engine's fleets; `run` returns None when green took over,
    else the reason of the rollback (the engine's endpoint is then back on blue)."""

    def __init__(
        self,
        engine: EndpointEngine,
        key: str,
        blue: list[Deployment],
        green: Deployment,
        traffic: TrafficPlan,
        read_alarms: AlarmReader,
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self.engine = engine
        self.key = key
        self.blue = blue
        self.green = green
        self.traffic = traffic
        self.read_alarms = read_alarms
        self.poll_s = poll_s
        self.blue_shares = [d.share for d in blue]
        self.started = time.monotonic()

    async def run(self) -> str | None:
        self._route(0.0)
        # Recorded before the green fleet is persisted beside blue, so a restart tells green by its id:
        # both fleets may carry the same EndpointConfigName (an update to the config already in use).
        operation = self.engine.store.operations.get(self.key)
        if operation is not None:
            operation[NEW_FLEET] = self.green.id
        self.engine.deployments[self.key] = [*self.blue, self.green]
        for index, share in enumerate(self.traffic.shares):
            self._phase("ActivatingTraffic", f"Shifting {share:.0%} of the traffic to the new fleet")
            self._route(share)
            self._phase(
                "Baking",
                f"Baking step {index + 1} of {len(self.traffic.shares)} with {share:.0%} of the traffic "
                f"on the new fleet for {self.traffic.wait_s:g} s",
            )
            reason = await self._bake(self.traffic.wait_s)
            if reason is not None:
                await self._roll_back(reason)
                return reason
        if self.traffic.termination_wait_s > 0:
            self._phase(
                "Updating",
                f"Keeping the old fleet {self.traffic.termination_wait_s:g} s before terminating it",
            )
            await asyncio.sleep(self.traffic.termination_wait_s)
        return None

    def _route(self, share: float) -> None:
        total = sum(self.blue_shares) or 1.0
        for deployment, original in zip(self.blue, self.blue_shares, strict=True):
            deployment.share = (1.0 - share) * original / total
        self.green.share = share

    def _phase(self, status: str, message: str) -> None:
        operation = self.engine.store.operations.get(self.key)
        if operation is not None:
            operation["variant_status"] = [
                {"Status": status, "StatusMessage": message, "StartTime": time.time()}
            ]
        self.engine._persist_deployments(self.key)
        log.info("endpoint %s: %s: %s", self.key, status, message)

    async def _bake(self, seconds: float) -> str | None:
        """Watch the alarms for `seconds`; the rollback reason when one fires or time runs out."""
        deadline = time.monotonic() + seconds
        while True:
            states = await asyncio.to_thread(self.read_alarms, self.traffic.alarms)
            firing = [(name, state[1]) for name, state in states.items() if state[0] == ALARM_STATE]
            if firing:
                names = ", ".join(name for name, _ in firing)
                return f"Alarm(s) {names} went to ALARM during the deployment ({firing[0][1]})"
            if time.monotonic() - self.started > self.traffic.max_execution_s:
                return (
                    f"The deployment ran longer than MaximumExecutionTimeoutInSeconds "
                    f"({self.traffic.max_execution_s:g} s)"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(self.poll_s, left))

    async def _roll_back(self, reason: str) -> None:
        self.engine._set(self.key, EndpointStatus="RollingBack")
        self._phase("ActivatingTraffic", "Rolling back: all traffic returns to the old fleet")
        self._route(0.0)
        self.engine.deployments[self.key] = list(self.blue)
        for deployment, original in zip(self.blue, self.blue_shares, strict=True):
            deployment.share = original
        self.engine._persist_deployments(self.key)
        await self.engine._remove_containers(self.green.container_ids())
        log.warning("endpoint %s rolled back: %s", self.key, reason)


_cloudwatch: Any = None


def _default_reader() -> AlarmReader:
    def client() -> Any:
        global _cloudwatch
        if _cloudwatch is None:
            from emulator.cloudwatch.monitoring import cloudwatch_client

            _cloudwatch = cloudwatch_client()
        return _cloudwatch

    return cloudwatch_alarm_reader(client)


async def validate(deployment_config: Record, config: Record, read_alarms: AlarmReader | None = None) -> None:
    """Refuse, as UpdateEndpoint does, a DeploymentConfig that cannot run or names missing alarms."""
    traffic = plan(deployment_config, config)
    missing = await asyncio.to_thread(missing_alarms, read_alarms or _default_reader(), traffic.alarms)
    if missing:
        raise ValidationException(
            f"The alarm(s) {', '.join(missing)} in AutoRollbackConfiguration do not exist in CloudWatch."
        )


async def run_update(
    engine: EndpointEngine,
    key: str,
    blue: list[Deployment],
    green: Deployment,
    operation: Record,
    read_alarms: AlarmReader | None = None,
) -> bool:
    """Shift traffic from `blue` to the freshly deployed `green` per the operation's DeploymentConfig.

    True: green serves everything and the update completes as usual. False: it was rolled back; the
    endpoint is InService on its old config with the reason in FailureReason and the operation ended.
    """
    config = operation["config"]
    traffic = plan(operation["deployment_config"], config)
    runner = BlueGreen(engine, key, blue, green, traffic, read_alarms or _default_reader())
    reason = await runner.run()
    if reason is None:
        return True
    record = engine.store.endpoints[key]
    engine.store.operations.pop(key, None)
    engine._set(
        key,
        EndpointStatus="InService",
        LastDeploymentConfig=operation["deployment_config"],
        FailureReason=f"Failed to update endpoint to endpoint config {config['EndpointConfigName']}, "
        f"rolled back to {record['EndpointConfigName']}: {reason}",
    )
    engine._prune_model_data()
    return False
