"""flows/cleanup.py: a succeeded release is refused; orphans are what no live ledger accounts for (moto)."""

from __future__ import annotations

import json

import boto3
import pytest
from deploy_helpers import ROLE

from flows import cleanup
from tasks import naming

TAGS = [{"Key": "managed-by", "Value": "sagemaker-release"}]


def _ledger(bucket: str, release_id: str, state: str) -> None:
    document = {
        "version": 1,
        "release_id": release_id,
        "state": state,
        "meta": {"endpoint": "ep"},
        "entries": [],
    }
    boto3.client("s3").put_object(
        Bucket=bucket, Key=naming.ledger_key("sr", release_id), Body=json.dumps(document).encode()
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

    orphans = cleanup.find_orphans("ledgers", "sr")
    assert sorted((o.kind, o.resource_id, o.ledger_state) for o in orphans) == [
        ("sagemaker:model", "m-r-no-ledger", "missing"),
        ("sagemaker:model", "m-r-unwound", "unwound"),
        ("sns:topic", topic["TopicArn"], "missing"),
    ]
    result = cleanup.cleanup_orphans.fn("ledgers", "sr", delete=True)
    assert sorted(result["deleted"]) == sorted(["m-r-no-ledger", "m-r-unwound", topic["TopicArn"]])
    assert sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]) == ["m-r-live", "not-ours"]


def test_the_cleanup_of_a_succeeded_release_is_refused(mocked_aws: None) -> None:
    boto3.client("s3").create_bucket(Bucket="ledgers")
    _ledger("ledgers", "r-live", "succeeded")
    with pytest.raises(cleanup.ReleaseSucceeded, match="release r-live finished and endpoint ep serves it"):
        cleanup.cleanup.fn("r-live", "ledgers", "sr")
