"""Helpers for the autoscaling tests: plain boto3 clients for Application Auto Scaling and CloudWatch as a
user's script makes them, a steady request generator, and polling with a timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def clients(env: dict[str, str]) -> tuple[Any, Any]:
    """(application-autoscaling, cloudwatch) reaching the stack as `env` says, as boto3 would by itself."""
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    config = Config(retries={"max_attempts": 2, "mode": "standard"})
    autoscaling = session.client(
        "application-autoscaling",
        endpoint_url=env["AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING"],
        config=config,
    )
    return autoscaling, session.client("cloudwatch", endpoint_url=env["AWS_ENDPOINT_URL"], config=config)


def poll(check: Callable[[], Any], what: str, timeout: float = 60, every: float = 0.25) -> Any:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)


def variant(sagemaker: Any, endpoint: str) -> dict[str, Any]:
    return dict(sagemaker.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0])


def activities(autoscaling: Any, resource_id: str) -> list[dict[str, Any]]:
    return list(
        autoscaling.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
        )["ScalingActivities"]
    )


def deregister_all(autoscaling: Any, endpoints: list[str]) -> None:
    """Deregister the AllTraffic variant of each endpoint (its policies and their alarms go too)."""
    for endpoint in endpoints:
        try:
            autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=f"endpoint/{endpoint}/variant/AllTraffic",
                ScalableDimension=DIMENSION,
            )
        except ClientError as error:
            if not error.response["Error"]["Message"].startswith("No scalable target found"):
                raise


def settled(autoscaling: Any, resource_id: str) -> list[dict[str, Any]]:
    """The target's activities once none is in progress (else an empty list, to poll on)."""
    listed = activities(autoscaling, resource_id)
    return listed if listed and all(a["StatusCode"] != "InProgress" for a in listed) else []


@dataclass
class Traffic:
    """InvokeEndpoint at `rate` requests per second from a background thread until stopped."""

    runtime: Any
    endpoint: str
    rate: float
    body: bytes = b"{}"
    sent: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.runtime.invoke_endpoint(
                    EndpointName=self.endpoint, Body=self.body, ContentType="application/json"
                )
                self.sent += 1
            except Exception as error:
                self.errors.append(str(error))
            next_at += 1.0 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))
