"""vCPUs and memory of SageMaker instance types: what the emulator gives each model container.

A SageMaker instance is the EC2 instance of the same name without `ml.` (ml.m5.large runs on an
m5.large: 2 vCPU, 8 GiB), so the table holds the vCPUs and memory AWS publishes for those EC2 types
(the instance-type pages; DescribeInstanceTypes returns the same), for every family SageMaker
real-time hosting offered in us-east-1 when the table was written, and ml.p3.

An instance type the table lacks gets DEFAULT_SIZE, ml.m5.large's 2 vCPU and 8 GiB: the type
SageMaker's own examples deploy to. A serverless variant gets its MemorySizeInMB and, since AWS says
only that compute is "proportional to the memory", one vCPU per SERVERLESS_MIB_PER_VCPU (Lambda's
ratio). fleet.py then caps both to what the machine has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("emulator.fleet.instance_types")

# family, then size:vCPUs:memory GiB for each size of it
_TABLE = """
c4      large:2:3.75 xlarge:4:7.5 2xlarge:8:15 4xlarge:16:30 8xlarge:36:60
c5      large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 9xlarge:36:72 18xlarge:72:144
c5d     large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 9xlarge:36:72 18xlarge:72:144
c6g     large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96 16xlarge:64:128
c6gd    large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96 16xlarge:64:128
c6gn    large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96 16xlarge:64:128
c6i     large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96 16xlarge:64:128
        24xlarge:96:192 32xlarge:128:256
c7g     medium:1:2 large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96
        16xlarge:64:128
c7i     large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96 16xlarge:64:128
        24xlarge:96:192 48xlarge:192:384
c8g     medium:1:2 large:2:4 xlarge:4:8 2xlarge:8:16 4xlarge:16:32 8xlarge:32:64 12xlarge:48:96
        16xlarge:64:128 24xlarge:96:192 48xlarge:192:384
g4dn    xlarge:4:16 2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 16xlarge:64:256
g5      xlarge:4:16 2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 16xlarge:64:256
        24xlarge:96:384 48xlarge:192:768
g6      xlarge:4:16 2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 16xlarge:64:256
        24xlarge:96:384 48xlarge:192:768
g6e     xlarge:4:32 2xlarge:8:64 4xlarge:16:128 8xlarge:32:256 12xlarge:48:384 16xlarge:64:512
        24xlarge:96:768 48xlarge:192:1536
g7      2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 24xlarge:96:384 48xlarge:192:768
g7e     2xlarge:8:64 4xlarge:16:128 8xlarge:32:256 12xlarge:48:512 24xlarge:96:1024 48xlarge:192:2048
inf1    xlarge:4:8 2xlarge:8:16 6xlarge:24:48 24xlarge:96:192
inf2    xlarge:4:16 8xlarge:32:128 24xlarge:96:384 48xlarge:192:768
m4      xlarge:4:16 2xlarge:8:32 4xlarge:16:64 10xlarge:40:160 16xlarge:64:256
m5      large:2:8 xlarge:4:16 2xlarge:8:32 4xlarge:16:64 12xlarge:48:192 24xlarge:96:384
m5d     large:2:8 xlarge:4:16 2xlarge:8:32 4xlarge:16:64 12xlarge:48:192 24xlarge:96:384
m6g     large:2:8 xlarge:4:16 2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 16xlarge:64:256
m6gd    large:2:8 xlarge:4:16 2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 16xlarge:64:256
m7i     large:2:8 xlarge:4:16 2xlarge:8:32 4xlarge:16:64 8xlarge:32:128 12xlarge:48:192 16xlarge:64:256
        24xlarge:96:384 48xlarge:192:768
p3      2xlarge:8:61 8xlarge:32:244 16xlarge:64:488
p4d     24xlarge:96:1152
p4de    24xlarge:96:1152
p5      48xlarge:192:2048
p5en    48xlarge:192:2048
p6-b200 48xlarge:192:2048
p6-b300 48xlarge:192:4096
r5      large:2:16 xlarge:4:32 2xlarge:8:64 4xlarge:16:128 12xlarge:48:384 24xlarge:96:768
r5d     large:2:16 xlarge:4:32 2xlarge:8:64 4xlarge:16:128 12xlarge:48:384 24xlarge:96:768
r6g     large:2:16 xlarge:4:32 2xlarge:8:64 4xlarge:16:128 8xlarge:32:256 12xlarge:48:384
        16xlarge:64:512
r6gd    large:2:16 xlarge:4:32 2xlarge:8:64 4xlarge:16:128 8xlarge:32:256 12xlarge:48:384
        16xlarge:64:512
r7i     large:2:16 xlarge:4:32 2xlarge:8:64 4xlarge:16:128 8xlarge:32:256 12xlarge:48:384
        16xlarge:64:512 24xlarge:96:768 48xlarge:192:1536
r8g     medium:1:8 large:2:16 xlarge:4:32 2xlarge:8:64 4xlarge:16:128 8xlarge:32:256 12xlarge:48:384
        16xlarge:64:512 24xlarge:96:768 48xlarge:192:1536
t2      medium:2:4 large:2:8 xlarge:4:16 2xlarge:8:32
trn1    2xlarge:8:32 32xlarge:128:512
trn1n   32xlarge:128:512
"""

SERVERLESS_MIB_PER_VCPU = 1769


@dataclass(frozen=True)
class InstanceSize:
    vcpus: float
    memory_mib: int


DEFAULT_SIZE = InstanceSize(vcpus=2, memory_mib=8 * 1024)


def _parse(table: str) -> dict[str, InstanceSize]:
    sizes: dict[str, InstanceSize] = {}
    family = ""
    for token in table.split():
        if ":" not in token:
            family = token
            continue
        size, vcpus, memory_gib = token.split(":")
        sizes[f"ml.{family}.{size}"] = InstanceSize(int(vcpus), round(float(memory_gib) * 1024))
    return sizes


INSTANCE_SIZES = _parse(_TABLE)


def instance_size(instance_type: str | None, serverless: dict[str, Any] | None = None) -> InstanceSize:
    """What a container of this instance type (or serverless variant) gets, before the machine caps it."""
    if serverless is not None:
        memory = int(serverless.get("MemorySizeInMB") or 2048)
        return InstanceSize(vcpus=max(1.0, round(memory / SERVERLESS_MIB_PER_VCPU, 2)), memory_mib=memory)
    if instance_type is None:
        return DEFAULT_SIZE
    size = INSTANCE_SIZES.get(instance_type)
    if size is None:
        log.warning(
            "instance type %s is not in emulator/fleet/instance_types.py; its containers get %g vCPU "
            "and %d MiB",
            instance_type,
            DEFAULT_SIZE.vcpus,
            DEFAULT_SIZE.memory_mib,
        )
        return DEFAULT_SIZE
    return size
