"""The SageMaker control plane, as moto splits an emulated service.

responses.py (the JSON 1.1 API: one handler per operation, validation from botocore's service model in
validation.py), endpoints.py (the endpoint lifecycle engine), deployments.py (what runs behind an
endpoint and how requests are routed), guardrails.py (blue/green updates, rollback on alarms),
transform_jobs.py, models.py (a model's containers, and the ModelDataSource refusals), store.py (persisted
resources), arns.py, exceptions.py (AWS-shaped errors),
capacity.py (a variant's instance count as Application Auto Scaling reads and sets it), metrics_config.py
(how often a fleet's invocation metrics are published).

May import: emulator.settings, emulator.clock, emulator.fleet (containers, images, model data),
emulator.cloudwatch (alarm states for guardrails). Never tasks/ or flows/.
"""
