"""The worker's local state folder (model cache, packages): `.state/` or $SAGEMAKER_RELEASE_STATE_DIR."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "SAGEMAKER_RELEASE_STATE_DIR"


def state_dir() -> Path:
    override = os.environ.get(STATE_DIR_ENV)
    return Path(override).resolve() if override else Path.cwd() / ".state"


def state_subdir(*parts: str) -> Path:
    """A folder under the state dir, created on first use."""
    path = state_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
