"""The release's autoscaling step, checked by what it does rather than by what it registers.

Each test releases MiniLM for real to a private SageMaker emulator at time scale 30 (AWS's minute lasts
2 s there, so a 15-minute scale-in takes 30 s), sharing the stack's moto, registry and Hub:

* a real-time release whose bake traffic outgrows one instance scales 1 -> 2 during its bake, and back to 1
  when the traffic drops; its artifact lists the policy and the alarms Application Auto Scaling made;
* an async release idles down to 0 instances; the next (unchanged) release's smoke test wakes it through the
  scale-from-zero alarm and waits for the instance; with nothing registered to wake it, the smoke test
  fails at once, saying so, and the endpoint is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from tasks.core import aws
from tests.e2e.progressive_models import release_artifact
from tests.e2e.release_support import E2E, run_release, wait_for
from tests.emulator.emulator_support import PrivateEmulator
from tests.emulator.scaling_support import DIMENSION, Traffic, activities

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

TIME_SCALE = "30"


@pytest.fixture
def scaled_stack(
    e2e: E2E, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrivateEmulator]:
    """A private emulator at time scale 30; the release's SageMaker, runtime and Application Auto Scaling
    clients reach it (S3, ECR, CloudWatch stay on the stack's moto). Its endpoints and registrations go
    with it."""
    emulator = PrivateEmulator(tmp_path_factory.mktemp("scaled"), e2e.env, EMULATOR_TIME_SCALE=TIME_SCALE)
    emulator.start()
    for name, value in emulator.client_env.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    try:
        yield emulator
    finally:
        _remove_endpoints(emulator)
        emulator.stop()
        emulator.remove_containers()
        aws.reset_clients()


def _remove_endpoints(emulator: PrivateEmulator) -> None:
    sagemaker = boto3.client("sagemaker", endpoint_url=emulator.client_env["AWS_ENDPOINT_URL_SAGEMAKER"])
    autoscaling = boto3.client(
        "application-autoscaling",
        endpoint_url=emulator.client_env["AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING"],
    )
    for endpoint in sagemaker.list_endpoints()["Endpoints"]:
        name = endpoint["EndpointName"]
        # Deregistering deletes the policies, and with them the TargetTracking alarms in moto.
        targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        for target in targets:
            if target["ResourceId"].startswith(f"endpoint/{name}/"):
                autoscaling.deregister_scalable_target(
                    ServiceNamespace="sagemaker", ResourceId=target["ResourceId"], ScalableDimension=DIMENSION
                )
        # A scaling activity may still be running: DeleteEndpoint refuses an Updating endpoint.
        wait_for(
            f"{name} at rest before its deletion",
            lambda name=name: sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] != "Updating",
            timeout_s=120,
        )
        sagemaker.delete_endpoint(EndpointName=name)


def _instances(endpoint: str) -> int:
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    return sum(int(v.get("CurrentInstanceCount") or 0) for v in described["ProductionVariants"])


def _settled_at(endpoint: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
        return described["EndpointStatus"] == "InService" and _instances(endpoint) == count

    return check


def test_realtime_release_scales_out_under_its_bake_traffic_and_back_in(
    e2e: E2E, scaled_stack: PrivateEmulator
) -> None:
    endpoint = e2e.endpoint("scaling-realtime")
    release_id = f"e2e-{e2e.token}-scaling-realtime"
    # At time scale 30 a period is 2 s: 4 requests/s are 8 invocations per instance per period, twice the
    # target of 4, so target tracking asks for ceil(8 / 4) = 2 instances.
    config = e2e.config(
        endpoint,
        release_id=release_id,
        scaling={
            "min_capacity": 1,
            "max_capacity": 2,
            "target_invocations_per_instance": 4,
            "scale_out_cooldown_s": 30,
            "scale_in_cooldown_s": 60,
        },
        smoke={"repeat": 1},
        rollout={
            "final_bake_s": 45,
            "bake_traffic": {"rate_per_s": 4},
            # Enhanced 10 s metrics: a bake must outlast the alarm's period and CloudWatch's delay.
            "alarms": {"max_p99_latency_ms": 30000, "period_s": 10},
        },
    )
    ok, summary = run_release(config)
    assert ok, summary["error"]
    assert summary["action"] == "created"
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    tracking = f"{endpoint}-{release_id}-invocations"

    # During the bake: one scale-out to 2, by the release's own policy, finished before the release did.
    autoscaling = boto3.client("application-autoscaling")
    listed = activities(autoscaling, resource_id)
    scale_out = [a for a in listed if a["Description"] == "Setting desired instance count to 2."]
    assert scale_out, [a["Description"] for a in listed]
    assert tracking in scale_out[-1]["Cause"] and "-AlarmHigh-" in scale_out[-1]["Cause"]
    assert scale_out[-1]["StatusCode"] == "Successful"
    assert summary["rollout"]["steps"][0]["bake_requests"] > 0  # the bake traffic went through the endpoint

    # The traffic drops to a trickle: 15 low periods (30 s) later, back to one instance.
    runtime = boto3.client("sagemaker-runtime")
    with Traffic(runtime, endpoint, rate=0.5, body=b'{"inputs": "a trickle"}') as trickle:
        wait_for("the scale-in back to 1 instance", _settled_at(endpoint, 1), timeout_s=150, interval_s=1)
    assert not trickle.errors, trickle.errors[:3]
    scale_in = [a for a in activities(autoscaling, resource_id) if a["Description"].endswith("count to 1.")]
    assert scale_in and "-AlarmLow-" in scale_in[0]["Cause"], scale_in

    # The artifact and the summary name the policy and the alarms it made.
    scaling = summary["scaling"]
    assert (scaling["resource_id"], scaling["min_capacity"], scaling["max_capacity"]) == (resource_id, 1, 2)
    assert scaling["policies"] == [tracking]
    (high,) = [
        name for name in scaling["alarms"] if name.startswith(f"TargetTracking-{resource_id}-AlarmHigh-")
    ]
    (low,) = [
        name for name in scaling["alarms"] if name.startswith(f"TargetTracking-{resource_id}-AlarmLow-")
    ]
    shown = release_artifact(endpoint, release_id)
    assert "## Autoscaling" in shown and "**1-2 instances** (registered by this release)" in shown
    assert f"| `{tracking}` | TargetTrackingScaling | SageMakerVariantInvocationsPerInstance at 4 " in shown
    assert f"`{high}` | `{tracking}` | InvocationsPerInstance > 4 for 3 of 3 periods of 60 s |" in shown
    assert f"`{low}` | `{tracking}` | InvocationsPerInstance < 3.6 for 15 of 15 periods of 60 s |" in shown


def test_async_release_idles_to_zero_and_its_next_smoke_test_waits_for_the_scale_from_zero(
    e2e: E2E, scaled_stack: PrivateEmulator
) -> None:
    endpoint = e2e.endpoint("scaling-async")
    output = f"s3://{e2e.bucket}/async/{endpoint}"

    def config(release: str, *, scaling_enabled: bool = True) -> Any:
        return e2e.config(
            endpoint,
            release_id=f"e2e-{e2e.token}-{release}",
            endpoint={
                "type": "async",
                "async_inference": {
                    "output_path": f"{output}/out/",
                    "failure_path": f"{output}/failed/",
                    "max_concurrent_invocations_per_instance": 2,
                },
            },
            scaling={
                "enabled": scaling_enabled,
                "min_capacity": 0,
                "max_capacity": 2,
                "target_backlog_per_instance": 3,
                "scale_out_cooldown_s": 30,
                "scale_in_cooldown_s": 60,
            },
            smoke={"repeat": 1, "latency_percentile": "max", "timeout_s": 60, "max_latency_ms": 30000},
        )

    ok, summary = run_release(config("zero-first"))
    assert ok, summary["error"]
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    assert summary["scaling"]["alarms"], summary["scaling"]  # backlog tracking alarms and scale-from-zero
    # SageMaker publishes an async endpoint's 5xx errors and ModelLatency: it gets guard alarms too.
    guards = summary["rollout"]["guard_alarms"]
    assert [name.rsplit("-", 1)[-1] for name in guards] == ["5xx", "latency"], guards

    # Idle: the backlog tracking policy takes it to zero instances.
    wait_for("the idle async endpoint at 0 instances", _settled_at(endpoint, 0), timeout_s=150, interval_s=1)

    # The nightly redeploy: nothing changed, and the smoke test's requests wake the endpoint.
    ok, again = run_release(config("zero-nightly"))
    assert ok, again["error"]
    assert again["action"] == "unchanged"
    assert again["smoke"]["passed"] is True and again["smoke"]["n"] == 2
    assert again["scaling"]["changed"] is False  # the first release's policies stay; nothing churned
    assert again["scaling"]["policies"] == summary["scaling"]["policies"]
    woke = [
        a
        for a in activities(boto3.client("application-autoscaling"), resource_id)
        if "scale-from-zero" in a["Cause"] and a["Description"] == "Setting desired instance count to 1."
    ]
    assert woke and woke[0]["StatusCode"] == "Successful", woke

    # Nothing registered to wake it: the smoke test says so at once, and the endpoint is left as it was.
    wait_for("the endpoint back at 0 instances", _settled_at(endpoint, 0), timeout_s=150, interval_s=1)
    boto3.client("application-autoscaling").deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIMENSION
    )
    ok, stuck = run_release(config("zero-unscaled", scaling_enabled=False))
    assert not ok and stuck["status"] == "failed"
    assert "nothing scales" in stuck["error"] and "scaling.scale_from_zero" in stuck["error"], stuck["error"]
    assert stuck["smoke"]["n"] == 0  # no request was left queued for an instance that never comes
    assert boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"


def test_a_release_onto_a_scaled_out_endpoint_keeps_its_capacity(e2e: E2E) -> None:
    """Autoscaling took the endpoint to 2 instances; a release whose config says 1 replaces the fleet with
    2 (a blue/green of the config's count would halve the capacity under load), and the next, unchanged
    release does not call the capacity a difference."""
    endpoint = e2e.endpoint("capacity")
    scaling = {"min_capacity": 1, "max_capacity": 3}

    def config(release: str, greeting: str) -> Any:
        return e2e.config(
            endpoint,
            release_id=f"e2e-{e2e.token}-{release}",
            endpoint={"environment": {"GREETING": greeting}},
            scaling=scaling,
            smoke={"repeat": 1},
        )

    ok, first = run_release(config("cap-first", "one"))
    assert ok, first["error"]
    # An operator's (or a policy's) scale-out: the emulator's Application Auto Scaling starts a second one.
    resource_id = f"endpoint/{endpoint}/variant/AllTraffic"
    autoscaling = boto3.client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        MinCapacity=2,
        MaxCapacity=3,
    )
    wait_for("the scale-out to 2 instances", _settled_at(endpoint, 2), timeout_s=120, interval_s=1)

    ok, second = run_release(config("cap-second", "two"))
    assert ok, second["error"]
    assert second["action"] == "updated"
    assert "the capacity autoscaling keeps" in second["rollout"]["reason"], second["rollout"]["reason"]
    variants = boto3.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=second["endpoint_config_name"]
    )["ProductionVariants"]
    assert [v["InitialInstanceCount"] for v in variants] == [2]
    assert _instances(endpoint) == 2  # never fewer than before the release
    assert second["scaling"]["min_capacity"] == 1  # the release's own registration is back

    ok, third = run_release(config("cap-third", "two"))
    assert ok, third["error"]
    assert third["action"] == "unchanged"  # 2 instances where the config says 1 is not a change
