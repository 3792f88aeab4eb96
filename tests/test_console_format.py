"""The console's pure formatting rules (no terminal, no run)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labtrack._console._format import (
    flatten,
    format_cell,
    format_clock,
    format_ms,
    format_rate,
    format_value,
    is_number,
    param_text,
    progress_text,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.1235"),
        (1.0, "1.0000"),
        (-2.5, "-2.5000"),
        (12.3456, "12.346"),
        (123.456, "123.46"),
        (12345.678, "12,345.7"),
        (1234567.0, "1.235e+06"),
        (0.0001234, "1.234e-04"),
        (0.0, "0.0000"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
    ],
)
def test_format_value_keeps_five_significant_digits(value: float, text: str) -> None:
    assert format_value(value).strip() == text


def test_format_value_width_does_not_jitter() -> None:
    # values that change a little keep the same width, so the status line does not jump
    widths = {len(format_value(v)) for v in (0.1, 0.12, 0.123456, 1.5, 9.99, 10.5, 99.9, 123.4)}
    assert widths == {8}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1.2345, "1,234ms"), (0.00123, "1.23ms"), (0.0456, "45.6ms"), (59.9, "59,900ms"),
     (83.4, "1:23.4"), (3725.0, "1:02:05.0")],
)
def test_format_ms(seconds: float, text: str) -> None:
    assert format_ms(seconds) == text


def test_format_clock() -> None:
    assert format_clock(0) == "0:00"
    assert format_clock(83) == "1:23"
    assert format_clock(3725) == "1:02:05"
    assert format_clock(2 * 86400 + 61) == "2d 0:01:01"
    assert format_clock(math.inf) == "?:??"
    assert format_clock(-1) == "?:??"


def test_format_rate_switches_to_seconds_per_iteration_when_slow() -> None:
    assert format_rate(50, 4.0) == "12.5 it/s"
    assert format_rate(5000, 2.0) == "2,500 it/s"
    assert format_rate(2, 9.0) == "4.50 s/it"
    assert format_rate(0, 1.0) == "? it/s"


def test_progress_text_eta() -> None:
    # a quarter done in 10 s: 30 s remain
    assert progress_text(25, 100, 10.0) == "25/100 [0:10<0:30, 2.5 it/s]"
    assert progress_text(0, 100, 0.0) == "0/100 [0:00<?:??, ? it/s]"
    assert progress_text(1500, None, 60.0) == "1,500 [1:00, 25.0 it/s]"
    # more items than announced: no negative remaining time
    assert progress_text(120, 100, 12.0) == "120/100 [0:12<0:00, 10.0 it/s]"


def test_format_cell_none_numbers_and_numpy() -> None:
    assert format_cell(None) == "-"
    assert format_cell(1234) == "1,234"
    assert format_cell(0.5) == "0.5000"
    assert format_cell(True) == "True"
    assert format_cell("cat") == "cat"
    assert format_cell(np.float32(0.25)) == "0.2500"
    assert format_cell(np.int64(7)) == "7"
    assert format_cell(np.array([1, 2])) == "[1 2]"


def test_is_number() -> None:
    assert is_number(1) and is_number(1.5) and is_number(np.float64(2)) and is_number(np.array(3.0))
    assert not is_number(True) and not is_number("1") and not is_number(None)
    assert not is_number(np.array([1.0, 2.0]))


def test_flatten_nested_params() -> None:
    assert flatten({"lr": 0.1, "opt": {"name": "adam", "betas": {"b1": 0.9}}, "empty": {}}) == {
        "lr": 0.1, "opt.name": "adam", "opt.betas.b1": 0.9, "empty": {}}


def test_param_text() -> None:
    assert param_text("adam") == "adam"
    assert param_text(0.1) == "0.1"
    assert param_text(None) == "-"
    assert param_text([0.9, 0.99]) == "[0.9, 0.99]"
    assert param_text(np.float64(1e-4)) == "0.0001"
