"""Run an encoder over many texts as one row of tokens, with no padding.

A padded batch pays for every pad token in every linear layer, and on CPU the linear layers are most
of the work: for sentences of 4 to 40 words half the tokens of a batch are padding. Here the texts of a
batch are laid end to end in a single row, positions restart at 0 for each text, and attention runs
text by text, so each token sees exactly what it sees in a padded batch and no work is spent on pads.

Whether that holds depends on the model (relative positions, attention that bypasses transformers'
attention interface), so it is checked when the model loads: `PackedEncoder.try_enable` compares the
packed and the padded forward on probe texts and keeps the padded path for a model where they differ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ATTENTION = "sagemaker_release_packed"
_SPANS = "packed_spans"
# Probe texts of different lengths, so that a model that leaks across texts or needs padding is caught;
# the last one is as long as the model takes (up to a bound), to catch attention windows.
PROBE_TEXTS = (
    "ok",
    "a short probe sentence",
    "a longer probe sentence, with punctuation and numbers like 42, to check packed rows",
)
_LONG_PROBE_TOKENS = 1024


class CannotPack(RuntimeError):
    """The model asked packed attention for something it does not do; try_enable then keeps padding."""


def _packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    spans: Sequence[tuple[int, int]] | None = kwargs.get(_SPANS)
    if spans is None:
        raise CannotPack(f"the {ATTENTION} attention runs only on packed rows from PackedEncoder")
    if kwargs.get("sliding_window") is not None:
        raise CannotPack("the model uses sliding-window attention, which packed rows do not implement")
    causal = bool(getattr(module, "is_causal", False))
    gqa = key.shape[1] != query.shape[1]
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            is_causal=causal,
            scale=scaling,
            enable_gqa=gqa,
        )
        for start, end in spans
    ]
    # transformers' attention functions return [batch, tokens, heads, head_dim].
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _packed_attention)
    # Packed rows carry no mask; the mask function only has to exist for the name.
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


class PackedEncoder:
    """Token embeddings of each text from one packed forward pass of `model`."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int | None,
        device: torch.device,
        first_position: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device
        self.first_position = first_position

    @classmethod
    def try_enable(
        cls, model: Any, tokenizer: Any, max_length: int | None, device: torch.device
    ) -> PackedEncoder | None:
        """Switch `model` to packed attention if that gives the padded result on the probe texts."""
        original = model.config._attn_implementation
        probe_length = max_length or _LONG_PROBE_TOKENS
        encoded = tokenizer(_probe_texts(probe_length), truncation=True, max_length=probe_length)
        problem = "no position numbering fits"
        try:
            _register()
            padded = _padded_rows(model, tokenizer, encoded, device)
            model.set_attn_implementation(ATTENTION)
            for first_position in _first_positions(model):
                encoder = cls(model, tokenizer, max_length, device, first_position)
                found = _difference(padded, encoder.token_rows_of(encoded), model.dtype)
                if found is None:
                    log.info("texts are packed into one row per batch (no padding)")
                    return encoder
                problem = found
        except Exception as exc:  # any model this cannot run keeps the padded path, which it loaded with
            problem = f"{type(exc).__name__}: {exc}"
        model.set_attn_implementation(original)
        log.info("texts are padded per batch: packing does not reproduce this model's output (%s)", problem)
        return None

    def token_rows(self, texts: list[str]) -> list[torch.Tensor]:
        """[tokens, hidden] per text, in input order."""
        truncate = self.max_length is not None
        return self.token_rows_of(self.tokenizer(texts, truncation=truncate, max_length=self.max_length))

    def token_rows_of(self, encoded: Any) -> list[torch.Tensor]:
        """[tokens, hidden] per text of a tokenizer output (lists of ids, no padding), in input order."""
        ids: list[list[int]] = encoded["input_ids"]
        lengths = [len(row) for row in ids]
        spans: list[tuple[int, int]] = []
        start = 0
        for length in lengths:
            spans.append((start, start + length))
            start += length
        features = {
            "input_ids": _row([token for row in ids for token in row], self.device),
            "position_ids": _row(
                [self.first_position + position for length in lengths for position in range(length)],
                self.device,
            ),
        }
        if "token_type_ids" in encoded:
            features["token_type_ids"] = _row(
                [kind for row in encoded["token_type_ids"] for kind in row], self.device
            )
        with torch.inference_mode():
            hidden = self.model(**features, **{_SPANS: spans}).last_hidden_state[0]
        return [hidden[begin:end] for begin, end in spans]


def pad_rows(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-text token rows -> [texts, longest, hidden] embeddings and the matching attention mask."""
    embeddings = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    mask = torch.zeros(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
    for index, row in enumerate(rows):
        mask[index, : row.shape[0]] = 1
    return embeddings, mask


def _probe_texts(tokens: int) -> list[str]:
    return [*PROBE_TEXTS, " ".join(["probe"] * min(tokens, _LONG_PROBE_TOKENS))]


def _first_positions(model: Any) -> list[int]:
    # RoBERTa-style embeddings number positions from padding_idx + 1; the probe tells which one holds.
    padding_idx = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    return [0] if not isinstance(padding_idx, int) else [0, padding_idx + 1]


def _row(values: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.long, device=device)


def _padded_rows(model: Any, tokenizer: Any, encoded: Any, device: torch.device) -> list[torch.Tensor]:
    keys = list(encoded.keys())
    features = [{key: encoded[key][index] for key in keys} for index in range(len(encoded["input_ids"]))]
    batch = tokenizer.pad(features, return_tensors="pt").to(device)
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    keep = batch["attention_mask"].bool()
    return [rows[mask] for rows, mask in zip(hidden, keep, strict=True)]


def _difference(padded: list[torch.Tensor], packed: list[torch.Tensor], dtype: torch.dtype) -> str | None:
    # float32 agrees to rounding; 16-bit types accumulate in another order, so they get more room.
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    for index, (expected, actual) in enumerate(zip(padded, packed, strict=True)):
        if expected.shape != actual.shape:
            return f"probe text {index}: {tuple(actual.shape)} rows instead of {tuple(expected.shape)}"
        scale = max(1.0, expected.float().abs().max().item())
        error = (expected.float() - actual.float()).abs().max().item()
        if not error <= tolerance * scale:
            return f"probe text {index}: differs from the padded forward by {error:.3g}"
    return None
