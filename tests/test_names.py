"""Names (pure): validation, reversible escaping, experiment slugs (docs/format.md, Names)."""

from __future__ import annotations

import json
import random

import numpy as np

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


# --- names that clash on disk are refused at the call ------------------------------------------

def test_a_series_whose_file_would_be_another_series_folder_is_refused_at_the_call(make_run) -> None:
    run = make_run()
    with pytest.raises(LabtrackNameError, match=r"'a.csv/b'.*'a'"):
        run.log({"a": 1.0, "a.csv/b": 2.0})  # within one call
    run.log({"a": 3.0}, step=1)
    with pytest.raises(LabtrackNameError, match=r"'a.csv/b'.*'a'"):
        run.log({"a.csv/b": 4.0})  # against a name logged earlier
    run.log({"x.csv/y": 1.0})
    with pytest.raises(LabtrackNameError, match=r"'x'.*'x.csv/y'"):
        run.log({"x": 1.0})  # the other way round: its file would be the other's folder
    run.log({"a.csv2/b": 1.0, "ab/c": 1.0})  # near misses are fine
    run.finish()
    summary = json.loads((run.dir / "summary.json").read_text())
    assert sorted(summary) == ["a", "a.csv2/b", "ab/c", "x.csv/y"]
    assert summary["a"]["count"] == 1  # the refused call logged nothing


def test_clashing_text_histogram_markdown_table_and_media_names_are_refused(make_run) -> None:
    run = make_run()
    run.log_text("q", "hi")
    with pytest.raises(LabtrackNameError, match=r"'q.jsonl/r'.*'q'"):
        run.log_text("q.jsonl/r", "lost")
    run.log_histogram("h.jsonl/g", [1.0, 2.0])
    with pytest.raises(LabtrackNameError, match=r"'h'.*'h.jsonl/g'"):
        run.log_histogram("h", [1.0])
    run.log_markdown("m", "# doc")
    with pytest.raises(LabtrackNameError, match=r"'m.md/n'.*'m'"):
        run.log_markdown("m.md/n", "# doc")
    run.log_table("t", [{"a": 1}])
    with pytest.raises(LabtrackNameError, match=r"'t.csv/u'.*'t'"):
        run.log_table("t.csv/u", [{"a": 1}])
    run.log_image("img", np.zeros((2, 2), np.uint8), step=0)
    with pytest.raises(LabtrackNameError, match=r"'img.png/x'.*'img'"):
        run.log_image("img.png/x", np.zeros((2, 2), np.uint8), step=1)
    with pytest.raises(LabtrackNameError, match=r"'img.json/x'.*'img'"):
        run.log_markdown("img.json/x", "# boxes' file", step=0)
    run.log_text("q2", "other names are fine")
    run.finish()
    assert not (run.dir / "text" / "q.jsonl").is_dir()
    assert [e["name"] for e in json.loads("[" + ",".join(
        (run.dir / "media.jsonl").read_text().splitlines()) + "]")] == ["img"]


def test_a_resumed_run_refuses_names_that_clash_with_files_on_disk(tmp_path) -> None:
    import labtrack

    kw = dict(root=tmp_path / "root", capture_git=False, capture_console=False, _environ={})
    first = labtrack.Run("exp", **kw)
    first.log({"a.csv/b": 1.0, "loss": 1.0})
    first.log_text("q", "hi")
    first.finish()
    again = labtrack.Run(resume=first.id, **kw)
    try:
        with pytest.raises(LabtrackNameError, match=r"'a'.*'a.csv/b"):
            again.log({"a": 1.0})
        with pytest.raises(LabtrackNameError, match=r"'q.jsonl/r'.*'q.jsonl'"):
            again.log_text("q.jsonl/r", "x")
        again.log({"loss": 2.0, "a.csv/b": 2.0})  # the names already there go on
        again.log_text("q", "again")
    finally:
        again.finish()
