"""The judgements around the endpoint change: preflight (preflight.py: what the live endpoint allows,
decided before anything is created) and the smoke test of the new model (smoke.py).

May import: tasks.core, tasks.config, tasks.lifecycle (the ledger), tasks.image (BuildKit check),
tasks.sagemaker and tasks.rollout (preflight plans the rollout).
"""
