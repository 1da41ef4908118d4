"""The torch device, chosen when the server starts: CUDA when the host has it, else CPU."""

from __future__ import annotations

import torch

from serving.errors import ModelLoadError


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
