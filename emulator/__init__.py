"""The local AWS stack for sagemaker-release.

Real servers speaking the real protocols, so unchanged boto3 code (the release flow, or a user's own
notebook) runs with no AWS account and no internet: a Docker Engine, an OCI registry standing in for
ECR, moto's server, a SageMaker + SageMaker Runtime emulator that runs the real serving container, and
a Hub-compatible file server. `python -m emulator up | down | env | status` manages it.

Rooms by service, as moto and LocalStack lay out theirs: sagemaker/ (the control plane), runtime/
(invocations), cloudwatch/ (metrics and alarms moto does not evaluate), autoscaling/ (Application Auto
Scaling's acting side, in front of moto's API), fleet/ (Docker: containers, images, model data), hub/
(the Hugging Face Hub file server), stack/ (up, down, env, status of every part); server.py wires the
SageMaker process together, settings.py holds the fixed addresses and limits, clock.py the one clock
(EMULATOR_TIME_SCALE) that metrics, alarms, queues and autoscaling run on.

Nothing in flows/ or tasks/ imports this package, and it imports nothing of theirs (`make lint` checks
both, and the rooms' own boundaries, with import-linter).
"""
