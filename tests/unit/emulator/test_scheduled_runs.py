"""The autoscaling loop runs a scheduled action at its time (emulator/autoscaling/models.py), with a fake
moto: the activity it records when the bounds are set, and when they cannot be."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from emulator.autoscaling.models import AutoScaler
from emulator.clock import Clock

RID = "endpoint/e/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


class FakeMoto:
    def __init__(self, action: dict[str, Any], *, refuse: bool = False) -> None:
        self.target = {"ResourceId": RID, "ScalableDimension": DIMENSION, "MinCapacity": 1, "MaxCapacity": 3}
        self.action = action
        self.refuse = refuse

    def targets(self) -> list[dict[str, Any]]:
        return [self.target]

    def policies(self, resource_id: str | None = None) -> list[dict[str, Any]]:
        return []

    def alarms(self, **request: Any) -> list[dict[str, Any]]:
        return []

    def scheduled_actions(self, resource_id: str | None = None) -> list[dict[str, Any]]:
        return [self.action]

    def set_bounds(self, resource_id: str, low: int, high: int) -> None:
        if self.refuse:
            raise ConnectionError("moto did not answer")
        self.target.update(MinCapacity=low, MaxCapacity=high)


class Hosting:
    def variant(self, endpoint_name: str, variant_name: str) -> None:
        return None

    def endpoint_exists(self, endpoint_name: str) -> bool:
        return True

    async def set_desired_instances(self, endpoint_name: str, variant_name: str, count: int) -> None:
        raise AssertionError("no instance count is set by a scheduled action itself")


def _scaler(tmp_path: Path, moto: FakeMoto) -> AutoScaler:
    return AutoScaler(Hosting(), None, Clock(), tmp_path, moto=moto)  # type: ignore[arg-type]


def _tick_until_an_activity(scaler: AutoScaler, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not scaler.activities and time.monotonic() < deadline:
        asyncio.run(scaler.tick())
        time.sleep(0.2)


def _action(at_epoch: float) -> dict[str, Any]:
    return {
        "ScheduledActionName": "peak",
        "ResourceId": RID,
        "ScalableDimension": DIMENSION,
        "Schedule": f"at({time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(at_epoch))})",
        "CreationTime": at_epoch - 10,
        "ScalableTargetAction": {"MinCapacity": 2},
    }


def test_a_due_action_sets_the_bounds_once_as_a_successful_activity(tmp_path: Path) -> None:
    moto = FakeMoto(_action(time.time() + 1))
    scaler = _scaler(tmp_path, moto)
    _tick_until_an_activity(scaler)
    (activity,) = scaler.activities
    assert (activity.Cause, activity.StatusCode) == ("scheduled action name peak was triggered", "Successful")
    assert activity.Description == "Setting min capacity to 2 and max capacity to 3"
    assert (moto.target["MinCapacity"], moto.target["MaxCapacity"]) == (2, 3)
    asyncio.run(scaler.tick())
    assert len(scaler.activities) == 1  # at() runs once


def test_bounds_that_cannot_be_set_leave_a_failed_activity_and_the_loop_goes_on(tmp_path: Path) -> None:
    moto = FakeMoto(_action(time.time() + 1), refuse=True)
    scaler = _scaler(tmp_path, moto)
    _tick_until_an_activity(scaler)
    (activity,) = scaler.activities
    assert activity.StatusCode == "Failed"
    assert activity.StatusMessage is not None and "moto did not answer" in activity.StatusMessage
    assert moto.target["MinCapacity"] == 1
