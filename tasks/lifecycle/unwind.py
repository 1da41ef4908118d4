"""How each kind of ledger entry is undone, and what an unwind must leave alone.

Undoing is not always deleting: an endpoint that served before the release (entry attrs carry
`previous_config`) is put back on that config; a scalable target that was registered before
(`previous` snapshot) is registered again as it was. Anything the live endpoint still uses after the
endpoint itself was handled (its config, its models, their model data) is kept, never deleted, and so
is model data another release still references.

Images are shared across endpoints (the tag is the hash of the build context), so an image, or a
repository, is kept while another release references it (tasks/image/image_refs.py) and, whatever the
references say, while any endpoint's model names it (tasks/sagemaker/in_use.py). A repository is deleted only
once it is empty: whatever is left in it is someone else's.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.artifact import model_refs
from tasks.config import split_s3_uri
from tasks.core import aws
from tasks.core.logs import run_logger
from tasks.image import image_refs
from tasks.image.ecr import digest_in_ecr, repository_has_images
from tasks.image.image_name import ImageName
from tasks.image.registry import delete_from_registry
from tasks.lifecycle.kinds import (
    AUTOSCALING_POLICY,
    AUTOSCALING_TARGET,
    CLOUDWATCH_ALARM,
    ECR_IMAGE,
    ECR_REPOSITORY,
    S3_OBJECT,
    S3_PREFIX,
    SAGEMAKER_ENDPOINT,
    SAGEMAKER_ENDPOINT_CONFIG,
    SAGEMAKER_MODEL,
    SAGEMAKER_TRANSFORM_JOB,
    SNS_TOPIC,
)
from tasks.lifecycle.ledger import Deleter, LedgerEntry
from tasks.sagemaker import hosting, in_use, scaling


def deleters(*, endpoint_timeout_s: float = 1800, poll_interval_s: float = 10.0) -> dict[str, Deleter]:
    """Kind -> function undoing one entry; waits are bounded by the given limits."""

    def endpoint(entry: LedgerEntry) -> None:
        previous = entry.attrs.get("previous_config")
        if previous:
            hosting.restore_endpoint(
                entry.resource_id, str(previous), timeout_s=endpoint_timeout_s, interval_s=poll_interval_s
            )
        else:
            hosting.delete_endpoint(
                entry.resource_id, timeout_s=endpoint_timeout_s, interval_s=poll_interval_s
            )

    def transform_job(entry: LedgerEntry) -> None:
        hosting.stop_transform_job(
            entry.resource_id, timeout_s=endpoint_timeout_s, interval_s=poll_interval_s
        )

    return {
        S3_OBJECT: delete_s3_object,
        S3_PREFIX: delete_s3_prefix,
        ECR_REPOSITORY: delete_repository,
        ECR_IMAGE: delete_image,
        SAGEMAKER_MODEL: lambda entry: hosting.delete_model(entry.resource_id),
        SAGEMAKER_ENDPOINT_CONFIG: lambda entry: hosting.delete_endpoint_config(entry.resource_id),
        SAGEMAKER_ENDPOINT: endpoint,
        SAGEMAKER_TRANSFORM_JOB: transform_job,
        AUTOSCALING_TARGET: undo_target,
        AUTOSCALING_POLICY: delete_policy,
        CLOUDWATCH_ALARM: lambda entry: scaling.delete_alarm(entry.resource_id),
        SNS_TOPIC: lambda entry: aws.client("sns").delete_topic(
            TopicArn=entry.attrs.get("arn", entry.resource_id)
        ),
    }


def _bucket_and_key(entry: LedgerEntry) -> tuple[str, str]:
    if "bucket" in entry.attrs and "key" in entry.attrs:
        return str(entry.attrs["bucket"]), str(entry.attrs["key"])
    return split_s3_uri(entry.resource_id)


def delete_s3_object(entry: LedgerEntry) -> None:
    bucket, key = _bucket_and_key(entry)
    aws.client("s3").delete_object(Bucket=bucket, Key=key)


def delete_s3_prefix(entry: LedgerEntry) -> None:
    """Every object under the prefix (an uncompressed model's files)."""
    bucket = str(entry.attrs.get("bucket") or split_s3_uri(entry.resource_id)[0])
    prefix = str(entry.attrs.get("prefix") or split_s3_uri(entry.resource_id)[1])
    if not prefix.endswith("/"):
        prefix += "/"  # never widen a model's prefix to its siblings (models/abc vs models/abcd)
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RuntimeError(f"could not delete s3://{bucket}/{first['Key']}: {first.get('Message')}")


def delete_repository(entry: LedgerEntry) -> None:
    """The release created this repository; it goes only when empty (never with force): an image
    pushed into it since belongs to another release, and ECR refuses the delete rather than take it."""
    aws.client("ecr").delete_repository(repositoryName=entry.resource_id)


def delete_image(entry: LedgerEntry) -> None:
    """Untag the image in ECR and, when it was pushed to a separate registry, delete it there too
    (unless another tag of the repository still names the same digest)."""
    repository, tag = str(entry.attrs["repository"]), str(entry.attrs["tag"])
    ecr = aws.client("ecr")
    answer = ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": tag}])
    problems = [f for f in answer.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
    if problems:
        raise RuntimeError(f"could not delete image {entry.resource_id}: {problems[0].get('failureReason')}")
    registry, digest = entry.attrs.get("registry"), entry.attrs.get("digest")
    if registry and digest and not digest_in_ecr(repository, str(digest)):
        delete_from_registry(str(registry), repository, tag, str(digest))


def undo_target(entry: LedgerEntry) -> None:
    """Remove this release's registration; put back what was registered before, if anything."""
    scaling.remove_target(entry.resource_id)
    previous = entry.attrs.get("previous")
    if previous:
        scaling.restore(previous)


def delete_policy(entry: LedgerEntry) -> None:
    try:
        scaling.delete_policy(str(entry.attrs["target"]), entry.resource_id)
    except Exception as exc:
        # Deregistering a target (or its earlier unwind) removes its policies too.
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        if not message.startswith("No scaling policy found"):
            raise


def keep_in_use(endpoint_name: str | None) -> Callable[[LedgerEntry], bool]:
    """`keep` for Ledger.unwind: spare what `endpoint_name` serves right now, model data another
    release holds a reference to (tasks/artifact/model_refs.py), and images and repositories any endpoint
    uses or another release references (`keep_image`).

    The endpoint's own entry is unwound before its config and models (last in, first out), so by then
    the endpoint is back on its old config or gone; if putting it back failed, the new config, model
    and model data it still serves are kept rather than pulled from under live traffic.
    """

    def keep(entry: LedgerEntry) -> bool:
        if entry.kind in (S3_OBJECT, S3_PREFIX) and model_refs.other_holders(entry):
            return True
        if entry.kind in (ECR_IMAGE, ECR_REPOSITORY):
            return keep_image(entry)
        if endpoint_name is None or entry.kind not in _SERVED_KINDS:
            return False
        live = hosting.live_endpoint(endpoint_name)
        if live is None:
            return False
        if entry.kind == SAGEMAKER_ENDPOINT_CONFIG:
            return live.config_name == entry.resource_id
        if entry.kind == SAGEMAKER_MODEL:
            return any(v.model_name == entry.resource_id for v in live.variants)
        served_urls = {v.model_data.url for v in live.variants if v.model_data is not None}
        return _s3_uri_of(entry) in served_urls

    return keep


def keep_image(entry: LedgerEntry) -> bool:
    """Whether an ecr:image or ecr:repository entry must stay: another release references it, a model
    of any endpoint names it (or an image in the repository), or the repository is not empty.

    When that cannot be told (S3, SageMaker or ECR refuse to answer), the entry stays: a leaked
    image costs storage, a deleted one costs a live endpoint its next instance.
    """
    try:
        reason = _image_keep_reason(entry)
    except Exception as exc:
        run_logger().warning(
            "keeping %s: could not tell whether anything else uses it (%s: %s); fix: once S3, "
            "SageMaker and ECR answer, delete it by hand if no endpoint uses it",
            entry.describe(),
            type(exc).__name__,
            exc,
        )
        return True
    if reason is not None:
        run_logger().info("keeping %s: %s", entry.describe(), reason)
    return reason is not None


def _image_keep_reason(entry: LedgerEntry) -> str | None:
    holders = image_refs.other_holders(entry)
    if holders:
        return "referenced by " + ", ".join(sorted(holders)[:5])
    usage = in_use.endpoint_usage(scaling=False)
    if entry.kind == ECR_IMAGE:
        name = ImageName(
            str(entry.attrs.get("repository", "")),
            str(entry.attrs["tag"]) if entry.attrs.get("tag") else None,
            str(entry.attrs["digest"]) if entry.attrs.get("digest") else None,
        )
        user = usage.image_user(name)
    else:
        user = usage.repository_user(entry.resource_id)
    if user is not None:
        return f"endpoint {user} uses it"
    if entry.kind == ECR_REPOSITORY and repository_has_images(entry.resource_id):
        return "it holds images of other releases"
    return None


_SERVED_KINDS = frozenset({SAGEMAKER_ENDPOINT_CONFIG, SAGEMAKER_MODEL, S3_OBJECT, S3_PREFIX})


def _s3_uri_of(entry: LedgerEntry) -> str:
    if entry.resource_id.startswith("s3://"):
        uri = entry.resource_id
    else:
        bucket, key = _bucket_and_key(entry)
        uri = f"s3://{bucket}/{key}"
    return uri + "/" if entry.kind == S3_PREFIX and not uri.endswith("/") else uri
