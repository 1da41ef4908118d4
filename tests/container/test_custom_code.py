"""code/inference.py in-process: any subset of the four hooks, defaults for the rest."""

from __future__ import annotations

import logging
import shutil
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.settings import Settings

from tests.container.serving_support import serve_in_process, wait_for_status

ALL_HOOKS = """
import json

def model_fn(model_dir):
    return {"offset": float(open(model_dir + "/offset.txt").read())}

def input_fn(body, content_type):
    assert content_type == "application/x-numbers", content_type
    return [float(x) for x in body.decode().split(";")]

def predict_fn(data, model):
    return [x + model["offset"] for x in data]

def output_fn(prediction, accept):
    return json.dumps({"shifted": prediction}), "application/vnd.shifted+json"
"""


def handler_dir(root: Path, source: str, model_from: Path | None = None) -> Path:
    folder = root / "model"
    if model_from is not None:
        shutil.copytree(model_from, folder)
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(source))
    return folder


def test_all_four_hooks_own_the_whole_request(tmp_path: Path) -> None:
    folder = handler_dir(tmp_path, ALL_HOOKS)
    (folder / "offset.txt").write_text("10")

    with serve_in_process(folder) as client:
        response = client.post(
            "/invocations", content=b"1;2.5", headers={"Content-Type": "application/x-numbers"}
        )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.shifted+json"
    assert response.json() == {"shifted": [11.0, 12.5]}


def test_only_predict_fn_uses_the_default_model_fn_and_codecs(
    tmp_path: Path, tiny_classifier_dir: Path
) -> None:
    # Written as for SageMaker's Hugging Face container: the default model is called like a pipeline.
    source = """
        def predict_fn(data, model):
            results = model(data["inputs"], top_k=None)
            return [{"text": text, "labels": sorted(r["label"] for r in result)}
                    for text, result in zip(data["inputs"], results)]
    """
    folder = handler_dir(tmp_path, source, model_from=tiny_classifier_dir)

    with serve_in_process(folder) as client:
        response = client.post("/invocations", json={"inputs": ["a fox", "a dog"]})
        as_csv = client.post(
            "/invocations", content="a fox\n", headers={"Content-Type": "text/csv", "Accept": "text/csv"}
        )

    assert response.status_code == 200, response.text
    assert response.json() == [
        {"text": "a fox", "labels": ["negative", "neutral", "positive"]},
        {"text": "a dog", "labels": ["negative", "neutral", "positive"]},
    ]
    assert as_csv.text == "a fox,negative,neutral,positive\n"


def test_only_model_fn_returning_a_callable_is_called_with_the_decoded_body(tmp_path: Path) -> None:
    source = """
        def model_fn(model_dir):
            return lambda data: {"echo": data, "dir": model_dir}
    """
    folder = handler_dir(tmp_path, source)

    with serve_in_process(folder) as client:
        response = client.post("/invocations", json={"inputs": [1, 2]})

    assert response.json() == {"echo": {"inputs": [1, 2]}, "dir": str(folder)}


def test_without_hooks_the_default_model_serves_like_the_plain_folder(
    tmp_path: Path, tiny_classifier_dir: Path
) -> None:
    folder = handler_dir(tmp_path, "# nothing overridden\n", model_from=tiny_classifier_dir)

    with serve_in_process(folder) as client:
        single = client.post("/invocations", json={"inputs": "a fox"}).json()
        batch = client.post("/invocations", json=["a fox", "a dog"]).json()

    assert set(single) == {"label", "score"}
    assert len(batch) == 2 and batch[0] == single


def test_transform_fn_replaces_the_chain(tmp_path: Path) -> None:
    source = """
        def model_fn(model_dir):
            return "model"

        def transform_fn(model, body, content_type, accept):
            return f"{model}|{body.decode()}|{content_type}|{accept}"
    """
    folder = handler_dir(tmp_path, source)

    with serve_in_process(folder) as client:
        response = client.post(
            "/invocations", content=b"abc", headers={"Content-Type": "text/x-a", "Accept": "*/*"}
        )

    # */* becomes the default Accept; the body is returned as given, with the Accept as its type.
    assert response.text == "model|abc|text/x-a|application/json"


def test_client_error_from_user_code_is_its_4xx(tmp_path: Path) -> None:
    source = """
        from serving.errors import ClientError

        def model_fn(model_dir):
            return None

        def input_fn(body, content_type):
            raise ClientError("field x is required", status=422)
    """
    with serve_in_process(handler_dir(tmp_path, source)) as client:
        response = client.post("/invocations", json={})
    assert response.status_code == 422
    assert response.json()["error"] == "field x is required"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (
            "def model_fn(d):\n    return 1\n\n"
            "def predict_fn(data, model):\n    raise ValueError('tensor shape mismatch')\n",
            "ValueError: tensor shape mismatch",
        ),
        (
            "def model_fn(d):\n    return 1\n",
            "TypeError: its model_fn returned a int, which is not callable; define predict_fn",
        ),
        (
            "def model_fn(d):\n    return len\n\ndef output_fn(prediction, accept):\n    return 42\n",
            "TypeError: output_fn returned a int",
        ),
    ],
    ids=["predict_fn raises", "model not callable", "output_fn returns a number"],
)
def test_user_code_failures_are_500_with_the_request_id_logged(
    tmp_path: Path, source: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_in_process(handler_dir(tmp_path, source)) as client:
        caplog.clear()
        response = client.post("/invocations", json={"inputs": "x"})

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    kind, _, detail = fragment.partition(": ")
    assert response.json()["error_class"] == kind
    assert detail not in response.text  # the exception's text stays in the log
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert detail in str(logged[0].exc_info[1])


def test_default_output_fn_refuses_an_unwritable_accept_before_running_the_model(tmp_path: Path) -> None:
    source = """
        calls = []

        def model_fn(model_dir):
            return calls.append
    """
    with serve_in_process(handler_dir(tmp_path, source)) as client:
        response = client.post("/invocations", json="x", headers={"Accept": "image/png"})
        module = client.app.state.slot.model.module  # type: ignore[attr-defined]
    assert response.status_code == 406
    assert module.calls == []


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def model_fn(model_dir):\n    raise FileNotFoundError('weights.bin')\n", "model_fn in"),
        ("def model_fn(model_dir) return 1\n", "importing"),
        ("def predict_fn(data, model):\n    return data\n", "defines no model_fn, so"),
    ],
    ids=["model_fn raises", "syntax error", "no model_fn and no HF model"],
)
def test_handler_that_cannot_load_fails_the_model_with_the_reason(
    tmp_path: Path, source: str, fragment: str
) -> None:
    folder = handler_dir(tmp_path, source)
    settings = Settings.from_env({"MODEL_DIR": str(folder)})
    with TestClient(create_app(settings)) as client:
        body = wait_for_status(client, lambda code, body: body["status"] != "loading", timeout=60)
    assert body["status"] == "failed"
    assert fragment in body["reason"]


def test_code_requirements_are_not_installed_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = handler_dir(tmp_path, "def model_fn(d):\n    return len\n")
    (folder / "code" / "requirements.txt").write_text("scikit-learn\n")
    caplog.set_level(logging.WARNING)
    with serve_in_process(folder) as client:
        assert client.post("/invocations", json=[1, 2]).json() == 2
    assert any("requirements.txt is not installed" in r.getMessage() for r in caplog.records)
