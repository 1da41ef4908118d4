"""MetricsConfig of an endpoint config: how often SageMaker publishes a fleet's invocation metrics.

CreateEndpointConfig refuses a MetricPublishFrequencyInSeconds outside `PUBLISH_FREQUENCIES_S`; the
runtime stamps each invocation with its fleet's period (`invocation_metrics_period_s`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# SageMaker publishes invocation metrics once a minute. MetricsConfig.MetricPublishFrequencyInSeconds
# takes these values (the API reference of MetricsConfig; botocore's model has no enum for it).
STANDARD_PERIOD_S = 60
PUBLISH_FREQUENCIES_S = (10, 30, 60, 120, 180, 240, 300)


def invocation_metrics_period_s(metrics_config: Mapping[str, Any] | None, *, instance_backed: bool) -> int:
    """How often a fleet's invocation metrics reach CloudWatch, as SageMaker publishes them.

    Every 60 s, unless the endpoint config's MetricsConfig sets EnableEnhancedMetrics: then every
    MetricPublishFrequencyInSeconds. Without enhanced metrics the frequency applies to utilization
    metrics only (API reference, MetricsConfig). Enhanced metrics are a feature of instance-backed
    real-time endpoints: serverless and asynchronous endpoints keep the one-minute invocation metrics.
    """
    if not metrics_config or not instance_backed or not metrics_config.get("EnableEnhancedMetrics"):
        return STANDARD_PERIOD_S
    frequency = int(metrics_config.get("MetricPublishFrequencyInSeconds") or STANDARD_PERIOD_S)
    return frequency if frequency in PUBLISH_FREQUENCIES_S else STANDARD_PERIOD_S
