r"""Server-side input validation from botocore's service model, worded as AWS words it.

botocore validates little on the client (required members, types, integer minimums); AWS checks every
length, pattern, range and enum of the input shape on the server and answers
`ValidationException: 2 validation errors detected: Value 'x' at 'endpointName' failed to satisfy
constraint: Member must satisfy regular expression pattern: …`. Clients that skip botocore's checks
(the AWS CLI with --cli-input-json, raw HTTP) must see the same answer here.

The patterns are Java regular expressions (AWS checks them with Java). The `regex` package reads the
Unicode properties they use (`\p{L}`, `\p{Z}`, `\p{N}` of tag keys and values), which Python's `re`
cannot; the rest of Java's syntax that neither reads is translated first (`java_pattern`).
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

import regex
from botocore.model import ListShape, MapShape, Shape, StructureShape

from emulator.sagemaker.exceptions import SerializationException, ValidationException

log = logging.getLogger("emulator.validation")

# Java's POSIX classes match US-ASCII only (without UNICODE_CHARACTER_CLASS, which AWS does not set);
# the `regex` package would read \p{Alnum} or \p{Print} as Unicode properties and accept far more.
_JAVA_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7F",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": "\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E",
    "Graph": "\\x21-\\x7E",
    "Print": "\\x20-\\x7E",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1F\\x7F",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0B\\f\\r",
}
_POSIX_CLASS = re.compile(r"\\p\{(\w+)\}")
# Java strings are UTF-16: a character beyond U+FFFF is written as its surrogate pair, so
# `\uD800\uDC00-\uDBFF\uDFFF` is the range U+10000-U+10FFFF (Python reads a reversed range there).
_SURROGATE_PAIR = re.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", re.IGNORECASE)


def java_pattern(pattern: str) -> str:
    """A service-model (Java) pattern in the `regex` package's syntax, with the same meaning."""
    out: list[str] = []
    depth = 0  # inside a character class when > 0
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            pair = _SURROGATE_PAIR.match(pattern, index)
            posix = _POSIX_CLASS.match(pattern, index)
            if pair is not None:
                high, low = int(pair[1], 16), int(pair[2], 16)
                out.append(f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}")
                index = pair.end()
            elif posix is not None and posix[1] in _JAVA_POSIX:
                members = _JAVA_POSIX[posix[1]]
                out.append(members if depth else f"[{members}]")
                index = posix.end()
            else:
                out.append(pattern[index : index + 2])
                index += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        out.append(char)
        index += 1
    return "".join(out)


@cache
def compiled(pattern: str) -> Any:
    """The service-model pattern compiled (a `regex` pattern), or None when it cannot be read."""
    try:
        return regex.compile(java_pattern(pattern))
    except regex.error as error:
        # Every pattern of the service models in use compiles (tests/unit/emulator); one a newer botocore
        # brings in an unknown syntax is skipped, and said so, rather than failing every request.
        log.warning("service-model pattern %r is not checked: %s", pattern, error)
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
        checked = compiled(pattern) if pattern else None
        if checked is not None and checked.fullmatch(value) is None:
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
