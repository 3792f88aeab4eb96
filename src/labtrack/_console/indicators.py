"""Indicators: values stored many times per step, written once per step (Lab's tracker).

`run.store(loss=...)` accumulates; `run.write(step)` records, per indicator, the mean of the
values stored since the last write (or the moving average over the last `window` values),
a histogram of those values where asked, and shows them on the status line. The core's
`Run.store/write/indicator` delegate to one :class:`Indicators` per run.

What can be stored under a name:

* a number (int, float, bool, numpy scalar, 0-d tensor): one value;
* a list, numpy array or tensor of numbers: many values at once (per-sample losses);
* a tuple `(x, y)` of two numbers, or a list of such tuples: pairs, recorded as the two
  series `<name>/x` and `<name>/y`, one point per pair, in the order stored.

A name holds either values or pairs, not both.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from .._names import check_name
from ..errors import LabtrackTypeError, LabtrackValueError
from ._display import DISPLAY
from ._format import _as_number, format_value

_ALLOWED = ("a number (int, float, bool, numpy scalar, 0-d tensor), a list/array/tensor of "
            "numbers, an (x, y) tuple of two numbers, or a list of (x, y) tuples")

STYLE_MEAN, STYLE_WINDOW, STYLE_HISTOGRAM, STYLE_PAIR, STYLE_BAD = (
    "bold", "cyan", "magenta", "blue", "bold red")


class _Spec:
    __slots__ = ("window", "histogram", "print", "progress")

    def __init__(self, window: int | None = None, histogram: bool = False, print: bool = True,  # noqa: A002
                 progress: bool = False) -> None:
        self.window = window
        self.histogram = histogram
        self.print = print
        self.progress = progress


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    number = _as_number(value)
    return None if number is None else float(number)


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, tuple) and len(value) == 2:
        x, y = _number(value[0]), _number(value[1])
        if x is not None and y is not None:
            return (x, y)
    return None


def convert(name: str, value: Any) -> tuple[str, list[Any]]:
    """Turn one stored value into ("values", [floats]) or ("pairs", [(x, y)]) (pure).

    Raises:
        LabtrackTypeError: the value is none of the allowed kinds; names the key and type.
    """
    number = _number(value)
    if number is not None:
        return "values", [number]
    pair = _pair(value)
    if pair is not None:
        return "pairs", [pair]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, tuple) for v in value):
            pairs = [_pair(v) for v in value]
            if all(p is not None for p in pairs):
                return "pairs", pairs
        numbers = [_number(v) for v in value]
        if all(n is not None for n in numbers):
            return "values", numbers
    elif hasattr(value, "shape") and hasattr(value, "dtype"):
        floats = _array_values(value)
        if floats is not None:
            return "values", floats
    raise LabtrackTypeError(
        f"cannot store {name!r}: got {type(value).__name__} {_short(value)}; "
        f"a stored value must be {_ALLOWED}"
    )


def _array_values(value: Any) -> list[float] | None:
    """Values of a numpy array or torch tensor of numbers, flattened; None for other dtypes."""
    import numpy as np

    if hasattr(value, "detach"):  # torch: off the graph and the device first
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "biuf":
        return None
    out: list[float] = arr.astype(np.float64).ravel().tolist()
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        number = _as_number(step)
        if isinstance(number, int) and not isinstance(step, bool):
            return _check_step(number)
        else:
            raise LabtrackTypeError(
                f"write(step={step!r}): step must be an int >= 0 or None (the run's current step)"
            )
    if step < 0:
        raise LabtrackValueError(f"write(step={step}): step must be >= 0")
    return step


class Indicators:
    """The indicator state of one run; thread-safe (several threads may store)."""

    def __init__(self, run: Any) -> None:
        from .. import _settings

        self._run = run
        self._lock = threading.Lock()
        self._specs: dict[str, _Spec] = {}
        self._kinds: dict[str, str] = {}
        self._values: dict[str, list[float]] = {}
        self._pairs: dict[str, list[tuple[float, float]]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._every: int = _settings.get("print_every")
        self._last_step: int | None = None
        self._names: set[str] = set()  # names already checked (store runs every step)
        self._latest: dict[str, float] = {}  # the last written value of progress indicators

    def indicator(self, name: str, window: int | None = None, histogram: bool = False,
                  print: bool = True, progress: bool = False) -> None:  # noqa: A002 - the public keyword
        """Declare how an indicator is summarised and shown.

        Args:
            name: the indicator (a series name).
            window: write the moving average of the last `window` values instead of the
                mean of the values since the last write.
            histogram: also record a histogram of the values of each write.
            print: show it on the status line (False: recorded only).
            progress: its last written value joins each `run.save_progress` snapshot
                (Lab's `is_progress`).

        Raises:
            LabtrackNameError: an invalid name.
            LabtrackTypeError: histogram or print not a bool.
            LabtrackValueError: window not None or a whole number >= 1.

        Example:
            >>> run.indicator("reward", window=10)
        """
        check_name(name, "indicator name")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                                   or window < 1):
            raise LabtrackValueError(
                f"indicator {name!r}: window={window!r} must be None or a whole number >= 1"
            )
        for key, flag in (("histogram", histogram), ("print", print), ("progress", progress)):
            if not isinstance(flag, bool):
                raise LabtrackTypeError(
                    f"indicator {name!r}: {key}={flag!r} must be True or False"
                )
        with self._lock:
            self._specs[name] = _Spec(window, histogram, print, progress)
            if window is None:
                self._windows.pop(name, None)
            else:
                self._windows[name] = deque(self._windows.get(name, ()), maxlen=window)

    def progress_values(self) -> dict[str, float]:
        """The last written value of each indicator declared with progress=True."""
        with self._lock:
            return {n: v for n, v in self._latest.items()
                    if (spec := self._specs.get(n)) is not None and spec.progress}

    def store(self, values: Mapping[str, Any]) -> None:
        """Accumulate values until the next write (all are checked before any is kept).

        Raises:
            LabtrackNameError: an invalid name.
            LabtrackTypeError: a value of a kind that cannot be stored.
            LabtrackValueError: pairs stored under a name that holds values, or the reverse.
        """
        if not isinstance(values, Mapping):
            raise LabtrackTypeError(
                f"store() takes name=value keywords or a dict, got {type(values).__name__}"
            )
        converted: list[tuple[str, str, list[Any]]] = []
        known_names = self._names
        for name, value in values.items():
            if name not in known_names:
                check_name(name, "indicator name")
                known_names.add(name)
            kind, items = convert(name, value)
            converted.append((name, kind, items))
        with self._lock:
            for name, kind, _ in converted:
                known = self._kinds.get(name)
                if known is not None and known != kind:
                    raise LabtrackValueError(
                        f"cannot store {kind} under {name!r}: it already holds {known}; "
                        "use another name for (x, y) pairs"
                    )
            for name, kind, items in converted:
                self._kinds[name] = kind
                if kind == "pairs":
                    self._pairs.setdefault(name, []).extend(items)
                    continue
                self._values.setdefault(name, []).extend(items)
                window = self._windows.get(name)
                if window is not None:
                    window.extend(items)

    def write(self, step: int | None = None) -> None:
        """Record and show what was stored since the last write.

        Args:
            step: the step to record at; None uses the run's current step (or one past the
                previous write, when the run has not moved since).

        Raises:
            LabtrackTypeError / LabtrackValueError: a step that is not an int >= 0.
        """
        with self._lock:
            if step is None:
                step = int(self._run.current_step or 0)
                if self._last_step is not None and step <= self._last_step:
                    step = self._last_step + 1
            else:
                step = _check_step(step)
            self._last_step = step
            means: dict[str, float] = {}
            histograms: list[tuple[str, list[float]]] = []
            shown: list[tuple[str, str, str]] = []
            for name, stored in self._values.items():
                if not stored:
                    continue
                spec = self._specs.get(name) or _Spec()
                window = self._windows.get(name)
                kept = window if window is not None else stored
                value = sum(kept) / len(kept)
                means[name] = value
                if spec.progress:
                    self._latest[name] = value
                if spec.histogram:
                    histograms.append((name, list(stored)))
                if spec.print:
                    style = STYLE_WINDOW if window is not None else (
                        STYLE_HISTOGRAM if spec.histogram else STYLE_MEAN)
                    if value != value or value in (float("inf"), float("-inf")):
                        style = STYLE_BAD
                    shown.append((name, format_value(value), style))
            pairs = {name: list(p) for name, p in self._pairs.items() if p}
            for name, p in pairs.items():
                spec = self._specs.get(name) or _Spec()
                if spec.print:
                    x, y = p[-1]
                    shown.append((name, f"({format_value(x).strip()}, {format_value(y).strip()})",
                                  STYLE_PAIR))
            for stored in self._values.values():
                stored.clear()
            for p_list in self._pairs.values():
                p_list.clear()
        run = self._run
        if means:
            run._record(means, step)
        if histograms:
            import numpy as np

            for name, vals in histograms:
                run.log_histogram(name, np.asarray(vals, dtype=np.float64), step=step)
        for name, p in pairs.items():
            for x, y in p:
                run._record({f"{name}/x": x, f"{name}/y": y}, step)
        DISPLAY.set_indicators(step, shown, self._every)
