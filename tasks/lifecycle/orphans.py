"""Orphans: resources tagged managed-by=sagemaker-release that no release accounts for, and the sweep.

Whatever an endpoint uses is never an orphan, whatever the ledgers say: the sweep reads the endpoints'
configs, models, images, topics, alarms and scaling from the services first (tasks/sagemaker/in_use.py).
A resource is deleted only when its release's ledger exists and says the release was unwound; a
resource whose ledger is not found (a mistyped bucket or prefix, a lifecycle rule that expired it) is
"unknown": listed, not deleted. Endpoints are deleted only when asked, and only when Failed or
OutOfService. flows/cleanup.py runs the sweep as a flow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tasks.config import naming
from tasks.core import aws
from tasks.core.logs import run_logger
from tasks.image import ecr
from tasks.lifecycle.kinds import (
    CLOUDWATCH_ALARM,
    ECR_REPOSITORY,
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    SNS_TOPIC,
)
from tasks.lifecycle.ledger import Deleter, LedgerEntry, S3LedgerStore
from tasks.sagemaker import hosting, in_use, lookup

# Ledger states that make a release's leftovers deletable: its unwind ran (or began) and left them.
DELETABLE_LEDGER_STATES = frozenset({"unwound", "unwind_failed", "unwinding"})
# The only endpoint statuses a sweep may delete from: nothing serves and nothing is in flight.
DELETABLE_ENDPOINT_STATUSES = frozenset({"Failed", "OutOfService"})
# Deletion order: an endpoint before its config, a config before its models, alarms before topics.
_ORDER = (
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    CLOUDWATCH_ALARM,
    SNS_TOPIC,
    ECR_REPOSITORY,
)


@dataclass(frozen=True)
class Tagged:
    """A resource carrying our managed-by tag, with what its listing said about it (`details`)."""

    kind: str
    resource_id: str
    arn: str
    tags: dict[str, str]
    details: dict[str, Any]


@dataclass(frozen=True)
class Orphan:
    """A tagged resource whose release is neither succeeded nor running by its ledger.

    `action` is "delete" only for a resource whose ledger exists and says the release was unwound,
    that no endpoint uses; anything else is "keep", and `reason` says why (and how to proceed).
    """

    kind: str
    resource_id: str
    arn: str
    release_id: str
    ledger_state: str  # missing | unwound | unwind_failed | unwinding
    action: str = "delete"  # delete | keep
    reason: str = ""


def tagged_resources() -> Iterator[Tagged]:
    """Every resource of ours that carries the managed-by tag."""
    listings: list[tuple[str, lookup.Resource]] = [
        (SAGEMAKER_ENDPOINT, "endpoint"),
        (SAGEMAKER_ENDPOINT_CONFIG, "endpoint-config"),
        (SAGEMAKER_MODEL, "model"),
    ]
    for kind, resource in listings:
        for item in lookup.every(resource):
            tags = lookup.tags(item.arn)
            if _ours(tags):
                yield Tagged(kind, item.name, item.arn, tags, item.summary)
    cloudwatch = aws.client("cloudwatch")
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for alarm in page["MetricAlarms"]:
            tags = _tags(cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"]).get("Tags", []))
            if _ours(tags):
                yield Tagged(CLOUDWATCH_ALARM, alarm["AlarmName"], alarm["AlarmArn"], tags, dict(alarm))
    sns = aws.client("sns")
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            tags = _tags(sns.list_tags_for_resource(ResourceArn=topic["TopicArn"]).get("Tags", []))
            if _ours(tags):
                yield Tagged(SNS_TOPIC, topic["TopicArn"], topic["TopicArn"], tags, dict(topic))
    ecr = aws.client("ecr")
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repository in page["repositories"]:
            arn = repository["repositoryArn"]
            tags = _tags(ecr.list_tags_for_resource(resourceArn=arn).get("tags", []))
            if _ours(tags):
                yield Tagged(ECR_REPOSITORY, repository["repositoryName"], arn, tags, dict(repository))


def _tags(pairs: list[dict[str, str]]) -> dict[str, str]:
    return {p.get("Key", p.get("key", "")): p.get("Value", p.get("value", "")) for p in pairs}


def _ours(tags: dict[str, str]) -> bool:
    return tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE


def find_orphans(
    bucket: str,
    prefix: str,
    *,
    include_endpoints: bool = False,
    usage: in_use.InUse | None = None,
) -> list[Orphan]:
    """Tagged resources whose release is not succeeded or running according to its ledger, each with
    the sweep's verdict. Whatever an endpoint uses (`usage`, read from SageMaker) is no orphan at all."""
    usage = usage if usage is not None else in_use.endpoint_usage()
    states: dict[str, str] = {}
    orphans = []
    for resource in tagged_resources():
        if _user(usage, resource) is not None:
            continue
        release_id = resource.tags.get(naming.RELEASE_ID_KEY, "")
        if release_id not in states:
            document = S3LedgerStore.of_release(release_id, bucket, prefix).load() if release_id else None
            states[release_id] = str(document.get("state")) if document else "missing"
        state = states[release_id]
        if state in ("succeeded", "running"):
            continue
        reason = _keep_reason(resource, release_id, state, bucket, prefix, include_endpoints)
        orphans.append(
            Orphan(
                resource.kind,
                resource.resource_id,
                resource.arn,
                release_id,
                state,
                action="keep" if reason else "delete",
                reason=reason or f"release {release_id} was {state}",
            )
        )
    return sorted(orphans, key=lambda o: _ORDER.index(o.kind))


def _user(usage: in_use.InUse, resource: Tagged) -> str | None:
    """The endpoint using the resource, if any (an endpoint is judged by its status instead)."""
    kind, name = resource.kind, resource.resource_id
    if kind == SAGEMAKER_ENDPOINT_CONFIG:
        return usage.config_user(name)
    if kind == SAGEMAKER_MODEL:
        return usage.model_user(name)
    if kind == CLOUDWATCH_ALARM:
        return usage.alarm_user(resource.details or {"AlarmName": name})
    if kind == SNS_TOPIC:
        return usage.topic_user(name)
    if kind == ECR_REPOSITORY:
        return usage.repository_user(name)
    return None


def _keep_reason(
    resource: Tagged, release_id: str, state: str, bucket: str, prefix: str, include_endpoints: bool
) -> str | None:
    if state == "missing":
        where = (
            S3LedgerStore.of_release(release_id, bucket, prefix).describe()
            if release_id
            else "(no release-id tag)"
        )
        return (
            f"unknown: no ledger at {where}; a sweep deletes only what a ledger says was unwound. "
            "fix: check --bucket and --prefix (the release's storage.bucket and storage.prefix); if it "
            "is really unused, delete it by hand"
        )
    if state not in DELETABLE_LEDGER_STATES:
        return f"unknown: the ledger of release {release_id} is in state {state!r}"
    if resource.kind == SAGEMAKER_ENDPOINT:
        status = str(resource.details.get("EndpointStatus", "unknown"))
        if not include_endpoints:
            return f"endpoint ({status}): a sweep deletes endpoints only with --include-endpoints"
        if status not in DELETABLE_ENDPOINT_STATUSES:
            return f"endpoint is {status}: only a Failed or OutOfService endpoint is deleted by a sweep"
    if resource.kind == ECR_REPOSITORY and ecr.repository_has_images(resource.resource_id):
        return "the repository holds images; fix: delete the images no model uses, then sweep again"
    return None


def sweep_one(
    orphan: Orphan, delete: bool, deleters: Mapping[str, Deleter], removed: list[str], kept: list[str]
) -> None:
    log = run_logger()
    log.info(
        "orphan %s %s of release %s (ledger %s): %s%s",
        orphan.kind,
        orphan.resource_id,
        orphan.release_id,
        orphan.ledger_state,
        orphan.action,
        f" ({orphan.reason})" if orphan.action == "keep" else "",
    )
    if not delete:
        return
    if orphan.action != "delete":
        kept.append(orphan.resource_id)
        return
    if orphan.kind == SAGEMAKER_ENDPOINT:
        status = _endpoint_status(orphan.resource_id)
        if status is not None and status not in DELETABLE_ENDPOINT_STATUSES:
            log.info("kept endpoint %s: it is %s now", orphan.resource_id, status)
            kept.append(orphan.resource_id)
            return
    entry = LedgerEntry(seq=0, kind=orphan.kind, resource_id=orphan.resource_id, attrs={"arn": orphan.arn})
    try:
        _delete(deleters[orphan.kind], entry)
    except Exception as exc:
        if aws.error_code(exc) != "RepositoryNotEmptyException":
            raise
        # An image was pushed into it since the sweep looked: it is someone's now.
        log.info("kept repository %s: it is not empty any more", orphan.resource_id)
        kept.append(orphan.resource_id)
        return
    removed.append(orphan.resource_id)


def _endpoint_status(name: str) -> str | None:
    described = hosting.describe_endpoint(name)
    return str(described["EndpointStatus"]) if described is not None else None


def _delete(deleter: Callable[[LedgerEntry], None], entry: LedgerEntry) -> None:
    try:
        deleter(entry)
    except Exception as exc:
        if not aws.is_not_found(exc):
            raise
