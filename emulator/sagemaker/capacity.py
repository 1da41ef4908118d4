"""What Application Auto Scaling (emulator/autoscaling/) sees of an endpoint variant and how it scales one.

AWS's Application Auto Scaling reads a variant's DesiredInstanceCount and changes it with
UpdateEndpointWeightsAndCapacities; this adapter does the same in-process, through the same handler
(`SageMakerApi.update_endpoint_weights_and_capacities`), so a scaling activity meets every rule a
caller of the API meets: the endpoint must be InService, the instance quota holds, 0 only for async.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.sagemaker import arns
from emulator.sagemaker.responses import SageMakerApi


@dataclass(frozen=True)
class VariantState:
    endpoint_name: str
    variant_name: str
    status: str  # the endpoint's EndpointStatus
    desired: int  # DesiredInstanceCount (what Application Auto Scaling calls the current capacity)
    current: int  # instances answering requests
    asynchronous: bool
    serverless: bool
    failure_reason: str | None


class SageMakerCapacity:
    def __init__(self, api: SageMakerApi) -> None:
        self.api = api

    def variant(self, endpoint_name: str, variant_name: str) -> VariantState | None:
        """The variant as DescribeEndpoint shows it; None when this emulator has no such endpoint."""
        key = arns.key(endpoint_name)
        record = self.api.store.endpoints.get(key)
        deployment = self.api.engine.primary(key)
        if record is None or deployment is None or variant_name not in deployment.variants:
            return None
        variant = deployment.variants[variant_name]
        return VariantState(
            endpoint_name=record["EndpointName"],
            variant_name=variant_name,
            status=record["EndpointStatus"],
            desired=variant.desired_instances,
            current=len(variant.instances),
            asynchronous=bool(record.get("AsyncInferenceConfig")),
            serverless=variant.serverless is not None,
            failure_reason=record.get("FailureReason"),
        )

    def endpoint_exists(self, endpoint_name: str) -> bool:
        return arns.key(endpoint_name) in self.api.store.endpoints

    async def set_desired_instances(self, endpoint_name: str, variant_name: str, count: int) -> None:
        """UpdateEndpointWeightsAndCapacities for one variant; AwsError when SageMaker would refuse it."""
        await self.api.call(
            "UpdateEndpointWeightsAndCapacities",
            {
                "EndpointName": endpoint_name,
                "DesiredWeightsAndCapacities": [{"VariantName": variant_name, "DesiredInstanceCount": count}],
            },
        )
