"""What exists on the local stack, asked with plain boto3: the e2e tests assert on this, not on logs."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tasks.config import naming

RELEASE_TAG = naming.RELEASE_ID_KEY


def _tags(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {p.get("Key", p.get("key", "")): p.get("Value", p.get("value", "")) for p in pairs}


def resources_of_release(release_id: str, bucket: str) -> list[str]:
    """Every resource on the stack tagged with `release_id`, except the release's own ledger."""
    found: list[str] = []
    sagemaker = boto3.client("sagemaker")
    for operation, key, name_key, arn_key in (
        ("list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
        ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn"),
        ("list_models", "Models", "ModelName", "ModelArn"),
    ):
        for item in getattr(sagemaker, operation)(MaxResults=100)[key]:
            if _tags(sagemaker.list_tags(ResourceArn=item[arn_key])["Tags"]).get(RELEASE_TAG) == release_id:
                found.append(f"sagemaker {item[name_key]}")
    ecr = boto3.client("ecr")
    for repository in ecr.describe_repositories()["repositories"]:
        tags = _tags(ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"])
        if tags.get(RELEASE_TAG) == release_id:
            found.append(f"ecr {repository['repositoryName']}")
    cloudwatch = boto3.client("cloudwatch")
    for alarm in cloudwatch.describe_alarms()["MetricAlarms"]:
        tags = _tags(cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"])
        if tags.get(RELEASE_TAG) == release_id:
            found.append(f"alarm {alarm['AlarmName']}")
    sns = boto3.client("sns")
    for topic in sns.list_topics()["Topics"]:
        if (
            _tags(sns.list_tags_for_resource(ResourceArn=topic["TopicArn"])["Tags"]).get(RELEASE_TAG)
            == release_id
        ):
            found.append(f"sns {topic['TopicArn']}")
    s3 = boto3.client("s3")
    ledger_key = naming.ledger_key("e2e", release_id)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if item["Key"] == ledger_key:
                continue
            tags = _tags(s3.get_object_tagging(Bucket=bucket, Key=item["Key"])["TagSet"])
            if tags.get(RELEASE_TAG) == release_id:
                found.append(f"s3 {item['Key']}")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    found.extend(f"s3 multipart upload {u['Key']}" for u in uploads)
    return found


def ledger(bucket: str, release_id: str) -> dict[str, Any]:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=naming.ledger_key("e2e", release_id))["Body"]
    return dict(json.loads(body.read()))


def unresolved_entries(bucket: str, release_id: str) -> list[str]:
    """Ledger entries an unwind did not settle (every entry must end deleted, gone or kept; `foreign`
    marks a name another release owns, which this one never created)."""
    document = ledger(bucket, release_id)
    return [
        f"{e['kind']} {e['resource_id']}: {e['status']} {e.get('error') or ''}"
        for e in document["entries"]
        if e["status"] not in ("deleted", "gone", "kept", "foreign")
    ]


def scaling_of(endpoint: str) -> dict[str, Any]:
    """Targets (with capacities) and policy names registered for the endpoint's variants."""
    autoscaling = boto3.client("application-autoscaling")
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    prefix = f"endpoint/{endpoint}/"
    return {
        "targets": sorted(
            (t["ResourceId"], t["MinCapacity"], t["MaxCapacity"])
            for t in targets
            if t["ResourceId"].startswith(prefix)
        ),
        "policies": sorted(p["PolicyName"] for p in policies if p["ResourceId"].startswith(prefix)),
    }


def serving_config(endpoint: str) -> str | None:
    try:
        described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    except ClientError:
        return None
    return f"{described['EndpointStatus']} {described['EndpointConfigName']}"


def embed(endpoint: str, text: str = "is it still answering?") -> list[float]:
    """One sentence through the endpoint: its embedding (the endpoint must answer)."""
    answer = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps({"inputs": text}), ContentType="application/json"
    )
    vector = json.loads(answer["Body"].read())
    while isinstance(vector, list) and vector and isinstance(vector[0], list):
        vector = vector[0]
    return list(vector)
