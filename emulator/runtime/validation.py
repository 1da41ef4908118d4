"""SageMaker Runtime's input rules, from botocore's sagemaker-runtime model, for requests that carry
their members in HTTP headers.

The control plane's JSON bodies are validated by emulator/sagemaker/validation.py; here the members an
operation takes from headers (and the endpoint name from the path) are gathered into the same
parameters botocore would have serialized, and held to the same shapes: ranges such as
InvokeEndpointAsync's RequestTTLSeconds 60-21600, lengths and patterns. The runtime answers
ValidationError (its model's error), not the control plane's ValidationException.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel

from emulator.sagemaker.exceptions import RuntimeValidationError, SerializationException, ValidationException
from emulator.sagemaker.validation import validate_input


@cache
def _operation(name: str) -> OperationModel:
    return botocore.session.get_session().get_service_model("sagemaker-runtime").operation_model(name)


def check_request(operation: str, headers: Mapping[str, str], path_params: Mapping[str, str]) -> None:
    """Raise RuntimeValidationError listing every constraint the request's header and path members break."""
    shape = _operation(operation).input_shape
    sources: dict[str, Mapping[str, str]] = {"header": headers, "uri": path_params}
    params: dict[str, Any] = {}
    for member, member_shape in shape.members.items():
        name = member_shape.serialization.get("name", member)
        raw = sources.get(member_shape.serialization.get("location", ""), {}).get(name)
        if raw is None:
            continue
        if member_shape.type_name == "integer":
            try:
                params[member] = int(raw)
            except ValueError:
                raise RuntimeValidationError(f"Value '{raw}' of header {name} is not an integer") from None
        else:
            params[member] = raw
    try:
        validate_input(shape, params)
    except (ValidationException, SerializationException) as refused:
        raise RuntimeValidationError(refused.message) from None
