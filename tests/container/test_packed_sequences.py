"""Packed feature extraction: texts laid end to end give what a padded batch gives, or packing stays off."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from serving.device import Placement
from serving.predictors.packed_sequences import ATTENTION, PackedEncoder
from serving.predictors.sentence_embeddings import SentenceEmbedder
from serving.predictors.token_features import TokenFeatures
from serving.settings import Settings, SettingsError

from tests.container.serving_support import bert_tokenizer

CPU = Placement(torch.device("cpu"), torch.float32)
MIXED = [
    "hello",
    "a release shifts traffic to the new variant when the canary is healthy",
    "the quick brown fox",
    # Longer than any model here takes: truncated the same way on both paths.
    " ".join(["the canary window watches latency and errors"] * 80),
    "ok",
]


def test_minilm_packs_its_texts_and_gives_the_padded_embeddings(minilm_dir: Path) -> None:
    packed = SentenceEmbedder(minilm_dir, CPU)
    padded = SentenceEmbedder(minilm_dir, CPU, pack_sequences=False)

    assert packed.packed is not None and padded.packed is None
    np.testing.assert_allclose(packed.predict(MIXED, {}), padded.predict(MIXED, {}), atol=1e-5)


def test_prompts_pooling_and_dense_layers_are_the_same_packed(tiny_sentence_transformer_dir: Path) -> None:
    packed = SentenceEmbedder(tiny_sentence_transformer_dir, CPU)
    padded = SentenceEmbedder(tiny_sentence_transformer_dir, CPU, pack_sequences=False)

    assert packed.packed is not None
    for parameters in ({}, {"prompt_name": "query"}, {"prompt": "search: "}):
        expected = padded.predict(MIXED, parameters)
        np.testing.assert_allclose(packed.predict(MIXED, parameters), expected, atol=1e-5)


def test_token_vectors_are_each_texts_own_tokens_packed(tiny_bert_dir: Path) -> None:
    packed = TokenFeatures(tiny_bert_dir, CPU).predict(MIXED, {})
    padded = TokenFeatures(tiny_bert_dir, CPU, pack_sequences=False).predict(MIXED, {})

    assert [len(rows) for rows in packed] == [len(rows) for rows in padded]
    for mine, theirs in zip(packed, padded, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_roberta_positions_start_after_the_padding_index() -> None:
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    model = RobertaModel(RobertaConfig(**_tiny(), pad_token_id=0)).eval()
    tokenizer = bert_tokenizer()

    encoder = PackedEncoder.try_enable(model, tokenizer, 64, CPU.device)

    assert encoder is not None and encoder.first_position == model.embeddings.padding_idx + 1
    _assert_same_rows(encoder, model, tokenizer)


def test_a_model_packing_cannot_reproduce_keeps_the_padded_path_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    # MPNet computes attention itself, so it would let the texts of a packed row attend to each other.
    model = MPNetModel(MPNetConfig(**_tiny(), pad_token_id=0)).eval()
    before = model.config._attn_implementation
    with caplog.at_level(logging.INFO, logger="serving.predictors.packed_sequences"):
        encoder = PackedEncoder.try_enable(model, bert_tokenizer(), 64, CPU.device)

    assert encoder is None
    assert model.config._attn_implementation == before
    assert any("padded per batch" in r.getMessage() and "differs" in r.getMessage() for r in caplog.records)


def test_packing_can_be_turned_off_and_a_wrong_value_names_the_variable() -> None:
    assert Settings.from_env({}).pack_sequences is True
    assert Settings.from_env({"SERVING_PACK_SEQUENCES": "off"}).pack_sequences is False
    with pytest.raises(SettingsError, match=r"SERVING_PACK_SEQUENCES='no'.*auto, off"):
        Settings.from_env({"SERVING_PACK_SEQUENCES": "no"})


def _tiny() -> dict[str, Any]:
    return {
        "vocab_size": 300,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 80,
    }


def _assert_same_rows(encoder: PackedEncoder, model: Any, tokenizer: Any) -> None:
    rows = encoder.token_rows(MIXED)
    for text, row in zip(MIXED, rows, strict=True):
        model.set_attn_implementation("sdpa")
        alone = tokenizer(text, truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**alone).last_hidden_state[0]
        model.set_attn_implementation(ATTENTION)
        np.testing.assert_allclose(row.numpy(), expected.numpy(), atol=1e-5)
