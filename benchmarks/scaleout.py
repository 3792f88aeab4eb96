"""Several servers: 64 clients x 20 scalars through nginx to 2 `labtrack serve` processes.

    python benchmarks/scaleout.py            # 64 clients x 20 scalars x 200 steps
    python benchmarks/scaleout.py --quick    # 64 clients x 20 scalars x 20 steps

Real components, as in tests/test_scaleout.py: moto's S3 server, a throwaway PostgreSQL
cluster (Debian's initdb/pg_ctl), two `labtrack serve --root s3://... --index
postgresql://...` processes and nginx balancing over them. The clients are labtrack Runs
(`remote=` the nginx URL), 16 per process in 4 processes, started together; each logs 20
scalars per step, a step every `--interval` seconds, then finishes (which waits until the
servers hold everything).

Measured:

* values/s: values logged / seconds from the first log() until the last client's finish()
  returned (everything committed in the bucket and the ledger);
* lag: for each point, from its log() (the time in its CSV line) until a browser's live
  stream on either server received it (one stream per server, following all 64 runs, so
  each point is seen once through the process that ingested it and once through the other,
  via NOTIFY and the bucket); p50 and p95;
* memory: the largest resident size of each server process, sampled every 0.5 s.

Writes its section of benchmarks/RESULTS.md (benchmarks/_results.py) unless --no-md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"
RESULTS_MD = HERE / "RESULTS.md"
MD_HEADING = "## Several servers: 64 clients x 20 scalars across 2 processes (benchmarks/scaleout.py)"

CLIENTS = r'''
import os, sys, threading, time
import labtrack

root, url, first, count, steps, interval, go = sys.argv[1:8]
first, count, steps, interval = int(first), int(count), int(steps), float(interval)
runs = [labtrack.Run(experiment="bench", root=root, remote=url, capture_git=False,
                     capture_console=False, system=False, flush_seconds=0.1)
        for _ in range(count)]
for r in runs:
    print("RUN", r.id, flush=True)
while not os.path.exists(go):
    time.sleep(0.01)

def work(run):
    names = [f"m{k:02d}" for k in range(20)]
    for step in range(steps):
        run.log({n: step * 0.001 + i for i, n in enumerate(names)}, step=step)
        time.sleep(interval)
    run.finish()

threads = [threading.Thread(target=work, args=(r,)) for r in runs]
for t in threads: t.start()
for t in threads: t.join()
print("DONE", time.time(), flush=True)
'''


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def follow(url: str, ids: list[str], lags: list[float], stop: threading.Event) -> None:
    """A browser's live stream: the lag of every point of a `scalars` event."""
    import httpx

    try:
        with httpx.stream("GET", f"{url}/api/v1/stream", params={"runs": ",".join(ids)},
                          timeout=60) as r:
            kind = None
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "scalars":
                    now = time.time()
                    lags.extend(now - t for t in json.loads(line[6:])["time"])
    except httpx.HTTPError:
        return


def measure(args: argparse.Namespace, work: Path, log: Any) -> dict[str, Any]:
    sys.path[:0] = [str(REPO / "tests"), str(SRC)]
    import httpx
    from cluster import Cluster, child_env  # tests/cluster.py
    from pg import Cluster as Postgres, _bin_dir  # tests/pg.py

    bin_dir = _bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL's server binaries are not installed (make test installs them)")
    pg_base = Path(tempfile.mkdtemp(prefix="labtrack-bench-pg-"))
    pg = Postgres(bin_dir, pg_base, "postgres" if os.getuid() == 0 else None)
    pg.start()
    c = Cluster(work, pg.create_db(), n=2)
    procs: list[subprocess.Popen[str]] = []
    rss: dict[str, int] = {}
    stop = threading.Event()
    try:
        c.start()
        log(f"cluster up: nginx {c.url}, servers {[s.url for s in c.servers]}")
        script = work / "clients.py"
        script.write_text(CLIENTS)
        go = work / "go"
        per = args.clients // args.processes
        env = child_env({"LABTRACK_SYNC_TIMEOUT": "300"})
        for p in range(args.processes):
            procs.append(subprocess.Popen(
                [sys.executable, str(script), str(work / f"client-root-{p}"), c.url, str(p * per),
                 str(per), str(args.steps), str(args.interval), str(go)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        ids: list[str] = []
        for p in procs:
            assert p.stdout is not None
            while len(ids) < per * (procs.index(p) + 1):
                line = p.stdout.readline()
                if not line:
                    raise SystemExit(f"a client process died: {p.stderr.read() if p.stderr else ''}")
                if line.startswith("RUN "):
                    ids.append(line.split()[1])

        def listed(url: str) -> bool:
            got = httpx.get(url + "/api/v1/runs", params={"limit": 1000}).json()["runs"]
            return set(ids) <= {r["id"] for r in got}

        def mirrored() -> bool:  # each process streams from its own mirror
            return all((s.mirror / "bench" / i / "run.json").exists() for s in c.servers for i in ids)

        deadline = time.monotonic() + 120
        while not (all(listed(s.url) for s in c.servers) and mirrored()):
            if time.monotonic() > deadline:
                raise SystemExit(f"the runs did not reach both servers:\n{c.output()}")
            time.sleep(0.2)
        log(f"{len(ids)} runs on both servers; streams open, logging starts")
        lags: dict[str, list[float]] = {s.name: [] for s in c.servers}
        readers = [threading.Thread(target=follow, args=(s.url, ids, lags[s.name], stop), daemon=True)
                   for s in c.servers]
        for t in readers:
            t.start()

        def sample() -> None:
            while not stop.is_set():
                for s in c.servers:
                    try:
                        rss[s.name] = max(rss.get(s.name, 0), s.rss_kb())
                    except OSError:
                        pass
                stop.wait(0.5)

        threading.Thread(target=sample, daemon=True).start()
        time.sleep(1.0)
        t0 = time.time()
        go.write_text("go")
        ends = []
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode != 0 or "DONE" not in out:
                raise SystemExit(f"a client process failed:\n{err}\n{c.output()}")
            if "not yet fully on the server" in err:
                raise SystemExit(f"a client did not deliver everything:\n{err[-2000:]}\n{c.output()}")
            ends.append(float(out.split("DONE", 1)[1].split()[0]))
        seconds = max(ends) - t0
        values = args.clients * 20 * args.steps
        # Every point reaches both streams (the other process's through NOTIFY and its
        # mirror): wait for the last ones, so that a late point counts with its lag.
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline and any(len(v) < values for v in lags.values()):
            time.sleep(0.25)
        time.sleep(0.5)
        stop.set()
        all_lags = [v for lst in lags.values() for v in lst]
        return {
            "clients": args.clients, "scalars": 20, "steps": args.steps, "interval": args.interval,
            "values": values, "seconds": seconds, "values_per_s": values / seconds,
            "offered_per_s": args.clients * 20 / args.interval,
            "lag_p50": percentile(all_lags, 0.5), "lag_p95": percentile(all_lags, 0.95),
            "lag_points": len(all_lags), "lag_points_expected": values * len(lags),
            "lag_by_server": {k: [percentile(v, 0.5), percentile(v, 0.95), len(v)] for k, v in lags.items()},
            "rss_mb": {k: v / 1024 for k, v in rss.items()},
        }
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        c.stop()
        pg.stop()
        shutil.rmtree(pg_base, ignore_errors=True)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    rss = ", ".join(f"{k} {v:,.0f} MB" for k, v in sorted(r["rss_mb"].items()))
    by = "; ".join(f"stream on {k}: p50 {a:.2f} s, p95 {b:.2f} s ({n:,} of {r['values']:,} points)"
                   for k, (a, b, n) in sorted(r["lag_by_server"].items()))
    return "\n".join([
        MD_HEADING, "",
        f"`{r['command']}` at {r['source']}, {r['finished']}; {m['cpus']} CPUs shared with other "
        f"sessions (noisy), load {m['load_start']} at the start, Python {m['python']}. Real moto S3 "
        "server, PostgreSQL 15 cluster, 2 `labtrack serve` processes behind nginx, all on this "
        f"machine. {r['clients']} clients (labtrack Runs in 4 processes) log {r['scalars']} scalars "
        f"per step, a step every {r['interval']} s, {r['steps']} steps each.", "",
        "| measure | value |", "| --- | --- |",
        f"| values logged | {r['values']:,} |",
        f"| values/s, first log() to the last finish() (all committed) | {r['values_per_s']:,.0f} "
        f"(offered {r['offered_per_s']:,.0f}) |",
        f"| lag log() -> browser stream, p50 | {r['lag_p50']:.2f} s |",
        f"| lag log() -> browser stream, p95 | {r['lag_p95']:.2f} s |",
        f"| points received by the 2 streams | {r['lag_points']:,} of "
        f"{r.get('lag_points_expected', 2 * r['values']):,} |",
        f"| server memory (largest RSS) | {rss} |", "",
        f"Lag per stream: {by}. A point's lag includes the client's flush (0.1 s) and shipper "
        "round (0.2 s), the ingest commit, NOTIFY and the other process's copy from the bucket, "
        "and the stream's 0.5 s poll.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between a client's steps")
    ap.add_argument("--quick", action="store_true", help="20 steps per client")
    ap.add_argument("--drain", type=float, default=60.0,
                    help="seconds to wait after the last finish() for the streams' last points")
    ap.add_argument("--json", metavar="PATH", help="write every figure here")
    ap.add_argument("--no-md", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 20)
    if args.clients % args.processes:
        ap.error("--clients must be a multiple of --processes")
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {msg}", file=sys.stderr, flush=True)

    load_start = f"{os.getloadavg()[0]:.1f}"
    work = Path(tempfile.mkdtemp(prefix="labtrack-bench-scaleout-"))
    try:
        r = measure(args, work, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    source = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "?"
    r.update(command="python benchmarks/scaleout.py" + (" --quick" if args.quick else ""),
             source=source, finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             machine={"cpus": os.cpu_count(), "load_start": load_start,
                      "python": platform.python_version()})
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    section = markdown(r)
    print(section)
    if not args.no_md:
        sys.path.insert(0, str(HERE))
        from _results import replace_section

        replace_section(RESULTS_MD, MD_HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
