"""Crafted archives in moto's S3, driven through the emulator with plain boto3 as a user would.

A model.tar.gz the emulator refuses fails the endpoint with a FailureReason naming the member; a
gzipped transform input that inflates past the limit fails the job naming the object. A private
emulator runs this checkout's code with small limits (SAGEMAKER_EMULATOR_ARCHIVE_MAX_BYTES,
SAGEMAKER_EMULATOR_INPUT_MAX_BYTES), so the bombs stay small.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.emulator.emulator_support import PrivateEmulator, Resources, make_clients, tarball, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

Member = tuple[tarfile.TarInfo, bytes]


def _tar_gz(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(buffer.getvalue(), 9)


def _file(name: str, data: bytes = b"x") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def _filter_bypass_chain() -> list[Member]:
    """The CVE-2025-4517 shape (see tests/unit/test_archives.py): its first link is 'a'."""
    long_part, steps = "d" * 247, "abcdefghijklmnop"
    members: list[Member] = []
    prefix = ""
    for step in steps:
        folder = tarfile.TarInfo(os.path.join(prefix, long_part))
        folder.type = tarfile.DIRTYPE
        members += [(folder, b""), _special(os.path.join(prefix, step), tarfile.SYMTYPE, long_part)]
        prefix = os.path.join(prefix, long_part)
    deepest = os.path.join(*steps, "l" * 254)
    members.append(_special(deepest, tarfile.SYMTYPE, "../" * len(steps)))
    members.append(_special("escape", tarfile.SYMTYPE, deepest + "/../../../../etc"))
    members.append(_file("escape/cron.d/pwned", b"* * * * * root id\n"))
    return members


@pytest.fixture
def made(private_emulator: Callable[..., PrivateEmulator], bucket: str) -> Iterator[Resources]:
    emulator = private_emulator(
        SAGEMAKER_EMULATOR_STARTUP_TIMEOUT="30",
        SAGEMAKER_EMULATOR_ARCHIVE_MAX_BYTES=str(4 << 20),
        SAGEMAKER_EMULATOR_INPUT_MAX_BYTES=str(1 << 20),
    )
    resources = Resources(make_clients(emulator.client_env), bucket)
    yield resources
    resources.cleanup()


def test_crafted_model_archives_fail_their_endpoints_naming_the_member(
    made: Resources, double_image: str
) -> None:
    cases: dict[str, tuple[bytes, str]] = {
        "chain": (_tar_gz(*_filter_bypass_chain()), "member 'a' is a symbolic link (to 'ddd"),
        "hardlink": (
            _tar_gz(_file("config.json", b"{}"), _special("weights", tarfile.LNKTYPE, "/etc/shadow")),
            "member 'weights' is a hard link (to '/etc/shadow')",
        ),
        "fifo": (_tar_gz(_special("pipe", tarfile.FIFOTYPE)), "member 'pipe' is a FIFO"),
        "dotdot": (_tar_gz(_file("../../x.py")), "member '../../x.py' has '..' in its name"),
        "bomb": (
            _tar_gz(_file("config.json", b"{}"), _file("weights.bin", bytes(64 << 20))),
            f"member 'weights.bin' has {64 << 20} bytes, which would unpack past the limit of {4 << 20}",
        ),
    }
    assert len(cases["bomb"][0]) < 100_000
    endpoints = {
        case: made.endpoint(made.single(made.model(double_image, made.upload(body))))
        for case, (body, _) in cases.items()
    }
    healthy = made.endpoint(made.single(made.model(double_image, made.upload(tarball({"w.txt": b"w"})))))

    for case, name in endpoints.items():
        described = made.wait_status(name, "Failed", timeout=120)
        assert described["EndpointStatus"] == "Failed", case
        reason = described["FailureReason"]
        assert "Failed to prepare model data for container primary" in reason, reason
        assert "model data tarball is unsafe and was not unpacked" in reason, reason
        assert cases[case][1] in reason, reason
    assert made.wait_status(healthy, "InService", timeout=120)["EndpointStatus"] == "InService"
    answer = made.aws.runtime.invoke_endpoint(
        EndpointName=healthy, Body=b"{}", ContentType="application/json"
    )
    assert json.loads(answer["Body"].read())["model_files"] == {"w.txt": "w"}


def _wait_job(made: Resources, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = dict(made.aws.sagemaker.describe_transform_job(TransformJobName=name))
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        if time.monotonic() >= deadline:
            raise AssertionError(f"transform job {name} still {described['TransformJobStatus']}")
        time.sleep(0.3)


def _gzip_job(made: Resources, model: str, body: bytes) -> tuple[str, str]:
    prefix = unique("gz")
    key = f"{prefix}/in/records.jsonl.gz"
    made.aws.s3.put_object(Bucket=made.bucket, Key=key, Body=body)
    name = unique("transform")
    made.aws.sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{made.bucket}/{prefix}/in/"}
            },
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
            "CompressionType": "Gzip",
        },
        TransformOutput={"S3OutputPath": f"s3://{made.bucket}/{prefix}/out/", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    return name, f"s3://{made.bucket}/{key}"


def test_gzipped_transform_inputs_are_inflated_only_up_to_the_limit(
    made: Resources, double_image: str
) -> None:
    model = made.model(double_image)
    good, _ = _gzip_job(made, model, gzip.compress(b'{"n":1}\n{"n":2}\n'))
    bomb, bomb_uri = _gzip_job(made, model, gzip.compress(b'{"n":0}\n' * (1 << 18), 9))
    broken, broken_uri = _gzip_job(made, model, gzip.compress(b'{"n":1}\n')[:-12])

    assert _wait_job(made, good)["TransformJobStatus"] == "Completed"
    refused = _wait_job(made, bomb)
    assert refused["TransformJobStatus"] == "Failed"
    assert f"{bomb_uri} decompresses to more than {1 << 20} bytes" in refused["FailureReason"]
    assert "SAGEMAKER_EMULATOR_INPUT_MAX_BYTES" in refused["FailureReason"]
    unreadable = _wait_job(made, broken)
    assert unreadable["TransformJobStatus"] == "Failed"
    assert f"{broken_uri} ends before its gzip stream does" in unreadable["FailureReason"]
    assert "InternalServerError" not in unreadable["FailureReason"]
