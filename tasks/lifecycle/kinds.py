"""The kinds of ledger entry: what a release can create, each undone by its deleter.

Shared by the tasks that record (tasks/lifecycle/ledger.py), the deleters that unwind
(tasks/lifecycle/unwind.py) and the owner lookups (tasks/lifecycle/ownership.py).
"""

from __future__ import annotations

S3_OBJECT = "s3:object"
S3_PREFIX = "s3:prefix"
ECR_REPOSITORY = "ecr:repository"
ECR_IMAGE = "ecr:image"
SAGEMAKER_MODEL = "sagemaker:model"
SAGEMAKER_ENDPOINT_CONFIG = "sagemaker:endpoint-config"
SAGEMAKER_ENDPOINT = "sagemaker:endpoint"
AUTOSCALING_TARGET = "autoscaling:target"
AUTOSCALING_POLICY = "autoscaling:policy"
CLOUDWATCH_ALARM = "cloudwatch:alarm"
SNS_TOPIC = "sns:topic"
SAGEMAKER_TRANSFORM_JOB = "sagemaker:transform-job"
KINDS = frozenset(
    {
        S3_OBJECT,
        S3_PREFIX,
        ECR_REPOSITORY,
        ECR_IMAGE,
        SAGEMAKER_MODEL,
        SAGEMAKER_ENDPOINT_CONFIG,
        SAGEMAKER_ENDPOINT,
        AUTOSCALING_TARGET,
        AUTOSCALING_POLICY,
        CLOUDWATCH_ALARM,
        SNS_TOPIC,
        SAGEMAKER_TRANSFORM_JOB,
    }
)
