"""The release's own CloudWatch alarms on the new model's traffic, and reading alarm states.

Two alarms guard every traffic shift: Invocation5XXErrors (Sum per period) above
`rollout.alarms.max_5xx_errors`, and ModelLatency p99 above `rollout.alarms.max_p99_latency_ms`, both on
the new fleet: the variant serving the new model within the endpoint config that holds it
(EndpointName, VariantName and EndpointConfigName). During a blue/green update the old and the new fleet
share the variant name and SageMaker publishes each fleet's metrics with its EndpointConfigName: an alarm
on the variant alone would watch both, and one error of the old model would roll the new one back.
Missing data is not breaching: no traffic means no errors. The
config's `extra_alarm_names` (the team's own alarms) must already exist; SageMaker's
AutoRollbackConfiguration refuses alarms that do not.

Each alarm this release creates is recorded in the ledger as "cloudwatch:alarm" (tasks/lifecycle/unwind.py
deletes it when the release fails) and tagged `sagemaker-release:purpose=rollout-guard`, so a later
successful release of the same endpoint can find and remove the guards of the releases before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.config import ReleaseConfig, naming
from tasks.core import aws
from tasks.core.errors import AlarmsAlreadyFiring, ConfigError, WaitTimeout
from tasks.core.logs import run_logger
from tasks.core.purpose import PURPOSE_KEY, ROLLOUT_GUARD, purpose_tag
from tasks.core.waiting import Clock, poll_until
from tasks.lifecycle.kinds import CLOUDWATCH_ALARM
from tasks.lifecycle.ledger import Ledger

NAMESPACE = "AWS/SageMaker"
ALARM = "ALARM"
UNCHECKED = "Unchecked"
# SageMaker's AutoRollbackConfiguration takes at most 10 alarms.
MAX_ROLLBACK_ALARMS = 10
_DESCRIBE_BATCH = 100


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str
    reason: str

    @property
    def firing(self) -> bool:
        return self.state == ALARM


def fleet_dimensions(endpoint: str, variant: str, config_name: str | None) -> list[dict[str, str]]:
    """The dimensions of one fleet's invocation metrics: its variant within its endpoint config (None:
    the variant's series, every fleet that served it mixed).

    During a blue/green update both fleets share the variant name: only EndpointConfigName keeps the old
    model's traffic out of the new one's alarms and figures."""
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    if config_name:
        dimensions.append({"Name": "EndpointConfigName", "Value": config_name})
    return dimensions


def guard_alarm_requests(
    config: ReleaseConfig, release_id: str, *, endpoint: str, variant: str, config_name: str
) -> list[dict[str, Any]]:
    """PutMetricAlarm requests of the release's two guard alarms on `variant` of `endpoint` as served by
    endpoint config `config_name` (the new fleet)."""
    alarms = config.rollout.alarms
    dimensions = fleet_dimensions(endpoint, variant, config_name)
    tags = [*naming.tags(config, release_id), purpose_tag(ROLLOUT_GUARD)]
    common: dict[str, Any] = {
        "Namespace": NAMESPACE,
        "Dimensions": dimensions,
        "Period": alarms.period_s,
        "EvaluationPeriods": alarms.evaluation_periods,
        "DatapointsToAlarm": alarms.datapoints_to_alarm,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": False,
        "Tags": tags,
    }
    return [
        {
            "AlarmName": naming.alarm_name(config, release_id, "5xx"),
            "AlarmDescription": f"Release {release_id}: server errors of the new model on "
            f"{endpoint}/{variant} ({config_name}) above {alarms.max_5xx_errors:g} per {alarms.period_s} s "
            "roll the release back",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "Threshold": float(alarms.max_5xx_errors),
            **common,
        },
        {
            "AlarmName": naming.alarm_name(config, release_id, "p99-latency"),
            "AlarmDescription": f"Release {release_id}: p99 model latency of the new model on "
            f"{endpoint}/{variant} ({config_name}) above {alarms.max_p99_latency_ms:g} ms rolls the "
            "release back",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            # ModelLatency is in microseconds; few samples still judge the model (a release guard
            # should rather roll back on a slow first minute than wait for a thousand requests).
            "Threshold": float(alarms.max_p99_latency_ms) * 1000.0,
            "EvaluateLowSampleCountPercentile": "evaluate",
            **common,
        },
    ]


def create_guard_alarms(
    config: ReleaseConfig,
    release_id: str,
    *,
    endpoint: str,
    variant: str,
    config_name: str,
    ledger: Ledger,
) -> list[str]:
    """Create (or re-point) the guard alarms; each new one is recorded in the ledger. Returns their names."""
    cloudwatch = aws.client("cloudwatch")
    names = []
    requests = guard_alarm_requests(
        config, release_id, endpoint=endpoint, variant=variant, config_name=config_name
    )
    for request in requests:
        name = str(request["AlarmName"])
        # Intent first: a put whose answer is lost still leaves the alarm where an unwind looks.
        entry = None
        if not ledger.holds(CLOUDWATCH_ALARM, name):
            entry = ledger.intend(CLOUDWATCH_ALARM, name, purpose=ROLLOUT_GUARD, endpoint=endpoint)
        cloudwatch.put_metric_alarm(**request)
        if entry is not None:
            ledger.confirm(entry)
        names.append(name)
    run_logger().info("guard alarms on %s/%s (%s): %s", endpoint, variant, config_name, ", ".join(names))
    return names


def retarget_guard_alarms(
    config: ReleaseConfig, release_id: str, *, endpoint: str, variant: str, config_name: str
) -> list[str]:
    """Point the release's guard alarms at the fleet that serves the model once the shift is done."""
    cloudwatch = aws.client("cloudwatch")
    requests = guard_alarm_requests(
        config, release_id, endpoint=endpoint, variant=variant, config_name=config_name
    )
    for request in requests:
        cloudwatch.put_metric_alarm(**request)
    return [str(r["AlarmName"]) for r in requests]


def rollback_alarm_names(config: ReleaseConfig, guard_names: Sequence[str]) -> list[str]:
    """Guard alarms plus the config's extra alarms, refused beyond SageMaker's limit of 10."""
    names = list(dict.fromkeys([*guard_names, *config.rollout.alarms.extra_alarm_names]))
    if len(names) > MAX_ROLLBACK_ALARMS:
        raise ConfigError(
            "rollout.alarms.extra_alarm_names",
            f"{len(names)} rollback alarms ({len(guard_names)} of the release's own plus "
            f"{len(config.rollout.alarms.extra_alarm_names)} extra); SageMaker takes at most "
            f"{MAX_ROLLBACK_ALARMS}",
            f"name at most {MAX_ROLLBACK_ALARMS - len(guard_names)} extra alarms",
        )
    return names


def missing_alarms(names: Iterable[str]) -> list[str]:
    """The alarms among `names` that do not exist."""
    wanted = list(dict.fromkeys(names))
    found = {state.name for state in alarm_states(wanted)}
    return [name for name in wanted if name not in found]


def require_extra_alarms(config: ReleaseConfig) -> None:
    """ConfigError when an alarm named in rollout.alarms.extra_alarm_names does not exist."""
    missing = missing_alarms(config.rollout.alarms.extra_alarm_names)
    if missing:
        raise ConfigError(
            "rollout.alarms.extra_alarm_names",
            f"alarm(s) {', '.join(missing)} do not exist in CloudWatch",
            "create them first (SageMaker's auto-rollback accepts only existing alarms) or remove them",
        )


def alarm_states(names: Sequence[str]) -> list[AlarmState]:
    """Current state of each existing alarm among `names` (metric and composite alarms)."""
    cloudwatch = aws.client("cloudwatch")
    states = []
    unique = list(dict.fromkeys(names))
    for start in range(0, len(unique), _DESCRIBE_BATCH):
        batch = unique[start : start + _DESCRIBE_BATCH]
        answer = cloudwatch.describe_alarms(AlarmNames=batch, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]:
            if alarm["AlarmName"] in batch:
                states.append(
                    AlarmState(
                        str(alarm["AlarmName"]), str(alarm["StateValue"]), str(alarm.get("StateReason", ""))
                    )
                )
    return states


def judged(state: AlarmState) -> bool:
    """Evaluated at least once since it was created (CloudWatch's first reason is "Unchecked: ...")."""
    return not state.reason.startswith(UNCHECKED)


def await_quiet(
    names: Sequence[str], *, endpoint: str, timeout_s: float, interval_s: float, clock: Clock | None = None
) -> None:
    """Wait until every alarm in `names` has been judged and none is in ALARM; AlarmsAlreadyFiring
    when one still is after `timeout_s`, before anything about the endpoint changes.

    Extra alarms may watch the variant the old fleet reports under too, and a new alarm judges the
    latest data it finds: right after a release that rolled back, that is the rolled-back release's errors.
    SageMaker's auto-rollback acts the moment an alarm is in ALARM, so the update would be rolled back
    for a fault that is not this release's. An alarm never judged within the limit does not block.
    """

    def settled(states: list[AlarmState]) -> bool:
        return all(judged(s) and not s.firing for s in states)

    try:
        poll_until(
            lambda: alarm_states(names),
            is_done=settled,
            failure_reason=lambda states: None,
            status_of=lambda states: ", ".join(f"{s.name} {s.state}" for s in states),
            resource=f"rollback alarms of endpoint {endpoint}",
            timeout_s=timeout_s,
            interval_s=interval_s,
            clock=clock,
        )
    except WaitTimeout:
        states = alarm_states(names)
        still = [s for s in states if s.firing]
        if still:
            raise AlarmsAlreadyFiring(endpoint, [s.name for s in still], [s.reason for s in still]) from None
        unjudged = [s.name for s in states if not judged(s)]
        run_logger().warning(
            "alarms %s were not evaluated within %.0f s; going ahead", ", ".join(unjudged), timeout_s
        )


def firing(names: Sequence[str]) -> list[AlarmState]:
    """The alarms among `names` that are in ALARM now."""
    return [state for state in alarm_states(names) if state.firing]


def delete_alarms(names: Sequence[str]) -> None:
    """Delete alarms (missing ones are fine: DeleteAlarms ignores them)."""
    cloudwatch = aws.client("cloudwatch")
    unique = list(dict.fromkeys(names))
    for start in range(0, len(unique), _DESCRIBE_BATCH):
        cloudwatch.delete_alarms(AlarmNames=unique[start : start + _DESCRIBE_BATCH])


def earlier_guard_alarms(config: ReleaseConfig, release_id: str) -> list[str]:
    """Guard alarms that earlier releases of this endpoint left (replaced once this release succeeded)."""
    cloudwatch = aws.client("cloudwatch")
    endpoint = config.endpoint.name
    found = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=f"{endpoint}-", AlarmTypes=["MetricAlarm"]
    ):
        for alarm in page.get("MetricAlarms", []):
            tags = {
                t["Key"]: t["Value"]
                for t in cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", [])
            }
            if (
                tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE
                and tags.get(naming.ENDPOINT_KEY) == endpoint
                and tags.get(PURPOSE_KEY) == ROLLOUT_GUARD
                and tags.get(naming.RELEASE_ID_KEY) != release_id
            ):
                found.append(str(alarm["AlarmName"]))
    return found


def replace_earlier_guard_alarms(config: ReleaseConfig, release_id: str) -> list[str]:
    """Delete the guard alarms of earlier releases of the endpoint; returns what was deleted."""
    names = earlier_guard_alarms(config, release_id)
    if names:
        delete_alarms(names)
        run_logger().info("removed guard alarms of earlier releases: %s", ", ".join(names))
    return names
