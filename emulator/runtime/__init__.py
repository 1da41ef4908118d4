"""SageMaker Runtime: InvokeEndpoint (responses.py), InvokeEndpointAsync's queue (async_inference.py),
and the measurements every invocation leaves (invocations.py) for CloudWatch.

May import: emulator.settings, emulator.sagemaker (endpoints and their routing), emulator.fleet (the
HTTP hop to the containers). Never tasks/ or flows/.
"""
