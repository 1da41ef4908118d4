"""When the release's guard alarms can judge a period: how often SageMaker publishes invocation metrics
and how late CloudWatch judges them. Shared by the config's checks (tasks/config/sections.py,
tasks/config/release.py) and the endpoint config request (tasks/sagemaker/endpoint_spec.py). Pure.

The sources:

* MetricsConfig in the API reference: invocation metrics reach CloudWatch every 60 s; with
  EnableEnhancedMetrics every MetricPublishFrequencyInSeconds (10, 30, 60, 120, 180, 240 or 300). The
  frequency alone, without EnableEnhancedMetrics, applies to utilization metrics only.
* Enhanced metrics are a feature of real-time endpoints (the developer guide's "enhanced metrics for
  inference endpoints"); serverless and asynchronous endpoints keep their one-minute invocation metrics.
* CloudWatch: an alarm whose period is shorter than its metric's resolution finds no datapoint (it lapses
  into INSUFFICIENT_DATA, or OK when missing data is not breaching, and never fires); high-resolution
  alarms (10 and 30 s periods) are evaluated every 10 s, the others once a minute.

SageMaker aggregates a period before it publishes it and CloudWatch ingests it before an alarm sees it:
`INGESTION_DELAY_S` is what the release allows for that (the local emulator takes 15 s by default,
SAGEMAKER_EMULATOR_METRICS_DELAY_S). A bake shorter than the alarm's periods plus that delay and one
evaluation ends before the alarm can fire: the release would call the step good without having watched it.
"""

from __future__ import annotations

STANDARD_PERIOD_S = 60
HIGH_RESOLUTION_PERIODS_S = (10, 30)
INGESTION_DELAY_S = 20
HIGH_RESOLUTION_EVALUATION_S = 10
# Endpoint types whose invocation metrics can be published faster than once a minute.
ENHANCED_METRICS_TYPES = ("realtime",)


def needs_enhanced_metrics(period_s: int) -> bool:
    """A 10 or 30 s alarm needs datapoints that often: SageMaker's enhanced metrics."""
    return period_s < STANDARD_PERIOD_S


def alarm_delay_s(period_s: int) -> int:
    """How long after a period ends its alarm has judged it, at the latest."""
    cadence = HIGH_RESOLUTION_EVALUATION_S if needs_enhanced_metrics(period_s) else STANDARD_PERIOD_S
    return INGESTION_DELAY_S + cadence


def minimum_bake_s(period_s: int, evaluation_periods: int) -> int:
    """The shortest bake in which an alarm of `evaluation_periods` periods of `period_s` can fire."""
    return period_s * evaluation_periods + alarm_delay_s(period_s)


def metrics_config(period_s: int) -> dict[str, object] | None:
    """MetricsConfig of an endpoint config whose alarms have `period_s` periods (None: the default suits)."""
    if not needs_enhanced_metrics(period_s):
        return None
    return {"EnableEnhancedMetrics": True, "MetricPublishFrequencyInSeconds": period_s}
