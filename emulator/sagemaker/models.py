"""A model as CreateModel stored it: its containers, and the model data sources SageMaker serves.

CreateModel keeps either PrimaryContainer (one container) or Containers (a serial pipeline); whoever
reads a model's containers reads them here. ModelDataSource (uncompressed S3 model data) is served by
instance-backed endpoints only: serverless endpoints and batch transform refuse it in AWS's words.
"""

from __future__ import annotations

from typing import Any

from emulator.sagemaker.exceptions import ValidationException
from emulator.sagemaker.store import Record


def model_containers(model: Record) -> list[dict[str, Any]]:
    """The model's container definitions, in order: PrimaryContainer alone, or Containers."""
    if "PrimaryContainer" in model:
        return [model["PrimaryContainer"]]
    return list(model.get("Containers", []))


def uses_model_data_source(model: Record) -> bool:
    """True when a container of the model takes its model data from ModelDataSource."""
    return any(container.get("ModelDataSource") for container in model_containers(model))


def refuse_model_data_source(model: Record, feature: str) -> None:
    """ValidationException, as `feature` (e.g. "SageMaker Batch") words it, for a model using
    ModelDataSource."""
    if uses_model_data_source(model):
        raise ValidationException(
            f"{feature} currently doesn't support Model entity with container definitions which use "
            "ModelDataSource attribute."
        )
