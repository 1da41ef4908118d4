"""SageMaker Runtime: InvokeEndpoint (responses.py), InvokeEndpointAsync's queue (async_inference.py),
the measurements every invocation leaves (invocations.py) for CloudWatch, and the async queues'
backlog readings once per metric period (queue_metrics.py).

May import: emulator.settings, emulator.clock, emulator.sagemaker (endpoints and their routing),
emulator.fleet (the HTTP hop to the containers). Never tasks/ or flows/.
"""
