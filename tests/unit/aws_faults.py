"""Faults, and behaviour moto lacks, added at the botocore layer: the code under test makes its real
calls through its real clients, and moto in-process answers them.

- `lose_answers`: the call reaches moto and takes effect, then its answer is lost (ReadTimeoutError),
  as when a network drops a response; botocore's retries (or ours) send the call again.
- `refuse_duplicates`: SageMaker refuses a create whose name exists ('Cannot create already existing
  model "arn…"'); moto overwrites silently, so its backend is made to refuse as SageMaker does.
- `update_endpoints_at_once`: moto has no UpdateEndpoint; this adds one that moves the endpoint to
  the new config at once.
- `FailingStore`: an S3 ledger store whose k-th save and every later one fail as S3 does once
  botocore's own retries gave up (503 ServiceUnavailable).
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from tasks.lifecycle.ledger import S3LedgerStore


class LostAnswers:
    """The calls of one operation so far (`calls`), of which the first `times` lose their answer."""

    def __init__(self, operation: str, times: int) -> None:
        self.operation = operation
        self.times = times
        self.calls = 0


def lose_answers(client: Any, operation: str, *, times: int = 1) -> LostAnswers:
    """Drop the answer of the first `times` calls of `operation` after moto acted on them."""
    lost = LostAnswers(operation, times)
    service = client.meta.service_model.service_id.hyphenize()

    def drop(request: Any, event_name: str, **_: Any) -> None:
        if event_name != f"before-send.{service}.{operation}":
            return
        lost.calls += 1
        if lost.calls <= lost.times:
            raise ReadTimeoutError(endpoint_url=request.url)

    # Last on the generic event: after moto's own handler has carried the call out.
    client.meta.events.register_last("before-send", drop)
    return lost


# SageMaker create -> (name keyword of moto's backend method, moto's store of that kind, SageMaker's
# word for the kind in its error).
_SAGEMAKER_CREATES = {
    "create_model": ("model_name", "_models", "model"),
    "create_endpoint_config": ("endpoint_config_name", "endpoint_configs", "endpoint configuration"),
    "create_endpoint": ("endpoint_name", "endpoints", "endpoint"),
}


def refuse_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto refuse a SageMaker create whose name exists, with SageMaker's own error."""
    for method, (name_key, store, words) in _SAGEMAKER_CREATES.items():
        original = getattr(SageMakerModelBackend, method)

        def refusing(
            self: Any,
            *args: Any,
            _original: Any = original,
            _key: str = name_key,
            _store: str = store,
            _words: str = words,
            **kwargs: Any,
        ) -> Any:
            name = kwargs[_key]
            if name in getattr(self, _store):
                raise ValidationError(message=f'Cannot create already existing {_words} "{name}".')
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(SageMakerModelBackend, method, refusing)


def update_endpoints_at_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Give moto an UpdateEndpoint that moves the endpoint to the new config at once; returns the list
    of configs asked for, in order."""
    asked: list[str] = []

    def update_endpoint(self: Any) -> ActionResult:
        name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        backend = self.sagemaker_backend
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(message=f"Could not find endpoint {name}.")
        if config_name not in backend.endpoint_configs:
            raise ValidationError(message=f"Could not find endpoint configuration {config_name}.")
        asked.append(config_name)
        variants = backend.endpoint_configs[config_name].production_variants
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(variants)
        return ActionResult({"EndpointArn": endpoint.arn})

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
    return asked


class FailingStore(S3LedgerStore):
    """An S3 ledger store whose saves from the `fail_from`-th on raise S3's 503 (0: never fails), up
    to the `fail_until`-th (exclusive) when given: S3 comes back then."""

    def __init__(self, bucket: str, key: str, *, fail_from: int = 0, fail_until: int | None = None) -> None:
        super().__init__(bucket, key)
        self.fail_from = fail_from
        self.fail_until = fail_until
        self.saves = 0

    def save(self, document: dict[str, Any]) -> None:
        self.saves += 1
        failing = bool(self.fail_from) and self.saves >= self.fail_from
        if failing and (self.fail_until is None or self.saves < self.fail_until):
            raise ClientError(
                {
                    "Error": {"Code": "ServiceUnavailable", "Message": "Please reduce your request rate."},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "PutObject",
            )
        super().save(document)
