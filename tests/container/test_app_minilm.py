"""The app in-process with the real all-MiniLM-L6-v2: embeddings, content types, errors."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.handlers.base import ServedModel
from serving.settings import Settings

from tests.container.serving_support import serve_in_process, wait_for_status, wait_ready

TEXTS = [
    "A man is eating food.",
    "The release shifted ten percent of traffic to the canary variant, then all of it.",
    "hi",
]


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return np.asarray(SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS))


@pytest.fixture(scope="module")
def client(minilm_dir: Path) -> Iterator[TestClient]:
    with serve_in_process(minilm_dir, SERVING_MAX_PAYLOAD_MB="0.01") as client:
        yield client


def test_batch_of_texts_gives_one_sentence_embedding_each_equal_to_sentence_transformers(
    client: TestClient, reference: np.ndarray
) -> None:
    response = client.post("/invocations", json={"inputs": TEXTS})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    embeddings = np.asarray(response.json())
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(embeddings, reference, atol=1e-5)
    # modules.json lists Normalize: unit vectors.
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_single_text_gives_one_flat_vector(client: TestClient, reference: np.ndarray) -> None:
    for body in ({"inputs": TEXTS[1]}, TEXTS[1]):
        response = client.post("/invocations", json=body)
        assert response.status_code == 200, response.text
        vector = response.json()
        assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
        np.testing.assert_allclose(vector, reference[1], atol=1e-5)


def test_bare_list_is_a_batch(client: TestClient, reference: np.ndarray) -> None:
    response = client.post("/invocations", json=TEXTS[:2])
    np.testing.assert_allclose(np.asarray(response.json()), reference[:2], atol=1e-5)


def test_csv_in_and_out_is_one_row_per_row(client: TestClient, reference: np.ndarray) -> None:
    body = "".join(f'"{text}"\n' for text in TEXTS)
    response = client.post(
        "/invocations", content=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert len(rows) == 3 and all(len(row) == 384 for row in rows)
    np.testing.assert_allclose(np.asarray(rows, dtype=float), reference, atol=1e-5)


def test_csv_in_json_out_and_accept_is_honoured(client: TestClient, reference: np.ndarray) -> None:
    one_row = client.post("/invocations", content=f"{TEXTS[0]}\n", headers={"Content-Type": "text/csv"})
    # Default Accept is JSON; a CSV request is always a list of rows.
    np.testing.assert_allclose(np.asarray(one_row.json()), reference[:1], atol=1e-5)

    as_csv = client.post(
        "/invocations", json={"inputs": TEXTS[0]}, headers={"Accept": "text/csv;q=0.9, */*;q=0.1"}
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert len(as_csv.text.strip().splitlines()) == 1


def test_plain_text_is_one_input(client: TestClient, reference: np.ndarray) -> None:
    response = client.post("/invocations", content=TEXTS[2], headers={"Content-Type": "text/plain"})
    np.testing.assert_allclose(response.json(), reference[2], atol=1e-5)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "fragment"),
    [
        ("image/png", b"\x89PNG", 415, "Content-Type image/png is not supported"),
        ("application/x-www-form-urlencoded", b"inputs=x", 415, "send one of application/json"),
        ("application/json", b'{"inputs": ', 400, "not valid JSON"),
        ("application/json", b'{"text": "x"}', 400, 'no "inputs" field'),
        ("application/json", b'{"inputs": []}', 400, "empty list"),
        ("application/json", b'{"inputs": [1, 2]}', 400, "inputs[0] is a number"),
        ("application/json", b'{"inputs": "x", "parameters": {"top_k": 1}}', 400, "not understood"),
        ("application/json", b'{"inputs": "x", "parameters": 3}', 400, '"parameters" must be a JSON object'),
        ("text/csv", b"", 400, "no rows"),
        ("text/csv", b"a,b\n", 400, "inputs[0] is a list of 2 values"),
        ("application/json; charset=utf-8", b'"\xff"', 400, "not valid utf-8"),
    ],
)
def test_callers_mistakes_are_4xx_with_the_reason(
    client: TestClient, content_type: str, body: bytes, status: int, fragment: str
) -> None:
    response = client.post("/invocations", content=body, headers={"Content-Type": content_type})

    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_unwritable_accept_is_406(client: TestClient) -> None:
    response = client.post("/invocations", json="x", headers={"Accept": "application/x-protobuf"})
    assert response.status_code == 406
    assert "accept one of application/json, text/csv" in response.json()["error"]


def test_body_above_the_limit_is_413_before_the_model_runs(client: TestClient) -> None:
    # SERVING_MAX_PAYLOAD_MB=0.01 on this client: 10485 bytes.
    response = client.post("/invocations", json={"inputs": ["word " * 1000] * 3})
    assert response.status_code == 413
    assert "10485-byte limit" in response.json()["error"]
    assert "SERVING_MAX_PAYLOAD_MB" in response.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    # Chunked transfer, no Content-Length: the limit still holds.
    streamed = client.post("/invocations", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_callers_request_id_is_kept_and_echoed(client: TestClient) -> None:
    response = client.post("/invocations", json="x", headers={"X-Amzn-RequestId": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    unsafe = client.post("/invocations", json="x", headers={"X-Request-Id": "bad id\twith spaces"})
    assert (
        unsafe.headers["x-request-id"] != "bad id\twith spaces" and len(unsafe.headers["x-request-id"]) == 32
    )


def test_execution_parameters_for_batch_transform(client: TestClient) -> None:
    body = client.get("/execution-parameters").json()
    assert body["BatchStrategy"] == "MULTI_RECORD" and body["MaxPayloadInMB"] >= 1


def test_concurrent_requests_are_batched_into_shared_forward_passes(
    client: TestClient, reference: np.ndarray
) -> None:
    model = client.app.state.slot.model  # type: ignore[attr-defined]
    model.batcher.stats.passes_by_size.clear()
    results: dict[int, list[float]] = {}

    def call(index: int) -> None:
        results[index] = client.post("/invocations", json={"inputs": TEXTS[index % 3]}).json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 12
    for index, vector in results.items():
        np.testing.assert_allclose(vector, reference[index % 3], atol=1e-5)
    sizes = model.batcher.stats.passes_by_size
    assert sum(size * count for size, count in sizes.items()) == 12
    assert max(sizes) > 1, f"no two requests shared a batch: {dict(sizes)}"


def test_bfloat16_on_request_stays_close_to_float32(minilm_dir: Path, reference: np.ndarray) -> None:
    with serve_in_process(minilm_dir, SERVING_DTYPE="bfloat16") as client:
        embeddings = np.asarray(client.post("/invocations", json={"inputs": TEXTS}).json())

    assert embeddings.shape == (3, 384)
    cosine = (embeddings * reference).sum(axis=1) / np.linalg.norm(embeddings, axis=1)
    assert cosine.min() > 0.99
    assert np.abs(embeddings - reference).max() > 1e-6  # it did run in another precision


class _BlockedLoader:
    """A loader that waits for the test to release it, so /ping can be seen before the model is ready."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, settings: Settings) -> ServedModel:
        assert self.release.wait(30), "the test never released the loader"
        from serving.loading import load_served_model

        return load_served_model(settings)


def test_ping_is_503_until_the_model_is_loaded_and_early_requests_wait_for_it(minilm_dir: Path) -> None:
    loader = _BlockedLoader()
    settings = Settings.from_env({"MODEL_DIR": str(minilm_dir)})
    early: dict[str, int] = {}
    with TestClient(create_app(settings, loader=loader)) as client:
        loading = client.get("/ping")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        caller = threading.Thread(
            target=lambda: early.update(status=client.post("/invocations", json="x").status_code)
        )
        caller.start()
        loader.release.set()
        wait_ready(client)
        caller.join(timeout=60)
        assert client.post("/invocations", json="x").status_code == 200
    assert early == {"status": 200}


def test_ping_stays_503_until_every_worker_has_loaded(minilm_dir: Path) -> None:
    others_ready = threading.Event()
    settings = Settings.from_env({"MODEL_DIR": str(minilm_dir)})
    with TestClient(create_app(settings, all_workers_ready=others_ready.is_set)) as client:
        waiting = wait_for_status(client, lambda code, body: "reason" in body, timeout=120)
        assert waiting["reason"] == "other workers are still loading the model"
        # This worker serves already; only the health check waits for the others.
        assert client.post("/invocations", json="x").status_code == 200
        others_ready.set()
        assert client.get("/ping").status_code == 200


def test_a_folder_that_cannot_load_reports_failed_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    failures: list[str] = []
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path)})
    with TestClient(create_app(settings, on_failed=failures.append)) as client:
        body = wait_for_status(client, lambda code, body: body["status"] != "loading", timeout=60)
        assert client.get("/ping").status_code == 503
        refused = client.post("/invocations", json="x")
    assert refused.status_code == 503 and "the model failed to load" in refused.json()["error"]
    assert body["status"] == "failed"
    assert failures == [body["reason"]]
    assert "config.json is not valid JSON" in body["reason"]
