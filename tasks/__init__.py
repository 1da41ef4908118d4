"""The steps of a release, in rooms by concern: core, config, artifact, image, sagemaker, rollout,
lifecycle, checks, report (ARCHITECTURE.md has one line per module and the words they use).

flows/ calls these; they never import flows/ or emulator/, and reach AWS only through boto3 clients
from tasks/core/aws.py, so the same code runs against AWS and the local stack.
"""
