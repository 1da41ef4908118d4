"""Deleters for every ledger kind; what the live endpoint serves is kept (moto in-process)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tasks.lifecycle import unwind
from tasks.lifecycle.kinds import KINDS
from tasks.lifecycle.ledger import LedgerEntry
from tests.unit.deploy_helpers import ROLE, local_ledger

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc"


def test_every_ledger_kind_has_a_deleter() -> None:
    assert set(unwind.deleters()) == set(KINDS)


def test_unwind_deletes_objects_prefixes_images_repositories_topics_and_alarms(
    mocked_aws: None, tmp_path: Path
) -> None:
    s3, ecr, sns, cloudwatch = (boto3.client(s) for s in ("s3", "ecr", "sns", "cloudwatch"))
    s3.create_bucket(Bucket="bkt")
    for key in ("m/model.tar.gz", "p/abc/config.json", "p/abc/weights.bin", "p/abcd/keep.bin"):
        s3.put_object(Bucket="bkt", Key=key, Body=b"x")
    ecr.create_repository(repositoryName="shared")
    ecr.put_image(
        repositoryName="shared",
        imageManifest='{"schemaVersion": 2, "mediaType": "m", "layers": []}',
        imageTag="t1",
    )
    ecr.create_repository(repositoryName="ours")
    topic = sns.create_topic(Name="t")["TopicArn"]
    cloudwatch.put_metric_alarm(
        AlarmName="a",
        MetricName="m",
        Namespace="n",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    ledger = local_ledger(tmp_path)
    ledger.record("s3:object", "s3://bkt/m/model.tar.gz", bucket="bkt", key="m/model.tar.gz")
    ledger.record("s3:prefix", "s3://bkt/p/abc", bucket="bkt", prefix="p/abc")
    ledger.record("ecr:repository", "ours")
    ledger.record("ecr:image", "shared:t1", repository="shared", tag="t1", digest="sha256:x")
    ledger.record("sns:topic", topic, arn=topic)
    ledger.record("cloudwatch:alarm", "a")
    ledger.unwind(unwind.deleters())
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == ["p/abcd/keep.bin"]
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["shared"]
    assert ecr.list_images(repositoryName="shared")["imageIds"] == []
    assert sns.list_topics()["Topics"] == []
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    assert {e.status for e in ledger.entries} == {"deleted"}
    ledger.unwind(unwind.deleters())  # a second unwind has nothing left to do


@pytest.fixture
def serving(mocked_aws: None) -> None:
    """Endpoint ep serving config c1 -> model m1 -> s3://bkt/m/model.tar.gz."""
    sagemaker = boto3.client("sagemaker")
    for model in ("m0", "m1"):
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://bkt/{model}/model.tar.gz"},
        )
    for config, model in (("c0", "m0"), ("c1", "m1")):
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "v",
                    "ModelName": model,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="c1")


@pytest.mark.parametrize(
    ("kind", "resource_id", "attrs", "kept"),
    [
        ("sagemaker:endpoint-config", "c1", {}, True),
        ("sagemaker:endpoint-config", "c0", {}, False),
        ("sagemaker:model", "m1", {}, True),
        ("sagemaker:model", "m0", {}, False),
        ("s3:object", "s3://bkt/m1/model.tar.gz", {"bucket": "bkt", "key": "m1/model.tar.gz"}, True),
        ("s3:object", "s3://bkt/m0/model.tar.gz", {"bucket": "bkt", "key": "m0/model.tar.gz"}, False),
        ("cloudwatch:alarm", "a", {}, False),
    ],
)
def test_keep_spares_what_the_live_endpoint_serves(
    serving: None, kind: str, resource_id: str, attrs: dict[str, str], kept: bool
) -> None:
    entry = LedgerEntry(seq=1, kind=kind, resource_id=resource_id, attrs=attrs)
    assert unwind.keep_in_use("ep")(entry) is kept
    assert unwind.keep_in_use("no-such-endpoint")(entry) is False
    assert unwind.keep_in_use(None)(entry) is False
