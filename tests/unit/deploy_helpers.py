"""Builders shared by the unit tests of the deploy side (hosting, scaling, smoke, unwind, report)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tasks.config import ReleaseConfig, parse_config
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"

BASE: dict[str, Any] = {
    "release_id": "r1",
    "role_arn": ROLE,
    "model": {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "task": "feature-extraction"},
    "storage": {"bucket": "models-bucket", "prefix": "sr"},
    "endpoint": {"name": "demo-embedder", "instance_type": "ml.m5.large"},
}


def make_config(**sections: Any) -> ReleaseConfig:
    """BASE with sections replaced or merged: make_config(endpoint={"type": "serverless"})."""
    data = copy.deepcopy(BASE)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return parse_config(data)


def local_ledger(tmp_path: Path, release_id: str = "r1") -> Ledger:
    return Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), release_id)


def kinds(ledger: Ledger) -> list[tuple[str, str]]:
    return [(e.kind, e.resource_id) for e in ledger.entries]
