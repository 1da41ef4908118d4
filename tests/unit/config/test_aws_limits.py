"""Combinations SageMaker refuses, refused by the config before anything is uploaded or built: uncompressed
model data on serverless endpoints and batch transform, a transform job's payload in flight and
environment, and tag characters."""

from __future__ import annotations

import copy
from typing import Any

import botocore.session
import pytest

from tasks.config import ReleaseConfig, parse_config
from tasks.config.fields import TAG_PATTERN
from tasks.core.errors import ConfigError
from tasks.sagemaker.endpoint_spec import transform_job_request

BASE: dict[str, Any] = {
    "role_arn": "arn:aws:iam::123456789012:role/SageMakerExecution",
    "model": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2"},
    "storage": {"bucket": "sagemaker-release-demo"},
    "endpoint": {"name": "demo-embedder"},
}
BATCH: dict[str, Any] = {
    "type": "batch",
    "batch": {"input_path": "s3://inputs-bucket/in/", "output_path": "s3://outputs-bucket/out/"},
}


def _config(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for name, values in sections.items():
        if isinstance(data.get(name), dict):
            data[name].update(values)
        else:
            data[name] = values
    return data


def _batch(**batch: Any) -> dict[str, Any]:
    return {**BATCH, "batch": {**BATCH["batch"], **batch}}


def _refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


# -- model data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "kind"),
    [({"type": "serverless"}, "serverless endpoints"), (BATCH, "batch transform")],
)
def test_uncompressed_model_data_is_refused_where_sagemaker_takes_only_an_archive(
    endpoint: dict[str, Any], kind: str
) -> None:
    error = _refused(_config(packaging={"format": "s3_prefix"}, endpoint=endpoint))
    assert error.field == "packaging.format"
    assert f"cannot be used with {kind}" in error.problem
    assert "set packaging.format: tar.gz" in error.fix


@pytest.mark.parametrize("kind", ["realtime", "async"])
def test_uncompressed_model_data_serves_instance_backed_endpoints(kind: str) -> None:
    endpoint: dict[str, Any] = {"type": kind}
    if kind == "async":
        endpoint["async_inference"] = {"output_path": "s3://outputs-bucket/async/"}
    config = parse_config(_config(packaging={"format": "s3_prefix"}, endpoint=endpoint))
    assert config.packaging.format == "s3_prefix"


@pytest.mark.parametrize("endpoint", [{"type": "serverless"}, BATCH])
def test_an_archive_serves_serverless_and_batch(endpoint: dict[str, Any]) -> None:
    assert parse_config(_config(endpoint=endpoint, scaling={"enabled": False})).packaging.format == "tar.gz"


# -- batch limits -------------------------------------------------------------------------------------


def _request(config: ReleaseConfig) -> dict[str, Any]:
    return transform_job_request(config, "r1", "model-r1")


@pytest.mark.parametrize(
    ("concurrent", "payload", "fix"),
    [
        (
            20,
            6,
            "max_concurrent_transforms to at most 16 (or 0 to let SageMaker pick), or "
            "endpoint.batch.max_payload_mb to at most 5",
        ),
        (
            2,
            51,
            "max_concurrent_transforms to at most 1 (or 0 to let SageMaker pick), or "
            "endpoint.batch.max_payload_mb to at most 50",
        ),
    ],
)
def test_more_than_100_mb_in_flight_is_refused_with_the_largest_values_that_fit(
    concurrent: int, payload: int, fix: str
) -> None:
    error = _refused(_config(endpoint=_batch(max_concurrent_transforms=concurrent, max_payload_mb=payload)))
    assert error.field == "endpoint.batch.max_concurrent_transforms"
    assert f"is {concurrent * payload} MB; SageMaker allows at most 100 MB" in error.problem
    assert error.fix == f"set endpoint.batch.{fix}"


@pytest.mark.parametrize(("concurrent", "payload"), [(10, 10), (16, 6), (100, 1), (0, 100), (100, 0)])
def test_up_to_100_mb_in_flight_is_sent_as_given(concurrent: int, payload: int) -> None:
    config = parse_config(
        _config(endpoint=_batch(max_concurrent_transforms=concurrent, max_payload_mb=payload))
    )
    request = _request(config)
    assert request["MaxPayloadInMB"] == payload
    assert request.get("MaxConcurrentTransforms", 0) == concurrent


def _environment(count: int) -> dict[str, str]:
    return {f"VAR_{index}": "x" for index in range(count)}


def test_a_batch_job_environment_of_16_is_sent_whole() -> None:
    config = parse_config(_config(endpoint={**BATCH, "environment": _environment(16)}))
    assert len(_request(config)["Environment"]) == 16


def test_a_batch_job_environment_over_16_is_refused() -> None:
    error = _refused(_config(endpoint={**BATCH, "environment": _environment(17)}))
    assert error.field == "endpoint.environment"
    assert "passes 17 environment variables; CreateTransformJob accepts at most 16" in error.problem
    assert error.fix == "keep at most 16 variables in endpoint.environment for endpoint.type batch"


def test_hf_task_counts_toward_the_batch_environment() -> None:
    task = {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "task": "feature-extraction"}
    error = _refused(_config(model=task, endpoint={**BATCH, "environment": _environment(16)}))
    assert error.field == "endpoint.environment"
    assert "16 environment variables plus HF_TASK from model.task" in error.problem
    assert "keep at most 15 variables" in error.fix
    fifteen = parse_config(_config(model=task, endpoint={**BATCH, "environment": _environment(15)}))
    assert len(_request(fifteen)["Environment"]) == 16
    # An HF_TASK given in the environment is the one sent; model.task adds nothing then.
    given = {**_environment(15), "HF_TASK": "feature-extraction"}
    assert (
        len(
            _request(parse_config(_config(model=task, endpoint={**BATCH, "environment": given})))[
                "Environment"
            ]
        )
        == 16
    )


def test_a_realtime_endpoint_keeps_sagemakers_limit_of_100_variables() -> None:
    config = parse_config(_config(endpoint={"environment": _environment(17)}))
    assert len(config.endpoint.environment) == 17


# -- tags ---------------------------------------------------------------------------------------------


def test_the_tag_rule_is_sagemakers() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    for shape in ("TagKey", "TagValue"):
        assert model.shape_for(shape).metadata["pattern"] == f"({TAG_PATTERN})"


def test_tags_of_letters_numbers_separators_and_the_listed_marks_are_taken() -> None:
    tags = {"équipe Ω": "données ٣", "cost-center": "a/b=c+d-e@f:g_h.i 1", "empty": ""}
    assert parse_config(_config(tags=tags)).tags == tags


@pytest.mark.parametrize(
    ("tags", "problem", "fix"),
    [
        (
            {"team#1": "ml"},
            "tag key 'team#1' holds '#', which SageMaker refuses in a tag key",
            "rename the tag",
        ),
        (
            {"team": "a,b;c,"},
            "the value of tag 'team' holds ',', ';', which SageMaker refuses in a tag value",
            "change the value",
        ),
        ({"owner": "me😀"}, "the value of tag 'owner' holds '😀'", "change the value"),
        ({"tab\there": "x"}, "tag key 'tab\\there' holds '\\t'", "rename the tag"),
    ],
)
def test_tags_with_other_characters_are_refused_naming_the_tag(
    tags: dict[str, str], problem: str, fix: str
) -> None:
    error = _refused(_config(tags=tags))
    assert error.field == "tags"
    assert error.problem.startswith(problem)
    assert error.fix == f"{fix}: use only letters, numbers, spaces and _ . : / = + - @"
