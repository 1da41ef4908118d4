"""Where and in which precision the model runs, chosen when the server starts.

The device is CUDA when the host has it, else the CPU (SERVING_DEVICE overrides); the precision is
float32 unless SERVING_DTYPE asks for bfloat16/float16 or "auto" (the checkpoint's own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from serving.errors import ModelLoadError


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype | str  # a torch dtype, or "auto" for the checkpoint's own


def choose_placement(requested_device: str | None, dtype: str) -> Placement:
    return Placement(choose_device(requested_device), dtype if dtype == "auto" else getattr(torch, dtype))


def choose_device(requested: str | None) -> torch.device:
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"SERVING_DEVICE={requested!r} is not a torch device ({exc}); use cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"SERVING_DEVICE={requested} but this host has no CUDA device; unset it to use the CPU"
        )
    return device
