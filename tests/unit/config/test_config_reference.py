"""docs/configuration.md is generated from the config model (tasks/config/) and must stay what the
generator prints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from tasks.config import ReleaseConfig
from tasks.config.reference import REGENERATE, ReferenceError, check, main, render, sections

PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


class _Limits(BaseModel):
    """Limits of the toy."""

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(0.5, gt=0, le=1, description="A share | with a pipe in it.")


class _Toy(BaseModel):
    """A toy config."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=63, description="The toy's name.")
    mode: Literal["fast", "safe"] = Field("safe", description="How it runs.")
    count: int = Field(3, ge=1, le=10, description="How many.")
    code: str = Field("ab", pattern=r"^[a-z]+$", description="Lowercase letters.")
    items: list[int] = Field(default_factory=lambda: [1, 2], min_length=1, description="Some numbers.")
    enabled: bool = Field(False, description="Switched on.")
    limits: _Limits = Field(default_factory=_Limits, description="The limits.")
    extra_limits: list[_Limits] | None = Field(None, description="More limits.")


def _rows(page: str, title: str) -> dict[str, list[str]]:
    """The rows of one section's table, by field name."""
    body = page.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in body.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_committed_page_is_what_the_model_generates() -> None:
    assert check(PAGE) is None, check(PAGE)


def test_every_field_of_the_release_config_has_a_row() -> None:
    page = render()
    for section in sections(ReleaseConfig):
        rows = _rows(page, section.title)
        assert set(rows) == set(section.model.model_fields), section.title
        for name, field in section.model.model_fields.items():
            assert rows[name][4] == " ".join(str(field.description).split()).replace("|", "\\|")


def test_a_page_behind_the_model_is_reported_with_the_command_that_regenerates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("| `bake_s` | integer | `150` |", "| `bake_s` | integer | `30` |"))

    problem = check(stale)

    assert problem is not None
    assert REGENERATE in problem
    assert "`30`" in problem and "`150`" in problem
    assert main(["--check", str(stale)]) == 1
    assert REGENERATE in capsys.readouterr().err


def test_a_missing_page_is_reported_with_the_command(tmp_path: Path) -> None:
    problem = check(tmp_path / "configuration.md")
    assert problem is not None and REGENERATE in problem and "does not exist" in problem


def test_a_page_with_other_line_endings_is_behind(tmp_path: Path) -> None:
    crlf = tmp_path / "configuration.md"
    crlf.write_bytes(render().replace("\n", "\r\n").encode())
    problem = check(crlf)
    assert problem is not None and "line endings" in problem


def test_main_prints_the_page_and_check_accepts_it(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main([]) == 0
    printed = capsysbinary.readouterr().out
    assert printed.decode("utf-8") == render()
    page = tmp_path / "configuration.md"
    page.write_bytes(printed)
    assert main(["--check", str(page)]) == 0


def test_types_defaults_and_bounds_come_from_the_field_metadata() -> None:
    page = render(_Toy)
    rows = _rows(page, "Top level")

    assert rows["name"][1:4] == ["string", "required", "1 to 63 characters"]
    assert rows["mode"][1:4] == ["string", "`safe`", "one of `fast`, `safe`"]
    assert rows["count"][1:4] == ["integer", "`3`", "1 to 10"]
    assert rows["code"][1:4] == ["string", "`ab`", "matches `^[a-z]+$`"]
    assert rows["items"][1:4] == ["list of integer", "`[1, 2]`", "at least 1 item"]
    assert rows["enabled"][1:4] == ["boolean", "`false`", ""]
    assert rows["limits"][1:3] == ["section [limits](#limits)", "the section's defaults"]
    assert rows["extra_limits"][1:3] == ["list of section [extra_limits[]](#extra_limits)", "empty"]

    limits = _rows(page, "limits")
    assert limits["ratio"][1:] == ["number", "`0.5`", "> 0, <= 1", "A share \\| with a pipe in it."]
    assert "Limits of the toy." in page
    assert "Unknown keys are refused." in page and "`true` is not a number" in page


def test_a_field_without_a_description_is_refused_with_the_fix() -> None:
    class Undocumented(BaseModel):
        limits: _Limits = Field(default_factory=_Limits, description="The limits.")
        timeout_s: int = 10

    with pytest.raises(ReferenceError, match=r"timeout_s .*no description; fix: give it Field\(description="):
        render(Undocumented)
