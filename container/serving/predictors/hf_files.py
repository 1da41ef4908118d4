"""Loading tokenizers, models and JSON files from a local model folder, never from the Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from serving.device import Placement
from serving.errors import ModelLoadError


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"{path} is not valid JSON ({exc}); fix or replace the file in the model archive"
        ) from None


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {folder}: {exc}") from exc


def load_model(auto_class: Any, folder: Path, placement: Placement) -> Any:
    try:
        model = auto_class.from_pretrained(str(folder), local_files_only=True, dtype=placement.dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load {auto_class.__name__} weights from {folder}: {exc}") from exc
    return model.to(placement.device).eval()
