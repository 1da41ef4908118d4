"""The release forms: the short `release-from-file` form (flows/release_from_file.py) and the schema of the
full `release` form (labels, descriptions as the UI renders them, and the rules the flow enforces)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, get_args

import pytest
from markdown_it import MarkdownIt
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

import flows.release_from_file as form
from flows.release import release
from flows.run_names import SEPARATOR, release_run_name, run_release_id
from tasks.config import ReleaseConfig, RolloutConfig, SmokeConfig, load_config, load_yaml
from tasks.config.titles import field_title
from tasks.core.errors import ConfigError

CHECKOUT = Path(__file__).resolve().parents[3]
DEMO = "releases/demo.yaml"
RELEASE_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}\Z")


def _form_schema() -> dict[str, Any]:
    return parameter_schema(form.release_from_file.fn).model_dump()


def _release_schema() -> dict[str, Any]:
    return parameter_schema(release.fn).model_dump()


def _errors(values: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return [error.message for error in validate(values, schema, raise_on_error=False)]


def _demo() -> dict[str, Any]:
    data = load_yaml((CHECKOUT / DEMO).read_text(encoding="utf-8"), field="config")
    assert isinstance(data, dict)
    return data


# --- the short form's schema ----------------------------------------------------------------------------


def test_the_config_file_is_a_dropdown_of_the_files_of_releases() -> None:
    schema = _form_schema()
    on_disk = sorted(f"releases/{p.name}" for p in (CHECKOUT / "releases").glob("*.yaml"))
    assert schema["properties"]["config_path"]["enum"] == on_disk
    assert DEMO in on_disk
    # Only the file is required: every other field is empty by default and keeps the file's value.
    assert schema["required"] == ["config_path"]
    for name in ("revision", "endpoint_name", "strategy", "instance_count", "approval", "overrides"):
        assert schema["properties"][name]["default"] is None, name


def test_the_form_refuses_a_file_outside_releases_and_takes_one_inside() -> None:
    schema = _form_schema()
    assert _errors({"config_path": DEMO, "revision": "0" * 40}, schema) == []
    assert _errors({"config_path": "/etc/passwd"}, schema)
    assert _errors({"revision": "main"}, schema)  # no config file
    assert _errors({"config_path": DEMO, "instance_count": 0}, schema)
    assert _errors({"config_path": DEMO, "endpoint_name": "not a name"}, schema)
    assert _errors({"config_path": DEMO, "strategy": "big_bang"}, schema)
    assert _errors({"config_path": DEMO, "approval": "maybe"}, schema)


def test_config_files_lists_yaml_files_sorted_and_refuses_an_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "releases"
    folder.mkdir()
    with pytest.raises(RuntimeError, match=r"holds no release config"):
        form.offered_files(folder)
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (folder / name).write_text("{}\n")
    (folder / "sub.yaml").mkdir()
    assert form.offered_files(folder) == ("releases/a.yml", "releases/b.yaml")


def test_the_strategy_choices_are_the_configs() -> None:
    annotation = RolloutConfig.model_fields["strategy"].annotation
    assert get_args(form.RolloutStrategy) == get_args(annotation)


def test_labels_read_as_words() -> None:
    properties = _form_schema()["properties"]
    assert {name: p["title"] for name, p in properties.items()} == {
        "config_path": "Config file",
        "revision": "Model revision",
        "endpoint_name": "Endpoint name",
        "strategy": "Rollout strategy",
        "instance_count": "Instance count",
        "approval": "Approval",
        "overrides": "Other fields (key=value)",
        "wait_for_lock_s": "Wait for the endpoint (s)",
    }
    definitions = _release_schema()["definitions"]
    assert definitions["AlarmsConfig"]["properties"]["max_5xx_errors"]["title"] == "Max 5xx errors"
    assert definitions["RolloutConfig"]["properties"]["bake_s"]["title"] == "Bake time (s)"
    assert definitions["ReleaseConfig"]["properties"]["role_arn"]["title"] == "Role ARN"
    assert definitions["ModelSourceConfig"]["title"] == "Model source"
    for model, schema in definitions.items():
        for name, prop in schema["properties"].items():
            # pydantic leaves out a section's title where its model's title is the same words.
            title = prop.get("title") or definitions[prop["$ref"].rsplit("/", 1)[1]]["title"]
            # pydantic's own titles are the names capitalised word by word ("Bake S", "Max 5Xx Errors").
            assert title != name.replace("_", " ").title() or " " not in title, (model, name)
            assert "_" not in title, (model, name)


def test_field_titles_follow_units_and_acronyms_for_a_field_added_later() -> None:
    assert field_title("drain_timeout_s") == "Drain timeout (s)"
    assert field_title("cache_mb") == "Cache (MB)"
    assert field_title("shadow_percent") == "Shadow (%)"
    assert field_title("kms_key_arn") == "Kms key ARN"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _rendered_text(markdown: str) -> str:
    """What a reader sees of `markdown`, rendered as Prefect's UI renders descriptions (HTML allowed)."""
    parser = _Text()
    parser.feed(MarkdownIt("commonmark", {"html": True}).render(markdown))
    return " ".join("".join(parser.parts).split())


def _descriptions(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for name, prop in schema.get("properties", {}).items():
        if prop.get("description"):
            yield name, prop["description"]
    for model, definition in schema.get("definitions", {}).items():
        if definition.get("description"):
            yield model, definition["description"]
        for name, prop in definition.get("properties", {}).items():
            if prop.get("description"):
                yield f"{model}.{name}", prop["description"]


@pytest.mark.parametrize("schema", [_form_schema, _release_schema], ids=["release-from-file", "release"])
def test_descriptions_render_as_written(schema: Any) -> None:
    described = dict(_descriptions(schema()))
    assert len(described) > 5
    for where, text in described.items():
        # Code spans show their text as it is; everything else must survive markdown untouched.
        written = " ".join(html.unescape(text.replace("`", "")).split())
        assert _rendered_text(text) == written, where


def test_the_markdown_check_sees_what_the_ui_swallowed() -> None:
    # The descriptions as they were: the UI dropped <account> and <name> and set '*.onnx', ' in italics.
    assert _rendered_text("role (arn:aws:iam::<account>:role/<name>)") == "role (arn:aws:iam:::role/)"
    assert _rendered_text("e.g. '*.onnx', 'openvino/*'") == "e.g. '.onnx', 'openvino/'"
    assert (
        _rendered_text("role (`arn:aws:iam::<account>:role/<name>`)")
        == "role (arn:aws:iam::<account>:role/<name>)"
    )


# --- the full form's rules ------------------------------------------------------------------------------


def test_the_release_form_takes_the_demo_config() -> None:
    assert _errors({"config": _demo()}, _release_schema()) == []


@pytest.mark.parametrize(
    "model",
    [
        pytest.param({"task": "feature-extraction"}, id="no source"),
        pytest.param({"repo_id": "a/b", "local_path": "models/b"}, id="two sources"),
        pytest.param({"repo_id": None, "local_path": None}, id="both null"),
    ],
)
def test_the_release_form_refuses_a_model_without_exactly_one_source(model: dict[str, Any]) -> None:
    config = {**_demo(), "model": model}
    assert _errors({"config": config}, _release_schema())
    with pytest.raises(ValueError, match="exactly one model source"):
        ReleaseConfig.model_validate(config)


def test_the_release_form_takes_a_local_folder_as_the_source() -> None:
    config = {**_demo(), "model": {"repo_id": None, "local_path": "models/mine"}}
    assert _errors({"config": config}, _release_schema()) == []


def test_smoke_payloads_show_their_default_and_may_not_be_empty() -> None:
    payloads = _release_schema()["definitions"]["SmokeConfig"]["properties"]["payloads"]
    assert payloads["default"] == SmokeConfig().payloads
    config = {**_demo(), "smoke": {"payloads": []}}
    assert _errors({"config": config}, _release_schema())


@pytest.mark.parametrize(
    ("section", "change"),
    [
        pytest.param("rollout", {"alarms": {"period_s": 45}}, id="alarm period"),
        pytest.param("image", {"source": "prebuilt"}, id="prebuilt without uri"),
        pytest.param("image", {"image_uri": "r.example/x:1"}, id="uri without prebuilt"),
        pytest.param(
            "endpoint",
            {"type": "serverless", "serverless": {"memory_mb": 1500}},
            id="serverless memory",
        ),
        pytest.param("endpoint", {"type": "async"}, id="async without output path"),
        pytest.param(
            "endpoint", {"type": "async", "async_inference": {"output_path": None}}, id="async null output"
        ),
        pytest.param(
            "endpoint", {"type": "batch", "batch": {"input_path": "s3://b/in/"}}, id="batch no output"
        ),
        pytest.param("endpoint", {"serverless": {"memory_mb": 2048}}, id="serverless section on realtime"),
        pytest.param(
            "endpoint", {"async_inference": {"output_path": "s3://b/out/"}}, id="async section on realtime"
        ),
        pytest.param("rollout", {"approval": "manual", "strategy": "canary"}, id="approval with canary"),
    ],
)
def test_the_release_form_refuses_what_the_validators_refuse(section: str, change: dict[str, Any]) -> None:
    demo = _demo()
    config = {**demo, section: {**demo.get(section, {}), **change}}
    assert _errors({"config": config}, _release_schema())
    with pytest.raises(ValueError):
        ReleaseConfig.model_validate(config)


def test_the_schema_rules_are_copies_each_time() -> None:
    first = _release_schema()
    first["definitions"]["ModelSourceConfig"]["oneOf"].clear()
    assert _release_schema()["definitions"]["ModelSourceConfig"]["oneOf"]


# --- the form's values ----------------------------------------------------------------------------------


def test_the_form_fields_and_overrides_change_the_file() -> None:
    changes = form.form_changes(
        {
            "revision": " 0123abcd ",
            "endpoint_name": "",
            "strategy": None,
            "instance_count": 2,
            "overrides": ["rollout.bake_s=0\n# a comment\n\nrollout.final_bake_s=0", "tags={team: x}"],
        }
    )
    assert changes == {
        "model.revision": "0123abcd",
        "endpoint.instance_count": 2,
        "rollout.bake_s": 0,
        "rollout.final_bake_s": 0,
        "tags": {"team": "x"},
    }
    config = form.load_form_config({"config_path": DEMO, **{"instance_count": 2, "revision": "v2"}})
    demo = load_config(CHECKOUT / DEMO)
    assert config.model.revision == "v2" and config.endpoint.instance_count == 2
    assert config.endpoint.name == demo.endpoint.name  # empty fields keep the file's value
    assert config.model_dump(exclude={"model", "endpoint"}) == demo.model_dump(exclude={"model", "endpoint"})


def test_a_field_set_twice_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        form.form_changes({"revision": "v1", "overrides": ["model.revision=v2"]})
    assert caught.value.field == "model.revision"
    assert "the revision field ('v1')" in str(caught.value) and "override line 1 ('v2')" in str(caught.value)


@pytest.mark.parametrize(
    ("line", "problem", "fix"),
    [
        ("no-equals-sign", "is not KEY=VALUE", "one field per line"),
        ("endpoint..name=x", "is not a dotted field name", "one field per line"),
        ("smoke.payloads=[unclosed", "YAML syntax error", "quote the value"),
    ],
)
def test_a_bad_override_line_is_refused_naming_its_line(line: str, problem: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        form.form_changes({"overrides": ["rollout.bake_s=0", line]})
    assert caught.value.field == "overrides[2]"
    assert problem in caught.value.problem and fix in caught.value.fix
    assert str(caught.value).startswith("invalid release form: overrides[2]")


def test_a_value_the_config_refuses_names_the_config_field() -> None:
    with pytest.raises(ConfigError) as caught:
        form.load_form_config({"config_path": DEMO, "overrides": ["rollout.strategy=big_bang"]})
    assert caught.value.field == "rollout.strategy"


def test_a_config_path_not_offered_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        form.load_form_config({"config_path": "releases/../../etc/passwd"})
    assert caught.value.field == "config_path" and DEMO in caught.value.fix


# --- runs and their names -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _run_name(run_id: Any) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).name


def test_a_form_run_is_named_after_its_endpoint_and_the_release_id_it_uses(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    @flow(name="release-model", flow_run_name=release_run_name)
    def fake_release(config: ReleaseConfig, wait_for_lock_s: int = 0) -> dict[str, Any]:
        seen["release_id"] = config.release_id
        seen["endpoint"] = config.endpoint.name
        return {"status": "succeeded", "release_id": config.release_id}

    monkeypatch.setattr(form, "release", fake_release)
    state = form.release_from_file(
        config_path=DEMO, endpoint_name="form-embedder", overrides=["rollout.bake_s=0"], return_state=True
    )
    assert state.is_completed(), state
    assert seen["endpoint"] == "form-embedder" and RELEASE_ID.match(seen["release_id"])
    assert _run_name(state.state_details.flow_run_id) == f"form-embedder{SEPARATOR}{seen['release_id']}"

    # Without an endpoint field the file's endpoint names the run.
    state = form.release_from_file(config_path=DEMO, return_state=True)
    assert _run_name(state.state_details.flow_run_id) == f"demo-embedder{SEPARATOR}{seen['release_id']}"


def test_a_refused_form_run_fails_with_the_field_and_fix_before_any_release(
    prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_release(*_: Any, **__: Any) -> Any:
        raise AssertionError("a refused form must not start a release")

    monkeypatch.setattr(form, "release", no_release)
    state = form.release_from_file(
        config_path=DEMO, overrides=["endpoint.instance_count=0"], return_state=True
    )
    assert state.is_failed()
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, dict), summary
    assert summary["status"] == "invalid" and summary["field"] == "endpoint.instance_count"
    assert "endpoint.instance_count" in (state.message or "")
    # Still named after the endpoint: the runs list reads even for a refused run.
    assert _run_name(state.state_details.flow_run_id).startswith(f"demo-embedder{SEPARATOR}")


def test_a_release_run_is_named_after_its_config(prefect_api: None) -> None:
    @flow(name="release-model", flow_run_name=release_run_name)
    def named(config: ReleaseConfig) -> str:
        return run_release_id()

    config = load_config(CHECKOUT / DEMO)
    state = named(config.with_release_id("r-named"), return_state=True)
    assert _run_name(state.state_details.flow_run_id) == f"demo-embedder{SEPARATOR}r-named"
    state = named(config, return_state=True)
    # A config without an id: the run's own, the one the body gets too, shaped as new_release_id's.
    assert _run_name(state.state_details.flow_run_id) == f"demo-embedder{SEPARATOR}{state.result()}"
    assert RELEASE_ID.match(state.result())


def test_run_release_id_outside_a_run_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="inside a flow run"):
        run_release_id()


def test_the_deployment_belongs_to_the_release_flow_and_opens_on_a_listed_file() -> None:
    deployments = load_yaml((CHECKOUT / "deployments.yaml").read_text(encoding="utf-8"), field="deployments")
    by_name = {d["name"]: d for d in deployments["deployments"]}
    short, full = by_name["release-from-file"], by_name["release"]
    # `prefect deployment run 'release-model/release-from-file'`: the flow's name, then the deployment's.
    assert short["entrypoint"] == "flows/release_from_file.py:release_from_file"
    assert form.release_from_file.name == release.name == "release-model"
    assert full["entrypoint"] == "flows/release.py:release"
    assert short["parameters"]["config_path"] in form.CONFIG_FILES
    assert short["work_pool"] == full["work_pool"]


def test_the_approval_field_asks_for_a_person_on_a_variant_shift() -> None:
    config = form.load_form_config({"config_path": DEMO, "approval": "manual", "strategy": "variant_shift"})
    assert (config.rollout.approval, config.rollout.strategy) == ("manual", "variant_shift")
    with pytest.raises(ConfigError) as refused:  # SageMaker would move a canary's traffic by itself
        form.load_form_config({"config_path": DEMO, "approval": "manual", "strategy": "canary"})
    assert "rollout" in refused.value.field


@pytest.mark.parametrize(
    ("section", "change"),
    [
        pytest.param(
            "endpoint",
            {"type": "async", "async_inference": {"output_path": "s3://team-bucket/out/"}},
            id="async",
        ),
        pytest.param(
            "endpoint",
            {
                "type": "batch",
                "batch": {"input_path": "s3://team-bucket/in/", "output_path": "s3://team-bucket/out/"},
            },
            id="batch",
        ),
        pytest.param("endpoint", {"type": "serverless", "serverless": {"memory_mb": 2048}}, id="serverless"),
        pytest.param("rollout", {"approval": "manual", "strategy": "variant_shift"}, id="approval"),
    ],
)
def test_the_release_form_takes_what_the_validators_take(section: str, change: dict[str, Any]) -> None:
    demo = _demo()
    config = {**demo, section: {**demo.get(section, {}), **change}}
    if section == "endpoint" and change["type"] != "realtime":
        config["scaling"] = {"enabled": False}
        config["rollout"] = {
            **demo.get("rollout", {}),
            "alarms": {"period_s": 60},
            "bake_s": 0,
            "final_bake_s": 0,
        }
    ReleaseConfig.model_validate(config)
    assert _errors({"config": config}, _release_schema()) == []


def test_only_an_offered_config_file_is_read_for_the_run_name(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("endpoint: {name: read-from-outside}\nrelease_id: r-outside\n")
    assert form._file_values(str(outside)) == (None, None)
    assert form._file_values(DEMO)[0] == "demo-embedder"
