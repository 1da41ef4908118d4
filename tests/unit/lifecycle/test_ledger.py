from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tasks.core import aws
from tasks.core.errors import ConfigError, LedgerSaveFailed, SmokeFailed, UnwindFailed
from tasks.core.waiting import FakeClock
from tasks.lifecycle import unwind
from tasks.lifecycle.ledger import Ledger, LedgerEntry, LocalLedgerStore, S3LedgerStore
from tasks.sagemaker import hosting
from tests.unit import aws_faults as faults


def _not_found(code: str = "ValidationException", message: str = "Could not find model x") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DeleteModel")


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), "r1", meta={"endpoint": "e"})
    ledger.record("s3:object", "s3://b/k", bucket="b", key="k")
    ledger.record("sagemaker:model", "m1")
    ledger.record("sagemaker:endpoint-config", "c1")
    ledger.record("sagemaker:endpoint", "e1")
    return ledger


def test_every_record_is_persisted_before_it_returns(tmp_path: Path) -> None:
    store = LocalLedgerStore(tmp_path / "ledger.json")
    ledger = Ledger.open(store, "r1")
    assert json.loads(store.path.read_text())["entries"] == []
    ledger.record("sagemaker:model", "m1", arn="arn:m1")
    saved = json.loads(store.path.read_text())
    assert [(e["kind"], e["resource_id"], e["attrs"]) for e in saved["entries"]] == [
        ("sagemaker:model", "m1", {"arn": "arn:m1"})
    ]
    assert saved["state"] == "running"


def test_refuses_unknown_kinds_and_unpersistable_attrs(tmp_path: Path) -> None:
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "l.json"), "r1")
    with pytest.raises(ValueError, match="unknown ledger kind"):
        ledger.record("sagemaker:modle", "m1")
    with pytest.raises(TypeError):
        ledger.record("sagemaker:model", "m1", when=object())
    assert ledger.entries == ()


def test_unwind_is_last_in_first_out(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    order: list[str] = []
    deleters = {kind: (lambda e: order.append(e.resource_id)) for kind in {e.kind for e in ledger.entries}}
    ledger.unwind(deleters)
    assert order == ["e1", "c1", "m1", "s3://b/k"]
    assert {e.status for e in ledger.entries} == {"deleted"}
    assert ledger.state == "unwound"


def test_not_found_counts_as_done(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)

    def gone(entry: LedgerEntry) -> None:
        raise _not_found()

    ledger.unwind(dict.fromkeys({e.kind for e in ledger.entries}, gone))
    assert {e.status for e in ledger.entries} == {"gone"}
    assert ledger.state == "unwound"


def test_one_failing_delete_does_not_stop_the_others(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    deleted: list[str] = []

    def delete(entry: LedgerEntry) -> None:
        if entry.resource_id == "c1":
            raise _not_found("ThrottlingException", "Rate exceeded")
        deleted.append(entry.resource_id)

    with pytest.raises(UnwindFailed) as caught:
        ledger.unwind(dict.fromkeys({e.kind for e in ledger.entries}, delete))
    assert deleted == ["e1", "m1", "s3://b/k"]
    assert caught.value.failures == (
        "sagemaker:endpoint-config c1: ClientError: "
        + str(_not_found("ThrottlingException", "Rate exceeded")),
    )
    assert "flows.cleanup r1" in str(caught.value)
    reloaded = Ledger.load(ledger.store)
    assert reloaded.state == "unwind_failed"
    assert [(e.resource_id, e.status) for e in reloaded.entries if e.pending] == [("c1", "failed")]

    # A second unwind retries only what is left.
    again: list[str] = []
    reloaded.unwind(dict.fromkeys({e.kind for e in reloaded.entries}, lambda e: again.append(e.resource_id)))
    assert again == ["c1"]
    assert reloaded.state == "unwound"


def test_missing_deleter_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    with pytest.raises(UnwindFailed, match="no deleter for kind s3:object"):
        ledger.unwind(
            {
                k: (lambda e: None)
                for k in ("sagemaker:model", "sagemaker:endpoint-config", "sagemaker:endpoint")
            }
        )


def test_keep_spares_entries(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    deleted: list[str] = []
    ledger.unwind(
        dict.fromkeys({e.kind for e in ledger.entries}, lambda e: deleted.append(e.resource_id)),
        keep=lambda e: e.kind == "sagemaker:model",
    )
    assert deleted == ["e1", "c1", "s3://b/k"]
    assert [e.status for e in ledger.entries if e.kind == "sagemaker:model"] == ["kept"]


def test_reload_after_a_crash_unwinds_what_the_dead_run_created(tmp_path: Path) -> None:
    store = LocalLedgerStore(tmp_path / "ledger.json")
    _ledger(tmp_path)  # the "crashed" run: recorded four resources, then vanished without unwinding
    survivor = Ledger.load(store)
    assert survivor.release_id == "r1" and survivor.state == "running" and survivor.meta == {"endpoint": "e"}
    order: list[str] = []
    survivor.unwind(dict.fromkeys({e.kind for e in survivor.entries}, lambda e: order.append(e.resource_id)))
    assert order == ["e1", "c1", "m1", "s3://b/k"]
    assert Ledger.load(store).state == "unwound"


def test_load_without_a_ledger_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match=r"no release ledger at .*missing\.json"):
        Ledger.load(LocalLedgerStore(tmp_path / "missing.json"))


def test_reopening_the_same_release_continues_its_ledger(tmp_path: Path) -> None:
    _ledger(tmp_path)
    again = Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), "r1")
    assert len(again.entries) == 4
    with pytest.raises(ValueError, match="belongs to release r1"):
        Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), "r2")


def test_a_succeeded_release_cannot_be_reopened(tmp_path: Path) -> None:
    store = LocalLedgerStore(tmp_path / "l.json")
    with Ledger.open(store, "r1", deleters={}) as ledger:
        ledger.record("sagemaker:model", "m1")
    with pytest.raises(ConfigError) as caught:
        Ledger.open(store, "r1")
    assert caught.value.field == "release_id" and "leave release_id empty" in caught.value.fix


def test_context_manager_unwinds_on_error_and_keeps_the_original_error(tmp_path: Path) -> None:
    deleted: list[str] = []

    def fail_on_model(entry: LedgerEntry) -> None:
        if entry.kind == "sagemaker:model":
            raise RuntimeError("AccessDenied")
        deleted.append(entry.resource_id)

    deleters = {"sagemaker:model": fail_on_model, "sagemaker:endpoint-config": fail_on_model}
    store = LocalLedgerStore(tmp_path / "l.json")
    with pytest.raises(KeyError) as caught, Ledger.open(store, "r1", deleters=deleters) as ledger:
        ledger.record("sagemaker:model", "m1")
        ledger.record("sagemaker:endpoint-config", "c1")
        raise KeyError("smoke exploded")
    assert deleted == ["c1"]
    assert any("UnwindFailed" in note and "m1" in note for note in caught.value.__notes__)
    assert Ledger.load(store).state == "unwind_failed"


def test_context_manager_marks_success(tmp_path: Path) -> None:
    store = LocalLedgerStore(tmp_path / "l.json")
    with Ledger.open(store, "r1", deleters={}) as ledger:
        ledger.record("sagemaker:model", "m1")
    assert Ledger.load(store).state == "succeeded"


def test_s3_store_round_trip(mocked_aws: None) -> None:
    boto3.client("s3").create_bucket(Bucket="ledgers")
    store = S3LedgerStore("ledgers", "p/releases/r1/ledger.json")
    assert store.load() is None
    ledger = Ledger.open(store, "r1")
    ledger.record("ecr:repository", "serving", uri="x")
    body = boto3.client("s3").get_object(Bucket="ledgers", Key="p/releases/r1/ledger.json")["Body"].read()
    assert json.loads(body)["entries"][0]["resource_id"] == "serving"
    assert [e.resource_id for e in Ledger.load(store).entries] == ["serving"]
    assert store.describe() == "s3://ledgers/p/releases/r1/ledger.json"


def test_undo_deletes_one_entry_now_and_a_later_unwind_skips_it(tmp_path: Path) -> None:
    deleted: list[str] = []
    ledger = _ledger(tmp_path)
    kinds = ("s3:object", "sagemaker:model", "sagemaker:endpoint-config", "sagemaker:endpoint")
    ledger.deleters = {kind: (lambda e: deleted.append(e.resource_id)) for kind in kinds}
    ledger.undo(ledger.entries[0])
    assert deleted == ["s3://b/k"] and ledger.entries[0].status == "deleted"
    saved = json.loads((tmp_path / "ledger.json").read_text())
    assert saved["entries"][0]["status"] == "deleted"
    ledger.unwind()
    assert deleted == ["s3://b/k", "e1", "c1", "m1"]


def test_undo_of_something_already_gone_is_fine_and_other_errors_raise(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)

    def refuse(entry: LedgerEntry) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")

    def gone(entry: LedgerEntry) -> None:
        raise _not_found()

    ledger.deleters = {"s3:object": refuse, "sagemaker:model": gone}
    with pytest.raises(ClientError):
        ledger.undo(ledger.entries[0])
    assert ledger.entries[0].status == "created"
    ledger.undo(ledger.entries[1])
    assert ledger.entries[1].status == "deleted"
    with pytest.raises(ValueError, match="no deleter"):
        ledger.undo(ledger.entries[2])


# --- a ledger that cannot be saved never stops the unwind -------------------------------------------------

BUCKET = "models-bucket"
LEDGER_KEY = "sr/releases/r1/ledger.json"
DATA_KEY = "sr/models/abc/model.tar.gz"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
TAGS = [{"Key": "managed-by", "Value": "sagemaker-release"}, {"Key": "release-id", "Value": "r1"}]
# Saves of the release below: while it runs (open, the upload, model, config and endpoint as intent +
# confirmation, or the update's record), then while it unwinds (start, one per entry, end).
NEW_RUNNING, NEW_SAVES = 8, 14
SERVING_RUNNING, SERVING_SAVES = 7, 13


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAGEMAKER_RELEASE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def account(mocked_aws: None, state: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A bucket, model `m-old` and config `ep-old` of an earlier release; returns the configs
    UpdateEndpoint was asked for."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    sagemaker = aws.client("sagemaker")
    faults.refuse_duplicates(monkeypatch)
    asked = faults.update_endpoints_at_once(monkeypatch)
    sagemaker.create_model(ModelName="m-old", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sagemaker.create_endpoint_config(EndpointConfigName="ep-old", ProductionVariants=_variants("m-old"))
    return asked


def _variants(model: str) -> list[dict[str, Any]]:
    return [
        {
            "VariantName": "AllTraffic",
            "ModelName": model,
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1,
        }
    ]


def _release(store: S3LedgerStore, *, serving: bool, fail_with: Exception | None) -> Exception | None:
    """A release in miniature through the real hosting calls and deleters, as flows/release.py runs
    one: upload, model, config, then a new endpoint (or the update of the serving one); then
    `fail_with` is raised (the release's own error). Returns what the release raised."""
    if serving:
        aws.client("sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="ep-old")
    try:
        ledger = Ledger.open(
            store,
            "r1",
            meta={"endpoint": "ep"},
            deleters=unwind.deleters(endpoint_timeout_s=10, poll_interval_s=0.01),
            keep=unwind.keep_in_use("ep"),
            clock=FakeClock(),
        )
        with ledger:
            aws.client("s3").put_object(Bucket=BUCKET, Key=DATA_KEY, Body=b"weights")
            ledger.record("s3:object", f"s3://{BUCKET}/{DATA_KEY}", bucket=BUCKET, key=DATA_KEY)
            data = hosting.ModelData(f"s3://{BUCKET}/{DATA_KEY}")
            container = hosting.container_definition(IMAGE, data, {})
            hosting.create_model("ep-r1", containers=[container], role_arn=ROLE, tags=TAGS, ledger=ledger)
            request = {"EndpointConfigName": "ep-r1", "ProductionVariants": _variants("ep-r1"), "Tags": TAGS}
            hosting.create_endpoint_config(request, ledger, endpoint="ep")
            if serving:
                hosting.update_endpoint(
                    "ep", "ep-r1", previous_config="ep-old", ledger=ledger, timeout_s=10, interval_s=0.01
                )
            else:
                hosting.create_endpoint(
                    "ep", "ep-r1", tags=TAGS, ledger=ledger, timeout_s=10, interval_s=0.01
                )
            if fail_with is not None:
                raise fail_with
    except Exception as exc:
        return exc
    return None


def _what_exists() -> dict[str, Any]:
    sagemaker = aws.client("sagemaker")
    objects = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="sr/models/").get("Contents", [])
    endpoint = hosting.describe_endpoint("ep")
    return {
        "objects": [o["Key"] for o in objects],
        "models": sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        ),
        "endpoint": endpoint["EndpointConfigName"] if endpoint else None,
    }


def _smoke_failed() -> SmokeFailed:
    return SmokeFailed("ep", ["embedding has 12 dimensions, expected 384"])


@pytest.mark.parametrize("serving", [False, True], ids=["new-endpoint", "serving-endpoint"])
def test_a_release_saves_its_ledger_this_many_times(account: list[str], serving: bool) -> None:
    # The fault test below fails each of these saves in turn; a change in their number changes it.
    store = faults.FailingStore(BUCKET, LEDGER_KEY)
    error = _release(store, serving=serving, fail_with=_smoke_failed())
    assert isinstance(error, SmokeFailed) and not getattr(error, "__notes__", [])
    assert store.saves == (SERVING_SAVES if serving else NEW_SAVES)
    assert Ledger.load(store).state == "unwound"


@pytest.mark.parametrize(
    ("serving", "failing_from"),
    [(False, k) for k in range(1, NEW_SAVES + 1)] + [(True, k) for k in range(1, SERVING_SAVES + 1)],
    ids=[f"new-endpoint-save{k}" for k in range(1, NEW_SAVES + 1)]
    + [f"serving-endpoint-save{k}" for k in range(1, SERVING_SAVES + 1)],
)
def test_failing_saves_never_stop_the_unwind(
    account: list[str], state: Path, serving: bool, failing_from: int
) -> None:
    store = faults.FailingStore(BUCKET, LEDGER_KEY, fail_from=failing_from)
    error = _release(store, serving=serving, fail_with=_smoke_failed())

    # Everything the release created is gone; the endpoint that served before serves its old config.
    assert _what_exists() == {
        "objects": [],
        "models": ["m-old"],
        "configs": ["ep-old"],
        "endpoint": "ep-old" if serving else None,
    }
    local_copy = state / "ledgers" / "r1.json"
    running = SERVING_RUNNING if serving else NEW_RUNNING
    if failing_from <= running:
        # The save failed while the release ran: that failure stopped it, and is its error.
        assert isinstance(error, LedgerSaveFailed)
        assert (error.store, error.local_copy) == (f"s3://{BUCKET}/{LEDGER_KEY}", str(local_copy))
        assert "ServiceUnavailable" in error.reason and "flows.cleanup r1" in str(error)
    else:
        # The release's own error is the one reported; the save failure rides along as a note.
        assert isinstance(error, SmokeFailed)
        (note,) = error.__notes__
        assert note.startswith("LedgerSaveFailed: the ledger of release r1 could not be saved")
        assert str(local_copy) in note
    saved = json.loads(local_copy.read_text())
    if failing_from == 1:
        assert (saved["state"], saved["entries"]) == ("running", [])  # refused before creating anything
    else:
        assert saved["state"] == "unwound"
        assert {e["status"] for e in saved["entries"]} <= {"deleted", "gone"}


def test_a_store_that_comes_back_gets_the_final_state(account: list[str], state: Path) -> None:
    # S3 refuses the unwind's first four saves, then answers again when the save is retried at the end.
    store = faults.FailingStore(BUCKET, LEDGER_KEY, fail_from=NEW_RUNNING + 1, fail_until=NEW_RUNNING + 5)
    error = _release(store, serving=False, fail_with=_smoke_failed())
    assert isinstance(error, SmokeFailed) and not getattr(error, "__notes__", [])
    assert _what_exists()["models"] == ["m-old"]
    saved = Ledger.load(S3LedgerStore(BUCKET, LEDGER_KEY))
    assert saved.state == "unwound" and all(e.status in ("deleted", "gone") for e in saved.entries)


def test_a_success_that_cannot_be_saved_is_unwound(account: list[str], state: Path) -> None:
    # Left "running" in S3, the ledger would let a later cleanup unwind the live release.
    store = faults.FailingStore(BUCKET, LEDGER_KEY, fail_from=NEW_RUNNING + 1)
    error = _release(store, serving=False, fail_with=None)
    assert isinstance(error, LedgerSaveFailed)
    assert _what_exists() == {"objects": [], "models": ["m-old"], "configs": ["ep-old"], "endpoint": None}
    assert json.loads((state / "ledgers" / "r1.json").read_text())["state"] == "unwound"


def test_a_success_saved_on_the_retry_stands(account: list[str], state: Path) -> None:
    store = faults.FailingStore(BUCKET, LEDGER_KEY, fail_from=NEW_RUNNING + 1, fail_until=NEW_RUNNING + 2)
    assert _release(store, serving=False, fail_with=None) is None
    assert _what_exists()["endpoint"] == "ep-r1"
    assert Ledger.load(S3LedgerStore(BUCKET, LEDGER_KEY)).state == "succeeded"


def test_every_save_also_writes_the_local_copy(mocked_aws: None, state: Path) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    ledger = Ledger.open(S3LedgerStore(BUCKET, LEDGER_KEY), "r1")
    ledger.record("sagemaker:model", "m1")
    local = json.loads((state / "ledgers" / "r1.json").read_text())
    assert [e["resource_id"] for e in local["entries"]] == ["m1"]
    assert ledger.save_error is None


def test_a_keep_check_that_fails_is_a_failed_entry_not_a_stopped_unwind(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    deleted: list[str] = []

    def keep(entry: LedgerEntry) -> bool:
        if entry.resource_id == "c1":
            raise RuntimeError("DescribeEndpoint throttled")
        return False

    with pytest.raises(UnwindFailed, match="DescribeEndpoint throttled"):
        ledger.unwind(
            dict.fromkeys({e.kind for e in ledger.entries}, lambda e: deleted.append(e.resource_id)), keep
        )
    assert deleted == ["e1", "m1", "s3://b/k"]
    assert [e.status for e in ledger.entries if e.resource_id == "c1"] == ["failed"]


# --- intents: recorded before the create is sent ---------------------------------------------------------


def test_an_intent_is_persisted_before_the_create_and_confirmed_after(tmp_path: Path) -> None:
    store = LocalLedgerStore(tmp_path / "l.json")
    ledger = Ledger.open(store, "r1")
    entry = ledger.intend("sagemaker:model", "m1", endpoint="ep")
    assert [(e.resource_id, e.status) for e in Ledger.load(store).entries] == [("m1", "pending")]
    assert not ledger.holds("sagemaker:model", "m1")
    assert ledger.intend("sagemaker:model", "m1") is entry  # a retry reuses the intent
    ledger.confirm(entry, arn="arn:m1")
    (saved,) = Ledger.load(store).entries
    assert (saved.status, saved.attrs) == ("created", {"endpoint": "ep", "arn": "arn:m1"})
    assert ledger.holds("sagemaker:model", "m1")


@pytest.mark.parametrize(
    ("owner", "status", "deleted"),
    [(True, "deleted", ["m1"]), (None, "gone", []), (False, "foreign", [])],
    ids=["ours", "never-created", "someone-elses"],
)
def test_an_unconfirmed_intent_is_deleted_only_when_it_is_ours(
    tmp_path: Path, owner: bool | None, status: str, deleted: list[str]
) -> None:
    asked: list[tuple[str, str]] = []

    def ours(entry: LedgerEntry, release_id: str) -> bool | None:
        asked.append((entry.resource_id, release_id))
        return owner

    removed: list[str] = []
    ledger = Ledger.open(LocalLedgerStore(tmp_path / "l.json"), "r1", ours=ours)
    ledger.intend("sagemaker:model", "m1")
    ledger.unwind({"sagemaker:model": lambda e: removed.append(e.resource_id)})
    assert asked == [("m1", "r1")]
    assert removed == deleted
    assert [e.status for e in Ledger.load(ledger.store).entries] == [status]
    assert ledger.state == "unwound"


def test_an_intent_whose_owner_cannot_be_read_stays_an_intent(tmp_path: Path) -> None:
    def ours(entry: LedgerEntry, release_id: str) -> bool | None:
        raise _not_found("ThrottlingException", "Rate exceeded")

    ledger = Ledger.open(LocalLedgerStore(tmp_path / "l.json"), "r1", ours=ours)
    ledger.intend("sagemaker:endpoint", "ep")
    with pytest.raises(UnwindFailed, match="Rate exceeded"):
        ledger.unwind({"sagemaker:endpoint": lambda e: None})
    (entry,) = ledger.entries
    assert entry.status == "pending" and entry.pending and "Rate exceeded" in str(entry.error)


def test_the_guard_runs_before_an_intent_and_after_a_record(tmp_path: Path) -> None:
    lost = False

    def guard() -> None:
        if lost:
            raise RuntimeError("lease lost")

    store = LocalLedgerStore(tmp_path / "l.json")
    ledger = Ledger.open(store, "r1", guard=guard)
    ledger.record("sagemaker:model", "m1")
    lost = True
    with pytest.raises(RuntimeError, match="lease lost"):
        ledger.intend("sagemaker:endpoint-config", "c1")
    with pytest.raises(RuntimeError, match="lease lost"):
        ledger.record("sagemaker:endpoint", "e1")
    # The create behind the record happened: it stays in the ledger for the unwind. The intent was
    # never made, so nothing waits on it.
    assert [e.resource_id for e in Ledger.load(store).entries] == ["m1", "e1"]
    # An unwind is no release step: the guard does not stop it.
    ledger.unwind(dict.fromkeys(("sagemaker:model", "sagemaker:endpoint"), lambda e: None))
    assert ledger.state == "unwound"
