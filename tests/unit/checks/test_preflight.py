"""Pre-flight judges the config against the live endpoint (moto's SageMaker) before anything is created."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tasks.checks.preflight import preflight as preflight_task
from tasks.config import ModelSourceConfig
from tasks.core import aws
from tasks.core.errors import ConfigError, ResourceFailed
from tests.unit.deploy_helpers import ROLE, make_config

preflight = preflight_task.fn  # the task's body: no Prefect API needed
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:1"


def _live_endpoint(name: str = "demo-embedder", count: int = 1, variant: str = "AllTraffic") -> None:
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(ModelName="old-model", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=ROLE)
    sagemaker.create_endpoint_config(
        EndpointConfigName="old-config",
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": "old-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName="old-config")


def _config(count: int = 2, **rollout: Any) -> Any:
    return make_config(endpoint={"instance_count": count}, rollout=rollout)


def test_a_new_endpoint_plans_a_create(mocked_aws: None) -> None:
    checked = preflight(_config(strategy="canary"))
    assert checked.live is None
    assert checked.plan is not None and checked.plan.strategy == "create"


@pytest.mark.parametrize("strategy", ["canary", "linear"])
def test_guardrails_on_a_one_instance_endpoint_are_refused_naming_the_field(
    mocked_aws: None, strategy: str
) -> None:
    _live_endpoint(count=1)
    with pytest.raises(ConfigError) as refused:
        preflight(_config(2, strategy=strategy))
    assert refused.value.field == "rollout.strategy"
    assert "1 live" in refused.value.problem and "variant_shift" in refused.value.fix


def test_guardrails_on_another_variant_name_are_refused(mocked_aws: None) -> None:
    _live_endpoint(count=2, variant="Blue")
    with pytest.raises(ConfigError) as refused:
        preflight(_config(2, strategy="all_at_once"))
    assert refused.value.field == "endpoint.variant_name"
    assert "Blue" in refused.value.problem


def test_a_canary_the_live_endpoint_can_take_is_planned(mocked_aws: None) -> None:
    _live_endpoint(count=2)
    checked = preflight(_config(2, strategy="canary", canary_percent=50))
    assert checked.live is not None and checked.live.config_name == "old-config"
    assert checked.plan is not None and (checked.plan.strategy, checked.plan.step_instances) == ("canary", 1)


def test_a_batch_release_has_no_endpoint_to_judge(mocked_aws: None) -> None:
    _live_endpoint(count=1)  # even an endpoint of that name is not looked at
    batch = make_config(
        endpoint={
            "type": "batch",
            "instance_count": 1,
            "batch": {"input_path": "s3://models-bucket/in/", "output_path": "s3://models-bucket/out/"},
        },
        scaling={"enabled": False},
    )
    checked = preflight(batch)
    assert (checked.live, checked.plan) == (None, None)


def test_a_failed_endpoint_is_a_resource_problem_not_bad_input(
    mocked_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _live_endpoint(count=2)
    from tasks.sagemaker import hosting

    real = hosting.describe_endpoint

    def failed(name: str) -> dict[str, Any] | None:
        described = real(name)
        assert described is not None
        return {**described, "EndpointStatus": "Failed", "FailureReason": "container crashed"}

    monkeypatch.setattr(hosting, "describe_endpoint", failed)
    with pytest.raises(ResourceFailed, match="container crashed"):
        preflight(_config(2, strategy="canary"))


def test_no_region_is_refused_as_bad_input_before_any_call(
    mocked_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    aws.reset_clients()
    with pytest.raises(ConfigError) as refused:
        preflight(_config(strategy="canary"))
    assert refused.value.field == "AWS_DEFAULT_REGION"
    assert 'eval "$(make env)"' in refused.value.fix


def test_a_model_folder_gone_since_the_config_was_made_is_refused(mocked_aws: None, tmp_path: Any) -> None:
    # A deployment hands the flow its config as parameters: nothing loaded it from a file on this worker.
    folder = tmp_path / "model"
    folder.mkdir()
    config = make_config().model_copy(update={"model": ModelSourceConfig(local_path=str(folder))})
    folder.rmdir()
    with pytest.raises(ConfigError) as refused:
        preflight(config)
    assert refused.value.field == "model.local_path"
    assert "does not exist" in refused.value.problem


def test_an_auto_canary_above_half_the_live_fleet_is_refused_at_preflight(mocked_aws: None) -> None:
    """auto may shift variants by any canary_percent, so the config accepts 80%; only the live endpoint
    shows it becomes a guardrails canary, where SageMaker takes at most half the fleet."""
    _live_endpoint(count=4)
    with pytest.raises(ConfigError) as refused:
        preflight(_config(4, strategy="auto", canary_percent=80))
    assert refused.value.field == "rollout.canary_percent"
    assert "at most half" in refused.value.problem and "at most 50%" in refused.value.fix


def test_a_linear_rollout_on_a_large_fleet_moves_at_least_a_tenth_per_step(mocked_aws: None) -> None:
    _live_endpoint(count=20)
    checked = preflight(_config(20, strategy="linear", linear_step_percent=10))
    assert checked.plan is not None and checked.plan.step_instances == 2
