"""Errors that carry an HTTP status. Anything else raised while serving a request is a 500.

A custom code/inference.py may raise ClientError (``from serving.errors import ClientError``) to answer
a 4xx; every other exception from user code is treated as the model's failure (500).
"""

from __future__ import annotations


class ClientError(Exception):
    """The caller's mistake: answered with `status` and `message`; not logged as a bug."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            if not 400 <= status <= 499:
                raise ValueError(f"ClientError status must be 4xx, got {status}")
            self.status = status


class BadRequest(ClientError):
    status = 400


class NotAcceptable(ClientError):
    status = 406


class RequestTimeout(ClientError):
    status = 408


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class ModelLoadError(Exception):
    """The model folder cannot be served; the message says what is wrong and how to fix it."""
