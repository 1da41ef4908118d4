"""The serving image: tag from the context hash, build, push to ECR or the local registry, prebuilt and
Hugging Face DLC URIs (build.py), and references that keep shared images alive (image_refs.py).

May import: tasks.core, tasks.config, tasks.artifact.model_refs (the reference objects images share
with model data), and tasks.lifecycle's ledger, kinds and ownership.
"""
