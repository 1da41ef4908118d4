"""What the dynamic batcher needs from a predictor, and the input checks they share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from serving.errors import BadRequest


class Predictor(Protocol):
    """Runs one forward pass over `inputs` (already checked) and returns one output per input."""

    task: str

    def check(self, inputs: list[Any], parameters: Mapping[str, Any]) -> None:
        """Raise BadRequest when an input or parameter has a shape this task cannot take."""
        ...

    def predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]: ...


def require_texts(inputs: list[Any], task: str) -> None:
    for number, item in enumerate(inputs):
        if not isinstance(item, str):
            raise BadRequest(
                f"inputs[{number}] is {_describe(item)}; {task} takes text: send a string or a list of "
                "strings (in CSV, one text per row, quoted when it holds commas)"
            )


def require_known_parameters(parameters: Mapping[str, Any], known: set[str], task: str) -> None:
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise BadRequest(f"parameters {unknown} are not understood by {task}; use any of {sorted(known)}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} values"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else f"a {type(value).__name__}"
