"""The HTTP face of the local hub: the part of the Hub's API that huggingface_hub downloads through.

Served: GET /api/health; GET /api/{models,datasets}/{ns}/{name}[/revision/{rev}] (repo info),
.../tree/{rev}[/{path}] (listing), .../refs; GET and HEAD /[datasets/]{ns}/{name}/resolve/{rev}/{file}
with Range. Errors carry the Hub's `X-Error-Code` so huggingface_hub raises its typed errors.

Files are answered directly (200/206), never through the Hub's redirect to a CDN, and never with Xet
headers, so clients always take the plain HTTP download path.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from emulator.hub import payloads
from emulator.hub.store import (
    DEFAULT_BRANCH,
    REPO_TYPES,
    EntryNotFound,
    HubError,
    HubStore,
    RepoNotFound,
    RepoSettings,
    RepoUnauthorized,
    StoreCorrupted,
    validate_repo_id,
)

_REPO_TYPE_BY_FOLDER = {folder: repo_type for repo_type, folder in REPO_TYPES.items()}


class UnsupportedRoute(Exception):
    """A path the real Hub may serve but this local hub does not."""


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _error(status: int, message: str, code: str | None = None, commit: str | None = None) -> JSONResponse:
    headers = {"X-Error-Message": _header_safe(message)}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _raw_segments(request: Request) -> list[str]:
    """Path segments split before percent-decoding: a revision like `refs%2Fpr%2F1` stays one segment."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    return [unquote(seg) for seg in raw.decode("latin-1").split("/")[1:]]


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _open_repo(store: HubStore, request: Request, repo_type: str, repo_id: str) -> RepoSettings:
    try:
        validate_repo_id(repo_id)
    except ValueError as exc:
        raise RepoNotFound(f"Repository {repo_id!r} not found: {exc}") from exc
    settings = store.settings(repo_type, repo_id)
    if settings.private:
        token = _bearer_token(request)
        if token is None:
            raise RepoUnauthorized(
                f"Repository {repo_id!r} is private: send 'Authorization: Bearer <token>' "
                "(huggingface_hub: token=... or HF_TOKEN)"
            )
        if token not in settings.read_tokens:
            raise RepoUnauthorized(f"Repository {repo_id!r} is private and this token may not read it")
    return settings


def _content_disposition(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace('"', "_")
    return f"inline; filename*=UTF-8''{quote(name)}; filename=\"{ascii_name}\""


def create_app(root: Path) -> FastAPI:
    store = HubStore(root)
    app = FastAPI(title="sagemaker-release local hub", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> Response:
        return _error(exc.status, exc.message, exc.code, exc.commit)

    @app.exception_handler(StoreCorrupted)
    async def store_corrupted(request: Request, exc: StoreCorrupted) -> Response:
        return _error(500, f"local hub store at {root} is inconsistent: {exc}")

    @app.exception_handler(UnsupportedRoute)
    async def unsupported(request: Request, exc: UnsupportedRoute) -> Response:
        return _error(404, f"{request.method} {request.url.path} is not served by the local hub: {exc}")

    @app.api_route("/api/health", methods=["GET", "HEAD"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "root": str(root)}

    @app.get("/api/{repo_type_folder}/{rest:path}")
    async def api(request: Request, repo_type_folder: str) -> Response:
        segments = _raw_segments(request)[2:]
        repo_type = _REPO_TYPE_BY_FOLDER.get(repo_type_folder)
        if repo_type is None or len(segments) < 2:
            raise UnsupportedRoute(f"the local hub serves only {sorted(_REPO_TYPE_BY_FOLDER)} repo APIs")
        repo_id, action = "/".join(segments[:2]), segments[2:]
        settings = _open_repo(store, request, repo_type, repo_id)

        if action[:1] == ["refs"] and len(action) == 1:
            return JSONResponse(payloads.refs(store.refs(repo_type, repo_id)))
        if not action or action[0] == "revision":
            revision = "/".join(action[1:]) or DEFAULT_BRANCH
            commit = store.commit(repo_type, repo_id, store.resolve(repo_type, repo_id, revision))
            blobs = request.query_params.get("blobs", "").lower() in ("1", "true")
            return JSONResponse(payloads.repo_info(repo_type, repo_id, settings, commit, blobs))
        if action[0] == "tree" and len(action) >= 2:
            commit_id = store.resolve(repo_type, repo_id, action[1])
            folder = "/".join(action[2:])
            recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
            listing = payloads.tree(store.commit(repo_type, repo_id, commit_id), folder, recursive)
            if listing is None:
                raise EntryNotFound(f"{folder!r} is not a folder of {repo_id} at {commit_id}", commit_id)
            return JSONResponse(listing, headers={"X-Repo-Commit": commit_id})
        raise UnsupportedRoute(f"'{'/'.join(action)}' is not one of revision, tree, refs")

    @app.api_route("/{rest:path}", methods=["GET", "HEAD"])
    async def resolve(request: Request) -> Response:
        segments = _raw_segments(request)
        repo_type = "model"
        if segments[:1] == ["datasets"]:
            repo_type, segments = "dataset", segments[1:]
        if len(segments) < 5 or segments[2] != "resolve":
            raise UnsupportedRoute(
                "files are served at /[datasets/]{namespace}/{name}/resolve/{revision}/{path}"
            )
        repo_id, revision, filename = "/".join(segments[:2]), segments[3], "/".join(segments[4:])
        _open_repo(store, request, repo_type, repo_id)
        commit_id = store.resolve(repo_type, repo_id, revision)
        entry = store.commit(repo_type, repo_id, commit_id).file(filename)
        if entry is None:
            raise EntryNotFound(f"{filename!r} does not exist in {repo_id} at {commit_id}", commit_id)
        headers = {
            "X-Repo-Commit": commit_id,
            "ETag": f'"{entry.etag}"',
            "Content-Disposition": _content_disposition(filename),
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return FileResponse(store.blob_for(repo_id, entry), headers=headers, media_type=media_type)

    return app
