"""Fixtures for unit tests: AWS calls go to moto in-process, never to a server or to AWS."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto import mock_aws

from tasks.core import aws


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local ledger copies, package caches and model snapshots of unit tests stay out of the checkout."""
    monkeypatch.setenv("SAGEMAKER_RELEASE_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS, with the local stack's endpoint variables removed so nothing escapes."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset_clients()
    with mock_aws():
        yield
    aws.reset_clients()
