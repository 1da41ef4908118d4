"""Step figures from CloudWatch (botocore's Stubber): valid periods, Statistics and ExtendedStatistics in
separate calls, and a CloudWatch error that leaves a figure unavailable instead of ending the rollout."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from tasks.rollout import step_metrics

START, END = 1_699_999_995.4, 1_700_000_081.2  # 85.8 s from 15.4 s into a minute: two minutes
DIMENSIONS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}]


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(step_metrics.aws, "client", lambda service, **_: client)
    with Stubber(client) as stubber:
        yield client, stubber


def request(metric: str, **statistics: list[str]) -> dict[str, Any]:
    # One 120 s period from the minute the step starts in (1_699_999_980) through the one it ends in.
    return {
        "Namespace": "AWS/SageMaker",
        "MetricName": metric,
        "Dimensions": DIMENSIONS,
        "StartTime": datetime.fromtimestamp(1_699_999_980, UTC),
        "EndTime": datetime.fromtimestamp(1_700_000_100, UTC),
        "Period": 120,
        **statistics,
    }


def point(**values: Any) -> dict[str, Any]:
    return {"Timestamp": datetime.fromtimestamp(1_699_999_980, UTC), **values}


def expect_all(stubber: Stubber, *, fail: str | None = None) -> None:
    """The five calls of one step in order; `fail` names the one CloudWatch refuses (throttled)."""
    calls = [
        ("ModelLatency", {"Statistics": ["Average"]}, [point(Average=25_000.0)]),
        ("ModelLatency", {"ExtendedStatistics": ["p99"]}, [point(ExtendedStatistics={"p99": 41_500.0})]),
        ("Invocations", {"Statistics": ["Sum"]}, [point(Sum=40.0)]),
        ("Invocation4XXErrors", {"Statistics": ["Sum"]}, [point(Sum=1.0)]),
        ("Invocation5XXErrors", {"Statistics": ["Sum"]}, [point(Sum=0.0)]),
    ]
    for metric, statistics, points in calls:
        expected = request(metric, **statistics)
        if metric == fail:
            stubber.add_client_error(
                "get_metric_statistics", "Throttling", "Rate exceeded", 400, expected_params=expected
            )
        else:
            stubber.add_response("get_metric_statistics", {"Label": metric, "Datapoints": points}, expected)


def test_each_figure_is_one_call_with_a_whole_minute_period(cloudwatch: tuple[Any, Stubber]) -> None:
    _, stubber = cloudwatch
    expect_all(stubber)
    window = step_metrics.variant_window("ep", "AllTraffic", START, END)
    stubber.assert_no_pending_responses()  # the Stubber checked each request's parameters
    assert window == step_metrics.VariantWindow(
        invocations=40, errors_4xx=1, errors_5xx=0, p99_ms=41.5, average_ms=25.0
    )


def test_no_request_asks_for_statistics_and_extended_statistics_at_once(
    cloudwatch: tuple[Any, Stubber],
) -> None:
    client, stubber = cloudwatch
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.monitoring.GetMetricStatistics", lambda params, **_: sent.append(dict(params))
    )
    expect_all(stubber)
    step_metrics.variant_window("ep", "AllTraffic", START, END)
    assert len(sent) == 5
    assert all(("Statistics" in p) != ("ExtendedStatistics" in p) for p in sent), sent


@pytest.mark.parametrize(
    ("start", "end"),
    [(0.0, 1.0), (59.9, 60.1), (30.0, 95.0), (1_700_000_000.0, 1_700_003_600.5), (12.5, 12.5)],
)
def test_periods_are_whole_minutes_covering_the_step(start: float, end: float) -> None:
    window = step_metrics._Window.of(start, end)
    assert window.period >= 60 and window.period % 60 == 0
    assert window.start % 60 == 0 and window.end == window.start + window.period  # as AWS rounds it
    assert window.start <= start < window.start + 60 and end <= window.end < end + 60 + 1


def test_a_cloudwatch_error_leaves_the_figure_unavailable_and_warns(
    cloudwatch: tuple[Any, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    _, stubber = cloudwatch
    expect_all(stubber, fail="Invocations")
    with caplog.at_level(logging.WARNING):
        window = step_metrics.variant_window("ep", "AllTraffic", START, END)
    assert window.invocations is None
    assert (window.errors_4xx, window.errors_5xx, window.p99_ms) == (1, 0, 41.5)
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "Invocations of ep/AllTraffic" in warning[0].getMessage()
    assert "Throttling" in warning[0].getMessage() and "unavailable" in warning[0].getMessage()


def test_cloudwatch_out_of_reach_reports_every_figure_unavailable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # nothing listens on the discard port
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    monkeypatch.setattr(step_metrics.aws, "client", lambda service, **_: client)
    with caplog.at_level(logging.WARNING):
        window = step_metrics.variant_window("ep", "AllTraffic", START, END)
    assert window == step_metrics.VariantWindow(None, None, None, None, None)
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 5
    assert any(EndpointConnectionError.__name__ in r.getMessage() for r in caplog.records)


def test_the_fleet_of_one_config_is_asked_with_its_dimension(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stubber = cloudwatch
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.monitoring.GetMetricStatistics", lambda params, **_: sent.append(dict(params))
    )
    for _ in range(5):
        stubber.add_response("get_metric_statistics", {"Label": "x", "Datapoints": []})
    window = step_metrics.variant_window("ep", "AllTraffic", START, END, config_name="ep-r2")
    assert window == step_metrics.VariantWindow(None, None, None, None, None)  # no traffic: no figures
    fleet = [*DIMENSIONS, {"Name": "EndpointConfigName", "Value": "ep-r2"}]
    assert [p["Dimensions"] for p in sent] == [fleet] * 5


def test_the_minute_a_step_starts_in_is_counted_on_moto(mocked_aws: None) -> None:
    """SageMaker stamps a minute's datapoint with the minute's start; a step starting 4 s later counts it
    on AWS (StartTime rounded down), and on moto too, which filters on the bounds as sent."""
    minute = (int(datetime.now(UTC).timestamp()) // 60 - 5) * 60
    step_metrics.aws.client("cloudwatch").put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": DIMENSIONS,
                "Timestamp": datetime.fromtimestamp(minute, UTC),
                "Value": 7.0,
            }
        ],
    )
    window = step_metrics.variant_window("ep", "AllTraffic", minute + 4.5, minute + 27.8)
    assert window.errors_5xx == 7
