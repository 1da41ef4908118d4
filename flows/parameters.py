"""Words for a flow's parameters in the Prefect UI's run form.

Prefect titles a parameter with its name and reads its description from the flow's docstring, over a
`Field(title=..., description=...)` of its annotation; a schema extra is applied last, so it replaces both.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic.config import JsonDict


def labelled(title: str, description: str | None = None) -> Any:
    """An `Annotated` item that gives a parameter its label (and description) in the run form."""
    extra: JsonDict = {"title": title}
    if description is not None:
        extra["description"] = description
    return Field(json_schema_extra=extra)
