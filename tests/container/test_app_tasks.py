"""The app in-process with tiny models of each task: outputs equal what transformers itself gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.container.serving_support import serve_in_process

TEXTS = [
    "the quick brown fox",
    "a release shifts traffic to the new variant when the canary is healthy",
    "hello",
]


def _invoke(model_dir: Path, body: Any, **env: str) -> Any:
    with serve_in_process(model_dir, **env) as client:
        response = client.post("/invocations", json=body)
        assert response.status_code == 200, response.text
        return response.json()


def test_text_classification_inferred_from_architectures(tiny_classifier_dir: Path) -> None:
    from transformers import pipeline

    expected = pipeline("text-classification", model=str(tiny_classifier_dir), device="cpu")(TEXTS)

    with serve_in_process(tiny_classifier_dir) as client:
        batch = client.post("/invocations", json={"inputs": TEXTS}).json()
        single = client.post("/invocations", json={"inputs": TEXTS[0]}).json()
        top_k = client.post("/invocations", json={"inputs": TEXTS[0], "parameters": {"top_k": None}}).json()
        pair = client.post("/invocations", json={"inputs": [{"text": "a fox", "text_pair": "a dog"}]})
        csv = client.post(
            "/invocations",
            content="the quick brown fox\nhello\n",
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        )

    assert [item["label"] for item in batch] == [item["label"] for item in expected]
    np.testing.assert_allclose(
        [item["score"] for item in batch], [item["score"] for item in expected], atol=1e-5
    )
    assert single["label"] == expected[0]["label"]
    assert sorted(item["label"] for item in top_k) == ["negative", "neutral", "positive"]
    assert pair.status_code == 200 and pair.json()[0]["label"] in {"negative", "neutral", "positive"}
    rows = [line.split(",") for line in csv.text.strip().splitlines()]
    assert [row[0] for row in rows] == [expected[0]["label"], expected[2]["label"]]
    np.testing.assert_allclose(
        [float(row[1]) for row in rows], [expected[0]["score"], expected[2]["score"]], atol=1e-5
    )


def test_summarization_inferred_from_task_specific_params(tiny_t5_summarizer_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_t5_summarizer_dir))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_t5_summarizer_dir)).eval()
    encoded = tokenizer(["summarize: " + text for text in TEXTS[:2]], padding=True, return_tensors="pt")
    with torch.inference_mode():
        generated = model.generate(**encoded, max_new_tokens=6, num_beams=1)
    expected = tokenizer.batch_decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=True)

    outputs = _invoke(tiny_t5_summarizer_dir, {"inputs": TEXTS[:2]})

    assert outputs == [{"summary_text": text} for text in expected]


def test_text2text_generation_with_generation_parameters(tiny_bart_dir: Path) -> None:
    with serve_in_process(tiny_bart_dir) as client:
        one = client.post(
            "/invocations", json={"inputs": TEXTS[0], "parameters": {"max_new_tokens": 4}}
        ).json()
        several = client.post(
            "/invocations",
            json={
                "inputs": TEXTS[:2],
                "parameters": {"max_new_tokens": 3, "num_beams": 2, "num_return_sequences": 2},
            },
        ).json()
        bad = client.post("/invocations", json={"inputs": "x", "parameters": {"max_new_tokenz": 3}})

    assert set(one) == {"generated_text"} and isinstance(one["generated_text"], str)
    assert len(several) == 2 and all(len(per_input) == 2 for per_input in several)
    assert bad.status_code == 400 and "max_new_tokenz" in bad.json()["error"]


def test_hf_task_overrides_the_folder(tiny_bart_dir: Path) -> None:
    output = _invoke(
        tiny_bart_dir, {"inputs": "the fox", "parameters": {"max_new_tokens": 3}}, HF_TASK="summarization"
    )
    assert set(output) == {"summary_text"}


def test_feature_extraction_without_sentence_transformers_gives_token_vectors(tiny_bert_dir: Path) -> None:
    from transformers import pipeline

    extractor = pipeline("feature-extraction", model=str(tiny_bert_dir), device="cpu")

    outputs = _invoke(tiny_bert_dir, {"inputs": TEXTS})

    for text, output in zip(TEXTS, outputs, strict=True):
        # The pipeline's [1, tokens, hidden] for one text, without its batch neighbours' padding.
        np.testing.assert_allclose(output, extractor(text)[0], atol=1e-5)


def test_sentence_transformer_with_dense_cls_max_pooling_and_prompts(
    tiny_sentence_transformer_dir: Path,
) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_sentence_transformer_dir), device="cpu")
    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 6)  # beyond max_seq_length=24
    texts = [*TEXTS, long_text]

    with serve_in_process(tiny_sentence_transformer_dir) as client:
        plain = client.post("/invocations", json={"inputs": texts}).json()
        query = client.post(
            "/invocations", json={"inputs": texts, "parameters": {"prompt_name": "query"}}
        ).json()
        unknown = client.post("/invocations", json={"inputs": "x", "parameters": {"prompt_name": "nope"}})

    np.testing.assert_allclose(plain, reference.encode(texts), atol=1e-5)
    np.testing.assert_allclose(query, reference.encode(texts, prompt_name="query"), atol=1e-5)
    assert np.asarray(plain).shape == (4, 8)
    assert unknown.status_code == 400 and "'query'" in unknown.json()["error"]


@pytest.mark.parametrize(
    ("fixture", "body", "check"),
    [
        (
            "tiny_masked_lm_dir",
            {"inputs": "the quick [MASK] fox"},
            lambda out: len(out) == 5 and "token_str" in out[0],
        ),
        ("tiny_token_classifier_dir", {"inputs": ["the quick fox"]}, lambda out: isinstance(out[0], list)),
        (
            "tiny_classifier_dir",
            {"inputs": "the fox", "parameters": {"candidate_labels": ["animal", "release"]}},
            lambda out: sorted(out["labels"]) == ["animal", "release"],
        ),
        (
            "tiny_gpt2_dir",
            {"inputs": ["the quick", "a release shifts"], "parameters": {"max_new_tokens": 3}},
            None,
        ),
    ],
    ids=["fill-mask", "token-classification", "zero-shot-classification", "text-generation"],
)
def test_other_pipeline_tasks(fixture: str, body: Any, check: Any, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(fixture)
    env = {"HF_TASK": "zero-shot-classification"} if "candidate_labels" in str(body) else {}

    output = _invoke(folder, body, **env)

    if check is None:  # text-generation: each prompt is continued
        assert len(output) == 2
        assert all(
            item[0]["generated_text"].startswith(prompt)
            for item, prompt in zip(output, body["inputs"], strict=True)
        )
    else:
        assert check(output), output


def test_zero_shot_without_candidate_labels_is_400(tiny_classifier_dir: Path) -> None:
    with serve_in_process(tiny_classifier_dir, HF_TASK="zero-shot-classification") as client:
        response = client.post("/invocations", json={"inputs": "x"})
    assert response.status_code == 400 and "candidate_labels" in response.json()["error"]


def test_a_model_failure_is_500_with_the_request_id_in_the_log(
    tiny_classifier_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_in_process(tiny_classifier_dir) as client:
        # A valid request the pipeline itself rejects: an unknown classification function.
        response = client.post(
            "/invocations", json={"inputs": "x", "parameters": {"function_to_apply": "cube"}}
        )

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert request_id in response.json()["error"]
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)
