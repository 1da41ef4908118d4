"""Which code a running emulator process was started from.

The stack's servers are detached and outlive a `git pull` or a branch switch; a server still running
older code answers its health check and would be kept by `up`, and tests of a new API would fail
against it. Each server reports the hash of its package's sources; `up` restarts one it started that
reports another hash than the checkout has.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def code_version(root: Path = PACKAGE, exclude: tuple[str, ...] = ("hub",)) -> str:
    """sha256 (16 hex digits) over the paths and contents of the package's .py files."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in exclude:
            continue
        digest.update(f"{relative}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
