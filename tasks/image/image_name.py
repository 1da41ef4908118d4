"""An image reference (`[host/]repository[:tag][@digest]`) split into its parts, by Docker's rules.

The one parser of image references in tasks/: the manifest check (registry.py, ecr.py), what the
account's endpoints use (tasks/sagemaker/in_use.py) and the unwind and retention (tasks/lifecycle/) all
read image URIs through it. It imports nothing of the rest, so any room may use it without a cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ECR's registry hosts: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]; the groups are the
# registry id and the region, which ECR's API needs to find the image.
_ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class ImageName:
    """A container image reference split into repository (without registry host), tag and digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None
    host: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ImageName:
        rest, _, digest = uri.partition("@")
        host: str | None = None
        first, sep, remainder = rest.partition("/")
        # Docker's rule: the first path part is a registry host when it has a dot or port, or is localhost.
        if sep and ("." in first or ":" in first or first == "localhost"):
            host, rest = first, remainder
        tag: str | None = None
        head, _, last = rest.rpartition("/")
        if ":" in last:
            last, tag = last.split(":", 1)
            rest = f"{head}/{last}" if head else last
        return cls(rest, tag, digest or None, host)

    @property
    def reference(self) -> str:
        """What a registry's manifest request names: the digest when there is one, else the tag (Docker
        reads no tag as `latest`)."""
        return self.digest or self.tag or "latest"

    @property
    def is_digest(self) -> bool:
        return self.digest is not None

    @property
    def ecr_registry(self) -> tuple[str, str] | None:
        """(registry id, region) when the host is an ECR registry, else None."""
        found = _ECR_HOST.match(self.host) if self.host is not None else None
        return (found.group(1), found.group(2)) if found is not None else None

    @property
    def is_ecr(self) -> bool:
        return self.ecr_registry is not None

    def same_image(self, other: ImageName) -> bool:
        """One repository, and the same tag or the same digest."""
        if self.repository != other.repository:
            return False
        same_tag = self.tag is not None and self.tag == other.tag
        same_digest = self.digest is not None and self.digest == other.digest
        return same_tag or same_digest
