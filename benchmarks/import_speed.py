"""Import speed: `labtrack import tensorboard` of a log of 1,000,000 scalar points.

Usage:
    .venv/bin/python benchmarks/import_speed.py [--points 1000000] [--tags 10] [--repeat 3]
        [--peers-python /work/peers-venv/bin/python] [--keep DIR] [--json]

The log is written by a real TensorBoard writer (tensorboardX's SummaryWriter, one
`add_scalar` per point, which is one event per point as torch and tensorboardX write them) in
the peers' side venv (tests/peers.py; LABTRACK_TEST_PEERS_VENV or --peers-python). Writing it
takes a while and is not timed; with --keep DIR it is written once and reused.

Timed: the whole command as a user runs it, a new process with output to a pipe
(`labtrack import tensorboard LOGDIR --root NEW_ROOT`), into a fresh root each time; reported
are the medians of --repeat runs of its wall time and of its CPU time (user + system, every
thread: on a busy machine the wall time is mostly waiting for a core), plus the in-process
phases of one more run (decode, log, finish).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WRITE = """
import sys, time, math
from tensorboardX import SummaryWriter
logdir, points, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
w = SummaryWriter(logdir, max_queue=10000, flush_secs=60)
steps = points // tags
t0 = 1767225600.0
names = ["loss", "accuracy", "lr", "val/loss", "val/accuracy", "grad_norm", "train/throughput",
         "epoch", "gpu/memory_allocated", "weight_decay"]
names = [names[k % len(names)] + ("" if k < len(names) else f"_{k}") for k in range(tags)]
for step in range(steps):
    for k, name in enumerate(names):  # tags of different lengths, interleaved, as a training loop logs
        w.add_scalar(name, math.sin(step * 0.001 + k) * (k + 1), step, walltime=t0 + step * 0.01 + k * 0.0001)
w.close()
"""


def peers_python(given: str | None) -> str:
    if given:
        return given
    venv = os.environ.get("LABTRACK_TEST_PEERS_VENV")
    if venv:
        return str(Path(venv) / "bin" / "python")
    sys.path.insert(0, str(REPO / "tests"))
    from peers import peers_python as make  # builds the side venv when missing

    return str(make())


def write_log(python: str, logdir: Path, points: int, tags: int) -> float:
    t = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([python, "-c", WRITE, str(logdir), str(points), str(tags)], check=True, env=env)
    return time.perf_counter() - t


def time_cli(logdir: Path, work: Path) -> tuple[float, float, str]:
    """Wall seconds and CPU seconds (user + system, all threads) of one `labtrack import`."""
    import resource

    root = work / f"root-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", "import", "tensorboard",
                        str(logdir), "--root", str(root)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"labtrack import failed:\n{p.stderr}")
    shutil.rmtree(root)
    return seconds, cpu, p.stdout.strip()


def phases(logdir: Path, work: Path) -> dict[str, float]:
    """decode / log / finish of one import, timed in this process."""
    sys.path.insert(0, str(REPO / "src"))
    from labtrack.importers import _tb_decode
    from labtrack.importers._tensorboard import discover

    out: dict[str, float] = {}
    t = time.perf_counter()
    d = _tb_decode.Decoded()
    for files in discover(logdir).values():
        for f in files:
            _tb_decode.decode(f.read_bytes(), str(f), d)
    cols = d.columns()
    out["decode_s"] = time.perf_counter() - t
    from labtrack.importers._sink import Import

    imp = Import("tensorboard", logdir, root=work / "phases", progress=False)
    r = imp.run("bench", experiment="bench", started=d.first)
    assert r is not None
    t = time.perf_counter()
    for tag, (steps, values, walls) in cols.items():
        r.series(tag, steps, values, walls)
    out["log_s"] = time.perf_counter() - t
    t = time.perf_counter()
    r.done()
    out["finish_s"] = time.perf_counter() - t
    out["points"] = d.points
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--tags", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers-python", default=None)
    ap.add_argument("--keep", default=None, help="write the log here once and reuse it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labtrack-import-speed-"))
    try:
        logdir = Path(args.keep) if args.keep else work / "tb"
        stamp = logdir / ".points"
        wrote = None
        if not (stamp.exists() and stamp.read_text() == f"{args.points} {args.tags}"):
            shutil.rmtree(logdir, ignore_errors=True)
            wrote = write_log(peers_python(args.peers_python), logdir / "run", args.points, args.tags)
            stamp.write_text(f"{args.points} {args.tags}")
        size = sum(f.stat().st_size for f in logdir.rglob("*tfevents*"))
        times, cpus, line = [], [], ""
        load = os.getloadavg()[0]
        for _ in range(args.repeat):
            s, cpu, line = time_cli(logdir, work)
            times.append(s)
            cpus.append(cpu)
        result = {"points": args.points, "tags": args.tags, "event_bytes": size,
                  "median_s": statistics.median(times), "times_s": times,
                  "median_cpu_s": statistics.median(cpus), "cpu_s": cpus, "summary": line,
                  "write_s": wrote, **phases(logdir, work),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}",
                  "load_before": load, "load_after": os.getloadavg()[0]}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{args.points:,} points ({size / 1e6:.1f} MB of events) imported in a median "
                  f"{result['median_s']:.2f} s wall (runs: {', '.join(f'{t:.2f}' for t in times)}), "
                  f"{result['median_cpu_s']:.2f} s CPU; in-process decode {result['decode_s']:.2f} s, "
                  f"log {result['log_s']:.2f} s, finish {result['finish_s']:.2f} s; "
                  f"load {load:.1f} -> {result['load_after']:.1f} on {result['machine']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
