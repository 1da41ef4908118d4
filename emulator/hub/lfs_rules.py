"""Which files of a repo the Hub stores in LFS: the repo's .gitattributes, else the Hub's default one.

It matters to clients: an LFS file's ETag is its sha256 and its listing carries an `lfs` block.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# The Hub refuses plain git files above 10 MB, so anything larger is LFS whatever .gitattributes says.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

# The .gitattributes the Hub writes into a new model repo.
HUB_DEFAULT_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
    "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
    "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip


@dataclass(frozen=True)
class _Rule:
    pattern: str
    lfs: bool

    def matches(self, path: str) -> bool:
        pattern = self.pattern.lstrip("/")
        if "/" not in self.pattern:
            # git: a pattern without a slash matches the file name at any depth
            return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
        return re.fullmatch(_anchored_regex(pattern), path) is not None


def _anchored_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


class LfsRules:
    """The `filter=lfs` attribute of .gitattributes; the last matching line wins, as in git."""

    def __init__(self, rules: list[_Rule]) -> None:
        self._rules = rules

    @classmethod
    def hub_default(cls) -> LfsRules:
        return cls([_Rule(p, True) for p in HUB_DEFAULT_LFS_PATTERNS])

    @classmethod
    def parse(cls, gitattributes: str) -> LfsRules:
        rules: list[_Rule] = []
        for line in gitattributes.splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            pattern, attrs = fields[0], fields[1:]
            for attr in attrs:
                if attr == "filter=lfs":
                    rules.append(_Rule(pattern, True))
                elif attr in ("-filter", "!filter") or attr.startswith("filter="):
                    rules.append(_Rule(pattern, False))
        return cls(rules)

    def is_lfs(self, path: str, size: int) -> bool:
        if size > LFS_SIZE_THRESHOLD:
            return True
        decision = False
        for rule in self._rules:
            if rule.matches(path):
                decision = rule.lfs
        return decision
