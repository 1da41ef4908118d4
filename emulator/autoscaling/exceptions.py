"""Application Auto Scaling's errors, as its JSON 1.1 API answers them (`__type` and `message`)."""

from __future__ import annotations

from emulator.sagemaker.exceptions import AwsError


class ValidationException(AwsError):
    code = "ValidationException"
    status = 400


class ObjectNotFoundException(AwsError):
    code = "ObjectNotFoundException"
    status = 400


class InvalidNextTokenException(AwsError):
    code = "InvalidNextTokenException"
    status = 400


class UnknownOperation(AwsError):
    code = "UnknownOperationException"
    status = 400


class SerializationException(AwsError):
    code = "SerializationException"
    status = 400


class InternalServiceException(AwsError):
    code = "InternalServiceException"
    status = 500
