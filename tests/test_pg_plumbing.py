"""labtrack._pg on a real PostgreSQL cluster: migrations, the ingest ledger, LISTEN/NOTIFY,
and the errors of a bad URL or an unreachable server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pg import pg_db, postgres, postgres_url  # noqa: F401 - fixtures

pytest.importorskip("psycopg")

from labtrack._pg import (LATEST, Database, DatabaseError, IngestLedger, LedgerConflict, Listener,  # noqa: E402
                          connect, migrate, notify, schema_version, wait_until)
from labtrack.errors import LabtrackValueError  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def test_migrations_are_idempotent_and_take_turns(pg_db: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(pg_db) as conn:
                results.append(migrate(conn))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [LATEST] * 4
    with connect(pg_db) as conn:
        assert schema_version(conn) == LATEST
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, LATEST + 1))  # each applied once
        assert migrate(conn) == LATEST


def test_ledger_accepts_an_append_once_across_threads_and_processes(pg_db: str) -> None:
    with Database(pg_db) as db:
        db.migrate()
    ledger = IngestLedger()
    accepted: list[str] = []
    lock = threading.Lock()

    def append(who: str, offset: int, length: int) -> None:
        with connect(pg_db) as conn:
            with conn.transaction():
                size = ledger.lock_and_get(conn, "exp/run1", "scalars/loss.bin")
                if size == offset:
                    time.sleep(0.01)  # the bytes would be written here, the row stays locked
                    ledger.advance(conn, "exp/run1", "scalars/loss.bin", size, size + length)
                    with lock:
                        accepted.append(who)

    # Ten retries of the same append at offset 0 (threads) ...
    threads = [threading.Thread(target=append, args=(f"t{i}", 0, 100)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 1
    # ... and four processes retrying the next append at offset 100.
    code = (
        "import sys; from labtrack._pg import connect, IngestLedger\n"
        "l = IngestLedger()\n"
        "with connect(sys.argv[1]) as c:\n"
        "    with c.transaction():\n"
        "        s = l.lock_and_get(c, 'exp/run1', 'scalars/loss.bin')\n"
        "        if s == 100:\n"
        "            l.advance(c, 'exp/run1', 'scalars/loss.bin', s, s + 50); print('accepted')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_db], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("accepted") for o, _ in outs) == 1
    with connect(pg_db) as conn:
        assert ledger.size(conn, "exp/run1", "scalars/loss.bin") == 150
        with pytest.raises(LedgerConflict):
            with conn.transaction():
                ledger.advance(conn, "exp/run1", "scalars/loss.bin", 100, 200)  # stale old size
        with pytest.raises(LabtrackValueError):
            ledger.advance(conn, "exp/run1", "scalars/loss.bin", 150, 10)
        assert ledger.forget(conn, "exp/run1") == 1


def test_notify_reaches_a_listener_which_reconnects(pg_db: str) -> None:
    got: list[str] = []
    reconnected = threading.Event()
    listener = Listener(pg_db, "runs_changed", got.append, on_reconnect=reconnected.set,
                        reconnect_delay=0.05)
    listener.start()
    try:
        assert listener.ready.wait(10)
        with Database(pg_db) as db:
            db.notify("runs_changed", "exp/run1")
            with connect(pg_db, autocommit=True) as conn:
                notify(conn, "runs_changed", "exp/run2")
            assert wait_until(lambda: got == ["exp/run1", "exp/run2"], 10), got
            # The server drops the listener's connection: it listens again by itself.
            with connect(pg_db, autocommit=True) as conn:
                killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()").fetchall()
            assert killed
            assert reconnected.wait(15)
            assert wait_until(listener.ready.is_set, 10)
            db.notify("runs_changed", "exp/run3")
            assert wait_until(lambda: got[-1:] == ["exp/run3"], 10), got
            with pytest.raises(LabtrackValueError, match="channel"):
                db.notify("bad channel; drop", "x")
    finally:
        listener.stop()
    assert not listener.is_alive()


def test_bad_urls_and_unreachable_servers_are_clear_errors(postgres_url: str) -> None:
    with pytest.raises(LabtrackValueError, match="must begin with postgresql://"):
        Database("mysql://u@h/db")
    with pytest.raises(LabtrackValueError, match="names no database"):
        Database("postgresql://u@127.0.0.1:5")
    with pytest.raises(LabtrackValueError, match="cannot parse"):
        Database("postgresql://u@127.0.0.1:notaport/db")
    # Nothing listens on this port: an error naming the URL, without the password.
    with pytest.raises(DatabaseError, match=r"postgresql://u:\*\*\*@127.0.0.1:9/db") as e:
        Database("postgresql://u:secret@127.0.0.1:9/db", timeout=2)
    assert "secret" not in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(DatabaseError, match="no_such_db.*does not exist"):
        Database(missing)


def test_ledger_locks_and_advances_a_batch_of_files_in_one_query_each(pg_db: str) -> None:
    with Database(pg_db) as db:
        db.migrate()
    ledger = IngestLedger()
    files = [f"scalars/m{i:02d}.csv" for i in range(20)]
    with connect(pg_db) as conn:
        with conn.transaction():
            got = ledger.lock_many(conn, "exp/batch", reversed(files))  # new rows: created at 0
            assert got == {f: 0 for f in files}
            ledger.advance_many(conn, "exp/batch", {f: (0, 10 + i) for i, f in enumerate(files)})
        with conn.transaction():
            assert ledger.lock_many(conn, "exp/batch", files[:3] + files[:1]) == {
                files[0]: 10, files[1]: 11, files[2]: 12}
        # A stale size for one file: nothing of the batch changes.
        with pytest.raises(LedgerConflict):
            with conn.transaction():
                ledger.advance_many(conn, "exp/batch", {files[0]: (10, 20), files[1]: (0, 20)})
        assert ledger.size(conn, "exp/batch", files[0]) == 10
        with pytest.raises(LabtrackValueError):
            ledger.advance_many(conn, "exp/batch", {files[0]: (10, 5)})
    # Two batches over the same files, each locking them at once, take turns (no deadlock):
    # every append is accepted exactly once.
    accepted: list[int] = []

    def append(i: int) -> None:
        with connect(pg_db) as conn:
            for _ in range(5):
                with conn.transaction():
                    sizes = ledger.lock_many(conn, "exp/batch", files if i % 2 else files[::-1])
                    ledger.advance_many(conn, "exp/batch", {f: (s, s + 1) for f, s in sizes.items()})
                    accepted.append(i)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with connect(pg_db) as conn:
        assert len(accepted) == 20
        assert ledger.size(conn, "exp/batch", files[5]) == 15 + 20
