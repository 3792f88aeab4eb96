"""Sort indexes (`_index_sql.sort_index`), issue 17's warm sort: the first sort by a param or
a metric creates an SQLite index on exactly its ORDER BY expressions, the next ones walk it.

Real runs written by `labtrack.init`/`finish`, real SQLite files. The index is a cache: the
pages must be those `Index.select` gives (NaN, missing, text and mixed-type keys, both
directions, runs added and changed after the index was made), at most `SORT_INDEXES` are
kept, and a database this process cannot write still answers, without one.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

import labtrack
from labtrack import _index_sql
from labtrack._index import Index


def make_run(root: Path, i: int, **config: Any) -> None:
    mixed: Any = ("text", 3, None, float("nan"), True, [1, 2])[i % 6]
    run = labtrack.init(root=str(root), experiment=f"exp{i % 2}", name=f"run{i}",
                        config={"lr": 0.1 / (i + 1), "mixed": mixed, **config},
                        capture_console=False, capture_git=False)
    if i % 5 != 4:  # some runs have no acc at all
        run.log({"acc": float("nan") if i % 7 == 3 else (i * 37 % 11) / 10}, step=0)
    run.log({"loss": 1.0 / (i + 1)}, step=1)
    run.finish()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for i in range(14):
        make_run(r, i)
    return r


SORTS = ["-metrics.acc", "metrics.acc", "-metrics.acc:max", "metrics.loss:min", "params.mixed",
         "-params.mixed", "params.lr", "-params.nothing"]


def sort_indexes(con: sqlite3.Connection) -> set[str]:
    return {n for (n,) in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'runs_sort_%'")}


def check_pages(index: Index, sort: str, **kw: Any) -> None:
    every = index.select(parts=False, sort=sort, **kw)
    for offset, limit in ((0, 5), (5, 5), (0, None), (12, 100)):
        total, hits = index.page(sort=sort, offset=offset, limit=limit, **kw)
        want = every[offset:] if limit is None else every[offset:offset + limit]
        assert total == len(every), (sort, kw)
        assert [h.relpath for h in hits] == [h.relpath for h in want], (sort, offset, kw)


def test_a_sort_makes_an_index_the_next_sort_walks(root: Path, tmp_path: Path) -> None:
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        index.refresh()
        con = index._connect()
        assert not sort_indexes(con)
        check_pages(index, "-metrics.acc:max")
        made = sort_indexes(con)
        assert len(made) == 1
        # the paging query now reads the index in order instead of sorting every row
        order = _index_sql._order("-metrics.acc:max")
        assert order is not None
        terms = _index_sql._inline(*order)
        assert terms is not None
        plan = " ".join(str(r) for r in con.execute(
            "EXPLAIN QUERY PLAN SELECT relpath FROM runs WHERE status <> 'running' ORDER BY "
            + ", ".join(terms) + " LIMIT 5"))
        assert f"USING INDEX {next(iter(made))}" in plan and "TEMP B-TREE" not in plan, plan


def test_pages_equal_select_for_every_sort_and_filter(root: Path, tmp_path: Path) -> None:
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        index.refresh()
        for sort in SORTS:
            check_pages(index, sort)
            check_pages(index, sort, where="params.lr < 0.05")
            check_pages(index, sort, experiment="exp1", q="run1")
        assert len(sort_indexes(index._connect())) <= _index_sql.SORT_INDEXES


def test_runs_added_and_changed_after_the_index_are_sorted_in(root: Path, tmp_path: Path) -> None:
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        index.refresh()
        check_pages(index, "-metrics.acc")
        first = index.page(sort="-metrics.acc", limit=1)[1][0]
        make_run(root, 100, extra=1)  # acc 0.5: not the largest
        run = labtrack.init(root=str(root), experiment="exp0", name="best",
                            capture_console=False, capture_git=False)
        run.log({"acc": 99.0}, step=0)
        run.finish()
        index.refresh()
        top = index.page(sort="-metrics.acc", limit=1)[1][0]
        assert top.id == run.id and top.relpath != first.relpath
        check_pages(index, "-metrics.acc")
        # a run whose metric is rewritten (summary.json by hand) moves
        summary = Path(run.dir) / "summary.json"
        summary.write_text(summary.read_text().replace("99.0", "-1.0"))
        index.refresh()
        assert index.page(sort="-metrics.acc", limit=1)[1][0].relpath == first.relpath
        check_pages(index, "-metrics.acc")


def test_at_most_a_few_are_kept_the_oldest_dropped(root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_index_sql, "_TOUCH_SECONDS", 0.0)
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        index.refresh()
        con = index._connect()
        made: list[str] = []
        for sort in SORTS[:_index_sql.SORT_INDEXES + 2]:
            index.page(sort=sort, limit=3)
            new = sort_indexes(con) - set(made)
            assert len(new) == 1, sort
            made += new
        kept = sort_indexes(con)
        assert kept == set(made[-_index_sql.SORT_INDEXES:])  # the first two were dropped
        # and a sort whose index was dropped still answers right, and makes it again
        check_pages(index, SORTS[0])


def test_a_read_only_index_file_sorts_without_one(root: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    path = tmp_path / "ro" / "ix.sqlite"
    path.parent.mkdir()
    with Index(root, path=path) as index:
        index.refresh()
        want = [h.relpath for h in index.select(parts=False, sort="-params.lr")]
    path.chmod(stat.S_IRUSR)
    path.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with Index(root, path=path) as index:
            con = index._connect()
            hits, total = _index_sql.page(index, None, None, None, None, "-params.lr", 0, None)
            assert total == len(want) and [h.relpath for h in hits] == want
            assert not sort_indexes(con)
    finally:
        path.parent.chmod(stat.S_IRWXU)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_a_writer_holding_the_lock_does_not_hold_up_a_sort(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "ix.sqlite"
    with Index(root, path=path) as index:
        index.refresh()
        want = [h.relpath for h in index.select(parts=False, sort="metrics.loss")]
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with Index(root, path=path) as index:
            index._busy_ms = 100
            hits, total = _index_sql.page(index, None, None, None, None, "metrics.loss", 0, None)
            assert [h.relpath for h in hits] == want and total == len(want)
            assert not sort_indexes(index._connect())
    finally:
        other.execute("ROLLBACK")
        other.close()
    with Index(root, path=path) as index:  # the lock gone, the next sort makes it
        _index_sql.page(index, None, None, None, None, "metrics.loss", 0, 5)
        assert len(sort_indexes(index._connect())) == 1


def test_a_key_with_quotes_is_a_literal_not_sql(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(4):
        make_run(root, i, **{"it's": i, 'a"b': -i})
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        index.refresh()
        check_pages(index, "-params.it's")
        check_pages(index, 'params.a"b')
        assert len(sort_indexes(index._connect())) == 2
        assert index.page()[0] == 4  # the table is whole
