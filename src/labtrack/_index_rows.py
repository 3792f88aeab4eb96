"""The rows of the index, read from run directories: a run's metadata, flattened params and
summary statistics (`run_row`), and the signature of its files that says when to read them
again (`_signature`). Pure reading and decoding; the SQLite side is `_index.py`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ._console._format import flatten
from ._names import slug
from ._store import layout
from ._store.contain import OutsideRootError, read_inside
from ._store.ranks import rank_numbers
from ._store.reader import checked_meta, decode_nonfinite
from ._store.rundir import duration, scan
from .errors import FormatError


def flatten_params(params: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts with `.`: `{"opt": {"lr": 0.1}}` -> `{"opt.lr": 0.1}`.

    Lists and other values are kept as they are; a params.json that is not an object is
    returned as `{"value": ...}` so it still shows.

    Example:
        >>> flatten_params({"opt": {"lr": 0.1}, "layers": [1, 2]})
        {'opt.lr': 0.1, 'layers': [1, 2]}
    """
    if not isinstance(params, dict):
        return {} if params is None else {prefix or "value": params}
    return flatten(params, prefix)


def _read_json(path: str, run_dir: str) -> Any:
    """A JSON file of `run_dir` written by labtrack (None when missing), as
    `_store.reader.read_json` reads it, with its non-finite strings turned back into floats
    only when the text can hold one: walking every parsed object in Python cost more than
    the parse itself. A symlink is followed only when it stays inside the run.

    Raises:
        OutsideRootError: the file is a symlink that leads out of the run.
        FormatError: not valid JSON.
    """
    try:
        data = read_inside(path, run_dir)
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path} is not valid JSON ({e}); the file may have been edited by hand") from e
    if b'NaN"' in data or b'Infinity"' in data or b"\\u" in data:
        obj = decode_nonfinite(obj)
    return obj


def _read_part(path: str, run_dir: str) -> Any:
    """:func:`_read_json`, None for a symlink that leads out of the run."""
    try:
        return _read_json(path, run_dir)
    except OutsideRootError:
        return None


def _read_raw_meta(run_dir: Path | str) -> dict[str, Any]:
    """run.json as stored (status not derived), version-checked and upgraded."""
    return checked_meta(_read_json(f"{run_dir}/{layout.RUN_JSON}", str(run_dir)), run_dir)


def run_row(meta: dict[str, Any], params: Any, summary: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the stored run row and the metric statistics from a run's three JSON files.

    Args:
        meta: run.json as stored.
        params: params.json (nested) or None.
        summary: summary.json or None.

    Returns:
        `(row, stats)`: the row in the shape of docs/api.md (status as stored), and
        `{metric: {"last", "min", "max", "mean", "count", "step"}}`.
    """
    git = meta.get("git") if isinstance(meta.get("git"), dict) else {}
    stats: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if isinstance(summary, dict):
        for name, s in summary.items():
            if isinstance(s, dict):
                stats[name] = {k: s.get(k) for k in ("last", "min", "max", "mean", "count", "step")}
                # a summary value the script set (labtrack.wandb's run.summary) wins
                metrics[name] = s["value"] if "value" in s else s.get("last")
    tags = meta.get("tags")
    started = meta.get("started")
    ended = meta.get("ended")
    row = {
        "id": str(meta.get("id", "")),
        "experiment": str(meta.get("experiment", "")),
        "name": str(meta.get("name") or ""),
        "comment": str(meta.get("comment") or ""),
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "status": str(meta.get("status", "running")),
        "started": started,
        "ended": ended,
        # A run stored as running gets its duration when it is listed (`Index._live`).
        "duration": duration(meta, None, 0.0) if ended is not None else None,
        "commit": git.get("commit") if git else None,
        "dirty": git.get("dirty") if git else None,
        "host": meta.get("host"),
        "user": meta.get("user"),
        "parent": meta.get("parent"),
        "group": _text(meta.get("group")),
        "job_type": _text(meta.get("job_type")),
        "pid": meta.get("pid"),
        "params": flatten_params(params),
        "metrics": metrics,
    }
    return row, stats


_SIGNED = (layout.RUN_JSON, layout.PARAMS_JSON, layout.SUMMARY_JSON)


def _stamp(st: os.stat_result) -> str:
    # The inode changes on every atomic replace, so two rewrites within one mtime tick that
    # keep the size still differ.
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def _signature(run_dir: str, meta_stat: os.stat_result | None = None) -> str | None:
    """inode:mtime:size of run.json, params.json and summary.json; None without run.json.

    `meta_stat` is run.json's stat when the caller has it already (the scan does).
    """
    parts = []
    for fn in _SIGNED:
        if fn == layout.RUN_JSON and meta_stat is not None:
            parts.append(_stamp(meta_stat))
            continue
        try:
            st = os.stat(run_dir + "/" + fn)
        except OSError:
            if fn == layout.RUN_JSON:
                return None
            parts.append("-")
            continue
        parts.append(_stamp(st))
    return "|".join(parts)


def _scan(root: str) -> dict[str, str]:
    """`{"<experiment folder>/<run id>": signature}` of every run directory under `root`.

    The walk every listing shares (`_store.rundir.scan`: dot-folders skipped, nothing that
    resolves outside the root, a run reached twice listed once), on plain strings: with
    10,000 runs, pathlib objects cost more than the stats.
    """
    out: dict[str, str] = {}
    for found in scan(root):
        sig = _signature(found.path, found.meta_stat)
        if sig is not None:
            out[found.experiment_dir + "/" + found.id] = sig
    return out


def _record(rel: str, run_dir: Path | str, sig: str) -> tuple[Any, ...]:
    """The `runs` table record of one run directory.

    Raises:
        OSError, FormatError, ValueError, TypeError: the run's files cannot be read.
    """
    meta = _read_raw_meta(run_dir)
    # A params or summary file that leads out of the run is not part of it: the run is
    # listed without it, as the run page shows it (a run.json that leads out is no run).
    params = _read_part(f"{run_dir}/{layout.PARAMS_JSON}", str(run_dir))
    summary = _read_part(f"{run_dir}/{layout.SUMMARY_JSON}", str(run_dir))
    for r in rank_numbers(run_dir) if "distributed" in meta else ():  # a one-run job's other ranks
        part = _read_part(f"{run_dir}/{layout.rank_relpath(r, layout.SUMMARY_JSON)}", str(run_dir))
        if r and isinstance(part, dict):
            summary = {**(summary if isinstance(summary, dict) else {}), **part}
    row, stats = run_row(meta, params, summary)
    if not row["id"]:
        row["id"] = rel.rsplit("/", 1)[-1]
    search = " ".join([row["experiment"], row["name"], row["comment"], row["id"], *row["tags"],
                       row["group"] or ""]).lower()
    mins, maxs, means = {}, {}, {}
    for n, st in stats.items():
        mins[n], maxs[n], means[n] = st.get("min"), st.get("max"), st.get("mean")
    return (rel, row["id"], row["experiment"], row["name"], row["comment"],
            _dumps(row["tags"]), row["status"], _text(row["started"]), _text(row["ended"]),
            row["duration"], _text(row["commit"]),
            None if row["dirty"] is None else int(bool(row["dirty"])),
            _text(row["host"]), _text(row["user"]), _text(row["parent"]),
            row["pid"] if isinstance(row["pid"], int) else None, search,
            _dumps(row["params"]), _dumps(row["metrics"]), _dumps(stats),
            _dumps(mins), _dumps(maxs), _dumps(means),
            json.dumps({"params": list(row["params"]), "metrics": list(stats)}),
            row["group"], row["job_type"], sig)


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def _json_default(o: Any) -> Any:
    return repr(o)


# One encoder for every value (json.dumps with options builds a new one per call).
# NaN/Infinity are kept as JSON extensions: only this module reads the index back.
_dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


def _sort_value(v: Any) -> tuple[int, Any] | None:
    """A key that orders numbers before texts and never compares across types."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, int, float)):
        return (0, float(v))
    if isinstance(v, str):
        return (1, v)
    return (2, _dumps(v))
