"""The serving image: the context-hash tag and the docker build (build.py), credentials, push and manifests
per registry host (registry.py), the ECR repository and its digests (ecr.py), Hugging Face DLC URIs
(dlc.py), the release's `build-image` and `push-image` tasks (release_image.py), and references that keep
shared images alive (image_refs.py).

May import: tasks.core, tasks.config, tasks.artifact.model_refs (the reference objects images share
with model data), and tasks.lifecycle's ledger, kinds and ownership.
"""
