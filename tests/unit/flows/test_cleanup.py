"""flows/cleanup.py: a succeeded release is refused; orphans are what no live ledger accounts for, and
whatever an endpoint uses is never one, whatever the ledgers say (moto)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from flows import cleanup
from tasks.config import naming
from tasks.lifecycle.orphans import find_orphans
from tasks.sagemaker import in_use
from tests.unit.deploy_helpers import ROLE

TAGS = [{"Key": "managed-by", "Value": "sagemaker-release"}]
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
MANIFEST = '{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}'


def _tags(release_id: str, endpoint: str = "ep") -> list[dict[str, str]]:
    return [
        *TAGS,
        {"Key": "release-id", "Value": release_id},
        {"Key": naming.ENDPOINT_KEY, "Value": endpoint},
    ]


def _ledger(bucket: str, release_id: str, state: str, prefix: str = "sr") -> None:
    document = {
        "version": 1,
        "release_id": release_id,
        "state": state,
        "meta": {"endpoint": "ep"},
        "entries": [],
    }
    boto3.client("s3").put_object(
        Bucket=bucket, Key=naming.ledger_key(prefix, release_id), Body=json.dumps(document).encode()
    )


def _alarm(name: str, release_id: str, **fields: Any) -> None:
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
        Tags=_tags(release_id),
        **fields,
    )


def test_orphans_are_tagged_resources_of_releases_that_are_not_live(mocked_aws: None) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ledgers")
    _ledger("ledgers", "r-live", "succeeded")
    _ledger("ledgers", "r-unwound", "unwound")
    sagemaker = boto3.client("sagemaker")
    for release_id in ("r-live", "r-unwound", "r-no-ledger"):
        sagemaker.create_model(
            ModelName=f"m-{release_id}",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/s:1"},
            Tags=[*TAGS, {"Key": "release-id", "Value": release_id}],
        )
    sagemaker.create_model(ModelName="not-ours", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "x/y:1"})
    topic = boto3.client("sns").create_topic(
        Name="t", Tags=[*TAGS, {"Key": "release-id", "Value": "r-no-ledger"}]
    )

    orphans = find_orphans("ledgers", "sr")
    assert sorted((o.kind, o.resource_id, o.ledger_state, o.action) for o in orphans) == [
        ("sagemaker:model", "m-r-no-ledger", "missing", "keep"),
        ("sagemaker:model", "m-r-unwound", "unwound", "delete"),
        ("sns:topic", topic["TopicArn"], "missing", "keep"),
    ]
    unknown = next(o for o in orphans if o.resource_id == "m-r-no-ledger")
    assert unknown.reason.startswith("unknown: no ledger at s3://ledgers/sr/releases/r-no-ledger/ledger.json")
    assert "fix: check --bucket and --prefix" in unknown.reason
    result = cleanup.cleanup_orphans.fn("ledgers", "sr", delete=True)
    # Only what a ledger says was unwound goes; without a ledger a resource is listed, never deleted.
    assert result["deleted"] == ["m-r-unwound"]
    assert sorted(result["kept"]) == sorted(["m-r-no-ledger", topic["TopicArn"]])
    assert sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]) == [
        "m-r-live",
        "m-r-no-ledger",
        "not-ours",
    ]


def test_the_cleanup_of_a_succeeded_release_is_refused(mocked_aws: None) -> None:
    boto3.client("s3").create_bucket(Bucket="ledgers")
    _ledger("ledgers", "r-live", "succeeded")
    with pytest.raises(cleanup.ReleaseSucceeded, match="release r-live finished and endpoint ep serves it"):
        cleanup.cleanup.fn("r-live", "ledgers", "sr")


# --- a live release whose ledger cannot be trusted ---------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """What release r-live left serving on endpoint ep: every piece a sweep must leave alone."""

    topic: str
    policy_arn: str

    def still_there(self) -> dict[str, Any]:
        sagemaker = boto3.client("sagemaker")
        ecr = boto3.client("ecr")
        autoscaling = boto3.client("application-autoscaling")
        alarms = boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix="ep-")["MetricAlarms"]
        return {
            "endpoint": sagemaker.describe_endpoint(EndpointName="ep")["EndpointStatus"],
            "config": sagemaker.describe_endpoint_config(EndpointConfigName="ep-r-live")[
                "EndpointConfigName"
            ],
            "model": sagemaker.describe_model(ModelName="ep-r-live")["ModelName"],
            "image": [i["imageTag"] for i in ecr.list_images(repositoryName="team/serving")["imageIds"]],
            "topics": [t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]],
            "alarms": sorted(a["AlarmName"] for a in alarms),
            "targets": [
                t["ResourceId"]
                for t in autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
                    "ScalableTargets"
                ]
            ],
        }


EXPECTED = {
    "endpoint": "InService",
    "config": "ep-r-live",
    "model": "ep-r-live",
    "image": ["abc"],
    "alarms": ["ep-r-live-5xx", "ep-r-live-no-capacity"],
    "targets": ["endpoint/ep/variant/AllTraffic"],
}


@pytest.fixture
def live(mocked_aws: None) -> Live:
    boto3.client("s3").create_bucket(Bucket="ledgers")
    _ledger("ledgers", "r-live", "succeeded")
    tags = _tags("r-live")
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="team/serving", tags=tags)
    ecr.put_image(repositoryName="team/serving", imageManifest=MANIFEST, imageTag="abc")
    topic = boto3.client("sns").create_topic(Name="ep-r-live-success", Tags=tags)["TopicArn"]
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="ep-r-live",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": f"{HOST}/team/serving:abc", "ModelDataUrl": "s3://models/m/model.tar.gz"},
        Tags=tags,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="ep-r-live",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "ep-r-live",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={
            "OutputConfig": {
                "S3OutputPath": "s3://models/out/",
                "NotificationConfig": {"SuccessTopic": topic, "ErrorTopic": topic},
            }
        },
        Tags=tags,
    )
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="ep-r-live", Tags=tags)
    autoscaling = boto3.client("application-autoscaling")
    resource = "endpoint/ep/variant/AllTraffic"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=2,
    )
    policy_arn = autoscaling.put_scaling_policy(
        PolicyName="ep-r-live-step",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )["PolicyARN"]
    # The guard alarm watches the endpoint; the scale-from-zero alarm drives its policy.
    _alarm("ep-r-live-5xx", "r-live", Dimensions=[{"Name": "EndpointName", "Value": "ep"}])
    _alarm("ep-r-live-no-capacity", "r-live", AlarmActions=[policy_arn])
    return Live(topic, policy_arn)


def _delete_ledger(bucket: str = "ledgers", release_id: str = "r-live") -> None:
    boto3.client("s3").delete_object(Bucket=bucket, Key=naming.ledger_key("sr", release_id))


def _expire_every_ledger() -> None:
    _ledger("ledgers", "r-older", "succeeded")
    s3 = boto3.client("s3")
    for item in s3.list_objects_v2(Bucket="ledgers", Prefix="sr/releases/")["Contents"]:
        s3.delete_object(Bucket="ledgers", Key=item["Key"])


# (how the ledgers are wrong, bucket and prefix the sweep is given)
LEDGER_TROUBLE: dict[str, tuple[Callable[[], None], str, str]] = {
    "ledger-deleted": (_delete_ledger, "ledgers", "sr"),
    "wrong-prefix": (lambda: None, "ledgers", "sr-"),
    "wrong-bucket": (lambda: None, "ledger", "sr"),
    "expired-ledgers": (_expire_every_ledger, "ledgers", "sr"),
    "ledger-says-unwound": (lambda: _ledger("ledgers", "r-live", "unwound"), "ledgers", "sr"),
}


@pytest.mark.parametrize("trouble", sorted(LEDGER_TROUBLE))
def test_a_sweep_never_deletes_what_a_live_endpoint_uses(live: Live, trouble: str) -> None:
    break_ledgers, bucket, prefix = LEDGER_TROUBLE[trouble]
    break_ledgers()
    result = cleanup.cleanup_orphans.fn(bucket, prefix, delete=True, include_endpoints=True)
    assert result["deleted"] == []
    assert {k: v for k, v in live.still_there().items() if k != "topics"} == EXPECTED
    assert live.topic in live.still_there()["topics"]
    # The endpoint itself is listed at most, never an orphan to delete.
    assert all(o["action"] == "keep" for o in result["orphans"])
    used = result["in_use"]["ep"]
    assert used["configs"] == ["ep-r-live"] and used["model_data"] == ["s3://models/m/model.tar.gz"]
    assert used["images"] == [f"{HOST}/team/serving:abc"]


def test_a_sweep_deletes_orphans_beside_a_live_endpoint_and_lists_the_rest(live: Live) -> None:
    _ledger("ledgers", "r-gone", "unwound")
    tags = _tags("r-gone")
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="ep-r-gone",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": f"{HOST}/team/serving:abc"},
        Tags=tags,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="ep-r-gone",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "ep-r-gone",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        Tags=tags,
    )
    _alarm("gone-5xx", "r-gone", Dimensions=[{"Name": "EndpointName", "Value": "no-such-endpoint"}])
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="gone/empty", tags=tags)
    ecr.create_repository(repositoryName="gone/full", tags=tags)
    ecr.put_image(repositoryName="gone/full", imageManifest=MANIFEST, imageTag="t")
    # An orphan endpoint that serves (InService) is never deleted, flag or not.
    sagemaker.create_endpoint(EndpointName="gone-ep", EndpointConfigName="ep-r-gone", Tags=tags)

    listed = {o.resource_id: o for o in find_orphans("ledgers", "sr")}
    assert "endpoints only with --include-endpoints" in listed["gone-ep"].reason
    assert "ep-r-gone" not in listed  # gone-ep (an endpoint) uses that config and model

    result = cleanup.cleanup_orphans.fn("ledgers", "sr", delete=True, include_endpoints=True)
    orphans = {o["resource_id"]: o for o in result["orphans"]}
    assert orphans["gone-ep"]["reason"].startswith("endpoint is InService")
    assert orphans["gone/full"]["reason"].startswith("the repository holds images")
    assert sorted(result["deleted"]) == ["gone-5xx", "gone/empty"]
    assert sorted(result["kept"]) == ["gone-ep", "gone/full"]
    assert sagemaker.describe_endpoint(EndpointName="gone-ep")["EndpointStatus"] == "InService"
    assert live.still_there()["alarms"] == EXPECTED["alarms"]


def test_alarms_in_use_are_those_an_endpoint_names_watches_or_scales_by() -> None:
    use = in_use.EndpointUse(
        name="Demo",
        status="InService",
        alarms=["team-rollback-alarm"],
        policy_arns=["arn:policy/step"],
    )
    usage = in_use.InUse((use,))
    assert usage.alarm_user({"AlarmName": "team-rollback-alarm"}) == "Demo"
    assert usage.alarm_user({"AlarmName": "x", "AlarmActions": ["arn:policy/step"]}) == "Demo"
    # Endpoint names are case-insensitive; metric math alarms carry dimensions per metric.
    watched = {"MetricStat": {"Metric": {"Dimensions": [{"Name": "EndpointName", "Value": "demo"}]}}}
    assert usage.alarm_user({"AlarmName": "y", "Metrics": [watched]}) == "Demo"
    assert (
        usage.alarm_user({"AlarmName": "z", "Dimensions": [{"Name": "EndpointName", "Value": "other"}]})
        is None
    )


def test_the_command_line_passes_include_endpoints_to_the_sweep(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--orphans", "--bucket", "ledgers", "--prefix", "sr", "--delete", "--include-endpoints"]
    _delete_ledger()
    assert cleanup.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    endpoint = next(o for o in summary["orphans"] if o["resource_id"] == "ep")
    assert endpoint["action"] == "keep" and endpoint["reason"].startswith("unknown: no ledger")
    assert summary["deleted"] == [] and live.still_there()["endpoint"] == "InService"


def test_include_endpoints_without_delete_is_refused_naming_the_flag(
    mocked_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cleanup.main(["--orphans", "--bucket", "ledgers", "--include-endpoints"]) == 2
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "invalid" and "--include-endpoints" in summary["error"]
    assert "--orphans --delete" in summary["error"]
