"""The `where` language: filter runs by params, metrics, tags, status and times.

Parsed by a small recursive-descent parser into a tree (`Where.tree`), then into Python
closures here and into SQL by `_where_sql.py`; user text is never eval'ed.

Grammar (keywords are case-insensitive)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand [ ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | ["not"] "in" operand ]
    operand    := field | literal | list | "(" expr ")"
    list       := "[" [literal ("," literal)*] "]"
    literal    := number | "-" number | 'text' | "text" | true | false | null
    field      := params.<key> | metrics.<name>[:min|max|last|mean]
                | tags | status | experiment | name | comment | id | host | user
                | commit | dirty | started | ended | duration | parent | group | job_type

A key or name runs until a space, an operator, a bracket or a comma, so
`metrics.train/loss<0.1` works; anything else can be quoted: `metrics."val acc":max`.

Semantics: a missing value equals only `null`; `<`, `>` and friends are false when either
side is missing or the types cannot be ordered (a number against a text); `x in [..]`
tests membership, `"cnn" in tags` tests a list, `"fix" in comment` tests a substring, and
`tags in ["a", "b"]` is true when any tag is listed. A bare operand is true when its value
is (`dirty`, `params.use_amp`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from .errors import QueryError

__all__ = ["AGGREGATES", "FIELDS", "Where", "compile_where", "metric_stat"]

#: Fields a where expression may name directly (besides params.<key> and metrics.<name>).
FIELDS = (
    "id", "experiment", "name", "comment", "tags", "status", "started", "ended",
    "duration", "commit", "dirty", "host", "user", "parent", "group", "job_type",
)
#: Statistics of a metric that `metrics.<name>:<agg>` may name.
AGGREGATES = ("last", "min", "max", "mean")

_ALLOWED = (
    "params.<key>, metrics.<name>[:min|max|last|mean], " + ", ".join(FIELDS)
)

# A field key runs until one of these (or whitespace).
_KEY_END = set(" \t\r\n=!<>()[],:'\"")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("==", "!=", "<=", ">=", "<", ">", "=")

Row = Mapping[str, Any]
Getter = Callable[[Row], Any]
Pred = Callable[[Row], bool]


@dataclass(frozen=True)
class FieldRef:
    """One field a where expression reads: ("params", key), ("metrics", name, agg) or (name,)."""

    kind: str  # "params", "metrics" or "top"
    key: str
    agg: str = "last"

    def __str__(self) -> str:
        if self.kind == "top":
            return self.key
        if self.kind == "metrics" and self.agg != "last":
            return f"metrics.{self.key}:{self.agg}"
        return f"{self.kind}.{self.key}"


@dataclass
class Where:
    """A compiled where expression.

    Attributes:
        text: the expression as given.
        fields: every field it reads (to check names and to know what to load).
        tree: the parsed expression (`Or`, `And`, `Not`, `Compare`, `In`, `Truth` nodes over
            `FieldRef` and `Literal` operands), which `_where_sql` compiles to SQL.
    """

    text: str
    predicate: Pred
    fields: list[FieldRef] = field(default_factory=list)
    tree: Node | None = None

    def __call__(self, row: Row) -> bool:
        """True when `row` (a run row with "params", "metrics" and optionally "stats") matches."""
        return self.predicate(row)

    @property
    def needs_stats(self) -> bool:
        """True when a metric's min, max or mean is read (not only its last value)."""
        return any(f.kind == "metrics" and f.agg != "last" for f in self.fields)


@dataclass(frozen=True)
class Literal:
    """A number, text, true/false, null, nan/inf, or a list of them."""

    value: Any


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class Compare:
    """`left op right`, op one of == != < <= > >= ("=" is read as "==")."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class In:
    """`item in container` (`not in` when negate)."""

    item: Operand
    container: Operand
    negate: bool = False


@dataclass(frozen=True)
class Truth:
    """A bare operand: true when its value is."""

    operand: Operand


#: A node of the parsed tree: what `_where_sql` compiles to SQL and `_predicate` to Python.
Node = Union[Or, And, Not, Compare, In, Truth]
#: A comparison's side: a field, a literal, or a parenthesised expression (true or false).
Operand = Union[FieldRef, Literal, Or, And, Not, Compare, In, Truth]


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num", "str", "word", "field", "op", "punct", "end"
    value: Any
    pos: int


def _error(text: str, pos: int, message: str) -> QueryError:
    return QueryError(
        f"cannot parse where expression {text!r} at position {pos}: {message}; "
        f"fields are {_ALLOWED}; operators are == != < <= > >= in, and, or, not, ( )"
    )


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text):
            out.append(text[j + 1])
            j += 2
            continue
        if c == quote:
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise _error(text, i, f"the text starting with {quote} is never closed")


def _read_key(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] in "'\"":
        return _read_quoted(text, i)
    j = i
    while j < len(text) and text[j] not in _KEY_END:
        j += 1
    return text[i:j], j


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "'\"":
            s, j = _read_quoted(text, i)
            toks.append(_Tok("str", s, i))
            i = j
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            toks.append(_Tok("op", "==" if op == "=" else op, i))
            i += len(op)
            continue
        if c in "()[],-":
            toks.append(_Tok("punct", c, i))
            i += 1
            continue
        m = _NUMBER.match(text, i)
        if m:
            s = m.group()
            toks.append(_Tok("num", float(s) if any(ch in s for ch in ".eE") else int(s), i))
            i = m.end()
            continue
        m = _WORD.match(text, i)
        if m:
            word = m.group()
            lower = word.lower()
            if lower in ("params", "metrics") and m.end() < n and text[m.end()] == ".":
                key, j = _read_key(text, m.end() + 1)
                if not key:
                    raise _error(text, m.end() + 1, f"expected a {lower[:-1]} name after '{word}.'")
                agg = "last"
                if lower == "metrics" and j < n and text[j] == ":":
                    a = _WORD.match(text, j + 1)
                    if not a or a.group().lower() not in AGGREGATES:
                        raise _error(text, j + 1, "after ':' expected one of " + ", ".join(AGGREGATES))
                    agg = a.group().lower()
                    j = a.end()
                toks.append(_Tok("field", FieldRef(lower, key, agg), i))
                i = j
                continue
            if m.end() < n and text[m.end()] == ".":
                key, _j = _read_key(text, m.end() + 1)
                hint = {"param": "params", "config": "params", "metric": "metrics",
                         "summary": "metrics", "scalars": "metrics"}.get(lower)
                raise _error(text, i, f"unknown field '{word}.{key}'"
                             + (f"; did you mean '{hint}.{key}'?" if hint else ""))
            toks.append(_Tok("word", word, i))
            i = m.end()
            continue
        raise _error(text, i, f"unexpected character {c!r}")
    toks.append(_Tok("end", None, n))
    return toks


_KEYWORDS = {"and", "or", "not", "in"}
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "none": None}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.fields: list[FieldRef] = []

    # -- token helpers
    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_word(self, word: str, offset: int = 0) -> bool:
        t = self.toks[min(self.i + offset, len(self.toks) - 1)]
        return t.kind == "word" and str(t.value).lower() == word

    def fail(self, tok: _Tok, message: str) -> QueryError:
        return _error(self.text, tok.pos, message)

    def describe(self, tok: _Tok) -> str:
        if tok.kind == "end":
            return "the end of the expression"
        if tok.kind == "field":
            return f"field {tok.value}"
        return repr(tok.value)

    # -- grammar: each rule returns a node of the tree (see `Node`)
    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail(self.peek(), "the expression is empty")
        node = self.parse_or()
        t = self.peek()
        if t.kind != "end":
            raise self.fail(t, f"expected 'and', 'or' or the end, found {self.describe(t)}")
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self.is_word("or"):
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self) -> Node:
        parts = [self.parse_not()]
        while self.is_word("and"):
            self.take()
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_not(self) -> Node:
        if self.is_word("not"):
            self.take()
            return Not(self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_operand()
        t = self.peek()
        if t.kind == "op":
            self.take()
            return Compare(str(t.value), left, self.parse_operand())
        negate = False
        if self.is_word("not") and self.is_word("in", 1):
            self.take()
            negate = True
        if self.is_word("in"):
            self.take()
            return In(left, self.parse_operand(), negate)
        return Truth(left)

    def parse_operand(self) -> Operand:
        t = self.take()
        if t.kind == "field":
            ref: FieldRef = t.value
            self.fields.append(ref)
            return ref
        if t.kind in ("num", "str"):
            return Literal(t.value)
        if t.kind == "punct" and t.value == "-":
            n = self.take()
            if n.kind != "num":
                raise self.fail(n, f"expected a number after '-', found {self.describe(n)}")
            return Literal(-n.value)
        if t.kind == "punct" and t.value == "[":
            return self.parse_list(t)
        if t.kind == "punct" and t.value == "(":
            inner = self.parse_or()
            close = self.take()
            if close.kind != "punct" or close.value != ")":
                raise self.fail(close, f"expected ')' to close the '(' at position {t.pos}, "
                                       f"found {self.describe(close)}")
            return inner  # a parenthesised expression is a true/false value
        if t.kind == "word":
            lower = str(t.value).lower()
            if lower in _CONSTANTS:
                return Literal(_CONSTANTS[lower])
            if lower in ("nan", "inf", "infinity"):
                return Literal(math.nan if lower == "nan" else math.inf)
            if lower in _KEYWORDS:
                raise self.fail(t, f"expected a field or a value before {t.value!r}")
            if t.value in FIELDS:
                ref = FieldRef("top", str(t.value))
                self.fields.append(ref)
                return ref
            if lower in ("param", "metric", "config", "summary"):
                hint = "params" if lower in ("param", "config") else "metrics"
                raise self.fail(t, f"unknown field {t.value!r}; did you mean '{hint}.<name>'?")
            raise self.fail(t, f"unknown field {t.value!r} (quote text values: '{t.value}')")
        raise self.fail(t, f"expected a field or a value, found {self.describe(t)}")

    def parse_list(self, open_tok: _Tok) -> Literal:
        items: list[Any] = []
        if self.peek().kind == "punct" and self.peek().value == "]":
            self.take()
            return Literal(items)
        while True:
            t = self.take()
            if t.kind in ("num", "str"):
                items.append(t.value)
            elif t.kind == "punct" and t.value == "-" and self.peek().kind == "num":
                items.append(-self.take().value)
            elif t.kind == "word" and str(t.value).lower() in _CONSTANTS:
                items.append(_CONSTANTS[str(t.value).lower()])
            else:
                raise self.fail(t, f"a list holds numbers, texts, true, false or null; "
                                   f"found {self.describe(t)}")
            sep = self.take()
            if sep.kind == "punct" and sep.value == "]":
                return Literal(items)
            if not (sep.kind == "punct" and sep.value == ","):
                raise self.fail(sep, f"expected ',' or ']' in the list opened at position "
                                     f"{open_tok.pos}, found {self.describe(sep)}")


def _predicate(node: Node) -> Pred:
    """The Python closure of a tree node (the semantics of the module docstring)."""
    if isinstance(node, Or):
        parts = [_predicate(p) for p in node.parts]
        return lambda row: any(p(row) for p in parts)
    if isinstance(node, And):
        parts = [_predicate(p) for p in node.parts]
        return lambda row: all(p(row) for p in parts)
    if isinstance(node, Not):
        inner = _predicate(node.inner)
        return lambda row: not inner(row)
    if isinstance(node, Compare):
        return _compare(node.op, _getter(node.left), _getter(node.right))
    if isinstance(node, In):
        item, container = _getter(node.item), _getter(node.container)
        if node.negate:
            return lambda row: not _contains(item(row), container(row))
        return lambda row: _contains(item(row), container(row))
    get = _getter(node.operand)
    return lambda row: _truthy(get(row))


def _getter(operand: Operand) -> Getter:
    if isinstance(operand, FieldRef):
        return _field_getter(operand)
    if isinstance(operand, Literal):
        value = operand.value
        return lambda row: value
    return _predicate(operand)


def _field_getter(ref: FieldRef) -> Getter:
    key = ref.key
    if ref.kind == "params":
        return lambda row: (row.get("params") or {}).get(key)
    if ref.kind == "metrics":
        if ref.agg == "last":
            return lambda row: (row.get("metrics") or {}).get(key)
        agg = ref.agg
        return lambda row: metric_stat(row, key, agg)
    return lambda row: row.get(key)


def metric_stat(row: Row, name: str, agg: str) -> Any:
    """`row`'s `agg` (min, max, mean) of metric `name`: from "stats_<agg>" (`{name: value}`,
    which the index offers so a filter decodes only that) or else from "stats"."""
    by_agg = row.get("stats_" + agg)
    if isinstance(by_agg, dict):
        return by_agg.get(name)
    s = (row.get("stats") or {}).get(name)
    return s.get(agg) if isinstance(s, dict) else None


def _truthy(v: Any) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return bool(v)


def _orderable(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _compare(op: str, left: Getter, right: Getter) -> Pred:
    if op == "==":
        return lambda row: bool(left(row) == right(row))
    if op == "!=":
        return lambda row: bool(left(row) != right(row))
    import operator

    fn: Callable[[Any, Any], bool] = {
        "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    }[op]

    def ordered(row: Row) -> bool:
        a, b = left(row), right(row)
        return _orderable(a, b) and bool(fn(a, b))

    return ordered


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, (list, tuple)):
        if isinstance(item, (list, tuple)):
            return any(x in container for x in item)
        return item in container
    return False


def compile_where(text: str) -> Where:
    """Parse a where expression into a predicate over run rows.

    Args:
        text: e.g. `params.lr < 0.01 and metrics.train/loss:min < 0.2 and "cnn" in tags`.

    Returns:
        A :class:`Where`; call it with a run row (the shape of docs/api.md, plus an optional
        "stats" mapping `{metric: {"min", "max", "mean", "last"}}`).

    Raises:
        QueryError: the text cannot be parsed; the message names the position and what is
            allowed there.

    Example:
        >>> w = compile_where('params.lr < 0.1 and status == "finished"')
        >>> w({"params": {"lr": 0.01}, "status": "finished"})
        True
    """
    if not isinstance(text, str):
        raise QueryError(f"a where expression must be text, got {type(text).__name__} {text!r}")
    parser = _Parser(text)
    tree = parser.parse()
    return Where(text=text, predicate=_predicate(tree), fields=parser.fields, tree=tree)
