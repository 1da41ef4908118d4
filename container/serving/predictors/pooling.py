"""Sentence-transformers pooling (1_Pooling/config.json), reproduced for padded batches.

Both config formats are read: the current {"pooling_mode": "mean" | [...]} and the legacy
{"pooling_mode_mean_tokens": true, ...} booleans. Several modes are concatenated in the order
sentence-transformers uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class PoolingConfig:
    modes: tuple[str, ...]
    include_prompt: bool = True

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str) -> PoolingConfig:
        mode = raw.get("pooling_mode")
        if mode is None:
            modes = tuple(name for key, name in _LEGACY_KEYS.items() if raw.get(key))
            modes = modes or ("mean",)
        else:
            modes = (mode,) if isinstance(mode, str) else tuple(mode)
        unknown = [name for name in modes if name not in MODES]
        if unknown:
            raise ValueError(f"{source}: unknown pooling mode(s) {unknown}; known modes are {list(MODES)}")
        return cls(modes=modes, include_prompt=bool(raw.get("include_prompt", True)))


def pool(
    token_embeddings: torch.Tensor,
    attention_mask: torch.Tensor,
    config: PoolingConfig,
    prompt_length: int | None = None,
) -> torch.Tensor:
    """[batch, tokens, hidden] token embeddings -> [batch, hidden * modes] sentence embeddings."""
    original_mask = attention_mask
    if prompt_length and not config.include_prompt:
        attention_mask = _exclude_prompt(attention_mask, prompt_length)
    accumulate = (
        torch.float32 if token_embeddings.dtype in (torch.float16, torch.bfloat16) else token_embeddings.dtype
    )
    outputs: list[torch.Tensor] = []
    for mode in config.modes:
        if mode == "cls":
            first = attention_mask.to(torch.int).argmax(dim=1)
            index = first.view(-1, 1, 1).expand(-1, 1, token_embeddings.shape[-1])
            outputs.append(torch.gather(token_embeddings, 1, index).squeeze(1))
        elif mode == "max":
            keep = attention_mask.unsqueeze(-1).expand_as(token_embeddings)
            outputs.append(token_embeddings.masked_fill(keep == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            summed = (token_embeddings * mask).sum(dim=1, dtype=accumulate)
            counts = torch.clamp(mask.sum(dim=1, dtype=accumulate), min=1e-9)
            denominator = counts if mode == "mean" else torch.sqrt(counts)
            outputs.append((summed / denominator).to(token_embeddings.dtype))
        elif mode == "weightedmean":
            mask = attention_mask.unsqueeze(-1).to(accumulate)
            weights = torch.arange(
                1, token_embeddings.shape[1] + 1, dtype=accumulate, device=token_embeddings.device
            ).view(1, -1, 1)
            # Weights start at the first real token, so left padding does not shift them.
            weights = weights - original_mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1)
            weighted = mask * weights
            summed = (token_embeddings * weighted).sum(dim=1)
            outputs.append((summed / torch.clamp(weighted.sum(dim=1), min=1e-9)).to(token_embeddings.dtype))
        else:  # lasttoken
            seq_len = token_embeddings.shape[1]
            values, flipped = attention_mask.flip(1).max(1)
            flipped = torch.where(values == 0, seq_len - 1, flipped)
            index = (seq_len - flipped - 1).view(-1, 1, 1).expand(-1, 1, token_embeddings.shape[-1])
            masked = token_embeddings * attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            outputs.append(torch.gather(masked, 1, index).squeeze(1))
    return torch.cat(outputs, dim=-1)


def _exclude_prompt(attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    mask = attention_mask.clone()
    pad_lengths = mask.to(torch.int32).argmax(dim=1)
    if int(pad_lengths.sum()) == 0:
        mask[:, :prompt_length] = 0
    else:
        positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
        mask[positions < (pad_lengths + prompt_length).unsqueeze(1)] = 0
    return mask
