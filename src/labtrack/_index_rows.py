"""The rows of the index, read from run directories: a run's metadata, flattened params and
summary statistics (`run_row`), and the signature of its files that says when to read them
again (`_signature`). Pure reading and decoding; the SQLite side is `_index.py`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._console._format import flatten
from ._names import slug
from ._store import layout
from ._store.contain import OutsideRootError, read_inside
from ._store.ranks import rank_numbers
from ._store.reader import checked_meta, decode_nonfinite
from ._store.rundir import duration, scan
from .errors import FormatError

if TYPE_CHECKING:
    from ._index import Index


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


def _newest_records(root: str, count: int) -> tuple[int, list[tuple[Any, ...]]]:
    """How many run folders `root` holds (counted from the folder listings alone), and the
    full records (`_record_full`) of the `count` with the largest ids (the newest, for generated ids: they
    begin with the UTC start time), for :meth:`Index.prefill`.

    Only the chosen runs are checked by the walk every listing shares (`scan`: inside the
    root, run.json present, a run reached twice taken once): with 100,000 runs, one stat
    per run would cost more than the first page. A run that cannot be read is left for the
    full refresh.
    """
    candidates: list[tuple[str, str]] = []
    try:
        experiments = [e for e in os.scandir(root) if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return 0, []
    for exp in experiments:
        try:
            candidates.extend((r.name, exp.name) for r in os.scandir(exp.path)
                              if not r.name.startswith("."))
        except OSError:
            continue
    candidates.sort(reverse=True)
    records: list[tuple[Any, ...]] = []
    for name, exp_name in candidates:
        if len(records) >= count:
            break
        for f in scan(root, only=name):
            if f.experiment_dir != exp_name:
                continue  # this id in another experiment folder: its own candidate
            sig = _signature(f.path, f.meta_stat)
            if sig is None:
                continue
            try:
                records.append(_record_full(f.experiment_dir + "/" + f.id, f.path, sig))
            except (OSError, FormatError, ValueError, TypeError):
                pass
    return len(candidates), records


#: The version of the index's tables (`_index._SCHEMA`); a row file records the one it is for.
SCHEMA_VERSION = 6
#: Where the signature is in a record; the strict JSON copies (`with_strict`) follow it.
SIG = 26
#: The kind of each field of a full record (`_record_full`): "s" text, "s?" text or null,
#: "f?" number or null, "i?" integer or null, "d" JSON object text, "l" JSON list text.
KINDS = ("s", "s", "s", "s", "s", "l", "s", "s?", "s?", "f?", "s?", "i?", "s?", "s?", "s?", "i?", "s",
         "d", "d", "d", "d", "d", "d", "d", "s?", "s?", "s", "l", "d", "d", "d", "d", "d")
_STRICT_FROM = (5, 17, 18, 20, 21, 22)  # tags, params, metrics, mins, maxs, means
_NOT_PLAIN = ("NaN", "Infinity", '\\"', "\\u0000")


def _strict(text: str) -> str:
    """The strict JSON copy (`_where_sql.strict_json`) of a stored Python-JSON text: the text
    itself when it holds no NaN, infinity, quoted key or NUL (the usual case: no re-encoding)."""
    if not any(s in text for s in _NOT_PLAIN):
        return text
    from ._where_sql import strict_json

    return strict_json(json.loads(text))


def with_strict(rec: tuple[Any, ...]) -> tuple[Any, ...]:
    """A `_record` tuple followed by the strict JSON copies of tags, params, metrics, mins,
    maxs and means that the SQLite index's SQL filters read (`_where_sql.COLUMNS`)."""
    return (*rec, *(_strict(rec[i]) for i in _STRICT_FROM))


def _record_full(rel: str, run_dir: str, sig: str) -> tuple[Any, ...]:
    """:func:`_record` with the strict JSON copies (:func:`with_strict`), from the run's row
    file when it was made from these very files (`_index_rowfile`), else from the files."""
    from ._index_rowfile import load_record

    got = load_record(run_dir, sig)
    if got is not None:
        return (rel, *got[:SIG - 1], sig, *got[SIG - 1:])
    return with_strict(_record(rel, run_dir, sig))


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
    return record_from(rel, meta, params, summary, sig)


def record_from(rel: str, meta: dict[str, Any], params: Any, summary: Any, sig: str) -> tuple[Any, ...]:
    """The `runs` table record of a run from its run.json, params.json and summary.json as
    parsed (what :func:`_record` reads; the benchmarks build rows without run directories)."""
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


@functools.lru_cache(maxsize=4096)
def _tags(text: str) -> tuple[str, ...]:
    """A row's stored tags (a JSON list), decoded once per distinct text: runs share few tag
    sets, and decoding 10,000 of them cost `labtrack ls` more than reading the index."""
    return tuple(json.loads(text))


class Hit(Mapping[str, Any]):
    """One matching run of :meth:`Index.select`: a read-only mapping of its run row, built
    and decoded part by part on first use (a filter on params decodes only params)."""

    __slots__ = ("_index", "_now", "_rec", "relpath", "id", "_light", "_parts")

    def __init__(self, index: Index, now: float, rec: tuple[Any, ...]) -> None:
        self._index = index
        self._now = now
        self._rec = rec
        self.relpath: str = rec[0]
        self.id: str = rec[1]
        self._light: dict[str, Any] | None = None
        self._parts: dict[str, Any] = {}

    @property
    def dir(self) -> str:
        """The run directory."""
        return self._index._root_str + "/" + self.relpath

    def light(self) -> dict[str, Any]:
        """The row's top-level fields (no params, metrics or stats), status derived."""
        if self._light is None:
            r = self._rec
            light = {
                "id": r[1], "experiment": r[2], "name": r[3], "comment": r[4],
                "tags": list(_tags(r[5])), "status": r[6], "started": r[7], "ended": r[8],
                "duration": r[9], "commit": r[10], "dirty": None if r[11] is None else bool(r[11]),
                "host": r[12], "user": r[13], "parent": r[14], "pid": r[15], "dir": self.dir,
                "group": r[22], "job_type": r[23],
            }
            self._light = self._index._live(self.relpath, light, self._now)
        return self._light

    def _part(self, key: str) -> Any:
        if key not in self._parts:
            text = self._rec[_PART_COLUMN[key]]
            if text is None and key != "stats":
                # Listed without its params and metrics: read them now.
                got = self._index._connect().execute(
                    "SELECT params, metrics FROM runs WHERE relpath = ?", (self.relpath,)).fetchone()
                text = got[_PART_COLUMN[key] - 16] if got is not None else "{}"
            self._parts[key] = None if text is None else json.loads(text)
        return self._parts[key]

    def __getitem__(self, key: str) -> Any:
        if key in _AGG_COLUMN:  # "stats_max" -> {metric: max}, when listed with them
            if key not in self._parts:
                text = self._rec[_AGG_COLUMN[key]]
                self._parts[key] = None if text is None else json.loads(text)
            if self._parts[key] is None:
                raise KeyError(key)
            return self._parts[key]
        if key in _PART_COLUMN:
            value = self._part(key)
            if value is None:
                raise KeyError(key)
            return value
        return self.light()[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        yield from self.light()
        yield from (k for k in _PART_COLUMN if self._part(k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def row(self) -> dict[str, Any]:
        """The run row (docs/api.md) as a new dict: derived status, "dir", and "stats"
        when they were loaded."""
        row = dict(self.light())
        row["params"] = self._part("params")
        row["metrics"] = self._part("metrics")
        stats = self._part("stats")
        if stats is not None:
            row["stats"] = stats
        return row


_PART_COLUMN = {"params": 16, "metrics": 17, "stats": 18}
_AGG_COLUMN = {"stats_min": 19, "stats_max": 20, "stats_mean": 21}
