"""Fixtures for the serving container's tests: tiny models of each task, built and saved on the spot.

Each tiny model has a few thousand parameters and a tokenizer trained here on a few sentences; the
real all-MiniLM-L6-v2 comes from the `minilm_dir` fixture in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.container.serving_support import (
    bert_config,
    bert_tokenizer,
    save_model,
    seq2seq_tokenizer,
    train_tokenizer,
)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    config = bert_config(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    return save_model(
        BertForSequenceClassification(config), bert_tokenizer(), tmp_path_factory.mktemp("classifier")
    )


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare BertModel: feature-extraction without sentence-transformers files."""
    import torch
    from transformers import BertModel

    torch.manual_seed(1)
    return save_model(BertModel(bert_config()), bert_tokenizer(), tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def tiny_masked_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(2)
    return save_model(BertForMaskedLM(bert_config()), bert_tokenizer(), tmp_path_factory.mktemp("masked-lm"))


@pytest.fixture(scope="session")
def tiny_token_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(3)
    labels = {0: "O", 1: "B-THING", 2: "I-THING"}
    config = bert_config(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    return save_model(BertForTokenClassification(config), bert_tokenizer(), tmp_path_factory.mktemp("ner"))


@pytest.fixture(scope="session")
def tiny_sentence_transformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers folder with what all-MiniLM lacks: cls+max pooling, a Dense layer, prompts."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertModel

    torch.manual_seed(4)
    base = save_model(BertModel(bert_config()), bert_tokenizer(), tmp_path_factory.mktemp("st-base"))
    modules = [
        Transformer(str(base), max_seq_length=24),
        Pooling(32, pooling_mode=("cls", "max")),
        Dense(64, 8, activation_function=torch.nn.Tanh()),
        Normalize(),
    ]
    model = SentenceTransformer(modules=modules, prompts={"query": "query: ", "document": ""})
    folder = tmp_path_factory.mktemp("sentence-transformer")
    model.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_t5_summarizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """T5 whose config names only summarization, so the task is inferred as summarization."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(5)
    tokenizer = seq2seq_tokenizer(["<pad>", "</s>", "<unk>"])
    # T5Config's keyword arguments go through **kwargs to PreTrainedConfig, which mypy cannot see.
    config_options: dict[str, Any] = {
        "decoder_start_token_id": 0,
        "task_specific_params": {
            "summarization": {"prefix": "summarize: ", "max_new_tokens": 6, "num_beams": 1}
        },
    }
    config = T5Config(
        **config_options,
        vocab_size=300,
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
    )
    return save_model(T5ForConditionalGeneration(config), tokenizer, tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BART without task_specific_params: inferred as text2text-generation."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(6)
    tokenizer = seq2seq_tokenizer(["<s>", "<pad>", "</s>", "<unk>"])
    config = BartConfig(
        vocab_size=300,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
    )
    return save_model(BartForConditionalGeneration(config), tokenizer, tmp_path_factory.mktemp("bart"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(7)
    tokenizer = train_tokenizer(["<|endoftext|>", "<unk>"], None)
    tokenizer.add_special_tokens({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"})
    tokenizer.model_max_length = 64
    config = GPT2Config(
        vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    return save_model(GPT2LMHeadModel(config), tokenizer, tmp_path_factory.mktemp("gpt2"))
