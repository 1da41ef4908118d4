"""The Docker side of the emulator: serving containers sized as SageMaker sizes them (containers.py,
instance_types.py), images resolved from ECR URIs to the local registry (images.py), model data fetched
from S3 and unpacked member by member (model_data.py, archives.py), and the HTTP hop to a container
(container_http.py).

May import: emulator.settings only (and emulator.sagemaker.exceptions for AWS-shaped errors). Never
tasks/ or flows/.
"""
