"""The serving image: the context-hash tag and the docker build (build.py), credentials, push and manifests
per registry host (registry.py), the ECR repository and its digests (ecr.py), Hugging Face DLC URIs
(dlc.py), the release's `build-image` and `push-image` tasks (release_image.py), references that keep
shared images alive (image_refs.py), and the one parser of image URIs (image_name.py, which imports nothing
of the rest: tasks.sagemaker.in_use and tasks.lifecycle read image URIs through it).

May import: tasks.core, tasks.config, tasks.artifact.model_refs (the reference objects images share
with model data), and tasks.lifecycle's ledger, kinds and ownership.
"""
