"""SageMaker ARNs and resource keys as AWS forms them.

SageMaker lower-cases the name inside an ARN and treats names case-insensitively, so resources are
keyed by the lower-cased name while Describe still answers with the name as the caller spelled it.
"""

from __future__ import annotations

from emulator import settings

KINDS = {
    "model": "model",
    "endpoint-config": "endpoint configuration",
    "endpoint": "endpoint",
    "transform-job": "transform job",
}


def key(name: str) -> str:
    return name.lower()


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{settings.region()}:{settings.ACCOUNT_ID}:{kind}/{name.lower()}"


def parse(resource_arn: str) -> tuple[str, str] | None:
    """(kind, lower-cased name) of a SageMaker ARN, or None when it is not one of ours."""
    parts = resource_arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sagemaker" or "/" not in parts[5]:
        return None
    kind, _, name = parts[5].partition("/")
    return kind, name


def log_group(endpoint_name: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint_name}"


def log_stream_arn(endpoint_name: str) -> str:
    return f"arn:aws:logs:{settings.region()}:{settings.ACCOUNT_ID}:log-group:{log_group(endpoint_name)}"
