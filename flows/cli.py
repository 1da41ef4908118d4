"""What the flows' command lines share: the JSON summary as the last line, and the exit code."""

from __future__ import annotations

import json
from typing import Any

from prefect.states import State


def print_summary(state: State, identity: dict[str, Any]) -> int:
    """Print the run's JSON summary, or `identity` with the error; exit code 0 only if it completed."""
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        summary = {**identity, "status": "failed", "error": str(summary)}
    print(json.dumps(summary))
    return 0 if state.is_completed() else 1
