"""The whole release configuration (`ReleaseConfig`): its sections and the checks that span several of
them (autoscaling against the endpoint type, traffic shifting against the endpoint kind, model data
against the endpoint type, a batch job's environment).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from tasks.config import guardrails, metric_timing
from tasks.config.fields import (
    ReleaseId,
    RoleArn,
    SecretReference,
    Tags,
    _invalid,
    _Section,
    check_value,
    is_burstable,
)
from tasks.config.naming import new_release_id
from tasks.config.sections import (
    MAX_TRANSFORM_ENVIRONMENT,
    EndpointConfig,
    ImageConfig,
    ModelSourceConfig,
    PackagingConfig,
    RolloutConfig,
    ScalingConfig,
    SmokeConfig,
    StorageConfig,
    TimeoutsConfig,
)


class ReleaseConfig(_Section):
    """One release: which model, where it is stored, which image serves it, and how it goes live."""

    release_id: ReleaseId | None = Field(
        None, description="Id of this release (names and tags derive from it); empty generates one."
    )
    role_arn: RoleArn = Field(description="SageMaker execution role (`arn:aws:iam::<account>:role/<name>`).")
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
        self._model_data_fits_the_endpoint()
        self._transform_environment_fits()
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

    def _model_data_fits_the_endpoint(self) -> None:
        # s3_prefix model data is a ModelDataSource; SageMaker refuses a model that has one in a serverless
        # endpoint config and in CreateTransformJob, after the upload, the build and CreateModel.
        kind = {"serverless": "serverless endpoints", "batch": "batch transform"}.get(self.endpoint.type)
        if self.packaging.format == "s3_prefix" and kind is not None:
            raise _invalid(
                f"s3_prefix model data (an uncompressed S3 prefix, ModelDataSource) cannot be used with "
                f"{kind}: SageMaker takes only a model.tar.gz (ModelDataUrl) there",
                f"set packaging.format: tar.gz for endpoint.type {self.endpoint.type}, or use "
                "endpoint.type realtime or async",
                field="packaging.format",
            )

    def _transform_environment_fits(self) -> None:
        if self.endpoint.type != "batch":
            return
        environment = self.endpoint.environment
        # The transform job gets the container's environment, HF_TASK included (model_environment).
        adds_task = bool(self.model.task) and "HF_TASK" not in environment
        count = len(environment) + adds_task
        if count > MAX_TRANSFORM_ENVIRONMENT:
            task = " plus HF_TASK from model.task" if adds_task else ""
            room = MAX_TRANSFORM_ENVIRONMENT - adds_task
            raise _invalid(
                f"a batch transform job passes {len(environment)} environment variables{task}; "
                f"CreateTransformJob accepts at most {MAX_TRANSFORM_ENVIRONMENT}",
                f"keep at most {room} variables in endpoint.environment for endpoint.type batch",
                field="endpoint.environment",
            )

    @model_validator(mode="after")
    def _alarm_periods_the_metrics_feed(self) -> ReleaseConfig:
        # A 10 or 30 s alarm on one-minute metrics finds no datapoint and never fires; only real-time
        # endpoints can publish invocation metrics that often (tasks/config/metric_timing.py).
        period, kind = self.rollout.alarms.period_s, self.endpoint.type
        if (
            metric_timing.needs_enhanced_metrics(period)
            and kind != "batch"
            and kind not in metric_timing.ENHANCED_METRICS_TYPES
        ):
            raise _invalid(
                f"a {kind} endpoint publishes its invocation metrics once a minute (SageMaker's enhanced "
                f"metrics are for real-time endpoints only), so a {period} s alarm would find no datapoint "
                "and never fire",
                "set rollout.alarms.period_s to 60 (or a multiple of 60)",
                field="rollout.alarms.period_s",
            )
        return self

    @model_validator(mode="after")
    def _guardrail_waits(self) -> ReleaseConfig:
        # A linear update waits bake_s after each step and final_bake_s at the end; SageMaker's
        # MaximumExecutionTimeoutInSeconds (at most 8 h) must exceed that, and a capped timeout would roll
        # the release back half-way. Pre-flight checks again on the steps of the fleet it finds.
        rollout, endpoint = self.rollout, self.endpoint
        if rollout.strategy != "linear" or endpoint.type != "realtime" or endpoint.instance_count < 2:
            return self
        percent = guardrails.linear_increment(rollout.steps, rollout.linear_step_percent)
        assert percent is not None  # RolloutConfig refuses unequal linear steps
        size = guardrails.linear_instances(endpoint.instance_count, percent)
        steps = guardrails.linear_step_count(endpoint.instance_count, size)
        if not guardrails.waits_fit(rollout.bake_s, rollout.final_bake_s, steps):
            name = "rollout.steps" if rollout.steps is not None else "rollout.linear_step_percent"
            problem, fix = guardrails.waits_problem_and_fix(
                "linear", rollout.bake_s, rollout.final_bake_s, steps, step_field=name
            )
            raise _invalid(problem, fix, field="rollout.bake_s")
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
