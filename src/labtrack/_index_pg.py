"""The run index in PostgreSQL: the same cache as `_index.Index`, shared by several servers.

Why: several `labtrack serve` processes in front of one root (an object-store mirror on each
host, or one shared folder) answer from one index, and a list of 100,000 runs is filtered,
sorted and paged by the database (`_where_sql`) instead of decoding every row in Python.

It is still only a cache: rows come from the run directories (`_index_rows._record`, the
code the SQLite index uses), keyed by `<experiment folder>/<run id>` relative to the root,
so servers whose mirrors live in different local folders share rows. Nothing in it needs a
backup: drop the tables and the next refresh rebuilds them.

- The schema is `_pg.MIGRATIONS`, applied on open (under an advisory lock, additive, so
  servers of an older version keep serving while a newer one migrates).
- Connections come from a `psycopg_pool.ConnectionPool` (`pool_size` connections at most).
- `refresh()` reads changed run directories outside any lock, then writes each part in one
  transaction holding `pg_advisory_xact_lock(REFRESH_LOCK)`: servers refreshing at once
  take turns, and each re-checks the signatures before writing (a row another server has
  just stored is not written again).
- Runs stored as "running" (few) are filtered in Python, since their status and duration
  are derived at query time (`Index._live`); every other row is filtered by SQL. A sort
  SQL can do (every column but status, duration and tags) pages in SQL as well.

Interface: ``PgIndex(root, url, *, stale_seconds=None, clock=time.time, pool_size=8)`` with
the public methods of `Index`; ``open_index(root, url=None, **kwargs)`` picks the backend
(None or a file path: SQLite; postgresql://...: this); ``PgIndex.store_records(records)``
stores `_index_rows._record` tuples directly (the benchmark's bulk path).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ._index import STATUSES, Index, RefreshResult, _search_text
from ._index_rows import SIG, Hit, _newest_records, _record_full, _scan
from ._names import slug
from ._pg import REFRESH_LOCK, Database, is_postgres_url
from ._query import Where, compile_where
from ._where_sql import SqlUnsupported, compile_where_sql, listing_clauses, sort_sql, strict_json
from .errors import FormatError, LabtrackValueError, QueryError, RunNotFoundError

__all__ = ["PgIndex", "open_index"]

_COLS = ("relpath, id, experiment, name, comment, tags, status, started, ended, duration, git_commit, "
         "dirty, host, user_name, parent, pid, search, params, metrics, stats, mins, maxs, means, keys, "
         "grp, job_type, sig, tags_j, params_j, metrics_j, mins_j, maxs_j, means_j, keys_j")
_COL_LIST = [c.strip() for c in _COLS.split(",")]
_SELECT = ("SELECT relpath, id, experiment, name, comment, tags, status, started, ended, duration, "
           "git_commit, dirty, host, user_name, parent, pid, params, metrics, {stats}, {aggs}, grp, job_type "
           "FROM runs")
_AGGS = "mins, maxs, means"
_NO_AGGS = "NULL, NULL, NULL"
_ORDER = ['started COLLATE "C" DESC NULLS LAST', 'id COLLATE "C" DESC']
_ORDER_ASC = ['started COLLATE "C" ASC NULLS FIRST', 'id COLLATE "C" ASC']


def open_index(root: str | os.PathLike[str], url: str | os.PathLike[str] | None = None,
               **kwargs: Any) -> Index:
    """The index of `root`: SQLite (`url` None: `<root>/.labtrack/index.sqlite`, or a file
    path) or PostgreSQL (`url` postgresql://user@host/db).

    Raises:
        MissingDependencyError: a PostgreSQL URL without psycopg installed
            (pip install labtrack[postgres]).
        DatabaseError: the database cannot be reached.
    """
    if url is not None and is_postgres_url(str(url)):
        return PgIndex(root, str(url), **kwargs)
    if url is not None and "://" in str(url):
        raise LabtrackValueError(f"an index is a SQLite file path or a postgresql:// URL, got {str(url)!r}")
    return Index(root, path=url, **kwargs)


def _without_inodes(sig: str) -> str:
    """A `_index_rows._signature` without its inode numbers ("ino:mtime:size|..." ->
    "mtime:size|..."): the same on every mirror of one bucket."""
    return "|".join(part.split(":", 1)[1] if part.count(":") == 2 else part for part in sig.split("|"))


def _nul(v: Any) -> Any:
    return v.replace("\x00", "\ufffd") if isinstance(v, str) else v


def pg_record(rec: tuple[Any, ...]) -> tuple[Any, ...]:
    """A `_index_rows._record` tuple as a `runs` row of PostgreSQL: dirty as a boolean, no NUL
    characters (text cannot hold them), and the strict JSON copies `_where_sql` reads."""
    rec = rec[:SIG + 1]  # a full record's strict copies are SQLite's; these are PostgreSQL's
    out = [_nul(v) for v in rec]
    out[11] = None if rec[11] is None else bool(rec[11])
    loads = json.loads
    out += [strict_json(loads(rec[5])), strict_json(loads(rec[17])), strict_json(loads(rec[18])),
            strict_json(loads(rec[20])), strict_json(loads(rec[21])), strict_json(loads(rec[22])),
            strict_json(loads(rec[23]))]
    return tuple(out)


class PgIndex(Index):
    """The run index of `root` in a PostgreSQL database (see the module docstring).

    :meth:`page` pages in SQL (`pages_in_database`): the server asks for each page apart.

    Args:
        root: the folder that holds the experiments (a local folder or an object-store mirror).
        url: postgresql://user[:password]@host[:port]/database.
        stale_seconds, clock: as for :class:`Index`.
        pool_size: most connections this object keeps open.
        mirrored: `root` is one of several servers' mirrors of one bucket (`labtrack serve
            --root s3://`), each indexed into this database. Then a refresh never drops the
            row of a run `root` lacks (a mirror still filling at start, or missing a run
            written straight to the bucket, must not take it out of every server's list;
            rows leave only by :meth:`rebuild`), and signatures leave out inode numbers,
            which differ from mirror to mirror (the mirror gives each file the writer's
            modification time), so servers do not re-read and rewrite every run in turn.

    Raises:
        MissingDependencyError, LabtrackValueError, DatabaseError: see :class:`_pg.Database`.
    """

    pages_in_database = True

    def __init__(self, root: str | os.PathLike[str], url: str, *, stale_seconds: float | None = None,
                 clock: Callable[[], float] = time.time, pool_size: int = 8, migrate: bool = True,
                 mirrored: bool = False) -> None:
        self.root = Path(root)
        self.url = url
        self.path = Path(os.devnull)  # no file: callers that show it see the URL instead
        if stale_seconds is None:
            from ._settings import get

            stale_seconds = float(get("stale_seconds"))
        self.stale_seconds = stale_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._last_refresh: float | None = None
        self._prefilled = False
        self._host = socket.gethostname()
        self._last_seen: dict[str, tuple[float | None, float | None]] = {}
        self._root_str = str(self.root)
        self.mirrored = mirrored
        self.db = Database(url, max_size=pool_size)
        if migrate:
            self.db.migrate()

    def __repr__(self) -> str:
        from ._pg import redact

        return f"<PgIndex {self._root_str!r} {redact(self.url)}>"

    def _connect(self) -> Any:
        raise AssertionError("PgIndex has no SQLite connection")  # pragma: no cover

    def close(self) -> None:
        """Close the pool."""
        self.db.close()

    # -- writing

    def rebuild(self) -> RefreshResult:
        """Forget everything and read every run directory again."""
        with self._refresh_lock:
            with self.db.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESH_LOCK,))
                conn.execute("DELETE FROM runs")
                conn.execute("DELETE FROM problems")
            result = self._refresh()
            self._last_refresh = time.monotonic()
            return result

    def _scan(self) -> dict[str, str]:
        current = _scan(self._root_str)
        if self.mirrored:
            current = {rel: _without_inodes(sig) for rel, sig in current.items()}
        return current

    def _refresh(self, chunk: int | None = None,
                 progress: Callable[[int], None] | None = None) -> RefreshResult:
        current = self._scan()
        with self.db.connection() as conn:
            known = dict(conn.execute("SELECT relpath, sig FROM runs").fetchall())
            bad = dict(conn.execute("SELECT relpath, sig FROM problems").fetchall())
        todo = [rel for rel, sig in current.items() if known.get(rel) != sig and bad.get(rel) != sig]
        if not todo and (self.mirrored or (all(rel in current for rel in known)
                                            and all(rel in current for rel in bad))):
            return RefreshResult(added=0, updated=0, removed=0, unreadable=0, total=len(known))
        if chunk:
            todo.sort(key=lambda rel: rel.rpartition("/")[2], reverse=True)
        size = max(1, chunk or len(todo))
        counts = RefreshResult(added=0, updated=0, removed=0, unreadable=0, total=0)
        for start in range(0, max(1, len(todo)), size):
            fresh: dict[str, tuple[Any, ...]] = {}
            broken: dict[str, str] = {}
            for rel in todo[start:start + size]:
                try:
                    # from the run's row file when current (_index_rowfile); its strict copies dropped
                    fresh[rel] = _record_full(rel, f"{self._root_str}/{rel}", current[rel])[:SIG + 1]
                except (OSError, FormatError, ValueError, TypeError) as e:
                    broken[rel] = str(e)
            self._write(fresh, broken, current, counts, last=start + size >= len(todo))
            if progress is not None:
                progress(max(0, len(todo) - start - size))
        return counts

    def _write(self, fresh: dict[str, tuple[Any, ...]], broken: dict[str, str],  # type: ignore[override]
               current: dict[str, str] | None, counts: RefreshResult, last: bool) -> None:
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESH_LOCK,))
            rels = list(fresh) + list(broken)
            known = dict(conn.execute("SELECT relpath, sig FROM runs WHERE relpath = ANY(%s)",
                                      (rels,)).fetchall()) if rels else {}
            store = []
            for rel, rec in fresh.items():
                if known.get(rel) == rec[-1]:
                    continue  # another server stored the same state meanwhile
                counts["updated" if rel in known else "added"] += 1
                store.append(pg_record(rec))
            self._upsert(conn, store)
            if store:
                conn.execute("DELETE FROM problems WHERE relpath = ANY(%s)", ([r[0] for r in store],))
            for rel, message in broken.items():
                counts["unreadable"] += 1
                conn.execute("DELETE FROM runs WHERE relpath = %s", (rel,))
                conn.execute("INSERT INTO problems (relpath, message, sig) VALUES (%s, %s, %s) ON CONFLICT "
                             "(relpath) DO UPDATE SET message = excluded.message, sig = excluded.sig",
                             (rel, _nul(message), (current or {}).get(rel, "")))
            if last and current is not None and not self.mirrored:
                gone = [r for (r,) in conn.execute("SELECT relpath FROM runs") if r not in current]
                gone_bad = [r for (r,) in conn.execute("SELECT relpath FROM problems") if r not in current]
                conn.execute("DELETE FROM runs WHERE relpath = ANY(%s)", (gone,))
                conn.execute("DELETE FROM problems WHERE relpath = ANY(%s)", (gone_bad,))
                counts["removed"] = len(gone)
            row = conn.execute("SELECT count(*) FROM runs").fetchone()
            counts["total"] = int(row[0]) if row else 0

    @staticmethod
    def _upsert(conn: Any, store: list[tuple[Any, ...]]) -> None:
        """Insert or replace rows: COPY into a temporary table, then one INSERT ... ON CONFLICT."""
        if not store:
            return
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS runs_in (LIKE runs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with conn.cursor().copy(f"COPY runs_in ({_COLS}) FROM STDIN") as copy:
            for rec in store:
                copy.write_row(rec)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COL_LIST[1:])
        conn.execute(f"INSERT INTO runs ({_COLS}) SELECT {_COLS} FROM runs_in "
                     f"ON CONFLICT (relpath) DO UPDATE SET {updates}")

    def store_records(self, records: Iterable[tuple[Any, ...]]) -> int:
        """Store `_index_rows._record` tuples as they are (no run directory read): the bulk
        path of benchmarks/pg_index.py. Returns how many."""
        recs = [pg_record(r) for r in records]
        for i in range(0, len(recs), 10000):
            with self.db.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESH_LOCK,))
                self._upsert(conn, recs[i:i + 10000])
        return len(recs)

    def store(self, relpath: str) -> bool:
        """Read one run directory now and store its row (see :meth:`Index.store`)."""
        from ._index_rows import _signature

        run_dir = f"{self._root_str}/{relpath}"
        sig = _signature(run_dir)
        if sig is None:
            return False
        rec = _record_full(relpath, run_dir, _without_inodes(sig) if self.mirrored else sig)[:SIG + 1]
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESH_LOCK,))
            self._upsert(conn, [pg_record(rec)])
            conn.execute("DELETE FROM problems WHERE relpath = %s", (relpath,))
        return True

    def prefill(self, count: int = 200) -> int | None:
        """See :meth:`Index.prefill`."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT EXISTS(SELECT 1 FROM runs) OR EXISTS(SELECT 1 FROM problems)").fetchone()
        if row and row[0]:
            return None
        total, store = _newest_records(self._root_str, count)
        if store:
            with self.db.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (REFRESH_LOCK,))
                self._upsert(conn, [pg_record(r) for r in store])
        self._prefilled = True
        return total

    def problems(self) -> list[tuple[str, str]]:
        """Run directories that could not be read: `[(relpath, message)]`."""
        self._ensure_fresh()
        with self.db.connection() as conn:
            return [(r, m) for r, m in conn.execute(
                'SELECT relpath, message FROM problems ORDER BY relpath COLLATE "C"')]

    # -- reading

    def _plan(self, where: str | Where | None, experiment: str | None, status: str | None,
              q: str | None, with_stats: bool) -> tuple[str, dict[str, Any], list[Hit], Where | None]:
        """(SQL condition for rows not stored as running, its args, the running rows that
        match (decided in Python), the where expression when SQL cannot evaluate it)."""
        if status is not None and status not in STATUSES:
            raise QueryError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        compiled = compile_where(where) if isinstance(where, str) else where
        if compiled is not None:
            self._check_names(compiled)
        clauses, args = listing_clauses("postgresql", experiment, status, q, STATUSES)
        words = (q or "").lower().split()
        python_where = None
        if compiled is not None:
            try:
                sql, wargs = compile_where_sql(compiled, "postgresql")
                clauses.append(sql)
                args.update(wargs)
            except SqlUnsupported:
                python_where = compiled
        # The runs stored as running: their shown status and duration are derived now.
        run_sql = (_SELECT.format(stats="stats" if with_stats else "NULL", aggs=_AGGS)
                   + " WHERE status = 'running'" + (" AND experiment = %(experiment)s" if experiment else ""))
        now = self._clock()
        running = []
        with self.db.connection() as conn:
            recs = conn.execute(run_sql, {"experiment": experiment} if experiment else {}).fetchall()
        for rec in recs:
            h = Hit(self, now, rec)
            shown = h.light()["status"]
            if status is not None and (status not in ("running", "crashed") or shown != status):
                continue
            ok = True
            for word in words:
                text = _search_text(h.light())
                if word in ("running", "crashed"):
                    ok = shown == word or word in text
                else:
                    ok = word in text
                if not ok:
                    break
            if ok and (compiled is None or compiled(h)):
                running.append(h)
        return " AND ".join(clauses), args, running, python_where

    def _order(self, sort: str | None) -> tuple[list[str], dict[str, Any]] | None:
        """ORDER BY terms for `sort`, None when Python must sort (checked by _sort_key)."""
        key = self._sort_key(sort)
        if key is None:
            return list(_ORDER), {}
        name = (sort or "").lstrip("+-")
        if name == "started":
            return (list(_ORDER) if key[1] else list(_ORDER_ASC)), {}
        got = sort_sql(sort, "postgresql", prefix="s")
        if got is None:
            return None
        terms, args = got
        return terms + _ORDER, args

    def select(self, where: str | Where | None = None, experiment: str | None = None,
               status: str | None = None, q: str | None = None, sort: str | None = "-started",
               with_stats: bool = False, parts: bool = True) -> list[Hit]:
        """See :meth:`Index.select` (every row is fetched with its params and metrics)."""
        self._ensure_fresh()
        hits, _total = self._fetch(where, experiment, status, q, sort, with_stats, 0, None)
        return hits

    def query(self, where: str | Where | None = None, experiment: str | None = None,
              status: str | None = None, q: str | None = None, sort: str | None = "-started",
              offset: int = 0, limit: int | None = None,
              with_stats: bool = False) -> tuple[int, list[dict[str, Any]]]:
        """See :meth:`Index.query`: filtered, sorted and paged by PostgreSQL."""
        if offset < 0 or (limit is not None and limit < 0):
            raise LabtrackValueError(f"offset and limit must be >= 0, got offset={offset!r} limit={limit!r}")
        self._ensure_fresh()
        hits, total = self._fetch(where, experiment, status, q, sort, with_stats, offset, limit)
        rows = []
        for h in hits:
            r = h.row()
            if not with_stats:
                r.pop("stats", None)
            r.pop("pid", None)
            rows.append(r)
        return total, rows

    def _fetch(self, where: str | Where | None, experiment: str | None, status: str | None,
               q: str | None, sort: str | None, with_stats: bool, offset: int,
               limit: int | None) -> tuple[list[Hit], int]:
        """The page of matching runs and how many match in all.

        Three shapes, each one pass over the table at most (benchmarks/pg_index.py):

        - no where and no text, newest (or oldest) first: the page from the `runs_started_c`
          index (a deep page: its relpaths by an index-only scan, then those rows), the
          count from `runs_experiment_status` (migration 5);
        - another order, or a where or text condition: one query sorts narrow rows (relpath
          and the sort keys; top-N) and a second fetches the page's rows by key; newest
          first, a condition is counted in the same parallel scan (`count(*) OVER ()`),
          by another order apart (a full sort of every match by a metric cost more than a
          second scan);
        - a condition or sort SQL cannot express: every candidate row, decided in Python.
        """
        cond, args, running, python_where = self._plan(where, experiment, status, q, with_stats)
        order = self._order(sort)
        sel = _SELECT.format(stats="stats" if with_stats else "NULL", aggs=_AGGS if python_where else _NO_AGGS)
        args["running"] = [h.relpath for h in running]
        full = f"({cond}) OR relpath = ANY(%(running)s)"
        now = self._clock()
        by_rel = {h.relpath: h for h in running}  # keep the Hits whose status is derived
        if order is not None and python_where is None:
            terms, sargs = order
            args.update(sargs)
            page = ""
            if limit is not None:
                page = f" LIMIT {int(limit)}"
            if offset:
                page += f" OFFSET {int(offset)}"
            ordered = f" ORDER BY {', '.join(terms)}{page}"
            scans = where is not None or bool((q or "").split())
            by_index = not scans and terms[:2] in (_ORDER, _ORDER_ASC)
            with self.db.connection() as conn:
                if limit is None and not offset:
                    recs = conn.execute(f"{sel} WHERE {full}{ordered}", args).fetchall()
                    return [by_rel.get(rec[0]) or Hit(self, now, rec) for rec in recs], len(recs)
                total = -1
                if by_index and not offset:
                    recs = conn.execute(f"{sel} WHERE {full}{ordered}", args).fetchall()
                else:
                    # narrow rows (relpath and the sort keys) through the sort, not whole rows
                    # Newest first, a condition is counted in the page's own scan (every row
                    # is read anyway: a parallel scan beats walking the index, and sorting
                    # every match by two texts costs less than a second scan). By another
                    # order, sorting every match costs more than counting apart: top-N only.
                    windowed = scans and terms[:2] in (_ORDER, _ORDER_ASC)
                    if windowed:
                        conn.execute("SET LOCAL enable_indexscan = off")
                    count = ", count(*) OVER ()" if windowed else ", 0"
                    got = conn.execute(f"SELECT relpath{count} FROM runs WHERE {full}{ordered}", args).fetchall()
                    rels = [r for r, _ in got]
                    fetched = {rec[0]: rec for rec in conn.execute(f"{sel} WHERE relpath = ANY(%(rels)s)",
                                                                   {"rels": rels})} if rels else {}
                    recs = [fetched[r] for r in rels if r in fetched]
                    if windowed and got:
                        total = int(got[0][1])
                if total < 0:  # no window count (or a page past the end): count apart
                    # `cond` holds only rows not stored as running, the running matches are apart
                    row = conn.execute(f"SELECT count(*) FROM runs WHERE {cond}", args).fetchone()
                    total = (int(row[0]) if row else 0) + len(running)
            return [by_rel.get(rec[0]) or Hit(self, now, rec) for rec in recs], total
        with self.db.connection() as conn:
            recs = conn.execute(f"{sel} WHERE {full} ORDER BY {', '.join(_ORDER)}", args).fetchall()
        hits = [by_rel.get(rec[0]) or Hit(self, now, rec) for rec in recs]
        if python_where is not None:
            hits = [h for h in hits if h.relpath in by_rel or python_where(h)]
        hits = self._python_sort(hits, sort)
        total = len(hits)
        return (hits[offset:] if limit is None else hits[offset:offset + limit]), total

    def page(self, where: str | Where | None = None, experiment: str | None = None,
             status: str | None = None, q: str | None = None, sort: str | None = "-started",
             offset: int = 0, limit: int | None = 100,
             with_stats: bool = False) -> tuple[int, list[Hit]]:
        """See :meth:`Index.page`: filtered, sorted and paged by PostgreSQL."""
        if offset < 0 or (limit is not None and limit < 0):
            raise LabtrackValueError(f"offset and limit must be >= 0, got offset={offset!r} limit={limit!r}")
        self._ensure_fresh()
        hits, total = self._fetch(where, experiment, status, q, sort, with_stats, offset, limit)
        return total, hits

    def _check_names(self, where: Where) -> None:
        """See :meth:`Index._check_names`; a name some run has costs one EXISTS (stopping at
        the first run that has it), not the list of every name of 100,000 runs."""
        for f in where.fields:
            if f.kind not in ("params", "metrics"):
                continue
            with self.db.connection() as conn:
                row = conn.execute("SELECT EXISTS(SELECT 1 FROM runs WHERE keys_j -> %s ? %s)",
                                   (f.kind, f.key)).fetchone()
            if not (row and row[0]):
                super()._check_names(where)  # the error with its hint (or none: no runs yet)
                return

    def _python_sort(self, hits: list[Hit], sort: str | None) -> list[Hit]:
        from ._index import _STARTED
        from ._index_rows import _sort_value

        key = self._sort_key(sort)
        if key is None:
            return hits
        getter, descending = key[0], key[1]
        if getter is _STARTED:
            return hits[::-1] if not descending else hits
        keyed = [(_sort_value(getter(h)), h) for h in hits]
        present = [(k, h) for k, h in keyed if k is not None]
        missing = [h for k, h in keyed if k is None]
        present.sort(key=lambda kh: kh[0], reverse=descending)
        return [h for _, h in present] + missing

    def columns(self, experiment: str | None = None) -> dict[str, list[str]]:
        """See :meth:`Index.columns`."""
        self._ensure_fresh()
        cond, args = ("", {}) if experiment is None else (" WHERE experiment = %(e)s", {"e": experiment})
        out: dict[str, list[str]] = {}
        with self.db.connection() as conn:
            for kind in ("params", "metrics"):
                out[kind] = [k for (k,) in conn.execute(
                    f'SELECT DISTINCT k COLLATE "C" FROM (SELECT jsonb_array_elements_text(keys_j -> '
                    f"'{kind}') AS k FROM runs{cond}) AS t ORDER BY 1", args)]
            out["experiments"] = [e for (e,) in conn.execute(
                'SELECT DISTINCT experiment COLLATE "C" FROM runs ORDER BY 1')]
        return out

    def rows(self, relpaths: Iterable[str], with_stats: bool = True) -> dict[str, dict[str, Any]]:
        """See :meth:`Index.rows`."""
        self._ensure_fresh()
        wanted = list(dict.fromkeys(relpaths))
        now = self._clock()
        sql = _SELECT.format(stats="stats" if with_stats else "NULL", aggs=_NO_AGGS) + " WHERE relpath = ANY(%s)"
        with self.db.connection() as conn:
            return {rec[0]: Hit(self, now, rec).row() for rec in conn.execute(sql, (wanted,))}

    def table_rows(self, relpaths: Iterable[str], aggs: Iterable[str] = ("last",)
                   ) -> dict[str, dict[str, Any]]:
        """See :meth:`Index.table_rows`."""
        self._ensure_fresh()
        wanted = list(dict.fromkeys(relpaths))
        columns = [c for c in ("min", "max", "mean") if c in set(aggs)]
        sql = ("SELECT relpath, id, experiment, name, status, started, host, pid, params, metrics"
               + "".join(f", {c}s" for c in columns) + " FROM runs WHERE relpath = ANY(%s)")
        out: dict[str, dict[str, Any]] = {}
        now = self._clock()
        loads = json.loads
        with self.db.connection() as conn:
            recs = conn.execute(sql, (wanted,)).fetchall()
        for rec in recs:
            row: dict[str, Any] = {"id": rec[1], "experiment": rec[2], "name": rec[3], "status": rec[4]}
            if rec[4] == "running":
                row["status"] = self._live(rec[0], {"status": rec[4], "started": rec[5], "host": rec[6],
                                                    "pid": rec[7]}, now)["status"]
            row["params"] = loads(rec[8])
            row["metrics"] = loads(rec[9])
            for j, c in enumerate(columns):
                row[c] = loads(rec[10 + j])
            out[rec[0]] = row
        return out

    def resolve(self, ref: str) -> list[dict[str, Any]]:
        """See :meth:`Index.resolve`."""
        from ._index import _like_escape

        if not isinstance(ref, str) or not ref.strip():
            raise RunNotFoundError(f"a run reference must be a non-empty id, id prefix or "
                                   f"experiment/name, got {ref!r}")
        self._ensure_fresh()
        ref = ref.strip()
        order = " ORDER BY " + ", ".join(_ORDER)
        with self.db.connection() as conn:
            def rels(sql: str, args: tuple[Any, ...]) -> list[str]:
                return [r for (r,) in conn.execute("SELECT relpath FROM runs WHERE " + sql + order, args)]

            found = rels("id = %s", (ref,))
            if not found:
                found = rels("id LIKE %s ESCAPE '\\'", (_like_escape(ref) + "%",))
            if not found and "/" in ref:
                seen: set[str] = set()
                for i, ch in enumerate(ref):
                    if ch != "/":
                        continue
                    exp, rest = ref[:i], ref[i + 1:]
                    for r in rels("(experiment = %s OR relpath LIKE %s ESCAPE '\\') AND (name = %s OR id = %s)",
                                  (exp, _like_escape(slug(exp)) + "/%", rest, rest)):
                        if r not in seen:
                            seen.add(r)
                            found.append(r)
                if not found:
                    found = rels("relpath LIKE %s ESCAPE '\\'", (_like_escape(ref) + "%",))
        rows = self.rows(found)
        return [rows[r] for r in found if r in rows]
