"""Reading SageMaker resources: describe, list and tags; nothing here changes anything.

The other rooms read SageMaker through these functions (the rollout runner, rollback, retention,
ownership, the orphan sweep), so tasks/sagemaker stays the only room that holds a SageMaker client
(tests/unit/test_boundaries.py). A missing resource raises botocore's error as SageMaker sent it:
`aws.is_not_found` tells it apart, and each caller decides what a missing one means to it. This module
imports only tasks.core, so tasks/lifecycle/ownership.py can use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tasks.core import aws

# The kinds of SageMaker resource a release creates, as the ledger and the orphan sweep name them.
Resource = Literal["model", "endpoint-config", "endpoint", "transform-job"]


@dataclass(frozen=True)
class _Shape:
    """How one kind of resource is described and listed: operation names and the fields that matter."""

    describe: str
    name_param: str
    arn_key: str
    list_operation: str
    list_key: str
    name_key: str


_SHAPES: dict[Resource, _Shape] = {
    "model": _Shape("describe_model", "ModelName", "ModelArn", "list_models", "Models", "ModelName"),
    "endpoint-config": _Shape(
        "describe_endpoint_config",
        "EndpointConfigName",
        "EndpointConfigArn",
        "list_endpoint_configs",
        "EndpointConfigs",
        "EndpointConfigName",
    ),
    "endpoint": _Shape(
        "describe_endpoint", "EndpointName", "EndpointArn", "list_endpoints", "Endpoints", "EndpointName"
    ),
    "transform-job": _Shape(
        "describe_transform_job",
        "TransformJobName",
        "TransformJobArn",
        "list_transform_jobs",
        "TransformJobSummaries",
        "TransformJobName",
    ),
}


def endpoint(name: str) -> dict[str, Any]:
    """DescribeEndpoint; raises when there is no such endpoint (hosting.describe_endpoint answers None)."""
    return dict(aws.sagemaker().describe_endpoint(EndpointName=name))


def endpoint_config(name: str) -> dict[str, Any]:
    """DescribeEndpointConfig; raises when there is no such config."""
    return dict(aws.sagemaker().describe_endpoint_config(EndpointConfigName=name))


def model(name: str) -> dict[str, Any]:
    """DescribeModel; raises when there is no such model."""
    return dict(aws.sagemaker().describe_model(ModelName=name))


def tags(arn: str) -> dict[str, str]:
    """The tags of the resource `arn` as a mapping (ListTags, first page: ours carry fewer than 50)."""
    listed = aws.sagemaker().list_tags(ResourceArn=arn).get("Tags", [])
    return {str(t["Key"]): str(t["Value"]) for t in listed}


def arn_of(resource: Resource, name: str) -> str | None:
    """The ARN of the `resource` named `name`, or None when it does not exist."""
    shape = _SHAPES[resource]
    try:
        described = getattr(aws.sagemaker(), shape.describe)(**{shape.name_param: name})
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        raise
    return str(described[shape.arn_key])


def endpoint_configs(name_contains: str) -> Iterator[dict[str, Any]]:
    """Summaries of the endpoint configs whose name contains `name_contains`, oldest first."""
    paginator = aws.sagemaker().get_paginator("list_endpoint_configs")
    for page in paginator.paginate(NameContains=name_contains, SortBy="CreationTime", SortOrder="Ascending"):
        for summary in page.get("EndpointConfigs", []):
            yield dict(summary)


@dataclass(frozen=True)
class Listed:
    """One resource of the account as its List call returns it."""

    name: str
    arn: str
    summary: dict[str, Any]


def every(resource: Resource) -> Iterator[Listed]:
    """Every `resource` of the account (all pages of its List call)."""
    shape = _SHAPES[resource]
    for page in aws.sagemaker().get_paginator(shape.list_operation).paginate():  # type: ignore[call-overload]
        for item in page[shape.list_key]:
            yield Listed(str(item[shape.name_key]), str(item[shape.arn_key]), dict(item))
