"""Instance types' vCPUs and memory, and the docker options a container of each gets on this machine."""

from __future__ import annotations

import logging
from typing import Any, cast

import docker
import pytest

from emulator.fleet.containers import Fleet
from emulator.fleet.instance_types import DEFAULT_SIZE, INSTANCE_SIZES, InstanceSize, instance_size
from emulator.settings import Limits

GIB = 1024


@pytest.mark.parametrize(
    ("instance_type", "vcpus", "memory_gib"),
    [
        ("ml.t2.medium", 2, 4),
        ("ml.m5.large", 2, 8),
        ("ml.m5.xlarge", 4, 16),
        ("ml.c4.large", 2, 3.75),
        ("ml.c5.9xlarge", 36, 72),
        ("ml.r5.large", 2, 16),
        ("ml.g4dn.xlarge", 4, 16),
        ("ml.g5.12xlarge", 48, 192),
        ("ml.inf2.xlarge", 4, 16),
        ("ml.p3.2xlarge", 8, 61),
        ("ml.p4d.24xlarge", 96, 1152),
    ],
)
def test_common_types_have_the_sizes_aws_publishes(instance_type: str, vcpus: int, memory_gib: float) -> None:
    assert instance_size(instance_type) == InstanceSize(vcpus=vcpus, memory_mib=round(memory_gib * GIB))


def test_the_table_covers_the_hosting_families() -> None:
    families = {name.split(".")[1] for name in INSTANCE_SIZES}
    assert {"t2", "m5", "c5", "r5", "g4dn", "g5", "inf2", "p3", "p4d"} <= families
    assert len(INSTANCE_SIZES) > 200
    assert all(size.vcpus >= 1 and size.memory_mib >= 2 * GIB for size in INSTANCE_SIZES.values())


def test_an_unknown_type_gets_the_documented_default_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="emulator.fleet.instance_types")
    assert instance_size("ml.m99.large") == DEFAULT_SIZE == InstanceSize(vcpus=2, memory_mib=8 * GIB)
    assert "ml.m99.large is not in emulator/fleet/instance_types.py" in caplog.text
    assert instance_size(None) == DEFAULT_SIZE


def test_a_serverless_variant_gets_its_memory_and_proportional_cpus() -> None:
    assert instance_size(None, {"MemorySizeInMB": 6144, "MaxConcurrency": 5}) == InstanceSize(3.47, 6144)
    assert instance_size(None, {"MemorySizeInMB": 1024, "MaxConcurrency": 1}) == InstanceSize(1.0, 1024)


class _Engine:
    """The one docker call Fleet.resources makes: the machine's CPUs and memory."""

    def __init__(self, cpus: int, memory_gib: int) -> None:
        self.answer = {"NCPU": cpus, "MemTotal": memory_gib << 30}

    def info(self) -> dict[str, Any]:
        return self.answer


def _fleet(cpus: int, memory_gib: int, **caps: Any) -> Fleet:
    limits = Limits(
        startup_health_timeout=1,
        model_download_timeout=1,
        image_pull_timeout=1,
        invocation_timeout=1,
        instance_quota=1,
        **caps,
    )
    return Fleet(cast(docker.DockerClient, _Engine(cpus, memory_gib)), "owner", limits)


def test_a_container_gets_its_instance_size_when_the_machine_has_room() -> None:
    options = _fleet(cpus=8, memory_gib=32).resources(instance_size("ml.m5.large"))
    assert options == {
        "nano_cpus": 2_000_000_000,
        "mem_limit": "8192m",
        "memswap_limit": "8192m",
        "pids_limit": 4096,
    }


def test_the_machine_caps_what_an_instance_type_would_get() -> None:
    options = _fleet(cpus=2, memory_gib=6).resources(instance_size("ml.m5.4xlarge"))
    assert (options["nano_cpus"], options["mem_limit"]) == (2_000_000_000, "6144m")


def test_the_emulators_caps_make_any_instance_smaller() -> None:
    fleet = _fleet(
        cpus=8, memory_gib=32, container_max_memory_mib=300, container_max_cpus=0.5, container_pids_limit=64
    )
    options = fleet.resources(instance_size("ml.g5.12xlarge"))
    assert options == {
        "nano_cpus": 500_000_000,
        "mem_limit": "300m",
        "memswap_limit": "300m",
        "pids_limit": 64,
    }


def test_the_caps_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB", "400")
    monkeypatch.setenv("SAGEMAKER_EMULATOR_MAX_CONTAINER_CPUS", "1.5")
    monkeypatch.setenv("SAGEMAKER_EMULATOR_CONTAINER_PIDS_LIMIT", "256")
    limits = Limits.from_env()
    assert (limits.container_max_memory_mib, limits.container_max_cpus, limits.container_pids_limit) == (
        400,
        1.5,
        256,
    )
    monkeypatch.delenv("SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB")
    monkeypatch.delenv("SAGEMAKER_EMULATOR_MAX_CONTAINER_CPUS")
    assert (Limits.from_env().container_max_memory_mib, Limits.from_env().container_max_cpus) == (None, None)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SAGEMAKER_EMULATOR_MAX_CONTAINER_MEMORY_MB", "4", "=4 is too small; set it to an integer >= 6"),
        ("SAGEMAKER_EMULATOR_MAX_CONTAINER_CPUS", "lots", "='lots' is not a number"),
        ("SAGEMAKER_EMULATOR_CONTAINER_PIDS_LIMIT", "2.5", "='2.5' is not a whole number"),
        ("SAGEMAKER_EMULATOR_INPUT_MAX_BYTES", "0", "=0 is too small"),
    ],
)
def test_bad_limits_name_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as raised:
        Limits.from_env()
    assert f"{name}{fragment}" in str(raised.value)
