"""A rebuildable cache over the runs of one root: `<root>/.labtrack/index.sqlite`.

The files are the truth. The index keeps, per run directory, its metadata, flattened params
and summary statistics, with a signature (inode, mtime and size of run.json, params.json and
summary.json) so `refresh()` re-reads only run directories whose files changed and drops
those that disappeared. Listing, filtering and sorting 10,000 runs then costs one `stat` per
file plus one SQLite read, instead of parsing 30,000 JSON files.

Status is stored as run.json says it. Whether a "running" run is really alive (pid on this
host, heartbeat age) is decided at query time, so a crashed run never stays "running".

SQLite runs in WAL mode: readers do not block the refresher and the refresher does not block
readers, across threads and processes; each thread gets its own connection. A training
process uses nothing here unless LABTRACK_INDEX_ON_FINISH asks it to store its run's row at
finish (`note_run`). Reading rows from run directories is `_index_rows.py`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Iterable

from ._index_rows import (SCHEMA_VERSION, SIG, Hit, _newest_records, _record_full, _scan, _signature, _sort_value, flatten_params,
                          run_row)
from ._names import slug
from ._query import AGGREGATES, FIELDS, Where, compile_where, metric_stat
from ._store import layout
from ._store.files import network_filesystem
from ._store.ranks import live_status
from ._store.reader import derive_status, pid_alive
from ._store.rundir import RunDir, duration
from .errors import FormatError, LabtrackValueError, QueryError, RunNotFoundError

__all__ = ["Hit", "Index", "RefreshResult", "flatten_params", "note_run", "run_row"]

INDEX_FILE = "index.sqlite"
STATUSES = ("running", "finished", "failed", "killed", "interrupted", "crashed")
#: Columns of a run row that `sort` accepts besides params.<key> and metrics.<name>[:agg].
SORT_FIELDS = FIELDS

# The run row's top-level fields are columns, so listing runs decodes no JSON; params,
# metrics and stats are JSON columns decoded only for rows (and parts) that need them. They
# may hold NaN, which SQLite's JSON functions refuse, so `keys` (names only) serves
# `columns()` instead.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    relpath TEXT PRIMARY KEY,   -- <experiment-slug>/<run-id>, relative to the root
    id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    name TEXT NOT NULL,
    comment TEXT NOT NULL,
    tags TEXT NOT NULL,         -- JSON list
    status TEXT NOT NULL,       -- as stored in run.json, "running" is checked at query time
    started TEXT,
    ended TEXT,
    duration REAL,
    git_commit TEXT,
    dirty INTEGER,
    host TEXT,
    user_name TEXT,
    parent TEXT,
    pid INTEGER,
    search TEXT NOT NULL,       -- lower-cased text for free-text search
    params TEXT NOT NULL,       -- {flat key: value} as Python's JSON (NaN allowed)
    metrics TEXT NOT NULL,      -- {name: last}, the same
    stats TEXT NOT NULL,        -- {metric: {last, min, max, mean, count, step}}, the same
    mins TEXT NOT NULL,         -- {metric: min}: a filter on metrics.x:min decodes only this
    maxs TEXT NOT NULL,         -- {metric: max}
    means TEXT NOT NULL,        -- {metric: mean}
    keys TEXT NOT NULL,         -- {"params": [...], "metrics": [...]}: strict JSON for SQLite
    grp TEXT,                   -- run.json "group" (GROUP is an SQL keyword)
    job_type TEXT,
    sig TEXT NOT NULL,
    tags_j TEXT NOT NULL,       -- strict JSON copies of tags, params, metrics, mins, maxs and
    params_j TEXT NOT NULL,     -- means (NaN and inf as `_where_sql` writes them), which the
    metrics_j TEXT NOT NULL,    -- SQL of a where expression or sort reads
    mins_j TEXT NOT NULL,
    maxs_j TEXT NOT NULL,
    means_j TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_id ON runs(id);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started, id);
-- What a where expression, a free-text search and a sort read, apart from the wide rows
-- (stats and the Python-JSON copies): SQLite filters and sorts 100,000 runs from this
-- covering index (`_index_sql`) several times faster than by scanning the table.
CREATE INDEX IF NOT EXISTS runs_query ON runs(status, experiment, started, id, relpath, search,
    tags_j, params_j, metrics_j, mins_j, maxs_j, means_j, name, comment, ended, git_commit, host,
    user_name, parent, grp, job_type, duration, dirty, keys);
CREATE TABLE IF NOT EXISTS problems (
    relpath TEXT PRIMARY KEY,
    message TEXT NOT NULL,
    sig TEXT NOT NULL
);
"""
_SELECT = ("SELECT relpath, id, experiment, name, comment, tags, status, started, ended, duration, "
           "git_commit, dirty, host, user_name, parent, pid, {parts}, {stats}, {aggs}, grp, job_type FROM runs")
_AGGS = "mins, maxs, means"
_NO_AGGS = "NULL, NULL, NULL"
_PARTS = "params, metrics"
_NO_PARTS = "NULL, NULL"


class RefreshResult(dict[str, int]):
    """Counts of one refresh: `added`, `updated`, `removed`, `unreadable`, `total`."""


def _STARTED(row: Mapping[str, Any]) -> Any:
    return row.get("started")


class Index:
    """The cache of run rows of one root, in `<root>/.labtrack/index.sqlite`.

    Safe to share between threads (each gets its own SQLite connection) and between
    processes (SQLite WAL; refreshes are serialised by SQLite's write lock). When the root
    is read-only, or on a network file system (NFS, SMB, Lustre, sshfs ...) where SQLite
    cannot lock, the index lives in the local temp folder instead, one per user and host.

    Args:
        root: the folder that holds the experiments.
        path: where to keep the SQLite file (default `<root>/.labtrack/index.sqlite`).
        stale_seconds: heartbeat age after which a "running" run shows as crashed
            (default: the `stale_seconds` setting).
        clock: returns the current Unix time (tests pass a fixed clock).

    Example:
        >>> index = Index("labtrack")
        >>> index.refresh()
        >>> total, rows = index.query(where="params.lr < 0.01", sort="-metrics.acc", limit=10)
    """

    def __init__(self, root: str | os.PathLike[str], *, path: str | os.PathLike[str] | None = None,
                 stale_seconds: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        if path is not None:
            self.path = Path(path)
        elif network_filesystem(self.root):
            self.path = layout.local_index_path(self.root)  # SQLite cannot lock there
        else:
            self.path = self.root / layout.INDEX_DIR / INDEX_FILE
        if stale_seconds is None:
            from ._settings import get

            stale_seconds = float(get("stale_seconds"))
        self.stale_seconds = stale_seconds
        self._clock = clock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        # Close the connections when the object is dropped without close().
        weakref.finalize(self, _close_all, self._connections)
        self._lock = threading.Lock()  # guards _connections and in-process refreshes
        self._refresh_lock = threading.Lock()
        self._last_refresh: float | None = None
        self._prefilled = False  # prefill() ran: answer from a partial index until refreshed
        self._host = socket.gethostname()
        self._last_seen: dict[str, tuple[float | None, float | None]] = {}  # crashed runs
        self._root_str = str(self.root)
        self._busy_ms = 30000  # how long a write waits for another writer's lock
        self._changes = 0  # commits by this object (cached answers of older ones are stale)
        self._sort_indexes: dict[str, float] = {}  # sort index name -> last use recorded (_index_sql)

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            return con
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._open(self.path)
        except (OSError, sqlite3.OperationalError) as e:
            if isinstance(e, sqlite3.OperationalError) and not any(
                    w in str(e) for w in ("unable to open", "readonly", "read-only")):
                raise
            # A read-only root (a shared or mounted folder): keep the cache elsewhere.
            self.path = layout.local_index_path(self.root)
            con = self._open(self.path)
        self._local.con = con
        with self._lock:
            self._connections.append(con)
        return con

    def _open(self, path: Path) -> sqlite3.Connection:
        for attempt in (0, 1):
            con = sqlite3.connect(str(path), timeout=self._busy_ms / 1000, isolation_level=None,
                                  check_same_thread=False)
            try:
                con.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    self._create(con, version)
                con.execute("PRAGMA synchronous = NORMAL")
                return con
            except sqlite3.DatabaseError as e:
                con.close()
                if attempt or "locked" in str(e) or "busy" in str(e):
                    raise
                # Not a database any more (truncated, overwritten): it is only a cache.
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(str(path) + suffix)
                    except FileNotFoundError:
                        pass
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _create(con: sqlite3.Connection, old_version: int) -> None:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it while we waited for the lock.
            if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                con.execute("DROP TABLE IF EXISTS runs")
                con.execute("DROP TABLE IF EXISTS problems")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._lock:
            for con in self._connections:
                con.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keeping it current

    def refresh(self, max_age: float = 0.0, *, chunk: int | None = None,
                progress: Callable[[int], None] | None = None) -> RefreshResult:
        """Bring the index up to date with the files, re-reading only changed runs.

        Args:
            max_age: skip the refresh when this object refreshed less than `max_age` seconds
                ago (a server answering many requests may pass 1.0).
            chunk: store the changed runs newest first, `chunk` per transaction, so readers
                see the index fill (default: all in one transaction).
            progress: called after each transaction with the number of changed runs left.

        Returns:
            The counts `added`, `updated`, `removed`, `unreadable` and `total` (`total` is
            -1 and the rest 0 when `max_age` skipped the refresh).

        Example:
            >>> index.refresh(max_age=1.0)
            {'added': 0, 'updated': 1, 'removed': 0, 'unreadable': 0, 'total': 120}
        """
        with self._refresh_lock:
            now = time.monotonic()
            if max_age > 0 and self._last_refresh is not None and now - self._last_refresh < max_age:
                return RefreshResult(added=0, updated=0, removed=0, unreadable=0, total=-1)
            result = self._refresh(chunk, progress)
            self._last_refresh = time.monotonic()
            return result

    def rebuild(self) -> RefreshResult:
        """Forget everything and read every run directory again."""
        con = self._connect()
        with self._refresh_lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("DELETE FROM runs")
                con.execute("DELETE FROM problems")
                con.execute("COMMIT")
                self._changes += 1
            except BaseException:
                con.execute("ROLLBACK")
                raise
            result = self._refresh()
            self._last_refresh = time.monotonic()
            return result

    def _refresh(self, chunk: int | None = None,
                 progress: Callable[[int], None] | None = None) -> RefreshResult:
        con = self._connect()
        # Stat and read outside the write lock, so another process refreshing (or a cold
        # build of 10,000 runs) never holds SQLite's lock for long; each transaction only
        # compares signatures again and writes.
        current = _scan(str(self.root))
        known = dict(con.execute("SELECT relpath, sig FROM runs").fetchall())
        bad = dict(con.execute("SELECT relpath, sig FROM problems").fetchall())
        todo = [rel for rel, sig in current.items() if known.get(rel) != sig and bad.get(rel) != sig]
        if not todo and all(rel in current for rel in known) and all(rel in current for rel in bad):
            # Nothing changed (the usual case): no write lock, no transaction.
            return RefreshResult(added=0, updated=0, removed=0, unreadable=0, total=len(known))
        if chunk:  # newest first (ids begin with the start time), one transaction per chunk
            todo.sort(key=lambda rel: rel.rpartition("/")[2], reverse=True)
        size = max(1, chunk or len(todo))
        counts = RefreshResult(added=0, updated=0, removed=0, unreadable=0, total=0)
        for start in range(0, max(1, len(todo)), size):
            fresh: dict[str, tuple[Any, ...]] = {}
            broken: dict[str, str] = {}
            for rel in todo[start:start + size]:
                try:
                    fresh[rel] = _record_full(rel, f"{self._root_str}/{rel}", current[rel])
                except (OSError, FormatError, ValueError, TypeError) as e:
                    broken[rel] = str(e)
            self._write(con, fresh, broken, current, counts, last=start + size >= len(todo))
            if progress is not None:
                progress(max(0, len(todo) - start - size))
        return counts

    def _write(self, con: sqlite3.Connection, fresh: dict[str, tuple[Any, ...]],
               broken: dict[str, str], current: dict[str, str], counts: RefreshResult,
               last: bool) -> None:
        """Store one part of a refresh in one transaction, counting into `counts`; the last
        part also drops the runs that are gone."""
        con.execute("BEGIN IMMEDIATE")
        try:
            if last:
                known = dict(con.execute("SELECT relpath, sig FROM runs").fetchall())
                bad = dict(con.execute("SELECT relpath, sig FROM problems").fetchall())
            else:  # only this part's rows: a fill of 100,000 runs must not re-read them all per chunk
                known, bad = self._sigs(con, "runs", fresh), self._sigs(con, "problems", fresh)
            store = []
            for rel, rec in fresh.items():
                if known.get(rel) == rec[SIG]:
                    continue  # another process stored the same state meanwhile
                counts["updated" if rel in known else "added"] += 1
                store.append(rec)
            if store:
                con.executemany("INSERT OR REPLACE INTO runs VALUES (" + ",".join("?" * len(store[0]))
                                + ")", store)
                if bad:
                    con.executemany("DELETE FROM problems WHERE relpath = ?", [(r[0],) for r in store])
            for rel, message in broken.items():
                counts["unreadable"] += 1
                con.execute("DELETE FROM runs WHERE relpath = ?", (rel,))
                con.execute("INSERT OR REPLACE INTO problems VALUES (?, ?, ?)", (rel, message, current[rel]))
            if last:
                gone = [rel for rel in known if rel not in current]
                gone_bad = [rel for rel in bad if rel not in current]
                con.executemany("DELETE FROM runs WHERE relpath = ?", [(r,) for r in gone])
                con.executemany("DELETE FROM problems WHERE relpath = ?", [(r,) for r in gone_bad])
                counts["removed"] = len(gone)
            counts["total"] = con.execute("SELECT count(*) FROM runs").fetchone()[0]
            con.execute("COMMIT")
            self._changes += 1
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @staticmethod
    def _sigs(con: sqlite3.Connection, table: str, relpaths: Iterable[str]) -> dict[str, str]:
        """{relpath: sig} of the given rows of `table` ("runs" or "problems")."""
        wanted = list(relpaths)
        out: dict[str, str] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            out.update(con.execute(f"SELECT relpath, sig FROM {table} WHERE relpath IN ("
                                   + ",".join("?" * len(chunk)) + ")", chunk).fetchall())
        return out

    def store(self, relpath: str) -> bool:
        """Read one run directory now and store its row, without scanning the root.

        For the process that has just written the run (see :func:`note_run`): the next
        reader's refresh then finds the row current and reads nothing. A row stored here is
        checked like any other, by its signature, so a later change is still seen.

        Returns:
            False when `<root>/<relpath>` holds no run.json.

        Raises:
            OSError, FormatError, ValueError, TypeError: the run's files cannot be read.
            sqlite3.Error: the index is busy or cannot be written.
        """
        run_dir = f"{self._root_str}/{relpath}"
        sig = _signature(run_dir)  # before reading: a change meanwhile shows as a new signature
        if sig is None:
            return False
        rec = _record_full(relpath, run_dir, sig)
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("INSERT OR REPLACE INTO runs VALUES (" + ",".join("?" * len(rec)) + ")", rec)
            con.execute("DELETE FROM problems WHERE relpath = ?", (relpath,))
            con.execute("COMMIT")
            self._changes += 1
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return True

    def store_records(self, records: Iterable[tuple[Any, ...]]) -> int:
        """Store `_index_rows.record_from` tuples as they are, no run directory read (the bulk
        path of benchmarks/pg_index.py; a later refresh drops rows whose directory is missing).
        Returns how many."""
        from ._index_rows import SIG, with_strict

        recs = [with_strict(r) if len(r) == SIG + 1 else r for r in records]
        if not recs:
            return 0
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("INSERT OR REPLACE INTO runs VALUES (" + ",".join("?" * len(recs[0])) + ")", recs)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(recs)

    def prefill(self, count: int = 200) -> int | None:
        """Store the rows of the `count` newest runs of a root this index knows nothing of,
        so a first listing can be answered before the whole root is read.

        A cold index of 10,000 runs takes seconds to build (30,000 JSON files); the first
        page of the runs table, newest first, needs a hundred of them. Run ids begin with
        their UTC start time, so the largest ids are read first (a run with a chosen id may
        wait for the full refresh). Afterwards queries answer from what is stored without
        refreshing first (:meth:`select` would otherwise build the rest), until the caller's
        :meth:`refresh` completes it: the caller must run one (the server does, at once, on
        another thread).

        Returns:
            How many run directories the root holds (found by the same walk as
            :meth:`refresh`), or None when the index already holds rows or problems (then
            nothing is done: a normal refresh is quick).
        """
        con = self._connect()
        if con.execute("SELECT EXISTS(SELECT 1 FROM runs) OR EXISTS(SELECT 1 FROM problems)").fetchone()[0]:
            return None
        total, store = _newest_records(self._root_str, count)
        if store:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR IGNORE INTO runs VALUES (" + ",".join("?" * len(store[0]))
                                + ")", store)
                con.execute("COMMIT")
                self._changes += 1
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self._prefilled = True
        return total

    def _ensure_fresh(self) -> None:
        if self._last_refresh is None and not self._prefilled:
            self.refresh()

    def problems(self) -> list[tuple[str, str]]:
        """Run directories that could not be read: `[(relpath, message)]`."""
        self._ensure_fresh()
        con = self._connect()
        return [(r, m) for r, m in con.execute("SELECT relpath, message FROM problems ORDER BY relpath")]

    # -- reading

    def _live(self, relpath: str, row: dict[str, Any], now: float) -> dict[str, Any]:
        """Derive the shown status and duration of a run stored as running: until now while
        it lives, until its last sign of life (`_store.rundir.duration`) once it crashed."""
        if row.get("status") != "running":
            return row
        run_dir = f"{self._root_str}/{relpath}"
        try:
            beat: float | None = os.stat(f"{run_dir}/{layout.HEARTBEAT}").st_mtime
        except OSError:
            beat = None
        pid = row.get("pid")
        alive = pid_alive(pid) if isinstance(pid, int) and row.get("host") == self._host else None
        status = derive_status(row, beat, now, self._host, alive, self.stale_seconds)
        row["status"] = status = live_status(run_dir, status, now, self.stale_seconds, self._host)
        last_seen = None
        if status != "running":
            # A crashed run changes no more: its files are looked at once per heartbeat seen.
            cached = self._last_seen.get(relpath)
            if cached is None or cached[0] != beat:
                cached = (beat, RunDir(run_dir).last_activity())
                self._last_seen[relpath] = cached
            last_seen = cached[1]
        row["duration"] = duration(row, None, now, last_seen)
        return row

    def query(self, where: str | Where | None = None, experiment: str | None = None,
              status: str | None = None, q: str | None = None, sort: str | None = "-started",
              offset: int = 0, limit: int | None = None,
              with_stats: bool = False) -> tuple[int, list[dict[str, Any]]]:
        """Filter, sort and page the runs.

        Args:
            where: a where expression (see :mod:`labtrack._query`).
            experiment: only runs of this experiment (its exact name).
            status: only runs with this (derived) status.
            q: free text, matched case-insensitively against experiment, name, comment, tags,
                group and id, and a status name against the (derived) status; every word must match.
            sort: a column (`started`, `name`, `params.lr`, `metrics.acc:min` ...), with a
                leading `-` for descending. Missing values sort last.
            offset: rows to skip.
            limit: most rows to return (None: all).
            with_stats: keep each row's "stats" (`{metric: {last, min, max, mean, count,
                step}}`) in the result.

        Returns:
            `(total, rows)`: how many runs match, and the requested page of run rows
            (docs/api.md) with `dir` (the run directory) added.

        Raises:
            QueryError: the where expression cannot be parsed, names a param or metric no
                run has, or `sort`/`status` is not allowed.
            LabtrackValueError: a negative offset or limit.

        Example:
            >>> total, rows = index.query(where="metrics.acc > 0.9", sort="-metrics.acc", limit=10)
        """
        if offset < 0 or (limit is not None and limit < 0):
            raise LabtrackValueError(f"offset and limit must be >= 0, got offset={offset!r} limit={limit!r}")
        hits = self.select(where=where, experiment=experiment, status=status, q=q, sort=sort,
                           with_stats=with_stats)
        page = hits[offset:] if limit is None else hits[offset:offset + limit]
        rows = []
        for h in page:
            r = h.row()
            if not with_stats:
                r.pop("stats", None)
            r.pop("pid", None)
            rows.append(r)
        return len(hits), rows

    def page(self, where: str | Where | None = None, experiment: str | None = None,
             status: str | None = None, q: str | None = None, sort: str | None = "-started",
             offset: int = 0, limit: int | None = 100,
             with_stats: bool = False) -> tuple[int, list[Hit]]:
        """`(total, hits)`: how many runs match in all and the matches `offset` to
        `offset + limit` of :meth:`select` (same order, same filters; `/api/v1/runs`),
        filtered, sorted and paged by SQLite where it can (`_index_sql`): only the page's
        rows are decoded.

        Example:
            >>> total, hits = index.page(where="params.lr < 0.01", sort="-metrics.acc", limit=100)
        """
        if offset < 0 or (limit is not None and limit < 0):
            raise LabtrackValueError(f"offset and limit must be >= 0, got offset={offset!r} limit={limit!r}")
        self._ensure_fresh()
        from ._index_sql import page

        hits, total = page(self, where, experiment, status, q, sort, offset, limit, with_stats)
        return total, hits

    #: True when :meth:`page` pages in the database (SQLite through `_index_sql`, PostgreSQL),
    #: so a caller asks for each page apart instead of keeping a sorted list of every match.
    pages_in_database = True

    def select(self, where: str | Where | None = None, experiment: str | None = None,
               status: str | None = None, q: str | None = None, sort: str | None = "-started",
               with_stats: bool = False, parts: bool = True) -> list[Hit]:
        """Like :meth:`query`, but every match as a :class:`Hit` whose row is decoded only
        when asked for: listing 10,000 runs by start time decodes nothing.

        Args:
            parts: fetch every run's params and metrics now (False: only when a filter or
                sort needs them; a Hit then reads its own when asked, one query each).
        """
        self._ensure_fresh()
        if status is not None and status not in STATUSES:
            raise QueryError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        compiled = compile_where(where) if isinstance(where, str) else where
        sort_key = self._sort_key(sort)
        if compiled is not None:
            self._check_names(compiled)
        clauses: list[str] = []
        args: list[Any] = []
        if experiment is not None:
            clauses.append("experiment = ?")
            args.append(experiment)
        if status is not None:
            # Stored "running" may show as crashed, and crashed is never stored.
            if status in ("running", "crashed"):
                clauses.append("status = 'running'")
            else:
                clauses.append("status = ?")
                args.append(status)
        derived_words = []  # "running"/"crashed" typed as free text: decided on the derived status
        for word in (q or "").lower().split():
            if word in STATUSES:  # a status is searched too ("failed" finds the failed runs)
                stored = ("running", "crashed") if word in ("running", "crashed") else (word,)
                clauses.append("(search LIKE ? ESCAPE '\\' OR status IN (%s))" % ",".join("?" * len(stored)))
                args += ["%" + _like_escape(word) + "%", *stored]
                if word in ("running", "crashed"):
                    derived_words.append(word)
                continue
            clauses.append("search LIKE ? ESCAPE '\\'")
            args.append("%" + _like_escape(word) + "%")
        load_aggs = bool(compiled is not None and compiled.needs_stats) or bool(sort_key and sort_key[2])
        needs_parts = (parts or (compiled is not None and any(f.kind != "top" for f in compiled.fields))
                       or (sort_key is not None and sort_key[3]))
        sql = _SELECT.format(parts=_PARTS if needs_parts else _NO_PARTS,
                             stats="stats" if with_stats else "NULL",
                             aggs=_AGGS if load_aggs else _NO_AGGS)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY started DESC, id DESC"
        con = self._connect()
        now = self._clock()
        hits = [Hit(self, now, rec) for rec in con.execute(sql, args)]
        if status in ("running", "crashed"):
            hits = [h for h in hits if h.light()["status"] == status]
        for word in derived_words:
            hits = [h for h in hits if h.light()["status"] == word or word in _search_text(h.light())]
        if compiled is not None:
            hits = [h for h in hits if compiled(h)]
        if sort_key is not None:
            getter, descending = sort_key[0], sort_key[1]
            if getter is _STARTED:
                if not descending:  # SQL gave newest first; a stable reverse keeps ties sensible
                    hits.reverse()
            else:
                keyed = [(_sort_value(getter(h)), h) for h in hits]
                present = [(k, h) for k, h in keyed if k is not None]
                missing = [h for k, h in keyed if k is None]
                present.sort(key=lambda kh: kh[0], reverse=descending)
                hits = [h for _, h in present] + missing
        return hits

    def _sort_key(self, sort: str | None) -> tuple[Callable[[Mapping[str, Any]], Any], bool, bool, bool] | None:
        """(getter, descending, needs stats, needs params/metrics) for a sort column."""
        if not sort:
            return None
        descending = sort.startswith("-")
        name = sort.lstrip("+-")
        if name.startswith("params."):
            key = name[len("params."):]
            return (lambda r: r["params"].get(key)), descending, False, True
        if name.startswith("metrics."):
            metric, _, agg = name[len("metrics."):].rpartition(":")
            if not metric or agg not in AGGREGATES:
                metric, agg = name[len("metrics."):], "last"
            if agg == "last":
                return (lambda r: r["metrics"].get(metric)), descending, False, True
            return (lambda r: metric_stat(r, metric, agg)), descending, True, False
        if name == "started":
            return _STARTED, descending, False, False
        if name in SORT_FIELDS:
            if name == "tags":
                return (lambda r: ",".join(r["tags"])), descending, False, False
            return (lambda r: r.get(name)), descending, False, False
        raise QueryError(
            f"cannot sort by {sort!r}; use one of {', '.join(SORT_FIELDS)}, params.<key> or "
            f"metrics.<name>[:min|max|mean|last], with a leading '-' for descending"
        )

    def _check_names(self, where: Where) -> None:
        """Refuse a where expression that names a param or metric no run has (a typo)."""
        wanted = [f for f in where.fields if f.kind in ("params", "metrics")]
        if not wanted:
            return
        cols = self.columns()
        if not cols["experiments"]:
            return
        import difflib

        for f in wanted:
            known = cols[f.kind]
            if f.key not in known:
                close = difflib.get_close_matches(f.key, known, n=3)
                hint = f"; did you mean {', '.join(f'{f.kind}.{c}' for c in close)}?" if close else (
                    f"; known {f.kind}: {', '.join(known[:20])}" + (" ..." if len(known) > 20 else "")
                    if known else f"; no run has any {f.kind}")
                raise QueryError(f"where expression {where.text!r} names {f}, which no run has{hint}")

    def columns(self, experiment: str | None = None) -> dict[str, list[str]]:
        """Every param key, metric name and experiment name in the index, sorted.

        Args:
            experiment: only the params and metrics of this experiment's runs.

        Returns:
            `{"params": [...], "metrics": [...], "experiments": [...]}`.
        """
        self._ensure_fresh()
        con = self._connect()
        # Remembered until the index changes (this object's writes, or another
        # connection's: SQLite's data_version): a where expression checks its names here.
        key = (experiment, con.execute("PRAGMA data_version").fetchone()[0], self._changes)
        cache: dict[Any, dict[str, list[str]]] = getattr(self._local, "columns", None) or {}
        if key in cache:
            return {k: list(v) for k, v in cache[key].items()}
        cond = ""
        args: tuple[str, ...] = ()
        if experiment is not None:
            cond, args = " WHERE experiment = ?", (experiment,)
        params: set[str] = set()
        metrics: set[str] = set()
        # runs share few sets of names: decode each distinct set once (from the covering index)
        for (text,) in con.execute("SELECT DISTINCT keys FROM runs" + cond, args):
            got = json.loads(text)
            params.update(got.get("params") or ())
            metrics.update(got.get("metrics") or ())
        experiments = [e for (e,) in con.execute("SELECT DISTINCT experiment FROM runs ORDER BY experiment")]
        out = {"params": sorted(params), "metrics": sorted(metrics), "experiments": experiments}
        self._local.columns = {key: out}
        return {k: list(v) for k, v in out.items()}

    def rows(self, relpaths: Iterable[str], with_stats: bool = True) -> dict[str, dict[str, Any]]:
        """The rows (with "dir", and "stats" unless `with_stats` is False) of the given run
        directories (`<experiment folder>/<id>`), by relpath; unknown ones are left out."""
        self._ensure_fresh()
        wanted = list(dict.fromkeys(relpaths))
        out: dict[str, dict[str, Any]] = {}
        con = self._connect()
        now = self._clock()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            sql = (_SELECT.format(parts=_PARTS, stats="stats" if with_stats else "NULL", aggs=_NO_AGGS)
                   + " WHERE relpath IN (" + ",".join("?" * len(chunk)) + ")")
            for rec in con.execute(sql, chunk):
                out[rec[0]] = Hit(self, now, rec).row()
        return out

    def table_rows(self, relpaths: Iterable[str], aggs: Iterable[str] = ("last",)
                   ) -> dict[str, dict[str, Any]]:
        """What :meth:`Book.table` shows of the given run directories, decoding only that.

        Args:
            relpaths: `<experiment folder>/<id>` of each run.
            aggs: the metric aggregates wanted, of last, min, max and mean.

        Returns:
            By relpath (unknown ones left out): `{"id", "experiment", "name", "status"
            (derived), "params" (flat), "metrics" ({name: last})}` plus, per aggregate in
            `aggs` other than last, `"min"`/`"max"`/`"mean"`: `{metric: value}`.
        """
        self._ensure_fresh()
        wanted = list(dict.fromkeys(relpaths))
        columns = [c for c in ("min", "max", "mean") if c in set(aggs)]
        sql_cols = "".join(f", {c}s" for c in columns)
        out: dict[str, dict[str, Any]] = {}
        con = self._connect()
        now = self._clock()
        loads = json.loads
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            sql = ("SELECT relpath, id, experiment, name, status, started, host, pid, params, metrics"
                   + sql_cols + " FROM runs WHERE relpath IN (" + ",".join("?" * len(chunk)) + ")")
            for rec in con.execute(sql, chunk):
                row: dict[str, Any] = {"id": rec[1], "experiment": rec[2], "name": rec[3],
                                       "status": rec[4]}
                if rec[4] == "running":
                    live = self._live(rec[0], {"status": rec[4], "started": rec[5], "host": rec[6],
                                               "pid": rec[7]}, now)
                    row["status"] = live["status"]
                row["params"] = loads(rec[8])
                row["metrics"] = loads(rec[9])
                for j, c in enumerate(columns):
                    row[c] = loads(rec[10 + j])
                out[rec[0]] = row
        return out

    def resolve(self, ref: str) -> list[dict[str, Any]]:
        """Every run a reference could mean: a full id, an id prefix, `experiment/name`,
        or `<experiment-folder>/<id or prefix>`. Rows carry "dir"; newest first.

        Raises:
            RunNotFoundError: `ref` is empty.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise RunNotFoundError(f"a run reference must be a non-empty id, id prefix or "
                                   f"experiment/name, got {ref!r}")
        self._ensure_fresh()
        ref = ref.strip()
        con = self._connect()
        order = " ORDER BY started DESC, id DESC"
        found = [r for (r,) in con.execute("SELECT relpath FROM runs WHERE id = ?" + order, (ref,))]
        if not found:
            found = [r for (r,) in con.execute(
                "SELECT relpath FROM runs WHERE id LIKE ? ESCAPE '\\'" + order,
                (_like_escape(ref) + "%",))]
        if not found and "/" in ref:
            seen: set[str] = set()
            # An experiment name may itself contain '/': try every split point.
            for i, ch in enumerate(ref):
                if ch != "/":
                    continue
                exp, rest = ref[:i], ref[i + 1:]
                for (r,) in con.execute(
                        "SELECT relpath FROM runs WHERE (experiment = ? OR relpath LIKE ? ESCAPE '\\')"
                        " AND (name = ? OR id = ?)" + order,
                        (exp, _like_escape(slug(exp)) + "/%", rest, rest)):
                    if r not in seen:
                        seen.add(r)
                        found.append(r)
            if not found:
                found = [r for (r,) in con.execute(
                    "SELECT relpath FROM runs WHERE relpath LIKE ? ESCAPE '\\'" + order,
                    (_like_escape(ref) + "%",))]
        rows = self.rows(found)
        return [rows[r] for r in found if r in rows]


_NOTED: dict[str, Index | None] = {}  # None: a root on a network file system
_NOTED_LOCK = threading.Lock()
#: How long a run's last write to the index may wait for another process's write (ms).
NOTE_BUSY_MS = 100


def note_run(root: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> bool:
    """Store a run's row in its root's index, from the process that wrote the run.

    Meant for the end of a run (`Run.finish`): a reader opening the root afterwards finds
    the index current instead of reading every new run's JSON files. Only an optimisation:
    the files stay the truth, and any failure (a busy or unwritable index, a root on a
    file system SQLite cannot lock, a run directory not directly under `root`) returns
    False and leaves the run for the next reader's refresh. Never raises; waits at most
    :data:`NOTE_BUSY_MS` for another writer. One connection per root per process.

    Example:
        >>> note_run(run.root, run.dir)
        True
    """
    try:
        root_path = Path(root).absolute()
        d = Path(run_dir).absolute()
        if d.parent.parent != root_path:
            return False
        key = str(root_path)
        with _NOTED_LOCK:
            if key not in _NOTED:
                # On a network file system the readers keep their index on their own hosts.
                _NOTED[key] = None if network_filesystem(root_path) else Index(root_path, stale_seconds=30.0)
            index = _NOTED[key]
            if index is None:
                return False
            index._busy_ms = NOTE_BUSY_MS
            return index.store(f"{d.parent.name}/{d.name}")
    except Exception:
        return False


def _close_all(connections: list[sqlite3.Connection]) -> None:
    for con in connections:
        con.close()
    connections.clear()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_text(light: Mapping[str, Any]) -> str:
    """The free-text fields of a row, as the index's `search` column holds them."""
    return " ".join([str(light.get("experiment") or ""), str(light.get("name") or ""),
                     str(light.get("comment") or ""), str(light.get("id") or ""),
                     *[str(t) for t in light.get("tags") or ()], str(light.get("group") or "")]).lower()
