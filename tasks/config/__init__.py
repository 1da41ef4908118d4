"""The release configuration: the typed model loaded from YAML or flow parameters, resource names, keys
and tags (naming.py), secret references and masking (secret_values.py), and the generated configuration
reference page (reference.py).

The model is split by concern: fields.py (reusable string checks and field types), sections.py (one
model per section), release.py (`ReleaseConfig` and its checks across sections), loading.py (YAML,
overrides, local folders), issues.py (validation errors as config issues). Callers import the model from
this package: `from tasks.config import ReleaseConfig, load_config`. Modules inside the package import
each other by module, never this package, so importing it stays free of cycles.

May import: tasks.core only.
"""

from tasks.config.fields import (
    MAX_ENVIRONMENT_VALUE,
    PREFECT_SECRET_PREFIX,
    SENSITIVE_FIELDS,
    SecretReference,
    ValueKind,
    check_value,
    is_burstable,
    is_sensitive,
    shown_value,
    split_s3_uri,
)
from tasks.config.guardrails import GUARDRAIL_STRATEGIES, RolloutStrategy
from tasks.config.issues import config_issues
from tasks.config.loading import (
    MAX_ALIAS_EXPANSION,
    MAX_CONFIG_BYTES,
    check_local_folders,
    config_files,
    load_config,
    load_yaml,
    parse_config,
    parse_override,
)
from tasks.config.release import ReleaseConfig, secret_references
from tasks.config.sections import (
    BASE_IMAGE_ENV,
    DEFAULT_BASE_IMAGE,
    AlarmsConfig,
    Approval,
    AsyncInferenceConfig,
    BakeTrafficConfig,
    BatchTransformConfig,
    EndpointConfig,
    HuggingFaceDlcConfig,
    ImageConfig,
    ModelSourceConfig,
    PackagingConfig,
    RolloutConfig,
    ScalingConfig,
    ServerlessConfig,
    SmokeConfig,
    StorageConfig,
    TimeoutsConfig,
)

__all__ = [
    "BASE_IMAGE_ENV",
    "DEFAULT_BASE_IMAGE",
    "GUARDRAIL_STRATEGIES",
    "MAX_ALIAS_EXPANSION",
    "MAX_CONFIG_BYTES",
    "MAX_ENVIRONMENT_VALUE",
    "PREFECT_SECRET_PREFIX",
    "SENSITIVE_FIELDS",
    "AlarmsConfig",
    "Approval",
    "AsyncInferenceConfig",
    "BakeTrafficConfig",
    "BatchTransformConfig",
    "EndpointConfig",
    "HuggingFaceDlcConfig",
    "ImageConfig",
    "ModelSourceConfig",
    "PackagingConfig",
    "ReleaseConfig",
    "RolloutConfig",
    "RolloutStrategy",
    "ScalingConfig",
    "SecretReference",
    "ServerlessConfig",
    "SmokeConfig",
    "StorageConfig",
    "TimeoutsConfig",
    "ValueKind",
    "check_local_folders",
    "check_value",
    "config_files",
    "config_issues",
    "is_burstable",
    "is_sensitive",
    "load_config",
    "load_yaml",
    "parse_config",
    "parse_override",
    "secret_references",
    "shown_value",
    "split_s3_uri",
]
