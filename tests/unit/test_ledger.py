from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tasks.errors import ConfigError, UnwindFailed
from tasks.ledger import Ledger, LedgerEntry, LocalLedgerStore, S3LedgerStore


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
