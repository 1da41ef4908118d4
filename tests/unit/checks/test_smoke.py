"""Smoke test: answers to a DataFrame, great-expectations verdicts, model errors as answers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from tasks.checks import smoke
from tasks.checks.smoke import Answer, answers_frame, run_smoke
from tasks.config import SmokeConfig
from tasks.core.errors import SmokeFailed

EMBEDDING = json.dumps([[0.1] * 384])


def _config(**changes: object) -> SmokeConfig:
    return SmokeConfig.model_validate({"payloads": [{"inputs": "hi"}], "expect_dim": 384, **changes})


def test_shapes_and_nulls_of_answers() -> None:
    frame = answers_frame(
        [
            Answer(0, 200, 5.0, EMBEDDING),
            Answer(0, 200, 5.0, json.dumps({"embeddings": [[1, 2], [3, 4], [5, 6]]})),
            Answer(0, 200, 5.0, json.dumps([[1, None]])),
            Answer(0, 500, 5.0, "", error="boom"),
            Answer(0, 200, 5.0, "label,1"),
        ]
    )
    assert [s if isinstance(s, str) else None for s in frame["shape"]] == ["1x384", "3x2", "1x2", None, None]
    assert frame["dim"].tolist()[:2] == [384, 2]
    assert frame["output"].isna().tolist() == [False, False, True, True, False]


def test_good_answers_pass_with_latency_figures() -> None:
    answers = [Answer(0, 200, ms, EMBEDDING) for ms in (10.0, 20.0, 30.0)]
    result = run_smoke("ep", _config(expect_shape=[1, -1]), call=lambda: answers)
    assert (result.passed, result.n, result.p50_ms) == (True, 3, 20.0)
    assert any("expect_column_values_to_be_in_set(column=dim" in check for check in result.checks)


@pytest.mark.parametrize(
    ("bad", "expectation"),
    [
        (
            Answer(0, 500, 10.0, "", error="CUDA out of memory"),
            "expect_column_values_to_be_in_set(column=status",
        ),
        (Answer(0, 200, 10.0, "[]"), "expect_column_values_to_not_be_null(column=output"),
        (Answer(0, 200, 10.0, json.dumps([[0.1] * 768])), "expect_column_values_to_be_in_set(column=dim"),
        (Answer(0, 200, 9000.0, EMBEDDING), "expect_column_values_to_be_between(column=latency_ms"),
    ],
)
def test_each_failed_expectation_fails_the_smoke_test_by_name(bad: Answer, expectation: str) -> None:
    answers = [Answer(0, 200, 10.0, EMBEDDING), bad]
    with pytest.raises(SmokeFailed) as caught:
        run_smoke("ep", _config(latency_percentile="max", max_latency_ms=1000), call=lambda: answers)
    assert any(f.startswith(expectation) for f in caught.value.failures), caught.value.failures
    assert str(caught.value).startswith("SmokeFailed: endpoint ep failed")


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(smoke.aws, "client", lambda service, **_: client)
    with Stubber(client) as stubber:
        yield stubber


def test_invoke_turns_a_model_error_into_an_answer_with_the_container_status(runtime: Stubber) -> None:
    body = EMBEDDING.encode()
    runtime.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
        {
            "EndpointName": "ep",
            "Body": b'{"inputs": "hi"}',
            "ContentType": "application/json",
            "Accept": "application/json",
        },
    )
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from primary",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": "boom"},
    )
    answers = smoke.invoke_realtime("ep", _config(repeat=2))
    assert [(a.status, a.error) for a in answers] == [
        (200, None),
        (500, "Received server error (500) from primary"),
    ]


def test_invoke_raises_what_is_not_the_models_answer(runtime: Stubber) -> None:
    runtime.add_client_error(
        "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=429
    )
    with pytest.raises(Exception, match="ThrottlingException"):
        smoke.invoke_realtime("ep", _config(repeat=1))
