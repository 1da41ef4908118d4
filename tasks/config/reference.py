"""The release configuration's reference page, generated from the config model itself.

    python -m tasks.config.reference > docs/configuration.md     # write the page
    python -m tasks.config.reference --check docs/configuration.md  # exit 1 when the page is behind

Every row comes from a field of the config model (tasks/config/sections.py and release.py): its type,
its default, its bounds (ge/gt/le/lt, lengths, patterns, Literal choices) and its description. The page
cannot drift from the model: the unit test tests/unit/config/test_config_reference.py fails when the
committed page differs from what this prints.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tasks.config.release import ReleaseConfig

REGENERATE = "python -m tasks.config.reference > docs/configuration.md"
PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


class ReferenceError(Exception):
    """The model cannot be documented as it stands (a field without a description)."""


@dataclass(frozen=True)
class Section:
    """One table of the page: a model and the dotted path where it sits in a release config."""

    path: str
    model: type[BaseModel]

    @property
    def title(self) -> str:
        return self.path or "Top level"

    @property
    def anchor(self) -> str:
        # GitHub's heading anchors: lowercase, punctuation other than - and _ dropped, spaces to -.
        return "".join(c for c in self.title.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def sections(root: type[BaseModel] = ReleaseConfig) -> list[Section]:
    """Every model of the config, depth first in field order, so a section's subsections follow it."""
    found: list[Section] = []

    def visit(path: str, model: type[BaseModel]) -> None:
        found.append(Section(path, model))
        for name, field in model.model_fields.items():
            for nested, suffix in _nested_models(field.annotation):
                visit(f"{path}.{name}{suffix}" if path else f"{name}{suffix}", nested)

    visit("", root)
    return found


def render(root: type[BaseModel] = ReleaseConfig) -> str:
    """The whole reference page as Markdown."""
    all_sections = sections(root)
    by_place = {(s.path, s.model): s for s in all_sections}
    lines = [
        "# Release configuration reference",
        "",
        f"<!-- Generated from the config model (tasks/config/) by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "A release is one YAML file, or the same fields given as flow parameters (the Prefect UI renders "
        "them as the release form). The README shows a minimal file; this page lists every field.",
        "",
        *_rules(root),
        "",
        "Sections: " + ", ".join(f"[{s.title}](#{s.anchor})" for s in all_sections) + ".",
    ]
    for section in all_sections:
        lines += ["", f"## {section.title}", ""]
        doc = inspect.getdoc(section.model)
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += [
            "| field | type | default | allowed | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, field in section.model.model_fields.items():
            where = f"{section.path}.{name}" if section.path else name
            if not field.description:
                raise ReferenceError(
                    f"{where} ({section.model.__name__}.{name}) has no description; fix: give it "
                    "Field(description=...) in the config model (tasks/config/), the text users read in "
                    "the form and here"
                )
            links = {
                model: by_place[(f"{where}{suffix}", model)]
                for model, suffix in _nested_models(field.annotation)
            }
            cells = [
                f"`{name}`",
                _type_name(field.annotation, links),
                _default(field),
                _allowed(field),
                field.description,
            ]
            lines.append("| " + " | ".join(table_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def check(page: Path = PAGE, root: type[BaseModel] = ReleaseConfig) -> str | None:
    """None when `page` holds exactly what `render` gives, else what differs and how to regenerate."""
    expected = render(root)
    try:
        # Bytes, not text mode: universal newlines would hide a page whose line endings changed.
        found = page.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"{page} does not exist; fix: {REGENERATE}"
    if found == expected:
        return None
    found_lines, expected_lines = found.splitlines(), expected.splitlines()
    if found_lines == expected_lines:
        return f"{page} differs only in its line endings; fix: regenerate it with `{REGENERATE}`"
    line = next(
        (i for i, (a, b) in enumerate(zip(found_lines, expected_lines, strict=False)) if a != b),
        min(len(found_lines), len(expected_lines)),
    )
    was = found_lines[line] if line < len(found_lines) else "(end of file)"
    wanted = expected_lines[line] if line < len(expected_lines) else "(end of file)"
    return (
        f"{page} is out of date with the config model (tasks/config/) (first difference at line {line + 1}: "
        f"has {was!r}, the model gives {wanted!r}); fix: regenerate it with `{REGENERATE}` and commit it"
    )


# -- one table row ---------------------------------------------------------------------------------------


def _rules(root: type[BaseModel]) -> list[str]:
    """What the model's settings enforce on every field, from its model_config."""
    config = root.model_config
    rules = []
    if config.get("extra") == "forbid":
        rules.append("Unknown keys are refused.")
    if config.get("strict"):
        rules.append(
            'Values must have the field\'s own type: `true` is not a number and `"2"` is not an '
            "integer (a whole number is accepted where a number is)."
        )
    if config.get("allow_inf_nan") is False:
        rules.append("Numbers must be finite (`.inf` and `.nan` are refused).")
    rules.append(
        "Checks that span fields (e.g. autoscaling on a burstable instance type) are not in the tables; "
        "the error names the field and the fix."
    )
    return [" ".join(rules)]


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (None left out), or the annotation itself."""
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [_strip(a) for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    """Models inside an annotation with the path suffix they get: "" for the field itself, "[]" for
    the items of a list, "{}" for the values of a map."""
    for member in _members(annotation):
        if _is_model(member):
            yield member, suffix
            continue
        origin, args = get_origin(member), get_args(member)
        if origin in (list, tuple, set, frozenset, Sequence) and args:
            yield from _nested_models(args[0], suffix + "[]")
        elif origin in (dict, Mapping) and len(args) == 2:
            yield from _nested_models(args[1], suffix + "{}")


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_name(annotation: Any, links: Mapping[type[BaseModel], Section]) -> str:
    names = []
    for member in _members(annotation):
        origin, args = get_origin(member), get_args(member)
        if _is_model(member):
            link = links.get(member)
            names.append(f"section [{link.title}](#{link.anchor})" if link else "section")
        elif origin is Literal:
            kinds = {_SCALARS.get(type(a), "value") for a in args}
            names.append(kinds.pop() if len(kinds) == 1 else "value")
        elif origin in (list, tuple, set, frozenset, Sequence):
            names.append(f"list of {_type_name(args[0], links)}" if args else "list")
        elif origin in (dict, Mapping):
            names.append(f"map of {_type_name(args[0], links)} to {_type_name(args[1], links)}")
        elif member is Any:
            names.append("any")
        else:
            names.append(_SCALARS.get(member, getattr(member, "__name__", str(member))))
    return " or ".join(dict.fromkeys(names))


def _code(value: str) -> str:
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "empty"
    if isinstance(value, BaseModel):
        return "the section's defaults"
    if isinstance(value, list | dict):
        return _code(json.dumps(value, ensure_ascii=False))
    return _code(_yaml_scalar(value))


def _constraints(field: FieldInfo) -> list[Any]:
    """Constraint metadata of the field and of Annotated types inside its annotation."""
    found = list(field.metadata)
    pending = [field.annotation]
    while pending:
        annotation = pending.pop()
        if get_origin(annotation) is Annotated:
            found += get_args(annotation)[1:]
            pending.append(get_args(annotation)[0])
        elif get_origin(annotation) in (Union, types.UnionType):
            pending += get_args(annotation)
    return found


def _allowed(field: FieldInfo) -> str:
    parts = []
    literals = [a for m in _members(field.annotation) if get_origin(m) is Literal for a in get_args(m)]
    if literals:
        parts.append("one of " + ", ".join(_code(_yaml_scalar(a)) for a in literals))
    bounds: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for meta in _constraints(field):
        if isinstance(meta, annotated_types.Ge):
            bounds["ge"] = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            bounds["gt"] = meta.gt
        elif isinstance(meta, annotated_types.Le):
            bounds["le"] = meta.le
        elif isinstance(meta, annotated_types.Lt):
            bounds["lt"] = meta.lt
        elif isinstance(meta, annotated_types.MultipleOf):
            parts.append(f"a multiple of {_yaml_scalar(meta.multiple_of)}")
        elif isinstance(meta, annotated_types.MinLen):
            lengths["min"] = meta.min_length
        elif isinstance(meta, annotated_types.MaxLen):
            lengths["max"] = meta.max_length
        elif isinstance(getattr(meta, "pattern", None), str):
            parts.append(f"matches {_code(meta.pattern)}")
    if "ge" in bounds and "le" in bounds:
        parts.insert(0, f"{_yaml_scalar(bounds['ge'])} to {_yaml_scalar(bounds['le'])}")
    elif bounds:
        signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        parts.insert(0, ", ".join(f"{signs[k]} {_yaml_scalar(v)}" for k, v in bounds.items()))
    if lengths:
        is_list = any(
            get_origin(m) in (list, tuple, set, frozenset, Sequence) for m in _members(field.annotation)
        )
        unit = "items" if is_list else "characters"
        low, high = lengths.get("min"), lengths.get("max")
        if low is not None and high is not None:
            parts.append(f"{low} to {high} {unit}")
        elif low is not None:
            parts.append(f"at least {low} {unit[:-1] if low == 1 else unit}")
        else:
            parts.append(f"at most {high} {unit}")
    return "; ".join(parts)


def table_cell(text: str) -> str:
    """`text` as one cell of a markdown table: one line, and an unescaped pipe would end the cell."""
    return " ".join(text.split()).replace("|", "\\|")


# -- command line ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.config.reference",
        description="Print the release configuration reference (Markdown) generated from "
        "the config model (tasks/config/).",
    )
    parser.add_argument(
        "--check",
        metavar="PAGE",
        type=Path,
        help="compare PAGE (e.g. docs/configuration.md) with the page instead; exit 1 when they differ",
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        problem = check(args.check)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 1
        return 0
    # Bytes, so the page is UTF-8 whatever the terminal's locale says.
    sys.stdout.buffer.write(render().encode("utf-8"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
