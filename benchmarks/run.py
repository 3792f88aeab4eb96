"""`make bench`: labtrack against its peers, scenario by scenario (issue 7).

Each scenario runs in a fresh process (``benchmarks/peers/bench_<tool>.py``), timed inside
that process, three repetitions, medians; the peak RSS of each process comes from
``os.wait4``. The peers live in their own virtual environment, ``.venv-peers`` (made or
updated here from ``benchmarks/peers/requirements.txt``); labtrack runs from the
interpreter that runs this script. Every tool's data goes into a temporary folder outside
any git repository.

    python benchmarks/run.py                 # the full suite; writes peers/results.json, RESULTS.md
    python benchmarks/run.py --quick         # small sizes, results under benchmarks/.work/
    python benchmarks/run.py --tools labtrack,trackio --scenarios s1,s6 --quick

A peer too slow to finish a scenario's loop within ``--budget`` seconds stops at the next
chunk boundary and is measured on what it did (the tables say how much). labtrack never
gets a budget, so every cut makes a peer's job smaller, never labtrack's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
sys.path.insert(0, str(PEERS))
sys.path.insert(0, str(HERE))
import _common  # noqa: E402  (the scenarios' shared definitions: sizes, expected values)
from _results import replace_section  # noqa: E402

PEERS_VENV = ROOT / ".venv-peers"
REQUIREMENTS = PEERS / "requirements.txt"
RESULTS_JSON = PEERS / "results.json"
RESULTS_MD = HERE / "RESULTS.md"
WORK = HERE / ".work"
MD_HEADING = "## Peers (make bench)"

FULL = {"steps": 100_000, "wide_steps": 10_000, "width": 20, "runs": 500, "run_steps": 100}
QUICK = {"steps": 2_000, "wide_steps": 200, "width": 20, "runs": 10, "run_steps": 100}
TINY = {"steps": 300, "wide_steps": 30, "width": 20, "runs": 3, "run_steps": 10}
SCENARIOS = ("s1", "s2", "s3", "s4", "s5", "s6")


@dataclasses.dataclass(frozen=True)
class Tool:
    key: str            # the column name in the tables
    label: str          # how the tables describe it
    script: str         # benchmarks/peers/<script>
    module: str         # what S6 imports
    distribution: str   # the package whose version is reported
    mode: str = ""      # passed as --mode
    peer: bool = True   # False for labtrack: runs in this interpreter, never budgeted


TOOLS = (
    Tool("labtrack", "labtrack", "bench_labtrack.py", "labtrack", "labtrack", peer=False),
    Tool("mlflow", "MLflow (SQLite)", "bench_mlflow.py", "mlflow", "mlflow"),
    Tool("mlflow-async", "MLflow (SQLite, synchronous=False)", "bench_mlflow.py", "mlflow",
         "mlflow", mode="async"),
    Tool("wandb", "W&B (offline)", "bench_wandb.py", "wandb", "wandb"),
    Tool("aim", "Aim", "bench_aim.py", "aim", "aim"),
    Tool("trackio", "trackio", "bench_trackio.py", "trackio", "trackio"),
    Tool("tensorboardX", "tensorboardX", "bench_tensorboardx.py", "tensorboardX",
         "tensorboardX"),
    Tool("dvclive", "DVCLive", "bench_dvclive.py", "dvclive", "dvclive"),
)


# ----------------------------------------------------------------------------- install

def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def ensure_peers(log: Any) -> dict[str, str]:
    """Create or update .venv-peers from the pinned requirements.

    Returns:
        {requirement line: error} for every pin that would not install (empty when all did).
    """
    wanted = REQUIREMENTS.read_text()
    stamp = PEERS_VENV / ".bench-requirements"
    if peers_python().exists() and stamp.exists() and stamp.read_text() == wanted:
        return {}
    t0 = time.perf_counter()
    if not peers_python().exists():
        base = getattr(sys, "_base_executable", sys.executable)
        log(f"creating {PEERS_VENV} with {base}")
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(peers_python()), "-m", "pip", "install", "--quiet", "--upgrade",
                        "pip"], check=False)
    log(f"installing the peers from {REQUIREMENTS.relative_to(ROOT)} (a few minutes)")
    pip = [str(peers_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "-r", str(REQUIREMENTS)], capture_output=True, text=True)
    failed: dict[str, str] = {}
    if done.returncode != 0:
        # One pin failing must not hide the others: install them one by one.
        for line in wanted.splitlines():
            req = line.split("#")[0].strip()
            if not req:
                continue
            one = subprocess.run([*pip, req], capture_output=True, text=True)
            if one.returncode != 0:
                failed[req] = _tail(one.stderr or one.stdout, 6)
                log(f"  {req}: will not install: {failed[req].splitlines()[-1]}")
    else:
        stamp.write_text(wanted)
    log(f"peers ready in {time.perf_counter() - t0:.0f} s")
    return failed


# ----------------------------------------------------------------------------- children

def child_env(home: Path, data: Path) -> dict[str, str]:
    """The environment of a scenario process: offline, no telemetry, a private HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABTRACK_", "WANDB_", "MLFLOW_", "TRACKIO_", "AIM_"))
           and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(home),
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(data),
        "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"),
        "WANDB_CACHE_DIR": str(home / ".cache" / "wandb"),
        "WANDB_DATA_DIR": str(home / ".local" / "wandb"),
        "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False", "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_child(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float,
              log_path: Path) -> dict[str, Any]:
    """Run one scenario process; return its RESULT (or PARTIAL) line plus peak RSS."""
    cwd.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        timed_out = False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:  # Ctrl-C or a kill of the harness: take the scenario down too
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    result: dict[str, Any] | None = None
    partial: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
        elif line.startswith("PARTIAL "):
            partial = json.loads(line[8:])
    if result is None:
        if timed_out:
            result = {"status": "timeout", "why": f"killed after {timeout:.0f} s",
                      **(partial or {})}
        else:
            result = {"status": "error", "why": f"exit {proc.returncode}: " + _tail(text, 8)}
    result["rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return result


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def tree_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every regular file under `path`."""
    apparent = allocated = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


# ----------------------------------------------------------------------------- the suite

class Suite:
    def __init__(self, args: argparse.Namespace, tools: list[Tool], log: Any) -> None:
        self.args = args
        self.tools = tools
        self.log = log
        self.sizes = TINY if args.tiny else QUICK if args.quick else FULL
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="labtrack-bench-"))
        self.reps: dict[str, dict[str, list[dict[str, Any]]]] = {t.key: {} for t in tools}
        self.broken: dict[str, str] = {}
        self.reps_done = 0
        self.sources: list[str] = []  # labtrack's source at the start of each repetition

    def python(self, tool: Tool) -> str:
        return sys.executable if not tool.peer else str(peers_python())

    def env(self, tool: Tool, data: Path) -> dict[str, str]:
        """child_env; labtrack's processes import this checkout's src/ (the tree whose hash
        the results record), not whatever checkout the venv's editable install points at."""
        env = child_env(self.work / "home" / tool.key, data)
        if not tool.peer:
            env["PYTHONPATH"] = str(ROOT / "src")
        return env

    def child(self, tool: Tool, rep: int, scenario: str, data: Path,
              extra: list[str], budget: float, timeout: float) -> dict[str, Any]:
        s = self.sizes
        cmd = [self.python(tool), str(PEERS / tool.script), scenario, "--dir", str(data),
               "--steps", str(s["steps"]), "--wide-steps", str(s["wide_steps"]),
               "--width", str(s["width"]), "--runs", str(s["runs"]),
               "--run-steps", str(s["run_steps"]),
               "--budget", str(budget if tool.peer else 0), *extra]
        if tool.mode:
            cmd += ["--mode", tool.mode]
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.env(tool, data)
        # labtrack always does the full size, so it gets more time before it counts as hung.
        limit = timeout if tool.peer else timeout * 4
        return run_child(cmd, data, env, limit, logs / f"{tool.key}-{scenario}-{rep}.log")

    def record(self, tool: Tool, name: str, result: dict[str, Any]) -> dict[str, Any]:
        self.reps[tool.key].setdefault(name, []).append(result)
        brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()
                 if k not in ("columns", "final_val_loss", "shape", "version")}
        self.log(f"  {tool.key:13} {name:9} {json.dumps(brief)[:220]}")
        return result

    def run(self, started: float) -> None:
        """All repetitions; one that would end past --deadline-minutes is not started."""
        a = self.args
        longest = 0.0
        for rep in range(a.reps):
            elapsed = time.perf_counter() - started
            if rep and a.deadline_minutes and elapsed + longest > a.deadline_minutes * 60:
                self.log(f"stopping after {rep} repetitions: another would end past "
                         f"--deadline-minutes {a.deadline_minutes:g}")
                break
            self.log(f"repetition {rep + 1} of {a.reps}")
            self.sources.append(labtrack_source())
            t0 = time.perf_counter()
            for tool in self.tools:
                if tool.key in self.broken:
                    continue
                self.run_tool(tool, rep)
            shutil.rmtree(self.work / f"rep{rep}", ignore_errors=True)
            longest = max(longest, time.perf_counter() - t0)
            self.reps_done = rep + 1

    def run_tool(self, tool: Tool, rep: int) -> None:
        a = self.args
        base = self.work / f"rep{rep}" / tool.key
        scen = set(a.scenarios)
        if "s6" in scen or rep == 0:
            data = base / "s6"
            cmd = [self.python(tool), str(PEERS / "_import.py"), tool.module]
            env = self.env(tool, data)
            res = run_child(cmd, data, env, a.timeout, self.work / "logs" /
                            f"{tool.key}-s6-{rep}.log")
            if res["status"] != "ok":
                self.broken[tool.key] = res.get("why", res["status"])
                self.log(f"  {tool.key}: cannot import {tool.module}: {self.broken[tool.key]}")
                return
            if "s6" in scen:
                self.record(tool, "s6", res)
        if "s1" in scen or "s5" in scen:
            res = self.record(tool, "s1", self.child(tool, rep, "s1", base / "s1", [],
                                                     a.budget, a.timeout))
            res["bytes"], res["bytes_allocated"] = tree_bytes(base / "s1")
        if scen & {"s2", "s3", "s5"}:
            res = self.record(tool, "s2", self.child(tool, rep, "s2", base / "s2", [],
                                                     a.budget, a.timeout))
            res["bytes"], res["bytes_allocated"] = tree_bytes(base / "s2")
            if "s3" in scen and res["status"] == "ok":
                self.record(tool, "s3", self.child(tool, rep, "s3", base / "s2",
                                                   ["--ref", str(res.get("ref", ""))],
                                                   0, a.timeout))
        if "s4" in scen:
            res = self.record(tool, "s4create", self.child(tool, rep, "s4create",
                                                           base / "s4", [], a.s4_budget,
                                                           a.timeout))
            if res["status"] == "ok":
                self.record(tool, "s4query", self.child(tool, rep, "s4query", base / "s4",
                                                        [], 0, a.timeout))

    # ------------------------------------------------------------------- summaries

    def medians(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per tool and scenario: the median of every number over the ok repetitions."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for key, by_scenario in self.reps.items():
            out[key] = {}
            for name, results in by_scenario.items():
                good = [r for r in results if r.get("status") == "ok"]
                summary: dict[str, Any] = {"reps": len(results), "ok": len(good)}
                if not good:
                    first = results[0]
                    summary["status"] = first.get("status")
                    summary["why"] = first.get("why", "")
                    # a timeout still tells the loop's cost (from the PARTIAL line)
                    good = [r for r in results if "loop_s" in r]
                else:
                    summary["status"] = "ok"
                for field in sorted({k for r in good for k in r}):
                    vals = [r[field] for r in good if isinstance(r.get(field), (int, float))
                            and not isinstance(r.get(field), bool)]
                    if vals and len(vals) == len(good):
                        summary[field] = statistics.median(vals)
                for field in ("final_val_loss", "columns", "version"):
                    if good and field in good[0]:
                        summary[field] = good[0][field]
                out[key][name] = summary
        return out


# ----------------------------------------------------------------------------- report

def check_reps(reps: dict[str, dict[str, list[dict[str, Any]]]], sizes: dict[str, int]
               ) -> dict[str, dict[str, str]]:
    """Check every read against the write of its own repetition.

    Returns:
        {tool: {scenario: problem}} for S3 (points read < points logged) and the S4 query
        (rows or final values not those logged); empty when every repetition was right.
    """
    problems: dict[str, dict[str, str]] = {}
    for tool, by in reps.items():
        pairs = (("s3", "s2"), ("s4query", "s4create"))
        for read, write in pairs:
            writes = [w for w in by.get(write, []) if w.get("status") == "ok"]
            for i, r in enumerate(by.get(read, [])):
                if r.get("status") != "ok" or i >= len(writes):
                    continue
                n = int(writes[i].get("n") or 0)
                if read == "s3" and r.get("points", 0) < n * sizes["width"]:
                    problems.setdefault(tool, {})[read] = (
                        f"read {r.get('points')} of {n * sizes['width']} points")
                if read == "s4query":
                    if r.get("rows") != n:
                        problems.setdefault(tool, {})[read] = f"{r.get('rows')} rows for {n} runs"
                    elif r.get("final_val_loss") != _common.expected_finals(n, sizes["run_steps"]):
                        problems.setdefault(tool, {})[read] = "wrong final values in the table"
    return problems


def derive(med: dict[str, dict[str, dict[str, Any]]], sizes: dict[str, int],
           problems: dict[str, dict[str, str]] | None = None) -> dict[str, dict[str, Any]]:
    """The table's rows: per metric, each tool's value (and a note when it did less)."""
    rows: dict[str, dict[str, Any]] = {}

    problems = problems or {}

    def put(metric: str, tool: str, value: float | None, note: str = "",
            full: bool | None = None) -> None:
        rows.setdefault(metric, {})[tool] = {"value": value, "note": note,
                                             "full": not note if full is None else full}

    for tool, sc in med.items():
        s1, s2, s3 = sc.get("s1", {}), sc.get("s2", {}), sc.get("s3", {})
        c4, q4, s6 = sc.get("s4create", {}), sc.get("s4query", {}), sc.get("s6", {})
        if "loop_s" in s1 and s1.get("n"):
            short = "" if s1["n"] >= sizes["steps"] else f"{int(s1['n']):,} of {sizes['steps']:,} steps"
            put("s1_us_per_call", tool, s1["loop_s"] / s1["n"] * 1e6, short)
            fin = s1.get("finish_s")
            put("s1_finish_s", tool, fin,
                short if fin is not None else f"{s1.get('status')}: {s1.get('why', '')}")
            disk = short if fin is not None else "killed before its finish"
            put("s5_s1_bytes", tool, s1.get("bytes"), disk)
            put("s5_s1_bytes_allocated", tool, s1.get("bytes_allocated"), disk)
            if s1.get("bytes") is not None and fin is not None:
                # Per point logged: comparable between a peer stopped by the budget and a
                # tool that wrote all 100,000 steps (whose total is naturally larger).
                put("s5_s1_bytes_per_point", tool, s1["bytes"] / s1["n"], disk, full=True)
            put("s1_rss_mb", tool, s1.get("rss_mb"))
        elif s1:
            put("s1_us_per_call", tool, None, f"{s1.get('status')}: {s1.get('why', '')}")
        if "loop_s" in s2 and s2.get("n"):
            short = ("" if s2["n"] >= sizes["wide_steps"]
                     else f"{int(s2['n']):,} of {sizes['wide_steps']:,} steps")
            values = s2["n"] * sizes["width"]
            if "finish_s" in s2:
                put("s2_values_per_s", tool, values / (s2["loop_s"] + s2["finish_s"]), short)
            else:
                put("s2_values_per_s", tool, None, f"{s2.get('status')}: {s2.get('why', '')}")
            disk = short if "finish_s" in s2 else "killed before its finish"
            put("s5_s2_bytes", tool, s2.get("bytes"), disk)
            put("s5_s2_bytes_allocated", tool, s2.get("bytes_allocated"), disk)
            if s2.get("bytes") is not None and "finish_s" in s2:
                put("s5_s2_bytes_per_point", tool, s2["bytes"] / values, disk, full=True)
            put("s2_rss_mb", tool, s2.get("rss_mb"))
        elif s2:
            put("s2_values_per_s", tool, None, f"{s2.get('status')}: {s2.get('why', '')}")
        if s3:
            if s3.get("status") == "ok":
                short = ("" if s2.get("n", 0) >= sizes["wide_steps"]
                         else f"{int(s3.get('points', 0)):,} points")
                if "s3" in problems.get(tool, {}):
                    short = "wrong: " + problems[tool]["s3"]
                put("s3_read_s", tool, s3.get("read_s"), short)
                put("s3_rss_mb", tool, s3.get("rss_mb"))
            else:
                put("s3_read_s", tool, None, f"{s3.get('status')}: {s3.get('why', '')}")
        if c4:
            n = c4.get("n") or 0
            if c4.get("status") == "ok" and n:
                est = c4.get("init_s", 0.0) + c4["create_s"] * sizes["runs"] / n
                note = "" if n >= sizes["runs"] else f"est. from {int(n)} runs"
                put("s4_create_s", tool, est, note)
                put("s4_create_rss_mb", tool, c4.get("rss_mb"))
            else:
                put("s4_create_s", tool, None, f"{c4.get('status')}: {c4.get('why', '')}")
        if q4:
            if q4.get("status") == "ok":
                runs = int(q4.get("rows") or 0)
                note = "" if runs >= sizes["runs"] else f"table of {runs} runs"
                if "s4query" in problems.get(tool, {}):
                    note = "wrong: " + problems[tool]["s4query"]
                put("s4_query_s", tool, q4.get("query_s"), note)
                put("s4_query_rss_mb", tool, q4.get("rss_mb"))
            else:
                put("s4_query_s", tool, None, f"{q4.get('status')}: {q4.get('why', '')}")
        if s6:
            put("s6_import_s", tool, s6.get("import_s"))
    return rows


# metric: (label, unit, better, target description, target check on labtrack / best peer)
TARGETS: dict[str, tuple[str, str, str, str]] = {
    "s1_us_per_call": ("S1 hot loop: per log call", "µs", "low", "<= 1/10 of fastest peer"),
    "s1_finish_s": ("S1 finish/flush", "s", "low", "< 1/2 of fastest peer"),
    "s2_values_per_s": ("S2 wide: values per second (log + finish)", "values/s", "high",
                        ">= 10x fastest peer"),
    "s3_read_s": ("S3 read-back of S2 into pandas", "s", "low", "<= 1/3 of fastest peer"),
    "s4_create_s": ("S4 create 500 runs", "s", "low", "<= 1/3 of fastest peer"),
    "s4_query_s": ("S4 table of params + final metrics", "s", "low",
                   "<= 1/10 of fastest peer"),
    "s5_s1_bytes": ("S5 bytes on disk, S1 run", "bytes", "low", "<= median peer"),
    "s5_s2_bytes": ("S5 bytes on disk, S2 run", "bytes", "low", "<= median peer"),
    "s5_s1_bytes_allocated": ("S5 disk blocks, S1 run (du)", "bytes", "low", "<= median peer"),
    "s5_s2_bytes_allocated": ("S5 disk blocks, S2 run (du)", "bytes", "low", "<= median peer"),
    "s5_s1_bytes_per_point": ("S5 bytes per point logged, S1 run", "bytes", "low", "<= median peer"),
    "s5_s2_bytes_per_point": ("S5 bytes per value logged, S2 run", "bytes", "low", "<= median peer"),
    "s6_import_s": ("S6 import time", "s", "low", "fastest of all"),
}
RSS_ROWS = {"s1_rss_mb": "S1", "s2_rss_mb": "S2", "s3_rss_mb": "S3",
            "s4_create_rss_mb": "S4 create", "s4_query_rss_mb": "S4 query"}


def verdicts(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """labtrack's ratio to the best peer per row, and whether the issue's target is met.

    The verdict is against every peer, including those that did a smaller job (the
    conservative reading); `full_ratio` is against the peers that did the whole scenario.
    """
    out: dict[str, dict[str, Any]] = {}
    for metric in TARGETS:
        row = rows.get(metric, {})
        out[metric] = _verdict(metric, row)
        alt = _verdict(metric, {k: v for k, v in row.items()
                                if k == "labtrack" or v.get("full", True)})
        out[metric]["full_ratio"] = alt["ratio"]
        out[metric]["full_met"] = alt["met"]
        out[metric]["full_best_peer"] = alt["best_peer"]
    return out


def _verdict(metric: str, row: dict[str, Any]) -> dict[str, Any]:
    better = TARGETS[metric][2]
    lt = row.get("labtrack", {}).get("value")
    peers = {k: v["value"] for k, v in row.items() if k != "labtrack" and v["value"]}
    if lt is None or not peers:
        return {"ratio": None, "met": None, "best_peer": None}
    if metric.startswith("s5_"):
        ref = statistics.median(peers.values())
        best = "median"
    else:
        pick = max if better == "high" else min
        best = pick(peers, key=lambda k: peers[k])
        ref = peers[best]
    ratio = lt / ref if ref else None
    met: bool | None
    if ratio is None:
        met = None
    elif metric == "s1_us_per_call":
        met = ratio <= 0.1
    elif metric == "s1_finish_s":
        met = ratio < 0.5
    elif metric == "s2_values_per_s":
        met = ratio >= 10
    elif metric == "s3_read_s" or metric == "s4_create_s":
        met = ratio <= 1 / 3
    elif metric == "s4_query_s":
        met = ratio <= 0.1
    elif metric.startswith("s5_"):
        met = ratio <= 1
    else:  # s6
        met = ratio < 1
    return {"ratio": ratio, "met": met, "best_peer": best}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        for div, suffix in ((1 << 20, " MiB"), (1 << 10, " KiB")):
            if value >= div:
                return f"{value / div:.1f}{suffix}"
        return f"{value:.0f} B"
    if unit == "values/s":
        return f"{value:,.0f}"
    if unit == "µs":
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def markdown(results: dict[str, Any]) -> str:
    tools = [t for t in results["tools"]]
    keys = [t["key"] for t in tools]
    rows, ver = results["rows"], results["verdicts"]
    m = results["machine"]
    lines = [MD_HEADING, ""]
    lines += [f"Measured {results['finished']} with `{results['command']}` "
              f"({results['elapsed_s'] / 60:.0f} min in all; "
              f"{results['reps']} repetitions, medians; sizes {json.dumps(results['sizes'])}).",
              "",
              f"Machine: {m['nproc']} CPUs, {m['memory']}, Python {m['python']}, "
              f"{m['platform']}; load average {m['load_start']} at the start and "
              f"{m['load_end']} at the end (the machine was shared: compare ratios "
              "within this table, not absolute times with other runs).", ""]
    sources = results.get("labtrack_source", [])
    if sources:
        same = len(set(sources)) == 1
        lines += [f"labtrack: commit {sources[0]}" + (
            "" if same else "; **its source changed during the run**, repetitions ran: "
            + ", ".join(sources)), ""]
    lines += ["| tool | version |", "| --- | --- |"]
    for t in tools:
        status = results["broken"].get(t["key"])
        lines.append(f"| {t['label']} | {t.get('version') or '?'}"
                     + (f" (did not run: {status.splitlines()[-1]})" if status else "") + " |")
    lines += ["", "A cell with a note did less than the full scenario: a peer stopped by the "
              "time budget, whose job was made smaller (never labtrack's). *ratio*: labtrack "
              "divided by the fastest peer (the median peer for S5), every peer counted, even "
              "one that did a smaller job: the verdict *met* is on this conservative ratio. "
              "*full-size ratio*: against the peers that did the whole scenario only.", ""]
    head = ("| scenario | unit | " + " | ".join(keys)
            + " | ratio | target | met | full-size ratio |")
    lines += [head, "|" + " --- |" * (len(keys) + 6)]
    for metric, (label, unit, _better, target) in TARGETS.items():
        row = rows.get(metric, {})
        cells = []
        for k in keys:
            cell = row.get(k)
            if cell is None:
                cells.append("n/a")
                continue
            text = fmt(cell["value"], unit)
            if cell["note"] and cell["value"] is not None:
                note = cell["note"].replace("|", "/").replace("\n", " ")
                text += f" ({note[:90]})"
            cells.append(text)
        v = ver.get(metric, {})
        ratio = "n/a" if v.get("ratio") is None else f"{v['ratio']:.3g}"
        if v.get("best_peer") and v["best_peer"] != "median":
            ratio += f" vs {v['best_peer']}"
        met = {True: "met", False: "**not met**", None: "n/a"}[v.get("met")]
        full = "n/a (no peer did it all)" if v.get("full_ratio") is None else (
            f"{v['full_ratio']:.3g}" + (f" vs {v['full_best_peer']}"
                                        if v.get("full_best_peer") not in (None, "median") else "")
            + (" (met)" if v.get("full_met") else " (not met)"))
        lines.append(f"| {label} | {unit} | " + " | ".join(cells)
                     + f" | {ratio} | {target} | {met} | {full} |")
    lines += ["", "Peak RSS of the scenario process (MiB):", "",
              "| scenario | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    for metric, label in RSS_ROWS.items():
        row = rows.get(metric, {})
        lines.append(f"| {label} | " + " | ".join(
            fmt(row[k]["value"], "") if k in row and row[k]["value"] else "n/a" for k in keys)
            + " |")
    lines += ["", "Not available (n/a), and why:", ""]
    for k, why in sorted(results["na"].items()):
        lines.append(f"- {k}: {why}")
    lines += ["", "How each tool is driven, and what was decided for fairness: "
              "benchmarks/README.md. Raw figures: benchmarks/peers/results.json.", ""]
    return "\n".join(lines)


def update_results_md(section: str) -> None:
    """Replace the peers' section of RESULTS.md, leaving every other section alone."""
    replace_section(RESULTS_MD, MD_HEADING, section,
                    new_file=("# Benchmark results\n\n" + MD_HEADING + "\n\n## labtrack alone\n\n"
                              "(log overhead, read speed, API speed, remote ingest: merged by the lead)\n"))


def labtrack_source() -> str:
    """The commit of the checkout, plus a hash of src/labtrack when it differs from it.

    Other people edit labtrack while the suite runs; this shows which code each repetition ran.
    """
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "labtrack").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return f"{commit or '?'} (src/labtrack sha256 {digest.hexdigest()[:12]})"


def machine(load_start: str) -> dict[str, Any]:
    mem = ""
    try:
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout
        memory = mem.splitlines()[1].split()[1] + " RAM"
    except (OSError, IndexError):
        memory = "memory unknown"
    return {"nproc": os.cpu_count(), "memory": memory, "free_h": mem,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_start": load_start, "load_end": _load()}


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- main

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, for development")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the smoke test)")
    p.add_argument("--tools", default=",".join(t.key for t in TOOLS),
                   help="comma-separated: " + ",".join(t.key for t in TOOLS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated s1..s6")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--budget", type=float, default=5.0,
                   help="seconds a peer's S1/S2 logging loop may take before it stops early")
    p.add_argument("--s4-budget", type=float, default=15.0,
                   help="seconds a peer's S4 run creation may take before it stops early")
    p.add_argument("--timeout", type=float, default=150.0,
                   help="seconds per peer process before it is killed (labtrack: 4x this)")
    p.add_argument("--deadline-minutes", type=float, default=28.0,
                   help="start no repetition that would end later than this after the start "
                        "(install included); 0: no limit")
    p.add_argument("--skip-install", action="store_true", help="use .venv-peers as it is")
    p.add_argument("--workdir", help="where the tools write (default: a new temp dir)")
    p.add_argument("--out", help="results JSON (default: peers/results.json for a full run, "
                                 "benchmarks/.work/results-quick.json otherwise)")
    p.add_argument("--no-md", action="store_true", help="do not update RESULTS.md")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="run nothing: rebuild the table from a results file and update RESULTS.md")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def render(path: Path, write_md: bool) -> int:
    """Derive the table again from a results file (after a change to the report code)."""
    results = json.loads(path.read_text())
    sizes = results["sizes"]
    results["problems"] = check_reps(results["repetitions"], sizes)
    results["rows"] = derive(results["medians"], sizes, results["problems"])
    results["verdicts"] = verdicts(results["rows"])
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    section = markdown(results)
    print(section)
    if write_md:
        update_results_md(section)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        return render(Path(args.render), not args.no_md)
    if argv is None:  # as a program: a SIGTERM stops the running scenario process too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    load_start = _load()
    keys = [k.strip() for k in args.tools.split(",") if k.strip()]
    by_key = {t.key: t for t in TOOLS}
    missing = [k for k in keys if k not in by_key]
    if missing:
        print(f"unknown tools {missing}; choose from {', '.join(by_key)}", file=sys.stderr)
        return 2
    tools = [by_key[k] for k in keys]

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {msg}", flush=True)

    failed_pins: dict[str, str] = {}
    if any(t.peer for t in tools) and not args.skip_install:
        failed_pins = ensure_peers(log)
    # Every tool imports from compiled bytecode, as after a pip install (the peers' packages
    # were compiled by pip; labtrack's editable source is compiled here, once).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "labtrack")],
                   check=False, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    if not list((ROOT / "src" / "labtrack").glob("_hot.*.so")):
        log("warning: labtrack's C module is not built in src/labtrack (make install, or "
            "hatch_build.compile_hot): labtrack runs its pure Python path")
    suite = Suite(args, tools, log)
    if not suite.args.workdir and _inside_git(suite.work):
        log(f"warning: {suite.work} is inside a git repository")
    log(f"data under {suite.work}")
    try:
        suite.run(started)
    finally:
        if not args.workdir:
            shutil.rmtree(suite.work, ignore_errors=True)

    med = suite.medians()
    problems = check_reps(suite.reps, suite.sizes)
    rows = derive(med, suite.sizes, problems)
    na: dict[str, str] = {}
    for key, by_scenario in med.items():
        for name, summary in by_scenario.items():
            if summary.get("status") not in ("ok", None):
                na[f"{key} {name}"] = (f"{summary['status']}: "
                                       + str(summary.get("why", "")).splitlines()[-1][:300]
                                       if summary.get("why") else summary["status"])
    for key, why in suite.broken.items():
        na[f"{key}"] = "did not run: " + why.splitlines()[-1][:300]
    for req, err in failed_pins.items():
        na[f"install {req}"] = err.splitlines()[-1][:300]
    versions = {t.key: next((s.get("version") for s in med.get(t.key, {}).values()
                             if s.get("version")), None) for t in tools}
    results = {
        "command": "make bench" if not (args.quick or args.tiny) and argv is None
        and len(sys.argv) == 1 else "python benchmarks/run.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "elapsed_s": time.perf_counter() - started,
        "sizes": suite.sizes, "reps": suite.reps_done, "reps_asked": args.reps, "budget_s": args.budget,
        "s4_budget_s": args.s4_budget, "timeout_s": args.timeout,
        "machine": machine(load_start),
        "tools": [{"key": t.key, "label": t.label, "version": versions.get(t.key)}
                  for t in tools],
        "labtrack_source": suite.sources,
        "broken": suite.broken, "install_failures": failed_pins, "na": na,
        "problems": problems,
        "rows": rows, "verdicts": verdicts(rows), "medians": med, "repetitions": suite.reps,
    }
    full = not (args.quick or args.tiny)
    out = Path(args.out) if args.out else (RESULTS_JSON if full else
                                           WORK / "results-quick.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    section = markdown(results)
    print("\n" + section)
    if full and not args.no_md:
        update_results_md(section)
        log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} and "
            f"{RESULTS_MD.relative_to(ROOT)}")
    else:
        log(f"wrote {out}")
    return 0


def _inside_git(path: Path) -> bool:
    return any((p / ".git").exists() for p in [path, *path.parents])


if __name__ == "__main__":
    sys.exit(main())
