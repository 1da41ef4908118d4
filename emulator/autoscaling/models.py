"""Application Auto Scaling's acting side: targets and policies from moto, activities on the endpoints.

moto 5.2.5 serves the API's storage (RegisterScalableTarget, PutScalingPolicy, their Describe and
Delete calls), and that stays the source of truth: a client that talks to moto directly is acted on
too. What moto does not do, and this module does:

* it creates no CloudWatch alarms for a SageMaker target tracking policy (only for DynamoDB and ECS, and
  with made-up thresholds) and lists none: `ensure_tracking_alarms` writes them through moto's own
  CloudWatch API (PutMetricAlarm) as AWS names and shapes them, and deletes them (DeleteAlarms) when
  their policy is gone;
* it never scales anything and records no activities (it has no DescribeScalingActivities at all):
  `AutoScaler` watches the alarms that name a policy in their AlarmActions and runs scaling activities
  through UpdateEndpointWeightsAndCapacities on the emulator's endpoints, keeping each activity with
  its cause and status (persisted under the state folder) for DescribeScalingActivities;
* it stores SuspendedState, MinCapacity and MaxCapacity but honours none of them: activities do;
* it stores scheduled actions and never runs them: each round runs those whose time came
  (schedules.py reads their at/rate/cron schedules), setting the target's capacity bounds.

Only targets whose endpoint this emulator runs are acted on (a second emulator sharing moto acts on
its own). Cooldowns, re-invocations and the metric values policies read follow the emulator's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config

from emulator import settings
from emulator.autoscaling import policies, schedules
from emulator.autoscaling.policies import Candidate, PolicyMemory
from emulator.clock import Clock
from emulator.sagemaker.exceptions import AwsError

log = logging.getLogger("emulator.autoscaling")

MAX_ACTIVITIES = 5000
TRACKING_PREFIX = "TargetTracking-endpoint/"


# --- what the acting side needs of the rest of the emulator (server.py wires the real ones) -----------------


class VariantStateLike(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def desired(self) -> int: ...
    @property
    def current(self) -> int: ...
    @property
    def asynchronous(self) -> bool: ...
    @property
    def serverless(self) -> bool: ...
    @property
    def failure_reason(self) -> str | None: ...


class Hosting(Protocol):
    """The endpoints (emulator/sagemaker/capacity.py): read a variant, set its DesiredInstanceCount."""

    def variant(self, endpoint_name: str, variant_name: str) -> VariantStateLike | None: ...
    def endpoint_exists(self, endpoint_name: str) -> bool: ...
    async def set_desired_instances(self, endpoint_name: str, variant_name: str, count: int) -> None: ...


class MetricReader(Protocol):
    """The alarm evaluator (emulator/cloudwatch/alarms.py): an alarm's newest datapoint."""

    def latest_value(self, alarm: Mapping[str, Any], now: float | None = None) -> float | None: ...


# --- moto ---------------------------------------------------------------------------------------------------


class Moto:
    """Application Auto Scaling and CloudWatch at $AWS_ENDPOINT_URL (moto), never the emulator itself.

    The emulator's own environment points AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING at the emulator (the
    clients' route); reading moto through it would loop back here, so the URL is given explicitly.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ.get("AWS_ENDPOINT_URL") or f"http://{settings.HOST}:{settings.MOTO_PORT}"
        session = boto3.session.Session(region_name=settings.region())
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        self.autoscaling = session.client("application-autoscaling", endpoint_url=self.url, config=config)
        self.cloudwatch = session.client("cloudwatch", endpoint_url=self.url, config=config)

    def targets(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        paginator = self.autoscaling.get_paginator("describe_scalable_targets")
        for page in paginator.paginate(ServiceNamespace=policies.NAMESPACE):
            found.extend(
                t for t in page["ScalableTargets"] if t.get("ScalableDimension") == policies.DIMENSION
            )
        return found

    def policies(self, resource_id: str | None = None) -> list[dict[str, Any]]:
        return self._described("describe_scaling_policies", "ScalingPolicies", resource_id)

    def _described(self, operation: str, key: str, resource_id: str | None) -> list[dict[str, Any]]:
        """Every page of a Describe call's `key` list: SageMaker variants', or the one at `resource_id`."""
        request: dict[str, Any] = {"ServiceNamespace": policies.NAMESPACE}
        if resource_id is not None:
            request.update(ResourceId=resource_id, ScalableDimension=policies.DIMENSION)
        found: list[dict[str, Any]] = []
        for page in self.autoscaling.get_paginator(operation).paginate(**request):
            found.extend(
                item
                for item in page[key]
                if item.get("ScalableDimension") == policies.DIMENSION
                and (resource_id is None or item["ResourceId"] == resource_id)
            )
        return found

    def alarms(self, **request: Any) -> list[dict[str, Any]]:
        return list(
            self.cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm"], **request).get("MetricAlarms", [])
        )

    def put_alarm(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.cloudwatch.put_metric_alarm(**request)
        return self.alarms(AlarmNames=[request["AlarmName"]])[0]

    def delete_alarms(self, names: Sequence[str]) -> None:
        for first in range(0, len(names), 100):
            self.cloudwatch.delete_alarms(AlarmNames=list(names[first : first + 100]))

    def scheduled_actions(self, resource_id: str | None = None) -> list[dict[str, Any]]:
        return self._described("describe_scheduled_actions", "ScheduledActions", resource_id)

    def set_bounds(self, resource_id: str, low: int, high: int) -> None:
        self.autoscaling.register_scalable_target(
            ServiceNamespace=policies.NAMESPACE,
            ResourceId=resource_id,
            ScalableDimension=policies.DIMENSION,
            MinCapacity=low,
            MaxCapacity=high,
        )

    def delete_scheduled_action(self, action: Mapping[str, Any]) -> None:
        self.autoscaling.delete_scheduled_action(
            ScheduledActionName=action["ScheduledActionName"],
            ServiceNamespace=action["ServiceNamespace"],
            ResourceId=action["ResourceId"],
            ScalableDimension=action["ScalableDimension"],
        )

    def delete_policy(self, policy: Mapping[str, Any]) -> None:
        self.autoscaling.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=policy["ServiceNamespace"],
            ResourceId=policy["ResourceId"],
            ScalableDimension=policy["ScalableDimension"],
        )


# --- activities ------------------------------------------------------------------------------------------


@dataclass
class Activity:
    """One scaling activity, as DescribeScalingActivities lists it (plus the capacity it sets)."""

    ActivityId: str
    ServiceNamespace: str
    ResourceId: str
    ScalableDimension: str
    Description: str
    Cause: str
    StartTime: float
    StatusCode: str
    target: int | None  # the desired instance count it sets; None for a scheduled action's new bounds
    EndTime: float | None = None
    StatusMessage: str | None = None
    Details: str | None = None

    def api(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "target"}
        return out


@dataclass
class _TargetMemory:
    endpoint: str
    variant: str
    bounds: tuple[int, int] | None = None
    in_progress: Activity | None = None


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or 0.0)


def _reason_value(alarm: Mapping[str, Any]) -> float | None:
    """The newest datapoint the alarm's last state change saw (CloudWatch hands it to the policy)."""
    try:
        data = json.loads(alarm.get("StateReasonData") or "{}")
    except ValueError:
        return None
    points = data.get("recentDatapoints") or []
    return float(points[-1]) if points else None


class AutoScaler:
    def __init__(
        self,
        hosting: Hosting,
        metrics: MetricReader,
        clock: Clock,
        folder: Path,
        moto: Moto | None = None,
    ) -> None:
        self.hosting = hosting
        self.metrics = metrics
        self.clock = clock
        self.moto = moto or Moto()
        self.path = folder / "autoscaling-activities.json"
        self.activities: list[Activity] = self._load()
        self._targets: dict[str, _TargetMemory] = {}
        # An activity a restart interrupted: the endpoint resumes its update, and it is followed to its end.
        for activity in self.activities:
            parsed = policies.parse_resource_id(activity.ResourceId)
            if activity.StatusCode == "InProgress" and parsed is not None:
                self._targets[activity.ResourceId] = _TargetMemory(*parsed, in_progress=activity)
        self._memory: dict[str, PolicyMemory] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticks = 0
        self.tick_s = max(0.25, clock.real(1.0))
        # Scheduled actions run for the times that pass from one round to the next, from now on.
        self._schedules_checked = clock.time()

    # -- activities -----------------------------------------------------------------------------------------

    def _load(self) -> list[Activity]:
        if not self.path.exists():
            return []
        try:
            return [Activity(**item) for item in json.loads(self.path.read_text())]
        except (ValueError, TypeError) as error:
            log.warning("ignoring unreadable %s: %s", self.path, error)
            return []

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps([asdict(a) for a in self.activities[-MAX_ACTIVITIES:]]))
        os.replace(tmp, self.path)

    def describe(
        self, namespace: str, resource_id: str | None = None, dimension: str | None = None
    ) -> list[dict[str, Any]]:
        """Activities newest first, as DescribeScalingActivities lists them."""
        chosen = [
            a
            for a in self.activities
            if a.ServiceNamespace == namespace
            and (resource_id is None or a.ResourceId == resource_id)
            and (dimension is None or a.ScalableDimension == dimension)
        ]
        return [a.api() for a in sorted(chosen, key=lambda a: a.StartTime, reverse=True)]

    # -- target tracking's alarms ------------------------------------------------------------------------

    def registered_variants(self, endpoint_name: str) -> set[str]:
        """The endpoint's variants registered as scalable targets (blocking: call it from a thread)."""
        parsed = (policies.parse_resource_id(str(t["ResourceId"])) for t in self.moto.targets())
        return {variant for endpoint, variant in filter(None, parsed) if endpoint == endpoint_name}

    def ensure_tracking_alarms(self, policy: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Create (or re-create, when the policy changed) a target tracking policy's alarms; return them.

        Blocking (moto over HTTP): call it from a thread.
        """
        parsed = policies.parse_resource_id(str(policy["ResourceId"]))
        if parsed is None or policy.get("PolicyType") != "TargetTrackingScaling":
            return []
        arn = str(policy["PolicyARN"])
        existing = [a for a in self.moto.alarms(ActionPrefix=f"{arn}:createdBy/")]
        token = None
        if existing:
            token = existing[0]["AlarmActions"][0].split(":createdBy/", 1)[1]
        wanted = policies.tracking_alarms(policy, *parsed, token=token)
        kept: list[dict[str, Any]] = []
        stale = list(existing)
        for request in wanted:
            high = policies.is_high(request)
            same = next(
                (a for a in stale if policies.is_high(a) == high and policies.alarm_matches(a, request)), None
            )
            if same is not None:
                stale.remove(same)
                kept.append(same)
            else:
                kept.append(self.moto.put_alarm(request))
        if stale:
            self.moto.delete_alarms([a["AlarmName"] for a in stale])
        return kept

    def delete_tracking_alarms(self, policy_arn: str) -> list[str]:
        """Delete the alarms a target tracking policy made (blocking); their names."""
        names = [a["AlarmName"] for a in self.moto.alarms(ActionPrefix=f"{policy_arn}:createdBy/")]
        if names:
            self.moto.delete_alarms(names)
        return names

    # -- the loop ----------------------------------------------------------------------------------------

    def poke(self) -> None:
        """Look at the alarms now (thread-safe: the alarm evaluator calls it from its thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("autoscaling round failed; trying again in %.2f s", self.tick_s)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)

    async def tick(self) -> None:
        """One round: follow activities in progress, keep target tracking alarms, invoke due policies."""
        self._ticks += 1
        # The window of time whose scheduled actions this round runs (kept moving when nothing is registered).
        window = (self._schedules_checked, self.clock.time())
        self._schedules_checked = window[1]
        targets = await asyncio.to_thread(self.moto.targets)
        ours = []
        for target in targets:
            parsed = policies.parse_resource_id(str(target["ResourceId"]))
            if parsed is not None and self.hosting.endpoint_exists(parsed[0]):
                ours.append((target, parsed))
        cleanup = self._ticks % 20 == 1
        if not ours and not cleanup and not self._targets:
            return
        all_policies = await asyncio.to_thread(self.moto.policies)
        if cleanup:
            await self._delete_orphan_alarms(all_policies)
        # An activity runs to its end even when its target was deregistered meanwhile, as on AWS.
        registered = {str(target["ResourceId"]) for target, _ in ours}
        for rid, memory in list(self._targets.items()):
            if rid in registered or memory.in_progress is None:
                continue
            if self._follow(memory.in_progress, self.hosting.variant(memory.endpoint, memory.variant)):
                del self._targets[rid]
        if not ours:
            return
        await self._run_scheduled_actions(ours, *window)
        firing = await asyncio.to_thread(self.moto.alarms, StateValue="ALARM")
        tracking = await asyncio.to_thread(self.moto.alarms, AlarmNamePrefix=TRACKING_PREFIX)
        for target, (endpoint, variant) in ours:
            rid = str(target["ResourceId"])
            mine = [p for p in all_policies if p["ResourceId"] == rid]
            for policy in mine:
                if policy.get("PolicyType") == "TargetTrackingScaling" and not any(
                    policies.acts_for(a, policy["PolicyARN"]) for a in tracking
                ):
                    await asyncio.to_thread(self.ensure_tracking_alarms, policy)
            await self._scale_target(target, endpoint, variant, mine, firing)

    async def _run_scheduled_actions(
        self, ours: Sequence[tuple[Mapping[str, Any], tuple[str, str]]], after: float, now: float
    ) -> None:
        """Apply the scheduled actions whose time came in (after, now]: each sets its target's MinCapacity
        and MaxCapacity (the next round scales the variant into them), as one activity."""
        targets = {str(target["ResourceId"]): target for target, _ in ours}
        for action in await asyncio.to_thread(self.moto.scheduled_actions):
            target = targets.get(str(action["ResourceId"]))
            if target is None or (target.get("SuspendedState") or {}).get("ScheduledScalingSuspended"):
                continue
            start, end = _epoch(action.get("StartTime")), _epoch(action.get("EndTime"))
            created = _epoch(action.get("CreationTime"))
            try:
                moment = schedules.due(
                    schedules.parse(str(action["Schedule"])),
                    after=max(after, created),
                    until=now,
                    timezone=action.get("Timezone"),
                    anchor=start or created or now,
                    real=self.clock.real,
                )
            except schedules.ScheduleError as error:
                log.warning("scheduled action %s not run: %s", action["ScheduledActionName"], error)
                continue
            if moment is None or (start and moment < start) or (end and moment > end):
                continue
            await self._apply_scheduled_action(target, action)

    async def _apply_scheduled_action(self, target: Mapping[str, Any], action: Mapping[str, Any]) -> None:
        rid = str(target["ResourceId"])
        wanted = action.get("ScalableTargetAction") or {}
        low = int(wanted.get("MinCapacity", target["MinCapacity"]))
        high = int(wanted.get("MaxCapacity", target["MaxCapacity"]))
        activity = Activity(
            ActivityId=str(uuid.uuid4()),
            ServiceNamespace=policies.NAMESPACE,
            ResourceId=rid,
            ScalableDimension=policies.DIMENSION,
            Description=f"Setting min capacity to {low} and max capacity to {high}",
            Cause=f"scheduled action name {action['ScheduledActionName']} was triggered",
            StartTime=self.clock.time(),
            StatusCode="InProgress",
            target=None,
        )
        self.activities.append(activity)
        if low > high:
            self._finish(
                activity,
                "Failed",
                f"Failed to set min capacity to {low} and max capacity to {high}. Reason: the min capacity "
                "is above the max capacity.",
            )
            return
        try:
            await asyncio.to_thread(self.moto.set_bounds, rid, low, high)
        except Exception as error:  # moto unreachable or refusing: the activity says so, the loop goes on
            self._finish(
                activity,
                "Failed",
                f"Failed to set min capacity to {low} and max capacity to {high}. Reason: {error}",
            )
            return
        self._finish(
            activity, "Successful", f"Successfully set min capacity to {low} and max capacity to {high}"
        )
        self.poke()

    async def _delete_orphan_alarms(self, all_policies: Sequence[Mapping[str, Any]]) -> None:
        arns = {str(p["PolicyARN"]) for p in all_policies}
        tracking = await asyncio.to_thread(self.moto.alarms, AlarmNamePrefix=TRACKING_PREFIX)
        orphans = [
            a["AlarmName"]
            for a in tracking
            if a.get("AlarmActions")
            and ":createdBy/" in a["AlarmActions"][0]
            and a["AlarmActions"][0].split(":createdBy/", 1)[0] not in arns
        ]
        if orphans:
            log.info("deleting %d target tracking alarm(s) whose policy is gone", len(orphans))
            await asyncio.to_thread(self.moto.delete_alarms, orphans)

    async def _scale_target(
        self,
        target: Mapping[str, Any],
        endpoint: str,
        variant: str,
        target_policies: Sequence[Mapping[str, Any]],
        firing: Sequence[Mapping[str, Any]],
    ) -> None:
        rid = str(target["ResourceId"])
        memory = self._targets.setdefault(rid, _TargetMemory(endpoint, variant))
        state = self.hosting.variant(endpoint, variant)
        if memory.in_progress is not None and not self._follow(memory.in_progress, state):
            return
        memory.in_progress = None
        if state is None or state.status != "InService" or state.serverless:
            return
        now = self.clock.time()
        low, high = int(target["MinCapacity"]), int(target["MaxCapacity"])
        if memory.bounds != (low, high):
            memory.bounds = (low, high)
            if state.desired < low:
                await self._start(memory, rid, endpoint, variant, low, f"minimum capacity was set to {low}")
                return
            if state.desired > high:
                await self._start(memory, rid, endpoint, variant, high, f"maximum capacity was set to {high}")
                return
        suspended = target.get("SuspendedState") or {}
        candidates: list[Candidate] = []
        for policy in target_policies:
            arn = str(policy["PolicyARN"])
            remembered = self._memory.setdefault(arn, PolicyMemory())
            out_cooldown, in_cooldown = (self.clock.real(s) for s in policies.cooldowns(policy))
            policies.expire(remembered, now, out_cooldown)
            for alarm in firing:
                if not policies.acts_for(alarm, arn) or alarm.get("ActionsEnabled") is False:
                    continue
                name = str(alarm["AlarmName"])
                since = _epoch(alarm.get("StateUpdatedTimestamp"))
                if not policies.due(remembered, name, since, now, self.clock.real(policies.REINVOKE_AFTER_S)):
                    continue
                remembered.invoked[name] = now
                value = await asyncio.to_thread(self.metrics.latest_value, alarm, now)
                if value is None:
                    value = _reason_value(alarm)
                if value is None:
                    continue
                candidate = policies.policy_candidate(
                    policy, alarm, value, state.desired, remembered, now, (out_cooldown, in_cooldown)
                )
                if candidate is None:
                    continue
                if candidate.scale_out and suspended.get("DynamicScalingOutSuspended"):
                    continue
                if not candidate.scale_out and suspended.get("DynamicScalingInSuspended"):
                    continue
                candidates.append(candidate)
        winner = policies.choose(candidates, state.desired, low, high)
        if winner is None:
            return
        policies.remember(self._memory[winner.policy_arn], winner, state.desired, now)
        cause = f"monitor alarm {winner.alarm_name} in state ALARM triggered policy {winner.policy_name}"
        await self._start(memory, rid, endpoint, variant, winner.capacity, cause)

    async def _start(
        self, memory: _TargetMemory, rid: str, endpoint: str, variant: str, capacity: int, cause: str
    ) -> None:
        activity = Activity(
            ActivityId=str(uuid.uuid4()),
            ServiceNamespace=policies.NAMESPACE,
            ResourceId=rid,
            ScalableDimension=policies.DIMENSION,
            Description=f"Setting desired instance count to {capacity}.",
            Cause=cause,
            StartTime=self.clock.time(),
            StatusCode="InProgress",
            target=capacity,
        )
        self.activities.append(activity)
        log.info("%s: %s (%s)", rid, activity.Description, cause)
        try:
            await self.hosting.set_desired_instances(endpoint, variant, capacity)
        except AwsError as error:
            self._finish(
                activity,
                "Failed",
                f"Failed to set desired instance count to {capacity}. Reason: {error.message}",
            )
            return
        memory.in_progress = activity
        self._save()

    def _follow(self, activity: Activity, state: VariantStateLike | None) -> bool:
        """Settle an activity in progress from the endpoint's state; True once it ended."""
        if state is None:
            self._finish(
                activity,
                "Failed",
                f"Failed to set desired instance count to {activity.target}. Reason: the endpoint or its "
                "variant no longer exists.",
            )
            return True
        if state.status in ("Updating", "SystemUpdating", "Creating"):
            return False
        if (
            state.status == "InService"
            and state.desired == activity.target
            and state.current == activity.target
        ):
            self._finish(
                activity,
                "Successful",
                f"Successfully set desired instance count to {activity.target}. "
                "Change successfully fulfilled by sagemaker.",
            )
        else:
            reason = (
                state.failure_reason or f"the endpoint is {state.status} with {state.current} instance(s)"
            )
            self._finish(
                activity,
                "Failed",
                f"Failed to set desired instance count to {activity.target}. Reason: {reason}",
            )
        return True

    def _finish(self, activity: Activity, status: str, message: str) -> None:
        activity.StatusCode = status
        activity.StatusMessage = message
        activity.EndTime = self.clock.time()
        log.info("%s: %s", activity.ResourceId, message)
        self._save()

    def forget(self, resource_id: str) -> None:
        """A deregistered target: its bounds and cooldowns go; an activity in progress is still followed."""
        memory = self._targets.get(resource_id)
        if memory is not None and memory.in_progress is None:
            del self._targets[resource_id]
        elif memory is not None:
            memory.bounds = None
