"""Pydantic's validation errors as a release's config issues: each names the dotted field, what is
wrong with the value given (never quoting a field that may hold a secret) and what it takes.
"""

from __future__ import annotations

import difflib
import math
import types
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tasks.config.fields import _ERROR_TYPE, is_sensitive
from tasks.config.release import ReleaseConfig
from tasks.core.errors import ConfigIssue


def config_issues(exc: ValidationError) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues that each name the dotted field, the problem and the fix."""
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        loc = _format_loc(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == _ERROR_TYPE:
            field = ".".join(p for p in (loc, ctx.get("field", "")) if p)
            issues.append(ConfigIssue(field or "config", str(ctx["problem"]), str(ctx["fix"])))
            continue
        issues.append(ConfigIssue(loc or "config", *_problem_and_fix(error, error["loc"])))
    return issues


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem_and_fix(error: Any, loc: Sequence[int | str]) -> tuple[str, str]:
    kind: str = error["type"]
    ctx = error.get("ctx") or {}
    # A field that may hold a secret is named, its value never quoted.
    given = "the value" if is_sensitive(_format_loc(loc)) else _shown(error.get("input"))
    info, item = _field_at(loc)
    if kind == "missing":
        return "is required", f"add {_format_loc(loc)} (see releases/demo.yaml)"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return "is not a known setting", f"{hint}remove it; allowed here: {', '.join(allowed)}"
    if kind == "literal_error":
        return f"{given} is not allowed", f"use one of {ctx.get('expected')}"
    takes = _what_it_takes(info, item)
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{given} is out of range", f"give {takes}" if takes else f"use a value {words} {ctx.get(key)}"
    if kind in ("string_too_long", "too_long"):
        return "is too long", f"keep it within {ctx.get('max_length')}"
    if kind in ("string_too_short", "too_short"):
        return "is too short", f"give at least {ctx.get('min_length')}"
    if kind == "string_pattern_mismatch":
        return f"{given} has the wrong form", f"match the pattern {ctx.get('pattern')}"
    if kind == "finite_number":
        return f"{given} is not a finite number", f"give {takes or 'a finite number'}"
    if kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
        wanted = takes or _TYPE_WORDS.get(kind.split("_", 1)[0], "a value of the right type")
        fix = f"give {wanted}"
        if kind == "string_type" and isinstance(error.get("input"), int | float | bool | date):
            fix += " (quote it in YAML, or it is read as a number, boolean or date)"
        return f"{given} is not {_short(wanted)}", fix
    description = info.description if info is not None else None
    fix = f"give what the field takes: {description}" if description else "see the release schema"
    return str(error["msg"]), fix


_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
    "list": "a list",
    "dict": "a mapping",
    "model": "a section (a mapping of its settings)",
}


def _short(takes: str) -> str:
    """'a whole number' of 'a whole number from 1 to 100': what the value is not."""
    for words in _TYPE_WORDS.values():
        if takes.startswith(words):
            return words
    return takes


def _shown(value: Any) -> str:
    """A value as the YAML that gave it: true, null, .inf, 'text'."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _field_at(loc: Sequence[int | str]) -> tuple[FieldInfo | None, bool]:
    """The field `loc` points at (None for a section-level error), and whether it points at an item
    inside it (a list element or a mapping value) rather than at the field itself."""
    model: type[BaseModel] | None = ReleaseConfig
    info: FieldInfo | None = None
    for part in loc:
        if model is None or isinstance(part, int):
            return info, info is not None
        info = model.model_fields.get(str(part))
        if info is None:
            return None, False
        model = _model_in(info.annotation)
    return info, False


def _what_it_takes(info: FieldInfo | None, item: bool) -> str:
    """'a whole number from 1 to 100', 'true or false', "one of 'p50', 'p95'": what the field accepts,
    from its type and constraints ('' when that cannot be told from them)."""
    if info is None:
        return ""
    annotation = info.annotation
    optional = False
    base = _strip(annotation)
    if get_origin(base) in (Union, types.UnionType):
        members = [a for a in get_args(base) if a is not type(None)]
        optional = len(members) < len(get_args(base))
        base = _strip(members[0]) if len(members) == 1 else base
    if item:
        args = get_args(base)
        base = _strip(args[-1]) if args else base
        optional = False
    if base is bool:
        words = "true or false"
    elif base is int or base is float:
        words = _TYPE_WORDS["int" if base is int else "float"]
        if not item:
            # A field without declared bounds checks its values in a validator; its description says
            # which it takes (serverless memory sizes).
            words += _range(info) or (f"; {info.description.rstrip('.')}" if info.description else "")
    elif get_origin(base) is Literal:
        words = "one of " + ", ".join(repr(v) for v in get_args(base))
    elif base is str:
        words = "text"
    elif get_origin(base) is list or base is list:
        words = "a list"
    elif get_origin(base) is dict or base is dict:
        words = "a mapping"
    elif isinstance(base, type) and issubclass(base, BaseModel):
        words = _TYPE_WORDS["model"]
    else:
        return ""
    return f"{words}, or null to leave it empty" if optional else words


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _range(info: FieldInfo) -> str:
    low = high = None
    for item in info.metadata:
        for attr, words in (("ge", "at least"), ("gt", "greater than")):
            if getattr(item, attr, None) is not None:
                low = (words, getattr(item, attr))
        for attr, words in (("le", "at most"), ("lt", "less than")):
            if getattr(item, attr, None) is not None:
                high = (words, getattr(item, attr))
    if low and high and low[0] == "at least" and high[0] == "at most":
        return f" from {low[1]} to {high[1]}"
    parts = [f"{bound[0]} {bound[1]}" for bound in (low, high) if bound is not None]
    return " " + " and ".join(parts) if parts else ""


def _allowed_keys(loc: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] = ReleaseConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = _model_in(field.annotation)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
