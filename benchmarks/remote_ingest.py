"""Remote logging benchmark.

1. Scale: N client processes (default 32), each a real labtrack run logging 20 scalars per
   step as fast as it can for D seconds, replicate to one `labtrack serve` process on a free
   127.0.0.1 port. Reported: values logged and ingested per second, end-to-end lag (from
   `run.log` to the line being in the server's file, sampled every second from a `wall`
   series whose values are the logging time; the same for the local files shows the
   writer's share), the server's CPU and RSS, how many clients' finish() ran out of
   LABTRACK_SYNC_TIMEOUT, and -- after `labtrack sync` of every client root, as a user would
   run it -- whether the server's copy is byte-identical.
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
root, url, go, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
run = labtrack.init(experiment="bench", root=root, remote=url, capture_git=False,
                    capture_console=False)
keys = [f"m{j:02d}" for j in range(19)]
# Warm-up (not measured): the writer's first bulk flush imports numpy and pyarrow, which
# takes seconds on a thread competing with a busy loop for the GIL.
for step in range(6000):
    run.log({k: 0.0 for k in keys} | {"wall": time.time()}, step=step)
run.flush()
print("READY", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
step = 6000
errors = 0
end = time.time() + seconds
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
print(json.dumps({"dir": str(run.dir), "steps": step - errors, "window_steps": step - 6000 - errors,
                  "finish_s": time.time() - t0,
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    go = work / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(work / f"c{i}"), url,
                               str(go), str(seconds), str(nice)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(clients)]
    for p in procs:  # every client has imported, started its run and warmed up
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"a client failed to start: {line}{p.communicate()[1]}")
    before = count_lines(srv_root)
    go.touch()
    start_at = time.time()
    cpu_start = cpu_seconds(server.pid)
    lags: list[float] = []
    local_lags: list[float] = []
    rss: list[float] = []
    ingested: list[tuple[float, int]] = []
    while time.time() < start_at + seconds:
        time.sleep(1.0)
        now = time.time()
        rss.append(rss_mb(server.pid))
        # Staleness of the server's copy: now minus the logging time of the newest value it
        # holds. Clients log continuously from start_at, so a copy with nothing newer than
        # start_at is at least now - start_at behind. The same for the local files (the
        # writer's share of the lag).
        for pattern, into in (("bench/*/scalars/wall.csv", lags), ("c*/bench/*/scalars/wall.csv",
                                                                  local_lags)):
            base = srv_root if into is lags else work
            for f in base.glob(pattern):
                v = last_value(f)
                into.append(now - max(v if v is not None else start_at, start_at))
        ingested.append((now, count_lines(srv_root)))
        if os.environ.get("BENCH_DEBUG"):
            print("sample", round(now - start_at, 1), ingested[-1][1], len(lags), rss[-1], file=sys.stderr)
    server_cpu = (cpu_seconds(server.pid) - cpu_start) / (time.time() - start_at)
    results = []
    undelivered = 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        if p.returncode != 0:
            raise SystemExit(f"a client failed:\n{err}")
        results.append(json.loads(out.strip().splitlines()[-1]))
        undelivered += "labtrack sync" in err  # finish() ran out of LABTRACK_SYNC_TIMEOUT
    on_server_after_finish = count_lines(srv_root)
    t_sync = time.time()
    for i in range(clients):  # what finish() could not deliver in time, as a user would
        r = subprocess.run([*LABTRACK, "sync", "--remote", url, "--root", str(work / f"c{i}")],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"labtrack sync failed:\n{r.stderr}")
    sync_s = time.time() - t_sync
    rss.append(rss_mb(server.pid))
    logged = sum(r["steps"] for r in results) * 20
    in_window = sum(r["window_steps"] for r in results) * 20
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
    local_lags.sort()

    def pct(xs: list[float], q: float) -> float | None:
        return round(xs[int(q * (len(xs) - 1))], 2) if xs else None

    return {
        "clients": clients, "seconds": seconds,
        "values_logged_in_window": in_window, "values_logged_per_s": round(in_window / seconds),
        "values_on_server_at_start": before,
        "values_logged_total": logged, "values_on_server_after_finish": on_server_after_finish,
        "clients_told_to_sync_at_finish": undelivered, "sync_all_s": round(sync_s, 1),
        "values_on_server_after_sync": on_server,
        "server_copy_identical": identical,
        "ingest_values_per_s_during_window": round((n2 - n1) / (t2 - t1)) if t2 > t1 else None,
        "lag_s_median": pct(lags, 0.5), "lag_s_p95": pct(lags, 0.95), "lag_s_max": pct(lags, 1.0),
        "local_lag_s_median": pct(local_lags, 0.5), "local_lag_s_p95": pct(local_lags, 0.95),
        "finish_wait_s_max": round(max(r["finish_s"] for r in results), 2),
        "core_buffer_errors": sum(r["buffer_errors"] for r in results),
        "server_cpu_cores_during_window": round(server_cpu, 2),
        "server_rss_mb_start": round(rss_start, 1), "server_rss_mb_max": round(max(rss), 1),
        "server_rss_mb_end": round(rss[-1], 1),
    }


def log_cost(steps: int, repeats: int, settle: float) -> dict[str, object]:
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
            time.sleep(settle)  # the shipper's first attempt and warning happen before timing
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
    return {"steps": steps, "repeats": repeats, "settle_s": settle, "log_us_no_server": round(none * 1e6, 2),
            "log_us_server_down": round(down * 1e6, 2), "ratio_down_over_none": round(down / none, 3),
            "core_buffer_errors": buffer_errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--nice", type=int, default=10, help="niceness of the clients")
    ap.add_argument("--cost-steps", type=int, default=200_000)
    ap.add_argument("--cost-repeats", type=int, default=6)
    ap.add_argument("--cost-settle", type=float, default=1.0,
                    help="seconds between init and the timed loop (0: include start-up)")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {}
    if not args.skip_cost:
        os.environ["LABTRACK_SYNC_TIMEOUT"] = "0.5"
        out["log_cost"] = log_cost(args.cost_steps, args.cost_repeats, args.cost_settle)
        print(json.dumps(out["log_cost"]), flush=True)
    if not args.skip_scale:
        out["scale"] = scale(args.clients, args.seconds, args.nice)
        print(json.dumps(out["scale"]), flush=True)


if __name__ == "__main__":
    main()
