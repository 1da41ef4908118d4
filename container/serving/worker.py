"""One worker process: a uvicorn server on the supervisor's listening socket, one copy of the model.

The worker tells the supervisor over a pipe when its model is ready or why it failed; on a load
failure it stops its server and exits with LOAD_FAILED so the supervisor can end the container.
"""

from __future__ import annotations

import math
import os
import socket
import sys
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType

import uvicorn

from serving.app import create_app
from serving.handlers.base import ServedModel
from serving.loading import load_served_model
from serving.logs import configure_logging
from serving.settings import Settings

LOAD_FAILED = 3


def run_worker(
    settings: Settings, sock: socket.socket, events: Connection, index: int, all_ready: EventType
) -> None:
    configure_logging(settings.log_level)
    # Belt and braces with the image's ENV: a served model never reaches for the Hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    failed: list[str] = []

    def load(current: Settings) -> ServedModel:
        import torch

        # Each worker gets its slice of the CPUs; the supervisor computed it from the worker count.
        torch.set_num_threads(current.torch_threads)
        return load_served_model(current)

    def on_ready() -> None:
        events.send(("ready", index))

    def on_failed(reason: str) -> None:
        failed.append(reason)
        events.send(("failed", reason))
        server.should_exit = True

    app = create_app(
        settings, loader=load, on_ready=on_ready, on_failed=on_failed, all_workers_ready=all_ready.is_set
    )
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        # Both ship in the image (container/requirements.txt); naming them fails loudly if they do not.
        http="httptools",
        loop="uvloop",
        lifespan="on",
        # Longer than a load balancer's usual 60 s idle timeout, so the server never closes first.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=math.ceil(settings.graceful_timeout_s),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    sys.exit(LOAD_FAILED if failed else 0)
