"""Creates are idempotent across retries: a create sent again after its first attempt succeeded without
an answer (botocore's retries, call_with_retries, a Prefect task retry) adopts what that attempt made,
and the release records and later unwinds it; a name another release holds is refused and left alone.

The lost answers are real: the call reaches moto in-process and takes effect, then botocore sees a
ReadTimeoutError (tests/unit/aws_faults.py) and sends it again, as it would over a dropped connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from tasks.core import aws
from tasks.core.errors import ResourceTaken
from tasks.core.waiting import FakeClock
from tasks.image.ecr import ensure_repository
from tasks.lifecycle import unwind
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore
from tasks.rollout import alarms
from tasks.sagemaker import deploy, hosting
from tests.unit import aws_faults as faults
from tests.unit.deploy_helpers import ROLE, make_config

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc"
OURS = [{"Key": "managed-by", "Value": "sagemaker-release"}, {"Key": "release-id", "Value": "r1"}]
THEIRS = [{"Key": "managed-by", "Value": "sagemaker-release"}, {"Key": "release-id", "Value": "r0"}]
VARIANTS = [
    {
        "VariantName": "AllTraffic",
        "ModelName": "ep-r1",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
]


@pytest.fixture
def account(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto refusing duplicate SageMaker names as SageMaker does; botocore retrying without a pause."""
    faults.refuse_duplicates(monkeypatch)
    monkeypatch.setattr(
        "botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0.0
    )
    monkeypatch.setattr("tasks.core.retry.SystemClock.sleep", lambda self, seconds: None)
    yield


def _ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(
        LocalLedgerStore(tmp_path / "ledger.json"),
        "r1",
        deleters=unwind.deleters(endpoint_timeout_s=10, poll_interval_s=0.01),
        clock=FakeClock(),
    )


def _entries(ledger: Ledger) -> list[tuple[str, str, str]]:
    return [(e.kind, e.resource_id, e.status) for e in Ledger.load(ledger.store).entries]


def _create_model(ledger: Ledger, tags: list[dict[str, str]] = OURS) -> str:
    container = hosting.container_definition(IMAGE, hosting.ModelData("s3://b/model.tar.gz"), {})
    return hosting.create_model("ep-r1", containers=[container], role_arn=ROLE, tags=tags, ledger=ledger)


def _create_config(ledger: Ledger) -> str:
    request = {"EndpointConfigName": "ep-r1", "ProductionVariants": VARIANTS, "Tags": OURS}
    return hosting.create_endpoint_config(request, ledger, endpoint="ep")


def _create_endpoint(ledger: Ledger) -> str:
    described = hosting.create_endpoint(
        "ep", "ep-r1", tags=OURS, ledger=ledger, timeout_s=10, interval_s=0.01
    )
    return str(described["EndpointArn"])


def _sagemaker_names() -> dict[str, list[str]]:
    sagemaker = aws.client("sagemaker")
    return {
        "models": [m["ModelName"] for m in sagemaker.list_models()["Models"]],
        "configs": [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]],
        "endpoints": [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]],
    }


def test_sagemaker_creates_whose_answers_were_lost_are_adopted_then_unwound(
    account: None, tmp_path: Path
) -> None:
    ledger = _ledger(tmp_path)
    sagemaker = aws.client("sagemaker")
    sent = {
        operation: faults.lose_answers(sagemaker, operation)
        for operation in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")
    }
    model_arn = _create_model(ledger)
    _create_config(ledger)
    endpoint_arn = _create_endpoint(ledger)

    # Each create went out twice: the first one acted, its answer was lost, the second was refused.
    assert {operation: lost.calls for operation, lost in sent.items()} == {
        "CreateModel": 2,
        "CreateEndpointConfig": 2,
        "CreateEndpoint": 2,
    }
    assert _entries(ledger) == [
        ("sagemaker:model", "ep-r1", "created"),
        ("sagemaker:endpoint-config", "ep-r1", "created"),
        ("sagemaker:endpoint", "ep", "created"),
    ]
    assert ledger.entries[0].attrs["arn"] == model_arn
    assert ledger.entries[2].attrs["arn"] == endpoint_arn
    assert ledger.entries[2].attrs["created"] is True

    ledger.unwind()
    assert _sagemaker_names() == {"models": [], "configs": [], "endpoints": []}
    assert {status for _, _, status in _entries(ledger)} == {"deleted"}


def test_a_prefect_task_retry_after_every_attempt_lost_its_answer_adopts_the_model(
    account: None, tmp_path: Path
) -> None:
    ledger = _ledger(tmp_path)
    config = make_config()
    lost = faults.lose_answers(aws.client("sagemaker"), "CreateModel", times=100)
    data = hosting.ModelData("s3://models-bucket/m.tar.gz")
    with pytest.raises(ReadTimeoutError):  # botocore gave up: the task fails, Prefect retries it
        deploy.create_model.fn(config, "r1", image_uri=IMAGE, model_data=data, ledger=ledger)
    (entry,) = ledger.entries
    assert entry.status == "pending"  # the model exists, but nothing said so yet

    lost.times = 0  # the network is back for the retry
    name = deploy.create_model.fn(config, "r1", image_uri=IMAGE, model_data=data, ledger=ledger)
    assert _entries(ledger) == [("sagemaker:model", name, "created")]  # one entry, not two
    ledger.unwind()
    assert _sagemaker_names()["models"] == []


@pytest.mark.parametrize(
    ("tags", "owner"), [(THEIRS, "release r0"), ([], "no release of ours")], ids=["other-release", "untagged"]
)
def test_a_name_another_release_holds_is_refused_and_left_alone(
    account: None, tmp_path: Path, tags: list[dict[str, str]], owner: str
) -> None:
    aws.client("sagemaker").create_model(
        ModelName="ep-r1",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE},
        **({"Tags": tags} if tags else {}),
    )
    ledger = _ledger(tmp_path)
    with pytest.raises(ResourceTaken) as caught:
        _create_model(ledger)
    message = str(caught.value)
    assert message.startswith(f"ResourceTaken: sagemaker:model ep-r1 already exists and belongs to {owner}")
    assert (
        "fix: release again with a new release_id" in message and "delete-model --model-name ep-r1" in message
    )
    assert _entries(ledger) == [("sagemaker:model", "ep-r1", "foreign")]
    ledger.unwind()
    assert _sagemaker_names()["models"] == ["ep-r1"]


@pytest.mark.parametrize(("tags", "status", "left"), [(OURS, "deleted", []), (THEIRS, "foreign", ["ep-r1"])])
def test_a_crash_between_create_and_confirm_is_unwound_by_the_tag(
    account: None, tmp_path: Path, tags: list[dict[str, str]], status: str, left: list[str]
) -> None:
    ledger = _ledger(tmp_path)
    ledger.intend("sagemaker:model", "ep-r1")
    aws.client("sagemaker").create_model(
        ModelName="ep-r1", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}, Tags=tags
    )
    # The worker died here; the cleanup flow loads the ledger and unwinds it (tasks/lifecycle/ownership.py
    # decides).
    survivor = Ledger.load(
        ledger.store, deleters=unwind.deleters(endpoint_timeout_s=10, poll_interval_s=0.01)
    )
    survivor.unwind()
    assert _entries(survivor) == [("sagemaker:model", "ep-r1", status)]
    assert _sagemaker_names()["models"] == left


def test_sns_topics_whose_answers_were_lost_are_recorded_once(account: None, tmp_path: Path) -> None:
    config = make_config(
        endpoint={
            "type": "async",
            "async_inference": {"output_path": "s3://models-bucket/out/", "create_topics": True},
        }
    )
    ledger = _ledger(tmp_path)
    sent = faults.lose_answers(aws.client("sns"), "CreateTopic", times=1)
    topics = deploy.create_topics.fn(config, "r1", ledger)
    assert sent.calls == 3  # the first topic's create was lost and sent again
    listed = [t["TopicArn"] for t in boto3.client("sns").list_topics()["Topics"]]
    assert topics.success and topics.error
    assert sorted(listed) == sorted([topics.success, topics.error])
    assert _entries(ledger) == [
        ("sns:topic", topics.success, "created"),
        ("sns:topic", topics.error, "created"),
    ]
    deploy.create_topics.fn(config, "r1", ledger)  # a rerun finds them in the ledger
    assert len(ledger.entries) == 2
    ledger.unwind()
    assert boto3.client("sns").list_topics()["Topics"] == []


def test_an_ecr_repository_whose_answer_was_lost_is_this_releases(account: None, tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    faults.lose_answers(aws.client("ecr"), "CreateRepository")
    repository = ensure_repository("serving", OURS, ledger)
    assert repository.created
    assert _entries(ledger) == [("ecr:repository", "serving", "created")]
    ledger.unwind()
    assert boto3.client("ecr").describe_repositories()["repositories"] == []


def test_an_ecr_repository_another_release_created_meanwhile_is_shared(
    account: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(tmp_path)
    ecr = aws.client("ecr")
    real_describe = ecr.describe_repositories
    looks: list[Any] = []

    def describe_after_a_race(**params: Any) -> Any:
        # The other release creates the repository between this release's describe and create.
        if not looks:
            looks.append(params)
            boto3.client("ecr").create_repository(repositoryName="serving", tags=THEIRS)
            raise ecr.exceptions.RepositoryNotFoundException(
                {"Error": {"Code": "RepositoryNotFoundException", "Message": "not found"}},
                "DescribeRepositories",
            )
        return real_describe(**params)

    monkeypatch.setattr(ecr, "describe_repositories", describe_after_a_race)
    repository = ensure_repository("serving", OURS, ledger)
    assert not repository.created
    assert _entries(ledger) == [("ecr:repository", "serving", "foreign")]
    ledger.unwind()
    assert [r["repositoryName"] for r in boto3.client("ecr").describe_repositories()["repositories"]] == [
        "serving"
    ]


def test_guard_alarms_whose_answers_were_lost_are_recorded_once(account: None, tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    sent = faults.lose_answers(aws.client("cloudwatch"), "PutMetricAlarm", times=1)
    config = make_config()
    names = alarms.create_guard_alarms(
        config,
        "r1",
        endpoint="demo-embedder",
        variant="AllTraffic",
        config_name="cfg-AllTraffic",
        ledger=ledger,
    )
    assert sent.calls == 3  # the first put was lost and sent again
    assert _entries(ledger) == [("cloudwatch:alarm", name, "created") for name in names]
    ledger.unwind()
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
