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
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._query import Where, compile_where
from ._where_sql import SqlUnsupported, compile_where_sql, listing_clauses, sort_sql

if TYPE_CHECKING:
    from ._index import Index
    from ._index_rows import Hit

__all__ = ["page"]

_ORDER = ["started DESC", "id DESC"]


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
