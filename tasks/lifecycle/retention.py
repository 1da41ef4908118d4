"""After a successful rollout: retire what older releases of the endpoint left behind.

The endpoint keeps the release that now serves and, with `rollout.keep_previous` (the default), the
release it replaced, so that `python -m flows.rollback ENDPOINT` is one UpdateEndpoint away. Endpoint
configs of older releases of the same endpoint (found by their release tags) are deleted, with the
models only they use, and their references to model data and to images. Model data in S3 and images
in ECR stay: they are content-addressed and may be shared by releases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from tasks.artifact import model_refs
from tasks.config import StorageConfig, naming
from tasks.core import aws
from tasks.core.logs import run_logger
from tasks.image import image_refs
from tasks.image.image_name import ImageName
from tasks.lifecycle.rollback import ReleaseConfigRef, release_configs
from tasks.sagemaker import hosting, lookup


def _models_of(config_name: str) -> set[str]:
    try:
        described = lookup.endpoint_config(config_name)
    except Exception as exc:
        if aws.is_not_found(exc):
            return set()
        raise
    return {str(v["ModelName"]) for v in described["ProductionVariants"]}


def _is_ours(model_name: str, endpoint: str) -> bool:
    try:
        arn = str(lookup.model(model_name)["ModelArn"])
    except Exception as exc:
        if aws.is_not_found(exc):
            return False
        raise
    tags = lookup.tags(arn)
    return (
        tags.get(naming.MANAGED_BY_KEY) == naming.MANAGED_BY_VALUE
        and tags.get(naming.ENDPOINT_KEY) == endpoint
    )


@dataclass(frozen=True)
class Retired:
    """What the retention removed, and what it could not (never raised: the release succeeded)."""

    deleted: tuple[str, ...]
    failed: tuple[str, ...]


def delete_unkept_releases(
    endpoint: str,
    release_id: str,
    *,
    previous_config: str | None,
    keep_previous: bool,
    storage: StorageConfig | None = None,
) -> Retired:
    """Delete the configs (and their own models) of releases older than the ones kept, and, given the
    `storage` their model data is in, those releases' references to it and to their images
    (tasks/artifact/model_refs.py, tasks/image/image_refs.py).

    Call it once the release has succeeded: with keep_previous False it deletes the config an unwind
    would put the endpoint back on.
    """
    serving = str(lookup.endpoint(endpoint)["EndpointConfigName"])
    keep = {serving}
    if keep_previous and previous_config:
        keep.add(previous_config)
    refs = release_configs(endpoint)
    retired = [ref.name for ref in refs if ref.name not in keep and ref.release_id != release_id]
    kept_models: set[str] = set().union(*(_models_of(name) for name in keep))
    doomed_models: set[str] = set().union(*(_models_of(name) for name in retired)) - kept_models
    # Read before the models go: which model data each retired release referenced.
    held = _held_refs(storage, [ref for ref in refs if ref.name in retired]) if storage else []
    deleted: list[str] = []
    failed: list[str] = []
    for what, call in [
        *((f"endpoint config {name}", _deleter(config=name)) for name in retired),
        *(
            (f"model {model}", _deleter(model=model))
            for model in sorted(doomed_models)
            if _is_ours(model, endpoint)
        ),
        *held,
    ]:
        try:
            call()
        except Exception as exc:
            if aws.is_not_found(exc):
                continue
            failed.append(f"{what}: {type(exc).__name__}: {exc}")
            continue
        deleted.append(what)
    log = run_logger()
    if deleted:
        log.info("retired older releases of %s: %s", endpoint, ", ".join(deleted))
    for failure in failed:
        log.warning("could not retire %s; fix: delete it by hand or rerun the release", failure)
    return Retired(tuple(deleted), tuple(failed))


def _held_refs(
    storage: StorageConfig, retired: list[ReleaseConfigRef]
) -> list[tuple[str, Callable[[], object]]]:
    """(what, delete) for the model data and image references of each retired release."""
    found: dict[tuple[str, str], None] = {}
    images: dict[tuple[str, str, str], None] = {}
    for ref in retired:
        if ref.release_id is None:
            continue
        for model in _models_of(ref.name):
            containers = _containers(model)
            for data in map(hosting.model_data_of, containers):
                digest = naming.model_digest(storage.prefix, data.url) if data is not None else None
                if digest is not None:
                    found[(digest, ref.release_id)] = None
            for container in containers:
                name = ImageName.parse(str(container.get("Image", "")))
                if name.is_ecr and name.tag is not None:
                    images[(name.repository, name.tag, ref.release_id)] = None
    return [
        *(
            (f"model data reference {digest[:12]}/{rid}", partial(model_refs.drop, storage, digest, rid))
            for digest, rid in found
        ),
        *(
            (f"image reference {repo}:{tag}/{rid}", partial(image_refs.drop, storage, repo, tag, rid))
            for repo, tag, rid in images
        ),
    ]


def _containers(model_name: str) -> list[dict[str, Any]]:
    try:
        described = lookup.model(model_name)
    except Exception as exc:
        if aws.is_not_found(exc):
            return []
        raise
    return [dict(c) for c in (described.get("PrimaryContainer"), *described.get("Containers", [])) if c]


def _deleter(*, config: str | None = None, model: str | None = None) -> Callable[[], object]:
    if config is not None:
        return partial(hosting.delete_endpoint_config, config)
    assert model is not None, "_deleter needs config or model"
    return partial(hosting.delete_model, model)
