"""The local AWS stack for sagemaker-release.

Real servers speaking the real protocols, so unchanged boto3 code (the release flow, or a user's own
notebook) runs with no AWS account and no internet: a Docker Engine, an OCI registry standing in for
ECR, moto's server, a SageMaker + SageMaker Runtime emulator that runs the real serving container, and
a Hub-compatible file server. `python -m emulator up | down | env | status` manages it.

Nothing in flows/ or tasks/ imports this package.
"""
