"""Application Auto Scaling acts on the local stack, driven by plain boto3 as a user's script would.

API-only checks run on the shared stack (its time runs at AWS's pace); the ones that wait for alarms run
a private emulator at time scale 60, where a metric minute lasts one second and a 300 s cooldown five.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tasks.core import aws as aws_clients
from tasks.sagemaker import scaling
from tests.emulator.emulator_support import Aws, PrivateEmulator, Resources, make_clients
from tests.emulator.scaling_support import (
    DIMENSION,
    Traffic,
    activities,
    clients,
    deregister_all,
    poll,
    settled,
    variant,
)
from tests.emulator.test_response_shapes import shape_problems

pytestmark = [pytest.mark.stack, pytest.mark.docker]

FAST = "60"
INVOCATIONS = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}


def _endpoint(resources: Resources, image: str, instances: int = 1, **environment: str) -> str:
    model = resources.model(image, container={"Environment": environment} if environment else {})
    endpoint = resources.endpoint(resources.single(model, instances=instances))
    resources.wait_status(endpoint, "InService")
    return endpoint


def _register(autoscaling: Any, endpoint: str, low: int, high: int, **extra: Any) -> str:
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        MinCapacity=low,
        MaxCapacity=high,
        **extra,
    )
    return resource_id


def _tracking(
    autoscaling: Any, resource_id: str, target: float, name: str = "invocations", **config: Any
) -> Any:
    return autoscaling.put_scaling_policy(
        PolicyName=name,
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": target,
            "PredefinedMetricSpecification": INVOCATIONS,
            **config,
        },
    )


def _tracking_alarms(cloudwatch: Any, resource_id: str) -> dict[str, dict[str, Any]]:
    found = cloudwatch.describe_alarms(AlarmNamePrefix=f"TargetTracking-{resource_id}-")["MetricAlarms"]
    return {("high" if "-AlarmHigh-" in a["AlarmName"] else "low"): a for a in found}


class AutoscalingWire:
    """Every raw Application Auto Scaling answer, checked against botocore's output shapes."""

    def __init__(self, client: Any) -> None:
        self.model = client.meta.service_model
        self.seen: list[tuple[str, int, dict[str, Any]]] = []
        client.meta.events.register("before-parse.application-autoscaling.*", self._record)

    def _record(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        self.seen.append(
            (operation_model.name, response_dict["status_code"], json.loads(response_dict["body"] or b"{}"))
        )

    def problems(self) -> list[str]:
        found = []
        for operation, status, body in self.seen:
            if status != 200:
                if not body.get("__type") or not (body.get("message") or body.get("Message")):
                    found.append(f"{operation} error {status} lacks __type/message: {body}")
                continue
            shape = self.model.operation_model(operation).output_shape
            if shape is not None:
                found += [f"{operation} {p}" for p in shape_problems(shape, body)]
        return found


# --- the API, on the shared stack -----------------------------------------------------------------------


@pytest.fixture
def shared_targets(stack: dict[str, str], resources: Resources) -> Iterator[None]:
    """Targets a test registers on the shared stack leave with their policies and alarms."""
    yield
    deregister_all(clients(stack)[0], resources.endpoints)


@pytest.mark.usefixtures("shared_targets")
def test_target_tracking_makes_its_alarms_as_aws_does_and_they_go_with_the_policy(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    autoscaling, cloudwatch = clients(stack)
    wire = AutoscalingWire(autoscaling)
    endpoint = _endpoint(resources, double_image)
    resource_id = _register(autoscaling, endpoint, 1, 3)

    put = _tracking(autoscaling, resource_id, 10.0, ScaleOutCooldown=30, ScaleInCooldown=60)

    alarms = _tracking_alarms(cloudwatch, resource_id)
    assert sorted(a["AlarmName"] for a in put["Alarms"]) == sorted(a["AlarmName"] for a in alarms.values())
    high, low = alarms["high"], alarms["low"]
    assert high["AlarmName"].startswith(f"TargetTracking-{resource_id}-AlarmHigh-")
    for alarm in (high, low):
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Period"]) == (
            "AWS/SageMaker",
            "InvocationsPerInstance",
            "Sum",
            60,
        )
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
            "EndpointName": endpoint,
            "VariantName": "AllTraffic",
        }
        assert alarm["AlarmActions"][0].startswith(f"{put['PolicyARN']}:createdBy/")
    assert (high["EvaluationPeriods"], high["DatapointsToAlarm"], high["Threshold"]) == (3, 3, 10.0)
    assert high["ComparisonOperator"] == "GreaterThanThreshold"
    assert (low["EvaluationPeriods"], low["DatapointsToAlarm"], low["Threshold"]) == (15, 15, 9.0)
    assert low["ComparisonOperator"] == "LessThanThreshold"
    (described,) = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id
    )["ScalingPolicies"]
    assert sorted(a["AlarmName"] for a in described["Alarms"]) == sorted(
        a["AlarmName"] for a in put["Alarms"]
    )

    # Changing the target re-makes the alarms; deleting the policy deletes them.
    _tracking(autoscaling, resource_id, 20.0)
    changed = _tracking_alarms(cloudwatch, resource_id)
    assert (changed["high"]["Threshold"], changed["low"]["Threshold"]) == (20.0, 18.0)
    autoscaling.delete_scaling_policy(
        PolicyName="invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
    )
    assert _tracking_alarms(cloudwatch, resource_id) == {}
    autoscaling.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=resource_id)
    autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id])
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
    )
    assert wire.problems() == []


@pytest.mark.usefixtures("shared_targets")
def test_policies_the_emulator_cannot_honour_are_refused_naming_the_fix(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    autoscaling, _ = clients(stack)
    endpoint = _endpoint(resources, double_image)
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"

    with pytest.raises(ClientError) as unregistered:
        _tracking(autoscaling, resource_id, 10.0)
    assert unregistered.value.response["Error"]["Code"] == "ObjectNotFoundException"
    assert "call RegisterScalableTarget first" in unregistered.value.response["Error"]["Message"]

    with pytest.raises(ClientError) as realtime_zero:
        _register(autoscaling, endpoint, 0, 2)
    assert realtime_zero.value.response["Error"]["Code"] == "ValidationException"
    assert "MinCapacity 0 is allowed only for a variant of an asynchronous endpoint" in str(
        realtime_zero.value
    )

    with pytest.raises(ClientError, match="MinCapacity 3 is greater than MaxCapacity 2"):
        _register(autoscaling, endpoint, 3, 2)
    serverless = resources.endpoint(
        resources.config(
            [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": resources.model(double_image),
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1},
                }
            ]
        )
    )
    resources.wait_status(serverless, "InService")
    with pytest.raises(ClientError, match="is serverless: it has no DesiredInstanceCount to scale"):
        _register(autoscaling, serverless, 1, 2)

    _register(autoscaling, endpoint, 1, 2)
    common = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id,
        "ScalableDimension": DIMENSION,
    }
    with pytest.raises(ClientError, match="needs TargetTrackingScalingPolicyConfiguration"):
        autoscaling.put_scaling_policy(PolicyName="bare", PolicyType="TargetTrackingScaling", **common)
    with pytest.raises(ClientError, match="needs at least one step adjustment"):
        autoscaling.put_scaling_policy(
            PolicyName="stepless",
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "StepAdjustments": []},
            **common,
        )
    with pytest.raises(ClientError, match="PredefinedMetricType 'ECSServiceAverageCPUUtilization'"):
        autoscaling.put_scaling_policy(
            PolicyName="cpu",
            ServiceNamespace="sagemaker",
            ResourceId=resource_id,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 50.0,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            },
        )
    with pytest.raises(aws.sagemaker.exceptions.ClientError, match="DesiredInstanceCount 0 is allowed only"):
        aws.sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}],
        )
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
    )


NIGHTLY = {
    "ScheduledActionName": "team-nightly",
    "Schedule": "cron(0 20 * * ? *)",
    "Timezone": "Europe/Berlin",
    "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 1},
}


@pytest.mark.usefixtures("shared_targets")
def test_a_teams_scheduled_action_needs_a_target_goes_with_it_and_a_release_puts_it_back(
    stack_env: dict[str, str], resources: Resources, double_image: str
) -> None:
    """AWS: PutScheduledAction needs a registered target, and DeregisterScalableTarget deletes the
    target's scheduled actions. A release that takes a variant off autoscaling for an update (or unwinds
    its own registration over a team's) restores them from its snapshot."""
    autoscaling, _ = clients(stack_env)
    endpoint = _endpoint(resources, double_image)
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    where = {"ServiceNamespace": "sagemaker", "ResourceId": resource_id, "ScalableDimension": DIMENSION}

    def scheduled() -> list[dict[str, Any]]:
        return list(autoscaling.describe_scheduled_actions(**where)["ScheduledActions"])

    with pytest.raises(ClientError) as unregistered:
        autoscaling.put_scheduled_action(**where, **NIGHTLY)
    assert unregistered.value.response["Error"]["Code"] == "ObjectNotFoundException"

    _register(autoscaling, endpoint, 1, 3)
    autoscaling.put_scheduled_action(**where, **NIGHTLY)
    aws_clients.reset_clients()
    taken = scaling.snapshot(resource_id)
    assert taken is not None
    scaling.remove_target(resource_id)
    assert scheduled() == []  # gone with the target, as on AWS

    scaling.restore(taken)
    (action,) = scheduled()
    assert {key: action[key] for key in NIGHTLY} == NIGHTLY
    aws_clients.reset_clients()


def _at(seconds_from_now: float) -> str:
    moment = datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
    return f"at({moment:%Y-%m-%dT%H:%M:%S})"


@pytest.mark.usefixtures("shared_targets")
def test_a_scheduled_action_sets_the_bounds_at_its_time_and_the_variant_follows(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    autoscaling, _ = clients(stack)
    endpoint = _endpoint(resources, double_image)
    resource_id = _register(autoscaling, endpoint, 1, 3)
    where = {"ServiceNamespace": "sagemaker", "ResourceId": resource_id, "ScalableDimension": DIMENSION}
    peak = {"MinCapacity": 2, "MaxCapacity": 3}

    for schedule, bounds, words in (
        ("cron(0 20 * * * *)", peak, "? in exactly one of Day-of-month and Day-of-week"),
        ("rate(1 minutes)", peak, "singular unit for 1"),
        (_at(60), {"MinCapacity": 3, "MaxCapacity": 2}, "MinCapacity 3 is greater than MaxCapacity 2"),
    ):
        with pytest.raises(ClientError) as refused:
            autoscaling.put_scheduled_action(
                **where, ScheduledActionName="bad", Schedule=schedule, ScalableTargetAction=bounds
            )
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert words in refused.value.response["Error"]["Message"]

    autoscaling.put_scheduled_action(
        **where, ScheduledActionName="team-peak", Schedule=_at(3), ScalableTargetAction=peak
    )
    poll(
        lambda: variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] == 2, "the scheduled scale-out", 120
    )
    (target,) = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 3)
    listed = poll(lambda: settled(autoscaling, resource_id), "the activities settled", 60)
    by_cause = {a["Cause"]: a for a in listed}
    scheduled = by_cause["scheduled action name team-peak was triggered"]
    assert (scheduled["Description"], scheduled["StatusCode"]) == (
        "Setting min capacity to 2 and max capacity to 3",
        "Successful",
    )
    assert by_cause["minimum capacity was set to 2"]["StatusCode"] == "Successful"


@pytest.mark.usefixtures("shared_targets")
def test_scheduled_scaling_suspended_holds_a_scheduled_action(
    stack: dict[str, str], resources: Resources, double_image: str
) -> None:
    autoscaling, _ = clients(stack)
    endpoint = _endpoint(resources, double_image)
    resource_id = _register(
        autoscaling,
        endpoint,
        1,
        3,
        SuspendedState={
            "DynamicScalingInSuspended": False,
            "DynamicScalingOutSuspended": False,
            "ScheduledScalingSuspended": True,
        },
    )
    autoscaling.put_scheduled_action(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        ScheduledActionName="held",
        Schedule=_at(2),
        ScalableTargetAction={"MinCapacity": 2, "MaxCapacity": 3},
    )
    time.sleep(5)  # the action's time passes while scheduled scaling is suspended
    (target,) = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    assert activities(autoscaling, resource_id) == []


@pytest.mark.usefixtures("shared_targets")
def test_deregistering_a_target_deletes_its_policies_and_their_alarms(
    stack: dict[str, str], resources: Resources, double_image: str
) -> None:
    autoscaling, cloudwatch = clients(stack)
    resource_id = _register(autoscaling, _endpoint(resources, double_image), 1, 2)
    _tracking(autoscaling, resource_id, 10.0)
    assert len(_tracking_alarms(cloudwatch, resource_id)) == 2

    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
    )

    assert (
        autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource_id)[
            "ScalingPolicies"
        ]
        == []
    )
    assert _tracking_alarms(cloudwatch, resource_id) == {}


@pytest.mark.usefixtures("shared_targets")
def test_raising_the_minimum_scales_the_variant_out_to_it(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    autoscaling, _ = clients(stack)
    wire = AutoscalingWire(autoscaling)
    endpoint = _endpoint(resources, double_image)

    resource_id = _register(autoscaling, endpoint, 2, 3)

    poll(lambda: variant(aws.sagemaker, endpoint).get("CurrentInstanceCount") == 2, "2 instances", timeout=60)
    done = poll(
        lambda: [a for a in activities(autoscaling, resource_id) if a["StatusCode"] == "Successful"],
        "a successful activity",
    )
    assert done[0]["Cause"] == "minimum capacity was set to 2"
    assert done[0]["Description"] == "Setting desired instance count to 2."
    assert done[0]["StatusMessage"].startswith("Successfully set desired instance count to 2.")
    assert done[0]["EndTime"] >= done[0]["StartTime"]
    assert wire.problems() == []  # DescribeScalingActivities as botocore's shape has it
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
    )


@pytest.mark.usefixtures("shared_targets")
def test_an_activity_updates_the_endpoint_and_only_ready_instances_get_requests(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    autoscaling, _ = clients(stack)
    endpoint = _endpoint(resources, double_image, DOUBLE_START_DELAY="3")
    first = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["Body"].read()

    _register(autoscaling, endpoint, 2, 2)

    described = poll(
        lambda: (
            (d := aws.sagemaker.describe_endpoint(EndpointName=endpoint))["EndpointStatus"] == "Updating"
            and d
        ),
        "the endpoint Updating",
        timeout=30,
        every=0.1,
    )
    starting = described["ProductionVariants"][0]
    assert (starting["CurrentInstanceCount"], starting["DesiredInstanceCount"]) == (1, 2)
    hosts_while_starting = set()
    while True:
        answer = aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["Body"].read()
        # The new instance joins routing as the endpoint turns InService: an answer counts as given
        # during the update only if the endpoint was still Updating after it.
        if aws.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] != "Updating":
            break
        hosts_while_starting.add(json.loads(answer)["hostname"])
    assert hosts_while_starting == {json.loads(first)["hostname"]}  # the new one was not ready yet
    ready = variant(aws.sagemaker, endpoint)
    assert (ready["CurrentInstanceCount"], ready["DesiredInstanceCount"]) == (2, 2)
    hosts = {
        json.loads(aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}")["Body"].read())["hostname"]
        for _ in range(6)
    }
    assert len(hosts) == 2


def test_scale_in_lets_requests_in_progress_finish(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    endpoint = _endpoint(resources, double_image, instances=2, DOUBLE_DELAY="2")
    answers: list[Any] = []

    def slow_pair() -> None:
        for _ in range(2):  # round robin: one on each instance
            answers.append(aws.runtime.invoke_endpoint(EndpointName=endpoint, Body=b"{}"))

    threads = [threading.Thread(target=slow_pair) for _ in range(2)]
    for thread in threads:
        thread.start()
    url = f"{stack['AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME']}/_emulator/in-progress"

    def both_busy() -> bool:
        busy = httpx.get(url, params={"EndpointName": endpoint}).json()["InProgress"]["AllTraffic"]
        return len(busy) == 2 and all(count > 0 for count in busy.values())

    poll(both_busy, "a request in progress on each instance", timeout=10, every=0.05)
    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
    )
    for thread in threads:
        thread.join(60)

    assert len(answers) == 4  # none failed: the leaving instance finished what it had
    assert resources.wait_status(endpoint, "InService")["ProductionVariants"][0]["CurrentInstanceCount"] == 1


# --- acting on alarms, at time scale 60 ---------------------------------------------------------------------


@pytest.fixture
def fast(
    private_emulator: Callable[..., PrivateEmulator], bucket: str
) -> Iterator[tuple[PrivateEmulator, Aws, Resources]]:
    emulator = private_emulator(EMULATOR_TIME_SCALE=FAST)
    aws = make_clients(emulator.client_env)
    made = Resources(aws, bucket)
    yield emulator, aws, made
    deregister_all(clients(emulator.client_env)[0], made.endpoints)


def test_target_tracking_scales_out_under_traffic_and_back_in_when_it_drops(
    fast: tuple[PrivateEmulator, Aws, Resources], double_image: str
) -> None:
    emulator, aws, resources = fast
    autoscaling, cloudwatch = clients(emulator.client_env)
    endpoint = _endpoint(resources, double_image)
    resource_id = _register(autoscaling, endpoint, 1, 3)
    _tracking(autoscaling, resource_id, 10.0, ScaleOutCooldown=60, ScaleInCooldown=60)

    with Traffic(aws.runtime, endpoint, rate=20) as heavy:
        # 20 invocations per (one-second) minute on one instance: twice the target.
        poll(lambda: variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] >= 2, "scale-out", timeout=45)
        heavy.rate = 2  # 2 per minute over 2-3 instances: far under 90 % of the target
        poll(lambda: variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] == 1, "scale-in", timeout=60)
    assert not heavy.errors, heavy.errors[:3]

    # The last activity ends once the endpoint is InService again, on Application Auto Scaling's next round.
    listed = poll(lambda: settled(autoscaling, resource_id), "every activity settled", timeout=10)
    alarms = _tracking_alarms(cloudwatch, resource_id)
    outs = [
        a
        for a in listed
        if a["Cause"].startswith(f"monitor alarm {alarms['high']['AlarmName']} in state ALARM")
    ]
    ins = [
        a
        for a in listed
        if a["Cause"].startswith(f"monitor alarm {alarms['low']['AlarmName']} in state ALARM")
    ]
    assert outs and ins, listed
    assert all(a["Cause"].endswith("triggered policy invocations") for a in outs + ins)
    assert {a["StatusCode"] for a in listed} == {"Successful"}
    assert ins[0]["Description"] == "Setting desired instance count to 1."
    assert listed == sorted(listed, key=lambda a: a["StartTime"], reverse=True)  # newest first


def test_a_step_policy_fires_from_the_users_own_alarm_within_cooldown_and_maximum(
    fast: tuple[PrivateEmulator, Aws, Resources], double_image: str
) -> None:
    emulator, aws, resources = fast
    autoscaling, cloudwatch = clients(emulator.client_env)
    endpoint = _endpoint(resources, double_image)
    resource_id = _register(autoscaling, endpoint, 1, 3)
    arn = autoscaling.put_scaling_policy(
        PolicyName="busy-plus-one",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "Cooldown": 180,  # 3 s at scale 60
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    )["PolicyARN"]
    alarm = f"{endpoint}-busy"
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[arn],
    )
    try:
        with Traffic(aws.runtime, endpoint, rate=15):
            poll(
                lambda: variant(aws.sagemaker, endpoint)["DesiredInstanceCount"] == 3,
                "two steps up",
                timeout=60,
            )
            # Still in ALARM, but at MaxCapacity: no fourth instance.
            poll(lambda: len(activities(autoscaling, resource_id)) == 2, "two activities", timeout=10)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                assert variant(aws.sagemaker, endpoint)["DesiredInstanceCount"] == 3
                time.sleep(0.5)
    finally:
        cloudwatch.delete_alarms(AlarmNames=[alarm])
    second, first = activities(autoscaling, resource_id)
    for activity in (first, second):
        assert activity["Cause"] == f"monitor alarm {alarm} in state ALARM triggered policy busy-plus-one"
        assert activity["StatusCode"] == "Successful"
    assert (first["Description"], second["Description"]) == (
        "Setting desired instance count to 2.",
        "Setting desired instance count to 3.",
    )
    gap = (second["StartTime"] - first["StartTime"]).total_seconds()
    assert gap >= 3.0 - 0.05, f"the second step came {gap:.2f} s after the first, within the 3 s cooldown"


def test_suspended_dynamic_scale_out_holds_the_capacity_until_resumed(
    fast: tuple[PrivateEmulator, Aws, Resources], double_image: str
) -> None:
    emulator, aws, resources = fast
    autoscaling, cloudwatch = clients(emulator.client_env)
    endpoint = _endpoint(resources, double_image)
    suspended = {"DynamicScalingOutSuspended": True}
    resource_id = _register(autoscaling, endpoint, 1, 3, SuspendedState=suspended)
    _tracking(autoscaling, resource_id, 10.0, ScaleOutCooldown=0)

    with Traffic(aws.runtime, endpoint, rate=20):
        poll(
            lambda: _tracking_alarms(cloudwatch, resource_id)["high"]["StateValue"] == "ALARM",
            "high alarm",
            timeout=45,
        )
        deadline = time.monotonic() + 3  # three metric minutes in ALARM, each re-invoking the policy
        while time.monotonic() < deadline:
            assert variant(aws.sagemaker, endpoint)["DesiredInstanceCount"] == 1
            time.sleep(0.25)
        assert activities(autoscaling, resource_id) == []
        target = autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[resource_id]
        )
        assert target["ScalableTargets"][0]["SuspendedState"]["DynamicScalingOutSuspended"] is True

        _register(autoscaling, endpoint, 1, 3, SuspendedState={"DynamicScalingOutSuspended": False})
        poll(
            lambda: variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] >= 2,
            "scale-out once resumed",
            timeout=30,
        )


def test_an_activity_a_restart_interrupted_is_followed_to_its_end(
    private_emulator: Callable[..., PrivateEmulator], bucket: str, double_image: str
) -> None:
    emulator = private_emulator()
    aws = make_clients(emulator.client_env)
    made = Resources(aws, bucket)
    autoscaling, _ = clients(emulator.client_env)
    endpoint = _endpoint(made, double_image, DOUBLE_START_DELAY="4")
    resource_id = _register(autoscaling, endpoint, 2, 2)
    poll(lambda: activities(autoscaling, resource_id), "an activity", timeout=30)

    emulator.stop()
    emulator.start()

    listed = poll(lambda: settled(autoscaling, resource_id), "the activity settled", timeout=60)
    assert [a["StatusCode"] for a in listed] == ["Successful"], listed
    assert variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] == 2
    deregister_all(autoscaling, made.endpoints)


@pytest.mark.usefixtures("shared_targets")
def test_an_update_may_not_retype_or_remove_a_variant_registered_for_autoscaling(
    stack: dict[str, str], aws: Aws, resources: Resources, double_image: str
) -> None:
    autoscaling, _ = clients(stack)
    model = resources.model(double_image)
    endpoint = resources.endpoint(resources.single(model))
    resources.wait_status(endpoint, "InService")
    resource_id = _register(autoscaling, endpoint, 1, 2)
    retyped = resources.single(model, InstanceType="ml.m5.xlarge")
    renamed = resources.single(model, VariantName="Other")

    for config in (retyped, renamed):
        with pytest.raises(ClientError) as refused:
            aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert refused.value.response["Error"]["Message"] == (
            'The variant(s) "[AllTraffic]" must be deregistered as scalable targets with AWS Application '
            "Auto Scaling before they can be removed or have their instance type updated."
        )
    assert variant(aws.sagemaker, endpoint)["CurrentInstanceCount"] == 1  # nothing started

    # The same variant on the same type (a new model) is fine; deregistered, the re-type is too.
    aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=resources.single(model))
    resources.wait_status(endpoint, "InService")
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
    )
    aws.sagemaker.update_endpoint(EndpointName=endpoint, EndpointConfigName=retyped)
    described = resources.wait_status(endpoint, "InService")
    assert described["EndpointConfigName"] == retyped
