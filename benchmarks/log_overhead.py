"""The cost of run.log at the call site, and how many values per second the writer puts on disk.

    .venv/bin/python benchmarks/log_overhead.py [--steps 200000] [--reps 7]

1. Call-site ratio: `run.log({"loss": x})` against a baseline loop doing `d.update({...})`
   and `l.append(i)`, interleaved repetitions in one process; the median ratio and the ratio
   of the fastest repetitions (issue target: at most 3x).
2. Writer throughput: 20 scalars per step logged as fast as possible, then `flush()`; values
   on disk per second over the whole time, log calls included; and the writer alone (the
   values buffered first, then one flush) (target: >= 1,000,000/s).
3. finish(): time to write everything and stop, after the last log call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import labtrack


def baseline(n: int) -> float:
    d: dict[str, float] = {}
    lst: list[int] = []
    t0 = time.perf_counter()
    for i in range(n):
        d.update({"loss": 0.5})
        lst.append(i)
    return time.perf_counter() - t0


def logging(run: labtrack.Run, n: int) -> float:
    log = run.log
    t0 = time.perf_counter()
    for _ in range(n):
        log({"loss": 0.5})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--wide-steps", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="labtrack-bench-")
    opts = dict(root=root, capture_console=False, capture_git=False)

    run = labtrack.Run("overhead", **opts)
    base_t, log_t = [], []
    for _ in range(args.reps):
        base_t.append(baseline(args.steps))
        log_t.append(logging(run, args.steps))
    run.finish()
    ratios = [b and lg / b for b, lg in zip(base_t, log_t)]

    run = labtrack.Run("throughput", **opts)
    keys = [f"metric_{i:02d}" for i in range(20)]
    t0 = time.perf_counter()
    for step in range(args.wide_steps):
        run.log({k: step * 0.001 + j for j, k in enumerate(keys)}, step=step)
    t_logged = time.perf_counter()
    run.flush()
    t_flushed = time.perf_counter()
    run.finish()
    t_finished = time.perf_counter()
    values = args.wide_steps * len(keys)
    lines = sum(1 for _ in open(os.path.join(run.dir, "scalars", "metric_00.csv"))) - 1
    assert lines == args.wide_steps, (lines, args.wide_steps)

    # The writer alone: values buffered first (no flush during logging), then one flush().
    run = labtrack.Run("writer-alone", **opts, flush_seconds=3600)
    for step in range(args.wide_steps):
        run.log({k: step * 0.001 + j for j, k in enumerate(keys)}, step=step)
    w0 = time.perf_counter()
    run.flush()
    writer_alone = values / (time.perf_counter() - w0)
    run.finish()

    result = {
        "call_site": {
            "steps": args.steps, "reps": args.reps,
            "ns_per_log_median": statistics.median(log_t) / args.steps * 1e9,
            "ns_per_baseline_median": statistics.median(base_t) / args.steps * 1e9,
            "ratio_median": statistics.median(ratios),
            "ratio_of_fastest": min(log_t) / min(base_t),
        },
        "writer": {
            "values": values,
            "seconds_log_and_flush": t_flushed - t0,
            "values_per_second": values / (t_flushed - t0),
            "flush_seconds_after_last_log": t_flushed - t_logged,
            "finish_seconds": t_finished - t_flushed,
            "writer_alone_values_per_second": writer_alone,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    c, w = result["call_site"], result["writer"]
    print(f"run.log, one scalar: {c['ns_per_log_median']:.0f} ns/call (median of {args.reps}); "
          f"baseline {c['ns_per_baseline_median']:.0f} ns; ratio median {c['ratio_median']:.2f}, "
          f"fastest-vs-fastest {c['ratio_of_fastest']:.2f} (target <= 3)")
    print(f"writer: {values:,} values logged and on disk in {w['seconds_log_and_flush']:.2f} s = "
          f"{w['values_per_second']:,.0f} values/s (target >= 1,000,000); flush after the last "
          f"call {w['flush_seconds_after_last_log']:.3f} s, finish {w['finish_seconds']:.3f} s")
    print(f"writer alone (values buffered, then one flush): "
          f"{w['writer_alone_values_per_second']:,.0f} values/s")


if __name__ == "__main__":
    main()
