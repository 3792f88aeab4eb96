"""The per-run row file (`.row.json`, `_index_rowfile`) and the SQL-paged index
(`Index.page`, `_index_sql`), issue 17: real runs written by `labtrack.init`/`finish`,
real SQLite indexes.

The row file is a cache: the index built from it must equal the index built from the run's
three JSON files; a run whose files changed after it was written (resumed, edited by hand)
must be read from its files; a deleted, damaged or forged row file changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

import labtrack
from labtrack._index import Index
from labtrack._index_rowfile import ROW_FILE, load_record, write_row_file
from labtrack._index_rows import _scan


def make_run(root: Path, i: int, **extra: Any) -> Path:
    run = labtrack.init(root=str(root), experiment=f"exp{i % 2}", name=f"run{i}",
                        config={"lr": 0.1 / (i + 1), "opt": {"name": ("adam", "sgd")[i % 2]},
                                "odd": float("nan") if i == 3 else i, **extra},
                        tags=[f"g{i % 3}"], capture_console=False, capture_git=False)
    for step in range(3):
        run.log({"loss": 1.0 / (i + step + 1), "acc": float("inf") if i == 4 else i / 10}, step=step)
    run.finish()
    return Path(run.dir)


def rows_of(root: Path, path: Path, **kw: Any) -> list[dict[str, Any]]:
    with Index(root, path=path) as index:
        _, rows = index.query(with_stats=True, **kw)
    return rows


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (json.dumps writes both the same)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for i in range(6):
        make_run(r, i)
    return r


def test_finish_writes_a_row_file_the_index_folds_in(root: Path, tmp_path: Path) -> None:
    dirs = sorted(p.parent for p in root.glob(f"*/*/{ROW_FILE}"))
    assert len(dirs) == 6
    sigs = _scan(str(root))
    for d in dirs:  # made from the files as they are now
        assert load_record(str(d), sigs[f"{d.parent.name}/{d.name}"]) is not None
    with_rows = rows_of(root, tmp_path / "a.sqlite")
    for d in dirs:
        (d / ROW_FILE).unlink()
    from_files = rows_of(root, tmp_path / "b.sqlite")
    assert same(with_rows, from_files)
    assert math.isnan(next(r for r in from_files if r["name"] == "run3")["params"]["odd"])


def test_the_index_reads_the_row_file_instead_of_the_json_files(root: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import labtrack._index_rows as rows

    def no_parse(*a: Any, **k: Any) -> Any:
        raise AssertionError("parsed the run's files although its row file is current")

    monkeypatch.setattr(rows, "_record", no_parse)
    assert len(rows_of(root, tmp_path / "a.sqlite")) == 6


def test_a_resumed_run_is_not_shown_from_its_stale_row_file(root: Path, tmp_path: Path) -> None:
    d = next(root.glob("exp0/*"))
    index_path = tmp_path / "ix.sqlite"
    assert {r["status"] for r in rows_of(root, index_path)} == {"finished"}
    run = labtrack.init(root=str(root), resume=d.name, capture_console=False, capture_git=False)
    run.log({"loss": -5.0}, step=10)
    run.flush()
    # resumed: run.json says running now; the row file still says finished
    with Index(root, path=index_path) as index:
        index.refresh()
        _, got = index.query(where=f"id == '{d.name}'")
        assert got[0]["status"] == "running"
        total, hits = index.page(status="running")
        assert total == 1 and hits[0].id == d.name
    run.finish()
    with Index(root, path=index_path) as index:
        index.refresh()
        _, got = index.query(where=f"id == '{d.name}'", with_stats=True)
    assert got[0]["status"] == "finished" and got[0]["metrics"]["loss"] == -5.0
    assert got[0]["stats"]["loss"]["step"] == 10
    # and the new row file was made from the new files
    assert load_record(str(d), _scan(str(root))[f"exp0/{d.name}"]) is not None


def test_a_hand_edit_after_finish_is_seen(root: Path, tmp_path: Path) -> None:
    d = next(root.glob("exp1/*"))
    index_path = tmp_path / "ix.sqlite"
    rows_of(root, index_path)
    params = json.loads((d / "params.json").read_text())
    params["lr"] = 42.0
    with open(d / "params.json", "r+") as f:  # in place: same inode, a new size and mtime
        f.write(json.dumps(params))
        f.truncate()
    got = rows_of(root, index_path, where="params.lr == 42")
    assert [r["id"] for r in got] == [d.name]


def test_damaged_forged_or_foreign_row_files_are_ignored(root: Path, tmp_path: Path) -> None:
    reference = rows_of(root, tmp_path / "ref.sqlite")
    dirs = sorted(root.glob("*/*"))
    good = (dirs[0] / ROW_FILE).read_text()
    (dirs[0] / ROW_FILE).write_text(good[: len(good) // 2])  # torn
    body = json.loads((dirs[1] / ROW_FILE).read_text())
    body[0]["schema"] = 1  # made for another index schema
    (dirs[1] / ROW_FILE).write_text(json.dumps(body))
    body = json.loads((dirs[2] / ROW_FILE).read_text())
    body[17] = "not an object"  # params: wrong type
    (dirs[2] / ROW_FILE).write_text(json.dumps(body))
    (dirs[3] / ROW_FILE).write_text(good)  # another run's row file, copied over
    outside = tmp_path / "outside.json"
    outside.write_text((dirs[4] / ROW_FILE).read_text())
    (dirs[4] / ROW_FILE).unlink()
    (dirs[4] / ROW_FILE).symlink_to(outside)  # leads out of the run
    (dirs[5] / ROW_FILE).write_bytes(b"\xff\xfe[not json")
    assert same(rows_of(root, tmp_path / "ix.sqlite"), reference)


def test_a_deleted_index_is_rebuilt_from_the_row_files_the_same(root: Path) -> None:
    with Index(root) as index:
        _, before = index.query(with_stats=True)
    (root / ".labtrack" / "index.sqlite").unlink()
    with Index(root) as index:
        _, after = index.query(with_stats=True)
    assert same(before, after)


def test_write_row_file_never_raises_and_skips_what_it_cannot_sign(tmp_path: Path) -> None:
    assert write_row_file(tmp_path / "no-such-run") is False
    d = tmp_path / "e" / "r1"
    d.mkdir(parents=True)
    (d / "run.json").write_text("{not json")
    assert write_row_file(d) is False and not (d / ROW_FILE).exists()
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


# -- Index.page: the SQL answer is select()'s answer


def _live_run(root: Path, rid: str, pid: int, beat_age: float) -> None:
    """A run stored as running on this host (alive when `pid` lives and beats)."""
    d = root / "exp0" / rid
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({
        "format_version": 1, "id": rid, "experiment": "exp0", "name": f"live-{rid[-2:]}",
        "comment": "sweep", "tags": ["g0"], "status": "running", "started": "2026-11-21T00:00:00.000000+00:00",
        "ended": None, "pid": pid, "host": os.uname().nodename, "git": None}))
    (d / "params.json").write_text(json.dumps({"lr": 0.001, "opt": {"name": "adam"}}))
    (d / "heartbeat").write_text("")
    t = time.time() - beat_age
    os.utime(d / "heartbeat", (t, t))


QUERIES: list[dict[str, Any]] = [
    {}, {"sort": "started"}, {"sort": "-metrics.loss"}, {"sort": "metrics.acc"},
    {"sort": "-metrics.loss:min"}, {"sort": "params.odd"}, {"sort": "-params.opt.name"},
    {"sort": "name"}, {"sort": "status"}, {"sort": "duration"},
    {"where": "params.lr < 0.05"}, {"where": "params.odd > 1 or metrics.acc > 0.2"},
    {"where": "not params.odd == 3", "sort": "-params.lr"}, {"where": "'g1' in tags"},
    {"where": "status == 'running'"}, {"where": "status == 'crashed'"},
    {"q": "sweep"}, {"q": "run1"}, {"q": "crashed"}, {"q": "running"}, {"q": "finished g0"},
    {"status": "running"}, {"status": "crashed"}, {"status": "finished", "sort": "params.lr"},
    {"experiment": "exp0", "sort": "-metrics.acc"}, {"experiment": "exp1", "where": "params.lr > 0.02"},
]


@pytest.mark.parametrize("offset,limit", [(0, None), (0, 3), (2, 2), (7, 5)])
def test_page_gives_the_slice_of_select(root: Path, tmp_path: Path, offset: int, limit: int | None) -> None:
    _live_run(root, "20991231-000000-live01", os.getpid(), 0.0)  # alive
    _live_run(root, "20991231-000000-dead02", 2**22 + 12345, 3600.0)  # crashed
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        index.refresh()
        for kw in QUERIES:
            every = index.select(parts=False, **kw)
            total, hits = index.page(offset=offset, limit=limit, **kw)
            want = every[offset:] if limit is None else every[offset:offset + limit]
            assert total == len(every), kw
            assert [h.relpath for h in hits] == [h.relpath for h in want], kw
            assert [h.row()["status"] for h in hits] == [h.row()["status"] for h in want], kw


def test_page_refuses_what_select_refuses(root: Path, tmp_path: Path) -> None:
    from labtrack.errors import LabtrackValueError, QueryError

    with Index(root, path=tmp_path / "ix.sqlite") as index:
        with pytest.raises(QueryError, match="params.lrr"):
            index.page(where="params.lrr < 1")
        with pytest.raises(QueryError, match="cannot sort"):
            index.page(sort="nonsense")
        with pytest.raises(QueryError, match="status"):
            index.page(status="sleeping")
        with pytest.raises(LabtrackValueError, match="offset"):
            index.page(offset=-1)


def test_columns_follow_new_runs(root: Path, tmp_path: Path) -> None:
    with Index(root, path=tmp_path / "ix.sqlite") as index:
        assert "extra" not in index.columns()["params"]
        make_run(root, 9, extra=1)
        index.refresh()
        assert "extra" in index.columns()["params"]
        assert index.page(where="params.extra == 1")[0] == 1


def test_the_uploader_never_sends_the_row_file(root: Path) -> None:
    from labtrack._remote.upload import scan_files

    d = next(root.glob("exp0/*"))
    assert (d / ROW_FILE).exists()
    files = scan_files(d)
    assert "run.json" in files and ROW_FILE not in files
