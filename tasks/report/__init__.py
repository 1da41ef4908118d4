"""What a release tells its people: the JSON summary and the Prefect markdown artifact (summary.py),
the rollout as a table and an SVG chart (rollout_chart.py), the release's Prefect event (events.py),
and a fleet of releases as one table (fleet.py). Builds no AWS client.

May import: tasks.config, tasks.lifecycle (the ledger), tasks.checks (smoke results) and tasks.rollout
(the rollout report).
"""
