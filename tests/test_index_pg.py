"""The PostgreSQL index answers as the SQLite index does on the same generated root (where,
sort, q, status, pages, columns, rows, resolve), refreshes incrementally, serves while
another process migrates the schema, and fails clearly on a bad URL."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pg import pg_db, postgres  # noqa: F401 - fixtures
from test_index import stat, write_run
from test_where_sql import gen_expr

pytest.importorskip("psycopg")

from labtrack._index import Index  # noqa: E402
from labtrack._index_pg import PgIndex, open_index  # noqa: E402
from labtrack._pg import LATEST, Database, DatabaseError, connect, schema_version  # noqa: E402
from labtrack.errors import LabtrackValueError, QueryError  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
VALUES: list[Any] = [0, 1, 2, -1, 0.5, 1e20, math.nan, math.inf, True, False, "", "a", "ab", "B",
                     "ü", "1", None, [1, 2], ["a", "b"], []]
KEYS = ["lr", "opt.lr", "val acc", 'q"k', "b\\s", "ü", "flag", "layers"]


def make_root(root: Path, n: int = 70, seed: int = 18) -> None:
    rng = random.Random(seed)
    for i in range(n):
        params = {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.6}
        summary = {}
        for m in ("loss", "train/acc"):
            if rng.random() < 0.7:
                last = rng.choice([0.1, 0.5, 2.0, math.nan, 1.0])
                summary[m] = stat(last, lo=rng.choice([0.0, 0.1, last]), hi=rng.choice([3.0, last]))
        status = rng.choice(["finished", "finished", "failed", "killed", "running"])
        run_id = f"2026{1 + i % 12:02d}{1 + i % 27:02d}-{i % 24:02d}0000-{i:06x}"
        d = write_run(root, rng.choice(["mnist", "cnn", "ü exp"]), run_id, status=status, params=params,
                      summary=summary, name=rng.choice(["", "a", "ab", "fix bug"]),
                      comment=rng.choice(["", "fix", "x y"]),
                      tags=rng.choice([[], ["cnn"], ["a", "b"], ["cnn", "fix"]]),
                      group=rng.choice([None, "g1", "g2"]), host=rng.choice(["elsewhere", "h2"]),
                      git=rng.choice([None, {"commit": "abc123", "dirty": rng.choice([True, False])}]))
        if status == "running" and rng.random() < 0.5:
            os.utime(d / "heartbeat", (time.time() - 3600, time.time() - 3600))  # crashed


@pytest.fixture
def pair(tmp_path: Path, pg_db: str) -> Any:
    root = tmp_path / "root"
    root.mkdir()
    make_root(root)
    now = time.time()
    lite = Index(root, clock=lambda: now, stale_seconds=60)
    pgi = open_index(root, pg_db, clock=lambda: now, stale_seconds=60)
    assert isinstance(pgi, PgIndex)
    yield lite, pgi, root
    lite.close()
    pgi.close()


def _same(lite: Index, pgi: PgIndex, **kw: Any) -> None:
    try:
        want = lite.query(**kw)
    except QueryError as e:
        with pytest.raises(QueryError) as got:
            pgi.query(**kw)
        assert str(got.value) == str(e)
        return
    got = pgi.query(**kw)
    assert got[0] == want[0], (kw, got[0], want[0])
    assert [r["id"] for r in got[1]] == [r["id"] for r in want[1]], kw
    assert _json(got[1]) == _json(want[1]), kw


def _json(rows: Any) -> str:
    import json

    return json.dumps(rows, sort_keys=True, default=repr)


def test_pg_index_answers_as_sqlite(pair: Any) -> None:
    lite, pgi, _root = pair
    assert pgi.refresh()["total"] == lite.refresh()["total"] == 70
    assert pgi.columns() == lite.columns()
    assert pgi.columns("cnn") == lite.columns("cnn")
    for kw in [{}, {"sort": "started"}, {"sort": "-params.lr"}, {"sort": "params.ü"}, {"sort": "name"},
               {"sort": "-metrics.loss:min"}, {"sort": "metrics.train/acc"}, {"sort": "status"},
               {"sort": "-duration"}, {"sort": "tags"}, {"sort": "dirty"}, {"sort": "-group"},
               {"status": "running"}, {"status": "crashed"}, {"status": "finished"}, {"q": "fix"},
               {"q": "crashed"}, {"q": "running cnn"}, {"q": "failed"}, {"experiment": "ü exp"},
               {"where": 'status == "crashed"'}, {"where": "duration > 0"}, {"where": "params.nope > 1"},
               {"sort": "-params.lr", "offset": 5, "limit": 7}, {"offset": 60, "limit": 20},
               {"where": "params.lr > 0", "sort": "-metrics.loss", "limit": 3, "with_stats": True}]:
        _same(lite, pgi, **kw)
    rng = random.Random(7)
    for i in range(150):
        expr = gen_expr(rng)
        sort = rng.choice([None, "-started", "params.lr", "-metrics.loss:max", "name", "status"])
        _same(lite, pgi, where=expr, sort=sort, limit=rng.choice([None, 10]), offset=rng.choice([0, 3]))
    assert len(pgi.select(where="params.lr >= 0")) == len(lite.select(where="params.lr >= 0"))
    rels = [h.relpath for h in lite.select()][:5]
    assert _json(pgi.rows(rels)) == _json(lite.rows(rels))
    assert _json(pgi.table_rows(rels, ("last", "min", "max"))) == _json(lite.table_rows(rels, ("last", "min", "max")))
    for ref in [rels[0].rsplit("/", 1)[1], rels[0].rsplit("/", 1)[1][:6], rels[1], "mnist/a", "2026"]:
        assert [r["id"] for r in pgi.resolve(ref)] == [r["id"] for r in lite.resolve(ref)], ref


def test_refresh_is_incremental_and_shared(pair: Any, pg_db: str) -> None:
    lite, pgi, root = pair
    assert pgi.refresh()["added"] == 70
    assert pgi.refresh() == {"added": 0, "updated": 0, "removed": 0, "unreadable": 0, "total": 70}
    # A second server over the same database finds the rows already stored.
    other = PgIndex(root, pg_db)
    try:
        assert other.refresh()["added"] == 0
        gone = next(p for p in root.glob("*/*") if p.is_dir())
        import shutil

        shutil.rmtree(gone)
        (root / "mnist" / "20260101-000000-bad").mkdir(parents=True)
        (root / "mnist" / "20260101-000000-bad" / "run.json").write_text("{not json")
        got = other.refresh()
        assert got["removed"] == 1 and got["unreadable"] == 1 and got["total"] == 69
        assert pgi.refresh()["total"] == 69  # nothing left for the first one to do
        assert [r for r, _ in pgi.problems()] == ["mnist/20260101-000000-bad"]
        assert pgi.rebuild()["added"] == 69
    finally:
        other.close()


def test_servers_keep_querying_while_another_process_migrates(tmp_path: Path, pg_db: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    make_root(root, 30)
    with Database(pg_db) as db:
        assert db.migrate(upto=LATEST - 2) == LATEST - 2
    index = PgIndex(root, pg_db, migrate=False)  # a server built before the newer migrations
    index.refresh()
    errors: list[BaseException] = []
    answers = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                total, _ = index.query(where="params.lr > 0", sort="-metrics.loss", limit=10)
                index.columns()
                answers[0] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        before = answers[0]
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        out = subprocess.run([sys.executable, "-c", "import sys; from labtrack._pg import Database; "
                              "print(Database(sys.argv[1]).migrate())", pg_db], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(LATEST)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert answers[0] > before > 0
    with connect(pg_db) as conn:
        assert schema_version(conn) == LATEST
    index.close()


def test_bad_index_urls_are_clear(tmp_path: Path, pg_db: str) -> None:
    with pytest.raises(LabtrackValueError, match="SQLite file path or a postgresql://"):
        open_index(tmp_path, "mysql://u@h/db")
    with pytest.raises(DatabaseError, match="cannot connect to the index database postgresql://u@127.0.0.1:9/db"):
        open_index(tmp_path, "postgresql://u@127.0.0.1:9/db")
    assert type(open_index(tmp_path)) is Index
    # The CLI prints one line, no traceback.
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", "serve", "--root", str(tmp_path),
                          "--index", "postgresql://u@127.0.0.1:9/db", "--port", "0"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "cannot connect to the index database" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_dashboard_api_answers_from_postgresql(tmp_path: Path, pg_db: str) -> None:
    from labtrack._server.app import create_app
    from test_server_api import Client

    root = tmp_path / "root"
    root.mkdir()
    make_root(root, 40)
    lite, pg = Client(create_app(root)), Client(create_app(root, index=pg_db))
    for params in [{}, {"sort": "-params.lr", "limit": "5"}, {"where": "params.lr > 0", "sort": "name"},
                   {"q": "fix", "columns": "params.lr,metrics.loss"}]:
        want, got = lite.json("/api/v1/runs", params=params), pg.json("/api/v1/runs", params=params)
        assert got["total"] == want["total"] and [r["id"] for r in got["runs"]] == [r["id"] for r in want["runs"]]
    assert pg.json("/api/v1/runs", status=400, params={"where": "params.lr >"})
    with connect(pg_db) as conn:
        row = conn.execute("SELECT count(*) FROM runs").fetchone()
        assert row is not None and row[0] == 40


def test_pages_agree_with_sqlite_past_the_end_too(pair: Any) -> None:
    # Index.page is what /api/v1/runs asks for: PostgreSQL pages in SQL (by the started
    # index, a narrow sort, or one counted scan), SQLite slices its sorted list.
    lite, pgi, _root = pair
    assert pgi.refresh()["total"] == lite.refresh()["total"] == 70
    for kw in [{}, {"sort": "started"}, {"sort": "-metrics.loss:max"}, {"sort": "name"}, {"q": "fix"},
               {"where": "params.lr > 0"}, {"where": "params.lr > 0", "sort": "-params.lr"},
               {"where": "params.lr > 1e9"}, {"status": "crashed"}, {"experiment": "ü exp", "q": "fix"}]:
        for offset, limit in [(0, 10), (7, 5), (65, 10), (70, 10), (200, 10), (0, 0)]:
            want_total, want = lite.page(offset=offset, limit=limit, **kw)  # type: ignore[arg-type]
            got_total, got = pgi.page(offset=offset, limit=limit, **kw)  # type: ignore[arg-type]
            assert got_total == want_total, (kw, offset, limit)
            assert [h.relpath for h in got] == [h.relpath for h in want], (kw, offset, limit)
            assert _json([h.row() for h in got]) == _json([h.row() for h in want]), (kw, offset)
    with pytest.raises(LabtrackValueError, match="offset and limit must be >= 0"):
        pgi.page(offset=-1)
    with pytest.raises(QueryError, match="did you mean params.lr"):
        pgi.page(where="params.lrr > 0")


def test_servers_over_mirrors_of_one_bucket_never_drop_a_run_another_has(tmp_path: Path, pg_db: str) -> None:
    # `labtrack serve --root s3://...`: each process indexes its own mirror (mirrored=True).
    # One whose mirror lacks runs (still filling, or they were written straight to the
    # bucket) used to delete their rows from the shared index at each refresh, so the runs
    # came and went in every server's list.
    full, partial = tmp_path / "mirror-a", tmp_path / "mirror-b"
    full.mkdir()
    partial.mkdir()
    make_root(full, 12)
    a = PgIndex(full, pg_db, mirrored=True)
    b = PgIndex(partial, pg_db, mirrored=True)
    try:
        assert a.refresh()["added"] == 12
        assert b.refresh()["removed"] == 0
        assert a.query()[0] == b.query()[0] == 12
        import shutil

        one = sorted(p for p in full.glob("*/*") if p.is_dir())[0]
        shutil.copytree(one, partial / one.parent.name / one.name)
        assert b.refresh() == {"added": 0, "updated": 0, "removed": 0, "unreadable": 0, "total": 12}
        assert b.query()[0] == 12
        # the default (one root, one index) still drops what is gone
        pruning = PgIndex(partial, pg_db)
        try:
            assert pruning.refresh()["removed"] == 11
        finally:
            pruning.close()
    finally:
        a.close()
        b.close()
