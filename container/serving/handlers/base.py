"""What the HTTP layer needs from a loaded model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str


class ServedModel(Protocol):
    description: str

    async def start(self) -> None:
        """Called on the event loop once the model is loaded, before the first request."""
        ...

    async def stop(self) -> None: ...

    async def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        """Raise ClientError for the caller's mistakes; any other exception is the model's failure."""
        ...
