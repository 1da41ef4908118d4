"""The built serving image under Docker: build, serve both model kinds, errors, no network, SIGTERM.

Containers are shared per model kind (module fixtures) to keep the wall time low; each is labelled
`sagemaker-release.test`, published on 127.0.0.1 only, and removed even when a test fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import numpy as np
import pytest

from tests.container.docker_support import (
    Served,
    docker_client,
    exec_python,
    remove,
    start,
    wait_exit,
    wait_serving,
)

pytestmark = pytest.mark.docker
TEXTS = ["A man is eating food.", "The canary variant took ten percent of the traffic.", "hi"]
SLOW_HANDLER = """
import time

def model_fn(model_dir):
    return {"dir": model_dir}

def predict_fn(data, model):
    if data.get("fail"):
        raise RuntimeError("the model blew up on purpose")
    if data.get("sleep"):
        print(f"predict_fn sleeps for {data['inputs']}", flush=True)
        time.sleep(float(data["sleep"]))
    return {"echo": data.get("inputs"), "dir": model["dir"]}
"""


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client()


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return np.asarray(SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS))


@pytest.fixture(scope="module")
def minilm(client: docker.DockerClient, serving_image: str, minilm_dir: Path) -> Iterator[Served]:
    container = start(client, serving_image, minilm_dir, {"SERVING_MAX_PAYLOAD_MB": "0.05"}, purpose="minilm")
    try:
        yield wait_serving(container)
    finally:
        remove(container)


@pytest.fixture(scope="module")
def custom(
    client: docker.DockerClient, serving_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("custom-model")
    (folder / "code").mkdir()
    (folder / "code" / "inference.py").write_text(SLOW_HANDLER)
    container = start(
        client, serving_image, folder, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, purpose="custom"
    )
    try:
        yield wait_serving(container)
    finally:
        remove(container)


# ---------------------------------------------------------------- the image itself
def test_build_is_skipped_and_fast_when_nothing_changed(repo_root: Path, serving_image: str) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [str(repo_root / "scripts" / "build-image.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    first_ref = out.stdout.strip().splitlines()[-1]
    rebuilt_in = time.monotonic() - started

    started = time.monotonic()
    again = subprocess.run(
        [str(repo_root / "scripts" / "build-image.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    second_run_s = time.monotonic() - started

    assert again.stdout.strip().splitlines()[-1] == first_ref
    assert re.fullmatch(r"sagemaker-release/serving:[0-9a-f]{12}", first_ref)
    assert second_run_s < 30, f"an unchanged build took {second_run_s:.1f} s (first: {rebuilt_in:.1f} s)"


def test_image_follows_the_sagemaker_contract(client: docker.DockerClient, serving_image: str) -> None:
    image = client.images.get(serving_image)
    config = image.attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])

    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "serving"]
    assert config["Cmd"] == ["serve"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    size_gb = image.attrs["Size"] / 1e9
    print(f"serving image {serving_image}: {size_gb:.2f} GB")
    assert size_gb < 2.0, f"the image grew to {size_gb:.2f} GB"
    # Neither the wheelhouse nor pip's cache is in the image.
    listing = client.containers.run(
        serving_image,
        entrypoint=[
            "sh",
            "-c",
            "ls /build /root/.cache/pip 2>&1; ls /opt/venv/lib/python3.11/site-packages/torch",
        ],
        remove=True,
        labels={"sagemaker-release.test": "inspect"},
    ).decode()
    assert "No such file" in listing and "wheelhouse" not in listing and "include" not in listing.split()


def test_a_command_other_than_serve_is_refused(client: docker.DockerClient, serving_image: str) -> None:
    container = client.containers.run(
        serving_image, ["train"], detach=True, labels={"sagemaker-release.test": "train"}
    )
    try:
        assert wait_exit(container, timeout=60) == 2
        assert "only serves models" in container.logs().decode()
    finally:
        remove(container)


# ---------------------------------------------------------------- a Hugging Face folder: all-MiniLM-L6-v2
def test_ping_is_503_while_loading_then_200(minilm: Served) -> None:
    assert minilm.ping_statuses[-1] == 200
    assert 503 in minilm.ping_statuses, f"/ping never answered 503 while loading: {minilm.ping_statuses}"


def test_workers_default_to_the_cpu_count(minilm: Served) -> None:
    cpus = len(__import__("os").sched_getaffinity(0))
    assert f"{cpus} worker(s) x " in minilm.logs()
    assert minilm.logs().count("loaded Hugging Face feature-extraction (SentenceEmbedder)") == cpus


def test_serves_sentence_embeddings_equal_to_sentence_transformers(
    minilm: Served, reference: np.ndarray
) -> None:
    status, batch = minilm.post_json({"inputs": TEXTS})
    assert status == 200
    np.testing.assert_allclose(np.asarray(batch), reference, atol=1e-5)

    status, single = minilm.post_json({"inputs": TEXTS[0]})
    assert status == 200 and len(single) == 384
    np.testing.assert_allclose(single, reference[0], atol=1e-5)


def test_csv_one_row_in_one_row_out(minilm: Served, reference: np.ndarray) -> None:
    body = "".join(f'"{text}"\n' for text in TEXTS).encode()
    status, headers, out = minilm.post(body, content_type="text/csv", accept="text/csv")

    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = [line.split(",") for line in out.decode().strip().splitlines()]
    np.testing.assert_allclose(np.asarray(rows, dtype=float), reference, atol=1e-5)


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status"),
    [
        (b"\x89PNG", "image/png", None, 415),
        (b'{"inputs": ', "application/json", None, 400),
        (json.dumps({"inputs": ["word " * 2000] * 6}).encode(), "application/json", None, 413),
        (b'"x"', "application/json", "application/x-protobuf", 406),
    ],
    ids=["415 content type", "400 bad JSON", "413 above SERVING_MAX_PAYLOAD_MB", "406 accept"],
)
def test_callers_mistakes(
    minilm: Served, body: bytes, content_type: str, accept: str | None, status: int
) -> None:
    got, headers, out = minilm.post(body, content_type=content_type, accept=accept)
    assert got == status, out
    assert json.loads(out)["request_id"] == headers["x-request-id"]


def test_serves_with_no_network_at_all(
    client: docker.DockerClient, serving_image: str, minilm_dir: Path, reference: np.ndarray
) -> None:
    container = start(client, serving_image, minilm_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
                      purpose="isolated", network_mode="none")  # fmt: skip
    try:
        probe = """
import json, sys, time, urllib.request
deadline = time.monotonic() + 170
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:8080/ping", timeout=2)
        break
    except Exception:
        if time.monotonic() > deadline:
            sys.exit("not ready")
        time.sleep(0.2)
body = json.dumps({"inputs": %r}).encode()
request = urllib.request.Request("http://127.0.0.1:8080/invocations", data=body,
                                 headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(request, timeout=60).read().decode())
""" % TEXTS[1]  # noqa: UP031
        code, output = exec_python(container, probe)
        assert code == 0, output + container.logs().decode()[-2000:]
        np.testing.assert_allclose(json.loads(output.strip().splitlines()[-1]), reference[1], atol=1e-5)
    finally:
        remove(container)


# ---------------------------------------------------------------- a folder that cannot load
def test_a_folder_that_cannot_load_exits_non_zero_with_the_reason_last(
    client: docker.DockerClient, serving_image: str, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]')
    container = start(client, serving_image, tmp_path, purpose="broken")
    try:
        code = wait_exit(container, timeout=180)
        lines = container.logs().decode().strip().splitlines()
    finally:
        remove(container)

    assert code == 1
    assert "the model failed to load" in lines[-1]
    assert "/opt/ml/model/config.json is not valid JSON" in lines[-1]


# ---------------------------------------------------------------- a code/inference.py handler
def test_custom_handler_serves_through_its_hooks(custom: Served) -> None:
    status, body = custom.post_json({"inputs": ["a", "b"]})
    assert status == 200
    assert body == {"echo": ["a", "b"], "dir": "/opt/ml/model"}
    assert "1 worker(s) x " in custom.logs()


def test_a_model_failure_is_500_and_its_request_id_is_in_the_log(custom: Served) -> None:
    status, headers, out = custom.post(json.dumps({"inputs": "x", "fail": True}).encode())

    assert status == 500
    request_id = headers["x-request-id"]
    assert request_id in json.loads(out)["error"]
    assert json.loads(out)["error_class"] == "RuntimeError"
    assert b"blew up" not in out  # the exception's text goes to the log only
    deadline = time.monotonic() + 10
    while request_id not in custom.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    logged = [line for line in custom.logs().splitlines() if request_id in line]
    assert logged and "ERROR" in logged[0]
    assert "RuntimeError: the model blew up on purpose" in custom.logs()


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(custom: Served) -> None:
    """Last in this module: it stops the shared custom container."""
    result: dict[str, Any] = {}

    def slow_request() -> None:
        result["response"] = custom.post_json({"inputs": "slow", "sleep": 4}, timeout=60)

    caller = threading.Thread(target=slow_request)
    caller.start()
    _wait_in_flight(custom)
    stopping = time.monotonic()
    custom.container.kill(signal="SIGTERM")

    code = wait_exit(custom.container, timeout=60)
    stopped_in = time.monotonic() - stopping
    caller.join(timeout=60)

    assert result["response"] == (200, {"echo": "slow", "dir": "/opt/ml/model"})
    assert code == 0, custom.logs()[-2000:]
    assert stopped_in < 30
    assert custom.logs().strip().splitlines()[-1].endswith("drained and stopped")


def _wait_in_flight(served: Served) -> None:
    """The slow request is in flight once its predict_fn has printed that it sleeps."""
    deadline = time.monotonic() + 30
    while "predict_fn sleeps for slow" not in served.logs():
        assert time.monotonic() < deadline, "the slow request never reached predict_fn"
        time.sleep(0.05)
