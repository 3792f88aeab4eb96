"""The where language: parsing, semantics on run rows, and errors that point at the problem."""

from __future__ import annotations

import math
from typing import Any

import pytest

from labtrack._query import compile_where
from labtrack.errors import QueryError

ROW: dict[str, Any] = {
    "id": "20261121-141503-k3f9qz",
    "experiment": "mnist",
    "name": "baseline",
    "comment": "stride fix",
    "tags": ["cnn", "small"],
    "status": "finished",
    "started": "2026-11-21T14:15:03.120455+00:00",
    "ended": "2026-11-21T14:20:11.007001+00:00",
    "duration": 307.9,
    "commit": "9f3c",
    "dirty": True,
    "host": "gpu-3",
    "params": {"lr": 0.01, "batch": 64, "opt.name": "adam", "use_amp": False, "layers": [64, 64],
               "val acc/weight": 2},
    "metrics": {"train/loss": 0.05, "acc": 0.93, "val acc/top-1": 0.8, "bad": math.nan},
    "stats": {"train/loss": {"min": 0.01, "max": 2.3, "mean": 0.4, "last": 0.05},
              "acc": {"min": 0.1, "max": 0.95, "mean": 0.7, "last": 0.93}},
}


def match(expr: str, row: dict[str, Any] = ROW) -> bool:
    return compile_where(expr)(row)


@pytest.mark.parametrize("expr", [
    "params.lr < 0.1",
    "params.lr <= 0.01",
    "params.lr == 0.01",
    "params.lr = 0.01",
    "params.batch >= 64 and params.batch != 32",
    "params.lr>0.001",
    "metrics.train/loss < 0.1",
    "metrics.train/loss<0.1",
    "metrics.train/loss:min <= 0.01",
    "metrics.acc:max > 0.94 and metrics.acc:mean == 0.7",
    "metrics.acc:last == metrics.acc",
    'metrics."val acc/top-1" > 0.5',
    'params."val acc/weight" == 2',
    '"cnn" in tags',
    '"gpu" not in tags',
    'not "gpu" in tags',
    'tags in ["x", "small"]',
    'params.opt.name in ["adam", "sgd"]',
    'params.batch in [32, 64]',
    'status == "finished"',
    "status == 'finished'",
    'experiment == "mnist" and name == "baseline"',
    'started >= "2026-11-21" and ended < "2026-11-22"',
    "duration > 300",
    "dirty",
    "not params.use_amp",
    '"fix" in comment',
    'id == "20261121-141503-k3f9qz"',
    "params.missing == null",
    "params.lr > -1",
    "(params.lr > 1 or params.batch == 64) and not (status == 'failed')",
    "params.lr < 1 AND params.batch == 64 OR false",
    "64 in params.layers",
    "params.lr < 1e-1",
    "params.lr < .1",
])
def test_expressions_that_match(expr: str) -> None:
    assert match(expr) is True


@pytest.mark.parametrize("expr", [
    "params.lr > 0.1",
    "params.lr != 0.01",
    "metrics.train/loss:min > 0.01",
    '"gpu" in tags',
    'status == "running"',
    "params.missing > 1",  # missing values are never ordered
    "params.missing < 1",
    'params.opt.name < 1',  # text against number: no order
    "metrics.bad > 0 or metrics.bad <= 0",  # NaN compares false both ways
    "metrics.bad == metrics.bad",
    "metrics.nope:max > 0",
    "not dirty",
    "params.lr > 1 and params.batch == 64",
    "params.use_amp",
])
def test_expressions_that_do_not_match(expr: str) -> None:
    assert match(expr) is False


def test_precedence_and_binds_tighter_than_or() -> None:
    # false and false or true -> (false and false) or true -> true
    assert match("params.lr > 1 and params.lr > 2 or params.batch == 64")
    # false and (false or true) -> false
    assert not match("params.lr > 1 and (params.lr > 2 or params.batch == 64)")


def test_missing_params_and_stats_sections() -> None:
    bare = {"id": "x", "status": "running"}
    assert not compile_where("params.lr < 1")(bare)
    assert not compile_where("metrics.acc:max > 0")(bare)
    assert compile_where("params.lr == null")(bare)


def test_fields_report_what_is_read() -> None:
    w = compile_where('params.lr < 1 and metrics.acc:max > 0 and "x" in tags')
    assert [str(f) for f in w.fields] == ["params.lr", "metrics.acc:max", "tags"]
    assert w.needs_stats
    assert not compile_where("metrics.acc > 0").needs_stats


def test_text_is_never_evaluated_as_python(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(QueryError):
        compile_where(f"__import__('os').mkdir('{marker}')")
    with pytest.raises(QueryError):
        compile_where("params.lr < (lambda: 1)()")
    assert not marker.exists()


@pytest.mark.parametrize("expr, position, fragment", [
    ("", 0, "empty"),
    ("params.lr <", 11, "expected a field or a value"),
    ("lr < 1", 0, "unknown field 'lr'"),
    ("param.lr < 1", 0, "did you mean 'params.lr'"),
    ("config.lr < 1", 0, "did you mean 'params.lr'"),
    ("metric.acc < 1", 0, "did you mean 'metrics.acc'"),
    ("param < 1", 0, "did you mean 'params.<name>'"),
    ("params.lr < 1 and", 17, "expected a field or a value"),
    ("(params.lr < 1", 14, "expected ')' to close the '(' at position 0"),
    ("metrics.x:median > 1", 10, "after ':' expected one of last, min, max, mean"),
    ("status == finished", 10, "quote text values"),
    ("params.lr @ 1", 10, "unexpected character '@'"),
    ("params.lr in [1, x]", 17, "a list holds numbers, texts"),
    ('"abc', 0, "never closed"),
    ("params. < 1", 7, "expected a param name"),
    ("params.lr < 1 params.lr", 14, "expected 'and', 'or' or the end"),
    ("params.lr not 1", 10, "expected 'and', 'or' or the end, found 'not'"),
    ("params.lr < - x", 14, "expected a number after '-'"),
    ("and params.lr", 0, "expected a field or a value before 'and'"),
])
def test_errors_name_the_position_and_what_is_allowed(expr: str, position: int, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_where(expr)
    message = str(info.value)
    assert f"at position {position}" in message
    assert fragment in message
    assert repr(expr) in message
    assert "params.<key>" in message  # the allowed fields are always listed


def test_not_text_is_refused() -> None:
    with pytest.raises(QueryError, match="must be text"):
        compile_where(42)  # type: ignore[arg-type]


def test_query_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        compile_where("???")
