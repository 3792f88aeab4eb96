"""One page of the SQLite index's runs, filtered, sorted and paged by SQLite (`Index.page`).

Why: `Index.select` decodes every matching row's params or metrics in Python and sorts them
there: 4-6 s for a filter or a sort by a metric over 100,000 runs. Here the where expression
and the sort are compiled to SQL (`_where_sql`, which reads the strict JSON copies the index
keeps beside its rows), SQLite pages the answer with LIMIT/OFFSET and only the page's rows
are decoded.

The runs stored as "running" are the exception, as in `_index_pg`: their shown status and
duration are derived now (`Index._live`), so they are fetched apart (there are few), matched
in Python, and joined to the SQL's answer by relpath. A where expression SQL cannot take (built
by hand, without a parsed tree) or a sort SQL cannot do (status, duration, tags) falls back
to `Index.select`, which gives the same answer.

A sort by a param or a metric orders every matching row by a key SQLite computes from the
row's JSON (`_where_sql.sort_sql`: about twelve JSON calls per row, 0.5 s over 100,000 runs).
The first such sort creates an index on exactly those expressions (`sort_index`: the key
inlined as a literal, since an index cannot hold a bound parameter), so the next ones walk the
index and stop after the page: well under a millisecond for the first page. The index is part
of the cache: SQLite keeps it current as rows change, it goes with the index file, and at most
`SORT_INDEXES` are kept (the least recently used is dropped), so writes do not slow without
bound. A database this process may not write sorts without one.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from ._query import Where, compile_where
from ._where_sql import SqlUnsupported, compile_where_sql, listing_clauses, sort_sql

if TYPE_CHECKING:
    from ._index import Index
    from ._index_rows import Hit

__all__ = ["page", "sort_index"]

_ORDER = ["started DESC", "id DESC"]

#: How many sort indexes (one per key and direction) an index file keeps.
SORT_INDEXES = 4
#: A sort index's last use is written at most this often (seconds): reads stay reads.
_TOUCH_SECONDS = 60.0
_SORT_TABLE = "CREATE TABLE IF NOT EXISTS sort_indexes (name TEXT PRIMARY KEY, terms TEXT NOT NULL, used REAL NOT NULL)"


def page(index: Index, where: str | Where | None, experiment: str | None, status: str | None,
         q: str | None, sort: str | None, offset: int, limit: int | None,
         with_stats: bool = False) -> tuple[list[Hit], int]:
    """The runs `offset` to `offset + limit` of the answer `index.select(...)` gives, and how
    many runs match in all. See :meth:`Index.page`."""
    from ._index import _PARTS, _SELECT, _AGGS, _NO_AGGS, STATUSES, _search_text
    from ._index_rows import Hit
    from .errors import QueryError

    if status is not None and status not in STATUSES:
        raise QueryError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    compiled = compile_where(where) if isinstance(where, str) else where
    index._sort_key(sort)  # refuses an unknown sort column with the usual message
    order = _order(sort)
    if order is not None and compiled is not None:
        index._check_names(compiled)
        try:
            wsql, wargs = compile_where_sql(compiled, "sqlite")
        except SqlUnsupported:
            order = None
    if order is None:
        hits = index.select(where=compiled, experiment=experiment, status=status, q=q, sort=sort,
                            with_stats=with_stats, parts=False)
        return (hits[offset:] if limit is None else hits[offset:offset + limit]), len(hits)

    clauses, args = listing_clauses("sqlite", experiment, status, q, STATUSES)
    words = (q or "").lower().split()
    if compiled is not None:
        clauses.append(wsql)
        args.update(wargs)

    con = index._connect()
    now = index._clock()
    stats = "stats" if with_stats else "NULL"
    # The runs stored as running: shown running or crashed, their duration growing.
    run_sql = (_SELECT.format(parts=_PARTS, stats=stats, aggs=_AGGS) + " WHERE status = 'running'"
               + (" AND experiment = :experiment" if experiment is not None else ""))
    running: dict[str, Hit] = {}
    for rec in con.execute(run_sql, {"experiment": experiment} if experiment is not None else {}):
        h = Hit(index, now, rec)
        shown = h.light()["status"]
        if status is not None and (status not in ("running", "crashed") or shown != status):
            continue
        text = _search_text(h.light())
        if all((shown == w or w in text) if w in ("running", "crashed") else w in text for w in words) \
                and (compiled is None or compiled(h)):
            running[h.relpath] = h
    terms, sargs = order
    if sargs:
        inlined = _inline(terms, sargs)
        if inlined is not None and sort_index(index, con, inlined) is not None:
            terms, sargs = inlined, {}
    args.update(sargs)
    args["running"] = json.dumps(list(running))
    cond = f"({' AND '.join(clauses)}) OR relpath IN (SELECT value FROM json_each(:running))"
    tail = ""
    if limit is not None or offset:
        tail = f" LIMIT {-1 if limit is None else int(limit)} OFFSET {int(offset)}"
    # The page's relpaths from the covering index (`runs_query`), then only their rows.
    sql = f"SELECT relpath FROM runs WHERE {cond} ORDER BY " + ", ".join(terms) + tail
    found = [r for (r,) in con.execute(sql, args)]
    recs: dict[str, Any] = {}
    wanted = [r for r in found if r not in running]
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        recs.update((rec[0], rec) for rec in con.execute(
            _SELECT.format(parts=_PARTS, stats=stats, aggs=_NO_AGGS) + " WHERE relpath IN ("
            + ",".join("?" * len(chunk)) + ")", chunk))
    hits = [running.get(r) or Hit(index, now, recs[r]) for r in found if r in running or r in recs]
    if tail:
        total = int(con.execute(f"SELECT count(*) FROM runs WHERE {cond}", args).fetchone()[0])
    else:
        total = len(hits)
    return hits, total


def _inline(terms: list[str], args: dict[str, Any]) -> list[str] | None:
    """`terms` with each `:name` replaced by its value as an SQL literal; None when a value
    cannot be written as one (a NUL in a text)."""
    lits: dict[str, str] = {}
    for name, value in args.items():
        if isinstance(value, str) and "\x00" not in value:
            lits[name] = "'" + value.replace("'", "''") + "'"
        elif isinstance(value, int) and not isinstance(value, bool):
            lits[name] = str(value)
        else:
            return None
    pattern = re.compile(r":(\w+)")

    def sub(m: re.Match[str]) -> str:
        return lits.get(m.group(1), m.group(0))

    return [pattern.sub(sub, t) for t in terms]


def sort_index(index: Index, con: sqlite3.Connection, terms: list[str]) -> str | None:
    """The name of the index on `terms` (ORDER BY terms without parameters), created if
    missing; None when it cannot be (a read-only database, a busy writer: then the sort
    scans, as without it). Keeps at most `SORT_INDEXES`, dropping the least recently used."""
    cols = ", ".join(terms)
    name = "runs_sort_" + hashlib.sha1(cols.encode()).hexdigest()[:16]
    known = index._sort_indexes
    now = time.time()
    if name in known and now - known[name] < _TOUCH_SECONDS:
        return name
    try:
        exists = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                             (name,)).fetchone() is not None
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(_SORT_TABLE)
            if not exists:
                con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON runs({cols})")
            con.execute("INSERT OR REPLACE INTO sort_indexes VALUES (?, ?, ?)", (name, cols, now))
            rows = con.execute("SELECT name FROM sort_indexes ORDER BY used DESC").fetchall()
            for (old,) in rows[SORT_INDEXES:]:
                con.execute(f"DROP INDEX IF EXISTS {old}")
                con.execute("DELETE FROM sort_indexes WHERE name = ?", (old,))
                known.pop(old, None)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError:
        return None  # read-only, or locked past the busy timeout: sort without it
    known[name] = now
    return name


def _order(sort: str | None) -> tuple[list[str], dict[str, Any]] | None:
    """ORDER BY terms for `sort` (the tie-break last), None when Python must sort."""
    if not sort:
        return list(_ORDER), {}
    got = sort_sql(sort, "sqlite", prefix="s")
    if got is None:
        return None
    terms, args = got
    if sort.lstrip("+-") == "started":
        return terms, args
    return terms + _ORDER, args
