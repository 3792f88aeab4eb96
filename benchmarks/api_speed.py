"""How fast the dashboard's API answers with many runs and long series.

    .venv/bin/python benchmarks/api_speed.py [--runs 10000] [--points 10000000] [--reps 15]

Everything goes through a real `labtrack ui` server on a free 127.0.0.1 port, over HTTP:

1. Runs list over a root of `--runs` runs (params, summary): the first request (which builds
   the index from the files), then the median of `--reps` requests for one page of 100 rows
   sorted by start, sorted by a metric, filtered by a where expression, and by free text.
2. One series of `--points` points (a 10M-point CSV is ~0.4 GB): the first request (parse
   with pyarrow), then medians of the downsampled series (2,000 points), a zoom into 2,000
   points of it (full resolution), a zoom into 20% downsampled, and the series after 1,000 more lines
   were appended (read incrementally).
3. A second server over the same root: its first runs page and first series request (the
   index and the parsed series are kept under <root>/.labtrack/).

The data is kept in benchmarks/.work/ (git-ignored) and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORK = HERE / ".work" / "api_speed"


def make_runs(root: Path, n: int) -> None:
    """`n` finished runs in 10 experiments, written the way labtrack writes them."""
    marker = root / f".made-{n}"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    for i in range(n):
        rid = f"20261121-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:06d}"
        d = root / f"exp{i % 10}" / rid
        d.mkdir(parents=True)
        meta = {"format_version": 1, "id": rid, "experiment": f"exp{i % 10}", "name": f"trial-{i}",
                "comment": f"sweep point {i}", "tags": ["sweep", f"g{i % 7}"], "status": "finished",
                "started": f"2026-11-21T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00",
                "ended": f"2026-11-21T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.500000+00:00",
                "pid": 1, "host": "bench", "user": "bench",
                "git": {"commit": f"{i:040x}", "branch": "main", "dirty": i % 2 == 0}}
        (d / "run.json").write_text(json.dumps(meta))
        (d / "params.json").write_text(json.dumps({"lr": 10 ** -(i % 5), "batch": 32 * (1 + i % 4),
                                                   "opt": {"name": "adam", "beta": 0.9}}))
        summary = {name: {"last": (i * k) % 97 / 97, "min": 0.0, "max": 1.0, "mean": 0.5,
                          "sum": 50.0, "count": 100, "step": 99, "time": 1.7e9}
                   for k, name in enumerate(["train/loss", "val/loss", "val/acc"], start=1)}
        (d / "summary.json").write_text(json.dumps(summary))
    marker.write_text("")


def make_series(root: Path, n: int) -> str:
    """One run with a series of `n` points (a random walk with a few spikes); its id."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rid = "20261121-000000-long00"
    d = root / "long" / rid
    path = d / "scalars" / "train" / "loss.csv"
    marker = d / f".made-{n}"
    if marker.exists():
        return rid
    if d.exists():
        shutil.rmtree(d)
    path.parent.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({
        "format_version": 1, "id": rid, "experiment": "long", "name": "ten-million",
        "status": "finished", "started": "2026-11-21T00:00:00.000000+00:00",
        "ended": "2026-11-21T01:00:00.000000+00:00", "pid": 1, "host": "bench"}))
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(b"step,value,time\n")
        chunk = 1_000_000
        level = 0.0
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            walk = level + np.cumsum(rng.normal(0, 0.01, m))
            level = float(walk[-1])
            walk[rng.integers(0, m, 3)] += 50.0  # spikes the envelope must keep
            table = pa.table({"step": np.arange(start, start + m, dtype=np.int64), "value": walk,
                              "time": np.round(1.7e9 + np.arange(start, start + m) / 1000, 3)})
            buf = pa.BufferOutputStream()
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
            f.write(buf.getvalue().to_pybytes())
    marker.write_text("")
    return rid


class Server:
    """`labtrack ui ROOT --port 0` in a subprocess."""

    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from labtrack.cli import main; main()", "ui", str(root), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if not m:
            raise SystemExit(f"labtrack ui did not start: {line}{self.proc.stdout.read()}")
        self.url = m.group(1)
        for _ in range(300):
            try:
                httpx.get(self.url + "/api/v1/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def timed(client: httpx.Client, url: str, params: dict[str, str], check: Callable[[Any], None]) -> float:
    t0 = time.perf_counter()
    r = client.get(url, params=params)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"{url} {params}: {r.status_code} {r.text[:300]}")
    check(r.json())
    return elapsed


def median_ms(client: httpx.Client, url: str, params: dict[str, str], reps: int,
              check: Callable[[Any], None] = lambda body: None) -> float:
    return 1000 * statistics.median(timed(client, url, params, check) for _ in range(reps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    root = WORK / "root"
    t0 = time.perf_counter()
    make_runs(root, args.runs)
    rid = make_series(root, args.points)
    prepared = time.perf_counter() - t0
    index = root / ".labtrack"
    if index.exists():
        shutil.rmtree(index)  # the first request builds the index from the files

    results: dict[str, Any] = {"runs": args.runs + 1, "points": args.points, "reps": args.reps,
                               "python": platform.python_version(), "cpus": os.cpu_count(),
                               "load_average": os.getloadavg()[0]}
    server = Server(root)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            def page(body: Any) -> None:
                assert body["total"] >= 1 and len(body["runs"]) <= 100, body.get("total")

            results["runs_first_ms"] = 1000 * timed(c, "/api/v1/runs", {"limit": "100"}, page)
            results["runs_page_ms"] = median_ms(c, "/api/v1/runs", {"limit": "100"}, args.reps, page)
            results["runs_sorted_by_metric_ms"] = median_ms(
                c, "/api/v1/runs", {"limit": "100", "sort": "-metrics.val/acc"}, args.reps, page)
            results["runs_where_ms"] = median_ms(
                c, "/api/v1/runs", {"limit": "100", "where": "params.lr < 0.01 and metrics.val/acc > 0.5"},
                args.reps, page)
            results["runs_text_ms"] = median_ms(c, "/api/v1/runs", {"limit": "100", "q": "g3 sweep"},
                                                args.reps, page)
            results["runs_last_page_ms"] = median_ms(
                c, "/api/v1/runs", {"limit": "100", "offset": str(args.runs - 100)}, args.reps, page)

            url = f"/api/v1/runs/{rid}/scalars"
            n = args.points

            def full(body: Any) -> None:
                assert body["total"] >= n and len(body["value"]) <= 2000 and max(body["max"]) > 40

            results["series_first_ms"] = 1000 * timed(c, url, {"name": "train/loss"}, full)
            results["series_ms"] = median_ms(c, url, {"name": "train/loss"}, args.reps, full)
            results["series_x_time_ms"] = median_ms(c, url, {"name": "train/loss", "x": "time"}, args.reps, full)
            lo = n // 2

            def exact(body: Any) -> None:
                # 1,998 points inside the range plus one neighbour each side, all of them
                assert not body["downsampled"] and len(body["value"]) == 2000, body["count"]

            results["zoom_2000_points_full_resolution_ms"] = median_ms(
                c, url, {"name": "train/loss", "xmin": str(lo), "xmax": str(lo + 1997)}, args.reps, exact)
            results["zoom_20pct_ms"] = median_ms(
                c, url, {"name": "train/loss", "xmin": str(lo), "xmax": str(lo + n // 5)}, args.reps)
            path = root / "long" / rid / "scalars" / "train" / "loss.csv"
            size = path.stat().st_size
            appended = []
            try:
                for rep in range(args.reps):
                    with open(path, "ab") as f:
                        base = n + rep * 1000
                        f.write("".join(f"{base + i},0.5,{1.7e9 + (base + i) / 1000:.3f}\n"
                                        for i in range(1000)).encode())
                    appended.append(timed(c, url, {"name": "train/loss"}, full))
            finally:
                os.truncate(path, size)  # leave the file as made, for the next benchmark run
            results["series_after_append_ms"] = 1000 * statistics.median(appended)
    finally:
        server.stop()
    # A second server over the same root: the index and the parsed series are on disk now.
    server = Server(root)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            results["restart_runs_first_ms"] = 1000 * timed(c, "/api/v1/runs", {"limit": "100"}, page)
            results["restart_series_first_ms"] = 1000 * timed(
                c, f"/api/v1/runs/{rid}/scalars", {"name": "train/loss"}, full)
    finally:
        server.stop()
    results["prepare_s"] = prepared
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"labtrack API speed: {args.runs + 1} runs, one series of {args.points:,} points, "
          f"median of {args.reps}; {results['cpus']} CPUs, load average {results['load_average']:.1f}")
    for key, value in results.items():
        if key.endswith("_ms"):
            print(f"  {key:32s} {value:9.1f} ms")


if __name__ == "__main__":
    main()
