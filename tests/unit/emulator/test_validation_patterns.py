"""The emulator's shape validation reads every pattern of the service models it serves, Java's \\p{...}
classes and surrogate pairs included, and checks values against them as AWS does."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest

from emulator.sagemaker.exceptions import ValidationException
from emulator.sagemaker.validation import compiled, java_pattern, validate_input

TAG_PATTERN = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"
SERVICES = ("sagemaker", "application-autoscaling")


def _patterns(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    found = {}
    for name in model.shape_names:
        pattern = model.shape_for(name).metadata.get("pattern")
        if pattern:
            found[name] = pattern
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_pattern_of_the_service_model_is_checked(service: str) -> None:
    patterns = _patterns(service)
    assert len(patterns) > 10
    unread = {name: pattern for name, pattern in patterns.items() if compiled(pattern) is None}
    assert unread == {}


def test_the_service_model_still_uses_the_unicode_tag_pattern() -> None:
    patterns = _patterns("sagemaker")
    assert (patterns["TagKey"], patterns["TagValue"]) == (TAG_PATTERN, TAG_PATTERN)


def _add_tags(key: str, value: str) -> None:
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("AddTags")
    params: dict[str, Any] = {
        "ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m",
        "Tags": [{"Key": key, "Value": value}],
    }
    validate_input(shape.input_shape, params)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("team", "ml"),
        ("équipe Ω", "données ٣"),
        ("a_b.c:d/e=f+g-h@i", ""),
        ("日本語", "値 1"),
    ],
)
def test_tags_of_letters_numbers_separators_and_the_listed_marks_pass(key: str, value: str) -> None:
    _add_tags(key, value)


@pytest.mark.parametrize(
    ("key", "value", "path", "shown"),
    [
        ("team#1", "ml", "tags.1.member.key", "team#1"),
        ("team", "a,b", "tags.1.member.value", "a,b"),
        ("team", "x;y", "tags.1.member.value", "x;y"),
        ("emoji😀", "v", "tags.1.member.key", "emoji😀"),
        ("tab\there", "v", "tags.1.member.key", "tab\there"),
    ],
)
def test_tags_with_other_characters_are_refused_as_aws_words_it(
    key: str, value: str, path: str, shown: str
) -> None:
    with pytest.raises(ValidationException) as refused:
        _add_tags(key, value)
    assert str(refused.value) == (
        f"1 validation error detected: Value '{shown}' at '{path}' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {TAG_PATTERN}"
    )


def test_java_posix_classes_are_ascii_as_in_java() -> None:
    assert java_pattern(r"\p{Print}+") == r"[\x20-\x7E]+"
    assert java_pattern(r"arn:[\p{Alnum}\-]+:x") == r"arn:[a-zA-Z0-9\-]+:x"
    printable = compiled(r"\p{Print}+")
    assert printable.fullmatch("policy name-1") is not None
    assert printable.fullmatch("politique-é") is None
    # Unicode categories are not POSIX classes: left to the regex package as they are.
    assert java_pattern(TAG_PATTERN) == TAG_PATTERN
    # An escaped backslash before p is a literal, not a class.
    assert java_pattern(r"\\p{Alnum}") == r"\\p{Alnum}"


def test_java_surrogate_pairs_are_characters_beyond_the_basic_plane() -> None:
    pattern = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*"
    assert java_pattern(pattern) == r"[\u0020-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF\r\n\t]*"
    checked = compiled(pattern)
    assert checked.fullmatch("endpoint/e😀/variant/AllTraffic") is not None
    assert checked.fullmatch("bell\x07") is None
