"""The `where` language compiled to SQL answers as the Python closure does, on SQLite and on
PostgreSQL: many generated expressions over generated rows (fixed seeds, so a failure
repeats), plus the documented cases one by one."""

from __future__ import annotations

import math
import random
import sqlite3
from typing import Any, Callable

import pytest

from pg import pg_db, postgres  # noqa: F401 - fixtures

from labtrack._query import FIELDS, compile_where
from labtrack._where_sql import COLUMNS, compile_where_sql, sort_sql, strict_json

KEYS = ["lr", "opt.lr", "val acc", 'q"k', "b\\s", "ü", "flag", "layers"]
METRICS = ["loss", "train/acc"]
# Lists hold no NaN and no value twice under two spellings (1 and 1.0, 1 and true): those
# are the documented limits of comparing two fields that hold lists.
SCALARS: list[Any] = [0, 1, 2, -1, 3, 0.5, -1.5, 0.0, 1e20, math.nan, math.inf, -math.inf,
                      True, False, "", "a", "ab", "B", "ü", "x y", "1", "fix bug", None]
LISTS: list[Any] = [[], [1, 2], ["a", "b"], [1, "a"], [True], [0.5], [[2]], ["ab", "x y"]]
OBJECTS: list[Any] = [{}, {"a": 1}]
TEXTS = ["", "a", "ab", "B", "ü", "fix bug", "x", None]


def _value(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.7:
        return rng.choice(SCALARS)
    if r < 0.95:
        return rng.choice(LISTS)
    return rng.choice(OBJECTS)


def make_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        def part(keys: list[str]) -> dict[str, Any]:
            return {k: _value(rng) for k in keys if rng.random() < 0.6}
        rows.append({
            "rid": i, "id": f"run{i:03d}", "experiment": rng.choice(["exp", "cnn", "ü"]),
            "name": rng.choice(TEXTS[:-1]), "comment": rng.choice(TEXTS[:-1]),
            "tags": rng.choice([[], ["cnn"], ["a", "b"], ["cnn", "fix"], ["ab"]]),
            "status": rng.choice(["finished", "failed", "killed"]),
            "started": rng.choice(["2026-01-01T00:00:00", "2026-02-01T00:00:00", None]),
            "ended": rng.choice(["2026-03-01T00:00:00", None]),
            "duration": rng.choice([None, 0.0, 1.5, 100.0]),
            "commit": rng.choice([None, "abc123"]), "dirty": rng.choice([None, True, False]),
            "host": rng.choice(TEXTS), "user": rng.choice(TEXTS), "parent": rng.choice(TEXTS),
            "group": rng.choice(TEXTS), "job_type": rng.choice(TEXTS),
            "params": part(KEYS), "metrics": part(METRICS),
            "stats_min": part(METRICS), "stats_max": part(METRICS), "stats_mean": part(METRICS),
        })
    return rows


def _lit(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-1e400"  # '-inf' is no literal; -1e400 is -inf
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_lit(x) for x in v) + "]"


def _field(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        k = rng.choice(KEYS)
        return "params." + (k if all(ch.isalnum() or ch in "._/" for ch in k) else _lit(k))
    if r < 0.65:
        agg = rng.choice(["", ":min", ":max", ":mean", ":last"])
        return "metrics." + rng.choice(METRICS) + agg
    return rng.choice(FIELDS)


def _operand(rng: random.Random, depth: int) -> str:
    r = rng.random()
    if r < 0.5:
        return _field(rng)
    if r < 0.8:
        return _lit(rng.choice(SCALARS))
    if r < 0.93 or depth <= 0:
        return _lit(rng.choice([[], [1], ["a", "cnn"], [1, "ab", None], [True, 2], [-1, 0.5], ["fix"]]))
    return "(" + gen_expr(rng, depth - 1) + ")"


def gen_expr(rng: random.Random, depth: int = 2) -> str:
    r = rng.random()
    if depth > 0 and r < 0.15:
        return f"{gen_expr(rng, depth - 1)} and {gen_expr(rng, depth - 1)}"
    if depth > 0 and r < 0.25:
        return f"{gen_expr(rng, depth - 1)} or {gen_expr(rng, depth - 1)}"
    if depth > 0 and r < 0.32:
        return f"not {gen_expr(rng, depth - 1)}"
    r = rng.random()
    left = _operand(rng, depth)
    if r < 0.55:
        op = rng.choice(["==", "!=", "<", "<=", ">", ">=", "="])
        return f"{left} {op} {_operand(rng, depth)}"
    if r < 0.85:
        return f"{left} {rng.choice(['in', 'not in'])} {_operand(rng, depth)}"
    return left


# -- the two databases


def sqlite_table(rows: list[dict[str, Any]]) -> Callable[[str, dict[str, Any]], set[int]]:
    con = sqlite3.connect(":memory:")
    cols = ["rid INTEGER"] + [f"{col} {'TEXT' if kind in ('json', 'text') else 'REAL' if kind == 'real' else 'INTEGER'}"
                              for kind, col in COLUMNS.values()]
    con.execute(f"CREATE TABLE runs ({', '.join(cols)})")
    _fill(con, rows, "?")
    return lambda sql, args: {r for (r,) in con.execute(f"SELECT rid FROM runs WHERE {sql}", args)}


def _record(row: dict[str, Any], pg: bool) -> list[Any]:
    out: list[Any] = [row["rid"]]
    for field, (kind, _col) in COLUMNS.items():
        v = row[{"min": "stats_min", "max": "stats_max", "mean": "stats_mean"}.get(field, field)]
        if kind == "json":
            out.append(strict_json(v))
        elif kind == "bool" and v is not None and not pg:
            out.append(int(v))
        else:
            out.append(v)
    return out


def _fill(con: Any, rows: list[dict[str, Any]], ph: str) -> None:
    pg = ph == "%s"
    names = ", ".join(["rid"] + [col for _, col in COLUMNS.values()])
    marks = ", ".join([ph] * (len(COLUMNS) + 1))
    for row in rows:
        con.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", _record(row, pg))


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Any:
    yield
    while _OPEN:
        _OPEN.pop().close()


def pg_table(url: str, rows: list[dict[str, Any]]) -> Callable[[str, dict[str, Any]], set[int]]:
    import psycopg

    con = psycopg.connect(url, autocommit=True)
    _OPEN.append(con)
    types = {"json": "JSONB", "text": "TEXT", "real": "DOUBLE PRECISION", "bool": "BOOLEAN"}
    cols = ["rid INTEGER"] + [f"{col} {types[kind]}" for kind, col in COLUMNS.values()]
    con.execute(f"CREATE TABLE runs ({', '.join(cols)})")  # type: ignore[arg-type]
    _fill(con, rows, "%s")

    def run(sql: str, args: dict[str, Any]) -> set[int]:
        return {r for (r,) in con.execute(f"SELECT rid FROM runs WHERE {sql}", args)}  # type: ignore[arg-type]

    return run


def assert_sql_matches_python(expr: str, rows: list[dict[str, Any]], dbs: dict[str, Callable[[str, dict[str, Any]], set[int]]]) -> None:
    where = compile_where(expr)
    want = {r["rid"] for r in rows if where(r)}
    for dialect, run in dbs.items():
        sql, args = compile_where_sql(where, dialect)
        got = run(sql, args)
        assert got == want, (f"{dialect}: {expr!r} gives {sorted(got)}, Python {sorted(want)}; "
                             f"rows only in SQL: {[rows[i] for i in sorted(got - want)][:2]}; "
                             f"only in Python: {[rows[i] for i in sorted(want - got)][:2]}")


DOCUMENTED = [
    "params.lr == null", "params.lr != null", "params.lr < 1", "params.lr >= 0.5", 'params.lr < "b"',
    "params.lr == 1", "params.lr == true", "params.flag", "not params.flag", "dirty", "not dirty",
    '"cnn" in tags', 'tags in ["a", "b"]', '"fix" in comment', '"a" in params.layers',
    "params.layers == [1, 2]", "[1, 2] in params.layers",
    "params.lr == nan", "params.lr != nan", "params.lr > inf", "params.lr == inf", "params.lr < inf",
    "params.lr == params.flag", "params.lr < params.flag", "params.lr in params.layers",
    "(params.lr > 0) == true", "(params.lr > 0) in [1]", 'params."val acc" > 0', 'params."q\\"k" == 1',
    "params.ü == 'ü'", "params.b\\s == 1", "metrics.loss:min < 1", "metrics.train/acc:max >= 0",
    "duration > 1", "duration == null", 'started < "2026-01-15"', 'experiment == "ü"', "host",
    '"" in name', "name in \"fix bug\"", "params.layers", "metrics.loss", "1 == 1 and params.lr",
    "null == null or params.lr > 0", "not (params.lr in [0, 1, 2])", 'params.lr in "abc"',
    "params.lr in []", "[] in params.layers", "params.lr == []", "params.lr == -1",
]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return make_rows(random.Random(18), 160)


def test_documented_cases_match_python_on_sqlite(rows: list[dict[str, Any]]) -> None:
    db = {"sqlite": sqlite_table(rows)}
    for expr in DOCUMENTED:
        assert_sql_matches_python(expr, rows, db)


def test_generated_expressions_match_python_on_both(rows: list[dict[str, Any]], pg_db: str) -> None:
    dbs = {"sqlite": sqlite_table(rows), "postgresql": pg_table(pg_db, rows)}
    for expr in DOCUMENTED:
        assert_sql_matches_python(expr, rows, dbs)
    rng = random.Random(1818)
    for _ in range(600):
        assert_sql_matches_python(gen_expr(rng), rows, dbs)


def test_sort_matches_python(rows: list[dict[str, Any]], pg_db: str) -> None:
    """ORDER BY from sort_sql orders as Index.select sorts: missing last, numbers before texts."""
    from labtrack._index_rows import _sort_value

    import psycopg

    con = sqlite3.connect(":memory:")
    cols = ["rid INTEGER"] + [f"{col} {'TEXT' if kind in ('json', 'text') else 'REAL' if kind == 'real' else 'INTEGER'}"
                              for kind, col in COLUMNS.values()]
    con.execute(f"CREATE TABLE runs ({', '.join(cols)})")
    _fill(con, rows, "?")
    pcon = psycopg.connect(pg_db, autocommit=True)
    _OPEN.append(pcon)
    pg_table(pg_db, [])  # creates the table
    _fill(pcon, rows, "%s")
    base = sorted(rows, key=lambda r: (r["started"] or "", r["id"]), reverse=True)
    base = [r for r in base if r["started"] is not None] + [r for r in base if r["started"] is None]
    for sort in ["params.lr", "-params.lr", "params.flag", "-metrics.loss:min",
                 "metrics.train/acc", "name", "-experiment", "dirty", "-host", "params.ü"]:
        name = sort.lstrip("-")
        if name.startswith("params."):
            get: Callable[[dict[str, Any]], Any] = lambda r, k=name[7:]: r["params"].get(k)  # noqa: E731
        elif name.startswith("metrics."):
            m, _, agg = name[8:].rpartition(":")
            m, agg = (m, agg) if m else (name[8:], "last")
            get = (lambda r, m=m: r["metrics"].get(m)) if agg == "last" else (lambda r, m=m, a=agg: r["stats_" + a].get(m))
        else:
            get = lambda r, k=name: r[k]  # noqa: E731
        keyed = [(_sort_value(get(r)), r) for r in base]
        present = [(k, r) for k, r in keyed if k is not None]
        present.sort(key=lambda kr: kr[0], reverse=sort.startswith("-"))
        want = [r["rid"] for _, r in present] + [r["rid"] for k, r in keyed if k is None]
        for dialect, run in (("sqlite", con), ("postgresql", pcon)):
            got_sort = sort_sql(sort, dialect)
            assert got_sort is not None
            terms, args = got_sort
            if dialect == "postgresql":
                tail = ['started DESC NULLS LAST', 'id COLLATE "C" DESC']
            else:
                tail = ["started DESC", "id DESC"]
            sql = f"SELECT rid FROM runs ORDER BY {', '.join(terms + tail)}"
            got = [r for (r,) in run.execute(sql, args)]  # type: ignore[attr-defined]
            assert got == want, (dialect, sort)
