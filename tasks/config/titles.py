"""The labels of the config's fields in forms: words, not Python names.

Prefect renders the config's JSON schema as the release form and shows each field's `title` as its
label; pydantic's own titles are the field names capitalised word by word ("Max 5Xx Errors", "Bake S").
`field_title` reads a name as words instead: units as units ("Bake time (s)", "Memory (MB)"), acronyms in
capitals ("Role ARN"), sentence case. Names that read badly that way are spelt out in `TITLES`; a field
added later still gets a title that reads, from the rules.
"""

from __future__ import annotations

import re
from typing import Any

# The labels of sections the form offers as choices (an optional section is "this or nothing").
MODEL_TITLES: dict[str, str] = {"HuggingFaceDlcConfig": "Hugging Face DLC", "ReleaseConfig": "Release config"}

# Names whose words alone would mislead or read badly; every other name follows the rules below.
TITLES: dict[str, str] = {
    "repo_id": "Hub repo ID",
    "local_path": "Local folder",
    "token_env": "Hub token variable",
    "task": "Pipeline task",
    "format": "Packaging format",
    "threads": "Compression threads",
    "bucket": "S3 bucket",
    "prefix": "Key prefix",
    "source": "Image source",
    "context": "Build context",
    "build_args": "Build arguments",
    "repository": "ECR repository",
    "huggingface_dlc": "Hugging Face DLC",
    "py_version": "Python version",
    "pytorch_version": "PyTorch version",
    "name": "Endpoint name",
    "type": "Endpoint type",
    "async_inference": "Async inference",
    "batch": "Batch transform",
    "multipart_threshold_mb": "Multipart threshold (MiB)",
    "multipart_chunk_mb": "Multipart part size (MiB)",
    "max_concurrency": "Max concurrency",
    "scale_in_cooldown_s": "Scale-in cooldown (s)",
    "scale_out_cooldown_s": "Scale-out cooldown (s)",
    "scale_from_zero": "Scale from zero",
    "smoke": "Smoke test",
    "repeat": "Repeats",
    "expect_status": "Expected status",
    "expect_non_null": "No empty or null answers",
    "expect_shape": "Expected shape",
    "expect_dim": "Expected last dimension",
    "timeout_s": "Timeout per request (s)",
    "alarms": "Rollback alarms",
    "period_s": "Alarm period (s)",
    "rate_per_s": "Requests per second",
    "duration_s": "Traffic per bake (s)",
    "steps": "Traffic steps (%)",
    "bake_s": "Bake time (s)",
    "final_bake_s": "Final bake time (s)",
    "keep_previous": "Keep the previous release",
    "endpoint_s": "Endpoint create or update (s)",
    "transform_job_s": "Batch transform job (s)",
    "download_s": "Model download (s)",
    "upload_s": "Model upload (s)",
    "timeouts": "Time limits",
    "secret": "Secret reference",
}

_ACRONYMS = {"id": "ID", "arn": "ARN", "uri": "URI", "s3": "S3", "sns": "SNS", "dlc": "DLC", "ecr": "ECR"}
_UNITS = {"s": "(s)", "ms": "(ms)", "mb": "(MB)", "percent": "(%)"}


def field_title(name: str, _field: Any = None) -> str:
    """The label of the field `name`: "max_5xx_errors" -> "Max 5xx errors", "bake_s" -> "Bake time (s)".

    The signature is pydantic's `field_title_generator` (the field's info is not needed)."""
    if name in TITLES:
        return TITLES[name]
    words = name.split("_")
    unit = _UNITS.get(words[-1]) if len(words) > 1 else None
    if unit is not None:
        words = words[:-1]
    shown = [_ACRONYMS.get(word, word) for word in words]
    shown[0] = shown[0][:1].upper() + shown[0][1:]
    return " ".join(shown + ([unit] if unit else []))


def model_title(model: type) -> str:
    """The label of a section: "ModelSourceConfig" -> "Model source" (pydantic's `model_title_generator`)."""
    name = model.__name__
    if name in MODEL_TITLES:
        return MODEL_TITLES[name]
    words = re.findall(r"[A-Z][a-z0-9]*", name.removesuffix("Config")) or [name]
    return " ".join([words[0], *(word.lower() for word in words[1:])])
