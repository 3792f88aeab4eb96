"""Speed at scale (issue 17): cold starts over many runs, long series, `labtrack ls`.

    python benchmarks/scale.py                      # 10,000 runs, one 10M-point series
    python benchmarks/scale.py --quick              # 1,000 runs, 1M points (development)
    python benchmarks/scale.py --large              # also the 100,000-run rows
    python benchmarks/scale.py --huge               # also the 100M-point row (~4 GB on disk)
    python benchmarks/scale.py --baseline /work/main/src   # the same rows with other code, same run

The roots are written straight in the run directory format (docs/format.md; the series with
labtrack's own formatter, `_store.scalars.format_many`) into benchmarks/.work/scale/ and kept
for later runs; a few runs are read back through `labtrack.open` to check they are valid.
Every measurement starts a fresh process with the derived caches (`<root>/.labtrack/`)
deleted first, so nothing was indexed or parsed before ("never opened before"; the OS page
cache is not dropped: that needs root, and the files were just written or read). Reported:
medians of `--reps` repetitions, each against its target as a ratio (< 1 is met).

Rows (the issue's target table):

* cold ui: time from starting `labtrack ui ROOT --port P` (a free 127.0.0.1 port) until
  `GET /api/v1/runs?limit=100` first answers with the newest 100 runs in order (a
  never-indexed root may still say `pending`: runs not read yet); "complete": until it
  answers with every run counted and nothing pending;
* warm filter / sort: medians over that server once its index is complete;
* cold ls: `labtrack ls` in a fresh process, output to a pipe, no index; warm ls: index kept;
* first chart: the first `GET /api/v1/runs/<id>/scalars?name=train/loss` of a series never
  read before, and the server's peak RSS (VmHWM) after it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORK = HERE / ".work" / "scale"  # --work changes it
RESULTS_MD = HERE / "RESULTS.md"
MD_HEADING = "## Speed at scale (benchmarks/scale.py)"
MD_HEADING_SERIES = "## Speed at scale: long series (benchmarks/scale.py --series-only)"
LONG_ID = "20261121-000000-long00"
METRICS = ("train/loss", "val/acc")
POINTS_PER_RUN = 5
TARGETS = {  # row -> (target seconds or bytes, unit)
    "cold_ui_s": 1.0, "cold_ui_large_s": 3.0, "warm_filter_large_s": 0.3, "warm_sort_large_s": 0.3,
    "ls_cold_s": 0.5, "ls_warm_s": 0.5, "series_first_s": 0.5, "series_rss_mb": 200.0,
    "huge_rss_mb": 500.0, "huge_first_s": None, "writer_first_s": 0.5, "writer_rss_mb": 200.0,
    "noenv_rss_mb": 200.0, "huge_noenv_rss_mb": 500.0,
}


# ----------------------------------------------------------------------------- the roots

def make_runs(root: Path, n: int, row_files: bool = True) -> None:
    """`n` finished runs in 10 experiments, each with params, a summary and two 5-point
    series that agree with it, written as labtrack writes them (kept; a marker says done);
    with `row_files`, each run's `.row.json` as `Run.finish` writes it (labtrack's own
    `_index_rowfile.write_row_file`, run in a child process of the measured source)."""
    marker = root / f".made-{n}"
    if marker.exists():
        if row_files and not (root / f".rows-{n}").exists():
            write_row_files(root, n)
        return
    if root.exists():
        shutil.rmtree(root)
    t_start = 1_795_000_000
    header = b"step,value,time\n"
    for i in range(n):
        exp = f"exp{i % 10}"
        started = t_start + i * 7
        rid = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + f"-{i % 1_000_000:06d}"
        d = f"{root}/{exp}/{rid}"
        os.makedirs(d + "/scalars/train")
        os.mkdir(d + "/scalars/val")
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
        end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started + 300))
        meta = {
            "format_version": 1, "id": rid, "experiment": exp, "name": f"trial-{i}",
            "comment": f"sweep point {i}", "tags": ["sweep", f"g{i % 7}"], "status": "finished",
            "started": iso + ".000000+00:00", "ended": end + ".000000+00:00",
            "pid": 1000 + i % 30000, "host": "bench-host", "user": "bench",
            "command": {"argv": ["train.py", "--lr", str(10 ** -(i % 5))], "script": "/x/train.py",
                        "module": None, "cwd": "/x", "python": "python3"},
            "git": {"commit": f"{i:040x}", "message": "m", "branch": "main", "dirty": i % 2 == 0,
                    "remote": None, "root": "/x"},
            "seed": i, "parent": None, "error": None,
        }
        params = {"lr": 10 ** -(i % 5), "batch": 32 * (1 + i % 4),
                  "opt": {"name": ("adam", "sgd")[i % 2], "momentum": 0.9}, "layers": [64, 64],
                  "dropout": (i % 10) / 20}
        summary = {}
        for k, name in enumerate(METRICS, start=1):
            values = [((i * k + j * 13) % 97) / 97 for j in range(POINTS_PER_RUN)]
            times = [started + 60.0 * (j + 1) for j in range(POINTS_PER_RUN)]
            rows = b"".join(f"{j},{v!r},{t:.3f}\n".encode() for j, (v, t) in enumerate(zip(values, times)))
            with open(f"{d}/scalars/{name}.csv", "wb") as f:
                f.write(header + rows)
            summary[name] = {"last": values[-1], "min": min(values), "max": max(values),
                             "mean": sum(values) / len(values), "sum": sum(values),
                             "count": len(values), "finite": len(values),
                             "step": POINTS_PER_RUN - 1, "time": times[-1]}
        for fn, obj in (("run.json", meta), ("params.json", params), ("summary.json", summary)):
            with open(f"{d}/{fn}", "w") as f:
                json.dump(obj, f, indent=2)
    marker.write_text("")
    if row_files:
        write_row_files(root, n)


ROW_FILES = """
import os, sys
from labtrack._index_rowfile import write_row_file
root = sys.argv[1]
n = 0
for e in os.scandir(root):
    if e.is_dir() and not e.name.startswith("."):
        for r in os.scandir(e.path):
            if not r.name.startswith("."):
                n += write_row_file(r.path)
print(n)
"""


def write_row_files(root: Path, n: int) -> None:
    """Each run's row file, as `Run.finish` writes it (this checkout's code)."""
    out = subprocess.run([sys.executable, "-c", ROW_FILES, str(root)], capture_output=True, text=True,
                         env=env_for(SRC), check=True)
    if int(out.stdout.strip() or 0) < n:
        raise SystemExit(f"{root}: wrote {out.stdout.strip()} row files for {n} runs")
    (root / f".rows-{n}").write_text("")


def make_series(root: Path, n: int) -> str:
    """One run whose `train/loss` has `n` points (a random walk with three spikes the
    envelope must keep), formatted by labtrack's own writer code; its id."""
    import numpy as np

    from labtrack._store import lod
    from labtrack._store.scalars import HEADER_LINE, format_many

    d = root / "long" / LONG_ID
    marker = d / f".made-{n}-lod{lod.BLOCK}"
    if marker.exists():
        return LONG_ID
    if d.exists():
        shutil.rmtree(d)
    path = d / "scalars" / "train" / "loss.csv"
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    level, lo, hi, total, last = 0.0, math.inf, -math.inf, 0.0, 0.0
    env = lod.EnvelopeBuilder(0, len(HEADER_LINE))
    env_path = lod.path_for(d, "scalars/train/loss.csv")
    env_path.parent.mkdir(parents=True)
    with open(path, "wb") as f, open(env_path, "wb") as e:
        e.write(lod.header_bytes())
        f.write(HEADER_LINE)
        chunk = 1_000_000
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            walk = level + np.cumsum(rng.normal(0, 0.01, m))
            level = float(walk[-1])
            walk[rng.integers(0, m, 3)] += 50.0
            cols = np.empty((m, 3))
            cols[:, 0] = np.arange(start, start + m)
            cols[:, 1] = walk
            cols[:, 2] = 1.7e9 + np.arange(start, start + m) / 1000
            # as the writer does: cut at the envelope's blocks, format, append, then the records
            col = array("d", cols.ravel().tobytes())
            pieces, pos = [], 0
            for c in env.cuts(m):
                pieces.append(col[pos: pos + 3 * c])
                pos += 3 * c
            formatted = format_many(pieces)
            f.write(b"".join(x[0] for x in formatted))
            for piece, (data, p_total, p_finite, p_lo, p_hi) in zip(pieces, formatted):
                env.add(piece, len(data), p_total, p_finite, p_lo, p_hi)
            e.write(env.take())
            lo, hi, total, last = min(lo, float(walk.min())), max(hi, float(walk.max())), total + float(walk.sum()), float(walk[-1])
        env.finish()
        e.write(env.take())
    (d / "run.json").write_text(json.dumps({
        "format_version": 1, "id": LONG_ID, "experiment": "long", "name": f"{n:,}-points",
        "comment": "", "tags": [], "status": "finished", "started": "2026-11-21T00:00:00.000000+00:00",
        "ended": "2026-11-21T01:00:00.000000+00:00", "pid": 1, "host": "bench-host", "user": "bench",
        "git": None, "seed": 0, "parent": None, "error": None}, indent=2))
    (d / "params.json").write_text("{}")
    (d / "summary.json").write_text(json.dumps({"train/loss": {
        "last": last, "min": lo, "max": hi, "mean": total / n, "sum": total, "count": n, "finite": n,
        "step": n - 1, "time": 1.7e9 + (n - 1) / 1000}}))
    marker.write_text("")
    return LONG_ID


WRITER_CHILD = r"""
import sys, labtrack
n = int(sys.argv[2])
with labtrack.Run(experiment="long", name=f"{n:,}-points-writer", root=sys.argv[1],
                  capture_git=False, capture_console=False, system=False) as run:
    # a random walk with three spikes, as make_series; one log() call per point
    import random
    rng = random.Random(0)
    spikes = {rng.randrange(n) for _ in range(3)}
    level = 0.0
    log = run.log
    for i in range(n):
        level += rng.gauss(0.0, 0.01)
        log({"train/loss": level + (50.0 if i in spikes else 0.0)}, step=i)
    print("ID=" + run.id, flush=True)
"""


def make_writer_series(root: Path, n: int, src: Path) -> str:
    """One run whose `train/loss` of `n` points was logged through `labtrack.Run.log` in a
    training process (so its envelope is the one the real writer kept); its id."""
    marker = root / f".made-{n}"
    if marker.exists():
        return marker.read_text().strip()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    out = subprocess.run([sys.executable, "-c", WRITER_CHILD, str(root), str(n)], env=env_for(src),
                         capture_output=True, text=True, check=False)
    ids = [ln[3:] for ln in out.stdout.splitlines() if ln.startswith("ID=")]
    if out.returncode or not ids:
        raise SystemExit(f"the writer child failed ({out.returncode}): {out.stderr[-2000:]}")
    marker.write_text(ids[0])
    return ids[0]


def check_valid(root: Path, sample: int = 3) -> None:
    """Read a few runs back through labtrack's own API: the files must be valid runs."""
    import labtrack

    book = labtrack.open(str(root))
    for exp in sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[:sample]:
        run_dir = sorted(p for p in (root / exp).iterdir() if not p.name.startswith("."))[0]
        run = book[run_dir.name]
        frame = run.scalars("train/loss")
        summary = json.loads((run_dir / "summary.json").read_text())["train/loss"]
        if len(frame) != summary["count"] or float(frame["value"].iloc[-1]) != summary["last"]:
            raise SystemExit(f"{run_dir}: the series does not agree with summary.json")


def drop_caches(root: Path) -> None:
    """Delete the derived caches (index, parsed series): the next reader starts cold."""
    shutil.rmtree(root / ".labtrack", ignore_errors=True)


# ----------------------------------------------------------------------------- processes

def env_for(src: Path) -> dict[str, str]:
    """The children's environment: `src` first on the path, bytecode used (as an installed
    package is; compiled once by :func:`compile_source`), no colours."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(src), "NO_COLOR": "1"}


def compile_source(src: Path) -> None:
    """Write the bytecode of `src/labtrack` once, so no measured process compiles it."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "labtrack")],
                   check=False, env=env_for(src), stdout=subprocess.DEVNULL)


CLI = "from labtrack.cli import main; main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`labtrack ui ROOT --port P` in a subprocess, started at `self.t0` (perf_counter)."""

    def __init__(self, root: Path, src: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", CLI, "ui", str(root), "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_for(src))

    def first(self, path: str, params: dict[str, str], check: Callable[[Any], bool],
              timeout: float = 300.0, every: float = 0.01) -> float:
        """Poll `path` until it answers 200 and `check(body)`, every `every` seconds;
        seconds since the start."""
        import httpx

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"labtrack ui exited with {self.proc.returncode}: "
                                 f"{self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}")
            try:
                r = httpx.get(self.url + path, params=params, timeout=timeout)
            except httpx.TransportError:
                time.sleep(0.01)
                continue
            if r.status_code == 200 and check(r.json()):
                return time.perf_counter() - self.t0
            time.sleep(every)
        raise SystemExit(f"{path} did not answer within {timeout} s")

    def peak_rss_mb(self) -> float:
        """The server's peak resident set (VmHWM), in MB."""
        import psutil

        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def timed_get(url: str, params: dict[str, str], check: Callable[[Any], bool]) -> float:
    import httpx

    t0 = time.perf_counter()
    r = httpx.get(url, params=params, timeout=300)
    took = time.perf_counter() - t0
    if r.status_code != 200 or not check(r.json()):
        raise SystemExit(f"{url} {params}: {r.status_code} {r.text[:300]}")
    return took


# ----------------------------------------------------------------------------- the rows

def measure_ui(root: Path, n: int, src: Path, reps: int, suffix: str) -> dict[str, Any]:
    """Cold ui starts over `root` (`n` runs), then warm filters and sorts on the last one."""
    out: dict[str, Any] = {}
    cold: list[float] = []
    whole: list[float] = []
    warm: dict[str, list[float]] = {"filter": [], "sort": [], "text": []}
    newest = [f"trial-{i}" for i in range(n - 1, n - 101, -1)]

    def first_page(body: Any) -> bool:
        # the newest 100 runs, in order (the rest of a never-indexed root may be pending)
        return [r["name"] for r in body.get("runs", [])] == newest

    def complete(body: Any) -> bool:
        return body.get("total") == n and not body.get("pending") and first_page(body)

    for rep in range(reps):
        drop_caches(root)
        server = Server(root, src)
        try:
            cold.append(server.first("/api/v1/runs", {"limit": "100"}, first_page))
            # as the dashboard does while runs are pending: ask again now and then
            whole.append(server.first("/api/v1/runs", {"limit": "100"}, complete, every=0.25))
            if rep == reps - 1:
                url = server.url + "/api/v1/runs"
                for _ in range(max(reps, 5)):
                    # a new where text each time: the server's answer cache must not serve it
                    warm["filter"].append(timed_get(url, {"limit": "100", "where":
                                          f"params.lr < 0.01 and metrics.val/acc > 0.{len(warm['filter'])}"},
                                          lambda b: b["total"] >= 0))
                    warm["sort"].append(timed_get(url, {"limit": "100", "sort":
                                        ("-", "")[len(warm["sort"]) % 2] + "metrics.val/acc:max",
                                        "where": f"params.batch >= {len(warm['sort']) % 4}"},
                                        lambda b: len(b["runs"]) == 100))
                    warm["text"].append(timed_get(url, {"limit": "100", "q": f"g{len(warm['text']) % 7} sweep"},
                                        lambda b: b["total"] > 0))
        finally:
            server.stop()
    out[f"cold_ui{suffix}_s"] = statistics.median(cold)
    out[f"cold_ui{suffix}_all"] = cold
    out[f"cold_ui_complete{suffix}_s"] = statistics.median(whole)
    for k, v in warm.items():
        out[f"warm_{k}{suffix}_s"] = statistics.median(v)
    return out


def measure_ls(root: Path, n: int, src: Path, reps: int) -> dict[str, Any]:
    """`labtrack ls` in fresh processes: without an index, and with the index kept."""
    cpu: dict[str, list[float]] = {"cold": [], "warm": []}

    def once(kind: str) -> float:
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            proc = subprocess.Popen([sys.executable, "-c", CLI, "ls", "--root", str(root)],
                                    stdout=subprocess.PIPE, stderr=sink, env=env_for(src))
            assert proc.stdout is not None
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: proc.stdout.read(1 << 16), b""))
            _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        # CPU time of the process: what a quiet machine's wall time would be, near enough
        cpu[kind].append(usage.ru_utime + usage.ru_stime)
        if proc.returncode != 0 or lines < n:
            raise SystemExit(f"labtrack ls: exit {proc.returncode}, {lines} lines")
        return took

    cold = []
    for _ in range(reps):
        drop_caches(root)
        cold.append(once("cold"))
    once("warm")
    cpu["warm"].clear()
    warm = [once("warm") for _ in range(reps)]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import labtrack.cli"], check=True, env=env_for(src))
    imp = time.perf_counter() - t0
    return {"ls_cold_s": statistics.median(cold), "ls_warm_s": statistics.median(warm),
            "ls_cold_cpu_s": statistics.median(cpu["cold"]), "ls_warm_cpu_s": statistics.median(cpu["warm"]),
            "ls_cold_all": cold, "ls_warm_all": warm, "import_cli_s": imp}


CHART = {"name": "train/loss", "points": "2000", "x": "step"}  # as the dashboard asks (api.ts)


def measure_series(root: Path, points: int, src: Path, reps: int, key: str = "series",
                   envelope: bool = True, run_id: str = LONG_ID) -> dict[str, Any]:
    """The first chart request of a series never read before, and the server's peak RSS.

    Without `envelope`, the run's `.lod/` (the envelope its writer kept) is moved aside
    first: a run of an older labtrack, an import, or one that came through remote ingest,
    which the server must read from its CSV alone (the first request then times the build
    of the server's envelope, and the RSS is that build's)."""
    firsts, rss, again, zoom, append = [], [], [], [], []
    run_dir = next(p for p in root.glob(f"*/{run_id}"))
    lod_dir = run_dir / ".lod"
    aside = lod_dir.with_name(".lod-aside")
    if not envelope and lod_dir.exists():
        lod_dir.rename(aside)
    try:
        out = _measure_series(root, run_dir, points, src, reps, firsts, rss, again, zoom, append)
    finally:
        if aside.exists():
            aside.rename(lod_dir)
    return {f"{key}_{k}": v for k, v in out.items()}


def _measure_series(root: Path, run_dir: Path, points: int, src: Path, reps: int, firsts: list[float],
                    rss: list[float], again: list[float], zoom: list[float],
                    append: list[float]) -> dict[str, Any]:
    csv = run_dir / "scalars" / "train" / "loss.csv"
    size = csv.stat().st_size
    run_id = run_dir.name
    added = 5000

    def full(total: int) -> Callable[[Any], bool]:
        return lambda body: bool(body.get("total", 0) == total and 0 < len(body["value"]) <= 2000
                                 and max(v for v in body["max"] if v is not None) > 40)

    for _ in range(reps):
        drop_caches(root)
        server = Server(root, src)
        try:
            server.first("/api/v1/health", {}, lambda b: True)
            url = f"{server.url}/api/v1/runs/{run_id}/scalars"
            firsts.append(timed_get(url, CHART, full(points)))
            rss.append(server.peak_rss_mb())
            again.append(timed_get(url, CHART, full(points)))
            # zoomed in to 100,000 points in the middle: read from the CSV's bytes, exact (with
            # one neighbour each side, as for a parsed series: `downsample.select_range`)
            mid = points // 2
            zoom.append(timed_get(url, {**CHART, "xmin": str(mid), "xmax": str(mid + 99_999)},
                                  lambda b: b["count"] == 100_002 and b["step"][0] == mid - 1
                                  and b["step"][-1] == mid + 100_000))
            # a live run's next points: the envelope is extended from the CSV's new lines
            with open(csv, "ab") as f:
                f.write(b"".join(f"{points + i},{i * 1e-3!r},{1.8e9 + i:.3f}\n".encode()
                                 for i in range(added)))
            append.append(timed_get(url, CHART, lambda b: b["total"] == points + added
                                    and b["step"][-1] == points + added - 1))
            rss[-1] = server.peak_rss_mb()
        finally:
            server.stop()
            os.truncate(csv, size)
    return {"first_s": statistics.median(firsts), "rss_mb": statistics.median(rss),
            "second_s": statistics.median(again), "zoom_s": statistics.median(zoom),
            "append_s": statistics.median(append), "first_all": firsts, "rss_all": rss}


def measure_s4(src: Path, reps: int, runs: int = 500) -> dict[str, Any]:
    """S4 of `make bench` for labtrack alone (benchmarks/peers/bench_labtrack.py): `runs`
    runs of 10 params and 5 metrics x 100 steps created by `src`'s labtrack in a new root
    (under --work), then the table of every run's params and final metrics in a fresh
    process, `reps` times (the root's `.labtrack/` deleted before each)."""
    import tempfile

    peers = HERE / "peers"
    env = {k: v for k, v in env_for(src).items() if not k.startswith("LABTRACK_")}
    env["PYTHONPATH"] = f"{src}{os.pathsep}{peers}"
    with tempfile.TemporaryDirectory(prefix="s4-", dir=WORK) as d:
        env["HOME"] = d

        def bench(scenario: str) -> dict[str, Any]:
            cmd = [sys.executable, str(peers / "bench_labtrack.py"), scenario, "--dir", d,
                   "--runs", str(runs), "--run-steps", "100", "--budget", "0"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=d, check=False)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not lines:
                raise SystemExit(f"{cmd}: exit {out.returncode}\n{out.stderr[-2000:]}")
            return dict(json.loads(lines[-1][len("RESULT "):]))

        create = bench("s4create")
        queries = []
        for _ in range(reps):
            for cache in Path(d).rglob(".labtrack"):
                shutil.rmtree(cache, ignore_errors=True)
            got = bench("s4query")
            if got["rows"] != runs:
                raise SystemExit(f"S4 table has {got['rows']} rows, not {runs}")
            queries.append(got["query_s"])
    return {"s4_query_s": statistics.median(queries), "s4_create_s": create["create_s"],
            "s4_query_all": queries}


# ----------------------------------------------------------------------------- report

ROWS = [  # (key, what, target text)
    ("cold_ui_s", "first /api/v1/runs of a fresh `labtrack ui`, {runs:,} runs never opened", "< 1 s"),
    ("cold_ui_norows_s", "... the same runs without row files (written by an older labtrack)", "-"),
    ("cold_ui_complete_s", "... until every run is in (no `pending`)", "-"),
    ("cold_ui_large_s", "the same over {large:,} runs", "< 3 s"),
    ("cold_ui_complete_large_s", "... until every run is in (no `pending`)", "-"),
    ("warm_filter_large_s", "warm filter over {large:,} runs (where, 100 rows)", "< 300 ms"),
    ("warm_sort_large_s", "warm sort by a metric over {large:,} runs", "< 300 ms"),
    ("series_first_s", "first chart request of a {points:,}-point series never read (envelope written beside it by the writer's code)", "< 0.5 s"),
    ("series_rss_mb", "the server's peak RSS after it, a zoomed window and an append (MB)", "< 200 MB"),
    ("series_zoom_s", "... then a zoomed window of 100,000 of its points (exact)", "-"),
    ("series_append_s", "... then 5,000 points appended (a live run): the next chart", "-"),
    ("writer_first_s", "the same, the series logged through `Run.log` in a training process", "< 0.5 s"),
    ("writer_rss_mb", "the server's peak RSS (MB)", "< 200 MB"),
    ("noenv_first_s", "first chart of the {points:,}-point series without its envelope (older run, import, remote): the server builds one", "-"),
    ("noenv_rss_mb", "the server's peak RSS during that build (MB)", "< 200 MB"),
    ("noenv_second_s", "... the next request (the envelope built by the server)", "-"),
    ("huge_first_s", "first chart request of a {huge:,}-point series (envelope beside it)", "answers"),
    ("huge_rss_mb", "the server's peak RSS after it, a zoomed window and an append (MB)", "< 500 MB"),
    ("huge_zoom_s", "... a zoomed window of 100,000 of its points (exact)", "-"),
    ("huge_noenv_first_s", "first chart of the {huge:,}-point series without its envelope (the server's build)", "answers"),
    ("huge_noenv_rss_mb", "the server's peak RSS during that build (MB)", "< 500 MB"),
    ("ls_cold_s", "`labtrack ls`, fresh process, {runs:,} runs, no index", "< 0.5 s"),
    ("ls_warm_s", "`labtrack ls`, fresh process, {runs:,} runs, index kept", "< 0.5 s"),
    ("s4_query_s", "S4: table of params and final metrics of 500 runs, fresh process", "<= 1/10 of the fastest peer"),
    ("s4_create_s", "S4: creating those 500 runs (training side)", "-"),
]


def table(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    base = results.get("baseline") or {}
    head = "| row | target | labtrack | ratio to target | met |"
    if base:
        head = "| row | target | labtrack | baseline | new/baseline | ratio to target | met |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, what, target in ROWS:
        if key not in results["rows"]:
            continue
        value = results["rows"][key]
        unit_mb = key.endswith("_mb")
        fmt = (lambda v: f"{v:,.0f} MB") if unit_mb else (lambda v: f"{v:.3f} s")
        goal = TARGETS.get(key)
        ratio = f"{value / goal:.2f}" if goal else "-"
        met = "-" if goal is None else "met" if value < goal else "**not met**"
        cells = [what.format(**sizes), target, fmt(value)]
        if base:
            b = base.get(key)
            cells += [fmt(b) if b is not None else "-", f"{value / b:.3f}" if b else "-"]
        cells += [ratio, met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    heading = MD_HEADING_SERIES if results.get("series_only") else MD_HEADING
    lines = [heading, "",
             f"`{results['command']}` at {results['source']}, {results['finished']}; "
             f"{m['cpus']} CPUs (shared: noisy), load {m['load_start']} at the start and "
             f"{m['load_end']} at the end, Python {m['python']}. Medians of {results['reps']} "
             "repetitions, each in a fresh process with `<root>/.labtrack/` deleted first"
             + (" (with a baseline, the two alternate repetition by repetition)" if results.get("baseline")
                else "") + ".", "",
             table(results), ""]
    shown = {key for key, _, _ in ROWS}
    extra = {k: v for k, v in results["rows"].items() if k not in shown and not k.endswith("_all")}
    if extra:
        lines += ["Context: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(extra.items())), ""]
    return "\n".join(lines)


def update_results_md(section: str) -> None:
    """Replace this script's section of RESULTS.md (the whole table's, or the long series'
    alone with --series-only), leaving the others alone."""
    sys.path.insert(0, str(HERE))
    from _results import replace_section

    replace_section(RESULTS_MD, section.split("\n", 1)[0], section)


def measure_all(args: argparse.Namespace, src: Path, log: Callable[[str], None]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    compile_source(src)
    if not args.series_only:
        root = WORK / f"runs-{args.runs}"
        log(f"{src}: cold ui over {args.runs:,} runs")
        rows.update(measure_ui(root, args.runs, src, args.reps, ""))
        if args.row_files and src == SRC:
            log(f"{src}: cold ui over {args.runs:,} runs without row files")
            got = measure_ui(WORK / f"plain-{args.runs}", args.runs, src, args.reps, "_norows")
            rows.update({k: v for k, v in got.items()
                         if k.startswith(("cold_ui_norows", "cold_ui_complete_norows"))})
        log(f"{src}: labtrack ls")
        rows.update(measure_ls(root, args.runs, src, args.reps))
        if args.s4:
            log(f"{src}: S4 table of 500 runs")
            rows.update(measure_s4(src, args.reps))
        if args.large:
            log(f"{src}: cold ui over {args.large_runs:,} runs")
            rows.update(measure_ui(WORK / f"runs-{args.large_runs}", args.large_runs, src, args.reps, "_large"))
    if args.only_runs:
        return rows
    log(f"{src}: first chart of {args.points:,} points")
    rows.update(measure_series(series, args.points, src, args.reps))
    log(f"{src}: first chart of {args.points:,} points logged through Run.log (the writer's envelope)")
    writer = WORK / f"writer-{args.points}"
    rows.update(measure_series(writer, args.points, src, args.reps, "writer",
                               run_id=make_writer_series(writer, args.points, src)))
    log(f"{src}: first chart of {args.points:,} points without the envelope")
    rows.update(measure_series(series, args.points, src, args.reps, "noenv", envelope=False))
    if args.huge:
        huge = WORK / f"series-{args.huge_points}"
        log(f"{src}: first chart of {args.huge_points:,} points")
        rows.update(measure_series(huge, args.huge_points, src, args.reps, "huge"))
        log(f"{src}: first chart of {args.huge_points:,} points without the envelope")
        rows.update(measure_series(huge, args.huge_points, src, args.huge_reps, "huge_noenv", envelope=False))
    return rows


def _medians(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repetitions (lists of values are joined)."""
    out: dict[str, Any] = {}
    for key in reps[0]:
        values = [r[key] for r in reps if key in r]
        if isinstance(values[0], list):
            out[key] = [v for vs in values for v in vs]
        else:
            out[key] = statistics.median(values)
    return out


def main(argv: list[str] | None = None) -> int:
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--large", action="store_true", help="also the rows over --large-runs runs")
    ap.add_argument("--large-runs", type=int, default=100_000)
    ap.add_argument("--huge", action="store_true", help="also the row of --huge-points points")
    ap.add_argument("--huge-points", type=int, default=100_000_000)
    ap.add_argument("--huge-reps", type=int, default=1, help="repetitions of the 100M-point "
                    "series without its envelope (each builds it from ~4 GB of CSV)")
    ap.add_argument("--series-only", action="store_true", help="only the long-series rows")
    ap.add_argument("--quick", action="store_true", help="1,000 runs and 1M points, 1 repetition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", metavar="DIR", help=f"where the roots are written and kept (default {WORK})")
    ap.add_argument("--no-row-files", dest="row_files", action="store_false",
                    help="write the run roots without the row files Run.finish writes")
    ap.add_argument("--s4", action="store_true", help="also S4's table of 500 runs (labtrack alone)")
    ap.add_argument("--only-runs", action="store_true", help="only the rows over many runs (no series)")
    ap.add_argument("--baseline", metavar="SRC", help="another labtrack source folder (its src/) "
                    "measured in the same run, for the before/after ratios")
    ap.add_argument("--json", metavar="PATH", help="write every figure here")
    ap.add_argument("--no-md", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--render", metavar="JSON", help="only rebuild the RESULTS.md section from a "
                    "--json file of an earlier run")
    args = ap.parse_args(argv)
    if args.render:
        section = markdown(json.loads(Path(args.render).read_text()))
        print(section)
        if not args.no_md:
            update_results_md(section)
        return 0
    if args.quick:
        args.runs, args.points, args.reps = min(args.runs, 1000), min(args.points, 1_000_000), 1
        args.large_runs = min(args.large_runs, 5000)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {msg}", file=sys.stderr, flush=True)

    if args.work:
        WORK = Path(args.work).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(SRC))
    load_start = f"{os.getloadavg()[0]:.1f}"
    for n in ([] if args.series_only else [args.runs] + ([args.large_runs] if args.large else [])):
        log(f"writing {n:,} runs (once; kept in {WORK})")
        make_runs(WORK / f"runs-{n}", n, args.row_files)
        check_valid(WORK / f"runs-{n}")
    if args.row_files:
        make_runs(WORK / f"plain-{args.runs}", args.runs, row_files=False)
    for p in ([] if args.only_runs else [args.points] + ([args.huge_points] if args.huge else [])):
        log(f"writing a {p:,}-point series (once)")
        make_series(WORK / f"series-{p}", p)
    if args.baseline:
        # repetitions alternate between the two sources, so a burst of load on this shared
        # machine hits both alike; each key's median over the repetitions
        one = argparse.Namespace(**{**vars(args), "reps": 1})
        runs: dict[str, list[dict[str, Any]]] = {"new": [], "base": []}
        for rep in range(args.reps):
            log(f"repetition {rep + 1} of {args.reps}")
            runs["new"].append(measure_all(one, SRC, log))
            runs["base"].append(measure_all(one, Path(args.baseline).resolve(), log))
        rows, baseline = (_medians(runs[k]) for k in ("new", "base"))
    else:
        rows, baseline = measure_all(args, SRC, log), None
    try:
        source = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        source = "?"
    results = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "source": source, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "reps": args.reps, "sizes": {"runs": args.runs, "large": args.large_runs, "points": args.points,
                                     "huge": args.huge_points},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_start": load_start, "load_end": f"{os.getloadavg()[0]:.1f}"},
        "rows": rows, "baseline": baseline, "series_only": args.series_only,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    section = markdown(results)
    print(section)
    if not args.no_md and not args.quick:
        update_results_md(section)
        log(f"updated {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
