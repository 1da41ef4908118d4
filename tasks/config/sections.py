"""The sections of a release configuration, one model each (model source, packaging, storage, image,
endpoint, scaling, smoke test, alarms, bake traffic, rollout, timeouts).

Every model forbids unknown keys and every field has a description, because Prefect renders this schema
as the release form and docs/configuration.md is generated from it.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tasks.config import guardrails, metric_timing
from tasks.config.fields import (
    AlarmNames,
    BucketName,
    EcrRepository,
    Environment,
    HubRepoId,
    HubRevision,
    ImageReference,
    ImageUri,
    InstanceType,
    JsonPayload,
    KeyPrefix,
    S3Uri,
    SageMakerName,
    SnsArn,
    TextOrSecret,
    _invalid,
    _Section,
)
from tasks.config.guardrails import RolloutStrategy
from tasks.config.schema_rules import (
    ALARM_PERIOD,
    APPROVAL_NEEDS_OWN_STEPS,
    ENDPOINT_TYPE_SECTIONS,
    IMAGE_URI_WITH_PREBUILT,
    ONE_MODEL_SOURCE,
    SERVERLESS_CONCURRENCY,
    SERVERLESS_MEMORY,
    SMOKE_PAYLOADS_DEFAULT,
    schema_extra,
)

DEFAULT_BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_ENV = "SAGEMAKER_RELEASE_BASE_IMAGE"


MAX_INSTANCE_COUNT = 100  # instances of an endpoint the config takes (the release form too)


class ModelSourceConfig(_Section):
    """Where the model comes from: a Hugging Face Hub repo pinned to a commit, or a local folder."""

    model_config = ConfigDict(json_schema_extra=schema_extra(ONE_MODEL_SOURCE))

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
        None, description="Only download Hub files matching these glob patterns (e.g. `*.safetensors`)."
    )
    ignore_patterns: list[str] | None = Field(
        None, description="Skip Hub files matching these glob patterns (e.g. `*.onnx`, `openvino/*`)."
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
        "None): no compression, faster for large models.",
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

    model_config = ConfigDict(json_schema_extra=schema_extra(IMAGE_URI_WITH_PREBUILT))

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
        description="Extra docker build arguments. A value given as `{secret: <reference>}` is no build "
        "argument: it is a BuildKit secret with the argument's name as its id (`RUN "
        "--mount=type=secret,id=<name>` reads it at `/run/secrets/<name>`), so it never enters the image or "
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
        2048,
        description="Memory in MB: 1024, 2048, 3072, 4096, 5120 or 6144 (vCPUs scale with it).",
        json_schema_extra=schema_extra(SERVERLESS_MEMORY),
    )
    max_concurrency: int = Field(
        5,
        description="Concurrent invocations, 1-200.",
        json_schema_extra=schema_extra(SERVERLESS_CONCURRENCY),
    )
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


# CreateTransformJob's limits: requests in flight on one instance (MaxConcurrentTransforms x MaxPayloadInMB,
# in MB) and entries of its Environment (TransformEnvironmentMap).
MAX_TRANSFORM_PAYLOAD_MB = 100
MAX_TRANSFORM_ENVIRONMENT = 16


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
        0,
        ge=0,
        le=100,
        description="Parallel requests per instance; 0 lets SageMaker pick. Times max_payload_mb, at most "
        f"{MAX_TRANSFORM_PAYLOAD_MB} MB.",
    )

    @model_validator(mode="after")
    def _payload_in_flight(self) -> BatchTransformConfig:
        # CreateTransformJob refuses MaxConcurrentTransforms x MaxPayloadInMB above 100 MB; the release would
        # otherwise learn it only after the upload, the image build and CreateModel.
        in_flight = self.max_concurrent_transforms * self.max_payload_mb
        if in_flight > MAX_TRANSFORM_PAYLOAD_MB:
            concurrent = MAX_TRANSFORM_PAYLOAD_MB // self.max_payload_mb
            payload = MAX_TRANSFORM_PAYLOAD_MB // self.max_concurrent_transforms
            raise _invalid(
                f"max_concurrent_transforms {self.max_concurrent_transforms} x max_payload_mb "
                f"{self.max_payload_mb} is {in_flight} MB; SageMaker allows at most "
                f"{MAX_TRANSFORM_PAYLOAD_MB} MB",
                f"set endpoint.batch.max_concurrent_transforms to at most {concurrent} (or 0 to let "
                f"SageMaker pick), or endpoint.batch.max_payload_mb to at most {payload}",
                field="max_concurrent_transforms",
            )
        return self


class EndpointConfig(_Section):
    """The SageMaker endpoint (or batch transform job) the model is released to."""

    model_config = ConfigDict(json_schema_extra=schema_extra(ENDPOINT_TYPE_SECTIONS))

    name: SageMakerName = Field(description="Endpoint name, at most 63 characters (e.g. demo-embedder).")
    type: Literal["realtime", "serverless", "async", "batch"] = Field(
        "realtime", description="realtime, serverless, async (S3 in/out, can scale to zero) or batch."
    )
    variant_name: SageMakerName = Field("AllTraffic", description="Production variant name.")
    instance_type: InstanceType = Field(
        "ml.m5.xlarge", description="`ml.*` instance type (ignored for serverless)."
    )
    instance_count: int = Field(
        1, ge=1, le=MAX_INSTANCE_COUNT, description=f"Initial instances (1-{MAX_INSTANCE_COUNT})."
    )
    environment: Environment = Field(
        default_factory=dict,
        description="Environment variables of the serving container. A value given as `{secret: "
        "<reference>}` (`prefect:<block-name>` or a Secrets Manager ARN) is fetched when the model is "
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
        json_schema_extra=schema_extra(SMOKE_PAYLOADS_DEFAULT),
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
    period_s: int = Field(
        60,
        description="Metric period: 10, 30 or a multiple of 60 seconds. 10 and 30 need SageMaker's enhanced "
        "metrics (the release sets MetricsConfig), which only real-time endpoints have.",
        json_schema_extra=schema_extra(ALARM_PERIOD),
    )
    evaluation_periods: int = Field(1, ge=1, le=100, description="Periods evaluated.")
    datapoints_to_alarm: int = Field(1, ge=1, le=100, description="Breaching periods that trigger ALARM.")
    extra_alarm_names: AlarmNames = Field(
        default_factory=list, description="Existing CloudWatch alarms that also roll back the release."
    )

    @model_validator(mode="after")
    def _periods(self) -> AlarmsConfig:
        if self.period_s not in metric_timing.HIGH_RESOLUTION_PERIODS_S and (
            self.period_s <= 0 or self.period_s % metric_timing.STANDARD_PERIOD_S
        ):
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


# Whether a person decides between a rollout's first step and the rest (rollout.approval).
Approval = Literal["none", "manual"]


class RolloutConfig(_Section):
    """How traffic moves to the new model, and when it rolls back."""

    model_config = ConfigDict(json_schema_extra=schema_extra(APPROVAL_NEEDS_OWN_STEPS))

    strategy: RolloutStrategy = Field(
        "all_at_once",
        description="all_at_once: blue/green with a bake. canary/linear: SageMaker deployment guardrails "
        "(need 2+ instances). variant_shift: new variant beside the old one, weights moved step by step "
        "(works on one instance). auto: picks per endpoint.",
    )
    canary_percent: int = Field(
        10,
        ge=1,
        le=99,
        description="Traffic share of the canary step (%); at most 50 with strategy canary (SageMaker's "
        "guardrails).",
    )
    linear_step_percent: int = Field(
        25,
        ge=1,
        le=99,
        description="Traffic added per linear step (%): SageMaker's guardrails take 10-50% of the fleet per "
        "step.",
    )
    steps: list[int] | None = Field(
        None,
        description="Explicit cumulative traffic percentages, increasing, e.g. [10, 50, 100]; "
        "100 is added when missing.",
    )
    bake_s: int = Field(
        150,
        ge=0,
        le=3600,
        description="Seconds each step bakes before the next; 0 for no bake, else at least the alarms' "
        "period x evaluation_periods plus the metrics' delay (140 s with the default alarms).",
    )
    final_bake_s: int = Field(
        150,
        ge=0,
        le=3600,
        description="Seconds at 100% before the old model retires; 0 or at least what bake_s needs.",
    )
    keep_previous: bool = Field(
        True,
        description="Keep the previous release's model and endpoint config after success, so a rollback "
        "is one UpdateEndpoint away.",
    )
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig, description="Rollback alarms.")
    bake_traffic: BakeTrafficConfig = Field(
        default_factory=BakeTrafficConfig, description="Synthetic traffic while baking."
    )
    approval: Approval = Field(
        "none",
        description="manual: once the first step has baked, the release pauses until someone promotes "
        "or rolls back from the Prefect UI (the flow run's Resume form); alarms still roll back during the "
        "wait. Needs strategy variant_shift or auto.",
    )
    approval_timeout_s: int = Field(
        3600,
        ge=60,
        le=86400,
        description="Seconds the release waits for a decision before on_approval_timeout applies.",
    )
    on_approval_timeout: Literal["roll_back", "promote"] = Field(
        "roll_back",
        description="What a release nobody decided on does once approval_timeout_s is over.",
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

    @model_validator(mode="after")
    def _bakes_outlast_the_alarms(self) -> RolloutConfig:
        # A bake that ends before the alarms can judge its traffic calls the step good unwatched: on AWS a
        # period's datapoint arrives after the period and its delay (tasks/config/metric_timing.py).
        alarms = self.alarms
        minimum = metric_timing.minimum_bake_s(alarms.period_s, alarms.evaluation_periods)
        for name in ("bake_s", "final_bake_s"):
            seconds = getattr(self, name)
            if 0 < seconds < minimum:
                delay = metric_timing.alarm_delay_s(alarms.period_s)
                raise _invalid(
                    f"a bake of {seconds} s ends before the guard alarms can fire: they need "
                    f"{alarms.period_s} s x {alarms.evaluation_periods} evaluation period(s) plus {delay} s "
                    f"for SageMaker to publish the datapoint and CloudWatch to judge it, {minimum} s",
                    f"set rollout.{name} to at least {minimum} (or 0 for no bake), or shorten "
                    "rollout.alarms.period_s / evaluation_periods",
                    field=name,
                )
        return self

    @model_validator(mode="after")
    def _guardrail_bounds(self) -> RolloutConfig:
        # UpdateEndpoint refuses a LinearStepSize outside 10-50% of the fleet and a CanarySize above 50%;
        # the release would otherwise learn it only after the upload, the build and CreateModel.
        if self.strategy == "linear":
            increment = guardrails.linear_increment(self.steps, self.linear_step_percent)
            name = "steps" if self.steps is not None else "linear_step_percent"
            if increment is None:
                raise _invalid(
                    f"guardrails move linear traffic in equal steps, the config lists {self.steps}",
                    "give equal steps (e.g. [25, 50, 75, 100]), or set rollout.linear_step_percent instead",
                    field="steps",
                )
            if not guardrails.LINEAR_MIN_PERCENT <= increment <= guardrails.LINEAR_MAX_PERCENT:
                low, high = guardrails.LINEAR_MIN_PERCENT, guardrails.LINEAR_MAX_PERCENT
                raise _invalid(
                    f"a linear step of {increment}% is outside the {low}-{high}% of the fleet SageMaker's "
                    "guardrails move per step (LinearStepSize)",
                    f"use linear steps of {low} to {high}% in rollout.{name}, or rollout.strategy: "
                    "variant_shift for finer steps",
                    field=name,
                )
        if self.strategy == "canary":
            first = self.steps[0] if self.steps else self.canary_percent
            name = "steps" if self.steps else "canary_percent"
            if first > guardrails.CANARY_MAX_PERCENT:
                most = guardrails.CANARY_MAX_PERCENT
                smaller = (
                    f"start rollout.steps at {most} or less (e.g. [10, 100])"
                    if self.steps
                    else f"set rollout.canary_percent to at most {most}"
                )
                raise _invalid(
                    f"a canary of {first}% is more than the {most}% of the fleet SageMaker's guardrails "
                    "allow (CanarySize)",
                    f"{smaller}, or use rollout.strategy: variant_shift",
                    field=name,
                )
        return self

    @model_validator(mode="after")
    def _approval_needs_own_steps(self) -> RolloutConfig:
        # Guardrails move the traffic inside SageMaker, which cannot be held at the canary for a person:
        # only a rollout the release steps itself (or a new endpoint's bake) can wait for a decision.
        if self.approval == "manual" and self.strategy in guardrails.GUARDRAIL_STRATEGIES:
            raise _invalid(
                f"manual approval holds the traffic after the first step, but strategy {self.strategy} "
                "lets SageMaker's deployment guardrails move it without a pause",
                "use rollout.strategy variant_shift or auto, which the release steps itself, or set "
                "rollout.approval to none",
                field="approval",
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
    upload_s: int = Field(3 * 3600, ge=30, le=86400, description="Upload of the model data to S3 (s).")
