"""Image references split by Docker's rules: the one parser the manifest check, the endpoints' usage, the
unwind and retention read image URIs through."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.image.image_name import ImageName

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPOSITORY = "team/serving"
TAG = "0123456789ab"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"{ECR_HOST}/{REPOSITORY}:{TAG}", (REPOSITORY, TAG, None, True)),
        (f"{ECR_HOST}/{REPOSITORY}@sha256:ab", (REPOSITORY, None, "sha256:ab", True)),
        ("127.0.0.1:5000/serving:1", ("serving", "1", None, False)),
        ("python:3.11-slim", ("python", "3.11-slim", None, False)),
        ("library/python", ("library/python", None, None, False)),
    ],
)
def test_image_names_split_into_repository_tag_and_digest(uri: str, expected: tuple[Any, ...]) -> None:
    name = ImageName.parse(uri)
    assert (name.repository, name.tag, name.digest, name.is_ecr) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"{ECR_HOST}/team/serving:1.0", (ECR_HOST, "team/serving", "1.0")),
        ("127.0.0.1:5000/serving:abc", ("127.0.0.1:5000", "serving", "abc")),
        ("registry.example:5000/a/b/c", ("registry.example:5000", "a/b/c", "latest")),
        (f"{ECR_HOST}/serving:1.0@sha256:{'a' * 64}", (ECR_HOST, "serving", f"sha256:{'a' * 64}")),
    ],
)
def test_image_references_split_into_host_repository_and_tag_or_digest(
    uri: str, expected: tuple[str, str, str]
) -> None:
    location = ImageName.parse(uri)
    assert (location.host, location.repository, location.reference) == expected
    assert location.is_digest is expected[2].startswith("sha256:")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (ECR_HOST, ("123456789012", "us-east-1")),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", ("123456789012", "us-gov-west-1")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ("123456789012", "cn-north-1")),
        ("127.0.0.1:5000", None),
        ("ecr.example.com", None),
    ],
)
def test_an_ecr_host_names_its_registry_id_and_region(host: str, expected: tuple[str, str] | None) -> None:
    assert ImageName.parse(f"{host}/serving:1").ecr_registry == expected
