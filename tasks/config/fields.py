"""The reusable parts of the release configuration: string checks for AWS and Hub names (each raising
an error that carries its fix), the annotated field types built on them, the strict base of every
section, and secret references.

Every check here refuses with `_invalid`, whose problem and fix `tasks.config.issues` turns into a
`ConfigError` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

import regex
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from tasks.config.titles import field_title, model_title
from tasks.core.errors import ConfigError

_ERROR_TYPE = "release_config"


def _invalid(problem: str, fix: str, field: str = "") -> PydanticCustomError:
    """A validation error carrying its fix; `field` (relative to the model being validated) refines the
    location for checks that span several fields."""
    template = "{field}: {problem}; fix: {fix}" if field else "{problem}; fix: {fix}"
    return PydanticCustomError(_ERROR_TYPE, template, {"field": field, "problem": problem, "fix": fix})


# -- reusable string checks ---------------------------------------------------------------------------

# A SageMaker resource name, also as a JSON schema's pattern (a form checks it before the run starts).
SAGEMAKER_NAME_MAX_LENGTH = 63
SAGEMAKER_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
_SAGEMAKER_NAME = re.compile(SAGEMAKER_NAME_PATTERN.removesuffix("$") + r"\Z")
_RELEASE_ID = re.compile(r"^[a-z0-9](-?[a-z0-9])*\Z")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<key>.*))?\Z")
_ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}\Z")
_SNS_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?\Z")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+\Z")
_BURSTABLE = re.compile(r"^ml\.t\d[a-z]?\.")
_ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
_HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?\Z")
_ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}\Z")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+(?:/[A-Za-z0-9!_.*'()=+-]+)*\Z")
_IMAGE_URI = re.compile(
    r"^[a-z0-9.-]+(?::\d+)?/[a-z0-9._/-]+(?::[A-Za-z0-9_.-]{1,128}|@sha256:[0-9a-f]{64})\Z"
)


def _sagemaker_name(value: str) -> str:
    if len(value) > SAGEMAKER_NAME_MAX_LENGTH:
        raise _invalid(
            f"{value!r} is {len(value)} characters, SageMaker allows at most {SAGEMAKER_NAME_MAX_LENGTH}",
            f"shorten it to {SAGEMAKER_NAME_MAX_LENGTH} characters or fewer",
        )
    if not _SAGEMAKER_NAME.match(value):
        raise _invalid(
            f"{value!r} is not a valid SageMaker name",
            "use letters, digits and single hyphens only, starting and ending with a letter or digit "
            "(e.g. demo-embedder)",
        )
    return value


def _release_id(value: str) -> str:
    if len(value) > 32 or not _RELEASE_ID.match(value):
        raise _invalid(
            f"{value!r} is not a valid release id",
            "use at most 32 lowercase letters, digits and single hyphens, or omit it to get one like "
            "20250314-093015-3fa9",
        )
    return value


# S3's naming rules beyond the character set: these prefixes and suffixes are reserved for its own
# features (access point aliases, Object Lambda, directory and table buckets), so CreateBucket refuses them.
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", "--table-s3")
_BUCKET_FIX = (
    "use 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, "
    "and no 's3://' (e.g. my-team-models)"
)


def _bucket_problem(name: str) -> tuple[str, str] | None:
    """(problem, fix) when S3 refuses `name` as a bucket name, else None."""
    if not _BUCKET.match(name):
        return "is not a valid S3 bucket name", _BUCKET_FIX
    if ".." in name:
        return "is not a valid S3 bucket name: it has two dots in a row", _BUCKET_FIX
    if re.match(r"^\d+\.\d+\.\d+\.\d+\Z", name):
        return "is not a valid S3 bucket name: it is formatted as an IP address", _BUCKET_FIX
    for prefix in _BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return (
                f"is not a valid S3 bucket name: S3 reserves the prefix {prefix!r}",
                f"choose a name that does not start with {prefix!r} (e.g. my-team-models)",
            )
    for suffix in _BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return (
                f"is not a valid S3 bucket name: S3 reserves the suffix {suffix!r}",
                f"choose a name that does not end with {suffix!r} (e.g. my-team-models)",
            )
    return None


def _bucket(value: str) -> str:
    refused = _bucket_problem(value)
    if refused is not None:
        problem, fix = refused
        raise _invalid(f"{value!r} {problem}", fix)
    return value


def _s3_uri(value: str) -> str:
    match = _S3_URI.match(value)
    if not match or not match.group("key"):
        raise _invalid(
            f"{value!r} is not an S3 URI with a key prefix",
            "write it as s3://<bucket>/<prefix>/ (e.g. s3://my-team-models/async-output/)",
        )
    bucket = match.group("bucket")
    refused = _bucket_problem(bucket)
    if refused is not None:
        problem, fix = refused
        raise _invalid(f"{value!r} names {bucket!r}, which {problem}", f"for the bucket, {fix}")
    return value


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise _invalid(
            f"{value!r} is not an IAM role ARN",
            "give the SageMaker execution role as arn:aws:iam::<12-digit account>:role/<name> "
            "(e.g. arn:aws:iam::123456789012:role/SageMakerExecution)",
        )
    return value


def _sns_arn(value: str) -> str:
    if not _SNS_ARN.match(value):
        raise _invalid(
            f"{value!r} is not an SNS topic ARN",
            "give it as arn:aws:sns:<region>:<12-digit account>:<topic>, or set create_topics: true",
        )
    return value


def _instance_type(value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise _invalid(
            f"{value!r} is not a SageMaker instance type",
            "use an ml.* type such as ml.m5.xlarge, ml.c5.large or ml.g5.xlarge",
        )
    return value


def _ecr_repository(value: str) -> str:
    if not (2 <= len(value) <= 256) or not _ECR_REPOSITORY.match(value):
        raise _invalid(
            f"{value!r} is not a valid ECR repository name",
            "use 2-256 lowercase letters, digits and . _ - / (e.g. sagemaker-release-serving)",
        )
    return value


def _hub_repo_id(value: str) -> str:
    if not _HUB_REPO_ID.match(value) or ".." in value or "--" in value:
        raise _invalid(
            f"{value!r} is not a Hugging Face repo id",
            "write it as <owner>/<name>, e.g. sentence-transformers/all-MiniLM-L6-v2",
        )
    return value


def _s3_prefix(value: str) -> str:
    if value and not _S3_PREFIX.match(value):
        raise _invalid(
            f"{value!r} is not a clean key prefix",
            "use path segments of letters, digits and !_.*'()=+- joined by single '/', without leading "
            "or trailing '/' (e.g. sagemaker-release)",
        )
    return value


def _image_uri(value: str) -> str:
    if not _IMAGE_URI.match(value):
        raise _invalid(
            f"{value!r} is not a full image reference",
            "give <registry>/<repository>:<tag> or <registry>/<repository>@sha256:<digest> "
            "(e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:1.0)",
        )
    return value


# Docker's reference grammar: [registry[:port]/]path[:tag][@sha256:digest], path in lowercase components.
_REGISTRY_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_REGISTRY_PART}(?:\.{_REGISTRY_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z"
)


def _image_reference(value: str) -> str:
    # Empty means "not set" (the schema's form may send "" for a cleared field); resolved_base_image
    # falls back to the environment then.
    if value and (len(value) > 512 or not _IMAGE_REFERENCE.match(value)):
        raise _invalid(
            f"{value!r} is not an image reference",
            "give [<registry>/]<repository>[:<tag>][@sha256:<digest>] in lowercase, without spaces "
            "(e.g. python:3.11-slim or 127.0.0.1:5000/base:bookworm), or leave it empty",
        )
    return value


# What git (and so the Hub) refuses in a ref name, besides control characters.
_REF_FORBIDDEN = frozenset(" ~^:?*[\\")


def _revision_problem(value: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "contains a control character"
    if ".." in value:
        return "contains '..'"
    forbidden = "".join(sorted({c for c in value if c in _REF_FORBIDDEN}))
    if forbidden:
        return f"contains {forbidden!r}, which a git ref cannot hold"
    if "@{" in value or value == "@":
        return "contains '@{' or is '@'"
    parts = value.split("/")
    if "" in parts:
        return "has an empty path segment (a leading, trailing or doubled '/')"
    if value.endswith(".") or any(p.startswith(".") or p.endswith(".lock") for p in parts):
        return "has a segment starting with '.' or ending with '.' or '.lock'"
    return None


def _hub_revision(value: str) -> str:
    problem = _revision_problem(value)
    if problem is not None:
        raise _invalid(
            f"{value!r} {problem}",
            "give a branch, tag or commit as git names them (e.g. main, v1.0, refs/pr/1 or a 40-hex commit)",
        )
    return value


# SageMaker's limit on one environment value; a secret's value is held to it once resolved.
MAX_ENVIRONMENT_VALUE = 1024


def _environment(value: dict[str, str | SecretReference]) -> dict[str, str | SecretReference]:
    for key, item in value.items():
        if not _ENV_KEY.match(key):
            raise _invalid(
                f"{key!r} is not a valid environment variable name",
                "use letters, digits and underscores, not starting with a digit",
            )
        if isinstance(item, str) and len(item) > MAX_ENVIRONMENT_VALUE:
            raise _invalid(
                f"the value of {key} is {len(item)} characters",
                f"keep each value within {MAX_ENVIRONMENT_VALUE}",
            )
    if len(value) > 100:
        raise _invalid(f"{len(value)} environment variables", "SageMaker accepts at most 100")
    return value


# SageMaker's rule for tag keys and values (TagKey, TagValue in its service model); Python's `re` has no
# Unicode properties, the `regex` package reads them as AWS's Java does.
_TAG_CHARACTER_CLASS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]"
TAG_PATTERN = _TAG_CHARACTER_CLASS + "*"
_TAG_CHARACTER = regex.compile(_TAG_CHARACTER_CLASS)
_TAG_FIX = "use only letters, numbers, spaces and _ . : / = + - @"


def _tag_characters(text: str) -> str | None:
    """The characters of `text` a SageMaker tag cannot hold, shown as Python shows them; None when none."""
    refused = dict.fromkeys(c for c in text if not _TAG_CHARACTER.fullmatch(c))
    return ", ".join(repr(c) for c in refused) if refused else None


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not 1 <= len(key) <= 128 or len(item) > 256:
            raise _invalid(
                f"tag {key!r} is too long", "keep keys within 128 characters and values within 256"
            )
        refused = _tag_characters(key)
        if refused is not None:
            raise _invalid(
                f"tag key {key!r} holds {refused}, which SageMaker refuses in a tag key",
                f"rename the tag: {_TAG_FIX}",
            )
        refused = _tag_characters(item)
        if refused is not None:
            raise _invalid(
                f"the value of tag {key!r} holds {refused}, which SageMaker refuses in a tag value",
                f"change the value: {_TAG_FIX}",
            )
        if key.lower().startswith("aws:"):
            raise _invalid(f"tag {key!r} uses the reserved aws: prefix", "rename the tag")
        if key in ("managed-by", "release-id"):
            raise _invalid(f"tag {key!r} is set by the release itself", "remove it from tags")
    if len(value) > 40:
        raise _invalid(f"{len(value)} tags", "give at most 40: AWS allows 50 per resource and we add our own")
    return value


def _alarm_names(value: list[str]) -> list[str]:
    for name in value:
        if not 1 <= len(name) <= 255:
            raise _invalid(f"alarm name {name!r} is not 1-255 characters", "use the alarm's exact name")
    return value


SageMakerName = Annotated[str, AfterValidator(_sagemaker_name)]
ReleaseId = Annotated[str, AfterValidator(_release_id)]
BucketName = Annotated[str, AfterValidator(_bucket)]
S3Uri = Annotated[str, AfterValidator(_s3_uri)]
RoleArn = Annotated[str, AfterValidator(_role_arn)]
SnsArn = Annotated[str, AfterValidator(_sns_arn)]
InstanceType = Annotated[str, AfterValidator(_instance_type)]
EcrRepository = Annotated[str, AfterValidator(_ecr_repository)]
HubRepoId = Annotated[str, AfterValidator(_hub_repo_id)]
KeyPrefix = Annotated[str, AfterValidator(_s3_prefix)]
ImageUri = Annotated[str, AfterValidator(_image_uri)]
ImageReference = Annotated[str, AfterValidator(_image_reference)]
HubRevision = Annotated[str, AfterValidator(_hub_revision)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
AlarmNames = Annotated[list[str], AfterValidator(_alarm_names)]


def _json_payload(value: Any) -> Any:
    if not isinstance(value, dict | list | str):
        raise _invalid(
            f"{value!r} is not a request body",
            "give a JSON object or array, or a string sent as it is (e.g. a CSV line)",
        )
    if not _all_finite(value):
        raise _invalid(
            "the body holds a non-finite number (.inf or .nan), which JSON cannot carry",
            "use finite numbers in the body",
        )
    return value


def _all_finite(value: Any) -> bool:
    # A loop, not recursion: a body nested deeper than Python's recursion limit must be refused, not crash.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


JsonPayload = Annotated[Any, AfterValidator(_json_payload)]


def is_burstable(instance_type: str) -> bool:
    """ml.t2/ml.t3… instances: cheap, but Application Auto Scaling cannot scale them."""
    return _BURSTABLE.match(instance_type) is not None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of an s3:// URI."""
    match = _S3_URI.match(uri)
    if not match:
        raise ValueError(f"{uri!r} is not an s3:// URI")
    return match.group("bucket"), match.group("key") or ""


class _Section(BaseModel):
    # strict: YAML's `true` must not pass as the number 1 (nor 1.5 or "2" as a count); floats still take
    # ints. allow_inf_nan off: `.inf` would switch a bound off (smoke.max_latency_ms) and `.nan` every
    # comparison with it.
    # hide_input_in_errors: pydantic's own error text (which Prefect may show for flow parameters) would
    # otherwise quote the values given, and an environment value may be a secret.
    # field_title_generator, model_title_generator: the form's labels read as words (tasks/config/titles.py).
    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        frozen=False,
        strict=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
        field_title_generator=field_title,
        model_title_generator=model_title,
    )


# -- secret references --------------------------------------------------------------------------------

PREFECT_SECRET_PREFIX = "prefect:"
# Prefect's rule for block document names.
_PREFECT_BLOCK_NAME = re.compile(r"^[a-z0-9-]{1,255}\Z")
_SECRETS_MANAGER_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}\Z"
)
_REFERENCE_FIX = (
    "give prefect:<block-name> (a Prefect Secret block, e.g. prefect:demo-api-key) or a Secrets Manager "
    "ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
)
# Where a value may be a secret given literally: errors about these fields never quote the value.
SENSITIVE_FIELDS = ("endpoint.environment", "image.build_args")


def _secret_reference(value: str) -> str:
    if value.startswith(PREFECT_SECRET_PREFIX):
        if _PREFECT_BLOCK_NAME.match(value[len(PREFECT_SECRET_PREFIX) :]):
            return value
        raise _invalid(
            "names no valid Prefect block (block names are lowercase letters, digits and hyphens)",
            "give prefect:<block-name>, e.g. prefect:demo-api-key",
        )
    if _SECRETS_MANAGER_ARN.match(value):
        return value
    # Not quoted: whoever wrote the secret itself here instead of a reference must not see it echoed.
    raise _invalid(
        "is not a secret reference (the text is not shown, in case it is the secret)", _REFERENCE_FIX
    )


class SecretReference(_Section):
    """A value kept out of the config: it is fetched when the release needs it, and never logged, stored
    or shown."""

    secret: Annotated[str, AfterValidator(_secret_reference)] = Field(
        description="`prefect:<block-name>` for a Prefect Secret block, or the ARN of an AWS Secrets Manager "
        "secret (its SecretString is used).",
    )

    @property
    def prefect_block(self) -> str | None:
        """The Prefect Secret block's name, or None for a Secrets Manager secret."""
        if self.secret.startswith(PREFECT_SECRET_PREFIX):
            return self.secret[len(PREFECT_SECRET_PREFIX) :]
        return None

    @property
    def region(self) -> str | None:
        """The region of a Secrets Manager ARN, or None for a Prefect block."""
        match = _SECRETS_MANAGER_ARN.match(self.secret)
        return match.group("region") if match else None


_KIND_WORDS: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "a list",
    date: "a date",
}


def _text_or_secret(value: Any) -> Any:
    """One value of a mapping that takes text or a secret reference: a `{secret: ...}` mapping becomes a
    SecretReference here, so the union below never reports one error per alternative (and pydantic
    never quotes the value)."""
    if isinstance(value, str | SecretReference):
        return value
    if isinstance(value, dict):
        if set(value) != {"secret"} or not isinstance(value["secret"], str):
            # Keys not quoted either: YAML reads `{s3cr3t}` as a mapping whose key is the text.
            raise _invalid(
                "is a mapping but not a secret reference, which has the one key secret",
                "write it as {secret: <reference>}, where a reference is prefect:<block-name> or a "
                "Secrets Manager ARN; or give text",
            )
        return SecretReference(secret=_secret_reference(value["secret"]))
    kind = _KIND_WORDS.get(type(value), "a value of another type")
    raise _invalid(
        f"is {kind}, not text (the value is not shown: it may be a secret)",
        "quote it in YAML (e.g. '12345'), or give a secret reference: {secret: prefect:<block-name>} or "
        "{secret: arn:aws:secretsmanager:...}",
    )


TextOrSecret = Annotated[str | SecretReference, BeforeValidator(_text_or_secret)]
Environment = Annotated[dict[str, TextOrSecret], AfterValidator(_environment)]


def is_sensitive(dotted: str) -> bool:
    """Whether a value at this dotted field may be a secret given literally (never quote it)."""
    return any(dotted == f or dotted.startswith(f + ".") for f in SENSITIVE_FIELDS)


def shown_value(dotted: str, value: Any) -> str:
    """`value` as an error may quote it: repr, or a placeholder for fields that may hold secrets."""
    return "(a value not shown)" if is_sensitive(dotted) else repr(value)


_CHECKS: dict[str, Callable[[str], str]] = {
    "release_id": _release_id,
    "bucket": _bucket,
    "key_prefix": _s3_prefix,
    "sagemaker_name": _sagemaker_name,
}
ValueKind = Literal["release_id", "bucket", "key_prefix", "sagemaker_name"]


def check_value(field: str, value: str, kind: ValueKind, *, subject: str = "release config") -> str:
    """`value` checked as the config checks a field of that kind, for values given outside a config (a
    command-line flag); a refusal is a ConfigError naming `field`."""
    try:
        return _CHECKS[kind](value)
    except PydanticCustomError as exc:
        ctx = exc.context or {}
        raise ConfigError(field, str(ctx["problem"]), str(ctx["fix"]), subject=subject) from None
