"""Test doubles for rollout unit tests: a SageMaker control plane with just enough state, and a clock.

moto has no UpdateEndpoint and never finishes a weights update, so the rollout's SageMaker calls go to
`FakeSageMaker`, which checks every request against botocore's model of the operation (the call
shapes are real) and moves endpoints through Updating -> InService over a few DescribeEndpoint
calls. CloudWatch and Application Auto Scaling stay on moto in-process.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from tasks.core import aws
from tasks.core.waiting import FakeClock

_MODEL = botocore.session.get_session().get_service_model("sagemaker")


def check_shape(operation: str, params: dict[str, Any]) -> None:
    """Fail the test when `params` is not a valid request of `operation` per botocore's model."""
    report = ParamValidator().validate(params, _MODEL.operation_model(operation).input_shape)
    if report.has_errors():
        raise AssertionError(f"{operation}: {report.generate_report()}")


def _not_found(what: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ValidationException", "Message": f"Could not find {what}"}}, "Describe"
    )


@dataclass
class Deployment:
    """A guardrails update in progress: the phases DescribeEndpoint will report, one per call."""

    config: str
    phases: list[str]
    roll_back: bool
    reason: str = ""


@dataclass
class FakeSageMaker:
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updating_polls: int = 1  # DescribeEndpoint calls an endpoint stays Updating
    guardrail_phases: list[str] = field(
        default_factory=lambda: ["Creating", "ActivatingTraffic", "Baking", "ActivatingTraffic", "Baking"]
    )
    guardrail_rolls_back: bool = False
    stuck: bool = False  # updates never finish
    on_describe: Callable[[dict[str, Any]], None] | None = None
    deleted_models: set[str] = field(default_factory=set)
    model_data: dict[str, str] = field(default_factory=dict)  # model name -> ModelDataUrl
    model_tags: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    _pending: dict[str, Any] = field(default_factory=dict)
    _created: dict[str, datetime] = field(default_factory=dict)

    # -- helpers for tests ----------------------------------------------------------------------

    def add_config(
        self, name: str, variants: list[dict[str, Any]], tags: list[dict[str, str]] | None = None
    ) -> None:
        self.configs[name] = {"EndpointConfigName": name, "ProductionVariants": copy.deepcopy(variants)}
        if tags is not None:
            self.configs[name]["Tags"] = tags
        self._stamp(name)

    def _stamp(self, name: str) -> None:
        self._created[name] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=len(self._created))

    @staticmethod
    def config_arn(name: str) -> str:
        return f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}"

    def add_endpoint(self, name: str, config: str) -> None:
        self.endpoints[name] = {
            "EndpointName": name,
            "EndpointConfigName": config,
            "EndpointStatus": "InService",
        }
        self._set_variants(name, config)

    def called(self, operation: str) -> list[dict[str, Any]]:
        return [params for op, params in self.calls if op == operation]

    def weights(self, endpoint: str) -> dict[str, float]:
        return {v["VariantName"]: v["CurrentWeight"] for v in self.endpoints[endpoint]["ProductionVariants"]}

    def _record(self, operation: str, params: dict[str, Any]) -> None:
        check_shape(operation, params)
        self.calls.append((operation, copy.deepcopy(params)))

    def _set_variants(self, endpoint: str, config: str) -> None:
        self.endpoints[endpoint]["ProductionVariants"] = [
            {
                "VariantName": v["VariantName"],
                "CurrentWeight": float(v.get("InitialVariantWeight", 1.0)),
                "DesiredWeight": float(v.get("InitialVariantWeight", 1.0)),
                "CurrentInstanceCount": v.get("InitialInstanceCount", 1),
                "DesiredInstanceCount": v.get("InitialInstanceCount", 1),
            }
            for v in self.configs[config]["ProductionVariants"]
        ]

    # -- the SageMaker API subset the rollout uses ---------------------------------------------------

    def create_endpoint_config(self, **params: Any) -> dict[str, Any]:
        self._record("CreateEndpointConfig", params)
        name = params["EndpointConfigName"]
        if name in self.configs:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "exists"}}, "Create")
        self.configs[name] = copy.deepcopy(params)
        self._stamp(name)
        return {"EndpointConfigArn": self.config_arn(name)}

    def describe_endpoint_config(self, **params: Any) -> dict[str, Any]:
        check_shape("DescribeEndpointConfig", params)
        name = params["EndpointConfigName"]
        if name not in self.configs:
            raise _not_found(f"endpoint configuration {name}")
        return copy.deepcopy(self.configs[name])

    def delete_endpoint_config(self, **params: Any) -> dict[str, Any]:
        self._record("DeleteEndpointConfig", params)
        if self.configs.pop(params["EndpointConfigName"], None) is None:
            raise _not_found("endpoint configuration")
        return {}

    def describe_model(self, **params: Any) -> dict[str, Any]:
        check_shape("DescribeModel", params)
        if params["ModelName"] in self.deleted_models:
            raise _not_found(f"model {params['ModelName']}")
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:model/{params['ModelName']}"
        container = {"Image": "image:1"}
        if params["ModelName"] in self.model_data:
            container["ModelDataUrl"] = self.model_data[params["ModelName"]]
        return {"ModelName": params["ModelName"], "ModelArn": arn, "PrimaryContainer": container}

    def delete_model(self, **params: Any) -> dict[str, Any]:
        self._record("DeleteModel", params)
        if params["ModelName"] in self.deleted_models:
            raise _not_found(f"model {params['ModelName']}")
        self.deleted_models.add(params["ModelName"])
        return {}

    def list_endpoint_configs(self, **params: Any) -> dict[str, Any]:
        check_shape("ListEndpointConfigs", params)
        names = [n for n in self.configs if params.get("NameContains", "") in n]
        names.sort(key=lambda n: self._created[n], reverse=params.get("SortOrder") == "Descending")
        return {
            "EndpointConfigs": [
                {
                    "EndpointConfigName": n,
                    "EndpointConfigArn": self.config_arn(n),
                    "CreationTime": self._created[n],
                }
                for n in names
            ]
        }

    def list_tags(self, **params: Any) -> dict[str, Any]:
        check_shape("ListTags", params)
        kind, name = params["ResourceArn"].split(":", 5)[5].split("/", 1)
        if kind == "model":
            return {"Tags": copy.deepcopy(self.model_tags.get(name, []))}
        return {"Tags": copy.deepcopy(self.configs.get(name, {}).get("Tags", []))}

    def get_paginator(self, operation: str) -> Any:
        fake = self

        class OnePage:
            def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
                yield getattr(fake, operation)(**params)

        return OnePage()

    def update_endpoint(self, **params: Any) -> dict[str, Any]:
        self._record("UpdateEndpoint", params)
        name, config = params["EndpointName"], params["EndpointConfigName"]
        if name not in self.endpoints:
            raise _not_found(f"endpoint {name}")
        if config not in self.configs:
            raise _not_found(f"endpoint configuration {config}")
        self.endpoints[name]["EndpointStatus"] = "Updating"
        if "DeploymentConfig" in params:
            self._pending[name] = Deployment(config, list(self.guardrail_phases), self.guardrail_rolls_back)
        else:
            self._pending[name] = ("config", config, self.updating_polls)
        return {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}"}

    def update_endpoint_weights_and_capacities(self, **params: Any) -> dict[str, Any]:
        self._record("UpdateEndpointWeightsAndCapacities", params)
        name = params["EndpointName"]
        self.endpoints[name]["EndpointStatus"] = "Updating"
        self._pending[name] = ("weights", params["DesiredWeightsAndCapacities"], self.updating_polls)
        return {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}"}

    def describe_endpoint(self, **params: Any) -> dict[str, Any]:
        check_shape("DescribeEndpoint", params)
        name = params["EndpointName"]
        if name not in self.endpoints:
            raise _not_found(f"endpoint {name}")
        endpoint = self.endpoints[name]
        pending = self._pending.get(name)
        described = copy.deepcopy(endpoint)
        if isinstance(pending, Deployment):
            self._advance_deployment(name, pending, described)
        elif pending is not None and not self.stuck:
            kind, what, polls = pending
            if polls > 0:
                self._pending[name] = (kind, what, polls - 1)
            else:
                self._finish(name, kind, what)
                described = copy.deepcopy(endpoint)
        if self.on_describe is not None:
            self.on_describe(described)
        return described

    def _advance_deployment(self, name: str, deployment: Deployment, described: dict[str, Any]) -> None:
        if deployment.phases:
            phase = deployment.phases.pop(0)
            described["PendingDeploymentSummary"] = {
                "EndpointConfigName": deployment.config,
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "VariantStatus": [{"Status": phase, "StartTime": f"t{len(deployment.phases)}"}],
                    }
                ],
            }
            return
        del self._pending[name]
        endpoint = self.endpoints[name]
        if deployment.roll_back:
            endpoint["FailureReason"] = "Rolled back: an alarm fired during the deployment"
        else:
            endpoint["EndpointConfigName"] = deployment.config
            self._set_variants(name, deployment.config)
        endpoint["EndpointStatus"] = "InService"
        described.clear()
        described.update(copy.deepcopy(endpoint))

    def _finish(self, name: str, kind: str, what: Any) -> None:
        endpoint = self.endpoints[name]
        del self._pending[name]
        if kind == "config":
            endpoint["EndpointConfigName"] = what
            self._set_variants(name, what)
        else:
            for desired in what:
                for variant in endpoint["ProductionVariants"]:
                    if variant["VariantName"] == desired["VariantName"]:
                        variant["CurrentWeight"] = variant["DesiredWeight"] = float(desired["DesiredWeight"])
        endpoint["EndpointStatus"] = "InService"


class StepClock(FakeClock):
    """A fake clock that runs callbacks once it passes given times (an alarm firing mid-bake)."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.events: list[tuple[float, Callable[[], None]]] = []

    def at(self, moment: float, action: Callable[[], None]) -> None:
        self.events.append((moment, action))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        due = [event for event in self.events if event[0] <= self.now]
        self.events = [event for event in self.events if event[0] > self.now]
        for _, action in due:
            action()


@contextmanager
def sagemaker_double(monkeypatch: pytest.MonkeyPatch, fake: FakeSageMaker) -> Iterator[FakeSageMaker]:
    """Route aws.client("sagemaker") to `fake`; every other service keeps its (moto) client."""
    real = aws.client

    def client(service: str, *, region: str | None = None) -> Any:
        return fake if service == "sagemaker" else real(service, region=region)

    monkeypatch.setattr(aws, "client", client)
    yield fake


def release_tags(
    release_id: str, endpoint: str = "demo-embedder", purpose: str | None = None
) -> list[dict[str, str]]:
    tags = [
        {"Key": "managed-by", "Value": "sagemaker-release"},
        {"Key": "release-id", "Value": release_id},
        {"Key": "sagemaker-release:endpoint", "Value": endpoint},
    ]
    if purpose:
        tags.append({"Key": "sagemaker-release:purpose", "Value": purpose})
    return tags


def variant(model: str, instance_type: str = "ml.m5.large") -> list[dict[str, object]]:
    return [
        {
            "VariantName": "AllTraffic",
            "ModelName": model,
            "InstanceType": instance_type,
            "InitialInstanceCount": 1,
            "InitialVariantWeight": 1.0,
        }
    ]


@contextmanager
def serving_old_model(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, *, instance_count: int = 1
) -> Iterator[FakeSageMaker]:
    """The double with `endpoint` InService on `old-config`: variant AllTraffic serving model-old on
    `instance_count` ml.m5.large instances, as the rollout tests find it before a release."""
    double = FakeSageMaker()
    double.add_config("old-config", [{**variant("model-old")[0], "InitialInstanceCount": instance_count}])
    double.add_endpoint(endpoint, "old-config")
    with sagemaker_double(monkeypatch, double):
        yield double
