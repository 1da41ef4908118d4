"""Application Auto Scaling that acts: the local stack scales endpoints by their policies.

moto keeps the API's storage (targets, policies); this room adds what it lacks, moto-style:
responses.py serves the API on the SageMaker control plane's port in front of moto (clients reach it
through AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING) and serves DescribeScalingActivities itself;
models.py is the acting side (target tracking's own CloudWatch alarms, step policies fired by the
alarms that name them, cooldowns, min/max, SuspendedState, activities run through
UpdateEndpointWeightsAndCapacities); policies.py holds the arithmetic, pure; exceptions.py its
AWS-shaped errors.

May import: emulator.settings, emulator.clock, emulator.sagemaker.exceptions and .validation (AWS-shaped
errors, input checks from botocore's model). The endpoints and the alarm evaluator reach it only through
the Protocols in models.py (server.py hands it the emulator's). Never tasks/ or flows/.
"""
