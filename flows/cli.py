"""What the flows' command lines share: the JSON summary as the last line, and the exit code."""

from __future__ import annotations

import json
from typing import Any

from prefect.states import State


def print_summary(state: State, identity: dict[str, Any]) -> int:
    """Print the run's JSON summary, or `identity` with the error.

    Exit code 0 when it completed, 2 when the flow refused its input before creating anything (summary
    status `invalid`, as for a config refused on load), else 1."""
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        summary = {**identity, "status": "failed", "error": str(summary)}
    print(json.dumps(summary))
    if state.is_completed():
        return 0
    return 2 if summary.get("status") == "invalid" else 1
