"""The release configuration: one typed model, loaded from YAML or given as flow parameters.

Every model forbids unknown keys and every field has a description, because Prefect renders this schema
as the release form. Bad input is refused here, before any resource exists, with an error that names the
field and the fix (`ConfigError`). Checks that need the outside world (does the model folder hold
weights?) happen when the model source is resolved, still before anything is created.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import types
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from tasks.config.naming import new_release_id
from tasks.core.errors import ConfigError, ConfigIssue

DEFAULT_BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_ENV = "SAGEMAKER_RELEASE_BASE_IMAGE"

_ERROR_TYPE = "release_config"


def _invalid(problem: str, fix: str, field: str = "") -> PydanticCustomError:
    """A validation error carrying its fix; `field` (relative to the model being validated) refines the
    location for checks that span several fields."""
    template = "{field}: {problem}; fix: {fix}" if field else "{problem}; fix: {fix}"
    return PydanticCustomError(_ERROR_TYPE, template, {"field": field, "problem": problem, "fix": fix})


# -- reusable string checks ---------------------------------------------------------------------------

_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*\Z")
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
    if len(value) > 63:
        raise _invalid(
            f"{value!r} is {len(value)} characters, SageMaker allows at most 63",
            "shorten it to 63 characters or fewer",
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


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not 1 <= len(key) <= 128 or len(item) > 256:
            raise _invalid(
                f"tag {key!r} is too long", "keep keys within 128 characters and values within 256"
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
    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        frozen=False,
        strict=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
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
        description="prefect:<block-name> for a Prefect Secret block, or the ARN of an AWS Secrets Manager "
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


def secret_references(config: ReleaseConfig) -> list[tuple[str, SecretReference]]:
    """Every secret reference of the config with its dotted field, in the order the release uses them."""
    found = [
        (f"endpoint.environment.{key}", value)
        for key, value in config.endpoint.environment.items()
        if isinstance(value, SecretReference)
    ]
    if config.image.source == "build":
        found += [
            (f"image.build_args.{key}", value)
            for key, value in config.image.build_args.items()
            if isinstance(value, SecretReference)
        ]
    return found


# -- sections -----------------------------------------------------------------------------------------


class ModelSourceConfig(_Section):
    """Where the model comes from: a Hugging Face Hub repo pinned to a commit, or a local folder."""

    repo_id: HubRepoId | None = Field(
        None,
        description="Hugging Face Hub repo id, e.g. sentence-transformers/all-MiniLM-L6-v2. "
        "Set this or local_path.",
    )
    revision: HubRevision = Field(
        "main",
        min_length=1,
        max_length=255,
        description="Branch, tag or commit of the Hub repo; resolved to a commit before download.",
    )
    local_path: str | None = Field(
        None,
        min_length=1,
        description="A local folder holding the model files (relative to the working directory). "
        "Set this or repo_id.",
    )
    allow_patterns: list[str] | None = Field(
        None, description="Only download Hub files matching these glob patterns (e.g. '*.safetensors')."
    )
    ignore_patterns: list[str] | None = Field(
        None, description="Skip Hub files matching these glob patterns (e.g. '*.onnx', 'openvino/*')."
    )
    token_env: str = Field(
        "HF_TOKEN",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the Hub token for private or gated repos; "
        "the token itself never goes into the config.",
    )
    task: str | None = Field(
        None,
        pattern=r"^[a-z0-9-]+$",
        description="Transformers pipeline task for the serving container (HF_TASK), e.g. "
        "feature-extraction; empty lets the container infer it from the model's config.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSourceConfig:
        if (self.repo_id is None) == (self.local_path is None):
            raise _invalid(
                "give exactly one model source",
                "set model.repo_id (with model.revision) for the Hub, or model.local_path for a folder",
                field="repo_id",
            )
        return self

    def describe(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.repo_id else f"local folder {self.local_path}"


class PackagingConfig(_Section):
    """How the model files reach S3."""

    format: Literal["tar.gz", "s3_prefix"] = Field(
        "tar.gz",
        description="tar.gz: one deterministic model.tar.gz (ModelDataUrl, CompressionType Gzip). "
        "s3_prefix: the files as they are under a content-addressed prefix (S3Prefix, CompressionType "
        "None) -- no compression, faster for large models.",
    )
    compression_level: int = Field(
        1,
        ge=0,
        le=3,
        description="igzip level 0-3 for tar.gz (weights barely compress; 1 is the sweet spot).",
    )
    threads: int = Field(
        0, ge=0, le=256, description="Compression threads for tar.gz; 0 uses every CPU of the worker."
    )


class StorageConfig(_Section):
    """The S3 bucket that holds model data and release ledgers."""

    bucket: BucketName = Field(description="S3 bucket for model data and release ledgers (owned by you).")
    prefix: KeyPrefix = Field(
        "sagemaker-release", description="Key prefix inside the bucket, without leading or trailing '/'."
    )
    create_bucket: bool = Field(
        False,
        description="Create the bucket when it does not exist. It is shared across releases, so a release "
        "never deletes it.",
    )
    multipart_threshold_mb: int = Field(
        64, ge=5, le=5120, description="Files larger than this upload in parts (MiB)."
    )
    multipart_chunk_mb: int = Field(64, ge=5, le=5120, description="Size of each uploaded part (MiB).")
    max_concurrency: int = Field(8, ge=1, le=64, description="Parts uploaded in parallel.")


class HuggingFaceDlcConfig(_Section):
    """A prebuilt AWS Hugging Face inference container, looked up with the SageMaker SDK's image URIs."""

    transformers_version: str = Field("4.49.0", description="Transformers version of the container.")
    pytorch_version: str = Field("2.6.0", description="PyTorch version of the container.")
    py_version: str = Field("py312", pattern=r"^py3\d+$", description="Python version tag, e.g. py312.")


class ImageConfig(_Section):
    """The serving image: built from container/ and pushed to ECR, a prebuilt URI, or a Hugging Face DLC."""

    source: Literal["build", "prebuilt", "huggingface_dlc"] = Field(
        "build",
        description="build: docker build the context and push to ECR (skipped when the tag exists). "
        "prebuilt: use image_uri as is. huggingface_dlc: AWS's Hugging Face inference image.",
    )
    context: str = Field("container", min_length=1, description="Build context directory (source build).")
    dockerfile: str = Field("Dockerfile", min_length=1, description="Dockerfile inside the context.")
    base_image: ImageReference | None = Field(
        None,
        description=f"Base image passed as BASE_IMAGE; empty uses ${BASE_IMAGE_ENV}, "
        f"else {DEFAULT_BASE_IMAGE}.",
    )
    build_args: dict[str, TextOrSecret] = Field(
        default_factory=dict,
        description="Extra docker build arguments. A value given as {secret: <reference>} is no build "
        "argument: it is a BuildKit secret with the argument's name as its id (RUN "
        "--mount=type=secret,id=<name> reads it at /run/secrets/<name>), so it never enters the image or "
        "its history; such builds run the docker CLI with BuildKit.",
    )
    repository: EcrRepository = Field(
        "sagemaker-release-serving",
        description="ECR repository for built images; created (scan on push, immutable tags) when absent.",
    )
    image_uri: ImageUri | None = Field(None, description="Full image reference (prebuilt source only).")
    huggingface_dlc: HuggingFaceDlcConfig = Field(
        default_factory=HuggingFaceDlcConfig, description="Versions of the DLC (huggingface_dlc source)."
    )

    @model_validator(mode="after")
    def _source_fields(self) -> ImageConfig:
        if self.source == "prebuilt" and self.image_uri is None:
            raise _invalid(
                "a prebuilt image needs its URI",
                "set image.image_uri, or choose image.source: build",
                field="image_uri",
            )
        if self.source != "prebuilt" and self.image_uri is not None:
            raise _invalid(
                f"image_uri is only used with source prebuilt, not {self.source}",
                "remove image.image_uri, or set image.source: prebuilt",
                field="image_uri",
            )
        return self

    def resolved_base_image(self) -> str:
        return self.base_image or os.environ.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE


class ServerlessConfig(_Section):
    """Serverless inference: SageMaker scales by itself; cold starts are accepted."""

    memory_mb: int = Field(
        2048, description="Memory in MB: 1024, 2048, 3072, 4096, 5120 or 6144 (vCPUs scale with it)."
    )
    max_concurrency: int = Field(5, description="Concurrent invocations, 1-200.")
    provisioned_concurrency: int | None = Field(
        None, description="Warm capacity kept ready, 1..max_concurrency; empty for none."
    )

    @model_validator(mode="after")
    def _ranges(self) -> ServerlessConfig:
        if not 1024 <= self.memory_mb <= 6144 or self.memory_mb % 1024:
            raise _invalid(
                f"memory_mb {self.memory_mb} is not a serverless memory size",
                "use one of 1024, 2048, 3072, 4096, 5120, 6144",
                field="memory_mb",
            )
        if not 1 <= self.max_concurrency <= 200:
            raise _invalid(
                f"max_concurrency {self.max_concurrency} is out of range",
                "use a value from 1 to 200",
                field="max_concurrency",
            )
        if self.provisioned_concurrency is not None and not (
            1 <= self.provisioned_concurrency <= self.max_concurrency
        ):
            raise _invalid(
                f"provisioned_concurrency {self.provisioned_concurrency} is out of range",
                f"use a value from 1 to max_concurrency ({self.max_concurrency}), or leave it empty",
                field="provisioned_concurrency",
            )
        return self


class AsyncInferenceConfig(_Section):
    """Asynchronous inference: requests and results in S3, optional SNS notifications."""

    output_path: S3Uri | None = Field(
        None, description="S3 URI where results land, e.g. s3://bucket/async/output/ (required)."
    )
    failure_path: S3Uri | None = Field(None, description="S3 URI where error reports land.")
    success_topic_arn: SnsArn | None = Field(None, description="SNS topic told about each success.")
    error_topic_arn: SnsArn | None = Field(None, description="SNS topic told about each failure.")
    create_topics: bool = Field(
        False, description="Create success and error topics for this release (removed with it on failure)."
    )
    max_concurrent_invocations_per_instance: int | None = Field(
        None, ge=1, le=1000, description="Requests each instance works on at once; empty lets SageMaker pick."
    )

    @model_validator(mode="after")
    def _topics(self) -> AsyncInferenceConfig:
        if self.create_topics and (self.success_topic_arn or self.error_topic_arn):
            raise _invalid(
                "create_topics and topic ARNs are both set",
                "either set create_topics: true, or give success_topic_arn/error_topic_arn",
                field="create_topics",
            )
        return self


class BatchTransformConfig(_Section):
    """Batch transform: score a dataset in S3 with a transform job, no endpoint left running."""

    input_path: S3Uri | None = Field(None, description="S3 URI of the input objects (required).")
    output_path: S3Uri | None = Field(None, description="S3 URI for the outputs (required).")
    content_type: str = Field("application/json", description="MIME type of the input records.")
    accept: str | None = Field(None, description="MIME type of the outputs; empty uses the container's.")
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = Field(
        "Line", description="How input files split into records."
    )
    batch_strategy: Literal["SingleRecord", "MultiRecord"] = Field(
        "MultiRecord", description="Records per request."
    )
    assemble_with: Literal["None", "Line"] = Field("Line", description="How outputs are joined.")
    max_payload_mb: int = Field(6, ge=0, le=100, description="Largest request body in MB.")
    max_concurrent_transforms: int = Field(
        0, ge=0, le=100, description="Parallel requests; 0 lets SageMaker pick."
    )


class EndpointConfig(_Section):
    """The SageMaker endpoint (or batch transform job) the model is released to."""

    name: SageMakerName = Field(description="Endpoint name, at most 63 characters (e.g. demo-embedder).")
    type: Literal["realtime", "serverless", "async", "batch"] = Field(
        "realtime", description="realtime, serverless, async (S3 in/out, can scale to zero) or batch."
    )
    variant_name: SageMakerName = Field("AllTraffic", description="Production variant name.")
    instance_type: InstanceType = Field(
        "ml.m5.xlarge", description="ml.* instance type (ignored for serverless)."
    )
    instance_count: int = Field(1, ge=1, le=100, description="Initial instances (1-100).")
    environment: Environment = Field(
        default_factory=dict,
        description="Environment variables of the serving container. A value given as {secret: "
        "<reference>} (prefect:<block-name> or a Secrets Manager ARN) is fetched when the model is "
        "created; only the reference is in the config, the flow run's parameters and the release's "
        "outputs.",
    )
    container_startup_timeout_s: int | None = Field(
        None, ge=60, le=3600, description="Health check timeout for a starting container (60-3600 s)."
    )
    model_data_download_timeout_s: int | None = Field(
        None, ge=60, le=3600, description="Model data download timeout per instance (60-3600 s)."
    )
    serverless: ServerlessConfig | None = Field(None, description="Serverless settings (type serverless).")
    async_inference: AsyncInferenceConfig | None = Field(None, description="Async settings (type async).")
    batch: BatchTransformConfig | None = Field(None, description="Batch transform settings (type batch).")

    @model_validator(mode="after")
    def _type_sections(self) -> EndpointConfig:
        if self.type == "serverless" and self.serverless is None:
            self.serverless = ServerlessConfig()
        if self.type == "async" and (
            self.async_inference is None or self.async_inference.output_path is None
        ):
            raise _invalid(
                "an async endpoint needs an S3 output path for its results",
                "set endpoint.async_inference.output_path to s3://<bucket>/<prefix>/",
                field="async_inference.output_path",
            )
        if self.type == "batch":
            batch = self.batch or BatchTransformConfig()
            for name in ("input_path", "output_path"):
                if getattr(batch, name) is None:
                    raise _invalid(
                        f"a batch transform needs an S3 {name.replace('_', ' ')}",
                        f"set endpoint.batch.{name} to s3://<bucket>/<prefix>/",
                        field=f"batch.{name}",
                    )
        for section, wanted in (
            ("serverless", "serverless"),
            ("async_inference", "async"),
            ("batch", "batch"),
        ):
            if getattr(self, section) is not None and self.type != wanted:
                raise _invalid(
                    f"endpoint.{section} is set but the endpoint type is {self.type}",
                    f"set endpoint.type: {wanted}, or remove endpoint.{section}",
                    field=section,
                )
        return self


class ScalingConfig(_Section):
    """Application Auto Scaling of the variant: target tracking, and scale from zero for async."""

    enabled: bool = Field(False, description="Register the variant for autoscaling.")
    min_capacity: int = Field(1, ge=0, le=100, description="Fewest instances; 0 only for async endpoints.")
    max_capacity: int = Field(2, ge=1, le=100, description="Most instances.")
    target_invocations_per_instance: float = Field(
        70.0, gt=0, le=100000, description="Target of SageMakerVariantInvocationsPerInstance (per minute)."
    )
    target_backlog_per_instance: float = Field(
        5.0, gt=0, le=100000, description="Async: target ApproximateBacklogSizePerInstance."
    )
    scale_from_zero: bool = Field(
        True, description="Async: add the HasBacklogWithoutCapacity alarm and step policy to leave zero."
    )
    scale_in_cooldown_s: int = Field(300, ge=0, le=3600, description="Seconds between scale-ins.")
    scale_out_cooldown_s: int = Field(60, ge=0, le=3600, description="Seconds between scale-outs.")


class SmokeConfig(_Section):
    """Requests sent to the new model, and what their answers must satisfy."""

    enabled: bool = Field(True, description="Run the smoke test (strongly recommended).")
    payloads: list[JsonPayload] = Field(
        default_factory=lambda: [{"inputs": "The quick brown fox jumps over the lazy dog."}],
        min_length=1,
        description="Request bodies: JSON objects/arrays, or strings sent as they are (e.g. CSV lines).",
    )
    content_type: str = Field("application/json", description="ContentType of the requests.")
    accept: str = Field("application/json", description="Accept header of the requests.")
    repeat: int = Field(3, ge=1, le=1000, description="Times each payload is sent (for latency figures).")
    expect_status: int = Field(200, ge=100, le=599, description="HTTP status every answer must have.")
    expect_non_null: bool = Field(True, description="Answers must not be empty or contain nulls.")
    expect_shape: list[int] | None = Field(
        None, description="Shape every answer must have, -1 for any size, e.g. [1, -1, 384]."
    )
    expect_dim: int | None = Field(None, ge=1, description="Size of the answers' last dimension, e.g. 384.")
    max_latency_ms: float = Field(5000.0, gt=0, description="Latency bound for the chosen percentile (ms).")
    latency_percentile: Literal["p50", "p90", "p95", "p99", "max"] = Field(
        "p95", description="Which latency must stay within max_latency_ms."
    )
    timeout_s: int = Field(120, ge=1, le=3600, description="Per request (async: until its result appears).")


class AlarmsConfig(_Section):
    """Alarms the release creates on the new model's traffic, checked while traffic shifts."""

    max_5xx_errors: float = Field(
        0.0, ge=0, description="Alarm when Invocation5XXErrors (sum per period) exceeds this."
    )
    max_p99_latency_ms: float = Field(
        2000.0, gt=0, description="Alarm when ModelLatency p99 exceeds this (ms)."
    )
    period_s: int = Field(60, description="Metric period: 10, 30 or a multiple of 60 seconds.")
    evaluation_periods: int = Field(1, ge=1, le=100, description="Periods evaluated.")
    datapoints_to_alarm: int = Field(1, ge=1, le=100, description="Breaching periods that trigger ALARM.")
    extra_alarm_names: AlarmNames = Field(
        default_factory=list, description="Existing CloudWatch alarms that also roll back the release."
    )

    @model_validator(mode="after")
    def _periods(self) -> AlarmsConfig:
        if self.period_s not in (10, 30) and (self.period_s <= 0 or self.period_s % 60):
            raise _invalid(
                f"period_s {self.period_s} is not a CloudWatch period",
                "use 10, 30, or a multiple of 60",
                field="period_s",
            )
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise _invalid(
                f"datapoints_to_alarm {self.datapoints_to_alarm} exceeds evaluation_periods "
                f"{self.evaluation_periods}",
                "make datapoints_to_alarm at most evaluation_periods",
                field="datapoints_to_alarm",
            )
        return self


class BakeTrafficConfig(_Section):
    """Synthetic traffic during each bake, so alarms have data when production sends none."""

    rate_per_s: float = Field(0.0, ge=0, le=100, description="Requests per second; 0 sends none.")
    duration_s: int | None = Field(
        None, ge=1, le=3600, description="Seconds of traffic per bake; empty sends it for the whole bake."
    )
    payloads: list[JsonPayload] | None = Field(
        None,
        min_length=1,
        description="Request bodies sent round-robin, e.g. a sample of production requests (the smoke "
        "test's are a gate the model must pass; these are what it should bear). Empty: the smoke payloads.",
    )


# Which strategies read each strategy-specific field (tasks/rollout/planning.py): auto picks a canary or a
# variant shift, never linear; all_at_once has no steps.
_STRATEGY_FIELDS: dict[str, tuple[str, ...]] = {
    "canary_percent": ("canary", "variant_shift", "auto"),
    "linear_step_percent": ("linear",),
    "steps": ("canary", "linear", "variant_shift", "auto"),
}


class RolloutConfig(_Section):
    """How traffic moves to the new model, and when it rolls back."""

    strategy: Literal["all_at_once", "canary", "linear", "variant_shift", "auto"] = Field(
        "all_at_once",
        description="all_at_once: blue/green with a bake. canary/linear: SageMaker deployment guardrails "
        "(need 2+ instances). variant_shift: new variant beside the old one, weights moved step by step "
        "(works on one instance). auto: picks per endpoint.",
    )
    canary_percent: int = Field(10, ge=1, le=99, description="Traffic share of the canary step (%).")
    linear_step_percent: int = Field(25, ge=1, le=99, description="Traffic added per linear step (%).")
    steps: list[int] | None = Field(
        None,
        description="Explicit cumulative traffic percentages, increasing, e.g. [10, 50, 100]; "
        "100 is added when missing.",
    )
    bake_s: int = Field(60, ge=0, le=3600, description="Seconds each step bakes before the next.")
    final_bake_s: int = Field(60, ge=0, le=3600, description="Seconds at 100% before the old model retires.")
    keep_previous: bool = Field(
        True,
        description="Keep the previous release's model and endpoint config after success, so a rollback "
        "is one UpdateEndpoint away.",
    )
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig, description="Rollback alarms.")
    bake_traffic: BakeTrafficConfig = Field(
        default_factory=BakeTrafficConfig, description="Synthetic traffic while baking."
    )

    @model_validator(mode="after")
    def _steps(self) -> RolloutConfig:
        if self.steps is not None:
            if not self.steps or any(not 1 <= s <= 100 for s in self.steps):
                raise _invalid(
                    f"steps {self.steps} must be percentages from 1 to 100",
                    "list increasing percentages such as [10, 50, 100]",
                    field="steps",
                )
            if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
                raise _invalid(
                    f"steps {self.steps} are not strictly increasing",
                    "list increasing percentages such as [10, 50, 100]",
                    field="steps",
                )
        return self

    @model_validator(mode="after")
    def _fields_of_the_strategy(self) -> RolloutConfig:
        # Only a value other than the default counts as set: a form may send every field's default.
        for name, users in _STRATEGY_FIELDS.items():
            default = RolloutConfig.model_fields[name].default
            if self.strategy not in users and getattr(self, name) != default:
                choose = f"one of {', '.join(users)}" if len(users) > 1 else users[0]
                raise _invalid(
                    f"is set, but strategy {self.strategy} does not use it (used only by {', '.join(users)})",
                    f"remove rollout.{name}, or set rollout.strategy to {choose}",
                    field=name,
                )
        return self

    def traffic_steps(self, strategy: str | None = None) -> list[int]:
        """Cumulative percentages of traffic on the new model, always ending at 100."""
        chosen = strategy or self.strategy
        if self.steps is not None and chosen != "all_at_once":
            steps = list(self.steps)
        elif chosen == "linear":
            steps = list(range(self.linear_step_percent, 100, self.linear_step_percent))
        elif chosen in ("canary", "variant_shift", "auto"):
            steps = [self.canary_percent]
        else:
            steps = []
        return [*steps, 100] if not steps or steps[-1] != 100 else steps


class TimeoutsConfig(_Section):
    """Every wait of the release ends; these are the limits."""

    endpoint_s: int = Field(3600, ge=30, le=14400, description="Endpoint create/update (s).")
    transform_job_s: int = Field(7200, ge=30, le=172800, description="Batch transform job (s).")
    poll_interval_s: float = Field(10.0, ge=0.1, le=300, description="Seconds between status checks.")
    download_s: int = Field(3 * 3600, ge=30, le=86400, description="Model download from the Hub (s).")
    upload_s: int = Field(3 * 3600, ge=30, le=86400, description="Packaging and upload to S3 (s).")


class ReleaseConfig(_Section):
    """One release: which model, where it is stored, which image serves it, and how it goes live."""

    release_id: ReleaseId | None = Field(
        None, description="Id of this release (names and tags derive from it); empty generates one."
    )
    role_arn: RoleArn = Field(description="SageMaker execution role (arn:aws:iam::<account>:role/<name>).")
    tags: Tags = Field(default_factory=dict, description="Extra tags on every resource of the release.")
    model: ModelSourceConfig = Field(description="Model source: Hub repo and revision, or a local folder.")
    packaging: PackagingConfig = Field(default_factory=PackagingConfig, description="Model packaging.")
    storage: StorageConfig = Field(description="S3 location for model data and ledgers.")
    image: ImageConfig = Field(default_factory=ImageConfig, description="Serving image.")
    endpoint: EndpointConfig = Field(description="Target endpoint.")
    scaling: ScalingConfig = Field(default_factory=ScalingConfig, description="Autoscaling.")
    smoke: SmokeConfig = Field(default_factory=SmokeConfig, description="Smoke test of the new model.")
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig, description="Traffic shifting and rollback."
    )
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig, description="Wait limits.")

    @model_validator(mode="after")
    def _across_sections(self) -> ReleaseConfig:
        endpoint, scaling = self.endpoint, self.scaling
        if scaling.enabled:
            if endpoint.type in ("serverless", "batch"):
                raise _invalid(
                    f"a {endpoint.type} endpoint cannot be registered for autoscaling",
                    "set scaling.enabled: false (serverless scales by itself; batch has no endpoint)",
                    field="scaling.enabled",
                )
            if is_burstable(endpoint.instance_type):
                raise _invalid(
                    f"burstable instance type {endpoint.instance_type} cannot autoscale",
                    "use a non-burstable type such as ml.m5.large or ml.c5.large, "
                    "or set scaling.enabled: false",
                    field="endpoint.instance_type",
                )
            if scaling.min_capacity > scaling.max_capacity:
                raise _invalid(
                    f"min_capacity {scaling.min_capacity} exceeds max_capacity {scaling.max_capacity}",
                    "make scaling.min_capacity at most scaling.max_capacity",
                    field="scaling.min_capacity",
                )
            if scaling.min_capacity == 0 and endpoint.type != "async":
                raise _invalid(
                    f"only async endpoints can scale to zero, this one is {endpoint.type}",
                    "set scaling.min_capacity to 1 or more, or use endpoint.type: async",
                    field="scaling.min_capacity",
                )
            if endpoint.instance_count > scaling.max_capacity:
                raise _invalid(
                    f"instance_count {endpoint.instance_count} exceeds "
                    f"scaling.max_capacity {scaling.max_capacity}",
                    "raise scaling.max_capacity or lower endpoint.instance_count",
                    field="endpoint.instance_count",
                )
        if endpoint.type in ("serverless", "batch", "async") and self.rollout.strategy in (
            "canary",
            "linear",
        ):
            raise _invalid(
                f"{self.rollout.strategy} traffic shifting needs instance-backed real-time endpoints, "
                f"not {endpoint.type}",
                "use rollout.strategy: all_at_once",
                field="rollout.strategy",
            )
        return self

    def with_release_id(self, release_id: str | None = None) -> ReleaseConfig:
        """This config with its release id filled in (kept when already set)."""
        if self.release_id is not None and release_id is None:
            return self
        chosen = check_value("release_id", release_id or new_release_id(), "release_id")
        return self.model_copy(update={"release_id": chosen})

    @property
    def require_release_id(self) -> str:
        if self.release_id is None:
            raise ValueError("release_id is not set; call config.with_release_id() first")
        return self.release_id


# -- loading and error translation ---------------------------------------------------------------------

# A release config is a page of YAML; a file this large is a wrong path (a model file, a log).
MAX_CONFIG_BYTES = 8 * 2**20
# Nodes that YAML aliases may add beyond those written out: reusing a payload list is fine, a "billion
# laughs" file (aliases of aliases) would expand to more values than validation can walk.
MAX_ALIAS_EXPANSION = 100_000

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


def parse_config(data: Mapping[str, Any], *, source: str | None = None) -> ReleaseConfig:
    """Validate a mapping into a ReleaseConfig, or raise ConfigError naming each bad field and its fix."""
    try:
        return ReleaseConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_issues(config_issues(exc), source=source) from None


def load_config(
    path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    path_field: str = "config",
    check_folders: bool = True,
) -> ReleaseConfig:
    """Read a YAML release config; `overrides` ({"endpoint.instance_count": 2}) replace single values.

    `path_field` names the path in errors about the file itself (a CLI passes its flag, --config).
    With `check_folders`, the folders the release reads on this machine (model.local_path, the image's
    build context) must exist: the release would otherwise fail after its bucket and ledger exist.
    """
    file = Path(path)
    text = _read_config_file(file, path_field)
    data = load_yaml(text, field="config", source=str(file))
    if not isinstance(data, dict):
        raise ConfigError(
            "config",
            "the file is not a mapping of sections",
            "start from releases/demo.yaml",
            source=str(file),
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    config = parse_config(data, source=str(file))
    if check_folders:
        check_local_folders(config, source=str(file))
    return config


def _read_config_file(file: Path, field: str) -> str:
    fix = "pass the path of a release YAML file (e.g. releases/demo.yaml)"
    try:
        info = file.stat()
    except FileNotFoundError:
        raise ConfigError(field, f"{file} does not exist", fix) from None
    except NotADirectoryError:
        raise ConfigError(
            field, f"{file} does not exist: a part of its path is a file, not a folder", fix
        ) from None
    except OSError as exc:
        raise ConfigError(field, f"{file} cannot be read: {exc.strerror or exc}", fix) from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(field, f"{file} is a folder, not a file", fix)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(field, f"{file} is not a regular file", fix)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except PermissionError:
        raise ConfigError(
            field,
            f"{file} cannot be read: permission denied",
            "make the file readable by the user running the release (chmod a+r), or pass a readable copy",
        ) from None
    except OSError as exc:
        raise ConfigError(field, f"{file} cannot be read: {exc.strerror or exc}", fix) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            field,
            f"{file} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, far more than a release config",
            fix,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            field,
            f"{file} is not UTF-8 text (byte {raw[exc.start]:#04x} on line {line})",
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 OLD > NEW)",
        ) from None


def load_yaml(text: str, *, field: str, source: str | None = None) -> Any:
    """Parse one YAML document safely: duplicate keys, self-referencing aliases and aliases that expand
    beyond MAX_ALIAS_EXPANSION nodes are refused as ConfigError naming `field` (or the key below it)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, field, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None and source else ""
        raise ConfigError(
            field,
            f"YAML syntax error{where}: {getattr(exc, 'problem', None) or exc}",
            "fix the YAML syntax" if source else "quote the value or close its brackets",
            source=source,
        ) from None
    except RecursionError:
        raise ConfigError(
            field,
            "the YAML nests too deeply to read",
            "flatten the nesting (a release config needs a few levels)",
            source=source,
        ) from None
    finally:
        loader.dispose()


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, str]] = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(key, path), (value, f"{path}.{name}" if path else str(name))]
        return out
    return []


def _check_nodes(root: yaml.Node, field: str, source: str | None) -> None:
    """Walk the composed node graph once (shared nodes are aliases): refuse duplicate keys, cycles and
    an alias expansion beyond MAX_ALIAS_EXPANSION. A loop, not recursion: aliases of aliases can chain
    deeper than Python's recursion limit in a flat file."""
    base = "" if field == "config" else field
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str, bool]] = [(root, base, False)]
    while stack:
        node, path, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(child)] for child, _ in _children(node, path))
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise ConfigError(
                path or field,
                f"an alias refers to a collection that contains it (line {node.start_mark.line + 1})",
                "write the value out instead of an alias to its own anchor",
                source=source,
            )
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node, path, source)
        open_nodes.add(key)
        stack.append((node, path, True))
        stack.extend((child, child_path, False) for child, child_path in _children(node, path))
    extra = size[id(root)] - len(size)
    if extra > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            field,
            f"YAML aliases expand {len(size)} written values into {size[id(root)]}, more than "
            f"{MAX_ALIAS_EXPANSION} added values",
            "write the values out, or reuse fewer and smaller anchors",
            source=source,
        )


def _refuse_duplicate_keys(node: yaml.MappingNode, path: str, source: str | None) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        # A merge key (<<) brings in values that the mapping's own keys may override: not a duplicate.
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        ident, line = (key.tag, key.value), key.start_mark.line + 1
        if ident in seen:
            raise ConfigError(
                f"{path}.{key.value}" if path else str(key.value),
                f"is given twice (lines {seen[ident]} and {line}); YAML would silently keep the last",
                "keep one of them",
                source=source,
            )
        seen[ident] = line


_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def parse_override(text: str) -> tuple[str, Any]:
    """("endpoint.instance_count", 2) from the command line's `endpoint.instance_count=2`: the value is
    YAML, read as safely as a config file."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            "--set",
            f"{text!r} is not KEY=VALUE",
            "write it as --set section.field=value (e.g. --set endpoint.instance_count=2)",
        )
    if not _OVERRIDE_KEY.match(key):
        raise ConfigError(
            "--set",
            f"{key!r} is not a dotted field name",
            "name the field by its sections joined with '.' (e.g. endpoint.instance_count); a list is "
            "set whole (e.g. smoke.expect_shape=[1,384])",
        )
    return key, load_yaml(raw, field=key)


def check_local_folders(config: ReleaseConfig, *, source: str | None = None) -> None:
    """Refuse folders the release reads on this machine that are not there: the model folder, and the
    build context (with its Dockerfile) of a built image."""
    issues: list[ConfigIssue] = []
    local = config.model.local_path
    if local is not None:
        folder = Path(local).expanduser()
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            issues.append(
                ConfigIssue(
                    "model.local_path",
                    f"{local} {what} (relative paths start at {Path.cwd()})",
                    "point model.local_path at the folder holding the model files",
                )
            )
    image = config.image
    if image.source == "build":
        context = Path(image.context).expanduser()
        if not context.is_dir():
            issues.append(
                ConfigIssue(
                    "image.context",
                    f"{image.context} is not a folder (relative paths start at {Path.cwd()})",
                    "point image.context at the serving image's build context (e.g. container), "
                    "or use image.source: prebuilt",
                )
            )
        elif not (context / image.dockerfile).is_file():
            issues.append(
                ConfigIssue(
                    "image.dockerfile",
                    f"{image.dockerfile} is not a file in {image.context}",
                    "name the Dockerfile inside image.context (default Dockerfile)",
                )
            )
    if issues:
        raise ConfigError.from_issues(issues, source=source)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            section = ".".join(parts[: depth + 1])
            raise ConfigError(
                dotted,
                f"{section} is not a section, so it has no field {parts[depth + 1]}",
                f"override {section} itself, or a field inside a section",
            )
        node = child
    node[parts[-1]] = value


def config_issues(exc: ValidationError) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues that each name the dotted field, the problem and the fix."""
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        loc = _format_loc(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == _ERROR_TYPE:
            field = ".".join(p for p in (loc, ctx.get("field", "")) if p)
            issues.append(ConfigIssue(field or "config", str(ctx["problem"]), str(ctx["fix"])))
            continue
        issues.append(ConfigIssue(loc or "config", *_problem_and_fix(error, error["loc"])))
    return issues


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem_and_fix(error: Any, loc: Sequence[int | str]) -> tuple[str, str]:
    kind: str = error["type"]
    ctx = error.get("ctx") or {}
    # A field that may hold a secret is named, its value never quoted.
    given = "the value" if is_sensitive(_format_loc(loc)) else _shown(error.get("input"))
    info, item = _field_at(loc)
    if kind == "missing":
        return "is required", f"add {_format_loc(loc)} (see releases/demo.yaml)"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return "is not a known setting", f"{hint}remove it; allowed here: {', '.join(allowed)}"
    if kind == "literal_error":
        return f"{given} is not allowed", f"use one of {ctx.get('expected')}"
    takes = _what_it_takes(info, item)
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{given} is out of range", f"give {takes}" if takes else f"use a value {words} {ctx.get(key)}"
    if kind in ("string_too_long", "too_long"):
        return "is too long", f"keep it within {ctx.get('max_length')}"
    if kind in ("string_too_short", "too_short"):
        return "is too short", f"give at least {ctx.get('min_length')}"
    if kind == "string_pattern_mismatch":
        return f"{given} has the wrong form", f"match the pattern {ctx.get('pattern')}"
    if kind == "finite_number":
        return f"{given} is not a finite number", f"give {takes or 'a finite number'}"
    if kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
        wanted = takes or _TYPE_WORDS.get(kind.split("_", 1)[0], "a value of the right type")
        fix = f"give {wanted}"
        if kind == "string_type" and isinstance(error.get("input"), int | float | bool | date):
            fix += " (quote it in YAML, or it is read as a number, boolean or date)"
        return f"{given} is not {_short(wanted)}", fix
    description = info.description if info is not None else None
    fix = f"give what the field takes: {description}" if description else "see the release schema"
    return str(error["msg"]), fix


_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
    "list": "a list",
    "dict": "a mapping",
    "model": "a section (a mapping of its settings)",
}


def _short(takes: str) -> str:
    """'a whole number' of 'a whole number from 1 to 100': what the value is not."""
    for words in _TYPE_WORDS.values():
        if takes.startswith(words):
            return words
    return takes


def _shown(value: Any) -> str:
    """A value as the YAML that gave it: true, null, .inf, 'text'."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _field_at(loc: Sequence[int | str]) -> tuple[FieldInfo | None, bool]:
    """The field `loc` points at (None for a section-level error), and whether it points at an item
    inside it (a list element or a mapping value) rather than at the field itself."""
    model: type[BaseModel] | None = ReleaseConfig
    info: FieldInfo | None = None
    for part in loc:
        if model is None or isinstance(part, int):
            return info, info is not None
        info = model.model_fields.get(str(part))
        if info is None:
            return None, False
        model = _model_in(info.annotation)
    return info, False


def _what_it_takes(info: FieldInfo | None, item: bool) -> str:
    """'a whole number from 1 to 100', 'true or false', "one of 'p50', 'p95'": what the field accepts,
    from its type and constraints ('' when that cannot be told from them)."""
    if info is None:
        return ""
    annotation = info.annotation
    optional = False
    base = _strip(annotation)
    if get_origin(base) in (Union, types.UnionType):
        members = [a for a in get_args(base) if a is not type(None)]
        optional = len(members) < len(get_args(base))
        base = _strip(members[0]) if len(members) == 1 else base
    if item:
        args = get_args(base)
        base = _strip(args[-1]) if args else base
        optional = False
    if base is bool:
        words = "true or false"
    elif base is int or base is float:
        words = _TYPE_WORDS["int" if base is int else "float"]
        if not item:
            # A field without declared bounds checks its values in a validator; its description says
            # which it takes (serverless memory sizes).
            words += _range(info) or (f"; {info.description.rstrip('.')}" if info.description else "")
    elif get_origin(base) is Literal:
        words = "one of " + ", ".join(repr(v) for v in get_args(base))
    elif base is str:
        words = "text"
    elif get_origin(base) is list or base is list:
        words = "a list"
    elif get_origin(base) is dict or base is dict:
        words = "a mapping"
    elif isinstance(base, type) and issubclass(base, BaseModel):
        words = _TYPE_WORDS["model"]
    else:
        return ""
    return f"{words}, or null to leave it empty" if optional else words


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _range(info: FieldInfo) -> str:
    low = high = None
    for item in info.metadata:
        for attr, words in (("ge", "at least"), ("gt", "greater than")):
            if getattr(item, attr, None) is not None:
                low = (words, getattr(item, attr))
        for attr, words in (("le", "at most"), ("lt", "less than")):
            if getattr(item, attr, None) is not None:
                high = (words, getattr(item, attr))
    if low and high and low[0] == "at least" and high[0] == "at most":
        return f" from {low[1]} to {high[1]}"
    parts = [f"{bound[0]} {bound[1]}" for bound in (low, high) if bound is not None]
    return " " + " and ".join(parts) if parts else ""


def _allowed_keys(loc: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] = ReleaseConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = _model_in(field.annotation)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
