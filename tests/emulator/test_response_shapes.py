"""Every raw response body the emulator sends matches botocore's output shape for its operation.

botocore's parser silently drops unknown members and does not complain about missing ones, so a
client would not notice; this test reads the bytes on the wire (botocore's `before-parse` event)
and checks types, enum values, required members, and the members AWS returns every time even where
the service model does not mark them required.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.model import Shape

from tests.emulator.emulator_support import ROLE_ARN, Aws, make_clients, tarball, unique, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.docker]

# Members SageMaker returns on every answer of these operations (paths; [] walks a list).
ALWAYS_RETURNED: dict[str, list[str]] = {
    "DescribeModel": [
        "ExecutionRoleArn",
        "PrimaryContainer.Image",
        "PrimaryContainer.Mode",
        "EnableNetworkIsolation",
    ],
    "DescribeEndpointConfig": [
        "ProductionVariants[].VariantName",
        "ProductionVariants[].ModelName",
        "ProductionVariants[].InitialVariantWeight",
        "ProductionVariants[].InstanceType",
        "ProductionVariants[].InitialInstanceCount",
    ],
    "DescribeEndpoint": ["EndpointConfigName"],
    "ListModels": ["Models[].ModelName", "Models[].ModelArn", "Models[].CreationTime"],
    "ListEndpointConfigs": [
        "EndpointConfigs[].EndpointConfigName",
        "EndpointConfigs[].EndpointConfigArn",
        "EndpointConfigs[].CreationTime",
    ],
    "ListEndpoints": [
        "Endpoints[].EndpointName",
        "Endpoints[].EndpointArn",
        "Endpoints[].CreationTime",
        "Endpoints[].LastModifiedTime",
        "Endpoints[].EndpointStatus",
    ],
    "ListTags": ["Tags[].Key", "Tags[].Value"],
}
IN_SERVICE_ENDPOINT = [
    "ProductionVariants[].VariantName",
    "ProductionVariants[].CurrentWeight",
    "ProductionVariants[].DesiredWeight",
    "ProductionVariants[].CurrentInstanceCount",
    "ProductionVariants[].DesiredInstanceCount",
    "ProductionVariants[].DeployedImages[].SpecifiedImage",
    "ProductionVariants[].DeployedImages[].ResolvedImage",
    "ProductionVariants[].DeployedImages[].ResolutionTime",
]
PENDING_ENDPOINT = [
    "PendingDeploymentSummary.EndpointConfigName",
    "PendingDeploymentSummary.StartTime",
    "PendingDeploymentSummary.ProductionVariants[].VariantName",
    "PendingDeploymentSummary.ProductionVariants[].DesiredInstanceCount",
]


def shape_problems(shape: Shape, value: Any, path: str = "$") -> list[str]:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        found = [
            f"{path}.{name}: required member missing" for name in shape.required_members if name not in value
        ]
        for name, item in value.items():
            if name not in shape.members:
                found.append(f"{path}.{name}: not a member of {shape.name}")
            else:
                found += shape_problems(shape.members[name], item, f"{path}.{name}")
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in shape_problems(shape.member, item, f"{path}[{i}]")]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        return [p for k, item in value.items() for p in shape_problems(shape.value, item, f"{path}.{k}")]
    expected: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "integer": (int,),
        "long": (int,),
        "float": (int, float),
        "double": (int, float),
        "boolean": (bool,),
        "timestamp": (int, float),
        "blob": (str,),
    }
    types = expected.get(kind)
    if types is None:
        return []
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        return [f"{path}: expected {kind}, got {type(value).__name__} {value!r}"]
    if kind == "string" and shape.enum and value not in shape.enum:
        return [f"{path}: {value!r} is not one of {shape.enum}"]
    return []


def missing_paths(value: Any, path: str) -> list[str]:
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    name = head[:-2] if many else head
    if not isinstance(value, dict) or name not in value:
        return [path]
    items = value[name] if many else [value[name]]
    if many and not items:
        return [f"{path} (empty list)"]
    return [p for item in items for p in (missing_paths(item, rest) if rest else [])]


class WireRecorder:
    """Keeps (operation, status, body) of every response a client receives, before parsing."""

    def __init__(self, client: Any) -> None:
        self.model = client.meta.service_model
        self.seen: list[tuple[str, int, dict[str, Any]]] = []
        client.meta.events.register("before-parse.sagemaker.*", self._record)

    def _record(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        body = json.loads(response_dict["body"] or b"{}")
        self.seen.append((operation_model.name, response_dict["status_code"], body))

    def last(self, operation: str) -> dict[str, Any]:
        return next(body for op, status, body in reversed(self.seen) if op == operation and status == 200)

    def problems(self) -> list[str]:
        found = []
        for operation, status, body in self.seen:
            if status != 200:
                if not body.get("__type") or not body.get("message"):
                    found.append(f"{operation} error {status} lacks __type/message: {body}")
                continue
            shape = self.model.operation_model(operation).output_shape
            if shape is not None:
                found += [f"{operation} {p}" for p in shape_problems(shape, body)]
            for path in ALWAYS_RETURNED.get(operation, []):
                found += [f"{operation}: {p} missing" for p in missing_paths(body, path)]
        return found


def test_every_response_matches_botocore_output_shapes(
    stack: dict[str, str], aws: Aws, bucket: str, double_image: str
) -> None:
    client = make_clients(stack).sagemaker
    wire = WireRecorder(client)
    model, config, config2, endpoint = (
        unique("shape-m"),
        unique("shape-c"),
        unique("shape-c2"),
        unique("shape-e"),
    )
    key = f"{unique('shape')}/model.tar.gz"
    aws.s3.put_object(Bucket=bucket, Key=key, Body=tarball({"w.txt": b"w"}))
    tags = [{"Key": "managed-by", "Value": "sagemaker-release"}]
    try:
        client.create_model(
            ModelName=model,
            ExecutionRoleArn=ROLE_ARN,
            PrimaryContainer={"Image": double_image, "ModelDataUrl": f"s3://{bucket}/{key}"},
            Tags=tags,
        )
        variant = {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large"}
        client.create_endpoint_config(
            EndpointConfigName=config, ProductionVariants=[{**variant, "InitialInstanceCount": 1}], Tags=tags
        )
        client.create_endpoint_config(
            EndpointConfigName=config2,
            ProductionVariants=[{**variant, "InitialInstanceCount": 1}],
            DataCaptureConfig={
                "InitialSamplingPercentage": 50,
                "DestinationS3Uri": f"s3://{bucket}/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
        )
        client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=tags)
        client.describe_endpoint(EndpointName=endpoint)
        creating = wire.last("DescribeEndpoint")
        assert creating["EndpointStatus"] == "Creating"
        assert not missing_paths(creating, PENDING_ENDPOINT[0])
        assert all(not missing_paths(creating, p) for p in PENDING_ENDPOINT)

        assert wait_for_status(aws, endpoint, "InService")["EndpointStatus"] == "InService"
        client.describe_endpoint(EndpointName=endpoint)
        in_service = wire.last("DescribeEndpoint")
        assert [p for path in IN_SERVICE_ENDPOINT for p in missing_paths(in_service, path)] == []
        assert in_service["EndpointArn"] == f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{endpoint}"

        client.describe_model(ModelName=model)
        client.describe_endpoint_config(EndpointConfigName=config)
        client.describe_endpoint_config(EndpointConfigName=config2)
        client.list_models(NameContains="shape-m")
        client.list_endpoint_configs(NameContains="shape-c")
        client.list_endpoints(NameContains="shape-e")
        client.add_tags(ResourceArn=in_service["EndpointArn"], Tags=[{"Key": "release-id", "Value": "r1"}])
        client.list_tags(ResourceArn=in_service["EndpointArn"])
        client.delete_tags(ResourceArn=in_service["EndpointArn"], TagKeys=["release-id"])
        client.update_endpoint_weights_and_capacities(
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredWeight": 2}],
        )
        wait_for_status(aws, endpoint, "InService")
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config2)
        client.describe_endpoint(EndpointName=endpoint)
        updating = wire.last("DescribeEndpoint")
        assert updating["EndpointStatus"] == "Updating"
        assert [p for path in PENDING_ENDPOINT for p in missing_paths(updating, path)] == []
        assert wait_for_status(aws, endpoint, "InService")["EndpointConfigName"] == config2
        client.describe_endpoint(EndpointName=endpoint)
        capture = wire.last("DescribeEndpoint")["DataCaptureConfig"]
        assert capture["CaptureStatus"] == "Started"
        assert capture["CurrentSamplingPercentage"] == 50
        with pytest.raises(client.exceptions.ClientError):
            client.describe_model(ModelName=unique("absent"))
    finally:
        client.delete_endpoint(EndpointName=endpoint)
        client.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1})
        client.delete_endpoint_config(EndpointConfigName=config)
        client.delete_endpoint_config(EndpointConfigName=config2)
        client.delete_model(ModelName=model)

    assert wire.problems() == []


def test_checker_flags_what_botocore_would_let_through() -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("DescribeEndpoint").output_shape
    body = {
        "EndpointName": "e",
        "EndpointArn": "arn",
        "EndpointStatus": "Sleeping",
        "CreationTime": "yesterday",
        "Surprise": 1,
        "ProductionVariants": [{"VariantName": "v", "CurrentWeight": "1"}],
    }
    assert sorted(shape_problems(shape, body)) == [
        "$.CreationTime: expected timestamp, got str 'yesterday'",
        "$.EndpointStatus: 'Sleeping' is not one of " + str(model.shape_for("EndpointStatus").enum),
        "$.LastModifiedTime: required member missing",
        "$.ProductionVariants[0].CurrentWeight: expected float, got str '1'",
        "$.Surprise: not a member of DescribeEndpointOutput",
    ]
    assert missing_paths(body, "ProductionVariants[].DeployedImages[].ResolvedImage") == [
        "DeployedImages[].ResolvedImage"
    ]
