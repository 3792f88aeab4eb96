"""Names (pure): validation, reversible escaping, experiment slugs (docs/format.md, Names)."""

from __future__ import annotations

import random

import pytest

from labtrack._names import (
    MAX_NAME_LENGTH,
    check_name,
    escape_part,
    name_to_relpath,
    relpath_to_name,
    slug,
    unescape_part,
)
from labtrack.errors import LabtrackNameError

SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-%")


@pytest.mark.parametrize("name", ["loss", "train/loss", "val acc/top-1", "a.b/c-d_e", "...", "a/.../b",
                                  "é/ü", "🙂", "x" * 249, "x" * 120 + "/" + "y" * (MAX_NAME_LENGTH - 121), "a%20b", ".hidden", "a/.b"])
def test_allowed_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name,why", [
    ("", "empty"), ("/abs", "starts with '/'"), ("a//b", "empty, '.' or '..'"), ("a/", "empty, '.' or '..'"),
    (".", "'.'"), ("..", "'..'"), ("../x", "'..'"), ("a/../b", "'..'"), ("a/./b", "'.'"),
    ("a\nb", "control"), ("a\tb", "control"), ("\x00", "control"), ("a\x1fb", "control"),
    ("a\x7fb", "control"), ("a\x85b", "control"), ("a\x9fb", "control"),
    ("x" * (MAX_NAME_LENGTH + 1), "characters long"),
])
def test_refused_names_say_why(name: str, why: str) -> None:
    with pytest.raises(LabtrackNameError) as info:
        check_name(name, "series name")
    assert why in str(info.value) and "series name" in str(info.value)


@pytest.mark.parametrize("name", [None, 3, b"loss", ["a"]])
def test_non_str_names(name: object) -> None:
    with pytest.raises(LabtrackNameError, match="must be a str"):
        check_name(name)


@pytest.mark.parametrize("part,escaped", [
    ("loss", "loss"), ("val acc", "val%20acc"), ("top-1", "top-1"), (".hidden", "%2Ehidden"),
    ("a.b", "a.b"), ("...", "%2E.."), ("100%", "100%25"), ("é", "%C3%A9"), ("a:b", "a%3Ab"),
    ("a\\b", "a%5Cb"), ("CON", "CON"),
])
def test_escape_part(part: str, escaped: str) -> None:
    assert escape_part(part) == escaped
    assert unescape_part(escaped) == part


def test_name_to_relpath_and_back() -> None:
    assert name_to_relpath("val acc/top-1", ".csv") == "val%20acc/top-1.csv"
    assert relpath_to_name("val%20acc/top-1.csv", ".csv") == "val acc/top-1"
    assert name_to_relpath(".a/.b") == "%2Ea/%2Eb"


def test_escaping_is_reversible_and_safe_for_random_names() -> None:
    rng = random.Random(0)
    alphabet = "abcXYZ019 ._-%/:*?\"<>|\\éü中🙂'#&+=~"
    seen = set()
    for _ in range(3000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        try:
            check_name(name)
        except LabtrackNameError:
            continue
        rel = name_to_relpath(name, ".csv")
        parts = rel[:-4].split("/")
        assert all(set(p) <= SAFE and p and not p.startswith(".") for p in parts), rel
        assert relpath_to_name(rel, ".csv") == name
        seen.add(rel)
    assert len(seen) > 1000  # distinct names never collide into one file


@pytest.mark.parametrize("name,expected", [
    ("mnist", "mnist"), ("my exp/1", "my-exp-1"), (".hidden", "-hidden"), ("", "default"),
    ("  spaced  ", "spaced"), ("é", "-"), ("a" * 200, "a" * 120),
])
def test_slug(name: str, expected: str) -> None:
    assert slug(name) == expected
