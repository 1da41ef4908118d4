from __future__ import annotations

from datetime import UTC, datetime

from tasks.config import naming, parse_config

MINIMAL = {
    "role_arn": "arn:aws:iam::123456789012:role/SageMakerExecution",
    "model": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2"},
    "storage": {"bucket": "sagemaker-release-demo"},
    "endpoint": {"name": "demo-embedder"},
}


def test_names_are_deterministic_valid_and_at_most_63() -> None:
    config = parse_config({**MINIMAL, "endpoint": {"name": "e" * 63}})
    first = naming.model_name(config, "20250314-093015-3fa9")
    assert first == naming.model_name(config, "20250314-093015-3fa9")
    assert len(first) == 63 and naming.is_valid_name(first)
    other = naming.model_name(config, "20250314-093015-3fa8")
    assert other != first, "two releases of one long endpoint name must not collide"
    assert naming.endpoint_config_name(config, "r1", "v2") != naming.endpoint_config_name(config, "r1")


def test_short_names_stay_readable() -> None:
    config = parse_config(MINIMAL)
    assert naming.model_name(config, "r1") == "demo-embedder-r1"
    assert naming.variant_name(config, "r1") == "AllTraffic-r1"
    assert naming.alarm_name(config, "r1", "5xx") == "demo-embedder-r1-5xx"


def test_fit_cleans_invalid_characters() -> None:
    assert naming.fit("my_model", "v1.2") == "my-model-v1-2"
    assert naming.is_valid_name(naming.fit("a" * 100, "--b--"))


def test_release_ids_sort_by_time() -> None:
    early = naming.new_release_id(datetime(2025, 3, 14, 9, 30, 15, tzinfo=UTC), token="3fa9")
    assert early == "20250314-093015-3fa9"
    assert naming.new_release_id(datetime(2025, 3, 14, 9, 30, 16, tzinfo=UTC), token="0000") > early
    assert naming.new_release_id() != naming.new_release_id()


def test_content_addressed_keys() -> None:
    assert naming.model_archive_key("p/q", "ab12") == "p/q/models/ab12/model.tar.gz"
    assert naming.model_prefix_key("p", "ab12") == "p/models/ab12/"
    assert naming.model_archive_key("", "ab12") == "models/ab12/model.tar.gz"
    assert naming.ledger_key("p", "r1") == "p/releases/r1/ledger.json"


def test_tags_carry_ours_and_the_users() -> None:
    config = parse_config({**MINIMAL, "tags": {"team": "ml"}})
    assert naming.tags(config, "r1") == [
        {"Key": "managed-by", "Value": "sagemaker-release"},
        {"Key": "release-id", "Value": "r1"},
        {"Key": "sagemaker-release:endpoint", "Value": "demo-embedder"},
        {"Key": "team", "Value": "ml"},
    ]
    assert naming.tag_dict(config, "r1")["release-id"] == "r1"
