"""Rules of the config's validators, written out as JSON schema so the release form refuses what the flow
would refuse.

Prefect stores a deployment's parameter schema and validates every run's parameters against it (the UI's
form before it submits, the server when a run is created), so a rule in the schema stops a bad config
before a worker picks it up. Pydantic's schema carries the per-field bounds; the rules here are the ones
a validator checks (tasks/config/sections.py), attached with `json_schema_extra`.

They use `oneOf` and `if`/`then`/`else`, which the Prefect UI does not draw as form widgets (it draws
`anyOf` as a choice of alternatives) but validates with the whole schema, so the form keeps its fields.
The validators stay the authority: they also name the fix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, get_args

from tasks.config.guardrails import GUARDRAIL_STRATEGIES, RolloutStrategy
from tasks.config.metric_timing import HIGH_RESOLUTION_PERIODS_S, STANDARD_PERIOD_S

# ModelSourceConfig._one_source: a Hub repo or a local folder, not both and not neither. (Each property a
# rule names carries a description too: every property of the form has one.)
ONE_MODEL_SOURCE: dict[str, Any] = {
    "oneOf": [
        {
            "title": "Hub repo",
            "required": ["repo_id"],
            "properties": {"repo_id": {"type": "string", "description": "The model comes from the Hub."}},
        },
        {
            "title": "Local folder",
            "required": ["local_path"],
            "properties": {
                "local_path": {"type": "string", "description": "The model comes from a local folder."}
            },
        },
    ]
}

# SmokeConfig.payloads' default_factory, which pydantic leaves out of the schema: shown so the form starts
# from it (a unit test holds the two equal).
SMOKE_PAYLOADS_DEFAULT: dict[str, Any] = {
    "default": [{"inputs": "The quick brown fox jumps over the lazy dog."}]
}

# AlarmsConfig._periods: CloudWatch takes 10, 30 or a multiple of 60 seconds.
ALARM_PERIOD: dict[str, Any] = {
    "oneOf": [
        {"enum": list(HIGH_RESOLUTION_PERIODS_S)},
        {"minimum": STANDARD_PERIOD_S, "multipleOf": STANDARD_PERIOD_S},
    ]
}

# ServerlessConfig._ranges.
SERVERLESS_MEMORY: dict[str, Any] = {"minimum": 1024, "maximum": 6144, "multipleOf": 1024}
SERVERLESS_CONCURRENCY: dict[str, Any] = {"minimum": 1, "maximum": 200}

# ImageConfig._source_fields: image_uri is given with source prebuilt, and only then.
IMAGE_URI_WITH_PREBUILT: dict[str, Any] = {
    "if": {
        "required": ["source"],
        "properties": {"source": {"const": "prebuilt", "description": "A prebuilt image."}},
    },
    "then": {
        "required": ["image_uri"],
        "properties": {"image_uri": {"type": "string", "description": "A prebuilt image has its URI."}},
    },
    "else": {
        "properties": {"image_uri": {"type": "null", "description": "Other sources have no image URI."}}
    },
}


def _when_type(endpoint_type: str, then: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {
            "required": ["type"],
            "properties": {"type": {"const": endpoint_type, "description": f"A {endpoint_type} endpoint."}},
        },
        "then": then,
    }


def _section_means_type(section: str, endpoint_type: str) -> dict[str, Any]:
    return {
        "if": {
            "required": [section],
            "properties": {section: {"type": "object", "description": f"The {section} settings are set."}},
        },
        "then": {
            "properties": {
                "type": {"const": endpoint_type, "description": f"They belong to a {endpoint_type} endpoint."}
            }
        },
    }


def _s3_paths(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(names),
        "properties": {
            name: {"type": "string", "description": f"Where the {name.replace('_', ' ')} is in S3."}
            for name in names
        },
        "description": "The settings of this endpoint type.",
    }


# EndpointConfig._type_sections: an async endpoint has its output path, a batch job its input and output
# paths, and a type's section is set only for that type.
ENDPOINT_TYPE_SECTIONS: dict[str, Any] = {
    "allOf": [
        _when_type(
            "async",
            {"required": ["async_inference"], "properties": {"async_inference": _s3_paths("output_path")}},
        ),
        _when_type(
            "batch",
            {"required": ["batch"], "properties": {"batch": _s3_paths("input_path", "output_path")}},
        ),
        _section_means_type("serverless", "serverless"),
        _section_means_type("async_inference", "async"),
        _section_means_type("batch", "batch"),
    ]
}

# RolloutConfig._approval_needs_own_steps: manual approval holds the traffic in a step the release takes
# itself; SageMaker moves a canary, a linear shift or all at once by itself.
APPROVAL_NEEDS_OWN_STEPS: dict[str, Any] = {
    "if": {
        "required": ["approval"],
        "properties": {"approval": {"const": "manual", "description": "Manual approval."}},
    },
    "then": {
        "properties": {
            "strategy": {
                "enum": [s for s in get_args(RolloutStrategy) if s not in GUARDRAIL_STRATEGIES],
                "description": "A strategy whose steps the release takes itself.",
            }
        }
    },
}


def schema_extra(rule: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` adding `rule` to a schema: a copy each time, since whoever reads a generated
    schema may change it in place (Prefect rewrites schemas it stores) and must not change the rule."""

    def add(schema: dict[str, Any]) -> None:
        schema.update(copy.deepcopy(rule))

    return add
