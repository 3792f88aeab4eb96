"""`labtrack import parquet PATH`: runs written by `labtrack export --to parquet`, back in.

A file holds one run: the long table `name, step, value, time` and, in its key-value
metadata, run.json, params, summary and env (see labtrack/_export/tables.py). Every point
comes back with its own step, value and wall time; params, tags, comment, group, job type,
start and end times, status, host, command and git are the exported run's, and so are
summary values the script set (wandb's run.summary). The imported run gets the id the
importer derives (tool "parquet", source id "<experiment>/<original run id>"), so a second
import finds it; run.json's imported_from keeps the original id ("run_id").

A Parquet file that labtrack did not write is read too when it has the columns name, step
and value (time optional: float seconds or a timestamp): the run is named after the file and
goes into its folder's experiment (or --experiment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._export.tables import LAYOUT_VERSION, read_metadata, require_pyarrow
from .._store.reader import iso_to_unix
from ._sink import Import, SourceError, check_source, fingerprint

# run.json keys an exported run carries back (the importer's own keys are set by the sink)
# (not pid: on this machine another process may have it, and the run would look alive)
_FIELDS = ("host", "user", "command", "git", "seed", "parent", "error", "start_step")


def files_of(source: Path) -> list[Path]:
    """The .parquet files of `source`: the file itself, or every one under the folder, sorted."""
    if source.is_file():
        return [source]
    found = sorted(p for p in source.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
    if not found:
        raise SourceError(f"{str(source)!r} holds no .parquet files; export runs with "
                          "`labtrack export RUN... --to parquet --out DIR` and import DIR")
    return found


def read_into(imp: Import, source: str | os.PathLike[str], experiment: str | None = None) -> None:
    """Import every Parquet file of `source` (a file or a folder of them) through `imp`."""
    require_pyarrow()
    for path in files_of(check_source(source, "Parquet file or folder")):
        _import_file(imp, path, experiment)


def _table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{path} is not a readable Parquet file: {e}") from None
    missing = [c for c in ("name", "step", "value") if c not in table.column_names]
    if missing:
        raise SourceError(f"{path} has no column {', '.join(map(repr, missing))}: a run's Parquet file "
                          f"has the columns name, step, value, time (it has {', '.join(table.column_names)})")
    return table


def _columns(path: Path, table: Any) -> tuple[list[str], Any, Any, Any]:
    """name, step (int64), value (float64) and time (float seconds, NaN when missing) as numpy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        names = table.column("name").cast(pa.string())
        steps = table.column("step").cast(pa.int64())
        values = table.column("value").cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SourceError(f"{path}: name must be text, step a whole number and value a number ({e})") from None
    if names.null_count or steps.null_count:
        raise SourceError(f"{path} has a row without a name or a step")
    if pc.any(pc.less(steps, 0)).as_py():
        raise SourceError(f"{path} has a negative step; labtrack's steps are whole numbers >= 0")
    times = np.full(len(table), np.nan)
    if "time" in table.column_names:
        col = table.column("time")
        if pa.types.is_timestamp(col.type):
            unit = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
            ints = col.cast(pa.int64()).to_numpy(zero_copy_only=False)
            # milliseconds (labtrack's own unit) divided exactly: the float of the stored text
            times = ints / unit if unit != 1.0 else ints.astype(np.float64)
            nulls = col.is_null().to_numpy(zero_copy_only=False)
            times[nulls] = np.nan
        else:
            try:
                times = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SourceError(f"{path}: time must be a timestamp or seconds since the epoch ({e})") from None
    return (names.to_pylist(), steps.to_numpy(), values.to_numpy(zero_copy_only=False), times)


def _import_file(imp: Import, path: Path, experiment: str | None) -> None:
    table = _table(path)
    meta = read_metadata(table.schema.metadata) or {}
    imp.version = str(meta["labtrack_version"]) if meta.get("labtrack_version") else None
    layout = meta.get("format", 1)
    if not isinstance(layout, int) or layout > LAYOUT_VERSION:
        raise SourceError(f"{path} was written by a newer labtrack (layout {meta.get('format')}); "
                          "upgrade labtrack: pip install -U labtrack")
    run_meta = _obj(meta, "run")
    original = str(run_meta.get("id") or path.stem)
    exp = experiment or str(run_meta.get("experiment") or path.parent.name)
    started = iso_to_unix(run_meta.get("started"))
    names, steps, values, times = _columns(path, table)
    if started is None and len(times):
        finite = times[times == times]
        started = float(finite.min()) if len(finite) else None
    params = _obj(meta, "params")
    out = imp.run(f"{run_meta.get('experiment') or path.parent.name}/{original}", experiment=exp,
                  name=run_meta.get("name"), started=started, params=params,
                  tags=[str(t) for t in tags] if isinstance(tags := run_meta.get("tags"), list) else [], comment=run_meta.get("comment"),
                  group=run_meta.get("group"), job_type=run_meta.get("job_type"),
                  fingerprint=fingerprint([path]), extra={"path": str(path.resolve()), "run_id": original})
    if out is None:
        return
    _replay(out.scalars, names, steps, values, times)
    extra = _summary_extra(_obj(meta, "summary"))
    if extra:
        out.run._set_summary(extra)
    fields = {k: run_meta[k] for k in _FIELDS if k in run_meta}
    env = _obj(meta, "env") or None
    status = str(run_meta.get("status") or "finished")
    # exported while it ran (or it died without a word): a copy is never live
    out.done(status="crashed" if status == "running" else status, ended=iso_to_unix(run_meta.get("ended")),
             fields=fields, env=env)


def _replay(log: Any, names: list[str], steps: Any, values: Any, times: Any) -> None:
    """Log every point with its own step and time, in each series' order.

    When every series' points run forward in (time, step), which is how a run logs them,
    the points of one (step, time) across series go in one call, as the run made them (about
    five times fewer calls); otherwise (times set by hand out of order, a point repeated) one
    call per point.
    """
    import numpy as np

    n = len(names)
    if n and not np.isnan(times).any():
        import pyarrow as pa
        import pyarrow.compute as pc

        codes = pc.dictionary_encode(pa.array(names, pa.string())).indices.to_numpy()
        order = np.argsort(codes, kind="stable")  # each series' points in file order
        ts, ss = times[order], steps[order]
        same_series = codes[order][1:] == codes[order][:-1]
        forward = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (ss[1:] > ss[:-1]))
        if np.all(forward[same_series]):  # each series strictly forward in (time, step)
            by_time = np.lexsort((np.arange(n), steps, times))
            s_sorted, t_sorted = steps[by_time], times[by_time]
            cuts = np.flatnonzero((s_sorted[1:] != s_sorted[:-1]) | (t_sorted[1:] != t_sorted[:-1])) + 1
            bounds = [0, *cuts.tolist(), n]
            idx = by_time.tolist()
            vals = values.tolist()
            st, tt = s_sorted.tolist(), t_sorted.tolist()
            for a, b in zip(bounds, bounds[1:]):
                log({names[i]: vals[i] for i in idx[a:b]}, st[a], tt[a])
            return
    for name, s, v, t in zip(names, steps.tolist(), values.tolist(), times.tolist()):
        log({name: v}, s, None if t != t else t)


def _obj(meta: dict[str, Any], key: str) -> dict[str, Any]:
    v = meta.get(key)
    return v if isinstance(v, dict) else {}


def _summary_extra(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary keys the script set, not the statistics the points give back by themselves."""
    from .._writer import SUMMARY_EXTRA

    out = {}
    for k, entry in summary.items():
        if isinstance(entry, dict):
            kept = {f: entry[f] for f in SUMMARY_EXTRA if f in entry}
            if kept:
                out[k] = kept
    return out
