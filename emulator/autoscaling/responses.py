"""Application Auto Scaling's JSON 1.1 API (`X-Amz-Target: AnyScaleFrontendService.<Operation>`).

Served on the SageMaker control plane's port (clients reach it through
AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING), in front of moto: each call is checked against botocore's
input shape and forwarded to moto as it came, and moto's answer goes back, except where moto falls
short of AWS:

* DescribeScalingActivities: moto has no such operation; the activities are the emulator's (models.py).
* PutScalingPolicy / DescribeScalingPolicies: moto lists no alarms for a SageMaker policy; the answer
  lists the target tracking alarms the emulator made and, for a step policy, the alarms that name it.
  PutScalingPolicy refuses a policy on a target that is not registered (ObjectNotFoundException) and a
  target tracking metric the emulator cannot evaluate, as AWS refuses what it cannot track.
* DeleteScalingPolicy deletes the policy's target tracking alarms; DeregisterScalableTarget deletes the
  target's policies (and their alarms) and its scheduled actions first, as AWS does and moto does not.
* PutScheduledAction refuses an action on a target that is not registered (ObjectNotFoundException),
  a schedule or time zone it cannot read and a MinCapacity above the MaxCapacity, as AWS does; moto
  stores the action and models.py runs it at its times.
* RegisterScalableTarget refuses MinCapacity 0 for a variant that is not asynchronous (only async
  endpoints can scale to zero instances) and a serverless variant (it has no instance count), for
  endpoints this emulator runs.
* DescribeScalableTargets: moto answers null for an absent SuspendedState and RoleARN; AWS always
  returns both (all three suspensions false; the service-linked role).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import botocore.session
import httpx
from botocore.model import ServiceModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator import settings
from emulator.autoscaling import policies, schedules
from emulator.autoscaling.exceptions import (
    InternalServiceException,
    InvalidNextTokenException,
    ObjectNotFoundException,
    SerializationException,
    UnknownOperation,
    ValidationException,
)
from emulator.autoscaling.models import AutoScaler
from emulator.sagemaker.exceptions import AwsError
from emulator.sagemaker.validation import validate_input

log = logging.getLogger("emulator.autoscaling.api")

TARGET_PREFIX = "AnyScaleFrontendService."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE_LINKED_ROLE = (
    f"arn:aws:iam::{settings.ACCOUNT_ID}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
NOT_SUSPENDED = {
    "DynamicScalingInSuspended": False,
    "DynamicScalingOutSuspended": False,
    "ScheduledScalingSuspended": False,
}

Answer = tuple[int, dict[str, Any]]


def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("application-autoscaling")


class AutoScalingApi:
    def __init__(
        self, scaler: AutoScaler, http: httpx.AsyncClient, model: ServiceModel, moto_url: str | None = None
    ) -> None:
        self.scaler = scaler
        self.http = http
        self.model = model
        self.moto_url = (moto_url or scaler.moto.url).rstrip("/")
        self.handlers: dict[str, Callable[[dict[str, Any], bytes, Mapping[str, str]], Awaitable[Answer]]] = {
            "DescribeScalingActivities": self.describe_scaling_activities,
            "RegisterScalableTarget": self.register_scalable_target,
            "DeregisterScalableTarget": self.deregister_scalable_target,
            "DescribeScalableTargets": self.describe_scalable_targets,
            "PutScalingPolicy": self.put_scaling_policy,
            "DescribeScalingPolicies": self.describe_scaling_policies,
            "DeleteScalingPolicy": self.delete_scaling_policy,
            "PutScheduledAction": self.put_scheduled_action,
        }

    async def call(self, operation: str, raw: bytes, headers: Mapping[str, str]) -> Answer:
        try:
            operation_model = self.model.operation_model(operation)
        except Exception:
            raise UnknownOperation(
                f"{operation} is not an Application Auto Scaling operation (X-Amz-Target "
                f"{TARGET_PREFIX}{operation})"
            ) from None
        try:
            params = json.loads(raw or b"{}")
        except ValueError as error:
            raise SerializationException(f"The request body is not JSON: {error}") from error
        validate_input(operation_model.input_shape, params)
        handler = self.handlers.get(operation)
        if handler is None:
            return await self._forward(operation, raw, headers)
        return await handler(params, raw, headers)

    # -- moto ---------------------------------------------------------------------------------------------

    async def _forward(self, operation: str, raw: bytes, headers: Mapping[str, str]) -> Answer:
        forwarded = {"X-Amz-Target": f"{TARGET_PREFIX}{operation}", "Content-Type": JSON_CONTENT_TYPE}
        for name in ("authorization", "x-amz-date", "x-amz-security-token"):
            if name in headers:
                forwarded[name] = headers[name]
        try:
            response = await self.http.post(
                f"{self.moto_url}/", content=raw or b"{}", headers=forwarded, timeout=30
            )
        except httpx.HTTPError as error:
            raise InternalServiceException(
                f"moto at {self.moto_url} (AWS_ENDPOINT_URL) did not answer {operation}: {error}; "
                "start it with `python -m emulator up`"
            ) from error
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {"__type": "InternalServiceException", "message": response.text[:500]}
        return response.status_code, _without_nulls(body)

    async def _forwarded_ok(
        self, operation: str, params: Mapping[str, Any], headers: Mapping[str, str]
    ) -> Answer:
        return await self._forward(operation, json.dumps(params).encode(), headers)

    # -- handlers -------------------------------------------------------------------------------------------

    async def describe_scaling_activities(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        found = self.scaler.describe(
            params["ServiceNamespace"], params.get("ResourceId"), params.get("ScalableDimension")
        )
        page, token = _page(found, params)
        answer: dict[str, Any] = {"ScalingActivities": page}
        if token:
            answer["NextToken"] = token
        return 200, answer

    async def register_scalable_target(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        self._check_variant_target(params)
        _check_bounds(params)
        answer = await self._forward("RegisterScalableTarget", raw, headers)
        if answer[0] == 200:
            self.scaler.poke()
        return answer

    def _check_variant_target(self, params: Mapping[str, Any]) -> None:
        if (
            params.get("ServiceNamespace") != policies.NAMESPACE
            or params.get("ScalableDimension") != policies.DIMENSION
        ):
            return
        rid = str(params["ResourceId"])
        parsed = policies.parse_resource_id(rid)
        if parsed is None:
            raise ValidationException(
                f"ResourceId {rid!r} is not a SageMaker variant; give "
                "endpoint/<endpoint name>/variant/<variant name>."
            )
        endpoint, variant = parsed
        if not self.scaler.hosting.endpoint_exists(endpoint):
            return  # another emulator sharing moto may run it; AWS would look it up, we cannot
        state = self.scaler.hosting.variant(endpoint, variant)
        if state is None:
            raise ValidationException(
                f"The variant {variant} of endpoint {endpoint} does not exist (ResourceId {rid}); register a "
                "variant DescribeEndpoint lists."
            )
        if state.serverless:
            raise ValidationException(
                f"Variant {variant} of endpoint {endpoint} is serverless: it has no DesiredInstanceCount "
                f"to scale ({policies.DIMENSION}); register an instance-based variant instead."
            )
        if params.get("MinCapacity") == 0 and not state.asynchronous:
            raise ValidationException(
                "MinCapacity 0 is allowed only for a variant of an asynchronous endpoint; endpoint "
                f"{endpoint} is real-time. Register it with MinCapacity 1 or more."
            )

    async def deregister_scalable_target(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        rid = str(params["ResourceId"])
        if (
            params.get("ServiceNamespace") == policies.NAMESPACE
            and params.get("ScalableDimension") == policies.DIMENSION
        ):
            for policy in await asyncio.to_thread(self.scaler.moto.policies, rid):
                await asyncio.to_thread(self.scaler.moto.delete_policy, policy)
                await asyncio.to_thread(self.scaler.delete_tracking_alarms, str(policy["PolicyARN"]))
            for action in await asyncio.to_thread(self.scaler.moto.scheduled_actions, rid):
                await asyncio.to_thread(self.scaler.moto.delete_scheduled_action, action)
        answer = await self._forward("DeregisterScalableTarget", raw, headers)
        if answer[0] == 200:
            self.scaler.forget(rid)
        return answer

    async def describe_scalable_targets(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        status, body = await self._forward("DescribeScalableTargets", raw, headers)
        if status == 200:
            for target in body.get("ScalableTargets", []):
                target["SuspendedState"] = {**NOT_SUSPENDED, **(target.get("SuspendedState") or {})}
                if not target.get("RoleARN"):
                    target["RoleARN"] = SERVICE_LINKED_ROLE
        return status, body

    async def put_scaling_policy(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        variant_policy = (
            params.get("ServiceNamespace") == policies.NAMESPACE
            and params.get("ScalableDimension") == policies.DIMENSION
        )
        before: list[dict[str, Any]] = []
        if variant_policy:
            await self._check_policy(params)
            before = await self._named_policy(params)
        status, body = await self._forward("PutScalingPolicy", raw, headers)
        if status != 200 or not variant_policy:
            return status, body
        stored = await self._named_policy(params)
        # moto gives an updated policy a new ARN (AWS keeps it): the old ARN's alarms go with it.
        for old in before:
            if not stored or old["PolicyARN"] != stored[0]["PolicyARN"]:
                await asyncio.to_thread(self.scaler.delete_tracking_alarms, str(old["PolicyARN"]))
        alarms: list[dict[str, Any]] = []
        if stored and stored[0].get("PolicyType") == "TargetTrackingScaling":
            alarms = await asyncio.to_thread(self.scaler.ensure_tracking_alarms, stored[0])
        elif stored:
            await asyncio.to_thread(self.scaler.delete_tracking_alarms, str(stored[0]["PolicyARN"]))
        self.scaler.poke()
        body["Alarms"] = [{"AlarmName": a["AlarmName"], "AlarmARN": a["AlarmArn"]} for a in alarms]
        return status, body

    async def put_scheduled_action(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        if (
            params.get("ServiceNamespace") == policies.NAMESPACE
            and params.get("ScalableDimension") == policies.DIMENSION
        ):
            await self._registered(str(params["ResourceId"]))
            _check_scheduled_action(params)
        return await self._forward("PutScheduledAction", raw, headers)

    async def _registered(self, rid: str) -> None:
        """ObjectNotFoundException, as AWS answers, when no scalable target is registered at `rid`."""
        targets = await asyncio.to_thread(self.scaler.moto.targets)
        if not any(t["ResourceId"] == rid for t in targets):
            raise ObjectNotFoundException(
                f"No scalable target registered for service namespace: {policies.NAMESPACE}, "
                f"resource ID: {rid}, scalable dimension: {policies.DIMENSION}; call "
                "RegisterScalableTarget first."
            )

    async def _named_policy(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(self.scaler.moto.policies, str(params["ResourceId"]))
        return [p for p in found if p["PolicyName"] == params["PolicyName"]]

    async def _check_policy(self, params: Mapping[str, Any]) -> None:
        rid = str(params["ResourceId"])
        await self._registered(rid)
        kind = params.get("PolicyType") or "StepScaling"
        if kind == "TargetTrackingScaling":
            config = params.get("TargetTrackingScalingPolicyConfiguration")
            if not config:
                raise ValidationException(
                    "PolicyType TargetTrackingScaling needs TargetTrackingScalingPolicyConfiguration."
                )
            parsed = policies.parse_resource_id(rid)
            assert parsed is not None  # a registered variant target has this form
            try:
                policies.tracked_metric(config, *parsed)
            except policies.PolicyProblem as problem:
                raise ValidationException(f"TargetTrackingScalingPolicyConfiguration: {problem}.") from None
        elif kind == "StepScaling":
            config = params.get("StepScalingPolicyConfiguration") or {}
            if not config.get("StepAdjustments"):
                raise ValidationException(
                    "StepScalingPolicyConfiguration.StepAdjustments needs at least one step adjustment."
                )
        else:
            raise ValidationException(
                f"PolicyType {kind} is not supported for a SageMaker variant by the emulator; use "
                "TargetTrackingScaling or StepScaling."
            )

    async def describe_scaling_policies(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        status, body = await self._forward("DescribeScalingPolicies", raw, headers)
        if status != 200:
            return status, body
        for policy in body.get("ScalingPolicies", []):
            named = await asyncio.to_thread(self.scaler.moto.alarms, ActionPrefix=str(policy["PolicyARN"]))
            policy["Alarms"] = [
                {"AlarmName": a["AlarmName"], "AlarmARN": a["AlarmArn"]}
                for a in named
                if policies.acts_for(a, str(policy["PolicyARN"]))
            ]
        return status, body

    async def delete_scaling_policy(
        self, params: dict[str, Any], raw: bytes, headers: Mapping[str, str]
    ) -> Answer:
        before = (
            await self._named_policy(params) if params.get("ScalableDimension") == policies.DIMENSION else []
        )
        answer = await self._forward("DeleteScalingPolicy", raw, headers)
        if answer[0] == 200:
            for policy in before:
                await asyncio.to_thread(self.scaler.delete_tracking_alarms, str(policy["PolicyARN"]))
        return answer


def _check_scheduled_action(params: Mapping[str, Any]) -> None:
    """What AWS refuses in a scheduled action: a schedule or time zone it cannot read, a window that ends
    before it starts, a MinCapacity above the MaxCapacity."""
    try:
        if "Schedule" in params:
            schedules.parse(str(params["Schedule"]))
        schedules.zone(params.get("Timezone"))
    except schedules.ScheduleError as error:
        raise ValidationException(str(error)) from None
    start, end = params.get("StartTime"), params.get("EndTime")
    if start is not None and end is not None and float(start) >= float(end):
        raise ValidationException("EndTime must be after StartTime.")
    _check_bounds(params.get("ScalableTargetAction") or {}, where="ScalableTargetAction ")


def _check_bounds(bounds: Mapping[str, Any], where: str = "") -> None:
    low, high = bounds.get("MinCapacity"), bounds.get("MaxCapacity")
    if low is not None and high is not None and low > high:
        raise ValidationException(
            f"{where}MinCapacity {low} is greater than MaxCapacity {high}; give a MinCapacity no greater "
            "than MaxCapacity."
        )


def _without_nulls(value: Any) -> Any:
    """moto answers absent members as null; AWS leaves them out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _page(items: list[Any], params: Mapping[str, Any]) -> tuple[list[Any], str | None]:
    start = 0
    if params.get("NextToken"):
        try:
            start = int(base64.urlsafe_b64decode(str(params["NextToken"]).encode()).decode())
        except ValueError as error:
            raise InvalidNextTokenException(
                f"NextToken {params['NextToken']!r} is not a token this API gave out; start again without it."
            ) from error
    size = int(params.get("MaxResults") or 50)
    page = items[start : start + size]
    more = start + size < len(items)
    return page, base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None


def is_autoscaling_request(headers: Mapping[str, str]) -> bool:
    return headers.get("x-amz-target", "").startswith(TARGET_PREFIX)


async def handle(api: AutoScalingApi, request: Request) -> Response:
    """Answer one Application Auto Scaling request (the control plane's dispatcher sends it here)."""
    request_id = str(uuid.uuid4())
    operation = request.headers.get("x-amz-target", "").removeprefix(TARGET_PREFIX)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        status, body = await api.call(operation, await request.body(), headers)
    except AwsError as error:
        status, body = error.status, error.body()
    except Exception:
        log.exception("ApplicationAutoScaling.%s failed inside the emulator", operation)
        failure = InternalServiceException(
            f"ApplicationAutoScaling.{operation} failed inside the emulator; see .state/logs/sagemaker.log"
        )
        status, body = failure.status, failure.body()
    return JSONResponse(
        body, status_code=status, headers={"x-amzn-RequestId": request_id}, media_type=JSON_CONTENT_TYPE
    )
