"""The emulator's resources, persisted under .state/emulator/ so a restart loses nothing.

One JSON document holds every kind of resource. It is rewritten atomically (temp file + rename)
after each change: the emulator is the only writer, changes are small and rare next to invocations,
and a crash can leave the old or the new document but never half of one.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

Record = dict[str, Any]


@dataclass
class Store:
    path: Path
    models: dict[str, Record] = field(default_factory=dict)
    endpoint_configs: dict[str, Record] = field(default_factory=dict)
    endpoints: dict[str, Record] = field(default_factory=dict)
    # The emulator's own view of each endpoint: its deployments (fleets, containers, routing share).
    deployments: dict[str, list[Record]] = field(default_factory=dict)
    # The endpoint operation in progress (create, update, weights, delete), resumed after a restart.
    operations: dict[str, Record] = field(default_factory=dict)
    transform_jobs: dict[str, Record] = field(default_factory=dict)
    tags: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, folder: Path) -> Store:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "resources.json"
        store = cls(path)
        if path.exists():
            document = json.loads(path.read_text())
            if document.get("schema") != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{path} has schema {document.get('schema')!r}, this emulator reads {SCHEMA_VERSION}; "
                    "move the file away to start from an empty emulator"
                )
            store.models = document["models"]
            store.endpoint_configs = document["endpoint_configs"]
            store.endpoints = document["endpoints"]
            store.deployments = document["deployments"]
            store.operations = document["operations"]
            store.tags = document["tags"]
            # Absent from documents written before transform jobs existed; same schema otherwise.
            store.transform_jobs = document.get("transform_jobs", {})
        return store

    def save(self) -> None:
        document = {
            "schema": SCHEMA_VERSION,
            "models": self.models,
            "endpoint_configs": self.endpoint_configs,
            "endpoints": self.endpoints,
            "deployments": self.deployments,
            "operations": self.operations,
            "tags": self.tags,
            "transform_jobs": self.transform_jobs,
        }
        text = json.dumps(document, indent=1, sort_keys=True)
        with self._lock:
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.path)
