"""SageMaker hosting and Application Auto Scaling: the endpoint steps as Prefect tasks (deploy.py), the
calls that change things (hosting.py), the reads other rooms need (lookup.py), the requests built from
the config (endpoint_spec.py), scaling (scaling.py), and what the account's endpoints use now
(in_use.py). The only room holding SageMaker and Application Auto Scaling clients
(tests/unit/test_boundaries.py checks it).

May import: tasks.core, tasks.config, tasks.image.image_name (image URIs are read through it), and
tasks.lifecycle's ledger, kinds and ownership.
"""
