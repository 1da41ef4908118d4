"""Pure pieces of the model server: settings, content types, task inference, pooling, length buckets."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from serving.content_types import decode, encode, negotiate, to_invocation
from serving.errors import BadRequest, ModelLoadError, NotAcceptable, UnsupportedMediaType
from serving.predictors.length_buckets import plan_buckets
from serving.predictors.pooling import PoolingConfig, pool
from serving.settings import Settings, SettingsError, available_cpus
from serving.task_inference import resolve_task


# ---------------------------------------------------------------- settings
def test_defaults_follow_the_sagemaker_contract() -> None:
    settings = Settings.from_env({})

    assert settings.model_dir == Path("/opt/ml/model")
    assert settings.port == 8080
    assert settings.workers == available_cpus()
    assert settings.torch_threads == max(1, available_cpus() // settings.workers)
    assert settings.max_payload_bytes == 6 * 1024 * 1024
    assert settings.default_accept == "application/json"
    assert settings.dtype == "float32"


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "MODEL_DIR": "/models/a",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SERVING_MAX_BATCH_SIZE": "8",
            "SERVING_MAX_BATCH_DELAY_MS": "2.5",
            "SERVING_MAX_PAYLOAD_MB": "0.5",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "10",
            "HF_TASK": "text-classification",
        }
    )
    assert settings.model_dir == Path("/models/a") and settings.workers == 3
    assert settings.max_batch_size == 8 and settings.max_batch_delay_s == 0.0025
    assert settings.max_payload_bytes == 512 * 1024
    assert settings.log_level == "DEBUG" and settings.hf_task == "text-classification"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "two"}, "SAGEMAKER_MODEL_SERVER_WORKERS='two' is not an integer"),
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}, "SAGEMAKER_MODEL_SERVER_WORKERS=0 is out of range"),
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "between 1 and 65535"),
        ({"SERVING_MAX_PAYLOAD_MB": "-1"}, "SERVING_MAX_PAYLOAD_MB=-1 is out of range"),
        ({"SERVING_MAX_BATCH_DELAY_MS": "nan"}, "SERVING_MAX_BATCH_DELAY_MS=nan is out of range"),
        ({"SAGEMAKER_CONTAINER_LOG_LEVEL": "LOUD"}, "is not a log level"),
        (
            {"SERVING_DTYPE": "float8"},
            "SERVING_DTYPE='float8' is not supported; use one of float32, bfloat16",
        ),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert fragment in str(raised.value)
    assert "; set it" in str(raised.value) or "; use" in str(raised.value)


# ---------------------------------------------------------------- content types
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("application/json;q=0.2, text/csv;q=0.8", "text/csv"),
        ("image/png, application/json;q=0.1", "application/json"),
        ("text/csv;q=0, application/json", "application/json"),
    ],
)
def test_accept_negotiation(header: str | None, expected: str) -> None:
    assert negotiate(header, "application/json") == expected


def test_accept_without_a_writable_type_is_refused() -> None:
    with pytest.raises(NotAcceptable, match="accept one of application/json, text/csv"):
        negotiate("image/png, text/html", "application/json")


@pytest.mark.parametrize(
    ("data", "inputs", "single", "parameters"),
    [
        ("a", ["a"], True, {}),
        (["a", "b"], ["a", "b"], False, {}),
        ({"inputs": "a"}, ["a"], True, {}),
        ({"inputs": ["a"], "parameters": {"k": 1}}, ["a"], False, {"k": 1}),
        ({"inputs": {"text": "a", "text_pair": "b"}}, [{"text": "a", "text_pair": "b"}], True, {}),
    ],
)
def test_request_shapes(data: Any, inputs: list[Any], single: bool, parameters: dict[str, Any]) -> None:
    invocation = to_invocation(data)
    assert (invocation.inputs, invocation.single, invocation.parameters) == (inputs, single, parameters)


def test_unknown_top_level_fields_are_refused_rather_than_ignored() -> None:
    with pytest.raises(BadRequest, match=r"unknown field\(s\) \['paramters'\]"):
        to_invocation({"inputs": "a", "paramters": {}})


def test_csv_rows_decode_to_inputs_and_quoted_commas_stay_in_the_text() -> None:
    assert decode(b'"a, b"\nc\n\n', "text/csv") == {"inputs": ["a, b", "c"]}
    assert decode(b"1,2\n", "text/csv; charset=utf-8") == {"inputs": [["1", "2"]]}
    assert decode("café".encode("latin-1"), "text/plain; charset=latin-1") == {"inputs": "café"}
    with pytest.raises(UnsupportedMediaType):
        decode(b"x", "application/octet-stream")


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ([[0.5, 1.0], [2.0, 3.0]], "0.5,1.0\n2.0,3.0\n"),
        ([{"label": "a", "score": 0.9}], "a,0.9\n"),
        ([[{"label": "a", "score": 0.9}, {"label": "b", "score": 0.1}]], "a,0.9,b,0.1\n"),
        ([{"summary_text": 'he said "hi", then left'}], '"he said ""hi"", then left"\n'),
        ([1, 2], "1\n2\n"),
        ([[]], "\n"),
    ],
)
def test_csv_encoding_is_one_row_per_record(prediction: Any, expected: str) -> None:
    assert encode(prediction, "text/csv").decode() == expected


def test_csv_cannot_encode_a_matrix_per_record() -> None:
    with pytest.raises(NotAcceptable, match="record 1 has no CSV form"):
        encode([[[1.0, 2.0], [3.0, 4.0]]], "text/csv")


def test_json_encodes_numpy_and_torch_values() -> None:
    import numpy as np

    body = encode({"a": np.float32(0.5), "b": np.arange(2), "c": torch.tensor([1.5])}, "application/json")
    assert json.loads(body) == {"a": 0.5, "b": [0, 1], "c": [1.5]}


# ---------------------------------------------------------------- task inference
def _config(folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("config", "task"),
    [
        ({"architectures": ["BertForSequenceClassification"]}, "text-classification"),
        ({"architectures": ["DistilBertForTokenClassification"]}, "token-classification"),
        ({"architectures": ["RobertaForMaskedLM"]}, "fill-mask"),
        ({"architectures": ["GPT2LMHeadModel"]}, "text-generation"),
        ({"architectures": ["LlamaForCausalLM"]}, "text-generation"),
        ({"architectures": ["BertModel"]}, "feature-extraction"),
        (
            {"architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True},
            "text2text-generation",
        ),
        (
            {
                "architectures": ["BartForConditionalGeneration"],
                "is_encoder_decoder": True,
                "task_specific_params": {"summarization": {"max_length": 142}},
            },
            "summarization",
        ),
    ],
)
def test_task_is_inferred_from_the_architecture(tmp_path: Path, config: dict[str, Any], task: str) -> None:
    assert resolve_task(_config(tmp_path, **config), None) == task


def test_sentence_transformers_files_mean_feature_extraction(tmp_path: Path) -> None:
    folder = _config(tmp_path, architectures=["BertForMaskedLM"])
    (folder / "modules.json").write_text("[]")
    assert resolve_task(folder, None) == "feature-extraction"


def test_hf_task_wins_and_aliases_resolve(tmp_path: Path) -> None:
    folder = _config(tmp_path, architectures=["BertModel"])
    assert resolve_task(folder, "sentiment-analysis") == "text-classification"
    assert resolve_task(folder, "translation_en_to_de") == "translation_en_to_de"


@pytest.mark.parametrize(
    ("config", "hf_task", "fragment"),
    [
        ({"architectures": ["WhisperForConditionalGeneration"]}, None, "cannot tell the task"),
        ({"architectures": ["ViTForImageClassification"]}, None, "set HF_TASK"),
        (
            {"architectures": ["BertModel"]},
            "image-classification",
            "HF_TASK=image-classification is not served",
        ),
    ],
)
def test_unknown_tasks_fail_with_what_to_set(
    tmp_path: Path, config: dict[str, Any], hf_task: str | None, fragment: str
) -> None:
    with pytest.raises(ModelLoadError, match=fragment):
        resolve_task(_config(tmp_path, **config), hf_task)


def test_a_folder_without_a_model_says_what_to_mount(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=re.escape("no config.json, no sentence-transformers")):
        resolve_task(tmp_path, None)


# ---------------------------------------------------------------- pooling and length buckets
@pytest.mark.parametrize("mode", ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("include_prompt", [True, False])
def test_pooling_matches_sentence_transformers(mode: str, padding_side: str, include_prompt: bool) -> None:
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    tokens = torch.randn(3, 6, 4)
    lengths = [6, 4, 2]
    mask = torch.zeros(3, 6, dtype=torch.long)
    for row, length in enumerate(lengths):
        if padding_side == "right":
            mask[row, :length] = 1
        else:
            mask[row, 6 - length :] = 1
    features: dict[str, Any] = {"token_embeddings": tokens, "attention_mask": mask, "prompt_length": 1}
    expected = Pooling(4, pooling_mode=mode, include_prompt=include_prompt)(features)["sentence_embedding"]

    config = PoolingConfig.from_dict({"pooling_mode": mode, "include_prompt": include_prompt}, "test")
    actual = pool(tokens, mask, config, prompt_length=1)

    torch.testing.assert_close(actual, expected)


def test_legacy_pooling_config_concatenates_in_sentence_transformers_order() -> None:
    config = PoolingConfig.from_dict(
        {"word_embedding_dimension": 4, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, "x"
    )
    assert config.modes == ("cls", "mean")
    assert PoolingConfig.from_dict({}, "x").modes == ("mean",)
    with pytest.raises(ValueError, match="unknown pooling mode"):
        PoolingConfig.from_dict({"pooling_mode": "median"}, "x")


def test_length_buckets_cover_every_text_once_and_split_only_when_padding_costs_more() -> None:
    similar = [20, 21, 22, 20, 19, 23]
    assert plan_buckets(similar) == [sorted(range(6), key=lambda i: similar[i])]

    mixed = [5, 120, 6, 118, 4, 119]
    buckets = plan_buckets(mixed)
    assert sorted(index for bucket in buckets for index in bucket) == list(range(6))
    assert [sorted(mixed[i] for i in bucket) for bucket in buckets] == [[4, 5, 6], [118, 119, 120]]
    assert plan_buckets([]) == []


# ---------------------------------------------------------------- the HTTP layer without a model
def test_a_client_that_leaves_mid_body_is_not_logged_as_a_model_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from serving.app import create_app

    caplog.set_level(logging.INFO)
    app = create_app(Settings.from_env({"MODEL_DIR": str(tmp_path)}))
    messages: Iterator[dict[str, Any]] = iter(
        [{"type": "http.request", "body": b'{"inp', "more_body": True}, {"type": "http.disconnect"}]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))

    assert sent[0]["status"] == 400
    assert not [record for record in caplog.records if record.levelno >= 40]
    assert any("disconnected before sending its whole body" in r.getMessage() for r in caplog.records)
