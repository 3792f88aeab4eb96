"""Parquet and CSV export and the Parquet import of one long run, timed; and merge of many runs.

    python benchmarks/tables_roundtrip.py [--points 1000000] [--series 10] [--runs 200]

Writes a run of `--points` scalar points (in `--series` series) and `--runs` small runs into a
temporary root, then times, in this process: `export --to parquet`, `export --to csv`,
`import parquet` of the Parquet file (checking that every series file comes back byte for
byte), and `merge` of the small runs into a fresh root and once more (nothing to copy). Prints
one JSON object: wall and CPU seconds of each step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    import labtrack
    from labtrack import importers
    from labtrack._export import tables
    from labtrack._merge import merge
    from labtrack._store.rundir import RunDir, iter_runs

    results: dict[str, Any] = {"points": args.points, "series": args.series, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        kw: dict[str, Any] = dict(capture_git=False, capture_console=False, system=False, _announce=False)
        run = labtrack.Run("long", root=base / "root", **kw)
        steps = args.points // args.series
        for i in range(steps):
            run.log({f"s{k}": i * 0.5 + k / 3 for k in range(args.series)}, step=i)
        run.finish()
        for _ in range(args.runs):
            small = labtrack.Run("small", root=base / "many", config={"lr": 0.1}, **kw)
            for i in range(100):
                small.log({"loss": 1 / (i + 1), "acc": i / 100}, step=i)
            small.finish()

        for fmt in ("parquet", "csv"):
            line, wall, cpu = timed(lambda: tables.export([Path(run.dir)], fmt, base / "out"))
            results[f"export_{fmt}"] = {"wall_s": wall, "cpu_s": cpu, "summary": line}
        ids, wall, cpu = timed(lambda: importers.parquet(base / "out", root=base / "back", progress=False))
        results["import_parquet"] = {"wall_s": wall, "cpu_s": cpu}
        [back] = list(iter_runs(base / "back"))
        original = {rel: (Path(run.dir) / rel).read_bytes() for _, rel in RunDir(run.dir).named("scalars")}
        results["import_parquet"]["series_files_identical"] = all(
            (back.path / rel).read_bytes() == data for rel, data in original.items())
        for label in ("merge", "merge_again"):
            line, wall, cpu = timed(lambda: merge([base / "many"], base / "merged", progress=False))
            results[label] = {"wall_s": wall, "cpu_s": cpu, "summary": line}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
