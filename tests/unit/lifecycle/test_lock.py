"""One release per endpoint: the endpoint lock, its lease, and what a lost lease does.

The first tests pin the Prefect behaviour tasks/lifecycle/lock.py relies on (private
`prefect.concurrency._sync` calls, the renew call's 410, TimeoutError from a full limit) against a real
Prefect API: a Prefect upgrade that changes it fails here, not in a release. The rest drive the renewal logic
on a fake clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from prefect.testing.utilities import prefect_test_harness

from flows import cleanup
from tasks.core import aws
from tasks.core.errors import LeaseLost, ReleaseBusy, ReleaseRunning
from tasks.core.waiting import FakeClock
from tasks.lifecycle import lock, unwind
from tasks.lifecycle.ledger import Ledger, S3LedgerStore
from tasks.lifecycle.lock import Lease, LeaseKeeper
from tasks.sagemaker import hosting

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc"
TAGS = [{"Key": "managed-by", "Value": "sagemaker-release"}, {"Key": "release-id", "Value": "r1"}]


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def wait_until(what: str, check: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.05)


# --- Prefect's behaviour, pinned ---------------------------------------------------------------------------


def test_one_release_holds_an_endpoint_and_a_second_one_is_refused(prefect_api: None) -> None:
    with lock.endpoint_lock("pin-busy", timeout_s=5) as lease:
        assert lock.active_slots("pin-busy") == 1
        started = time.monotonic()
        with pytest.raises(ReleaseBusy) as caught, lock.endpoint_lock("pin-busy", timeout_s=1):
            pytest.fail("a second holder got the slot")
        assert time.monotonic() - started < 30
        assert "stayed full for 1 s" in str(caught.value)
        assert not lease.lost
    assert lock.active_slots("pin-busy") == 0


def test_endpoint_names_share_a_lock_whatever_their_case(prefect_api: None) -> None:
    assert (
        lock.lock_name("Demo-Embedder")
        == lock.lock_name("demo-embedder")
        == ("sagemaker-release:endpoint:demo-embedder")
    )
    with lock.endpoint_lock("Pin-Case", timeout_s=5):
        assert lock.active_slots("pin-case") == 1
        with pytest.raises(ReleaseBusy), lock.endpoint_lock("pin-CASE", timeout_s=1):
            pytest.fail("the same endpoint in other letters got a second slot")


def test_prefect_renews_a_held_lease_and_answers_410_once_it_is_released(prefect_api: None) -> None:
    with lock.endpoint_lock("pin-renew", timeout_s=5) as lease:
        lock.renew_lease(lease.id)  # a held lease renews without complaint
        lock.release_lease(lease.id)
        assert lock.active_slots("pin-renew") == 0
        with pytest.raises(httpx.HTTPStatusError) as caught:
            lock.renew_lease(lease.id)
        assert caught.value.response.status_code == 410
        assert lock.lease_is_gone(caught.value)
        lock.release_lease(lease.id)  # releasing a lease Prefect no longer has is a no-op
    # Leaving the block releases it once more: still a no-op, and the slot stays free.
    assert lock.active_slots("pin-renew") == 0


def test_a_lease_released_under_the_release_is_noticed_as_lost(prefect_api: None) -> None:
    with lock.endpoint_lock("pin-lost", timeout_s=5, renew_every_s=0.1) as lease:
        renewals: list[datetime] = []
        lease.on_renewed(renewals.append)
        wait_until("a renewal", lambda: bool(renewals))
        assert renewals[0] - datetime.now(UTC) > timedelta(seconds=lock.LEASE_DURATION_S - 30)
        lease.check()  # held: a safe point lets the release go on
        lock.release_lease(lease.id)  # as cleanup --force, or a server reclaiming an expired lease, does
        wait_until("the lease noticed as lost", lambda: lease.lost)
        with pytest.raises(LeaseLost) as caught:
            lease.check()
    assert caught.value.lease_id == lease.id and caught.value.endpoint == "pin-lost"
    assert "Prefect no longer has the lease" in str(caught.value)
    assert "fix: check that the Prefect API is reachable" in str(caught.value)


# --- the renewal logic, on a fake clock ------------------------------------------------------------------


def _lease() -> Lease:
    return Lease("lease-1", "ep", duration_s=120, expires_at=datetime(2026, 1, 1, tzinfo=UTC))


class Renewals:
    """A renew function failing with the given errors in turn (None: success)."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


def _gone() -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://prefect/api/v2/concurrency_limits/leases/x/renew")
    return httpx.HTTPStatusError("410 Gone", request=request, response=httpx.Response(410, request=request))


def _run(keeper: LeaseKeeper, clock: FakeClock, until_s: float) -> None:
    """Drive the keeper as its thread does, up to `until_s` on the fake clock."""
    while clock.now < until_s:
        clock.sleep(keeper.wait_s())
        if not keeper.step():
            return


def test_a_transient_renewal_failure_is_retried_and_the_lease_kept() -> None:
    clock, lease = FakeClock(), _lease()
    renew = Renewals(None, httpx.ConnectError("refused"), httpx.ConnectError("refused"), None)
    seen: list[datetime] = []
    lease.on_renewed(seen.append)
    keeper = LeaseKeeper(
        lease,
        renew,
        renew_every_s=40,
        retry_every_s=5,
        clock=clock,
        wall=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    _run(keeper, clock, until_s=200)
    assert not lease.lost
    # 40 ok, 80 failed, 85 failed, 90 ok, then every 40 s again.
    assert clock.sleeps[:5] == [40, 40, 5, 5, 40]
    assert seen[0] == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)


def test_renewals_failing_until_the_lease_runs_out_lose_it_before_it_does() -> None:
    clock, lease = FakeClock(), _lease()
    keeper = LeaseKeeper(
        lease,
        Renewals(*[httpx.ConnectError("refused")] * 100),
        renew_every_s=40,
        retry_every_s=5,
        clock=clock,
    )
    _run(keeper, clock, until_s=500)
    assert lease.lost
    # Valid until 120 s after the start; given up at the last try that leaves a retry's margin.
    assert 100 <= clock.now < 120
    with pytest.raises(LeaseLost, match="renewing it kept failing until it was about to run out: refused"):
        lease.check()


def test_a_lease_prefect_says_is_gone_is_lost_at_once() -> None:
    clock, lease = FakeClock(), _lease()
    keeper = LeaseKeeper(lease, Renewals(_gone()), renew_every_s=40, clock=clock)
    _run(keeper, clock, until_s=500)
    assert lease.lost and clock.now == 40


def test_a_failing_listener_does_not_stop_the_renewals() -> None:
    clock, lease = FakeClock(), _lease()

    def broken(expires_at: datetime) -> None:
        raise RuntimeError("S3 down")

    lease.on_renewed(broken)
    renew = Renewals()
    keeper = LeaseKeeper(lease, renew, renew_every_s=40, clock=clock)
    _run(keeper, clock, until_s=120)
    assert renew.calls == 3 and not lease.lost


def test_the_renewal_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lock.RENEW_ENV, raising=False)
    assert lock.renew_interval() == lock.LEASE_DURATION_S / 3
    monkeypatch.setenv(lock.RENEW_ENV, "2.5")
    assert lock.renew_interval() == 2.5
    for bad in ("0", "-1", "soon", "100"):
        monkeypatch.setenv(lock.RENEW_ENV, bad)
        with pytest.raises(ValueError, match=f"{lock.RENEW_ENV}='{bad}' is not a number of seconds"):
            lock.renew_interval()


def test_live_lease_reads_the_expiry_a_release_wrote() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    meta: dict[str, Any] = {"lock_lease": "l1", "lease_expires_at": "2026-01-01T12:01:00+00:00"}
    assert lock.live_lease(meta, now=now) == ("l1", datetime(2026, 1, 1, 12, 1, tzinfo=UTC))
    assert lock.live_lease(meta, now=now + timedelta(minutes=2)) is None
    assert lock.live_lease({"lock_lease": "l1"}, now=now) is None  # a ledger of an older release
    assert lock.live_lease({**meta, "lease_expires_at": "soon"}, now=now) is None


# --- a lost lease in a release, and cleanup of a release that holds its lease -----------------------------


def test_a_lost_lease_stops_the_release_before_its_next_change_and_unwinds(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGEMAKER_RELEASE_STATE_DIR", str(tmp_path))
    boto3.client("s3").create_bucket(Bucket="ledgers-bucket")
    lease = _lease()
    store = S3LedgerStore("ledgers-bucket", "sr/releases/r1/ledger.json")
    ledger = Ledger.open(
        store, "r1", deleters=unwind.deleters(endpoint_timeout_s=10, poll_interval_s=0.01), guard=lease.check
    )
    container = hosting.container_definition(IMAGE, hosting.ModelData("s3://ledgers-bucket/m.tar.gz"), {})
    variants = [
        {
            "VariantName": "AllTraffic",
            "ModelName": "ep-r1",
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1,
        }
    ]
    with pytest.raises(LeaseLost), ledger:
        hosting.create_model("ep-r1", containers=[container], role_arn=ROLE, tags=TAGS, ledger=ledger)
        lease.lose("Prefect no longer has the lease (it expired or was released)")
        hosting.create_endpoint_config(
            {"EndpointConfigName": "ep-r1", "ProductionVariants": variants, "Tags": TAGS}, ledger
        )
    sagemaker = aws.client("sagemaker")
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []  # never sent
    assert sagemaker.list_models()["Models"] == []  # unwound
    assert Ledger.load(store).state == "unwound"


def _ledger_of_a_running_release(lease_expires_at: datetime) -> None:
    boto3.client("s3").create_bucket(Bucket="ledgers-bucket")
    document = {
        "version": 1,
        "release_id": "r1",
        "state": "running",
        "created_at": "2026-01-01T00:00:00+00:00",
        "meta": {
            "endpoint": "ep",
            "lock_lease": "00000000-0000-0000-0000-000000000001",
            "lease_expires_at": lease_expires_at.isoformat(timespec="seconds"),
        },
        "entries": [],
    }
    boto3.client("s3").put_object(
        Bucket="ledgers-bucket", Key="sr/releases/r1/ledger.json", Body=json.dumps(document).encode()
    )


def test_cleanup_refuses_a_release_that_still_holds_its_lease(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGEMAKER_RELEASE_STATE_DIR", str(tmp_path))
    _ledger_of_a_running_release(datetime.now(UTC) + timedelta(seconds=90))
    with pytest.raises(ReleaseRunning) as caught:
        cleanup.cleanup.fn("r1", "ledgers-bucket", "sr")
    assert caught.value.lease_id == "00000000-0000-0000-0000-000000000001"
    assert "pass force=True (--force)" in str(caught.value)
    assert (
        Ledger.load(S3LedgerStore("ledgers-bucket", "sr/releases/r1/ledger.json")).state == "running"
    )  # untouched

    released: list[str] = []
    monkeypatch.setattr(cleanup, "release_lease", released.append)
    result = cleanup.cleanup.fn("r1", "ledgers-bucket", "sr", force=True)
    assert (result["state_before"], result["state"]) == ("running", "unwound")
    assert released == ["00000000-0000-0000-0000-000000000001"]


def test_cleanup_unwinds_a_release_whose_lease_ran_out(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGEMAKER_RELEASE_STATE_DIR", str(tmp_path))
    _ledger_of_a_running_release(datetime.now(UTC) - timedelta(seconds=1))
    monkeypatch.setattr(cleanup, "release_lease", lambda lease_id: None)
    result = cleanup.cleanup.fn("r1", "ledgers-bucket", "sr")
    assert (result["state_before"], result["state"]) == ("running", "unwound")
