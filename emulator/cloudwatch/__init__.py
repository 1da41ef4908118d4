"""CloudWatch behaviour moto lacks, on top of moto's CloudWatch API: SageMaker's endpoint metrics
published from real invocations (metrics.py), alarms evaluated as CloudWatch does (rules.py decides,
alarms.py reads and sets), wired together in monitoring.py; periodic.py runs the loops.

May import: emulator.settings, emulator.clock (periods and intervals at a time scale),
emulator.runtime.invocations (the raw measurements). Never tasks/ or flows/.
"""
