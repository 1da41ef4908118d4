"""Deterministic, unique-per-release resource names, S3 keys and tags.

SageMaker names (models, endpoint configs, endpoints, variants, jobs) must match
`[a-zA-Z0-9](-*[a-zA-Z0-9])*` and be at most 63 characters. A name that would be longer keeps its
readable start and ends with a hash of the full name, so it stays unique and stable across reruns.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.config.release import ReleaseConfig

MAX_NAME = 63
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
RELEASE_ID_PATTERN = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")
MANAGED_BY_KEY = "managed-by"
MANAGED_BY_VALUE = "sagemaker-release"
RELEASE_ID_KEY = "release-id"
ENDPOINT_KEY = "sagemaker-release:endpoint"
_INVALID = re.compile(r"[^a-zA-Z0-9-]+")
_HASH_LEN = 8


def new_release_id(now: datetime | None = None, *, token: str | None = None) -> str:
    """A fresh release id like `20250314-093015-3fa9`: sortable by time, unique by a random suffix."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    suffix = token if token is not None else secrets.token_hex(2)
    return f"{moment:%Y%m%d-%H%M%S}-{suffix}"


def fit(*parts: str, limit: int = MAX_NAME) -> str:
    """Join `parts` with "-" into a valid SageMaker name of at most `limit` characters."""
    joined = "-".join(p for p in parts if p)
    cleaned = _INVALID.sub("-", joined).strip("-")
    if not cleaned:
        raise ValueError(f"cannot build a resource name from {parts!r}")
    if len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(cleaned.encode()).hexdigest()[:_HASH_LEN]
    head = cleaned[: limit - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}"


def is_valid_name(name: str, limit: int = MAX_NAME) -> bool:
    return 0 < len(name) <= limit and NAME_PATTERN.match(name) is not None


def model_name(config: ReleaseConfig, release_id: str, suffix: str = "") -> str:
    """The SageMaker model of this release (`suffix` tells apart several models of one release)."""
    return fit(config.endpoint.name, release_id, suffix)


def endpoint_config_name(config: ReleaseConfig, release_id: str, suffix: str = "") -> str:
    """The endpoint config of this release; config names cannot be reused, so it carries the release id."""
    return fit(config.endpoint.name, release_id, suffix)


def variant_name(config: ReleaseConfig, release_id: str) -> str:
    """The production variant of the new model when it joins an endpoint beside the old one."""
    return fit(config.endpoint.variant_name, release_id)


def transform_job_name(config: ReleaseConfig, release_id: str) -> str:
    return fit(config.endpoint.name, release_id)


def alarm_name(config: ReleaseConfig, release_id: str, what: str) -> str:
    """A CloudWatch alarm of this release, e.g. what="5xx", "p99-latency", "backlog-without-capacity"."""
    return fit(config.endpoint.name, release_id, what, limit=255)


def scaling_policy_name(config: ReleaseConfig, release_id: str, what: str) -> str:
    return fit(config.endpoint.name, release_id, what, limit=255)


def topic_name(config: ReleaseConfig, release_id: str, what: str) -> str:
    """An SNS topic of this release (what="success" or "error"); topic names allow 256 characters."""
    return fit(config.endpoint.name, release_id, what, limit=256)


def scalable_resource_id(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's ResourceId of a SageMaker variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def _prefix(prefix: str) -> str:
    return prefix.strip("/")


def model_archive_key(prefix: str, sha256: str) -> str:
    """Content-addressed key of a model.tar.gz: the same bytes always land at the same key."""
    return "/".join(p for p in (_prefix(prefix), "models", sha256, "model.tar.gz") if p)


def model_prefix_key(prefix: str, digest: str) -> str:
    """Content-addressed prefix (ending in "/") of an uncompressed model (S3Prefix, CompressionType None)."""
    return "/".join(p for p in (_prefix(prefix), "models", digest) if p) + "/"


def model_refs_prefix(prefix: str, digest: str) -> str:
    """Where releases using the model data named `digest` keep their references
    (tasks/artifact/model_refs.py)."""
    return "/".join(p for p in (_prefix(prefix), "model-refs", digest) if p) + "/"


def model_digest(prefix: str, model_data_url: str) -> str | None:
    """The digest in a content-addressed model data URL of ours, or None for any other URL."""
    _, _, path = model_data_url.removeprefix("s3://").partition("/")
    head = "/".join(p for p in (_prefix(prefix), "models") if p) + "/"
    if not path.startswith(head):
        return None
    digest = path[len(head) :].split("/", 1)[0]
    return digest or None


def release_key(prefix: str, release_id: str, name: str) -> str:
    """Key of a per-release object, e.g. the ledger (`name="ledger.json"`) or the summary."""
    return "/".join(p for p in (_prefix(prefix), "releases", release_id, name) if p)


def ledger_key(prefix: str, release_id: str) -> str:
    return release_key(prefix, release_id, "ledger.json")


def tags(config: ReleaseConfig, release_id: str) -> list[dict[str, str]]:
    """AWS tag list for every resource of the release: the user's tags plus ours (ours win)."""
    merged = dict(config.tags)
    merged[MANAGED_BY_KEY] = MANAGED_BY_VALUE
    merged[RELEASE_ID_KEY] = release_id
    merged[ENDPOINT_KEY] = config.endpoint.name
    return [{"Key": key, "Value": value} for key, value in sorted(merged.items())]


def tag_dict(config: ReleaseConfig, release_id: str) -> dict[str, str]:
    """The same tags as a mapping, for APIs that take one (S3 object tagging via ExtraArgs, ECR…)."""
    return {tag["Key"]: tag["Value"] for tag in tags(config, release_id)}
