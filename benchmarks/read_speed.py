"""Read-side speed: listing 10,000 runs and reading a 1,000,000-point series.

Usage:
    .venv/bin/python benchmarks/read_speed.py [--runs 10000] [--points 1000000] [--repeat 5] [--json]

The runs are written directly as files (docs/format.md) into a temporary folder, which is
deleted afterwards. Reported are medians of `--repeat` timings:

* index build: the first `book.runs()` on a root without an index (cold);
* `book.runs()` with a warm index (the refresh stats every run's three JSON files);
* `labtrack ls` as a user runs it: a new process, warm index, output to a pipe;
* `run.scalars(name)` of one series of `--points` points into pandas.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_runs(root: Path, n: int, seed: int = 0) -> None:
    """Write `n` finished runs across 10 experiments, with params and summaries."""
    rnd = random.Random(seed)
    t0 = 1_795_000_000
    for i in range(n):
        exp = f"exp{i % 10}"
        started = t0 + i * 7
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + f"-{i:06d}"
        d = root / exp / run_id
        d.mkdir(parents=True)
        meta = {
            "format_version": 1, "id": run_id, "experiment": exp, "name": f"run{i}",
            "comment": "", "tags": ["cnn"] if i % 3 == 0 else [], "status": "finished",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime(started)),
            "ended": time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime(started + 300)),
            "pid": 1000 + i, "host": "bench-host", "user": "bench",
            "command": {"argv": ["train.py"], "script": "/x/train.py", "cwd": "/x", "python": "python3"},
            "git": {"commit": f"{i:040x}", "message": "m", "branch": "main", "dirty": i % 2 == 0,
                    "remote": None, "root": "/x"},
            "seed": i, "parent": None, "error": None,
            "checkpoints": {"last": None, "best": None, "mode": None, "metric": None},
        }
        params = {"lr": rnd.choice([0.1, 0.01, 0.001]), "batch": rnd.choice([32, 64, 128]),
                  "opt": {"name": rnd.choice(["adam", "sgd"]), "momentum": 0.9},
                  "layers": [64, 64], "dropout": rnd.random()}
        summary = {}
        for m in ("train/loss", "val/loss", "val/acc", "lr"):
            v = rnd.random()
            summary[m] = {"last": v, "min": v / 2, "max": v * 2, "mean": v, "sum": v * 100,
                          "count": 100, "step": 99, "time": started + 300.0}
        (d / "run.json").write_text(json.dumps(meta, indent=2))
        (d / "params.json").write_text(json.dumps(params, indent=2))
        (d / "summary.json").write_text(json.dumps(summary, indent=2))


def make_series(run_dir: Path, name: str, points: int) -> Path:
    """Write one scalars CSV of `points` points the way the writer formats them."""
    import numpy as np

    path = run_dir / "scalars" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    values = rng.standard_normal(points)
    times = 1_795_000_000.0 + np.arange(points) * 0.001
    with open(path, "w") as f:
        f.write("step,value,time\n")
        chunk = 100_000
        for start in range(0, points, chunk):
            stop = min(points, start + chunk)
            f.write("".join(f"{s},{v!r},{t:.3f}\n" for s, v, t in
                            zip(range(start, stop), values[start:stop].tolist(), times[start:stop].tolist())))
    return path


CPU: dict[str, float] = {}


def timed(fn, repeat: int, label: str | None = None) -> list[float]:  # type: ignore[no-untyped-def]
    """Wall times of `repeat` calls; the median CPU time (this process and its children,
    which is what the machine's other load does not inflate) goes into CPU[label]."""
    import resource

    out = []
    cpu = []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
                   + (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime))
    if label:
        CPU[label] = statistics.median(cpu)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import labtrack

    tmp = Path(tempfile.mkdtemp(prefix="labtrack-bench-"))
    results: dict[str, float] = {}
    try:
        root = tmp / "root"
        t = time.perf_counter()
        make_runs(root, args.runs)
        results["write_runs_s"] = time.perf_counter() - t

        with labtrack.open(root) as book:
            t = time.perf_counter()
            runs = book.runs()
            results["index_build_cold_s"] = time.perf_counter() - t
            assert len(runs) == args.runs, len(runs)
            results["book_runs_warm_median_s"] = statistics.median(
                timed(lambda: book.runs(), args.repeat, "book_runs_warm_cpu_s"))
            results["book_runs_where_warm_median_s"] = statistics.median(timed(
                lambda: book.runs(where='params.lr < 0.05 and metrics.val/acc:max > 0.5 and "cnn" in tags'),
                args.repeat, "book_runs_where_cpu_s"))
            results["index_query_page_median_s"] = statistics.median(timed(
                lambda: (book.index.refresh(), book.index.query(sort="-metrics.val/acc", limit=100)),
                args.repeat, "index_query_page_cpu_s"))

        def fresh_book() -> None:
            with labtrack.open(root) as b:
                b.runs()

        results["book_runs_new_book_median_s"] = statistics.median(
            timed(fresh_book, args.repeat, "book_runs_new_book_cpu_s"))

        labtrack_exe = Path(sys.executable).with_name("labtrack")
        cmd = [str(labtrack_exe), "ls", "--root", str(root)]

        def ls() -> None:
            out = subprocess.run(cmd, capture_output=True, check=True)
            assert out.stdout.count(b"\n") == args.runs + 1

        results["labtrack_ls_median_s"] = statistics.median(
            timed(ls, max(3, args.repeat // 2), "labtrack_ls_cpu_s"))
        startup = [sys.executable, "-c", "import labtrack.cli"]
        results["python_import_labtrack_cli_median_s"] = statistics.median(timed(
            lambda: subprocess.run(startup, check=True), 3, "python_import_labtrack_cli_cpu_s"))

        run_dir = next((root / "exp0").iterdir())
        path = make_series(run_dir, "big", args.points)
        results["series_file_mb"] = path.stat().st_size / 1e6
        view = labtrack.open(root)[run_dir.name]
        frame = view.scalars("big")
        assert len(frame) == args.points
        results["scalars_1m_median_s"] = statistics.median(
            timed(lambda: view.scalars("big"), args.repeat, "scalars_1m_cpu_s"))
        import pandas as pd

        results["pandas_read_csv_c_engine_median_s"] = statistics.median(timed(
            lambda: pd.read_csv(path), max(1, args.repeat // 2), "pandas_read_csv_cpu_s"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results.update(CPU)
    results = {k: round(v, 4) for k, v in results.items()}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        load = os.getloadavg()[0]
        print(f"runs={args.runs} points={args.points} repeat={args.repeat} cpus={os.cpu_count()} "
              f"load={load:.1f} (wall times grow with the machine's load; *_cpu_s do not)")
        for k, v in results.items():
            print(f"  {k:40s} {v}")


if __name__ == "__main__":
    main()
