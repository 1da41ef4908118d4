"""Every bad input to the release, rollback and cleanup command lines is refused before anything exists.

Each case runs a CLI's `main(argv)` in this process and checks the contract of a refusal: exit code 2,
the JSON summary (status `invalid`) as the last line of stdout, an error naming the field and its fix,
no traceback, and no AWS call that creates or changes anything. The flows themselves are replaced by
a recorder: a refused input must never reach them.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
import yaml

from flows import cleanup, release, rollback
from tasks.lifecycle.lock import LEASE_STORAGE_ENV, SHARED_LEASE_STORAGE

REPO = Path(__file__).resolve().parents[3]
READ_ONLY = ("Describe", "List", "Get", "Head")

BASE: dict[str, Any] = {
    "role_arn": "arn:aws:iam::123456789012:role/SageMakerExecution",
    "model": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main"},
    "storage": {"bucket": "sagemaker-release-demo", "create_bucket": True},
    "image": {"source": "build", "context": str(REPO / "container")},
    "endpoint": {"name": "demo-embedder", "instance_type": "ml.m5.large"},
}


def changed(**sections: Any) -> dict[str, Any]:
    """BASE with `sections` merged in one level deep (a non-dict value replaces the section)."""
    data = copy.deepcopy(BASE)
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name].update(values)
        else:
            data[name] = values
    return data


Setup = Callable[[Path, pytest.MonkeyPatch], list[str]]


@dataclass(frozen=True)
class Case:
    name: str
    command: str  # release | rollback | cleanup
    argv: Setup
    field: str


def config_file(tmp: Path, content: dict[str, Any] | str | bytes, name: str = "release.yaml") -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def released(content: dict[str, Any] | str | bytes, *extra: str) -> Setup:
    """`python -m flows.release --config <content> --release-id r1 <extra>`."""

    def argv(tmp: Path, _: pytest.MonkeyPatch) -> list[str]:
        return ["--config", str(config_file(tmp, content)), "--release-id", "r1", *extra]

    return argv


def args(*given: str) -> Setup:
    """Arguments as given, with {tmp} standing for the test's temporary folder."""

    def argv(tmp: Path, _: pytest.MonkeyPatch) -> list[str]:
        return [a.replace("{tmp}", str(tmp)) for a in given]

    return argv


def base_with(*extra: str) -> Setup:
    """The valid BASE config with release flags `extra`."""
    return released(BASE, *extra)


def release_case(name: str, content: dict[str, Any] | str | bytes, field: str) -> Case:
    return Case(name, "release", released(content), field)


def unreadable_config(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    # Tests run as root, for whom chmod 000 changes nothing: make opening this one file fail instead.
    target = config_file(tmp, BASE)
    real_open = Path.open

    def refusing_open(self: Path, *a: Any, **k: Any) -> Any:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **k)

    monkeypatch.setattr(Path, "open", refusing_open)
    return ["--config", str(target)]


def oversized_config(tmp: Path, _: pytest.MonkeyPatch) -> list[str]:
    path = tmp / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(9 * 2**20)
    return ["--config", str(path)]


def a_file_as_model_folder(tmp: Path, _: pytest.MonkeyPatch) -> list[str]:
    (tmp / "weights.bin").write_bytes(b"\0")
    model = {"repo_id": None, "local_path": str(tmp / "weights.bin")}
    return ["--config", str(config_file(tmp, changed(model=model)))]


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6)
)
DUPLICATE_TOP = yaml.safe_dump(BASE) + "role_arn: arn:aws:iam::123456789012:role/Other\n"
DUPLICATE_NESTED = yaml.safe_dump(BASE).replace(
    "  name: demo-embedder\n", "  name: demo-embedder\n  name: other-embedder\n"
)

CASES: list[Case] = [
    # -- config values: booleans and fractions are not counts, non-finite numbers are not bounds ----
    release_case(
        "instance_count true", changed(endpoint={"instance_count": True}), "endpoint.instance_count"
    ),
    release_case("instance_count 1.5", changed(endpoint={"instance_count": 1.5}), "endpoint.instance_count"),
    release_case("instance_count text", changed(endpoint={"instance_count": "2"}), "endpoint.instance_count"),
    release_case("scaling enabled 1", changed(scaling={"enabled": 1}), "scaling.enabled"),
    release_case("max_capacity false", changed(scaling={"max_capacity": False}), "scaling.max_capacity"),
    release_case("packaging threads true", changed(packaging={"threads": True}), "packaging.threads"),
    release_case(
        "max_concurrency false", changed(storage={"max_concurrency": False}), "storage.max_concurrency"
    ),
    release_case("smoke repeat 2.5", changed(smoke={"repeat": 2.5}), "smoke.repeat"),
    release_case("expect_status text", changed(smoke={"expect_status": "200"}), "smoke.expect_status"),
    release_case(
        "expect_shape bool item", changed(smoke={"expect_shape": [1, True]}), "smoke.expect_shape[1]"
    ),
    release_case(
        "serverless memory true",
        changed(endpoint={"type": "serverless", "serverless": {"memory_mb": True}}),
        "endpoint.serverless.memory_mb",
    ),
    release_case(
        "alarm period 60.5", changed(rollout={"alarms": {"period_s": 60.5}}), "rollout.alarms.period_s"
    ),
    release_case(
        "target invocations true",
        changed(scaling={"target_invocations_per_instance": True}),
        "scaling.target_invocations_per_instance",
    ),
    release_case("max latency inf", changed(smoke={"max_latency_ms": float("inf")}), "smoke.max_latency_ms"),
    release_case("max latency nan", changed(smoke={"max_latency_ms": float("nan")}), "smoke.max_latency_ms"),
    release_case(
        "p99 alarm inf",
        changed(rollout={"alarms": {"max_p99_latency_ms": float("inf")}}),
        "rollout.alarms.max_p99_latency_ms",
    ),
    release_case(
        "poll interval -inf", changed(timeouts={"poll_interval_s": float("-inf")}), "timeouts.poll_interval_s"
    ),
    release_case(
        "bake rate inf",
        changed(rollout={"bake_traffic": {"rate_per_s": float("inf")}}),
        "rollout.bake_traffic.rate_per_s",
    ),
    release_case(
        "payload nan", changed(smoke={"payloads": [{"x": [1.0, float("nan")]}]}), "smoke.payloads[0]"
    ),
    # -- rollout fields the strategy ignores --------
    release_case("steps with all_at_once", changed(rollout={"steps": [10, 100]}), "rollout.steps"),
    release_case(
        "linear step with canary",
        changed(rollout={"strategy": "canary", "linear_step_percent": 50}),
        "rollout.linear_step_percent",
    ),
    release_case(
        "canary percent with linear",
        changed(rollout={"strategy": "linear", "canary_percent": 20}),
        "rollout.canary_percent",
    ),
    release_case(
        "linear step with auto",
        changed(rollout={"strategy": "auto", "linear_step_percent": 50}),
        "rollout.linear_step_percent",
    ),
    release_case(
        "canary percent with all_at_once", changed(rollout={"canary_percent": 20}), "rollout.canary_percent"
    ),
    release_case(
        "steps bool item",
        changed(rollout={"strategy": "variant_shift", "steps": [True, 100]}),
        "rollout.steps[0]",
    ),
    # -- SageMaker's deployment guardrails --------
    release_case(
        "linear step 5%",
        changed(endpoint={"instance_count": 20}, rollout={"strategy": "linear", "linear_step_percent": 5}),
        "rollout.linear_step_percent",
    ),
    release_case(
        "canary above half",
        changed(endpoint={"instance_count": 4}, rollout={"strategy": "canary", "canary_percent": 75}),
        "rollout.canary_percent",
    ),
    release_case(
        "linear waits past 8 h",
        changed(
            endpoint={"instance_count": 20},
            rollout={"strategy": "linear", "linear_step_percent": 10, "bake_s": 3600},
        ),
        "rollout.bake_s",
    ),
    release_case(
        "canary on serverless",
        changed(endpoint={"type": "serverless"}, rollout={"strategy": "canary"}),
        "rollout.strategy",
    ),
    release_case("strategy unknown", changed(rollout={"strategy": "blue-green"}), "rollout.strategy"),
    release_case(
        "percentile unknown", changed(smoke={"latency_percentile": "p42"}), "smoke.latency_percentile"
    ),
    # -- YAML itself --------
    release_case("duplicate top-level key", DUPLICATE_TOP, "role_arn"),
    release_case("duplicate nested key", DUPLICATE_NESTED, "endpoint.name"),
    release_case("billion laughs", yaml.safe_dump(BASE) + LAUGHS, "config"),
    release_case("alias of itself", yaml.safe_dump(BASE) + "loop: &l [*l]\n", "loop[0]"),
    release_case("yaml syntax", "endpoint:\n  name: [unclosed\n", "config"),
    release_case("not a mapping", "- a\n- b\n", "config"),
    release_case("empty file", "", "config"),
    release_case("unknown section", changed(scailng={"enabled": True}), "scailng"),
    release_case("unknown key", changed(endpoint={"instance_typ": "ml.m5.large"}), "endpoint.instance_typ"),
    release_case("deeply nested", "a: " + "[" * 5000 + "]" * 5000 + "\n", "config"),
    # -- bucket names S3 refuses, wherever a bucket is named --------
    release_case("bucket xn--", changed(storage={"bucket": "xn--models"}), "storage.bucket"),
    release_case("bucket -s3alias", changed(storage={"bucket": "models-s3alias"}), "storage.bucket"),
    release_case("bucket --ol-s3", changed(storage={"bucket": "models--ol-s3"}), "storage.bucket"),
    release_case("bucket sthree-", changed(storage={"bucket": "sthree-models"}), "storage.bucket"),
    release_case(
        "bucket sthree-configurator", changed(storage={"bucket": "sthree-configurator"}), "storage.bucket"
    ),
    release_case(
        "bucket amzn-s3-demo-", changed(storage={"bucket": "amzn-s3-demo-models"}), "storage.bucket"
    ),
    release_case("bucket --x-s3", changed(storage={"bucket": "models--use1-az4--x-s3"}), "storage.bucket"),
    release_case("bucket --table-s3", changed(storage={"bucket": "models--table-s3"}), "storage.bucket"),
    release_case("bucket uppercase", changed(storage={"bucket": "Models"}), "storage.bucket"),
    release_case("bucket ip address", changed(storage={"bucket": "10.0.0.1"}), "storage.bucket"),
    release_case(
        "async output xn--",
        changed(endpoint={"type": "async", "async_inference": {"output_path": "s3://xn--out/o/"}}),
        "endpoint.async_inference.output_path",
    ),
    release_case(
        "async failure --ol-s3",
        changed(
            endpoint={
                "type": "async",
                "async_inference": {"output_path": "s3://outputs/o/", "failure_path": "s3://f--ol-s3/f/"},
            }
        ),
        "endpoint.async_inference.failure_path",
    ),
    release_case(
        "batch input -s3alias",
        changed(
            endpoint={
                "type": "batch",
                "batch": {"input_path": "s3://in-s3alias/i/", "output_path": "s3://outputs/o/"},
            }
        ),
        "endpoint.batch.input_path",
    ),
    release_case(
        "batch output sthree-",
        changed(
            endpoint={
                "type": "batch",
                "batch": {"input_path": "s3://inputs/i/", "output_path": "s3://sthree-out/o/"},
            }
        ),
        "endpoint.batch.output_path",
    ),
    # -- what SageMaker refuses after the upload, the build and CreateModel (issue #15) --------
    release_case(
        "s3_prefix on serverless",
        changed(packaging={"format": "s3_prefix"}, endpoint={"type": "serverless"}),
        "packaging.format",
    ),
    release_case(
        "s3_prefix on batch",
        changed(
            packaging={"format": "s3_prefix"},
            endpoint={
                "type": "batch",
                "batch": {"input_path": "s3://inputs/i/", "output_path": "s3://outputs/o/"},
            },
        ),
        "packaging.format",
    ),
    release_case(
        "batch 120 MB in flight",
        changed(
            endpoint={
                "type": "batch",
                "batch": {
                    "input_path": "s3://inputs/i/",
                    "output_path": "s3://outputs/o/",
                    "max_concurrent_transforms": 20,
                    "max_payload_mb": 6,
                },
            }
        ),
        "endpoint.batch.max_concurrent_transforms",
    ),
    release_case(
        "batch environment of 17",
        changed(
            endpoint={
                "type": "batch",
                "batch": {"input_path": "s3://inputs/i/", "output_path": "s3://outputs/o/"},
                "environment": {f"VAR_{i}": "x" for i in range(17)},
            }
        ),
        "endpoint.environment",
    ),
    release_case("tag key with #", changed(tags={"team#1": "ml"}), "tags"),
    release_case("tag value with comma", changed(tags={"team": "ml,nlp"}), "tags"),
    # -- Hub revisions --------
    release_case("revision ..", changed(model={"revision": "main..evil"}), "model.revision"),
    release_case("revision newline", changed(model={"revision": "main\n"}), "model.revision"),
    release_case("revision tab", changed(model={"revision": "ma\tin"}), "model.revision"),
    release_case("revision control char", changed(model={"revision": "ma\x01in"}), "model.revision"),
    release_case("revision space", changed(model={"revision": "v1 .0"}), "model.revision"),
    release_case("revision trailing slash", changed(model={"revision": "refs/pr/"}), "model.revision"),
    release_case("revision .lock", changed(model={"revision": "feature.lock"}), "model.revision"),
    release_case("revision as number", changed(model={"revision": 2024}), "model.revision"),
    # -- local folders and the base image --------
    release_case(
        "model folder missing",
        changed(model={"repo_id": None, "local_path": "/nonexistent/model"}),
        "model.local_path",
    ),
    Case("model folder is a file", "release", a_file_as_model_folder, "model.local_path"),
    release_case(
        "build context missing", changed(image={"context": "/nonexistent/context"}), "image.context"
    ),
    release_case("dockerfile missing", changed(image={"dockerfile": "Nope.Dockerfile"}), "image.dockerfile"),
    release_case("base image with space", changed(image={"base_image": "python 3.11"}), "image.base_image"),
    release_case("base image uppercase", changed(image={"base_image": "Python:3.11"}), "image.base_image"),
    release_case("base image empty tag", changed(image={"base_image": "python:"}), "image.base_image"),
    release_case(
        "base image url", changed(image={"base_image": "https://example.com/x"}), "image.base_image"
    ),
    # -- the config file itself --------
    Case("config is a folder", "release", args("--config", "{tmp}"), "--config"),
    Case("config missing", "release", args("--config", "{tmp}/absent.yaml"), "--config"),
    Case("config under a file", "release", args("--config", str(REPO / "README.md") + "/x.yaml"), "--config"),
    Case("config unreadable", "release", unreadable_config, "--config"),
    Case("config not a regular file", "release", args("--config", os.devnull), "--config"),
    Case("config too large", "release", oversized_config, "--config"),
    release_case("config not utf-8", yaml.safe_dump(BASE).encode() + b"tags: {team: caf\xe9}\n", "--config"),
    # -- release flags --------
    Case("release id uppercase", "release", base_with("--release-id", "Release_1"), "--release-id"),
    Case("release id empty", "release", base_with("--release-id", ""), "--release-id"),
    Case("release id too long", "release", base_with("--release-id", "r" * 33), "--release-id"),
    Case("release id newline", "release", base_with("--release-id", "r1\nr2"), "--release-id"),
    Case("set unclosed", "release", base_with("--set", "smoke.payloads=[unclosed"), "smoke.payloads"),
    Case("set without =", "release", base_with("--set", "endpoint.instance_count"), "--set"),
    Case("set empty key", "release", base_with("--set", "=2"), "--set"),
    Case("set bad key", "release", base_with("--set", "endpoint..name=x"), "--set"),
    Case("set list index", "release", base_with("--set", "smoke.payloads[0]=x"), "--set"),
    Case(
        "set bool count",
        "release",
        base_with("--set", "endpoint.instance_count=true"),
        "endpoint.instance_count",
    ),
    Case("set inside a value", "release", base_with("--set", "endpoint.name.x=1"), "endpoint.name.x"),
    Case(
        "set twice",
        "release",
        base_with("--set", "endpoint.instance_count=2", "--set", "endpoint.instance_count=3"),
        "endpoint.instance_count",
    ),
    Case("set inf", "release", base_with("--set", "smoke.max_latency_ms=.inf"), "smoke.max_latency_ms"),
    Case("set reserved bucket", "release", base_with("--set", "storage.bucket=xn--b"), "storage.bucket"),
    Case("set alias of itself", "release", base_with("--set", "smoke.payloads=&a [*a]"), "smoke.payloads[0]"),
    Case("set unknown field", "release", base_with("--set", "endpoint.flavour=1"), "endpoint.flavour"),
    Case("set revision ..", "release", base_with("--set", "model.revision=a..b"), "model.revision"),
    Case("wait for lock negative", "release", base_with("--wait-for-lock", "-1"), "--wait-for-lock"),
    Case("wait for lock text", "release", base_with("--wait-for-lock", "soon"), "--wait-for-lock"),
    Case("wait for lock fraction", "release", base_with("--wait-for-lock", "1.5"), "--wait-for-lock"),
    Case("release without config", "release", args("--release-id", "r1"), "--config"),
    Case("release unknown flag", "release", base_with("--frobnicate"), "--frobnicate"),
    Case("config flag without value", "release", args("--config"), "--config"),
    # -- rollback flags --------
    Case("rollback bad endpoint", "rollback", args("demo_embedder"), "ENDPOINT"),
    Case("rollback endpoint too long", "rollback", args("e" * 64), "ENDPOINT"),
    Case("rollback endpoint newline", "rollback", args("demo\n"), "ENDPOINT"),
    Case("rollback bad config name", "rollback", args("demo", "--to", "old config"), "--to"),
    Case("rollback timeout zero", "rollback", args("demo", "--timeout", "0"), "--timeout"),
    Case("rollback timeout text", "rollback", args("demo", "--timeout", "long"), "--timeout"),
    Case("rollback timeout huge", "rollback", args("demo", "--timeout", "999999"), "--timeout"),
    Case("rollback poll nan", "rollback", args("demo", "--poll", "nan"), "--poll"),
    Case("rollback poll inf", "rollback", args("demo", "--poll", "inf"), "--poll"),
    Case("rollback poll zero", "rollback", args("demo", "--poll", "0"), "--poll"),
    Case("rollback lock negative", "rollback", args("demo", "--wait-for-lock", "-5"), "--wait-for-lock"),
    Case("rollback without endpoint", "rollback", args(), "ENDPOINT"),
    Case("rollback unknown flag", "rollback", args("demo", "--force"), "--force"),
    # -- cleanup flags --------
    Case("cleanup bad release id", "cleanup", args("Bad_Id", "--bucket", "ledgers"), "RELEASE_ID"),
    Case("cleanup bucket xn--", "cleanup", args("r1", "--bucket", "xn--ledgers"), "--bucket"),
    Case("cleanup bucket s3 uri", "cleanup", args("r1", "--bucket", "s3://ledgers"), "--bucket"),
    Case("cleanup bad prefix", "cleanup", args("r1", "--bucket", "ledgers", "--prefix", "/sr/"), "--prefix"),
    Case("cleanup without bucket", "cleanup", args("r1"), "--bucket"),
    Case("cleanup without release", "cleanup", args("--bucket", "ledgers"), "RELEASE_ID"),
    Case(
        "cleanup release and orphans", "cleanup", args("r1", "--orphans", "--bucket", "ledgers"), "RELEASE_ID"
    ),
    Case(
        "cleanup delete without orphans", "cleanup", args("r1", "--bucket", "ledgers", "--delete"), "--delete"
    ),
    Case(
        "cleanup force with orphans",
        "cleanup",
        args("--orphans", "--force", "--bucket", "ledgers"),
        "--force",
    ),
    Case("cleanup config is a folder", "cleanup", args("r1", "--config", "{tmp}"), "--config"),
    Case("cleanup unknown flag", "cleanup", args("r1", "--bucket", "ledgers", "--all"), "--all"),
]


@contextmanager
def recorded_aws_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every AWS operation called inside the block, by name; one that is not a read fails on exit."""
    calls: list[str] = []
    real = botocore.client.BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: Any) -> Any:
        calls.append(operation_name)
        return real(self, operation_name, api_params)

    with monkeypatch.context() as patch:
        patch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
        yield calls
    changes = [name for name in calls if not name.startswith(READ_ONLY)]
    assert not changes, f"calls that create or change something reached AWS: {changes}"


@pytest.fixture
def aws_calls(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    with recorded_aws_calls(monkeypatch) as calls:
        yield calls


@pytest.fixture
def flows_reached(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-ins for the flows that record being called; a refused input must not reach any."""
    reached: list[str] = []

    def stand_in(name: str) -> Callable[..., Any]:
        def flow(*_: Any, **__: Any) -> Any:
            reached.append(name)
            raise AssertionError(f"flow {name} was reached")

        return flow

    monkeypatch.setattr(release, "release", stand_in("release"))
    monkeypatch.setattr(rollback, "rollback", stand_in("rollback"))
    monkeypatch.setattr(cleanup, "cleanup", stand_in("cleanup"))
    monkeypatch.setattr(cleanup, "cleanup_orphans", stand_in("cleanup_orphans"))
    # main() points Prefect's lease storage at a shared folder; keep that setting to this test.
    monkeypatch.setenv(LEASE_STORAGE_ENV, os.environ.get(LEASE_STORAGE_ENV, SHARED_LEASE_STORAGE))
    return reached


MAINS: dict[str, Callable[[list[str] | None], int]] = {
    "release": lambda argv: release.main(argv),
    "rollback": lambda argv: rollback.main(argv),
    "cleanup": lambda argv: cleanup.main(argv),
}


def test_the_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 80
    assert len({case.name for case in CASES}) == len(CASES)
    assert {case.command for case in CASES} == set(MAINS)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_before_anything_is_created(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    aws_calls: list[str],
    flows_reached: list[str],
) -> None:
    argv = case.argv(tmp_path, monkeypatch)
    code = MAINS[case.command](argv)
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 2, f"{case.name}: exit {code}, summary {summary}"
    assert (summary["status"], summary["field"]) == ("invalid", case.field), summary
    error = summary["error"]
    # The field heads its issue: after the source ("file.yaml: "), or first after "invalid …: ".
    assert re.search(rf"(?:\.yaml: |command line: |release config: ){re.escape(case.field)}: ", error), error
    problem_and_fix = error.split(f"{case.field}:", 1)[1]
    assert "; fix: " in problem_and_fix and problem_and_fix.split("; fix: ", 1)[1].strip(), error
    assert "Traceback" not in err and "Traceback" not in out
    assert flows_reached == []


def test_a_valid_command_line_reaches_its_flow(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    aws_calls: list[str],
    flows_reached: list[str],
) -> None:
    """The control case: without the bad input, the same setup gets past validation to the flow (so
    the table's refusals come from the input, not from the harness)."""
    release.main(base_with("--set", "endpoint.instance_count=2")(tmp_path, monkeypatch))
    rollback.main(["demo-embedder", "--to", "demo-embedder-r0", "--poll", "0.5"])
    cleanup.main(["r1", "--bucket", "ledgers"])
    cleanup.main(["--orphans", "--delete", "--bucket", "ledgers"])
    assert flows_reached == ["release", "rollback", "cleanup", "cleanup_orphans"]
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert {line["status"] for line in lines} == {"failed"}


def test_the_recorder_fails_a_call_that_changes_aws(
    mocked_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recording fake is not blind: reads pass, a create is reported."""
    refused = pytest.raises(AssertionError, match=r"\['CreateBucket'\]")
    with refused, recorded_aws_calls(monkeypatch) as calls:
        s3 = boto3.client("s3")
        s3.list_buckets()
        s3.create_bucket(Bucket="made-by-mistake")
        assert calls == ["ListBuckets", "CreateBucket"]
    with recorded_aws_calls(monkeypatch) as calls:
        boto3.client("s3").head_bucket(Bucket="made-by-mistake")
    assert calls == ["HeadBucket"]
