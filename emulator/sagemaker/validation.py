"""Server-side input validation from botocore's service model, worded as AWS words it.

botocore validates little on the client (required members, types, integer minimums); AWS checks every
length, pattern, range and enum of the input shape on the server and answers
`ValidationException: 2 validation errors detected: Value 'x' at 'endpointName' failed to satisfy
constraint: Member must satisfy regular expression pattern: …`. Clients that skip botocore's checks
(the AWS CLI with --cli-input-json, raw HTTP) must see the same answer here.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from emulator.sagemaker.exceptions import SerializationException, ValidationException


@cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        # A few service-model patterns use Java-only syntax; AWS checks them, we cannot.
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, str | int | float):
        return f"'{value}'"
    return "'" + str(value) + "'"


class _Walker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, value: Any, path: str, constraint: str) -> None:
        self.problems.append(f"Value {_show(value)} at '{path}' failed to satisfy constraint: {constraint}")

    def walk(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        if kind == "structure":
            self._structure(shape, value, path)
        elif kind == "list":
            self._list(shape, value, path)
        elif kind == "map":
            self._map(shape, value, path)
        elif kind == "string":
            self._string(shape, value, path)
        elif kind in ("integer", "long", "float", "double"):
            self._number(shape, value, path)
        elif kind == "boolean" and not isinstance(value, bool):
            raise SerializationException(f"Expected a boolean at '{path}', got {type(value).__name__}")

    def _structure(self, shape: StructureShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SerializationException(f"Expected an object at '{path or 'request'}'")
        for name in shape.required_members:
            if value.get(name) is None:
                self.problems.append(
                    f"Value null at '{self._join(path, name)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        for name, member_value in value.items():
            member = shape.members.get(name)
            # Members newer than this botocore's model are ignored, as AWS ignores unknown members.
            if member is not None and member_value is not None:
                self.walk(member, member_value, self._join(path, name))

    def _list(self, shape: ListShape, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise SerializationException(f"Expected a list at '{path}'")
        self._size(shape, value, path, len(value), "length")
        for index, item in enumerate(value, start=1):
            self.walk(shape.member, item, f"{path}.{index}.member")

    def _map(self, shape: MapShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SerializationException(f"Expected an object at '{path}'")
        self._size(shape, value, path, len(value), "length")
        for key, item in value.items():
            self.walk(shape.key, key, f"{path}.{key}.key")
            self.walk(shape.value, item, f"{path}.{key}.value")

    def _string(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise SerializationException(f"Expected a string at '{path}', got {type(value).__name__}")
        self._size(shape, value, path, len(value), "length")
        if shape.enum and value not in shape.enum:
            self.fail(value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = shape.metadata.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            self.fail(value, path, f"Member must satisfy regular expression pattern: {pattern}")

    def _number(self, shape: Shape, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SerializationException(f"Expected a number at '{path}', got {type(value).__name__}")
        if shape.type_name in ("integer", "long") and not float(value).is_integer():
            raise SerializationException(f"Expected an integer at '{path}', got {value}")
        self._size(shape, value, path, value, "value")

    def _size(self, shape: Shape, value: Any, path: str, size: float, what: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.fail(value, path, f"Member must have {what} greater than or equal to {low}")
        if high is not None and size > high:
            self.fail(value, path, f"Member must have {what} less than or equal to {high}")

    @staticmethod
    def _join(path: str, name: str) -> str:
        return f"{path}.{_camel(name)}" if path else _camel(name)


def validate_input(shape: StructureShape | None, params: Any) -> None:
    """Raise AWS's ValidationException listing every constraint the request breaks."""
    if shape is None:
        return
    walker = _Walker()
    walker.walk(shape, params, "")
    if walker.problems:
        count = len(walker.problems)
        noun = "error" if count == 1 else "errors"
        raise ValidationException(f"{count} validation {noun} detected: " + "; ".join(walker.problems))
