"""What one invocation of a serving container answered, as the runtime hands it on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InvokeResult:
    variant_name: str
    body: bytes
    content_type: str
    custom_attributes: str | None
