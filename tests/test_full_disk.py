"""A real full disk (a 2 MB tmpfs mounted by the test): training never raises, every loss is
reported by kind and name, no append-only file holds a torn line, and what was held is
written once space returns."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import labtrack

from conftest import flush

pytestmark = pytest.mark.timeout(120)

BIG = "x" * 20_000  # larger than the slack in a file's last page: its write fails part-way


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for this test (needs root)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"mounting a 2 MB tmpfs needs root (mount said: {p.stderr.strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Write into `path` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            while True:
                try:
                    if os.write(fd, chunk) == 0:
                        break
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def _assert_no_torn_line(run_dir: Path) -> None:
    """Every line of every append-only file is whole and parses."""
    for path in run_dir.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(run_dir).as_posix()
        data = path.read_bytes()
        if rel.endswith(".jsonl"):
            assert data.endswith(b"\n"), f"{rel} ends in a partial line"
            for i, line in enumerate(data.decode().splitlines()):
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    raise AssertionError(f"{rel} line {i + 1} is corrupt: {line[:80]!r}...") from None
        elif rel.startswith("scalars/"):
            lines = data.decode().splitlines()
            assert data.endswith(b"\n") and lines[0] == "step,value,time", rel
            for line in lines[1:]:
                s, v, t = line.split(",")
                int(s), float(v), float(t)
        elif rel == "console.log":
            assert data.endswith(b"\n")


def _start(root: Path) -> labtrack.Run:
    run = labtrack.Run("exp", root=root, capture_git=False, capture_console=False,
                       flush_seconds=0.05, system=False, _environ={})
    run.log({"loss": 0.0}, step=0)
    run.log_text("q", "first", step=0)
    run.log_histogram("h", [1.0, 2.0, 3.0], step=0)
    run.println("before the disk filled")
    flush(run)
    return run


def _log_while_full(run: labtrack.Run) -> None:
    for i in range(1, 501):
        run.log({"loss": float(i)}, step=i)
    run.log_text("q", BIG, step=1)  # fails part-way: the partial tail must be cut back
    run.log_text("q", "after the big one", step=2)
    run.log_histogram("h", np.arange(5000.0), step=1)
    run.println("while the disk was full")
    run.log_image("img", np.zeros((8, 8), np.uint8), step=1)  # an atomic write: lost, by name
    run.log_markdown("notes", "# lost too")
    flush(run)
    time.sleep(0.3)  # several periodic flushes retry and fail
    flush(run)


def test_space_returns_held_lines_are_written_and_only_the_media_is_lost(tiny_fs: Path) -> None:
    root = tiny_fs / "root"
    run = _start(root)
    filler = tiny_fs / "filler"
    _fill(filler)
    with warnings.catch_warnings(record=True) as during:
        warnings.simplefilter("always")
        _log_while_full(run)  # never raises
    said = [str(w.message) for w in during]
    # Two different losses: each is reported, not only the first (no warn-once per kind).
    assert any("lost 1 image of 'img'" in m for m in said), said
    assert any("lost 1 markdown document of 'notes'" in m for m in said), said
    filler.unlink()
    for i in range(501, 601):
        run.log({"loss": float(i)}, step=i)
    run.log_text("q", "space is back", step=3)
    with warnings.catch_warnings(record=True) as at_finish:
        warnings.simplefilter("always")
        run.finish()
    final = [str(w.message) for w in at_finish]
    assert final == [f"labtrack: run {run.id} lost 1 image of 'img', 1 markdown document of 'notes'"]

    _assert_no_torn_line(run.dir)
    view = labtrack.open(root)[run.id]
    assert view.status == "finished"
    loss = view.scalars("loss")
    assert loss.index.tolist() == list(range(601)) and loss["value"].tolist() == [float(i) for i in range(601)]
    assert view.summary["loss"]["count"] == 601
    assert view.texts("q")["text"].tolist() == ["first", BIG, "after the big one", "space is back"]
    assert [h["step"] for h in view.histograms("h")] == [0, 1]
    assert "while the disk was full" in view.console
    assert view.images() == []  # lost, as reported: no entry, no file
    assert not (run.dir / "media").exists() or not list((run.dir / "media").rglob("*.png"))


def test_finish_on_a_full_disk_reports_the_held_values_it_drops(tiny_fs: Path) -> None:
    root = tiny_fs / "root"
    run = _start(root)
    filler = tiny_fs / "filler"
    _fill(filler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _log_while_full(run)
            run.finish()  # the disk is still full: what is held is dropped, and counted
    finally:
        filler.unlink()
    final = str(caught[-1].message)
    assert final.startswith(f"labtrack: run {run.id} lost "), final
    lost = {(kind, name): int(n) for n, kind, name in
            re.findall(r"(\d+) ([a-z ]+?)s? of '([^']+)'", final)}
    # Held behind a failed append, in file order: all 500 values and both text records are
    # dropped; the small histogram record and console line may have fit in the files' slack.
    assert lost.pop(("value", "loss")) == 500 and lost.pop(("text record", "q")) == 2, final
    assert lost.pop(("image", "img")) == 1 and lost.pop(("markdown document", "notes")) == 1, final
    assert set(lost) <= {("histogram record", "h"), ("console line", "console.log")}, final
    assert "final status (finished) could not be written" in final

    # What is on disk is whole, and exactly what the report says is missing is missing.
    _assert_no_torn_line(run.dir)
    view = labtrack.open(root)[run.id]
    assert view.scalars("loss").index.tolist() == [0]  # 501 logged - 500 lost
    assert view.summary["loss"]["count"] == 1  # the summary counts what is on disk
    assert view.texts("q")["text"].tolist() == ["first"]  # 3 logged - 2 lost
    assert len(view.histograms("h")) == 2 - lost.get(("histogram record", "h"), 0)
    assert ("while the disk was full" in view.console) == (("console line", "console.log") not in lost)
