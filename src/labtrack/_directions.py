"""Which way is better for a metric: "min" or "max", as the script declared it.

`init(metrics={"val/acc": "max", "loss": "min"})` (and `Run(metrics=...)`) stores the
declarations in run.json under `metrics` (docs/format.md); `labtrack.wandb`'s
`define_metric(goal=...)` (or a lone `summary="min"`/`"max"`) declares the same. A name may
be a glob (`"val/*"`). The dashboard marks the best run of a metric by its direction, and
guesses from the name (losses and errors lower) only where nothing was declared.

Pure code: checking, merging and resolving; the run writes run.json.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from .errors import LabtrackTypeError, LabtrackValueError

__all__ = ["DIRECTIONS", "check_directions", "direction_of", "from_definition", "resolve"]

#: The directions a metric may have.
DIRECTIONS = ("min", "max")
_GOALS = {"minimize": "min", "maximize": "max"}


def check_directions(metrics: Any) -> dict[str, str]:
    """`metrics` as a plain {name: "min" | "max"} dict; None gives {}.

    Raises:
        LabtrackTypeError: not a mapping, or a name that is not a str.
        LabtrackValueError: an empty name, or a direction other than "min" or "max".
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise LabtrackTypeError(
            f"metrics must be a dict of metric name -> 'min' or 'max', got {type(metrics).__name__}")
    out: dict[str, str] = {}
    for name, direction in metrics.items():
        if not isinstance(name, str):
            raise LabtrackTypeError(f"metrics: names must be str, got {type(name).__name__} {name!r}")
        if not name.strip():
            raise LabtrackValueError("metrics: a metric name must not be empty")
        if direction not in DIRECTIONS:
            raise LabtrackValueError(
                f"metrics[{name!r}]: direction {direction!r} is not one of 'min', 'max'")
        out[name] = direction
    return out


def from_definition(summary: list[str], goal: str | None) -> str | None:
    """The direction a wandb `define_metric` implies: its goal ("minimize"/"maximize"),
    else a summary of exactly one of "min" and "max"; None when it says neither."""
    if goal is not None:
        return _GOALS.get(goal)
    picked = [s for s in summary if s in DIRECTIONS]
    return picked[0] if len(picked) == 1 else None


def direction_of(name: str, declared: Mapping[str, Any]) -> str | None:
    """The declared direction of series `name`: an exact name wins, then the longest
    matching glob; None when nothing declared covers it."""
    d = declared.get(name)
    if d in DIRECTIONS:
        return str(d)
    globs = sorted((p for p in declared if "*" in p or "?" in p or "[" in p), key=len, reverse=True)
    for pattern in globs:
        if declared[pattern] in DIRECTIONS and fnmatch.fnmatchcase(name, pattern):
            return str(declared[pattern])
    return None


def resolve(meta: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, str]:
    """Each summary series' direction: run.json's `metrics`, else the summary entry's
    `goal` (define_metric, at finish). Series with neither are left out."""
    declared = meta.get("metrics")
    declared = declared if isinstance(declared, Mapping) else {}
    out: dict[str, str] = {}
    for name, entry in summary.items():
        d = direction_of(name, declared)
        if d is None and isinstance(entry, Mapping):
            d = _GOALS.get(str(entry.get("goal")))
        if d is not None:
            out[name] = d
    return out
