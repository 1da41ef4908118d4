"""Hugging Face Hub-compatible file server over a folder of repos (the local stack's `HF_ENDPOINT`).

Run it with `python -m emulator.hub --root DIR --host 127.0.0.1 --port 4588`; fill the folder with
`seed_default_repos(DIR)` and `publish(DIR, repo_id, folder)`.
"""

from emulator.hub.publish import publish
from emulator.hub.seed import MINILM_REPO_ID, seed_default_repos
from emulator.hub.store import DEFAULT_BRANCH, HubStore

__all__ = ["DEFAULT_BRANCH", "MINILM_REPO_ID", "HubStore", "publish", "seed_default_repos"]
