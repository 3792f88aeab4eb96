"""ML-Logger's per-step table: `labtrack.Color` and the printer behind `init(print_steps=True)`.

A run that prints steps keeps the values logged at the current step; when a call logs at
another step (or the run finishes) the step's values are printed as one box table through
the console (above the live status line on a terminal). Nothing here is on the hot path of
a run that does not print steps.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import LabtrackTypeError, LabtrackValueError

# rich's colour names most terminals show; any other rich style string is accepted too.
_FMT_PROBE = 0.5


class Color:
    """A logged value with the colour and format it has in the per-step table (ML-Logger's
    `Color`). The run records the plain number; only the printed table is styled.

    Args:
        value: the number (int, float, numpy scalar, 0-d tensor).
        color: a rich colour or style, such as "yellow", "bold red" or "#ff8800".
        fmt: a `str.format` pattern for the table cell, such as "{:.1%}" (default: the
            table's usual number format).

    Raises:
        LabtrackTypeError: `color` or `fmt` is not a str.
        LabtrackValueError: `fmt` cannot format a number.

    Example:
        >>> run.log({"acc": labtrack.Color(0.85, "yellow", fmt="{:.1%}")}, step=3)
    """

    __slots__ = ("value", "color", "fmt")
    _labtrack_scalar_ = True  # `_records.coerce_scalar` records `value` (no import of this module)

    def __init__(self, value: Any, color: str = "yellow", fmt: str | None = None) -> None:
        if not isinstance(color, str) or not color.strip():
            raise LabtrackTypeError(f"Color: color must be a non-empty str such as 'yellow', got {color!r}")
        if fmt is not None:
            if not isinstance(fmt, str):
                raise LabtrackTypeError(f"Color: fmt must be a str such as '{{:.1%}}', got {type(fmt).__name__}")
            try:
                fmt.format(_FMT_PROBE)
            except (ValueError, IndexError, KeyError) as e:
                raise LabtrackValueError(f"Color: fmt {fmt!r} cannot format a number ({e}); "
                                         "use a pattern such as '{:.1%}' or '{:,.3f}'") from None
        self.value = value
        self.color = color
        self.fmt = fmt

    def __repr__(self) -> str:
        return f"Color({self.value!r}, {self.color!r}, fmt={self.fmt!r})"


def check_skip(patterns: Iterable[str] | None) -> tuple[str, ...]:
    """`print_skip` as a tuple of glob patterns.

    Raises:
        LabtrackTypeError: not a list of str.
    """
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        return (patterns,)
    out = []
    for p in patterns:
        if not isinstance(p, str):
            raise LabtrackTypeError(f"print_skip must be a list of glob patterns (str), got {p!r}")
        out.append(p)
    return tuple(out)


class StepPrinter:
    """Collects one step's values and prints them as a table when the step changes.

    Args:
        skip: glob patterns of keys never printed (`init(print_skip=["*/histogram", "lr"])`).
    """

    def __init__(self, skip: Iterable[str] = ()) -> None:
        self._skip = tuple(skip)
        self._lock = threading.Lock()  # log() may come from several threads
        self._step: int | None = None
        self._values: dict[str, Any] = {}
        self._styles: dict[str, tuple[str, str | None]] = {}

    def skipped(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in self._skip)

    def observe(self, step: int, values: Mapping[Any, Any]) -> None:
        """Values were logged at `step`: print the previous step's table if the step changed."""
        done: tuple[int, dict[str, Any], dict[str, tuple[str, str | None]]] | None = None
        with self._lock:
            if self._step is not None and step != self._step and self._values:
                done = (self._step, self._values, self._styles)
                self._values, self._styles = {}, {}
            self._step = step
            for k, v in values.items():
                key = str(k)
                if self.skipped(key):
                    continue
                if isinstance(v, Color):
                    self._styles[key] = (v.color, v.fmt)
                    v = v.value
                elif getattr(type(v), "_labtrack_media_", False):
                    v = type(v).__name__  # an image or a table: its kind, not its pixels
                self._values[key] = v
        if done is not None:
            _print(*done)

    def close(self) -> None:
        """Print the last step's table (at finish)."""
        with self._lock:
            done = (self._step, self._values, self._styles) if self._values else None
            self._values, self._styles = {}, {}
        if done is not None and done[0] is not None:
            _print(done[0], done[1], done[2])


def _print(step: int, values: dict[str, Any], styles: dict[str, tuple[str, str | None]]) -> None:
    from .tables import print_step

    try:
        print_step(step, values, styles=styles)
    except Exception as e:  # noqa: BLE001 - a console table must never break training
        import warnings

        warnings.warn(f"labtrack: could not print step {step}'s table: {e}", RuntimeWarning, stacklevel=3)
