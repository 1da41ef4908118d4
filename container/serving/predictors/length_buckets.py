"""Split a batch into forward passes of similar-length texts.

On CPU a transformer's cost grows with padded tokens (batch size times longest text), so a batch mixing short
and long texts spends much of its time on padding. Sorting by length and cutting where the padding
saved outweighs the cost of one more forward pass keeps the work close to the real token count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The fixed cost of one extra forward pass, in tokens of work (kernel launches, Python overhead).
FORWARD_OVERHEAD_TOKENS = 48


def plan_buckets(lengths: list[int], overhead_tokens: int = FORWARD_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of `lengths` grouped into forward passes, minimising the sum of (overhead + size * longest)."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    count = len(order)
    # best[j]: cheapest cost of the first j sorted texts; cut[j]: where its last pass starts.
    best = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + overhead_tokens + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    buckets: list[list[int]] = []
    end = count
    while end > 0:
        buckets.append(order[cut[end] : end])
        end = cut[end]
    return buckets[::-1]


def run_bucketed(
    tokenizer: Any, texts: list[str], max_length: int | None, device: Any, forward: Callable[[Any], list[Any]]
) -> list[Any]:
    """Tokenize once, then call `forward(padded batch on device)` per bucket; outputs in input order."""
    encoded = tokenizer(texts, truncation=max_length is not None, max_length=max_length)
    keys = list(encoded.keys())
    results: list[Any] = [None] * len(texts)
    for bucket in plan_buckets([len(ids) for ids in encoded["input_ids"]]):
        features = [{key: encoded[key][index] for key in keys} for index in bucket]
        batch = tokenizer.pad(features, return_tensors="pt").to(device)
        for index, output in zip(bucket, forward(batch), strict=True):
            results[index] = output
    return results
