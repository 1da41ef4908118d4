"""Download: a Hugging Face Hub snapshot pinned to the commit its revision resolves to, or a local folder.

The branch or tag in the config is resolved to a commit first and exactly that commit is downloaded, so
a branch moving mid-download cannot mix two versions, and the release reports what it shipped. The
token comes from the environment (HF_TOKEN by default), the Hub address from HF_ENDPOINT, read at call
time so the same code serves huggingface.co and the local hub. The token goes to that host only:
huggingface_hub keeps it for redirects to any "Hub origin" (huggingface.co, hf.co) whatever HF_ENDPOINT
says, so a request hook on its session drops it from every request to another host.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import filter_repo_objects, get_session
from prefect import task

from tasks.config import ModelSourceConfig
from tasks.core.errors import ConfigError, WaitTimeout
from tasks.core.logs import run_logger
from tasks.core.retry import task_options
from tasks.core.state_dir import state_subdir

# What counts as model weights: a folder with none of these (and no code/inference.py) cannot be served.
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".onnx",
    ".gguf",
    ".ggml",
    ".h5",
    ".keras",
    ".msgpack",
    ".tflite",
    ".pb",
    ".pkl",
    ".joblib",
    ".npz",
    ".mlmodel",
    ".xgb",
    ".ubj",
    ".cbm",
)
CUSTOM_CODE = "code/inference.py"
_SKIPPED_PARTS = {".git", "__pycache__", ".cache", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class ModelSnapshot:
    """Model files on the worker's disk, and where they came from."""

    path: str
    files: tuple[str, ...]
    total_bytes: int
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    def describe(self) -> str:
        if self.repo_id:
            return f"{self.repo_id}@{self.commit} ({self.revision})"
        return f"local folder {self.path}"


DEFAULT_HUB = "https://huggingface.co"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def hub_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def token_allowed(url: str) -> bool:
    """Whether a request to `url` may carry the Hub token: the host of HF_ENDPOINT (huggingface.co when
    unset), on its own port, or over HTTPS on the default port (an upgrade of the same host)."""
    hub, target = urlsplit(hub_endpoint() or DEFAULT_HUB), urlsplit(url)
    if not hub.hostname or (target.hostname or "").lower() != hub.hostname.lower():
        return False
    port = target.port or _DEFAULT_PORTS.get(target.scheme)
    hub_port = hub.port or _DEFAULT_PORTS.get(hub.scheme)
    return (target.scheme, port) == (hub.scheme, hub_port) or (target.scheme, port) == ("https", 443)


def _keep_token_on_hub(request: Any) -> None:
    if "authorization" in request.headers and not token_allowed(str(request.url)):
        del request.headers["authorization"]


def guard_hub_token() -> None:
    """Install the hook that keeps the token to the Hub's host on huggingface_hub's shared session
    (again after a fork or reset made a new session)."""
    session = get_session()
    hooks = session.event_hooks
    if _keep_token_on_hub not in hooks["request"]:
        session.event_hooks = {**hooks, "request": [*hooks["request"], _keep_token_on_hub]}


def resolve_commit(source: ModelSourceConfig, token: str | None) -> str:
    """The commit the configured revision points to now; ConfigError when repo or revision is unknown."""
    assert source.repo_id is not None
    guard_hub_token()
    try:
        info = HfApi(endpoint=hub_endpoint(), token=token).model_info(
            source.repo_id, revision=source.revision
        )
    except RevisionNotFoundError:
        raise ConfigError(
            "model.revision",
            f"{source.repo_id} has no branch, tag or commit {source.revision!r}",
            "use an existing revision (e.g. main) or a full commit id",
        ) from None
    except GatedRepoError:
        raise ConfigError(
            "model.repo_id",
            f"{source.repo_id} is gated and the token in ${source.token_env} has no access",
            f"accept the model's terms on the Hub, then export {source.token_env}=<token with access>",
        ) from None
    except RepositoryNotFoundError:
        tokened = (
            f"with the token in ${source.token_env}"
            if token
            else f"without a token (${source.token_env} unset)"
        )
        raise ConfigError(
            "model.repo_id",
            f"{source.repo_id} was not found on {hub_endpoint() or 'huggingface.co'} {tokened}",
            f"check the repo id, or export {source.token_env} for a private repo",
        ) from None
    if not info.sha:
        raise ConfigError(
            "model.revision",
            f"the Hub did not resolve {source.repo_id}@{source.revision}",
            "pin a full commit id",
        )
    return info.sha


def list_files(root: Path, source: ModelSourceConfig) -> list[str]:
    """Relative paths of the files under `root`, sorted, filtered by the config's allow/ignore patterns."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if _SKIPPED_PARTS.intersection(rel.parts) or not path.is_file():
            continue
        found.append(rel.as_posix())
    kept = filter_repo_objects(
        sorted(found), allow_patterns=source.allow_patterns, ignore_patterns=source.ignore_patterns
    )
    return list(kept)


def has_model_files(files: list[str] | tuple[str, ...]) -> bool:
    return any(name.lower().endswith(WEIGHT_SUFFIXES) for name in files) or CUSTOM_CODE in files


def require_model_files(files: list[str], source: ModelSourceConfig, where: str) -> None:
    if has_model_files(files):
        return
    field = "model.local_path" if source.local_path else "model.repo_id"
    patterns = source.allow_patterns or source.ignore_patterns
    fix = (
        "widen model.allow_patterns / narrow model.ignore_patterns so the weights are kept"
        if patterns
        else f"point {field} at a model with weights (*.safetensors, *.bin, *.onnx, *.gguf, …) "
        f"or a {CUSTOM_CODE}"
    )
    shown = ", ".join(files[:8]) + (" …" if len(files) > 8 else "") if files else "no files at all"
    raise ConfigError(field, f"{where} holds no model files ({shown})", fix)


DOWNLOAD_TIMEOUT_FIELD = "timeouts.download_s"


def _within(timeout_s: float, what: str, work: Callable[[], str]) -> str:
    """`work()`'s result, or WaitTimeout naming timeouts.download_s once `timeout_s` has passed.

    The download runs in a daemon thread because huggingface_hub has no way to cancel one: on timeout
    the release fails now and the abandoned thread only fills the Hub cache (whose partial files are
    `.incomplete` and never served), and it cannot keep the worker's process alive."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc
        finally:
            done.set()

    start = time.monotonic()
    threading.Thread(target=run, name="download-model", daemon=True).start()
    if not done.wait(timeout_s):
        raise WaitTimeout(
            f"{what} (limit {DOWNLOAD_TIMEOUT_FIELD})",
            "downloading",
            time.monotonic() - start,
            timeout_s=timeout_s,
        )
    if "error" in outcome:
        raise outcome["error"]
    return str(outcome["value"])


def fetch_snapshot(
    source: ModelSourceConfig, cache_dir: Path | None = None, *, timeout_s: float | None = None
) -> ModelSnapshot:
    """Resolve and fetch the model files (plain function; `download_model` is the Prefect task).

    `timeout_s` (the config's timeouts.download_s) bounds the download of the files."""
    if source.local_path is not None:
        return _local_snapshot(source)
    assert source.repo_id is not None
    token = os.environ.get(source.token_env) or None
    commit = resolve_commit(source, token)
    cache = cache_dir or state_subdir("hf-cache")
    log = run_logger()
    log.info("downloading %s@%s (resolved from %s)", source.repo_id, commit, source.revision)
    guard_hub_token()
    repo_id, endpoint = source.repo_id, hub_endpoint()

    def download() -> str:
        return snapshot_download(
            repo_id,
            revision=commit,
            cache_dir=cache,
            token=token,
            allow_patterns=source.allow_patterns,
            ignore_patterns=source.ignore_patterns,
            endpoint=endpoint,
        )

    what = f"model download of {repo_id}@{commit}"
    folder = Path(download() if timeout_s is None else _within(timeout_s, what, download))
    files = list_files(folder, source)
    require_model_files(files, source, f"{source.repo_id}@{commit}")
    return ModelSnapshot(
        path=str(folder),
        files=tuple(files),
        total_bytes=sum((folder / f).stat().st_size for f in files),
        repo_id=source.repo_id,
        revision=source.revision,
        commit=commit,
    )


def _local_snapshot(source: ModelSourceConfig) -> ModelSnapshot:
    assert source.local_path is not None
    folder = Path(source.local_path).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(
            "model.local_path",
            f"{source.local_path} is not a folder" + ("" if folder.exists() else " (it does not exist)"),
            "point model.local_path at the folder holding the model files",
        )
    files = list_files(folder, source)
    require_model_files(files, source, f"folder {folder}")
    return ModelSnapshot(
        path=str(folder), files=tuple(files), total_bytes=sum((folder / f).stat().st_size for f in files)
    )


@task(name="download-model", **task_options())
def download_model(
    source: ModelSourceConfig, cache_dir: str | None = None, *, timeout_s: float | None = None
) -> ModelSnapshot:
    """Fetch the model: a Hub snapshot pinned to the resolved commit, or a local folder.

    `timeout_s` is the config's timeouts.download_s (the flow passes it; None waits without limit)."""
    snapshot = fetch_snapshot(source, Path(cache_dir) if cache_dir else None, timeout_s=timeout_s)
    run_logger().info(
        "model %s: %d files, %.1f MiB", snapshot.describe(), len(snapshot.files), snapshot.total_bytes / 2**20
    )
    return snapshot
