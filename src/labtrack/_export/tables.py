"""Runs out as tables: `labtrack export RUN... --to parquet|csv --out DIR` (docs/import-export.md).

Parquet, one file per run, `<out>/<experiment folder>/<run id>.parquet`: the long scalars
table neptune-exporter writes, one row per point (its `attribute_path`, `step`, `timestamp`,
`float_value` are our `name`, `step`, `time`, `value`):

    name   string                  the series name as logged ("train/loss", "rank1/loss", "system/cpu/percent")
    step   int64
    value  float64                 NaN and infinities as logged
    time   timestamp[ms, UTC]      the point's wall time (labtrack stores milliseconds: lossless)

Rows are grouped by series (sorted by name) and keep each series' file order (a resumed run
may repeat a step). The run's metadata rides in the file's key-value metadata, once under
`labtrack` and once under `PANDAS_ATTRS` (so `pandas.read_parquet(f).attrs` has it): a JSON
object {"format": 1, "labtrack_version": ..., "run": run.json, "params": params.json, "summary": summary.json,
"env": env.json or null}. `labtrack import parquet` reads it all back.

CSV, one folder per run, `<out>/<experiment folder>/<run id>/`: scalars.csv (name, step,
value, time in seconds since the epoch, as labtrack stores it), params.csv (flattened
`key,value`, the value as JSON unless a string) and params.json (nested as given),
summary.csv and summary.json, run.json and env.json.

Every file is written whole or not at all (a temporary file or folder, then a rename), so an
export cut off half way leaves the earlier export of a run, never a torn one. Runs are read
only through their RunDir and the store's scalars reader.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .._store.files import atomic_writer, dumps, replace_folder
from .._store.rundir import RunDir
from .._store.scalars import format_time, read_arrays
from ..errors import LabtrackValueError, MissingDependencyError

#: The version of the layout above; the importer refuses a newer one.
LAYOUT_VERSION = 1
META_KEY = b"labtrack"
PANDAS_KEY = b"PANDAS_ATTRS"
SUMMARY_COLUMNS = ("name", "last", "min", "max", "mean", "count", "step", "time", "value")


def require_pyarrow() -> Any:
    """pyarrow, or a clear error saying how to install it."""
    try:
        import pyarrow
    except ImportError:
        raise MissingDependencyError(
            "Parquet needs pyarrow, which is not installed: pip install 'labtrack[parquet]'") from None
    return pyarrow


#: Points per Parquet row group: series are gathered up to this many, then written, so an
#: export holds about this much of a run in memory however long the run is.
ROW_GROUP = 1 << 20


class RunTable(NamedTuple):
    """One run read for export: its metadata and where each of its series is stored."""

    run: RunDir
    meta: dict[str, Any]
    params: dict[str, Any]
    summary: dict[str, Any]
    env: dict[str, Any] | None
    series: list[tuple[str, str]]  # (name, relpath), sorted by name

    def arrays(self) -> Iterator[tuple[str, Any, Any, Any]]:
        """(name, steps int64, values float64, times float64) of each series, read one by one
        through the store's scalars reader (a trailing partial line of a live run left out)."""
        for name, rel in self.series:
            yield (name, *read_arrays(self.run.file(rel)))


def read_run(run: RunDir) -> RunTable:
    """Everything an export writes of `run`: run.json as stored, params, summary (with every
    rank's), env, and its series (rank<N>/ and system/ ones too)."""
    return RunTable(run, run.raw_meta(), run.params(), run.summary(), run.env(), run.named("scalars"))


def file_metadata(table: RunTable) -> dict[str, Any]:
    """The JSON object stored in a Parquet file's key-value metadata (see the module doc)."""
    from .. import __version__

    return {"format": LAYOUT_VERSION, "labtrack_version": __version__, "run": table.meta,
            "params": table.params, "summary": table.summary, "env": table.env}


def _row_group(pa: Any, schema: Any, part: list[tuple[str, Any, Any, Any]]) -> Any:
    import numpy as np

    names = pa.array([s[0] for s in part], pa.string())
    counts = np.fromiter((len(s[1]) for s in part), dtype=np.int64, count=len(part))
    # the name column built from one entry per series and an index per point (Parquet
    # dictionary-encodes it on disk: a series name costs a few bits per point)
    indices = np.repeat(np.arange(len(part), dtype=np.int32), counts)
    steps = np.concatenate([s[1] for s in part]).astype(np.int64, copy=False)
    values = np.concatenate([s[2] for s in part]).astype(np.float64, copy=False)
    times = np.concatenate([s[3] for s in part])
    ms = np.floor(times * 1000.0 + 0.5).astype(np.int64)  # labtrack's own rounding (format_time)
    return pa.Table.from_arrays([
        pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), names).dictionary_decode(),
        pa.array(steps, pa.int64()), pa.array(values, pa.float64()),
        pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))], schema=schema)


def write_parquet(table: RunTable, out: Path) -> tuple[Path, int]:
    """`<out>/<experiment folder>/<run id>.parquet` of one run; returns its path and points."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = dumps(file_metadata(table), indent=None).encode("utf-8")
    schema = pa.schema([("name", pa.string()), ("step", pa.int64()),
                        ("value", pa.float64()), ("time", pa.timestamp("ms", tz="UTC"))],
                       metadata={META_KEY: meta, PANDAS_KEY: meta})
    path = out / table.run.experiment_dir / f"{table.run.id}.parquet"
    points = 0
    with atomic_writer(path) as f:
        writer = pq.ParquetWriter(f, schema, compression="zstd")
        try:
            part: list[tuple[str, Any, Any, Any]] = []
            held = 0
            for series in table.arrays():
                part.append(series)
                held += len(series[1])
                if held >= ROW_GROUP:
                    writer.write_table(_row_group(pa, schema, part))
                    points, part, held = points + held, [], 0
            if part or not points:
                writer.write_table(_row_group(pa, schema, part) if part else schema.empty_table())
                points += held
        finally:
            writer.close()
    return path, points


def _flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _cell(v: Any) -> str:
    """A CSV cell: a string as it is, a float as its shortest exact text, anything else as JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v)  # "nan", "inf", "-inf" for the non-finite: what pandas and csv readers parse
    if v is None:
        return ""
    return dumps(v, indent=None)


def _csv_text(header: Sequence[str], rows: Any) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_csv(table: RunTable, out: Path) -> tuple[Path, int]:
    """`<out>/<experiment folder>/<run id>/` of one run (replaced whole); returns the folder
    and how many points it holds."""
    folder = out / table.run.experiment_dir / table.run.id
    points = 0

    def fill(tmp: Path) -> None:
        nonlocal points
        with open(tmp / "scalars.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(("name", "step", "value", "time"))
            for name, steps, values, times in table.arrays():  # series by series: bounded memory
                w.writerows((name, s, repr(v), format_time(t))
                            for s, v, t in zip(steps.tolist(), values.tolist(), times.tolist()))
                points += len(steps)
        files: dict[str, bytes] = {
            "params.csv": _csv_text(("key", "value"), ((k, _cell(v)) for k, v in _flatten(table.params))),
            "params.json": (dumps(table.params) + "\n").encode("utf-8"),
            "summary.csv": _csv_text(SUMMARY_COLUMNS, (
                [name] + [_cell(entry.get(c)) for c in SUMMARY_COLUMNS[1:]]
                for name, entry in sorted(table.summary.items()) if isinstance(entry, dict))),
            "summary.json": (dumps(table.summary) + "\n").encode("utf-8"),
            "run.json": (dumps(table.meta) + "\n").encode("utf-8"),
        }
        if table.env is not None:
            files["env.json"] = (dumps(table.env) + "\n").encode("utf-8")
        for name, data in files.items():
            (tmp / name).write_bytes(data)

    replace_folder(folder, fill)
    return folder, points


def export(run_dirs: Sequence[Path | RunDir], fmt: str, out_dir: Path, *, progress: bool | None = None) -> str:
    """Export each run as Parquet (`fmt` "parquet") or CSV ("csv") into `out_dir`.

    Args:
        run_dirs: the run directories (RunDir or paths).
        fmt: "parquet" or "csv".
        out_dir: the folder the files go into (made when missing); an earlier export of the
            same run is replaced.
        progress: show progress (default: when stderr is a terminal).

    Returns:
        The one-line summary the CLI prints.

    Raises:
        LabtrackValueError: an unknown format.
        MissingDependencyError: Parquet without pyarrow.

    Example:
        >>> export([Path("labtrack/mnist/20261121-141503-k3f9qz")], "parquet", Path("out"))
    """
    if fmt not in ("parquet", "csv"):
        raise LabtrackValueError(f"cannot export tables as {fmt!r}: the formats are 'parquet' and 'csv'")
    if fmt == "parquet":
        require_pyarrow()
    write = write_parquet if fmt == "parquet" else write_csv
    out = Path(out_dir).expanduser().resolve()
    runs = [d if isinstance(d, RunDir) else RunDir(d) for d in run_dirs]
    started = time.perf_counter()
    points = 0
    with _Progress(progress, len(runs), fmt) as bar:
        for run in runs:
            _, n = write(read_run(run), out)
            points += n
            bar.advance(n)
    label = "Parquet" if fmt == "parquet" else "CSV"
    return (f"exported {len(runs)} run{'s' if len(runs) != 1 else ''} ({points:,} points) to {label} "
            f"in {out} in {time.perf_counter() - started:.1f} s")


class _Progress:
    """A rich progress bar over the runs on a terminal; nothing when piped."""

    def __init__(self, show: bool | None, total: int, fmt: str) -> None:
        import sys

        self._bar: Any = None
        self._points = 0
        if show is None:
            show = sys.stderr.isatty()
        if show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(f"exporting to {fmt}", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, points: int) -> None:
        self._points += points
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"exporting: {self._points:,} points")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def read_metadata(schema_metadata: dict[bytes, bytes] | None) -> dict[str, Any] | None:
    """The labtrack object of a Parquet file's key-value metadata (None when it has none)."""
    from .._store.reader import decode_nonfinite

    if not schema_metadata:
        return None
    raw = schema_metadata.get(META_KEY) or schema_metadata.get(PANDAS_KEY)
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return decode_nonfinite(obj) if isinstance(obj, dict) and "run" in obj else None
