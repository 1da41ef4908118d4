"""Helpers for the serving container's tests: an in-process server, tiny tokenizers and configs.

Imported by its package path (`from tests.container.serving_support import ...`); fixtures: conftest.py.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CONTAINER_DIR = Path(__file__).resolve().parents[2] / "container"
if str(CONTAINER_DIR) not in sys.path:
    sys.path.insert(0, str(CONTAINER_DIR))

from fastapi.testclient import TestClient  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.settings import Settings  # noqa: E402

READY_TIMEOUT_S = 120.0
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a release shifts traffic to the new variant when the canary is healthy",
    "summarize the long report about model serving latency and throughput",
    "hello world this is a tiny model trained on a tiny corpus",
    "translate english to german the house is wonderful",
    "embeddings of sentences are pooled from token vectors",
] * 20


def wait_for_status(
    client: TestClient, done: Callable[[int, dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Poll /ping until `done(status_code, body)`; return the last body."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/ping")
        body = response.json()
        if done(response.status_code, body):
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"/ping still answers {response.status_code} {body} after {timeout} s")
        time.sleep(0.05)


def wait_ready(client: TestClient, timeout: float = READY_TIMEOUT_S) -> None:
    body = wait_for_status(client, lambda code, body: code == 200 or body.get("status") == "failed", timeout)
    if body.get("status") == "failed":
        raise AssertionError(f"the model failed to load: {body.get('reason')}")


@contextlib.contextmanager
def serve_in_process(model_dir: Path, **env: str) -> Iterator[TestClient]:
    """The app as one uvicorn worker runs it: model loaded on its thread, lifespan shut down on exit."""
    settings = Settings.from_env({"MODEL_DIR": str(model_dir), **env})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


# ---------------------------------------------------------------- tokenizers trained on the spot
def train_tokenizer(specials: list[str], template: str | None, lowercase: bool = True) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    unk = next(token for token in specials if "unk" in token.lower())
    tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    if template is not None:
        names = [token for token in specials if token in template]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=template,
            pair=template.replace("$A", "$A $B") if "$B" not in template else template,
            special_tokens=[(name, tokenizer.token_to_id(name)) for name in names],
        )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token=unk)


def bert_tokenizer() -> Any:
    tokenizer = train_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[CLS] $A [SEP]")
    tokenizer.add_special_tokens(
        {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    )
    tokenizer.model_max_length = 64
    return tokenizer


def bert_config(**overrides: Any) -> Any:
    from transformers import BertConfig

    base = {
        "vocab_size": 300,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    return BertConfig(**{**base, **overrides})


def save_model(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def seq2seq_tokenizer(specials: list[str]) -> Any:
    eos = next(token for token in specials if token == "</s>")
    tokenizer = train_tokenizer(specials, f"$A {eos}")
    tokenizer.add_special_tokens({"pad_token": "<pad>", "eos_token": "</s>"})
    if "<s>" in specials:
        tokenizer.add_special_tokens({"bos_token": "<s>"})
    tokenizer.model_max_length = 64
    return tokenizer
