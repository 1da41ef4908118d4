"""feature-extraction for a plain transformers folder: the last hidden state of every token of each text.

Like the transformers feature-extraction pipeline, but batched: each text's rows are cut back to its
own tokens, so padding added for its batch neighbours never leaks into its output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from serving.device import Placement
from serving.predictors.base import require_known_parameters, require_texts
from serving.predictors.hf_files import load_model, load_tokenizer
from serving.predictors.length_buckets import run_bucketed
from serving.predictors.packed_sequences import PackedEncoder

_NO_LIMIT = 1_000_000


class TokenFeatures:
    task = "feature-extraction"

    def __init__(self, folder: Path, placement: Placement, pack_sequences: bool = True) -> None:
        from transformers import AutoModel

        self.device = placement.device
        self.tokenizer = load_tokenizer(folder)
        self.model = load_model(AutoModel, folder, placement)
        limit = int(getattr(self.tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = limit if limit < _NO_LIMIT else (int(positions) if positions else None)
        self.packed = (
            PackedEncoder.try_enable(self.model, self.tokenizer, self.max_length, self.device)
            if pack_sequences
            else None
        )

    def check(self, inputs: list[Any], parameters: Mapping[str, Any]) -> None:
        require_texts(inputs, self.task)
        require_known_parameters(parameters, set(), self.task)

    def predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        texts = [str(text) for text in inputs]
        if self.packed is not None:
            return [rows.float().cpu().tolist() for rows in self.packed.token_rows(texts)]

        def forward(batch: Any) -> list[Any]:
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state.float().cpu()
            keep = batch["attention_mask"].bool().cpu()
            return [rows[mask].tolist() for rows, mask in zip(hidden, keep, strict=True)]

        return run_bucketed(self.tokenizer, texts, self.max_length, self.device, forward)
