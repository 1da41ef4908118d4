"""The fleet's schedule (at most N runs at once, one per endpoint, timeouts), what it releases (a folder or a
list, held to the allowed roots), and its form. Runs are faked; tests/e2e/test_fleet.py runs real ones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flows.fleet import (
    STATUS_READ_ATTEMPTS,
    Fleet,
    Started,
    fleet_configs,
    read_fleet,
    release_fleet,
)
from tasks.checks import preflight
from tasks.core.errors import ConfigError
from tasks.core.waiting import FakeClock
from tasks.report.fleet import FleetRelease
from tests.unit.deploy_helpers import BASE


@dataclass
class FakeLauncher:
    """Each run lasts `durations[config]` seconds of the fake clock and ends with `outcomes[config]`."""

    clock: FakeClock
    durations: dict[str, float]
    outcomes: dict[str, str] = field(default_factory=dict)
    runs: dict[UUID, tuple[FleetRelease, float, float]] = field(default_factory=dict)
    most_at_once: int = 0

    def running(self) -> list[FleetRelease]:
        now = self.clock.monotonic()
        return [r for r, start, end in self.runs.values() if start <= now < end]

    def start(self, release: FleetRelease) -> Started:
        busy = self.running()
        assert release.endpoint not in {r.endpoint for r in busy}, f"two runs of {release.endpoint} at once"
        run_id = uuid.uuid4()
        now = self.clock.monotonic()
        self.runs[run_id] = (release, now, now + self.durations[release.config_path])
        self.most_at_once = max(self.most_at_once, len(busy) + 1)
        return Started(run_id, f"run-{release.config_path}")

    def finished(self, run_id: UUID) -> bool:
        return self.clock.monotonic() >= self.runs[run_id][2]

    def settle(self, release: FleetRelease, run_id: UUID) -> None:
        release.status = self.outcomes.get(release.config_path, "succeeded")
        release.duration_s = self.runs[run_id][2] - self.runs[run_id][1]


def _release(path: str, endpoint: str) -> FleetRelease:
    return FleetRelease(path, endpoint)


def test_at_most_n_at_once_and_one_per_endpoint() -> None:
    clock = FakeClock()
    releases = [
        _release("a1", "a"),
        _release("a2", "a"),
        _release("b", "b"),
        _release("c", "c"),
        _release("d", "d"),
    ]
    launcher = FakeLauncher(clock, {"a1": 30, "a2": 10, "b": 5, "c": 5, "d": 5}, {"c": "failed"})
    Fleet(releases, max_parallel=2, run_timeout_s=600, clock=clock, poll_interval_s=1).run(launcher)
    assert launcher.most_at_once == 2
    assert [r.status for r in releases] == ["succeeded", "succeeded", "succeeded", "failed", "succeeded"]
    starts = {r.config_path: start for r, start, _ in launcher.runs.values()}
    ends = {r.config_path: end for r, _, end in launcher.runs.values()}
    assert starts["a2"] >= ends["a1"]  # the second config of endpoint a waited for the first
    assert starts["d"] < starts["a2"]  # and other endpoints went ahead meanwhile


def test_one_at_a_time_when_max_parallel_is_1() -> None:
    clock = FakeClock()
    releases = [_release("a", "a"), _release("b", "b"), _release("c", "c")]
    launcher = FakeLauncher(clock, {"a": 3, "b": 3, "c": 3})
    Fleet(releases, max_parallel=1, run_timeout_s=600, clock=clock, poll_interval_s=1).run(launcher)
    assert launcher.most_at_once == 1 and all(r.succeeded for r in releases)


def test_a_run_past_its_timeout_is_reported_and_its_endpoints_later_configs_are_not_run() -> None:
    clock = FakeClock()
    releases = [_release("a1", "a"), _release("a2", "a"), _release("b", "b")]
    launcher = FakeLauncher(clock, {"a1": 10_000, "a2": 1, "b": 1})
    Fleet(releases, max_parallel=2, run_timeout_s=60, clock=clock, poll_interval_s=1).run(launcher)
    assert [r.status for r in releases] == ["timed out", "not run", "succeeded"]
    assert "run_timeout_s" in (releases[0].error or "")
    assert "run-a1" in (releases[1].error or "")
    assert "a2" not in {r.config_path for r, _, _ in launcher.runs.values()}


def test_an_unreadable_config_is_invalid_and_not_run(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "endpoint": {"name": "no spaces allowed", "instance_type": "x"}}))
    releases = read_fleet([str(good), str(bad)])
    assert releases[0].endpoint == BASE["endpoint"]["name"] and releases[0].status == "pending"
    assert releases[1].endpoint is None and releases[1].status == "invalid"
    assert "endpoint" in (releases[1].error or "")
    clock = FakeClock()
    launcher = FakeLauncher(clock, {str(good): 1})
    Fleet(releases, max_parallel=2, run_timeout_s=60, clock=clock, poll_interval_s=1).run(launcher)
    assert [r.status for r in releases] == ["succeeded", "invalid"]
    assert len(launcher.runs) == 1


def test_a_folder_gives_its_yaml_files_in_order(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "notes.md"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.yaml").mkdir()
    assert fleet_configs(str(tmp_path), None) == [str(tmp_path / "a.yml"), str(tmp_path / "b.yaml")]
    assert fleet_configs(None, ["x.yaml", "y.yaml"]) == ["x.yaml", "y.yaml"]


@pytest.mark.parametrize(
    ("folder", "paths", "field"),
    [
        (None, None, "config_paths"),
        ("releases", ["releases/demo.yaml"], "folder"),
        (None, [], "config_paths"),
    ],
)
def test_a_folder_or_a_list_not_both_nor_neither(
    folder: str | None, paths: list[str] | None, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        fleet_configs(folder, paths)
    assert caught.value.field == field


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds no \.yaml config") as caught:
        fleet_configs(str(tmp_path), None)
    assert caught.value.field == "folder"


def test_a_confined_fleet_reads_only_under_the_allowed_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = tmp_path / "repo" / "releases"
    inside.mkdir(parents=True)
    (inside / "demo.yaml").write_text("x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.yaml").write_text("x")
    (inside / "link.yaml").symlink_to(outside / "secret.yaml")
    monkeypatch.setattr(preflight, "REPOSITORY", tmp_path / "repo")
    monkeypatch.delenv(preflight.ALLOWED_ROOTS_ENV, raising=False)
    monkeypatch.setenv(preflight.CONFINE_ENV, "1")
    assert fleet_configs(None, [str(inside / "demo.yaml")]) == [str(inside / "demo.yaml")]
    with pytest.raises(ConfigError) as caught:
        fleet_configs(None, [str(inside / "demo.yaml"), "/etc/passwd"])
    assert caught.value.field == "config_paths[1]"
    with pytest.raises(ConfigError) as caught:
        fleet_configs(str(outside), None)
    assert caught.value.field == "folder"
    with pytest.raises(ConfigError, match=r"link\.yaml"):  # a symlink in the folder leading out
        fleet_configs(str(inside), None)


def test_max_parallel_is_bounded() -> None:
    with pytest.raises(ParameterTypeError):
        release_fleet.validate_parameters({"config_paths": ["x.yaml"], "max_parallel": 0})
    with pytest.raises(ParameterTypeError):
        release_fleet.validate_parameters({"config_paths": ["x.yaml"], "max_parallel": 21})
    assert (
        release_fleet.validate_parameters({"config_paths": ["x.yaml"], "max_parallel": 3})["max_parallel"]
        == 3
    )


def test_a_run_that_cannot_start_fails_that_release_only() -> None:
    clock = FakeClock()

    class Refusing(FakeLauncher):
        def start(self, release: FleetRelease) -> Started:
            if release.config_path == "b":
                raise LookupError("Deployment 'nightly-redeploy/nightly-redeploy' not found")
            return super().start(release)

    releases = [_release("a", "a"), _release("b", "b"), _release("c", "c")]
    Fleet(releases, max_parallel=2, run_timeout_s=60, clock=clock, poll_interval_s=1).run(
        Refusing(clock, {"a": 2, "c": 2})
    )
    assert [r.status for r in releases] == ["succeeded", "failed", "succeeded"]
    assert "flow run not started: LookupError: Deployment" in (releases[1].error or "")


@dataclass
class Unreadable(FakeLauncher):
    """Reading the status of `config`'s run fails `failures` times in a row (in finished, then settle)."""

    config: str = ""
    failures: int = 0

    def _fail(self, run_id: UUID) -> None:
        if self.runs[run_id][0].config_path == self.config and self.failures > 0:
            self.failures -= 1
            raise ConnectionError("Prefect API unreachable")

    def finished(self, run_id: UUID) -> bool:
        self._fail(run_id)
        return super().finished(run_id)

    def settle(self, release: FleetRelease, run_id: UUID) -> None:
        self._fail(run_id)
        super().settle(release, run_id)


def test_a_status_read_that_fails_a_few_times_is_read_again() -> None:
    clock = FakeClock()
    releases = [_release("a", "a"), _release("b", "b")]
    launcher = Unreadable(clock, {"a": 3, "b": 3}, config="a", failures=STATUS_READ_ATTEMPTS - 1)
    Fleet(releases, max_parallel=2, run_timeout_s=600, clock=clock, poll_interval_s=1).run(launcher)
    assert [r.status for r in releases] == ["succeeded", "succeeded"]
    assert launcher.failures == 0


def test_a_status_that_stays_unreadable_fails_that_release_only() -> None:
    clock = FakeClock()
    releases = [_release("a1", "a"), _release("a2", "a"), _release("b", "b")]
    launcher = Unreadable(clock, {"a1": 3, "a2": 3, "b": 30}, config="a1", failures=10_000)
    Fleet(releases, max_parallel=2, run_timeout_s=600, clock=clock, poll_interval_s=1).run(launcher)
    assert [r.status for r in releases] == ["failed", "succeeded", "succeeded"]
    assert (releases[0].error or "").startswith("status unreadable: ConnectionError: Prefect API unreachable")


def test_the_fleet_form_shows_titles_and_descriptions() -> None:
    properties = parameter_schema(release_fleet.fn).model_dump()["properties"]
    assert {name: p["title"] for name, p in properties.items()} == {
        "folder": "Folder of configs",
        "config_paths": "Config files",
        "max_parallel": "Releases at once",
        "wait_for_lock_s": "Lock wait (s)",
        "run_timeout_s": "Run timeout (s)",
    }
    assert all(p.get("description") for p in properties.values()), properties
    assert (properties["max_parallel"]["minimum"], properties["max_parallel"]["maximum"]) == (1, 20)
