from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from tasks.artifact.model_source import ModelSnapshot
from tasks.artifact.packaging import ModelArtifact, build_artifact
from tasks.artifact.storage import ensure_bucket, store_artifact
from tasks.config import PackagingConfig, StorageConfig
from tasks.core.errors import ConfigError
from tasks.lifecycle import unwind
from tasks.lifecycle.ledger import Ledger, LedgerEntry, LocalLedgerStore

BUCKET = "models-bucket"


def _storage(**overrides: object) -> StorageConfig:
    return StorageConfig.model_validate({"bucket": BUCKET, "prefix": "team/sr", **overrides})


def _ledger(tmp_path: Path, release_id: str = "r1") -> Ledger:
    return Ledger.open(LocalLedgerStore(tmp_path / f"{release_id}.json"), release_id)


def _data_entries(ledger: Ledger) -> list[LedgerEntry]:
    """The ledger's model data entries, without the release's reference to them."""
    return [e for e in ledger.entries if "/model-refs/" not in e.resource_id]


def _artifact(tmp_path: Path, fmt: str, files: dict[str, bytes]) -> ModelArtifact:
    root = tmp_path / "model"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    snapshot = ModelSnapshot(str(root), tuple(sorted(files)), sum(map(len, files.values())))
    return build_artifact(snapshot, PackagingConfig.model_validate({"format": fmt}), tmp_path / "packages")


FILES = {"config.json": b"{}", "model.safetensors": os.urandom(1 << 20), "sub/tokenizer.json": b"{}"}


def test_missing_bucket_is_a_config_error_unless_creation_is_allowed(mocked_aws: None) -> None:
    with pytest.raises(ConfigError) as caught:
        ensure_bucket(_storage())
    assert caught.value.field == "storage.bucket" and "create_bucket: true" in caught.value.fix
    assert ensure_bucket(_storage(create_bucket=True)) is True
    assert ensure_bucket(_storage(create_bucket=True)) is False
    assert ensure_bucket(_storage()) is False


def test_tar_gz_goes_to_a_content_addressed_key_once(mocked_aws: None, tmp_path: Path) -> None:
    ensure_bucket(_storage(create_bucket=True))
    artifact = _artifact(tmp_path, "tar.gz", FILES)
    first_ledger = _ledger(tmp_path, "r1")
    first = store_artifact(artifact, _storage(), first_ledger)
    key = f"team/sr/models/{artifact.digest}/model.tar.gz"
    assert first.model_data_url == f"s3://{BUCKET}/{key}"
    assert first.compression == "Gzip" and first.uploaded_bytes == artifact.size_bytes
    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"]["sha256"] == artifact.digest and head["ContentLength"] == artifact.size_bytes
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
    assert tags == {"managed-by": "sagemaker-release", "release-id": "r1"}
    ref = f"team/sr/model-refs/{artifact.digest}/r1"
    assert [(e.kind, e.resource_id, e.attrs["key"]) for e in first_ledger.entries] == [
        ("s3:object", f"s3://{BUCKET}/{ref}", ref),
        ("s3:object", f"s3://{BUCKET}/{key}", key),
    ]

    second_ledger = _ledger(tmp_path, "r2")
    second = store_artifact(artifact, _storage(), second_ledger)
    assert second.uploaded_bytes == 0 and second.skipped_objects == 1
    assert second.model_data_url == first.model_data_url
    assert _data_entries(second_ledger) == [], "an object from an earlier release must not join this ledger"
    assert [e.resource_id for e in second_ledger.entries] == [
        f"s3://{BUCKET}/team/sr/model-refs/{artifact.digest}/r2"
    ], "only its reference to the shared object"


def test_an_object_with_another_checksum_is_replaced(mocked_aws: None, tmp_path: Path) -> None:
    ensure_bucket(_storage(create_bucket=True))
    artifact = _artifact(tmp_path, "tar.gz", FILES)
    key = f"team/sr/models/{artifact.digest}/model.tar.gz"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"truncated", Metadata={"sha256": "0" * 64})
    uploaded = store_artifact(artifact, _storage(), _ledger(tmp_path))
    assert uploaded.uploaded_bytes == artifact.size_bytes
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == Path(artifact.path).read_bytes()


def test_large_files_go_up_in_parts_with_progress(mocked_aws: None, tmp_path: Path) -> None:
    ensure_bucket(_storage(create_bucket=True))
    big = {"model.safetensors": os.urandom(12 << 20)}
    artifact = _artifact(tmp_path, "s3_prefix", big)
    seen: list[int] = []
    storage = _storage(multipart_threshold_mb=5, multipart_chunk_mb=5, max_concurrency=4)
    uploaded = store_artifact(artifact, storage, _ledger(tmp_path), on_progress=seen.append)
    assert sum(seen) == 12 << 20 and len(seen) >= 3
    key = f"team/sr/models/{artifact.digest}/model.safetensors"
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key=key)
    assert head["ETag"].strip('"').endswith("-3"), "a 12 MiB file in 5 MiB parts is a 3-part upload"
    assert boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read() == big["model.safetensors"]
    assert uploaded.uploaded_bytes == 12 << 20


def test_prefix_layout_uploads_files_as_they_are(mocked_aws: None, tmp_path: Path) -> None:
    ensure_bucket(_storage(create_bucket=True))
    artifact = _artifact(tmp_path, "s3_prefix", FILES)
    ledger = _ledger(tmp_path)
    uploaded = store_artifact(artifact, _storage(), ledger)
    prefix = f"team/sr/models/{artifact.digest}/"
    assert uploaded.model_data_url == f"s3://{BUCKET}/{prefix}" and uploaded.compression == "None"
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    assert sorted(o["Key"][len(prefix) :] for o in listed) == sorted(FILES)
    assert uploaded.uploaded_bytes == sum(map(len, FILES.values()))
    refs = f"team/sr/model-refs/{artifact.digest}/"
    assert [(e.kind, e.attrs) for e in _data_entries(ledger)] == [
        ("s3:prefix", {"bucket": BUCKET, "prefix": prefix, "refs_prefix": refs, "own_ref": refs + "r1"})
    ]
    assert store_artifact(artifact, _storage(), _ledger(tmp_path, "r2")).uploaded_bytes == 0


def test_partly_present_prefix_records_only_what_this_release_wrote(mocked_aws: None, tmp_path: Path) -> None:
    ensure_bucket(_storage(create_bucket=True))
    artifact = _artifact(tmp_path, "s3_prefix", FILES)
    prefix = f"team/sr/models/{artifact.digest}/"
    config_sha = next(d.sha256 for d in artifact.file_digests if d.path == "config.json")
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=prefix + "config.json", Body=b"{}", Metadata={"sha256": config_sha}
    )
    ledger = _ledger(tmp_path)
    uploaded = store_artifact(artifact, _storage(), ledger)
    assert uploaded.skipped_objects == 1 and uploaded.uploaded_objects == 2
    assert uploaded.uploaded_bytes == len(FILES["model.safetensors"]) + len(FILES["sub/tokenizer.json"])
    assert sorted(e.attrs["key"] for e in _data_entries(ledger)) == [
        prefix + "model.safetensors",
        prefix + "sub/tokenizer.json",
    ]
    assert {e.kind for e in ledger.entries} == {"s3:object"}


@pytest.mark.parametrize("fmt", ["tar.gz", "s3_prefix"])
def test_a_failed_release_keeps_model_data_another_release_uses(
    mocked_aws: None, tmp_path: Path, fmt: str
) -> None:
    """Two releases of one model (staging and production at the same hour): the first uploads, the
    second finds the data there; the first fails. Its unwind must not pull the data from under the
    second."""
    ensure_bucket(_storage(create_bucket=True))
    artifact = _artifact(tmp_path, fmt, FILES)
    keep = unwind.keep_in_use(None)
    uploader, reuser = _ledger(tmp_path, "r1"), _ledger(tmp_path, "r2")
    uploaded = store_artifact(artifact, _storage(), uploader)
    assert store_artifact(artifact, _storage(), reuser).uploaded_bytes == 0

    uploader.unwind(unwind.deleters(), keep)
    data_prefix = uploaded.model_data_url.removeprefix(f"s3://{BUCKET}/").removesuffix("model.tar.gz")
    s3 = boto3.client("s3")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=data_prefix).get("Contents", [])]
    assert len(left) == (1 if fmt == "tar.gz" else len(FILES)), "the other release's model data is gone"
    assert {e.status for e in _data_entries(uploader)} == {"kept"}
    refs = f"team/sr/model-refs/{artifact.digest}/"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=refs)["Contents"]] == [refs + "r2"]

    # The second release fails too: its reference goes. The data stays where the next release of the
    # same files finds it (a kept entry is settled); no reference to it is left behind.
    reuser.unwind(unwind.deleters(), keep)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=refs).get("KeyCount", 0) == 0
    assert store_artifact(artifact, _storage(), _ledger(tmp_path, "r3")).uploaded_bytes == 0
