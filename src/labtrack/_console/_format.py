"""Pure formatting for the console: numbers, durations, clocks, rates, table cells.

Nothing here touches a terminal or imports rich, so every rule is unit-tested on plain
strings. The widths are chosen so a status line does not jitter from one redraw to the next.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

VALUE_WIDTH = 8


def format_value(value: float) -> str:
    """Format an indicator value to about five significant digits, right-aligned in 8 cells.

    The number of decimals depends only on the magnitude, so a value that changes a little
    keeps its width and the line does not jump.

    Example:
        >>> format_value(0.123456)
        '  0.1235'
        >>> format_value(12345.678)
        '12,345.7'
    """
    v = float(value)
    if math.isnan(v):
        text = "nan"
    elif math.isinf(v):
        text = "inf" if v > 0 else "-inf"
    elif v == 0:
        text = "0.0000"
    else:
        a = abs(v)
        if a >= 1e6 or a < 1e-3:
            text = f"{v:.3e}"
        elif a >= 1000:
            text = f"{v:,.1f}"
        elif a >= 100:
            text = f"{v:.2f}"
        elif a >= 10:
            text = f"{v:.3f}"
        else:
            text = f"{v:.4f}"
    return text.rjust(VALUE_WIDTH)


def format_ms(seconds: float) -> str:
    """A section's duration: milliseconds below a minute, minutes and seconds above.

    Example:
        >>> format_ms(1.2345)
        '1,234ms'
        >>> format_ms(0.00123)
        '1.23ms'
    """
    ms = seconds * 1000.0
    if ms < 0:
        ms = 0.0
    if ms < 10:
        return f"{ms:.2f}ms"
    if ms < 100:
        return f"{ms:.1f}ms"
    if ms < 60_000:
        return f"{ms:,.0f}ms"
    return format_clock(seconds, fraction=True)


def format_clock(seconds: float, fraction: bool = False) -> str:
    """Elapsed or remaining time as `M:SS`, `H:MM:SS`, or `Nd H:MM:SS`.

    Args:
        seconds: a duration; negative or non-finite values show as `?:??`.
        fraction: keep tenths of a second (`1:05.3`).

    Example:
        >>> format_clock(83)
        '1:23'
        >>> format_clock(3725)
        '1:02:05'
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?:??"
    if fraction:
        whole = int(seconds)
        tenths = int((seconds - whole) * 10)
    else:
        whole = int(round(seconds))
        tenths = 0
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    tail = f".{tenths}" if fraction else ""
    if days:
        return f"{days}d {hours}:{minutes:02d}:{secs:02d}{tail}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}{tail}"
    return f"{minutes}:{secs:02d}{tail}"


def format_rate(count: int, seconds: float) -> str:
    """Iterations per second, or seconds per iteration when slower than one per second.

    Example:
        >>> format_rate(50, 4.0)
        '12.5 it/s'
        >>> format_rate(2, 9.0)
        '4.50 s/it'
    """
    if count <= 0 or seconds <= 0:
        return "? it/s"
    rate = count / seconds
    if rate >= 1:
        if rate >= 100:
            return f"{rate:,.0f} it/s"
        return f"{rate:.1f} it/s"
    return f"{seconds / count:.2f} s/it"


def format_count(n: int) -> str:
    """An integer with thousands separators: `1,234`."""
    return f"{n:,}"


def progress_text(n: int, total: int | None, elapsed: float) -> str:
    """The right end of a loop's line: position, elapsed<remaining and rate.

    Example:
        >>> progress_text(25, 100, 10.0)
        '25/100 [0:10<0:30, 2.5 it/s]'
        >>> progress_text(25, None, 10.0)
        '25 [0:10, 2.5 it/s]'
    """
    rate = format_rate(n, elapsed)
    if total is None:
        return f"{format_count(n)} [{format_clock(elapsed)}, {rate}]"
    if n > 0 and elapsed > 0:
        remaining = elapsed / n * max(total - n, 0)
        left = format_clock(remaining)
    else:
        left = "?:??"
    return f"{format_count(n)}/{format_count(total)} [{format_clock(elapsed)}<{left}, {rate}]"


def format_cell(value: Any) -> str:
    """A table cell: None as `-`, numbers formatted, everything else as its `str`.

    Example:
        >>> [format_cell(v) for v in (None, 1234, 0.5, True, "ok")]
        ['-', '1,234', '0.5000', 'True', 'ok']
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return format_count(value)
    if isinstance(value, float):
        return format_value(value).strip()
    number = _as_number(value)
    if number is not None:
        return format_cell(number)
    return str(value)


def is_number(value: Any) -> bool:
    """True for ints, floats, numpy scalars and 0-d tensors (not bools or strings)."""
    return not isinstance(value, bool) and _as_number(value) is not None


def _as_number(value: Any) -> int | float | None:
    """A plain int/float for numeric scalars (numpy, torch 0-d), else None; imports nothing."""
    if isinstance(value, (int, float)):
        return value
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if item is None or shape is None or tuple(shape) != ():
        return None
    try:
        out = item()
    except (TypeError, ValueError, RuntimeError):
        return None
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        return None
    return out


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings with `.`: `{"opt": {"lr": 0.1}}` -> `{"opt.lr": 0.1}`.

    An empty nested mapping stays as one key with the value `{}` so it is not lost.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def param_text(value: Any) -> str:
    """A parameter's value in the params table: strings bare, floats by repr, rest by repr."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))  # np.float64 is a float but would repr as np.float64(...)
    number = _as_number(value)
    if number is not None:
        return param_text(number)
    return repr(value)
