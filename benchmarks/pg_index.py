"""The run index in PostgreSQL against SQLite (issue 18): 100,000 runs listed, filtered,
sorted and paged, warm, target < 300 ms.

    python benchmarks/pg_index.py               # 100,000 runs, 7 repetitions, writes RESULTS.md
    python benchmarks/pg_index.py --quick       # 10,000 runs, 3 repetitions (no RESULTS.md)
    python benchmarks/pg_index.py --runs 30000 --reps 5 --no-write

What it does:

1. Builds the `runs` rows of N finished runs without run directories
   (`_index_rows.record_from`, the code a refresh runs on each run's files): 10 experiments,
   params `lr`, `batch`, `opt.name`, `opt.momentum`, `layers`, `dropout`, two metrics with
   last/min/max/mean (the shape of benchmarks/scale.py's runs, so the figures compare).
2. Starts a throwaway PostgreSQL cluster as the tests do (tests/pg.py `start_cluster`: Debian's
   initdb and pg_ctl, a free 127.0.0.1 port, default memory settings) and stores the rows with
   COPY (`PgIndex.store_records`), then VACUUM ANALYZE, which autovacuum does after a bulk load;
   and the same rows into a SQLite index (`Index.store_records`). Each index is first
   refreshed over an empty root, so no later refresh looks for run directories.
3. Times each query the way `GET /api/v1/runs` answers it: `_server.api.runs_page` (the
   function the endpoint calls) and the page's rows decoded (`Hit.row`), without the server's
   2-second answer cache. Warm: each query runs once untimed first; the where texts change
   with each repetition (as benchmarks/scale.py does), repetitions alternate the two indexes.
   Both indexes must give the same total and the same run ids, or the script fails.

Reported: the median (and the fastest and slowest) of `--reps` repetitions per query.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"
RESULTS_MD = HERE / "RESULTS.md"
MD_HEADING = "## The run index in PostgreSQL against SQLite (benchmarks/pg_index.py)"
TARGET_S = 0.3
METRICS = ("train/loss", "val/acc")


def records(n: int) -> list[tuple[Any, ...]]:
    """The `runs` rows of `n` finished runs (see the module docstring)."""
    from labtrack._index_rows import record_from

    t0 = 1_795_000_000
    out = []
    for i in range(n):
        exp = f"exp{i % 10}"
        started = t0 + i * 7
        rid = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + f"-{i % 1_000_000:06d}"
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
        end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started + 300))
        meta = {"format_version": 1, "id": rid, "experiment": exp, "name": f"trial-{i}",
                "comment": f"sweep point {i}", "tags": ["sweep", f"g{i % 7}"], "status": "finished",
                "started": iso + ".000000+00:00", "ended": end + ".000000+00:00",
                "pid": 1000 + i % 30000, "host": "bench-host", "user": "bench",
                "git": {"commit": f"{i:040x}", "message": "m", "branch": "main", "dirty": i % 2 == 0},
                "seed": i, "parent": None, "error": None}
        params = {"lr": 10 ** -(i % 5), "batch": 32 * (1 + i % 4),
                  "opt": {"name": ("adam", "sgd")[i % 2], "momentum": 0.9}, "layers": [64, 64],
                  "dropout": (i % 10) / 20}
        summary = {}
        for k, name in enumerate(METRICS, start=1):
            values = [((i * k + j * 13) % 97) / 97 for j in range(5)]
            summary[name] = {"last": values[-1], "min": min(values), "max": max(values),
                             "mean": sum(values) / 5, "sum": sum(values), "count": 5, "finite": 5,
                             "step": 4, "time": started + 300.0}
        out.append(record_from(f"{exp}/{rid}", meta, params, summary, f"bench-{i}"))
    return out


def queries(n: int) -> list[tuple[str, Callable[[int], dict[str, Any]]]]:
    """(label, rep -> runs_page arguments): what the dashboard asks for."""
    deep = (n // 2) // 100 * 100
    return [
        ("first page, newest first", lambda rep: {"sort": "-started"}),
        ("filter: where on a param and a metric",
         lambda rep: {"where": f"params.lr < 0.01 and metrics.val/acc > 0.{rep + 1}"}),
        ("sort by a metric (`-metrics.val/acc:max`)", lambda rep: {"sort": "-metrics.val/acc:max"}),
        ("filter and sort by a metric", lambda rep: {"where": f"params.batch >= {32 * (rep % 4)}",
                                                     "sort": ("-", "")[rep % 2] + "metrics.val/acc:max"}),
        ("text search (`q`)", lambda rep: {"q": f"g{rep % 7} sweep"}),
        (f"deep page (offset {deep:,}), newest first", lambda rep: {"sort": "-started", "offset": deep}),
        (f"deep page (offset {deep:,}), sorted by a metric",
         lambda rep: {"sort": "metrics.train/loss", "offset": deep}),
    ]


def call(index: Any, kw: dict[str, Any]) -> tuple[float, int, list[str]]:
    """One /api/v1/runs answer's work: (seconds, total, ids of the page)."""
    from labtrack._server.api import runs_page

    t = time.perf_counter()
    total, page = runs_page(index, kw.get("where"), kw.get("experiment"), kw.get("status"), kw.get("q"),
                            kw.get("sort", "-started"), kw.get("offset", 0), kw.get("limit", 100))
    rows = [h.row() for h in page]
    took = time.perf_counter() - t
    return took, total, [r["id"] for r in rows]


def measure(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    sys.path[:0] = [str(REPO / "tests"), str(SRC)]
    from pg import start_cluster, stop_cluster  # tests/pg.py

    from labtrack._index import Index
    from labtrack._index_pg import PgIndex

    out: dict[str, Any] = {"runs": args.runs, "reps": args.reps}
    t = time.perf_counter()
    recs = records(args.runs)
    out["build_s"] = time.perf_counter() - t
    log(f"built {len(recs):,} rows in {out['build_s']:.1f} s")
    cluster = start_cluster(prefix="labtrack-bench-pg-")
    work = Path(tempfile.mkdtemp(prefix="labtrack-bench-pgindex-"))
    try:
        root = work / "root"
        root.mkdir()
        pgi = PgIndex(root, cluster.create_db())
        pgi.refresh()  # an empty root: the index is current, no later refresh runs
        t = time.perf_counter()
        pgi.store_records(recs)
        out["pg_store_s"] = time.perf_counter() - t
        with pgi.db.connection() as conn:
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE runs")
            row = conn.execute("SELECT pg_relation_size('runs'), pg_total_relation_size('runs'), "
                               "current_setting('server_version'), current_setting('shared_buffers'), "
                               "current_setting('work_mem'), current_setting('max_parallel_workers_per_gather')"
                               ).fetchone()
        assert row is not None
        out["pg"] = {"table_mb": row[0] / 2**20, "total_mb": row[1] / 2**20, "version": row[2],
                     "shared_buffers": row[3], "work_mem": row[4], "parallel_workers": row[5]}
        lite = Index(root, path=work / "index.sqlite")
        lite.refresh()
        t = time.perf_counter()
        lite.store_records(recs)
        out["sqlite_store_s"] = time.perf_counter() - t
        out["sqlite_mb"] = (work / "index.sqlite").stat().st_size / 2**20
        log(f"stored: PostgreSQL {out['pg_store_s']:.1f} s ({out['pg']['total_mb']:.0f} MB with indexes), "
            f"SQLite {out['sqlite_store_s']:.1f} s ({out['sqlite_mb']:.0f} MB)")
        del recs
        rows = []
        for label, make in queries(args.runs):
            times: dict[str, list[float]] = {"pg": [], "sqlite": []}
            for name, index in (("pg", pgi), ("sqlite", lite)):
                call(index, make(0))  # warm: this query's plan, pages and code paths
            total = None
            for rep in range(args.reps):
                answers = {}
                for name, index in (("pg", pgi), ("sqlite", lite))[::(1, -1)[rep % 2]]:
                    took, total, ids = call(index, make(rep))
                    times[name].append(took)
                    answers[name] = (total, ids)
                if answers["pg"] != answers["sqlite"]:
                    raise SystemExit(f"{label} (rep {rep}): PostgreSQL answered {answers['pg'][0]} runs "
                                     f"{answers['pg'][1][:3]}..., SQLite {answers['sqlite'][0]} "
                                     f"{answers['sqlite'][1][:3]}...")
            r = {"query": label, "total": total, **{f"{k}_all": v for k, v in times.items()},
                 **{f"{k}_s": statistics.median(v) for k, v in times.items()}}
            rows.append(r)
            log(f"{label}: PostgreSQL {r['pg_s'] * 1000:.0f} ms, SQLite {r['sqlite_s'] * 1000:.0f} ms "
                f"({total:,} match)")
        out["rows"] = rows
        pgi.close()
        lite.close()
    finally:
        stop_cluster(cluster)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return out


def _ms(v: list[float]) -> str:
    s = sorted(v)
    return f"{statistics.median(s) * 1000:,.0f} ms ({s[0] * 1000:,.0f}-{s[-1] * 1000:,.0f})"


def markdown(r: dict[str, Any]) -> str:
    m, pg = r["machine"], r["pg"]
    lines = [
        MD_HEADING, "",
        f"`{r['command']}` at {r['source']}, {r['finished']}; {m['cpus']} CPUs shared with other "
        f"sessions (noisy), load {m['load_start']} at the start, Python {m['python']}. PostgreSQL "
        f"{pg['version']} started by the script as the tests start it (tests/pg.py: default "
        f"shared_buffers {pg['shared_buffers']}, work_mem {pg['work_mem']}, "
        f"{pg['parallel_workers']} parallel workers per query), on this machine over TCP loopback. "
        f"{r['runs']:,} finished runs (10 experiments, 6 params, 2 metrics with min/max/mean), "
        f"stored with COPY in {r['pg_store_s']:.1f} s (table {pg['table_mb']:.0f} MB, "
        f"{pg['total_mb']:.0f} MB with indexes) and into SQLite in {r['sqlite_store_s']:.1f} s "
        f"({r['sqlite_mb']:.0f} MB).", "",
        "Each figure is the work of one `GET /api/v1/runs` answer (`_server.api.runs_page` and the "
        "page's 100 rows decoded, without the server's 2-second answer cache), warm, median of "
        f"{r['reps']} repetitions (fastest-slowest). Both indexes gave the same totals and run ids.", "",
        "| query (100 rows a page) | runs matched | PostgreSQL | SQLite | PostgreSQL < 300 ms |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in r["rows"]:
        ok = "met" if row["pg_s"] < TARGET_S else "**not met**"
        lines.append(f"| {row['query']} | {row['total']:,} | {_ms(row['pg_all'])} | {_ms(row['sqlite_all'])} | {ok} |")
    lines += ["", (
        "How PostgreSQL answers (`PgIndex._fetch`, migration 5): newest first, the page comes from "
        "the `runs_started_c` index (a deep page by an index-only scan) and the count from "
        "`runs_experiment_status`; with a where or text condition, the page and the count come "
        "from one parallel scan (`count(*) OVER ()` over narrow rows); by another order, a top-N "
        "sort of narrow rows (relpath and the sort keys) and a count apart; then the page's 100 "
        "rows are fetched by key."), "", (
        "What EXPLAIN ANALYZE showed before, at 100,000 runs: the listing's `ORDER BY started "
        "COLLATE \"C\"` could not use `runs_started` (default collation), so the first page was "
        "a parallel scan and sort of the whole table (170 ms); every where first listed every "
        "param and metric name of every run to check the names (`jsonb_array_elements`, 0.5 s), "
        "now one `EXISTS` per name; the page and the count evaluated the where in two scans; and "
        "`/api/v1/runs` fetched and decoded every matching row (`select`), then sliced the page: "
        "2.4 s for the first page, 2.3 s for the filter, 4.3 s for the sort (medians of 5, load "
        "about 8, the same rows). What is left in the rows that miss 300 ms is one scan of the "
        "whole table on a loaded 2-core machine: a row is about 1.7 KB (params, metrics and "
        "aggregates twice: the JSON text rows are decoded from and the jsonb the SQL reads), the "
        "table (195 MB) is larger than the default shared_buffers, and a sort key extracts the "
        "metric from jsonb about 15 times per row (type, NaN, number, text, container terms). "
        "Under 300 ms there needs a narrower table for the conditions (the jsonb apart from the "
        "text copies), sort keys computed once per row, or memory for the table; SQLite decodes "
        "every candidate row's JSON in Python and sorts there, so its times grow with the runs "
        "matched.")]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="runs in the index (default 100,000; --quick 10,000)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per query (default 7; --quick 3)")
    ap.add_argument("--quick", action="store_true", help="10,000 runs, 3 repetitions, RESULTS.md left alone")
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the RESULTS.md section from figures "
                    "a run wrote with --json")
    args = ap.parse_args()
    if args.render:
        sys.path.insert(0, str(HERE))
        from _results import replace_section

        replace_section(RESULTS_MD, MD_HEADING, markdown(json.loads(Path(args.render).read_text())))
        return 0
    args.runs = args.runs or (10_000 if args.quick else 100_000)
    args.reps = args.reps or (3 if args.quick else 7)
    load_start = f"{os.getloadavg()[0]:.1f}"

    def log(msg: str) -> None:
        print(f"[pg_index] {msg}", file=sys.stderr, flush=True)

    r = measure(args, log)
    source = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "?"
    cmd = "python benchmarks/pg_index.py"
    if args.quick:
        cmd += " --quick"
    else:
        cmd += "".join(f" --{k} {v}" for k, v in (("runs", args.runs), ("reps", args.reps))
                       if v != {"runs": 100_000, "reps": 7}[k])
    r.update(command=cmd, source=source, finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             machine={"cpus": os.cpu_count(), "load_start": load_start, "python": platform.python_version()})
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    section = markdown(r)
    print(section)
    if not (args.no_write or args.quick):
        sys.path.insert(0, str(HERE))
        from _results import replace_section

        replace_section(RESULTS_MD, MD_HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
