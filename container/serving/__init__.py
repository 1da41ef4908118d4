"""The serving container's model server (SageMaker hosting contract)."""
