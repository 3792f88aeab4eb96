"""The `where` language compiled to SQL, for SQLite and PostgreSQL, with the semantics of
`_query.py` exactly: the same answer as the Python closure for every row the index holds.

Why: filtering 100,000 runs in Python decodes 100,000 JSON objects; a predicate the database
evaluates reads only its columns, and lets `LIMIT` page the answer.

The JSON columns the SQL reads are *strict* JSON (`strict_json`), written next to the
Python-JSON ones the rows are decoded from: NaN, which no JSON type can hold, is the object
`{"labtrack:nan": true}` (treated as NaN: equal to nothing, unordered, false), and +/-inf
are the numbers +/-1e1000 (above every float). Keys are written so SQLite's path labels
find them (`"` as \\u0022). A NUL character, which PostgreSQL's jsonb refuses, is stored as
U+FFFD in the strict copy only.

How each operator is compiled (every fragment is true or false, never NULL):

- a value is read by type: `num` (numbers and true/false as 1/0, like Python's bool),
  `text`, array length and elements, each NULL for other types, so `a < b` is
  `coalesce(num(a) < num(b), false) or coalesce(text(a) < text(b), false)` (text compared by
  code point: COLLATE "C" in PostgreSQL, SQLite's default BINARY);
- `==` against a literal list compares its length and each element; two fields holding
  arrays or objects compare as JSON (the one approximation: a `true` nested *inside* a list
  field then differs from a `1` of the other field, where Python says equal);
- `in` tests substrings, list elements (`EXISTS` over the array) or, for a list on the left,
  any of its elements; a parenthesised expression is a true/false value;
- parts without fields are evaluated by `_query` at compile time.

`status` and `duration` of a run stored as "running" are decided at query time in Python
(`Index._live`): callers evaluate such rows with the closure and the rest with this SQL.

Interface: ``compile_where_sql(where, dialect, columns=COLUMNS) -> (sql, args)`` with
`dialect` "sqlite" (named `:pN` parameters) or "postgresql" (`%(pN)s`), and
``sort_sql(sort, dialect) -> list[str] | None`` (None: sort in Python). ``strict_json(v)``.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Iterator, Mapping

from ._query import AGGREGATES, And, Compare, FieldRef, In, Literal, Node, Not, Operand, Or, Truth, Where, _predicate

__all__ = ["COLUMNS", "NAN_JSON", "SqlUnsupported", "compile_where_sql", "listing_clauses", "sort_sql",
           "strict_json"]

NAN_JSON = '{"labtrack:nan":true}'
_BIG = "1e1000"

#: Where each field lives: JSON columns (strict JSON text in SQLite, jsonb in PostgreSQL)
#: and plain columns with their type ("text", "real", "bool").
COLUMNS: Mapping[str, tuple[str, str]] = {
    "params": ("json", "params_j"), "metrics": ("json", "metrics_j"),
    "min": ("json", "mins_j"), "max": ("json", "maxs_j"), "mean": ("json", "means_j"),
    "tags": ("json", "tags_j"),
    "id": ("text", "id"), "experiment": ("text", "experiment"), "name": ("text", "name"),
    "comment": ("text", "comment"), "status": ("text", "status"), "started": ("text", "started"),
    "ended": ("text", "ended"), "commit": ("text", "git_commit"), "host": ("text", "host"),
    "user": ("text", "user_name"), "parent": ("text", "parent"), "group": ("text", "grp"),
    "job_type": ("text", "job_type"), "duration": ("real", "duration"), "dirty": ("bool", "dirty"),
}


class SqlUnsupported(Exception):
    """This expression (or sort) cannot be compiled; evaluate it in Python instead."""


# -- strict JSON


def _key(k: str) -> str:
    return json.dumps(k.replace("\x00", "\ufffd"), ensure_ascii=False).replace('\\"', "\\u0022")


def strict_json(v: Any) -> str:
    """`v` as strict JSON the SQL above reads (see the module docstring)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return NAN_JSON
        if math.isinf(v):
            return _BIG if v > 0 else "-" + _BIG
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v.replace("\x00", "\ufffd"), ensure_ascii=False)
    if isinstance(v, dict):
        return "{" + ",".join(_key(str(k)) + ":" + strict_json(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(strict_json(x) for x in v) + "]"
    return json.dumps(repr(v), ensure_ascii=False)


# -- values


class _C:
    """One compilation: the dialect and the named parameters collected."""

    def __init__(self, dialect: str, columns: Mapping[str, tuple[str, str]], prefix: str = "p") -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"dialect must be 'sqlite' or 'postgresql', got {dialect!r}")
        self.pg = dialect == "postgresql"
        self.columns = columns
        self.args: dict[str, Any] = {}
        self.prefix = prefix
        self.aliases = 0

    def param(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.args)}"
        self.args[name] = value
        return f"%({name})s" if self.pg else f":{name}"

    def num_param(self, v: Any) -> str | None:
        if isinstance(v, bool):
            return self.param(int(v))
        if isinstance(v, int):
            return self.param(v)
        if isinstance(v, float):
            if math.isnan(v):
                return None
            if self.pg:
                return self.param(Decimal(repr(v)) if math.isfinite(v) else Decimal(_BIG if v > 0 else "-" + _BIG))
            return self.param(v)
        return None

    def alias(self) -> str:
        self.aliases += 1
        return f"e{self.aliases}"

    def collate(self, sql: str) -> str:
        return f'{sql} COLLATE "C"' if self.pg else sql


class _Val:
    """A value as SQL fragments by type; None: statically NULL (that type never holds)."""

    c: _C

    def is_null(self) -> str:  # missing or null
        return "FALSE"

    def num(self) -> str | None:
        return None

    def text(self) -> str | None:
        return None

    def length(self) -> str | None:
        return None

    def elem(self, i: int) -> _Val:
        return _Lit(self.c, None, missing=True)

    def elements(self) -> tuple[str, _Val] | None:
        """(FROM clause, element value) to iterate the array, or None when never an array."""
        return None

    def container(self) -> str | None:  # JSON of arrays and objects (not NaN), for equality
        return None

    def is_nan(self) -> str:
        return "FALSE"

    def truthy(self) -> str:
        parts = []
        if (n := self.num()) is not None:
            parts.append(f"({n}) <> 0")
        if (t := self.text()) is not None:
            parts.append(f"({t}) <> ''")
        if (n := self.length()) is not None:
            parts.append(f"({n}) > 0")
        obj = self.nonempty_object()
        if obj is not None:
            parts.append(obj)
        return f"COALESCE({', '.join(parts)}, FALSE)" if parts else "FALSE"

    def nonempty_object(self) -> str | None:
        return None


class _Lit(_Val):
    def __init__(self, c: _C, value: Any, missing: bool = False) -> None:
        self.c, self.value, self.missing = c, value, missing

    def is_null(self) -> str:
        return "TRUE" if self.value is None else "FALSE"

    def num(self) -> str | None:
        return self.c.num_param(self.value)

    def text(self) -> str | None:
        return self.c.param(self.value) if isinstance(self.value, str) else None


class _Json(_Val):
    """A value inside a JSON column: jsonb expression (PostgreSQL) or (column, path) (SQLite)."""

    def __init__(self, c: _C, expr: str, path: str | None = None) -> None:
        self.c, self.expr, self.path = c, expr, path

    def _t(self) -> str:
        return f"jsonb_typeof({self.expr})" if self.c.pg else f"json_type({self.expr}, {self.path})"

    def _x(self) -> str:
        return f"json_extract({self.expr}, {self.path})"

    def is_null(self) -> str:
        if self.c.pg:
            return f"({self.expr} IS NULL OR jsonb_typeof({self.expr}) = 'null')"
        return f"COALESCE({self._t()} = 'null', TRUE)"

    def num(self) -> str:
        if self.c.pg:
            e = self.expr
            return (f"(CASE jsonb_typeof({e}) WHEN 'number' THEN ({e})::numeric WHEN 'boolean' "
                    f"THEN (CASE WHEN ({e})::boolean THEN 1 ELSE 0 END) END)")
        return (f"(CASE {self._t()} WHEN 'integer' THEN {self._x()} WHEN 'real' THEN {self._x()} "
                f"WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)")

    def text(self) -> str:
        if self.c.pg:
            return f"(CASE WHEN jsonb_typeof({self.expr}) = 'string' THEN ({self.expr} #>> '{{}}') END)"
        return f"(CASE WHEN {self._t()} = 'text' THEN {self._x()} END)"

    def length(self) -> str:
        if self.c.pg:
            return f"(CASE WHEN jsonb_typeof({self.expr}) = 'array' THEN jsonb_array_length({self.expr}) END)"
        return f"(CASE WHEN {self._t()} = 'array' THEN json_array_length({self.expr}, {self.path}) END)"

    def elem(self, i: int) -> _Val:
        if self.c.pg:
            return _Json(self.c, f"({self.expr} -> {int(i)})")
        return _Json(self.c, self.expr, f"({self.path} || '[{int(i)}]')")

    def elements(self) -> tuple[str, _Val]:
        a = self.c.alias()
        if self.c.pg:
            e = self.expr
            return (f"jsonb_array_elements(CASE WHEN jsonb_typeof({e}) = 'array' THEN {e} "
                    f"ELSE '[]'::jsonb END) AS {a}(v)", _Json(self.c, f"{a}.v"))
        return (f"json_each(CASE WHEN {self._t()} = 'array' THEN {self.expr} END, {self.path}) AS {a}",
                _Json(self.c, self.expr, f"{a}.fullkey"))

    def is_nan(self) -> str:
        if self.c.pg:
            return f"COALESCE({self.expr} = '{NAN_JSON}'::jsonb, FALSE)"
        return f"COALESCE({self._t()} = 'object' AND {self._x()} = '{NAN_JSON}', FALSE)"

    def container(self) -> str:
        if self.c.pg:
            e = self.expr
            return (f"(CASE WHEN jsonb_typeof({e}) = 'array' OR (jsonb_typeof({e}) = 'object' "
                    f"AND {e} <> '{NAN_JSON}'::jsonb) THEN {e} END)")
        return (f"(CASE WHEN {self._t()} = 'array' OR ({self._t()} = 'object' AND {self._x()} <> "
                f"'{NAN_JSON}') THEN {self._x()} END)")

    def nonempty_object(self) -> str:
        if self.c.pg:
            e = self.expr
            return f"(CASE WHEN jsonb_typeof({e}) = 'object' THEN {e} NOT IN ('{{}}'::jsonb, '{NAN_JSON}'::jsonb) END)"
        return (f"(CASE WHEN {self._t()} = 'object' THEN {self._x()} NOT IN ('{{}}', '{NAN_JSON}') END)")


class _Col(_Val):
    """A plain column: text, real or bool (SQLite: 0/1)."""

    def __init__(self, c: _C, name: str, kind: str) -> None:
        self.c, self.name, self.kind = c, name, kind

    def is_null(self) -> str:
        return f"({self.name} IS NULL)"

    def num(self) -> str | None:
        if self.kind == "real":
            return f"({self.name})" if not self.c.pg else f"({self.name})::numeric"
        if self.kind == "bool":
            return f"({self.name})::int" if self.c.pg else f"({self.name})"
        return None

    def text(self) -> str | None:
        return self.name if self.kind == "text" else None


class _Pred(_Val):
    """A parenthesised expression used as a value: true or false."""

    def __init__(self, c: _C, sql: str) -> None:
        self.c, self.sql = c, sql

    def num(self) -> str:
        return f"(CASE WHEN {self.sql} THEN 1 ELSE 0 END)"

    def truthy(self) -> str:
        return self.sql


# -- compiling


def _has_fields(node: Any) -> bool:
    if isinstance(node, FieldRef):
        return True
    if isinstance(node, Literal):
        return False
    return any(_has_fields(ch) for ch in _children(node))


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, (Or, And)):
        yield from node.parts
    elif isinstance(node, Not):
        yield node.inner
    elif isinstance(node, Compare):
        yield node.left
        yield node.right
    elif isinstance(node, In):
        yield node.item
        yield node.container
    elif isinstance(node, Truth):
        yield node.operand


def _pred(c: _C, node: Node) -> str:
    if not _has_fields(node):
        return "TRUE" if _predicate(node)({}) else "FALSE"
    if isinstance(node, Or):
        return "(" + " OR ".join(_pred(c, p) for p in node.parts) + ")"
    if isinstance(node, And):
        return "(" + " AND ".join(_pred(c, p) for p in node.parts) + ")"
    if isinstance(node, Not):
        return f"(NOT {_pred(c, node.inner)})"
    if isinstance(node, Compare):
        return _compare(c, node.op, node.left, node.right)
    if isinstance(node, In):
        sql = _contains(c, node.item, node.container)
        return f"(NOT {sql})" if node.negate else sql
    if isinstance(node, Truth):
        return _value(c, node.operand).truthy()
    raise SqlUnsupported(f"cannot compile {node!r}")


def _value(c: _C, op: Operand) -> _Val:
    if isinstance(op, Literal):
        return _Lit(c, op.value)
    if isinstance(op, FieldRef):
        if op.kind == "top":
            kind, col = c.columns[op.key]
            if kind == "json":
                return _Json(c, col) if c.pg else _Json(c, col, "'$'")
            return _Col(c, col, kind)
        if op.kind == "params":
            col = c.columns["params"][1]
        elif op.agg == "last":
            col = c.columns["metrics"][1]
        else:
            col = c.columns[op.agg][1]
        if c.pg:
            return _Json(c, f"({col} -> {c.param(op.key)})")
        return _Json(c, col, c.param('$."' + _key(op.key)[1:-1] + '"'))
    return _Pred(c, _pred(c, op))


def _eq(c: _C, a: _Val, b: _Val) -> str:
    if isinstance(a, _Lit) and not isinstance(b, _Lit):
        a, b = b, a
    if isinstance(b, _Lit):
        v = b.value
        if b.missing:
            return "FALSE"
        if v is None:
            return a.is_null()
        if isinstance(v, list):
            n = a.length()
            if n is None:
                return "FALSE"
            parts = [f"COALESCE({n} = {len(v)}, FALSE)"] + [_eq(c, a.elem(i), _Lit(c, x)) for i, x in enumerate(v)]
            return "(" + " AND ".join(parts) + ")"
        if isinstance(v, str):
            t = a.text()
            return f"COALESCE({t} = {c.param(v)}, FALSE)" if t is not None else "FALSE"
        p = c.num_param(v)
        na = a.num()
        return f"COALESCE({na} = {p}, FALSE)" if p is not None and na is not None else "FALSE"
    parts = [f"({a.is_null()} AND {b.is_null()})"]
    if (na := a.num()) is not None and (nb := b.num()) is not None:
        parts.append(f"COALESCE({na} = {nb}, FALSE)")
    if (ta := a.text()) is not None and (tb := b.text()) is not None:
        parts.append(f"COALESCE({ta} = {tb}, FALSE)")
    if (ja := a.container()) is not None and (jb := b.container()) is not None:
        parts.append(f"COALESCE({ja} = {jb}, FALSE)")
    return "(" + " OR ".join(parts) + ")"


def _compare(c: _C, op: str, left: Operand, right: Operand) -> str:
    a, b = _value(c, left), _value(c, right)
    if op == "==":
        return _eq(c, a, b)
    if op == "!=":
        return f"(NOT {_eq(c, a, b)})"
    parts = []
    if (na := a.num()) is not None and (nb := b.num()) is not None:
        parts.append(f"COALESCE({na} {op} {nb}, FALSE)")
    if (ta := a.text()) is not None and (tb := b.text()) is not None:
        parts.append(f"COALESCE({c.collate(ta)} {op} {c.collate(tb)}, FALSE)")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _exists(c: _C, arr: _Val, cond: Any) -> str:
    got = arr.elements()
    if got is None:
        return "FALSE"
    from_sql, elem = got
    return f"EXISTS (SELECT 1 FROM {from_sql} WHERE {cond(elem)})"


def _contains(c: _C, item_op: Operand, container_op: Operand) -> str:
    item, cont = _value(c, item_op), _value(c, container_op)
    if isinstance(cont, _Lit):
        v = cont.value
        if isinstance(v, str):
            t = item.text()
            if t is None:
                return "FALSE"
            pos = f"strpos({c.param(v)}, {t})" if c.pg else f"instr({c.param(v)}, {t})"
            return f"COALESCE({pos} > 0, FALSE)"
        if not isinstance(v, list):
            return "FALSE"
        if not v:
            return "FALSE"

        def any_listed(x: _Val) -> str:
            return "(" + " OR ".join(_eq(c, x, _Lit(c, e)) for e in v) + ")"

        n = item.length()
        if n is None:
            return any_listed(item)
        return (f"(({n} IS NOT NULL AND {_exists(c, item, any_listed)}) OR "
                f"({n} IS NULL AND {any_listed(item)}))")
    parts = []
    if (tc := cont.text()) is not None and (ti := item.text()) is not None:
        pos = f"strpos({tc}, {ti})" if c.pg else f"instr({tc}, {ti})"
        parts.append(f"COALESCE({pos} > 0, FALSE)")
    if cont.length() is not None:
        if isinstance(item, _Lit) and isinstance(item.value, list):
            values = item.value
            if values:
                parts.append("(" + " OR ".join(_exists(c, cont, lambda e, x=x: _eq(c, e, _Lit(c, x)))
                                               for x in values) + ")")
        elif isinstance(item, _Lit):
            parts.append(_exists(c, cont, lambda e: _eq(c, e, item)))
        else:
            n = item.length()
            scalar = _exists(c, cont, lambda e: _eq(c, e, item))
            if n is None:
                parts.append(scalar)
            else:
                each = _exists(c, item, lambda x: _exists(c, cont, lambda e: _eq(c, e, x)))
                parts.append(f"(({n} IS NOT NULL AND {each}) OR ({n} IS NULL AND {scalar}))")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def compile_where_sql(where: Where, dialect: str,
                      columns: Mapping[str, tuple[str, str]] = COLUMNS) -> tuple[str, dict[str, Any]]:
    """`where` as an SQL predicate (true or false, never NULL) and its named parameters
    (`p0`, `p1`, ...; sort_sql's are `s0`, ...).

    Raises:
        SqlUnsupported: `where` has no parsed tree (built by hand).
    """
    if where.tree is None:
        raise SqlUnsupported(f"the where expression {where.text!r} has no parsed tree")
    c = _C(dialect, columns)
    return _pred(c, where.tree), c.args


def sort_sql(sort: str | None, dialect: str, columns: Mapping[str, tuple[str, str]] = COLUMNS,
             prefix: str = "s") -> tuple[list[str], dict[str, Any]] | None:
    """ORDER BY terms sorting like `Index.select` (missing values last either way, numbers
    before texts), before the tie-break `started DESC, id DESC`; None when the sort must be
    done in Python (`status`, `duration`: derived for running runs; `tags`; nothing given).

    Raises:
        SqlUnsupported: never for an accepted sort; `Index` checks the name first.
    """
    if not sort:
        return None
    desc = " DESC" if sort.startswith("-") else ""
    name = sort.lstrip("+-")
    c = _C(dialect, columns, prefix)
    if name == "started":
        return (["started DESC", "id DESC"] if desc else ["started ASC", "id ASC"]), {}
    if name in ("status", "duration", "tags"):
        return None
    if name.startswith("params."):
        v = _value(c, FieldRef("params", name[len("params."):]))
    elif name.startswith("metrics."):
        metric, _, agg = name[len("metrics."):].rpartition(":")
        if not metric or agg not in AGGREGATES:
            metric, agg = name[len("metrics."):], "last"
        v = _value(c, FieldRef("metrics", metric, agg))
    elif name in columns and columns[name][0] in ("text", "bool", "real"):
        v = _value(c, FieldRef("top", name))
    else:
        return None
    missing = f"({v.is_null()} OR {v.is_nan()})"
    num, text, other = v.num(), v.text(), v.container()
    cls = ["CASE"]
    if num is not None:
        cls.append(f"WHEN {num} IS NOT NULL THEN 0")
    if text is not None:
        cls.append(f"WHEN {text} IS NOT NULL THEN 1")
    cls.append("ELSE 2 END")
    terms = [f"(CASE WHEN {missing} THEN 1 ELSE 0 END)", " ".join(cls) + desc]
    if num is not None:
        terms.append(num + desc)
    if text is not None:
        terms.append(c.collate(text) + desc)
    if other is not None:
        terms.append(f"({other})::text{desc}" if c.pg else f"{other}{desc}")
    return terms, c.args


def listing_clauses(dialect: str, experiment: str | None, status: str | None, q: str | None,
                    statuses: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """The WHERE terms and named arguments both indexes page with (`_index_sql.page`,
    `PgIndex._fetch`) for the runs not stored as running (those are decided in Python):
    an experiment, a stored status, and each word of a free-text search (a status word
    finds that status too), in `dialect`'s parameter style."""
    pg = dialect == "postgresql"

    def param(name: str) -> str:
        return f"%({name})s" if pg else f":{name}"

    find = "strpos" if pg else "instr"
    args: dict[str, Any] = {}
    clauses = ["status <> 'running'"]
    if experiment is not None:
        clauses.append(f"experiment = {param('experiment')}")
        args["experiment"] = experiment
    if status is not None:
        clauses.append(f"status = {param('status')}")
        args["status"] = status
    for i, word in enumerate((q or "").lower().split()):
        args[f"w{i}"] = word
        found = f"{find}(search, {param(f'w{i}')}) > 0"
        if word in statuses and word not in ("running", "crashed"):
            found = f"({found} OR status = {param(f'w{i}')})"
        clauses.append(found)
    return clauses, args
