from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.config import (
    MAX_ALIAS_EXPANSION,
    ReleaseConfig,
    check_value,
    load_config,
    parse_config,
    split_s3_uri,
)
from tasks.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]

MINIMAL: dict[str, Any] = {
    "role_arn": "arn:aws:iam::123456789012:role/SageMakerExecution",
    "model": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2"},
    "storage": {"bucket": "sagemaker-release-demo"},
    "endpoint": {"name": "demo-embedder"},
}


def _with(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    for name, values in sections.items():
        if isinstance(data.get(name), dict):
            data[name].update(values)
        else:
            data[name] = values
    return data


def _refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value


def test_a_minimal_config_gets_sensible_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.endpoint.type == "realtime" and config.endpoint.instance_type == "ml.m5.xlarge"
    assert config.packaging.format == "tar.gz" and config.storage.prefix == "sagemaker-release"
    assert config.model.revision == "main" and config.model.token_env == "HF_TOKEN"
    assert config.image.source == "build" and config.rollout.strategy == "all_at_once"


@pytest.mark.parametrize(
    ("case", "data", "field", "fix"),
    [
        ("name too long", _with(endpoint={"name": "e" * 64}), "endpoint.name", "shorten it to 63"),
        ("name bad characters", _with(endpoint={"name": "demo_embedder"}), "endpoint.name", "single hyphens"),
        ("name ends with hyphen", _with(endpoint={"name": "demo-"}), "endpoint.name", "letters, digits"),
        (
            "variant bad characters",
            _with(endpoint={"name": "e", "variant_name": "all traffic"}),
            "endpoint.variant_name",
            "single hyphens",
        ),
        ("release id", _with(release_id="Release_1"), "release_id", "lowercase"),
        ("bucket s3 uri", _with(storage={"bucket": "s3://my-bucket"}), "storage.bucket", "no 's3://'"),
        ("bucket uppercase", _with(storage={"bucket": "MyBucket"}), "storage.bucket", "lowercase"),
        ("prefix slashes", _with(storage={"prefix": "/models/"}), "storage.prefix", "without leading"),
        (
            "async output uri malformed",
            _with(
                endpoint={"name": "e", "type": "async", "async_inference": {"output_path": "s3:/bucket/out"}}
            ),
            "endpoint.async_inference.output_path",
            "s3://<bucket>/<prefix>/",
        ),
        (
            "async uri without key",
            _with(endpoint={"name": "e", "type": "async", "async_inference": {"output_path": "s3://bucket"}}),
            "endpoint.async_inference.output_path",
            "s3://<bucket>/<prefix>/",
        ),
        (
            "batch input uri",
            _with(
                endpoint={
                    "name": "e",
                    "type": "batch",
                    "batch": {"input_path": "https://x/y", "output_path": "s3://bkt/o/"},
                }
            ),
            "endpoint.batch.input_path",
            "s3://",
        ),
        (
            "role arn user",
            _with(role_arn="arn:aws:iam::123456789012:user/alice"),
            "role_arn",
            "arn:aws:iam::<12-digit account>:role/",
        ),
        ("role arn account", _with(role_arn="arn:aws:iam::1234:role/x"), "role_arn", "12-digit"),
        (
            "role arn missing",
            {k: v for k, v in MINIMAL.items() if k != "role_arn"},
            "role_arn",
            "add role_arn",
        ),
        (
            "instance type not ml",
            _with(endpoint={"name": "e", "instance_type": "m5.xlarge"}),
            "endpoint.instance_type",
            "ml.* type",
        ),
        (
            "instance type ec2 family",
            _with(endpoint={"name": "e", "instance_type": "ml.m5"}),
            "endpoint.instance_type",
            "ml.* type",
        ),
        (
            "instance count zero",
            _with(endpoint={"name": "e", "instance_count": 0}),
            "endpoint.instance_count",
            "give a whole number from 1 to 100",
        ),
        (
            "instance count huge",
            _with(endpoint={"name": "e", "instance_count": 1000}),
            "endpoint.instance_count",
            "from 1 to 100",
        ),
        (
            "canary percent",
            _with(rollout={"strategy": "canary", "canary_percent": 100}),
            "rollout.canary_percent",
            "from 1 to 99",
        ),
        (
            "linear percent",
            _with(rollout={"linear_step_percent": 0}),
            "rollout.linear_step_percent",
            "from 1 to 99",
        ),
        (
            "steps out of range",
            _with(rollout={"strategy": "variant_shift", "steps": [10, 150]}),
            "rollout.steps",
            "increasing percentages",
        ),
        (
            "bake ending before one-minute alarms can fire",
            _with(rollout={"bake_s": 130}),
            "rollout.bake_s",
            "set rollout.bake_s to at least 140 (or 0 for no bake)",
        ),
        (
            "final bake ending before 10 s alarms over 3 periods can fire",
            _with(rollout={"final_bake_s": 45, "alarms": {"period_s": 10, "evaluation_periods": 3}}),
            "rollout.final_bake_s",
            "set rollout.final_bake_s to at least 60",
        ),
        (
            "10 s alarms on a serverless endpoint's one-minute metrics",
            _with(endpoint={"name": "e", "type": "serverless"}, rollout={"alarms": {"period_s": 10}}),
            "rollout.alarms.period_s",
            "set rollout.alarms.period_s to 60",
        ),
        (
            "30 s alarms on an async endpoint's one-minute metrics",
            _with(
                endpoint={
                    "name": "e",
                    "type": "async",
                    "async_inference": {"output_path": "s3://my-bucket/out/"},
                },
                rollout={"alarms": {"period_s": 30}},
            ),
            "rollout.alarms.period_s",
            "set rollout.alarms.period_s to 60",
        ),
        (
            "steps decreasing",
            _with(rollout={"strategy": "variant_shift", "steps": [50, 10]}),
            "rollout.steps",
            "increasing percentages",
        ),
        (
            "linear step below SageMaker's 10%",
            _with(rollout={"strategy": "linear", "linear_step_percent": 5}),
            "rollout.linear_step_percent",
            "linear steps of 10 to 50%",
        ),
        (
            "linear step above half the fleet",
            _with(rollout={"strategy": "linear", "linear_step_percent": 60}),
            "rollout.linear_step_percent",
            "linear steps of 10 to 50%",
        ),
        (
            "linear steps of 5%",
            _with(rollout={"strategy": "linear", "steps": [5, 10, 15, 100]}),
            "rollout.steps",
            "linear steps of 10 to 50%",
        ),
        (
            "linear steps unequal",
            _with(rollout={"strategy": "linear", "steps": [20, 50, 100]}),
            "rollout.steps",
            "give equal steps",
        ),
        (
            "canary above half the fleet",
            _with(rollout={"strategy": "canary", "canary_percent": 60}),
            "rollout.canary_percent",
            "at most 50",
        ),
        (
            "canary step above half the fleet",
            _with(rollout={"strategy": "canary", "steps": [75, 100]}),
            "rollout.steps",
            "start rollout.steps at 50 or less",
        ),
        (
            "linear waits beyond the execution timeout",
            _with(
                endpoint={"name": "e", "instance_count": 10},
                rollout={"strategy": "linear", "linear_step_percent": 10, "bake_s": 3600},
            ),
            "rollout.bake_s",
            "shorten rollout.bake_s to at most 2864 s",
        ),
        (
            "linear on serverless",
            _with(endpoint={"name": "e", "type": "serverless"}, rollout={"strategy": "linear"}),
            "rollout.strategy",
            "all_at_once",
        ),
        (
            "alarm period",
            _with(rollout={"alarms": {"period_s": 45}}),
            "rollout.alarms.period_s",
            "multiple of 60",
        ),
        (
            "datapoints",
            _with(rollout={"alarms": {"evaluation_periods": 1, "datapoints_to_alarm": 3}}),
            "rollout.alarms.datapoints_to_alarm",
            "at most evaluation_periods",
        ),
        (
            "async without output",
            _with(endpoint={"name": "e", "type": "async"}),
            "endpoint.async_inference.output_path",
            "set endpoint.async_inference.output_path",
        ),
        (
            "async without output path",
            _with(
                endpoint={"name": "e", "type": "async", "async_inference": {"failure_path": "s3://bkt/f/"}}
            ),
            "endpoint.async_inference.output_path",
            "s3://<bucket>/<prefix>/",
        ),
        (
            "serverless memory low",
            _with(endpoint={"name": "e", "type": "serverless", "serverless": {"memory_mb": 512}}),
            "endpoint.serverless.memory_mb",
            "1024, 2048, 3072, 4096, 5120, 6144",
        ),
        (
            "serverless memory high",
            _with(endpoint={"name": "e", "type": "serverless", "serverless": {"memory_mb": 8192}}),
            "endpoint.serverless.memory_mb",
            "6144",
        ),
        (
            "serverless memory step",
            _with(endpoint={"name": "e", "type": "serverless", "serverless": {"memory_mb": 1536}}),
            "endpoint.serverless.memory_mb",
            "use one of 1024",
        ),
        (
            "serverless concurrency zero",
            _with(endpoint={"name": "e", "type": "serverless", "serverless": {"max_concurrency": 0}}),
            "endpoint.serverless.max_concurrency",
            "from 1 to 200",
        ),
        (
            "serverless concurrency high",
            _with(endpoint={"name": "e", "type": "serverless", "serverless": {"max_concurrency": 201}}),
            "endpoint.serverless.max_concurrency",
            "from 1 to 200",
        ),
        (
            "provisioned above max",
            _with(
                endpoint={
                    "name": "e",
                    "type": "serverless",
                    "serverless": {"max_concurrency": 5, "provisioned_concurrency": 6},
                }
            ),
            "endpoint.serverless.provisioned_concurrency",
            "from 1 to max_concurrency (5)",
        ),
        (
            "serverless section on realtime",
            _with(endpoint={"name": "e", "serverless": {"memory_mb": 2048}}),
            "endpoint.serverless",
            "set endpoint.type: serverless",
        ),
        (
            "burstable with autoscaling",
            _with(endpoint={"name": "e", "instance_type": "ml.t2.medium"}, scaling={"enabled": True}),
            "endpoint.instance_type",
            "non-burstable",
        ),
        (
            "burstable t3 with autoscaling",
            _with(endpoint={"name": "e", "instance_type": "ml.t3.large"}, scaling={"enabled": True}),
            "endpoint.instance_type",
            "scaling.enabled: false",
        ),
        (
            "scale to zero on realtime",
            _with(scaling={"enabled": True, "min_capacity": 0}),
            "scaling.min_capacity",
            "endpoint.type: async",
        ),
        (
            "min above max",
            _with(scaling={"enabled": True, "min_capacity": 3, "max_capacity": 2}),
            "scaling.min_capacity",
            "at most scaling.max_capacity",
        ),
        (
            "serverless autoscaling",
            _with(endpoint={"name": "e", "type": "serverless"}, scaling={"enabled": True}),
            "scaling.enabled",
            "scaling.enabled: false",
        ),
        (
            "canary on serverless",
            _with(endpoint={"name": "e", "type": "serverless"}, rollout={"strategy": "canary"}),
            "rollout.strategy",
            "all_at_once",
        ),
        (
            "unknown key",
            _with(endpoint={"name": "e", "instance_typ": "ml.m5.large"}),
            "endpoint.instance_typ",
            "did you mean 'instance_type'",
        ),
        ("unknown section", _with(scailng={"enabled": True}), "scailng", "did you mean 'scaling'"),
        (
            "strategy",
            _with(rollout={"strategy": "blue-green"}),
            "rollout.strategy",
            "use one of 'all_at_once'",
        ),
        (
            "both model sources",
            _with(model={"repo_id": "a/b", "local_path": "/m"}),
            "model.repo_id",
            "model.local_path",
        ),
        ("no model source", {**MINIMAL, "model": {"revision": "main"}}, "model.repo_id", "model.local_path"),
        ("hub repo id", _with(model={"repo_id": "not a repo"}), "model.repo_id", "<owner>/<name>"),
        (
            "prebuilt without uri",
            _with(image={"source": "prebuilt"}),
            "image.image_uri",
            "set image.image_uri",
        ),
        (
            "image uri without tag",
            _with(image={"source": "prebuilt", "image_uri": "registry/repo"}),
            "image.image_uri",
            "<registry>/<repository>:<tag>",
        ),
        ("ecr repository", _with(image={"repository": "Serving"}), "image.repository", "lowercase"),
        (
            "env var name",
            _with(endpoint={"name": "e", "environment": {"1BAD": "x"}}),
            "endpoint.environment",
            "not starting with a digit",
        ),
        ("reserved tag", _with(tags={"release-id": "x"}), "tags", "remove it from tags"),
        (
            "sns arn",
            _with(
                endpoint={
                    "name": "e",
                    "type": "async",
                    "async_inference": {"output_path": "s3://bkt/o/", "success_topic_arn": "topic"},
                }
            ),
            "endpoint.async_inference.success_topic_arn",
            "arn:aws:sns:",
        ),
        ("smoke payload", _with(smoke={"payloads": [42]}), "smoke.payloads[0]", "JSON object or array"),
        ("smoke status", _with(smoke={"expect_status": 700}), "smoke.expect_status", "from 100 to 599"),
        ("scaling max zero", _with(scaling={"max_capacity": 0}), "scaling.max_capacity", "from 1 to 100"),
        (
            "instance count above max",
            _with(endpoint={"name": "e", "instance_count": 3}, scaling={"enabled": True, "max_capacity": 2}),
            "endpoint.instance_count",
            "raise scaling.max_capacity",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else None,
)
def test_bad_input_is_refused_naming_the_field_and_the_fix(
    case: str, data: dict[str, Any], field: str, fix: str
) -> None:
    error = _refused(data)
    assert error.field == field, f"{case}: {error}"
    assert fix in error.fix, f"{case}: {error}"
    assert field in str(error) and "fix:" in str(error)


@pytest.mark.parametrize(
    ("rollout", "endpoint"),
    [
        ({"bake_s": 140, "final_bake_s": 140}, {}),  # exactly 60 s x 1 + 80 s
        ({"bake_s": 0, "final_bake_s": 0}, {}),  # no bake at all
        ({"bake_s": 40, "final_bake_s": 40, "alarms": {"period_s": 10}}, {}),  # enhanced metrics
        ({"bake_s": 150, "alarms": {"period_s": 60}}, {"type": "serverless"}),  # one-minute alarms
    ],
)
def test_bakes_the_alarms_can_watch_are_accepted(rollout: dict[str, Any], endpoint: dict[str, Any]) -> None:
    config = parse_config(_with(endpoint={"name": "e", **endpoint}, rollout=rollout))
    assert config.rollout.bake_s == rollout["bake_s"]


def test_all_problems_are_reported_at_once() -> None:
    error = _refused(_with(endpoint={"name": "e" * 70, "instance_type": "c5.large"}, storage={"bucket": "B"}))
    assert {issue.field for issue in error.issues} == {
        "endpoint.name",
        "endpoint.instance_type",
        "storage.bucket",
    }


def test_allowed_edge_values() -> None:
    ok = parse_config(
        _with(
            endpoint={
                "name": "e" * 63,
                "type": "serverless",
                "serverless": {"memory_mb": 6144, "max_concurrency": 200},
            },
        )
    )
    assert ok.endpoint.serverless is not None and ok.endpoint.serverless.memory_mb == 6144
    asynchronous = parse_config(
        _with(
            endpoint={"name": "e", "type": "async", "async_inference": {"output_path": "s3://bkt/out/"}},
            scaling={"enabled": True, "min_capacity": 0, "max_capacity": 5},
        )
    )
    assert asynchronous.scaling.min_capacity == 0
    burstable = parse_config(_with(endpoint={"name": "e", "instance_type": "ml.t2.medium"}))
    assert burstable.endpoint.instance_type == "ml.t2.medium"


def test_serverless_type_gets_default_settings() -> None:
    config = parse_config(_with(endpoint={"name": "e", "type": "serverless"}))
    assert config.endpoint.serverless is not None and config.endpoint.serverless.memory_mb == 2048


@pytest.mark.parametrize(
    ("strategy", "rollout", "steps"),
    [
        ("all_at_once", {}, [100]),
        ("canary", {"canary_percent": 10}, [10, 100]),
        ("linear", {"linear_step_percent": 30}, [30, 60, 90, 100]),
        ("linear", {"linear_step_percent": 50}, [50, 100]),
        ("variant_shift", {"steps": [10, 50]}, [10, 50, 100]),
        ("variant_shift", {"steps": [25, 100]}, [25, 100]),
    ],
)
def test_traffic_steps_always_end_at_100(strategy: str, rollout: dict[str, Any], steps: list[int]) -> None:
    config = parse_config(_with(rollout={"strategy": strategy, **rollout}))
    assert config.rollout.traffic_steps() == steps


def test_release_id_is_generated_once_and_kept() -> None:
    config = parse_config(MINIMAL)
    assert config.release_id is None
    filled = config.with_release_id()
    assert filled.release_id is not None and filled.with_release_id() is filled
    assert config.with_release_id("r-7").release_id == "r-7"


def test_every_example_release_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # their build context (container) is relative to the checkout
    files = sorted((REPO / "releases").glob("*.yaml"))
    assert files, "releases/ has no examples"
    for file in files:
        config = load_config(file)
        assert config.role_arn.startswith("arn:aws:iam::")
    demo = load_config(REPO / "releases" / "demo.yaml")
    assert demo.model.repo_id == "sentence-transformers/all-MiniLM-L6-v2" and demo.endpoint.type == "realtime"


def test_load_config_reports_the_file_and_yaml_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("endpoint:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: config: YAML syntax error at line"):
        load_config(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(_with(endpoint={"name": "bad_name"})))
    with pytest.raises(ConfigError, match=r"bad.yaml: endpoint.name"):
        load_config(bad)


def test_overrides_replace_single_values(tmp_path: Path) -> None:
    file = tmp_path / "r.yaml"
    file.write_text(json.dumps(MINIMAL))
    config = load_config(file, overrides={"endpoint.instance_count": 2, "release_id": "r1"})
    assert config.endpoint.instance_count == 2 and config.release_id == "r1"


def test_schema_is_a_form_prefect_can_render() -> None:
    schema = ReleaseConfig.model_json_schema()
    json.dumps(schema)

    def walk(node: Any, path: str, check: Callable[[str, dict[str, Any]], None]) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                for name, prop in node["properties"].items():
                    check(f"{path}.{name}", prop)
            for key, value in node.items():
                walk(value, f"{path}/{key}", check)
        elif isinstance(node, list):
            for item in node:
                walk(item, path, check)

    missing: list[str] = []
    walk(schema, "", lambda where, prop: None if prop.get("description") else missing.append(where))
    assert missing == []
    strategy = schema["$defs"]["RolloutConfig"]["properties"]["strategy"]
    assert strategy["enum"] == ["all_at_once", "canary", "linear", "variant_shift", "auto"]
    assert all(d.get("additionalProperties") is False for d in schema["$defs"].values())


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        split_s3_uri("https://bucket/a")


def test_prefect_renders_the_config_as_a_form_and_refuses_bad_parameters() -> None:
    from prefect import flow
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    @flow
    def release_form(config: ReleaseConfig) -> None:
        """Stands in for flows/release.py: a flow whose parameter is the release config."""

    schema = parameter_schema(release_form.fn).model_dump()
    assert "EndpointConfig" in schema["definitions"]
    assert release_form.validate_parameters({"config": MINIMAL})["config"].endpoint.name == "demo-embedder"
    with pytest.raises(
        ParameterTypeError, match=r"config.role_arn: .* fix: give the SageMaker execution role"
    ):
        release_form.validate_parameters({"config": {**MINIMAL, "role_arn": "SageMakerExecution"}})


@pytest.mark.parametrize(
    ("data", "field", "problem", "fix"),
    [
        (
            _with(endpoint={"name": "e", "instance_count": 1.5}),
            "endpoint.instance_count",
            "1.5 is not a whole number",
            "give a whole number from 1 to 100",
        ),
        (
            _with(endpoint={"name": "e", "instance_count": True}),
            "endpoint.instance_count",
            "true is not a whole number",
            "give a whole number from 1 to 100",
        ),
        (
            _with(endpoint={"name": "e", "container_startup_timeout_s": "90"}),
            "endpoint.container_startup_timeout_s",
            "'90' is not a whole number",
            "give a whole number from 60 to 3600, or null to leave it empty",
        ),
        (
            _with(smoke={"max_latency_ms": float("inf")}),
            "smoke.max_latency_ms",
            ".inf is not a finite number",
            "give a number greater than 0",
        ),
        (
            _with(scaling={"target_backlog_per_instance": "5"}),
            "scaling.target_backlog_per_instance",
            "'5' is not a number",
            "give a number greater than 0 and at most 100000",
        ),
        (
            _with(storage={"create_bucket": "yes"}),
            "storage.create_bucket",
            "'yes' is not true or false",
            "true or false",
        ),
        (
            _with(endpoint={"name": "e", "type": "serverless", "serverless": {"memory_mb": 2048.5}}),
            "endpoint.serverless.memory_mb",
            "2048.5 is not a whole number",
            "Memory in MB: 1024, 2048",
        ),
        (
            _with(smoke={"latency_percentile": "p100"}),
            "smoke.latency_percentile",
            "'p100' is not allowed",
            "use one of 'p50', 'p90', 'p95', 'p99' or 'max'",
        ),
        (
            _with(model={"repo_id": "a/b", "revision": 1.10}),
            "model.revision",
            "1.1 is not text",
            "quote it in YAML",
        ),
        (_with(tags=["team"]), "tags", "['team'] is not a mapping", "give a mapping"),
    ],
)
def test_type_errors_say_what_the_field_takes(
    data: dict[str, Any], field: str, problem: str, fix: str
) -> None:
    error = _refused(data)
    assert (error.field, error.problem) == (field, problem), str(error)
    assert fix in error.fix, str(error)


@pytest.mark.parametrize(
    "rollout",
    [
        {"strategy": "canary", "canary_percent": 20, "steps": [20, 100]},
        {"strategy": "linear", "linear_step_percent": 50},
        {"strategy": "variant_shift", "canary_percent": 20},
        {"strategy": "auto", "steps": [50]},
        {"strategy": "all_at_once", "canary_percent": 10, "linear_step_percent": 25},  # the defaults
    ],
)
def test_rollout_fields_are_accepted_with_a_strategy_that_reads_them(rollout: dict[str, Any]) -> None:
    assert parse_config(_with(rollout=rollout)).rollout.strategy == rollout["strategy"]


def test_names_close_to_the_reserved_ones_are_fine() -> None:
    for bucket in (
        "my-xn--bucket",
        "s3alias-models",
        "models-ol-s3",
        "sthree",
        "amzn-s3-demo",
        "x-s3-models",
    ):
        assert parse_config(_with(storage={"bucket": bucket})).storage.bucket == bucket
    for revision in ("main", "refs/pr/1", "v1.0", "release/2025-03", "a" * 40, "feature_x@2"):
        assert parse_config(_with(model={"revision": revision})).model.revision == revision
    for image in (
        "python:3.11-slim",
        "127.0.0.1:5000/sagemaker-release-base:bookworm",
        "localhost:5000/base",
        "public.ecr.aws/docker/library/python:3.11",
        "python@sha256:" + "0" * 64,
        "",
    ):
        assert parse_config(_with(image={"base_image": image})).image.base_image == image


def test_a_trailing_newline_does_not_pass_a_name() -> None:
    for data, field in (
        (_with(endpoint={"name": "demo\n"}), "endpoint.name"),
        (_with(release_id="r1\n"), "release_id"),
        (_with(storage={"bucket": "my-bucket\n"}), "storage.bucket"),
        (_with(role_arn=MINIMAL["role_arn"] + "\n"), "role_arn"),
    ):
        assert _refused(data).field == field


def test_duplicate_keys_are_refused_naming_the_key_and_lines(tmp_path: Path) -> None:
    file = tmp_path / "dup.yaml"
    file.write_text(json.dumps(MINIMAL) + "\n")
    assert load_config(file, check_folders=False).endpoint.name == "demo-embedder"
    file.write_text(
        "role_arn: arn:aws:iam::123456789012:role/x\nmodel: {repo_id: a/b}\nstorage:\n  bucket: one\n"
        "  bucket: two\nendpoint: {name: e}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(file, check_folders=False)
    assert caught.value.field == "storage.bucket" and "lines 4 and 5" in caught.value.problem


def test_anchors_and_merge_keys_load_and_alias_bombs_do_not(tmp_path: Path) -> None:
    file = tmp_path / "anchors.yaml"
    file.write_text(
        "role_arn: arn:aws:iam::123456789012:role/x\nmodel: {repo_id: a/b}\nstorage: {bucket: models}\n"
        "endpoint: &ep {name: e, instance_type: ml.m5.large}\n"
        "smoke:\n  payloads: &p [{inputs: a}, {inputs: b}]\n"
        "rollout:\n  bake_traffic: {payloads: *p}\n"
    )
    config = load_config(file, check_folders=False)
    assert config.rollout.bake_traffic.payloads == config.smoke.payloads
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "role_arn: arn:aws:iam::123456789012:role/x\nmodel: {repo_id: a/b}\nstorage: {bucket: models}\n"
        "endpoint:\n  <<: {name: e, instance_type: ml.m5.large}\n  instance_type: ml.c5.large\n"
    )
    assert load_config(merged, check_folders=False).endpoint.instance_type == "ml.c5.large"
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(file.read_text() + "l0: &l0 [x]\n" + laughs)
    with pytest.raises(ConfigError, match=f"more than {MAX_ALIAS_EXPANSION} added values"):
        load_config(bomb, check_folders=False)


def test_local_folders_must_exist_where_the_config_is_loaded(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    data = _with(model={"repo_id": None, "local_path": str(model)}, image={"context": str(context)})
    file = tmp_path / "local.yaml"
    file.write_text(json.dumps(data))
    assert load_config(file).model.local_path == str(model)
    model.rmdir()
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert caught.value.field == "model.local_path" and "does not exist" in caught.value.problem
    assert load_config(file, check_folders=False).model.local_path == str(model)


def test_a_bad_release_id_given_later_is_a_config_error() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(ConfigError) as caught:
        config.with_release_id("Not Valid")
    assert caught.value.field == "release_id" and "lowercase" in caught.value.fix
    assert check_value("--bucket", "my-bucket", "bucket") == "my-bucket"
    with pytest.raises(ConfigError, match=r"invalid command line: --bucket: 'xn--b' .*fix: choose a name"):
        check_value("--bucket", "xn--b", "bucket", subject="command line")
