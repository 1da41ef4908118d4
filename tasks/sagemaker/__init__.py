"""SageMaker hosting and Application Auto Scaling: the endpoint steps as Prefect tasks (deploy.py), the
calls (hosting.py), the requests built from the config (endpoint_spec.py), scaling (scaling.py), and
what the account's endpoints use now (in_use.py). Meant to be the only room holding SageMaker and
Application Auto Scaling clients (ARCHITECTURE.md lists the SageMaker clients still built elsewhere).

May import: tasks.core, tasks.config, and tasks.lifecycle's ledger, kinds and ownership.
"""
