"""SageMaker control plane over AWS's JSON 1.1 protocol (`X-Amz-Target: SageMaker.<Operation>`).

Models, endpoint configs and endpoints with AWS's validation, error codes and messages. Every input
is first checked against botocore's input shape (lengths, patterns, enums, ranges), then against
the rules SageMaker adds on top. Endpoint work (containers) happens in EndpointEngine; these handlers
only validate, record and return, as the real API returns before the endpoint is up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import botocore.session
import httpx
from botocore.model import OperationModel, ServiceModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.code_version import code_version
from emulator.fleet import images
from emulator.fleet.model_data import ModelDataCache, ModelDataSpec
from emulator.sagemaker import arns, guardrails
from emulator.sagemaker.endpoints import (
    IN_PROGRESS,
    EndpointEngine,
    config_instances,
    endpoint_fields_from_config,
)
from emulator.sagemaker.exceptions import (
    AwsError,
    InternalFailure,
    ResourceLimitExceeded,
    SerializationException,
    UnknownOperation,
    ValidationException,
)
from emulator.sagemaker.metrics_config import PUBLISH_FREQUENCIES_S
from emulator.sagemaker.models import refuse_model_data_source
from emulator.sagemaker.store import Record
from emulator.sagemaker.transform_jobs import TransformJobs
from emulator.sagemaker.validation import validate_input

log = logging.getLogger("emulator.sagemaker")

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_TAGS = 50
Handler = Callable[[Record], Awaitable[Record]]


def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def _not_found(kind: str, name: str) -> ValidationException:
    return ValidationException(f'Could not find {arns.KINDS[kind]} "{arns.arn(kind, name)}".')


def _already_exists(kind: str, name: str) -> ValidationException:
    return ValidationException(f'Cannot create already existing {arns.KINDS[kind]} "{arns.arn(kind, name)}".')


class SageMakerApi:
    def __init__(
        self,
        engine: EndpointEngine,
        model_data: ModelDataCache,
        http: httpx.AsyncClient,
        model: ServiceModel,
        transform_jobs: TransformJobs | None = None,
    ) -> None:
        self.engine = engine
        # The endpoint's variants registered with Application Auto Scaling (assigned by emulator/server.py
        # once its AutoScaler exists, which needs this API; none without it): UpdateEndpoint may not
        # remove or re-type them.
        self.scalable_variants: Callable[[str], set[str]] = lambda _endpoint: set()
        self.store = engine.store
        self.model_data = model_data
        self.http = http
        self.model = model
        self.handlers: dict[str, Handler] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "UpdateEndpoint": self.update_endpoint,
            "UpdateEndpointWeightsAndCapacities": self.update_endpoint_weights_and_capacities,
            "DeleteEndpoint": self.delete_endpoint,
            "AddTags": self.add_tags,
            "ListTags": self.list_tags,
            "DeleteTags": self.delete_tags,
        }
        if transform_jobs is not None:
            self.handlers.update(transform_jobs.handlers())

    async def call(self, operation: str, params: Record) -> Record:
        handler = self.handlers.get(operation)
        if handler is None:
            raise UnknownOperation(
                f"The SageMaker emulator does not implement {operation}; it implements "
                + ", ".join(sorted(self.handlers))
            )
        operation_model: OperationModel = self.model.operation_model(operation)
        validate_input(operation_model.input_shape, params)
        return await handler(params)

    # -- models -----------------------------------------------------------------------------------

    async def create_model(self, params: Record) -> Record:
        name = params["ModelName"]
        key = arns.key(name)
        if key in self.store.models:
            raise _already_exists("model", name)
        primary, pipeline = params.get("PrimaryContainer"), params.get("Containers")
        if (primary is None) == (pipeline is None):
            raise ValidationException(
                f"Model {name}: specify exactly one of PrimaryContainer (one container) or Containers "
                "(a serial inference pipeline)."
            )
        definitions = [primary] if primary is not None else pipeline
        if not definitions:
            raise ValidationException(f"Model {name}: Containers must list at least one container.")
        mode = (params.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
        if mode != "Serial":
            raise ValidationException(
                f"Model {name}: InferenceExecutionConfig Mode {mode} is not supported by the emulator; "
                "use Serial."
            )
        hostnames = [d.get("ContainerHostname") for d in definitions if d.get("ContainerHostname")]
        if len(hostnames) != len(set(hostnames)):
            raise ValidationException(f"Model {name}: ContainerHostname values must be unique.")
        containers = [await self._checked_container(name, d) for d in definitions]
        arn = arns.arn("model", name)
        record: Record = {"ModelName": name, "ModelArn": arn, "CreationTime": time.time()}
        if primary is not None:
            record["PrimaryContainer"] = containers[0]
        else:
            record["Containers"] = containers
        if "InferenceExecutionConfig" in params:
            record["InferenceExecutionConfig"] = params["InferenceExecutionConfig"]
        for field in ("ExecutionRoleArn", "VpcConfig"):
            if field in params:
                record[field] = params[field]
        record["EnableNetworkIsolation"] = bool(params.get("EnableNetworkIsolation", False))
        self.store.models[key] = record
        self._tag(arn, params.get("Tags", []))
        self.store.save()
        return {"ModelArn": arn}

    async def _checked_container(self, model_name: str, definition: Record) -> Record:
        where = (
            f"Model {model_name}, container {definition.get('ContainerHostname') or definition.get('Image')}"
        )
        if definition.get("ModelPackageName"):
            raise ValidationException(
                f"{where}: ModelPackageName is not supported by the emulator; give Image."
            )
        if not definition.get("Image"):
            raise ValidationException(f"{where}: Image is required.")
        if definition.get("Mode", "SingleModel") != "SingleModel":
            raise ValidationException(
                f"{where}: Mode {definition['Mode']} is not supported by the emulator; use SingleModel."
            )
        if definition.get("ModelDataUrl") and definition.get("ModelDataSource"):
            raise ValidationException(f"{where}: give ModelDataUrl or ModelDataSource, not both.")
        if definition.get("ModelDataUrl") and not definition["ModelDataUrl"].startswith("s3://"):
            raise ValidationException(
                f"{where}: ModelDataUrl {definition['ModelDataUrl']} must be an s3:// URI of a .tar.gz."
            )
        source = (definition.get("ModelDataSource") or {}).get("S3DataSource")
        if definition.get("ModelDataSource") and not source:
            raise ValidationException(f"{where}: ModelDataSource needs S3DataSource.")
        if source:
            uri = source["S3Uri"]
            if not uri.startswith("s3://"):
                raise ValidationException(f"{where}: S3Uri {uri} must be an s3:// URI.")
            if source["S3DataType"] == "S3Prefix":
                if source["CompressionType"] != "None":
                    raise ValidationException(
                        f"{where}: S3DataType S3Prefix needs CompressionType None (uncompressed model "
                        "data); use S3DataType S3Object for a .tar.gz."
                    )
                if not uri.endswith("/"):
                    raise ValidationException(
                        f"{where}: S3Uri {uri} must end with '/' when S3DataType is S3Prefix."
                    )
        spec = ModelDataSpec.from_container(definition)
        if spec is not None and not await asyncio.to_thread(self.model_data.exists, spec):
            raise ValidationException(f"Could not find model data at {spec.s3_uri}.")
        present = await images.check_in_registry(self.http, definition["Image"])
        if present is False:
            raise ValidationException(f"Requested image {definition['Image']} not found.")
        checked = dict(definition)
        checked.setdefault("Mode", "SingleModel")
        return checked

    async def describe_model(self, params: Record) -> Record:
        return dict(self._model(params["ModelName"]))

    async def list_models(self, params: Record) -> Record:
        items = _listed(self.store.models.values(), params, "ModelName")
        page, token = _page(items, params)
        result: Record = {
            "Models": [{k: m[k] for k in ("ModelName", "ModelArn", "CreationTime")} for m in page]
        }
        if token:
            result["NextToken"] = token
        return result

    async def delete_model(self, params: Record) -> Record:
        model = self._model(params["ModelName"])
        del self.store.models[arns.key(model["ModelName"])]
        self.store.tags.pop(model["ModelArn"], None)
        self.store.save()
        return {}

    def _model(self, name: str) -> Record:
        model = self.store.models.get(arns.key(name))
        if model is None:
            raise _not_found("model", name)
        return model

    # -- endpoint configs -------------------------------------------------------------------------

    async def create_endpoint_config(self, params: Record) -> Record:
        name = params["EndpointConfigName"]
        key = arns.key(name)
        if key in self.store.endpoint_configs:
            raise _already_exists("endpoint-config", name)
        variants = [self._checked_variant(name, v) for v in params["ProductionVariants"]]
        names = [v["VariantName"] for v in variants]
        if len(names) != len(set(names)):
            raise ValidationException(
                f"Endpoint configuration {name}: VariantName values must be unique: {names}."
            )
        async_config = params.get("AsyncInferenceConfig")
        if async_config:
            self._check_async(name, async_config, variants)
        capture = params.get("DataCaptureConfig")
        if capture:
            self._check_capture(name, capture)
        frequency = (params.get("MetricsConfig") or {}).get("MetricPublishFrequencyInSeconds")
        if frequency is not None and frequency not in PUBLISH_FREQUENCIES_S:
            raise ValidationException(
                f"Endpoint configuration {name}: MetricsConfig.MetricPublishFrequencyInSeconds {frequency} "
                f"is not one of {', '.join(str(f) for f in PUBLISH_FREQUENCIES_S)}."
            )
        arn = arns.arn("endpoint-config", name)
        record: Record = {
            "EndpointConfigName": name,
            "EndpointConfigArn": arn,
            "ProductionVariants": variants,
            "CreationTime": time.time(),
        }
        for field in (
            "DataCaptureConfig",
            "AsyncInferenceConfig",
            "KmsKeyId",
            "ExplainerConfig",
            "ExecutionRoleArn",
            "VpcConfig",
            "EnableNetworkIsolation",
            "MetricsConfig",
        ):
            if field in params:
                record[field] = params[field]
        if params.get("ShadowProductionVariants"):
            raise ValidationException(
                f"Endpoint configuration {name}: ShadowProductionVariants are not supported by the emulator."
            )
        self.store.endpoint_configs[key] = record
        self._tag(arn, params.get("Tags", []))
        self.store.save()
        return {"EndpointConfigArn": arn}

    def _checked_variant(self, config_name: str, variant: Record) -> Record:
        where = f"Endpoint configuration {config_name}, production variant {variant['VariantName']}"
        if not variant.get("ModelName"):
            raise ValidationException(f"{where}: ModelName is required.")
        if arns.key(variant["ModelName"]) not in self.store.models:
            raise _not_found("model", variant["ModelName"])
        serverless = variant.get("ServerlessConfig")
        instance_fields = [f for f in ("InstanceType", "InitialInstanceCount") if variant.get(f) is not None]
        if serverless and instance_fields:
            raise ValidationException(
                f"{where}: a serverless variant (ServerlessConfig) cannot also set "
                f"{', '.join(instance_fields)}."
            )
        if not serverless and len(instance_fields) < 2:
            raise ValidationException(
                f"{where}: set InstanceType and InitialInstanceCount, or ServerlessConfig for a "
                "serverless variant."
            )
        if serverless:
            model = self.store.models[arns.key(variant["ModelName"])]
            refuse_model_data_source(model, "SageMaker Serverless Inference")
            memory = serverless["MemorySizeInMB"]
            if memory % 1024:
                raise ValidationException(
                    f"{where}: ServerlessConfig.MemorySizeInMB {memory} must be one of 1024, 2048, 3072, "
                    "4096, 5120, 6144."
                )
            provisioned = serverless.get("ProvisionedConcurrency")
            if provisioned is not None and provisioned > serverless["MaxConcurrency"]:
                raise ValidationException(
                    f"{where}: ServerlessConfig.ProvisionedConcurrency {provisioned} exceeds MaxConcurrency "
                    f"{serverless['MaxConcurrency']}."
                )
        checked = dict(variant)
        checked["InitialVariantWeight"] = float(variant.get("InitialVariantWeight", 1.0))
        return checked

    @staticmethod
    def _check_async(config_name: str, config: Record, variants: list[Record]) -> None:
        where = f"Endpoint configuration {config_name}, AsyncInferenceConfig"
        if any(v.get("ServerlessConfig") for v in variants):
            raise ValidationException(
                f"{where}: asynchronous inference is not available for serverless variants."
            )
        output = config["OutputConfig"]
        if not str(output.get("S3OutputPath", "")).startswith("s3://"):
            raise ValidationException(f"{where}: OutputConfig.S3OutputPath must be an s3:// URI.")
        failure = output.get("S3FailurePath")
        if failure is not None and not failure.startswith("s3://"):
            raise ValidationException(f"{where}: OutputConfig.S3FailurePath must be an s3:// URI.")
        for topic in ("SuccessTopic", "ErrorTopic"):
            value = (output.get("NotificationConfig") or {}).get(topic)
            if value is not None and not value.startswith("arn:aws:sns:"):
                raise ValidationException(
                    f"{where}: NotificationConfig.{topic} {value} is not an SNS topic ARN."
                )

    @staticmethod
    def _check_capture(config_name: str, capture: Record) -> None:
        where = f"Endpoint configuration {config_name}, DataCaptureConfig"
        if not capture["DestinationS3Uri"].startswith("s3://"):
            raise ValidationException(f"{where}: DestinationS3Uri must be an s3:// URI.")
        modes = [option["CaptureMode"] for option in capture["CaptureOptions"]]
        if len(modes) != len(set(modes)):
            raise ValidationException(f"{where}: CaptureOptions lists a CaptureMode twice: {modes}.")

    async def describe_endpoint_config(self, params: Record) -> Record:
        return dict(self._config(params["EndpointConfigName"]))

    async def list_endpoint_configs(self, params: Record) -> Record:
        items = _listed(self.store.endpoint_configs.values(), params, "EndpointConfigName")
        page, token = _page(items, params)
        fields = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")
        result: Record = {"EndpointConfigs": [{k: c[k] for k in fields} for c in page]}
        if token:
            result["NextToken"] = token
        return result

    async def delete_endpoint_config(self, params: Record) -> Record:
        config = self._config(params["EndpointConfigName"])
        del self.store.endpoint_configs[arns.key(config["EndpointConfigName"])]
        self.store.tags.pop(config["EndpointConfigArn"], None)
        self.store.save()
        return {}

    def _config(self, name: str) -> Record:
        config = self.store.endpoint_configs.get(arns.key(name))
        if config is None:
            raise _not_found("endpoint-config", name)
        return config

    # -- endpoints --------------------------------------------------------------------------------

    async def create_endpoint(self, params: Record) -> Record:
        name = params["EndpointName"]
        key = arns.key(name)
        if key in self.store.endpoints:
            raise _already_exists("endpoint", name)
        config = self._config(params["EndpointConfigName"])
        self._check_quota(config)
        arn = arns.arn("endpoint", name)
        created = time.time()
        record: Record = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": config["EndpointConfigName"],
            "EndpointStatus": "Creating",
            "CreationTime": created,
            "LastModifiedTime": created,
            **endpoint_fields_from_config(config),
        }
        if params.get("DeploymentConfig"):
            record["LastDeploymentConfig"] = params["DeploymentConfig"]
        self.store.endpoints[key] = record
        self._tag(arn, params.get("Tags", []))
        self.engine.start_create(key, json.loads(json.dumps(config)))
        return {"EndpointArn": arn}

    async def describe_endpoint(self, params: Record) -> Record:
        endpoint = self._endpoint(params["EndpointName"])
        return self.engine.describe(arns.key(endpoint["EndpointName"]))

    async def list_endpoints(self, params: Record) -> Record:
        items = [
            e
            for e in self.store.endpoints.values()
            if params.get("StatusEquals") in (None, e["EndpointStatus"])
        ]
        items = _listed(items, params, "EndpointName")
        page, token = _page(items, params)
        fields = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
        result: Record = {"Endpoints": [{k: e[k] for k in fields} for e in page]}
        if token:
            result["NextToken"] = token
        return result

    async def update_endpoint(self, params: Record) -> Record:
        endpoint = self._changeable(params["EndpointName"], "update")
        config = self._config(params["EndpointConfigName"])
        self._check_quota(config)
        retain = {
            "RetainAllVariantProperties": bool(params.get("RetainAllVariantProperties", False)),
            "ExcludeRetainedVariantProperties": params.get("ExcludeRetainedVariantProperties", []),
        }
        await self._check_scalable_variants(endpoint, config)
        deployment_config = params.get("DeploymentConfig")
        if deployment_config is None and params.get("RetainDeploymentConfig"):
            deployment_config = endpoint.get("LastDeploymentConfig")
        if deployment_config is not None:
            await guardrails.validate(deployment_config, config)
        self.engine.start_update(
            arns.key(endpoint["EndpointName"]), json.loads(json.dumps(config)), retain, deployment_config
        )
        return {"EndpointArn": endpoint["EndpointArn"]}

    async def _check_scalable_variants(self, endpoint: Record, config: Record) -> None:
        """SageMaker refuses an update that removes a variant registered for autoscaling or changes its
        instance type: the registration would point at capacity that no longer exists."""
        registered = await asyncio.to_thread(self.scalable_variants, str(endpoint["EndpointName"]))
        if not registered:
            return
        current = self.store.endpoint_configs.get(arns.key(str(endpoint["EndpointConfigName"]))) or {}
        before = {str(v["VariantName"]): v.get("InstanceType") for v in current.get("ProductionVariants", [])}
        after = {str(v["VariantName"]): v.get("InstanceType") for v in config["ProductionVariants"]}
        blocked = sorted(
            name
            for name in registered
            if name in before and (name not in after or after[name] != before[name])
        )
        if blocked:
            listed = ", ".join(blocked)
            raise ValidationException(
                f'The variant(s) "[{listed}]" must be deregistered as scalable targets with AWS Application '
                "Auto Scaling before they can be removed or have their instance type updated."
            )

    async def update_endpoint_weights_and_capacities(self, params: Record) -> Record:
        endpoint = self._changeable(params["EndpointName"], "update")
        key = arns.key(endpoint["EndpointName"])
        deployment = self.engine.primary(key)
        present = set(deployment.variants) if deployment else set()
        desired = params["DesiredWeightsAndCapacities"]
        missing = [d["VariantName"] for d in desired if d["VariantName"] not in present]
        if missing:
            raise ValidationException(
                f"The variant name(s) {missing} is/are not present in the endpoint "
                f'"{endpoint["EndpointArn"]}"; its variants are {sorted(present)}.'
            )
        for entry in desired:
            if entry.get("DesiredWeight") is None and entry.get("DesiredInstanceCount") is None:
                raise ValidationException(
                    f"Variant {entry['VariantName']}: give DesiredWeight, DesiredInstanceCount or both."
                )
            if entry.get("DesiredInstanceCount") == 0 and not endpoint.get("AsyncInferenceConfig"):
                # Only asynchronous endpoints keep their requests while no instance runs.
                raise ValidationException(
                    f"Variant {entry['VariantName']}: DesiredInstanceCount 0 is allowed only for an "
                    f'asynchronous endpoint (AsyncInferenceConfig); endpoint "{endpoint["EndpointArn"]}" '
                    "is real-time. Give DesiredInstanceCount 1 or more."
                )
        if deployment is not None:
            delta: dict[str, int] = {}
            for entry in desired:
                variant = deployment.variants[entry["VariantName"]]
                if variant.instance_type and entry.get("DesiredInstanceCount") is not None:
                    growth = int(entry["DesiredInstanceCount"]) - variant.desired_instances
                    delta[variant.instance_type] = delta.get(variant.instance_type, 0) + max(growth, 0)
            self._check_quota_delta(delta)
        self.engine.start_update_weights(key, desired)
        return {"EndpointArn": endpoint["EndpointArn"]}

    async def delete_endpoint(self, params: Record) -> Record:
        endpoint = self._endpoint(params["EndpointName"])
        status = endpoint["EndpointStatus"]
        if status in IN_PROGRESS:
            raise ValidationException(
                f'Cannot delete in-progress endpoint "{endpoint["EndpointArn"]}" (status {status}); '
                "wait until it is InService or Failed."
            )
        self.engine.start_delete(arns.key(endpoint["EndpointName"]))
        return {}

    def _endpoint(self, name: str) -> Record:
        endpoint = self.store.endpoints.get(arns.key(name))
        if endpoint is None:
            raise _not_found("endpoint", name)
        return endpoint

    def _changeable(self, name: str, action: str) -> Record:
        endpoint = self._endpoint(name)
        status = endpoint["EndpointStatus"]
        if status == "Failed":
            raise ValidationException(
                f'Cannot {action} failed endpoint "{endpoint["EndpointArn"]}": a Failed endpoint accepts '
                "only DeleteEndpoint."
            )
        if status != "InService":
            raise ValidationException(f'Cannot {action} in-progress endpoint "{endpoint["EndpointArn"]}".')
        return endpoint

    def _check_quota(self, config: Record) -> None:
        self._check_quota_delta(dict(config_instances(config)))

    def _check_quota_delta(self, delta: dict[str, int]) -> None:
        used = self.engine.instances_in_use()
        quota = self.engine.limits.instance_quota
        for instance_type, more in sorted(delta.items()):
            if more and used[instance_type] + more > quota:
                raise ResourceLimitExceeded(
                    f"The account-level service limit '{instance_type} for endpoint usage' is {quota} "
                    f"Instances, with current utilization of {used[instance_type]} Instances and a request "
                    f"delta of {more} Instances. Please use AWS Service Quotas to request an increase for "
                    "this quota. If AWS Service Quotas is not available, contact AWS support to request an "
                    "increase for this quota."
                )

    # -- tags -------------------------------------------------------------------------------------

    def _resource_exists(self, resource_arn: str) -> bool:
        parsed = arns.parse(resource_arn)
        if parsed is None:
            return False
        kind, name = parsed
        table = {
            "model": self.store.models,
            "endpoint-config": self.store.endpoint_configs,
            "endpoint": self.store.endpoints,
            "transform-job": self.store.transform_jobs,
        }.get(kind)
        return table is not None and name in table and table[name].get(_ARN_FIELD[kind]) == resource_arn

    def _tag(self, resource_arn: str, tags: list[Record]) -> None:
        current = {t["Key"]: t["Value"] for t in self.store.tags.get(resource_arn, [])}
        current.update({t["Key"]: t.get("Value", "") for t in tags})
        if len(current) > MAX_TAGS:
            raise ValidationException(
                f"Resource {resource_arn} would have {len(current)} tags; at most {MAX_TAGS} are allowed."
            )
        self.store.tags[resource_arn] = [{"Key": k, "Value": v} for k, v in current.items()]

    def _tagged(self, resource_arn: str) -> None:
        if not self._resource_exists(resource_arn):
            raise ValidationException(f"Resource {resource_arn} does not exist.")

    async def add_tags(self, params: Record) -> Record:
        self._tagged(params["ResourceArn"])
        self._tag(params["ResourceArn"], params["Tags"])
        self.store.save()
        return {"Tags": params["Tags"]}

    async def list_tags(self, params: Record) -> Record:
        self._tagged(params["ResourceArn"])
        page, token = _page(self.store.tags.get(params["ResourceArn"], []), params)
        result: Record = {"Tags": page}
        if token:
            result["NextToken"] = token
        return result

    async def delete_tags(self, params: Record) -> Record:
        self._tagged(params["ResourceArn"])
        drop = set(params["TagKeys"])
        tags = self.store.tags.get(params["ResourceArn"], [])
        self.store.tags[params["ResourceArn"]] = [t for t in tags if t["Key"] not in drop]
        self.store.save()
        return {}


_ARN_FIELD = {
    "model": "ModelArn",
    "endpoint-config": "EndpointConfigArn",
    "endpoint": "EndpointArn",
    "transform-job": "TransformJobArn",
}


def _listed(items: Any, params: Record, name_field: str) -> list[Record]:
    """Filter and sort as the List* operations do (default: newest first)."""
    selected = []
    for item in items:
        if params.get("NameContains") and params["NameContains"].lower() not in item[name_field].lower():
            continue
        if (
            params.get("CreationTimeBefore") is not None
            and not item["CreationTime"] < params["CreationTimeBefore"]
        ):
            continue
        if (
            params.get("CreationTimeAfter") is not None
            and not item["CreationTime"] > params["CreationTimeAfter"]
        ):
            continue
        modified = item.get("LastModifiedTime", item["CreationTime"])
        if (
            params.get("LastModifiedTimeBefore") is not None
            and not modified < params["LastModifiedTimeBefore"]
        ):
            continue
        if params.get("LastModifiedTimeAfter") is not None and not modified > params["LastModifiedTimeAfter"]:
            continue
        selected.append(item)
    sort_by = params.get("SortBy", "CreationTime")
    field = {"Name": name_field, "CreationTime": "CreationTime", "Status": "EndpointStatus"}[sort_by]
    descending = params.get("SortOrder", "Descending") == "Descending"
    return sorted(selected, key=lambda i: i[field], reverse=descending)


def _page(items: list[Any], params: Record) -> tuple[list[Any], str | None]:
    start = 0
    if params.get("NextToken"):
        try:
            start = int(base64.urlsafe_b64decode(params["NextToken"].encode()).decode())
        except ValueError as error:
            raise ValidationException(
                f"NextToken {params['NextToken']!r} is not a token this API gave out."
            ) from error
    size = int(params.get("MaxResults") or 10)
    page = items[start : start + size]
    more = start + size < len(items)
    token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None
    return page, token


def build_app(api: SageMakerApi) -> Starlette:
    async def dispatch(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        target = request.headers.get("x-amz-target", "")
        service, _, operation = target.partition(".")
        try:
            if service != "SageMaker" or not operation:
                raise UnknownOperation(f"X-Amz-Target {target!r} is not a SageMaker operation")
            raw = await request.body()
            try:
                params = json.loads(raw or b"{}")
            except ValueError as error:
                raise SerializationException(f"The request body is not JSON: {error}") from error
            result = await api.call(operation, params)
        except AwsError as error:
            return JSONResponse(
                error.body(),
                status_code=error.status,
                headers={"x-amzn-RequestId": request_id},
                media_type=JSON_CONTENT_TYPE,
            )
        except Exception:
            log.exception("SageMaker.%s failed inside the emulator", operation)
            failure = InternalFailure(
                f"SageMaker.{operation} failed inside the emulator; see .state/logs/sagemaker.log"
            )
            return JSONResponse(
                failure.body(),
                status_code=500,
                headers={"x-amzn-RequestId": request_id},
                media_type=JSON_CONTENT_TYPE,
            )
        return JSONResponse(result, headers={"x-amzn-RequestId": request_id}, media_type=JSON_CONTENT_TYPE)

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "service": "sagemaker",
                "endpoints": len(api.store.endpoints),
                "code_version": code_version(),
                "time_scale": api.engine.clock.scale,
            }
        )

    return Starlette(
        routes=[Route("/", dispatch, methods=["POST"]), Route("/_emulator/health", health, methods=["GET"])]
    )
