"""The emulator's own GetMetricStatistics requests, which the local moto answers without CloudWatch's
request rules (emulator/cloudwatch/moto_statistics.py says why)."""

from __future__ import annotations

from typing import Any

INTERNAL_HEADER = "X-Sagemaker-Emulator-Internal"
_HOOK_ID = "sagemaker-emulator-internal-statistics"


def _add_header(request: Any, **_: Any) -> None:
    request.headers[INTERNAL_HEADER] = "1"


def mark_internal(client: Any) -> Any:
    """`client` (boto3 CloudWatch) with its GetMetricStatistics calls marked as the emulator's; idempotent."""
    client.meta.events.register("before-sign.cloudwatch.GetMetricStatistics", _add_header, unique_id=_HOOK_ID)
    return client
