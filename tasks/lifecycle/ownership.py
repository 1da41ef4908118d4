"""Whose is a resource: the release-id tag of what exists under a name.

Two moments need it. A create that was sent again (botocore's retries, `call_with_retries`, a Prefect
task retry) after its first attempt succeeded without an answer comes back "already exists": the
resource is adopted when its release-id tag names this release, and refused otherwise (ResourceTaken
names it and the fix). And an unwind that meets an intent whose create never answered (a pending
ledger entry) deletes the resource only when it is this release's (`ours`, Ledger's default check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.config import naming
from tasks.core import aws
from tasks.core.errors import ResourceTaken
from tasks.core.logs import run_logger
from tasks.lifecycle.kinds import (
    CLOUDWATCH_ALARM,
    ECR_REPOSITORY,
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    SAGEMAKER_TRANSFORM_JOB,
    SNS_TOPIC,
)
from tasks.sagemaker import lookup as sagemaker_lookup

if TYPE_CHECKING:  # the ledger calls `ours`; this module only names its types
    from tasks.lifecycle.ledger import Ledger, LedgerEntry

# Error codes AWS services use for a name that is taken; SageMaker says it in a ValidationException.
_EXISTS_CODES = frozenset(
    {
        "ResourceInUse",
        "ResourceInUseException",
        "ResourceAlreadyExistsException",
        "AlreadyExistsException",
        "RepositoryAlreadyExistsException",
        "EntityAlreadyExists",
    }
)


@dataclass(frozen=True)
class Found:
    """A resource that exists under a name: its ARN and its release-id tag (None when untagged)."""

    arn: str
    release_id: str | None


def is_already_exists(exc: BaseException) -> bool:
    """True when a create was refused because the name is taken.

    SageMaker: ValidationException 'Cannot create already existing model "arn…"' (and transform jobs:
    'a job with this name already exists'); SNS: InvalidParameter '… Topic already exists with
    different tags'.
    """
    code = aws.error_code(exc)
    if code is None:
        return False
    if code in _EXISTS_CODES:
        return True
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    if code == "ValidationException":
        return message.startswith("Cannot create already existing") or "already exists" in message
    return code == "InvalidParameter" and "already exists" in message


def lookup(kind: str, resource_id: str) -> Found | None:
    """What exists as `resource_id` of ledger kind `kind`; None when nothing does.

    KeyError for a kind without a lookup (S3 keys and scaling registrations are named by the release
    or snapshotted, never adopted).
    """
    return _LOOKUPS[kind](resource_id)


def ours(entry: LedgerEntry, release_id: str) -> bool | None:
    """Ledger's owner check for an intent: True when its resource exists and is `release_id`'s, False
    when it exists and is not, None when it does not exist. Kinds without a lookup count as ours."""
    if entry.kind not in _LOOKUPS:
        return True
    found = lookup(entry.kind, entry.resource_id)
    if found is None:
        return None
    return found.release_id == release_id


def create_once(
    ledger: Ledger,
    kind: str,
    resource_id: str,
    send: Callable[[], Mapping[str, Any]],
    *,
    arn_key: str,
    fix: str,
    **attrs: Any,
) -> str:
    """Create `resource_id` exactly once as far as the ledger can tell; return its ARN.

    The intent is recorded before `send` (the create call, retries and all) so an unwind looks for the
    resource even when no answer came back. "Already exists" adopts the resource when it carries this
    release's tag, and raises ResourceTaken (naming it and `fix`) when it does not.
    """
    entry = ledger.intend(kind, resource_id, **attrs)
    try:
        arn = str(send()[arn_key])
    except Exception as exc:
        if not is_already_exists(exc):
            raise
        found = lookup(kind, resource_id)
        if found is None:
            raise  # gone again between the two calls: the refusal stands, and the intent stays
        if found.release_id != ledger.release_id:
            taken = ResourceTaken(
                f"{kind} {resource_id}", release_id=ledger.release_id, owner=found.release_id, fix=fix
            )
            ledger.disown(entry, str(taken))
            raise taken from exc
        arn = found.arn
        run_logger().info("%s %s already existed as this release's: adopted", kind, resource_id)
    ledger.confirm(entry, arn=arn)
    return arn


def release_tag(tags: list[dict[str, str]] | None) -> str | None:
    """The release-id tag among AWS tags ({Key, Value} or ECR's {key, value}); None when absent."""
    for tag in tags or []:
        if tag.get("Key", tag.get("key")) == naming.RELEASE_ID_KEY:
            return tag.get("Value", tag.get("value"))
    return None


def _sagemaker(resource: sagemaker_lookup.Resource) -> Callable[[str], Found | None]:
    def look(name: str) -> Found | None:
        arn = sagemaker_lookup.arn_of(resource, name)
        if arn is None:
            return None
        return Found(arn, sagemaker_lookup.tags(arn).get(naming.RELEASE_ID_KEY))

    return look


def _topic(arn: str) -> Found | None:
    sns = aws.client("sns")
    try:
        sns.get_topic_attributes(TopicArn=arn)
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        raise
    return Found(arn, release_tag(sns.list_tags_for_resource(ResourceArn=arn).get("Tags")))


def _repository(name: str) -> Found | None:
    ecr = aws.client("ecr")
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        raise
    arn = str(found["repositoryArn"])
    return Found(arn, release_tag(ecr.list_tags_for_resource(resourceArn=arn).get("tags")))


def _alarm(name: str) -> Found | None:
    cloudwatch = aws.client("cloudwatch")
    alarms = cloudwatch.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    if not alarms:
        return None
    arn = str(alarms[0]["AlarmArn"])
    return Found(arn, release_tag(cloudwatch.list_tags_for_resource(ResourceARN=arn).get("Tags")))


_LOOKUPS: dict[str, Callable[[str], Found | None]] = {
    SAGEMAKER_MODEL: _sagemaker("model"),
    SAGEMAKER_ENDPOINT_CONFIG: _sagemaker("endpoint-config"),
    SAGEMAKER_ENDPOINT: _sagemaker("endpoint"),
    SAGEMAKER_TRANSFORM_JOB: _sagemaker("transform-job"),
    SNS_TOPIC: _topic,
    ECR_REPOSITORY: _repository,
    CLOUDWATCH_ALARM: _alarm,
}
