"""Hugging Face deep learning container (DLC) image URIs, from the SageMaker SDK's tables."""

from __future__ import annotations


def huggingface_image_uri(
    *,
    region: str,
    transformers_version: str,
    pytorch_version: str,
    py_version: str,
    instance_type: str | None,
) -> str:
    """A Hugging Face inference DLC from the SageMaker SDK's image URI tables (no network needed)."""
    from sagemaker.core import image_uris

    return str(
        image_uris.retrieve(
            "huggingface",
            region=region,
            version=transformers_version,
            base_framework_version=f"pytorch{pytorch_version}",
            py_version=py_version,
            instance_type=instance_type,
            image_scope="inference",
        )
    )
