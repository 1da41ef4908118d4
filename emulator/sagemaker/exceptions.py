"""AWS-shaped errors: the code, HTTP status and message a real SageMaker service answers with.

Handlers raise these; the protocol layer turns them into the JSON 1.1 (control plane) or rest-json
(runtime) error body botocore parses into `ClientError` with the same `Error.Code` as on AWS.
Anything else that escapes a handler is an emulator bug and becomes a 500, never a 400.
"""

from __future__ import annotations

from typing import Any


class AwsError(Exception):
    code = "InternalFailure"
    status = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields  # extra members of the modeled error shape (e.g. ModelError)

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message, "Message": self.message, **self.fields}


# --- SageMaker control plane (JSON 1.1) ---------------------------------------------------------
# The hosting operations answer a missing or duplicate model/config/endpoint with ValidationException
# ("Could not find endpoint …", "Cannot create already existing …"); ResourceNotFound and ResourceInUse
# belong to other SageMaker APIs, and botocore's model lists only ResourceLimitExceeded for these.


class ValidationException(AwsError):
    code = "ValidationException"
    status = 400


class ResourceLimitExceeded(AwsError):
    code = "ResourceLimitExceeded"
    status = 400


class UnknownOperation(AwsError):
    code = "UnknownOperationException"
    status = 400


class SerializationException(AwsError):
    code = "SerializationException"
    status = 400


# --- SageMaker Runtime (rest-json) --------------------------------------------------------------


class RuntimeValidationError(AwsError):
    code = "ValidationError"
    status = 400


class ModelError(AwsError):
    code = "ModelError"
    status = 424


class ThrottlingException(AwsError):
    """A serverless variant at its MaxConcurrency; SageMaker answers 400 with this code."""

    code = "ThrottlingException"
    status = 400


class ServiceUnavailable(AwsError):
    code = "ServiceUnavailable"
    status = 503


class InternalFailure(AwsError):
    code = "InternalFailure"
    status = 500
