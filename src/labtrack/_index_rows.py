"""The rows of the index, read from run directories: a run's metadata, flattened params and
summary statistics (`run_row`), and the signature of its files that says when to read them
again (`_signature`). Pure reading and decoding; the SQLite side is `_index.py`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from ._console._format import flatten
from ._names import slug
from ._store import layout
from ._store.contain import is_contained
from ._store.reader import checked_meta, decode_nonfinite
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


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _read_json(path: str) -> Any:
    """A JSON file written by labtrack (None when missing), as `_store.reader.read_json` reads
    it, with its non-finite strings turned back into floats only when the text can hold one:
    walking every parsed object in Python cost more than the parse itself."""
    if os.path.islink(path) and not is_contained(path, os.path.dirname(path)):
        return None  # a symlink out of its run is not part of it (docs/format.md, Symlinks)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path} is not valid JSON ({e}); the file may have been edited by hand") from e
    if b'NaN"' in data or b'Infinity"' in data or b"\\u" in data:
        obj = decode_nonfinite(obj)
    return obj


def _read_raw_meta(run_dir: Path | str) -> dict[str, Any]:
    """run.json as stored (status not derived), version-checked and upgraded."""
    return checked_meta(_read_json(f"{run_dir}/{layout.RUN_JSON}"), run_dir)


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
                metrics[name] = s.get("last")
    tags = meta.get("tags")
    started = meta.get("started")
    ended = meta.get("ended")
    t0, t1 = _parse_time(started), _parse_time(ended)
    row = {
        "id": str(meta.get("id", "")),
        "experiment": str(meta.get("experiment", "")),
        "name": str(meta.get("name") or ""),
        "comment": str(meta.get("comment") or ""),
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "status": str(meta.get("status", "running")),
        "started": started,
        "ended": ended,
        "duration": (t1 - t0) if t0 is not None and t1 is not None else None,
        "commit": git.get("commit") if git else None,
        "dirty": git.get("dirty") if git else None,
        "host": meta.get("host"),
        "user": meta.get("user"),
        "parent": meta.get("parent"),
        "pid": meta.get("pid"),
        "params": flatten_params(params),
        "metrics": metrics,
    }
    return row, stats


_SIGNED = (layout.RUN_JSON, layout.PARAMS_JSON, layout.SUMMARY_JSON)


def _signature(run_dir: str) -> str | None:
    """inode:mtime:size of run.json, params.json and summary.json; None without run.json."""
    parts = []
    for fn in _SIGNED:
        path = run_dir + "/" + fn
        try:
            # lstat: a plain file costs one call; a symlink counts only when it stays in the run
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if not is_contained(path, run_dir):
                    raise FileNotFoundError(path)
                st = os.stat(path)
        except OSError:
            if fn == layout.RUN_JSON:
                return None
            parts.append("-")
            continue
        # The inode changes on every atomic replace, so two rewrites within one mtime tick
        # that keep the size still differ.
        parts.append(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
    return "|".join(parts)


def _scan(root: str) -> dict[str, str]:
    """`{"<experiment folder>/<run id>": signature}` of every run directory under `root`.

    The same walk as `_store.reader.iter_run_dirs` (dot-folders such as .labtrack and .trash
    skipped), on plain strings: with 10,000 runs, pathlib objects cost more than the stats.
    """
    out: dict[str, str] = {}
    try:
        experiments = [e for e in os.scandir(root) if not e.name.startswith(".") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return out
    # A symlinked experiment or run folder counts only when it stays inside the root (the
    # scandir entry tells a symlink without a call; only those are resolved).
    for exp in experiments:
        if exp.is_symlink() and not is_contained(exp.path, root):
            continue
        try:
            runs = [r.name for r in os.scandir(exp.path) if not r.name.startswith(".") and r.is_dir()
                    and not (r.is_symlink() and not is_contained(r.path, root))]
        except OSError:
            continue
        for name in runs:
            sig = _signature(exp.path + "/" + name)
            if sig is not None:
                out[exp.name + "/" + name] = sig
    return out


def _record(rel: str, run_dir: Path | str, sig: str) -> tuple[Any, ...]:
    """The `runs` table record of one run directory.

    Raises:
        OSError, FormatError, ValueError, TypeError: the run's files cannot be read.
    """
    meta = _read_raw_meta(run_dir)
    params = _read_json(f"{run_dir}/{layout.PARAMS_JSON}")
    summary = _read_json(f"{run_dir}/{layout.SUMMARY_JSON}")
    row, stats = run_row(meta, params, summary)
    if not row["id"]:
        row["id"] = rel.rsplit("/", 1)[-1]
    search = " ".join([row["experiment"], row["name"], row["comment"], row["id"], *row["tags"]]).lower()
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
            json.dumps({"params": list(row["params"]), "metrics": list(stats)}), sig)


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
