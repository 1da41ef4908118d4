"""The logger a task should write to: the Prefect run's (shown in the UI) inside a run, else a plain one."""

from __future__ import annotations

import logging
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def run_logger(name: str = "sagemaker_release") -> logging.Logger | logging.LoggerAdapter[Any]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
