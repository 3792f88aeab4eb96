"""What the system sampler costs: CPU time per sample, and its effect on `run.log`.

    .venv/bin/python benchmarks/system_cost.py [--steps 5000000] [--reps 7] [--samples 100]

1. CPU per sample: a run with the sampler every 0.05 s, idle for `--samples` samples; the
   sampler thread's own CPU time (time.thread_time inside the thread) per sample, and once
   for opening psutil/NVML.
2. Effect on run.log: the S1 loop (`run.log({"loss": x})`, `--steps` calls) in runs with the
   sampler off, off again (the noise), on at the default 10 s, and on every 0.1 s (a stress:
   100 times the default rate); interleaved repetitions in one process, medians of the time
   per call and their ratio to "off".
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


def s1_loop(run: labtrack.Run, n: int) -> float:
    log = run.log
    t0 = time.perf_counter()
    for i in range(n):
        log({"loss": 0.5})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5_000_000)  # ~1 s: the 0.1 s stress samples during it
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.json:  # stdout carries the JSON alone; init's run id lines go to stderr
        real_stdout, sys.stdout = sys.stdout, sys.stderr
    root = tempfile.mkdtemp(prefix="labtrack-system-bench-")
    opts = dict(root=root, capture_console=False, capture_git=False)

    # 1. CPU per sample.
    run = labtrack.Run("cost", **opts, system=True, _environ={"LABTRACK_SYSTEM_SECONDS": "0.05"})
    sampler = run._sampler
    deadline = time.time() + 60
    while sampler.samples < args.samples and time.time() < deadline:
        time.sleep(0.05)
    run.finish()
    per_sample = (sampler.thread_seconds / sampler.samples) if sampler.samples else float("nan")
    series = len(json.load(open(os.path.join(run.dir, "summary.json"))))

    # 2. run.log with the sampler off / on.
    modes = {"off": {"system": False}, "off (again)": {"system": False},
             "on, every 10 s": {"system": True, "_environ": {}},
             "on, every 0.1 s": {"system": True, "_environ": {"LABTRACK_SYSTEM_SECONDS": "0.1"}}}
    times: dict[str, list[float]] = {m: [] for m in modes}
    samples_in_loop: dict[str, list[int]] = {m: [] for m in modes}
    for _ in range(args.reps):
        for mode, kw in modes.items():
            run = labtrack.Run("s1", **opts, **kw)
            time.sleep(0.15)  # past the sampler's start-up (imports, first sample)
            before = run._sampler.samples if run._sampler else 0
            times[mode].append(s1_loop(run, args.steps) / args.steps)
            samples_in_loop[mode].append((run._sampler.samples if run._sampler else 0) - before)
            run.finish()
    base = statistics.median(times["off"])
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}",
        "cpu_ms_per_sample": per_sample * 1e3,
        "cpu_ms_opening": sampler.init_seconds * 1e3,
        "samples": sampler.samples,
        "series_per_sample": series,
        "log_us_per_call": {m: statistics.median(v) * 1e6 for m, v in times.items()},
        "ratio_to_off": {m: statistics.median(v) / base for m, v in times.items()},
        "samples_during_loop": {m: statistics.median(v) for m, v in samples_in_loop.items()},
    }
    if args.json:
        print(json.dumps(out, indent=2), file=real_stdout)
        return
    print(f"machine: {out['machine']}")
    print(f"CPU per sample: {out['cpu_ms_per_sample']:.2f} ms ({series} series, {sampler.samples} samples); "
          f"opening the libraries once: {out['cpu_ms_opening']:.1f} ms")
    print(f"  = {out['cpu_ms_per_sample'] / 10e3 * 100:.4f}% of one core at the default 10 s")
    print(f"run.log, S1 loop of {args.steps:,} calls, median of {args.reps}:")
    for m in modes:
        print(f"  {m:17s} {out['log_us_per_call'][m]:.3f} µs/call  ratio {out['ratio_to_off'][m]:.3f}  "
              f"(samples during the loop: {out['samples_during_loop'][m]:g})")


if __name__ == "__main__":
    main()
