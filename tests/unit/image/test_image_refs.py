"""Shared images: references (tasks/image/image_refs.py) and live models keep an image and its repository
through another release's unwind; an image nobody uses still goes (moto in-process)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from tasks.artifact import model_refs
from tasks.config import StorageConfig, naming
from tasks.core.errors import ResourceFailed
from tasks.image import build, ecr, image_refs, release_image
from tasks.image.registry import MANIFEST_MEDIA_TYPES
from tasks.lifecycle import unwind
from tasks.lifecycle.kinds import ECR_IMAGE, ECR_REPOSITORY
from tasks.lifecycle.ledger import Ledger, LedgerEntry, LocalLedgerStore
from tasks.lifecycle.retention import delete_unkept_releases
from tests.unit.deploy_helpers import ROLE, kinds

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPOSITORY = "team/serving"
TAG = "0123456789ab"
STORAGE = StorageConfig.model_validate({"bucket": "models", "prefix": "sr"})
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPES[0], "layers": []})


def _ledger(tmp_path: Path, release_id: str) -> Ledger:
    return Ledger.open(
        LocalLedgerStore(tmp_path / f"{release_id}.json"),
        release_id,
        deleters=unwind.deleters(endpoint_timeout_s=5, poll_interval_s=0.1),
    )


def _push(repository: str = REPOSITORY, tag: str = TAG) -> str:
    """The image as a push leaves it in ECR; returns its digest."""
    ecr = boto3.client("ecr")
    answer = ecr.put_image(repositoryName=repository, imageManifest=MANIFEST, imageTag=tag)
    return str(answer["image"]["imageId"]["imageDigest"])


def _pusher(tmp_path: Path, release_id: str = "r-pusher") -> Ledger:
    """A release that referenced the tag, created the repository and pushed the image, in that order
    (as tasks/image/release_image.py does); nothing else."""
    ledger = _ledger(tmp_path, release_id)
    held = image_refs.hold(STORAGE, REPOSITORY, TAG, ledger)
    repository = ecr.ensure_repository(REPOSITORY, [], ledger, held=held)
    assert repository.created
    digest = _push()
    ledger.record(
        ECR_IMAGE,
        f"{REPOSITORY}:{TAG}",
        repository=REPOSITORY,
        tag=TAG,
        digest=digest,
        **held.image_attrs(),
    )
    return ledger


def _serve(endpoint: str, image_uri: str) -> None:
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName=f"{endpoint}-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": image_uri}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{endpoint}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{endpoint}-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-config")


def _images() -> list[str]:
    return [
        i.get("imageTag", "") for i in boto3.client("ecr").list_images(repositoryName=REPOSITORY)["imageIds"]
    ]


def _repositories() -> list[str]:
    return [r["repositoryName"] for r in boto3.client("ecr").describe_repositories()["repositories"]]


def _refs() -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=STORAGE.bucket, Prefix="sr/image-refs/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
def bucket(mocked_aws: None) -> None:
    boto3.client("s3").create_bucket(Bucket=STORAGE.bucket)


def test_a_built_image_is_referenced_before_it_is_looked_up(bucket: None, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    tag = build.context_tag(context, "base:1")
    boto3.client("ecr").create_repository(repositoryName=REPOSITORY)
    _push(tag=tag)
    ledger = _ledger(tmp_path, "r1")

    class NoDocker:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"docker was used ({name}) although the image is in ECR")

    served = release_image.build_and_push(
        context=context,
        base_image="base:1",
        repository_name=REPOSITORY,
        tags=[],
        ledger=ledger,
        client=NoDocker(),
        storage=STORAGE,
    )
    assert not served.pushed
    key = f"sr/image-refs/{REPOSITORY}:{tag}/r1"
    assert kinds(ledger) == [("s3:object", f"s3://models/{key}")]
    assert _refs() == [key]
    tagging = boto3.client("s3").get_object_tagging(Bucket="models", Key=key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tagging}[naming.RELEASE_ID_KEY] == "r1"
    # Nothing deployed (the endpoint already served it): the reference goes with the model data's.
    model_refs.drop_own(ledger)
    assert _refs() == []


def test_the_pushers_unwind_keeps_an_image_another_release_references(bucket: None, tmp_path: Path) -> None:
    pusher = _pusher(tmp_path)
    other = _ledger(tmp_path, "r-other")
    image_refs.hold(STORAGE, REPOSITORY, TAG, other)  # found the tag in ECR: no push, no image entry
    pusher.unwind(keep=unwind.keep_in_use("pusher-endpoint"))
    statuses = {e.kind: e.status for e in pusher.entries if e.kind != "s3:object"}
    assert statuses == {ECR_IMAGE: "kept", ECR_REPOSITORY: "kept"}
    assert _images() == [TAG] and REPOSITORY in _repositories()
    assert _refs() == [f"sr/image-refs/{REPOSITORY}:{TAG}/r-other"]  # the pusher's own reference went


def test_the_pushers_unwind_keeps_an_image_a_live_model_names_without_any_reference(
    bucket: None, tmp_path: Path
) -> None:
    pusher = _pusher(tmp_path)
    # Another endpoint serves the image, released by a release whose references are in another bucket.
    _serve("survivor", f"{HOST}/{REPOSITORY}:{TAG}")
    pusher.unwind(keep=unwind.keep_in_use("pusher-endpoint"))
    assert [e.status for e in pusher.entries if e.kind in (ECR_IMAGE, ECR_REPOSITORY)] == ["kept", "kept"]
    assert _images() == [TAG]


def test_an_image_nobody_uses_goes_with_the_repository_its_release_created(
    bucket: None, tmp_path: Path
) -> None:
    pusher = _pusher(tmp_path)
    _serve("elsewhere", f"{HOST}/other-repository:{TAG}")  # same tag, another repository: unrelated
    pusher.unwind(keep=unwind.keep_in_use("pusher-endpoint"))
    assert {e.status for e in pusher.entries} == {"deleted"}
    assert REPOSITORY not in _repositories() and _refs() == []


def test_a_repository_holding_another_releases_image_is_kept(bucket: None, tmp_path: Path) -> None:
    pusher = _pusher(tmp_path)
    _push(tag="another-context")  # pushed by a release that found the repository already there
    pusher.unwind(keep=unwind.keep_in_use(None))
    by_kind = {e.kind: e.status for e in pusher.entries if e.kind != "s3:object"}
    assert by_kind == {ECR_IMAGE: "deleted", ECR_REPOSITORY: "kept"}
    assert _images() == ["another-context"]


def test_a_repository_whose_other_tag_is_referenced_is_kept_even_when_empty(
    bucket: None, tmp_path: Path
) -> None:
    pusher = _pusher(tmp_path)
    # Another release referenced another tag and is about to push it into this repository.
    image_refs.hold(STORAGE, REPOSITORY, "about-to-push", _ledger(tmp_path, "r-next"))
    pusher.unwind(keep=unwind.keep_in_use(None))
    by_kind = {e.kind: e.status for e in pusher.entries if e.kind != "s3:object"}
    assert by_kind == {ECR_IMAGE: "deleted", ECR_REPOSITORY: "kept"}


def test_references_of_a_repository_are_not_those_of_a_longer_name(bucket: None, tmp_path: Path) -> None:
    image_refs.hold(STORAGE, f"{REPOSITORY}-two", TAG, _ledger(tmp_path, "r-two"))
    image_refs.hold(STORAGE, f"{REPOSITORY}/nested", TAG, _ledger(tmp_path, "r-nested"))
    entry = LedgerEntry(
        seq=1,
        kind=ECR_REPOSITORY,
        resource_id=REPOSITORY,
        attrs=image_refs.HeldImage(STORAGE.bucket, STORAGE.prefix, REPOSITORY, TAG, "r1").repository_attrs(),
    )
    assert image_refs.other_holders(entry) == []
    image_refs.hold(STORAGE, REPOSITORY, "t2", _ledger(tmp_path, "r-same"))
    assert image_refs.other_holders(entry) == ["t2/r-same"]


def test_an_unreadable_reference_list_keeps_the_image_rather_than_deleting_it(
    mocked_aws: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The refs bucket is gone (or unreachable): the unwind must not take that as "nobody holds it".
    entry = LedgerEntry(
        seq=1,
        kind=ECR_IMAGE,
        resource_id=f"{REPOSITORY}:{TAG}",
        attrs={
            "repository": REPOSITORY,
            "tag": TAG,
            **image_refs.HeldImage("no-such-bucket", "sr", REPOSITORY, TAG, "r1").image_attrs(),
        },
    )
    assert unwind.keep_image(entry) is True
    assert "could not tell whether anything else uses it (NoSuchBucket" in caplog.text


def test_retired_releases_drop_their_image_references(bucket: None, tmp_path: Path) -> None:
    sagemaker = boto3.client("sagemaker")
    endpoint = "demo"
    for release_id in ("r1", "r2"):
        tags = [
            {"Key": naming.MANAGED_BY_KEY, "Value": naming.MANAGED_BY_VALUE},
            {"Key": naming.RELEASE_ID_KEY, "Value": release_id},
            {"Key": naming.ENDPOINT_KEY, "Value": endpoint},
        ]
        sagemaker.create_model(
            ModelName=f"{endpoint}-{release_id}",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": f"{HOST}/{REPOSITORY}:{TAG}"},
            Tags=tags,
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=f"{endpoint}-{release_id}",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": f"{endpoint}-{release_id}",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
            Tags=tags,
        )
        image_refs.hold(STORAGE, REPOSITORY, TAG, _ledger(tmp_path, release_id))
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-r2")

    retired = delete_unkept_releases(
        endpoint, "r2", previous_config=None, keep_previous=False, storage=STORAGE
    )
    assert f"image reference {REPOSITORY}:{TAG}/r1" in retired.deleted
    assert _refs() == [f"sr/image-refs/{REPOSITORY}:{TAG}/r2"]


class _Registry:
    """An OCI registry's manifest endpoints, as far as an unwind uses them: HEAD by tag, DELETE by
    digest (answering `delete_status`), with the requests it saw."""

    def __init__(self, tags: dict[str, str], delete_status: int) -> None:
        self.tags, self.delete_status = tags, delete_status
        self.seen: list[tuple[str, str]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_HEAD(self) -> None:
                registry.seen.append(("HEAD", self.path))
                digest = registry.tags.get(self.path.rsplit("/", 1)[-1])
                self.send_response(200 if digest else 404)
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_DELETE(self) -> None:
                registry.seen.append(("DELETE", self.path))
                self.send_response(registry.delete_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[Callable[[dict[str, str], int], _Registry]]:
    made: list[_Registry] = []

    def start(tags: dict[str, str], delete_status: int = 202) -> _Registry:
        made.append(_Registry(tags, delete_status))
        return made[-1]

    yield start
    for one in made:
        one.server.shutdown()
        one.server.server_close()


def _pushed_entry(host: str, digest: str) -> LedgerEntry:
    return LedgerEntry(
        seq=1,
        kind=ECR_IMAGE,
        resource_id=f"{REPOSITORY}:{TAG}",
        attrs={"repository": REPOSITORY, "tag": TAG, "digest": digest, "registry": host},
    )


def test_an_unwound_image_is_deleted_from_the_registry_it_was_pushed_to(
    mocked_aws: None, registry: Callable[[dict[str, str], int], _Registry]
) -> None:
    boto3.client("ecr").create_repository(repositoryName=REPOSITORY)
    digest = _push()
    served = registry({TAG: digest}, 202)
    unwind.delete_image(_pushed_entry(served.host, digest))
    assert _images() == []
    assert served.seen == [
        ("HEAD", f"/v2/{REPOSITORY}/manifests/{TAG}"),
        ("DELETE", f"/v2/{REPOSITORY}/manifests/{digest}"),
    ]


def test_a_tag_pushed_again_since_is_not_deleted_from_the_registry(
    mocked_aws: None, registry: Callable[[dict[str, str], int], _Registry]
) -> None:
    boto3.client("ecr").create_repository(repositoryName=REPOSITORY)
    digest = _push()
    served = registry({TAG: "sha256:" + "f" * 64}, 202)
    unwind.delete_image(_pushed_entry(served.host, digest))
    assert [method for method, _ in served.seen] == ["HEAD"]


def test_a_registry_refusing_deletes_fails_the_entry_naming_the_fix(
    mocked_aws: None, registry: Callable[[dict[str, str], int], _Registry]
) -> None:
    boto3.client("ecr").create_repository(repositoryName=REPOSITORY)
    digest = _push()
    served = registry({TAG: digest}, 405)
    with pytest.raises(ResourceFailed, match=r"405 .*fix: enable deletes in the registry"):
        unwind.delete_image(_pushed_entry(served.host, digest))
