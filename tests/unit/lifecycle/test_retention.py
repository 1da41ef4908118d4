"""Retiring older releases of an endpoint after a successful one; the previous release stays."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from tasks.config import StorageConfig
from tasks.lifecycle.retention import delete_unkept_releases
from tests.unit.rollout_fakes import FakeSageMaker, release_tags, sagemaker_double, variant

ENDPOINT = "demo-embedder"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, mocked_aws: None) -> Iterator[FakeSageMaker]:
    double = FakeSageMaker()
    for release in ("r1", "r2", "r3"):
        double.add_config(f"demo-embedder-{release}", variant(f"model-{release}"), release_tags(release))
        double.model_tags[f"model-{release}"] = release_tags(release)
    double.add_config("demo-embedder-r0", variant("model-shared"), release_tags("r0"))
    double.add_config("hand-made-config", variant("model-shared"))
    double.model_tags["model-shared"] = []  # not ours: never deleted
    double.add_endpoint(ENDPOINT, "demo-embedder-r3")
    with sagemaker_double(monkeypatch, double):
        yield double


def test_older_releases_go_and_the_previous_one_stays(fake: FakeSageMaker) -> None:
    retired = delete_unkept_releases(ENDPOINT, "r3", previous_config="demo-embedder-r2", keep_previous=True)
    assert retired.failed == ()
    assert list(retired.deleted) == [
        "endpoint config demo-embedder-r1",
        "endpoint config demo-embedder-r0",
        "model model-r1",
    ]
    assert set(fake.configs) == {"demo-embedder-r2", "demo-embedder-r3", "hand-made-config"}
    assert fake.deleted_models == {"model-r1"}


def test_without_keep_previous_only_the_serving_release_stays(fake: FakeSageMaker) -> None:
    delete_unkept_releases(ENDPOINT, "r3", previous_config="demo-embedder-r2", keep_previous=False)
    assert set(fake.configs) == {"demo-embedder-r3", "hand-made-config"}
    assert fake.deleted_models == {"model-r1", "model-r2"}


def test_a_failed_delete_is_reported_not_raised(fake: FakeSageMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    real_delete = fake.delete_endpoint_config

    def refuse_r1(**params: object) -> dict[str, object]:
        if params["EndpointConfigName"] == "demo-embedder-r1":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Delete")
        return real_delete(**params)

    monkeypatch.setattr(fake, "delete_endpoint_config", refuse_r1)
    retired = delete_unkept_releases(ENDPOINT, "r3", previous_config="demo-embedder-r2", keep_previous=True)
    assert "endpoint config demo-embedder-r0" in retired.deleted
    assert len(retired.failed) == 1 and retired.failed[0].startswith(
        "endpoint config demo-embedder-r1: ClientError"
    )


def test_retired_releases_drop_their_model_data_references(fake: FakeSageMaker) -> None:
    storage = StorageConfig.model_validate({"bucket": "models", "prefix": "team/sr"})
    boto3.client("s3").create_bucket(Bucket="models")
    for release in ("r1", "r2", "r3"):
        digest = f"{release}digest"
        fake.model_data[f"model-{release}"] = f"s3://models/team/sr/models/{digest}/model.tar.gz"
        boto3.client("s3").put_object(Bucket="models", Key=f"team/sr/model-refs/{digest}/{release}", Body=b"")
    retired = delete_unkept_releases(
        ENDPOINT, "r3", previous_config="demo-embedder-r2", keep_previous=True, storage=storage
    )
    assert "model data reference r1digest/r1" in retired.deleted
    listed = boto3.client("s3").list_objects_v2(Bucket="models", Prefix="team/sr/model-refs/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "team/sr/model-refs/r2digest/r2",
        "team/sr/model-refs/r3digest/r3",
    ]
