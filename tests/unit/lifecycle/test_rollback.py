"""Rolling an endpoint back to its previous release, found from the release tags of its configs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.core import aws
from tasks.core.errors import ResourceFailed
from tasks.lifecycle.rollback import NoPreviousRelease, previous_release, release_configs, roll_back
from tests.unit.rollout_fakes import FakeSageMaker, StepClock, release_tags, sagemaker_double, variant

ENDPOINT = "demo-embedder"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, mocked_aws: None) -> Iterator[FakeSageMaker]:
    double = FakeSageMaker()
    double.add_config("demo-embedder-r1", variant("model-r1"), release_tags("r1"))
    double.add_config("hand-made-config", variant("model-x"))  # not a release's: never a target
    double.add_config("demo-embedder-r2", variant("model-r2"), release_tags("r2"))
    double.add_config(
        "demo-embedder-r3-shift", variant("model-r3"), release_tags("r3", purpose="rollout-staging")
    )
    double.add_config("demo-embedder-r3", variant("model-r3"), release_tags("r3"))
    double.add_config("demo-embedder-2-r9", variant("model-other"), release_tags("r9", "demo-embedder-2"))
    double.add_endpoint(ENDPOINT, "demo-embedder-r3")
    with sagemaker_double(monkeypatch, double):
        yield double


def test_release_configs_are_found_by_their_tags(fake: FakeSageMaker) -> None:
    found = release_configs(ENDPOINT)
    assert [(ref.name, ref.release_id, ref.staging) for ref in found] == [
        ("demo-embedder-r1", "r1", False),
        ("demo-embedder-r2", "r2", False),
        ("demo-embedder-r3-shift", "r3", True),
        ("demo-embedder-r3", "r3", False),
    ]


def test_the_previous_release_skips_staging_configs_and_deleted_models(fake: FakeSageMaker) -> None:
    assert previous_release(ENDPOINT, "demo-embedder-r3").name == "demo-embedder-r2"
    fake.deleted_models.add("model-r2")
    assert previous_release(ENDPOINT, "demo-embedder-r3").name == "demo-embedder-r1"
    fake.deleted_models.add("model-r1")
    with pytest.raises(NoPreviousRelease) as raised:
        previous_release(ENDPOINT, "demo-embedder-r3")
    assert "model-r2 was deleted" in str(raised.value) and "--to" in str(raised.value)


def test_roll_back_updates_to_the_previous_config_and_waits(fake: FakeSageMaker) -> None:
    result = roll_back(ENDPOINT, timeout_s=60, interval_s=5, clock=StepClock())
    assert fake.called("UpdateEndpoint") == [
        {"EndpointName": ENDPOINT, "EndpointConfigName": "demo-embedder-r2"}
    ]
    assert fake.endpoints[ENDPOINT]["EndpointConfigName"] == "demo-embedder-r2"
    assert result.summary() == {
        "endpoint_name": ENDPOINT,
        "from_config": "demo-embedder-r3",
        "to_config": "demo-embedder-r2",
        "to_release": "r2",
        "status": "rolled back",
    }
    # Twice in a row walks further back: r2's predecessor is r1.
    assert roll_back(ENDPOINT, timeout_s=60, interval_s=5, clock=StepClock()).to_config == "demo-embedder-r1"


def test_roll_back_to_a_named_config(fake: FakeSageMaker) -> None:
    result = roll_back(ENDPOINT, to_config="demo-embedder-r1", timeout_s=60, interval_s=5, clock=StepClock())
    assert (result.to_config, result.status) == ("demo-embedder-r1", "rolled back")
    again = roll_back(ENDPOINT, to_config="demo-embedder-r1", timeout_s=60, interval_s=5, clock=StepClock())
    assert again.status == "unchanged"


def test_autoscaling_comes_off_a_variant_the_old_config_retypes(fake: FakeSageMaker) -> None:
    fake.add_config("demo-embedder-r4", variant("model-r4", "ml.c5.xlarge"), release_tags("r4"))
    fake.add_endpoint(ENDPOINT, "demo-embedder-r4")
    autoscaling = aws.client("application-autoscaling")
    resource = f"endpoint/{ENDPOINT}/variant/AllTraffic"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=3,
    )
    roll_back(ENDPOINT, timeout_s=60, interval_s=5, clock=StepClock())
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    assert targets["ScalableTargets"] == []


def test_a_failed_update_puts_autoscaling_back(fake: FakeSageMaker) -> None:
    fake.add_config("demo-embedder-r4", variant("model-r4", "ml.c5.xlarge"), release_tags("r4"))
    fake.add_endpoint(ENDPOINT, "demo-embedder-r4")
    autoscaling = aws.client("application-autoscaling")
    resource = f"endpoint/{ENDPOINT}/variant/AllTraffic"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=3,
    )
    fake.stuck = True
    with pytest.raises(Exception, match="WaitTimeout"):
        roll_back(ENDPOINT, timeout_s=30, interval_s=5, clock=StepClock())
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    assert [t["MaxCapacity"] for t in targets["ScalableTargets"]] == [3]


def test_a_missing_endpoint_is_refused_with_the_fix(fake: FakeSageMaker) -> None:
    with pytest.raises(ResourceFailed) as raised:
        roll_back("no-such-endpoint", timeout_s=60)
    assert raised.value.status == "NotFound" and "fix:" in raised.value.reason
