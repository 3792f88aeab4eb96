"""Remote logging benchmark.

1. Scale: N client processes (default 32), each a real labtrack run logging 20 scalars per
   step as fast as it can for D seconds, replicate to one `labtrack serve` process on a free
   127.0.0.1 port. Reported: values logged and ingested per second, end-to-end lag (from
   `run.log` to the line being in the server's file, sampled every second from a `wall`
   series whose values are the logging time), the server's RSS over time, and whether the
   server's copy ends byte-identical.
2. Cost: `run.log` of 20 scalars per call with the server down vs. without a server, in
   one process, alternating, median of several repeats (ratio ~1 means no slowdown).

    .venv/bin/python benchmarks/remote_ingest.py [--clients 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABTRACK = [sys.executable, "-c", "from labtrack.cli import main; main()"]

CLIENT = r'''
import json, os, sys, time
os.nice(int(sys.argv[5]))
import labtrack
root, url, start_at, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
run = labtrack.init(experiment="bench", root=root, remote=url, capture_git=False,
                    capture_console=False)
keys = [f"m{j:02d}" for j in range(19)]
while time.time() < start_at:
    time.sleep(0.01)
step = 0
errors = 0
end = start_at + seconds
now = time.time()
while now < end:
    d = {k: step * 0.5 for k in keys}
    d["wall"] = now
    try:
        run.log(d, step=step)
    except BufferError:  # a core writer race (reported), not a remote cost
        errors += 1
    step += 1
    if step % 64 == 0:
        now = time.time()
t0 = time.time()
run.finish()
print(json.dumps({"dir": str(run.dir), "steps": step - errors, "finish_s": time.time() - t0,
                  "buffer_errors": errors}), flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def last_value(path: Path) -> float | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 512))
            tail = f.read()
    except OSError:
        return None
    lines = tail[: tail.rfind(b"\n")].split(b"\n")
    if not lines or not lines[-1] or lines[-1].startswith(b"step"):
        return None
    try:
        return float(lines[-1].split(b",")[1])
    except (IndexError, ValueError):
        return None


def count_lines(root: Path) -> int:
    n = 0
    for p in root.rglob("scalars/*.csv"):
        with open(p, "rb") as f:
            n += f.read().count(b"\n") - 1
    return n


def scale(clients: int, seconds: float, nice: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="labtrack-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv_root = work / "server"
    log = open(work / "serve.log", "wb")
    server = subprocess.Popen([*LABTRACK, "serve", "--root", str(srv_root), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    import httpx

    for _ in range(300):
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    rss_start = rss_mb(server.pid)
    script = work / "client.py"
    script.write_text(CLIENT)
    start_at = time.time() + 8.0  # let every client import and init first
    procs = [subprocess.Popen([sys.executable, str(script), str(work / f"c{i}"), url,
                               str(start_at), str(seconds), str(nice)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(clients)]
    while time.time() < start_at:
        time.sleep(0.05)
    lags: list[float] = []
    rss: list[float] = []
    ingested: list[tuple[float, int]] = []
    while time.time() < start_at + seconds:
        time.sleep(1.0)
        now = time.time()
        rss.append(rss_mb(server.pid))
        for p in srv_root.glob("bench/*/scalars/wall.csv"):
            v = last_value(p)
            if v is not None:
                lags.append(now - v)
        ingested.append((now, count_lines(srv_root)))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        if p.returncode != 0:
            raise SystemExit(f"a client failed:\n{err}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    rss.append(rss_mb(server.pid))
    total_steps = sum(r["steps"] for r in results)
    logged = total_steps * 20
    on_server = count_lines(srv_root)
    identical = True
    for r in results:
        local = Path(r["dir"])
        remote = srv_root / "bench" / local.name
        for f in local.rglob("*"):
            if f.is_file() and not f.name.startswith("."):
                other = remote / f.relative_to(local)
                if not other.is_file() or other.read_bytes() != f.read_bytes():
                    identical = False
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    shutil.rmtree(work, ignore_errors=True)
    # Ingest rate over the window where every client was logging (after the first second).
    (t1, n1), (t2, n2) = ingested[0], ingested[-1]
    lags.sort()
    return {
        "clients": clients, "seconds": seconds,
        "values_logged": logged, "values_logged_per_s": round(logged / seconds),
        "values_on_server_at_end": on_server, "server_copy_identical": identical,
        "ingest_values_per_s_during_window": round((n2 - n1) / (t2 - t1)) if t2 > t1 else None,
        "lag_s_median": round(statistics.median(lags), 2) if lags else None,
        "lag_s_p95": round(lags[int(0.95 * (len(lags) - 1))], 2) if lags else None,
        "lag_s_max": round(lags[-1], 2) if lags else None,
        "finish_wait_s_max": round(max(r["finish_s"] for r in results), 2),
        "core_buffer_errors": sum(r["buffer_errors"] for r in results),
        "server_rss_mb_start": round(rss_start, 1), "server_rss_mb_max": round(max(rss), 1),
        "server_rss_mb_end": round(rss[-1], 1),
    }


def log_cost(steps: int, repeats: int) -> dict[str, object]:
    import labtrack

    work = Path(tempfile.mkdtemp(prefix="labtrack-bench-cost-"))
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    keys = [f"m{j:02d}" for j in range(20)]
    times: dict[str, list[float]] = {"none": [], "down": []}
    buffer_errors = 0
    for i in range(repeats):
        for mode in ("none", "down") if i % 2 == 0 else ("down", "none"):
            run = labtrack.Run("cost", root=work, capture_git=False, capture_console=False,
                               remote=dead if mode == "down" else None)
            d = {k: 0.5 for k in keys}
            t0 = time.perf_counter()
            for step in range(steps):
                try:
                    run.log(d, step=step)
                except BufferError:  # a core writer race (reported), not a remote cost
                    buffer_errors += 1
            times[mode].append((time.perf_counter() - t0) / steps)
            run.finish()
    shutil.rmtree(work, ignore_errors=True)
    none, down = statistics.median(times["none"]), statistics.median(times["down"])
    return {"steps": steps, "repeats": repeats, "log_us_no_server": round(none * 1e6, 2),
            "log_us_server_down": round(down * 1e6, 2), "ratio_down_over_none": round(down / none, 3),
            "core_buffer_errors": buffer_errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--nice", type=int, default=10, help="niceness of the clients")
    ap.add_argument("--cost-steps", type=int, default=200_000)
    ap.add_argument("--cost-repeats", type=int, default=6)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {}
    if not args.skip_cost:
        os.environ["LABTRACK_SYNC_TIMEOUT"] = "0.5"
        out["log_cost"] = log_cost(args.cost_steps, args.cost_repeats)
        print(json.dumps(out["log_cost"]), flush=True)
    if not args.skip_scale:
        out["scale"] = scale(args.clients, args.seconds, args.nice)
        print(json.dumps(out["scale"]), flush=True)


if __name__ == "__main__":
    main()
