"""A rollout the live endpoint cannot take is refused by the command line before anything is created.

The shared `serving` endpoint runs one instance; a guardrails canary needs two live instances, which
only the live endpoint can tell. `python -m flows.release` must exit 2 (invalid, as for a config refused
on load) naming the field and the fix, with no bucket object, ledger or resource of the release and the
endpoint untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tasks.config import naming
from tests.e2e.inspect_stack import embed, resources_of_release, scaling_of, serving_config
from tests.e2e.release_support import E2E, REPO_ROOT

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]


def test_a_canary_on_a_one_instance_endpoint_exits_2_before_creating_anything(
    e2e: E2E, serving: dict[str, Any], tmp_path: Path
) -> None:
    endpoint = e2e.endpoint("serving")
    before = serving_config(endpoint), scaling_of(endpoint)
    release_id = f"e2e-{e2e.token}-canary1"
    config = tmp_path / "release.yaml"
    data = e2e.config_data(endpoint, rollout={"strategy": "canary"}, endpoint={"instance_count": 2})
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "flows.release", "--config", str(config), "--release-id", release_id],
        cwd=REPO_ROOT,
        env={**os.environ, **e2e.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["release_id"]) == ("invalid", release_id)
    assert "rollout.strategy" in summary["error"] and "1 live" in summary["error"]
    assert "fix: use rollout.strategy: variant_shift" in summary["error"]
    # Nothing of the release exists: not even its ledger.
    folder = naming.ledger_key(e2e.prefix, release_id).rsplit("/", 1)[0] + "/"
    keys = boto3.client("s3").list_objects_v2(Bucket=e2e.bucket, Prefix=folder)
    assert keys.get("KeyCount", 0) == 0, keys.get("Contents")
    assert resources_of_release(release_id, e2e.bucket) == []
    assert (serving_config(endpoint), scaling_of(endpoint)) == before
    assert len(embed(endpoint)) == 384
