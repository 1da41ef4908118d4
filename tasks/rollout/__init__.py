"""The rollout: moving traffic to the new model by a strategy, under alarms. The plan (planning.py),
the runner (runner.py), the Prefect tasks the flow calls (traffic_shift.py), guard alarms (alarms.py),
bake traffic (bake_traffic.py) and per-step metrics (step_metrics.py).

May import: tasks.core, tasks.config, tasks.sagemaker, tasks.lifecycle (the ledger; retention for the
retire task) and tasks.checks.smoke (payload encoding).
"""
