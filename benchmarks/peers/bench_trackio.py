"""trackio's side: local mode, its SQLite database under ``TRACKIO_DIR=<dir>/trackio``.

trackio's public Python read API (``trackio.Api``) lists runs and their configs but not
metric values; its CLI (``trackio get metric``) and dashboard read them with
``SQLiteStorage.get_logs``, which is what S3 and the S4 query call (one call per run).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import _common as c


def _trackio(args: argparse.Namespace) -> Any:
    # trackio reads TRACKIO_DIR once, when it is imported.
    os.environ["TRACKIO_DIR"] = os.path.join(args.dir, "trackio")
    import trackio

    return trackio


def s1(args: argparse.Namespace) -> dict[str, Any]:
    trackio = _trackio(args)  # imported before the clock starts, for every tool
    values = c.s1_values(args.steps)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    trackio.init(project="s1", name="hot-loop", embed=False)
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            trackio.log({"loss": values[i]}, step=i)
    t.lap("loop_s", partial={"n": budget.done})
    trackio.finish()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    trackio = _trackio(args)  # imported before the clock starts, for every tool
    rows = c.s2_rows(args.wide_steps, args.width)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    trackio.init(project="s2", name="wide", embed=False)
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            trackio.log(rows[i], step=i)
    t.lap("loop_s", partial={"n": budget.done})
    trackio.finish()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": "wide"}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    _trackio(args)
    import pandas as pd
    from trackio.sqlite_storage import SQLiteStorage

    t = c.Timer()
    t.start()
    df = pd.DataFrame(SQLiteStorage.get_logs("s2", args.ref))
    t.lap("read_s")
    values = df[[col for col in df.columns if col not in ("step", "timestamp")]]
    return {**t.spans, "points": int(values.notna().sum().sum()), "shape": list(df.shape)}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    trackio = _trackio(args)  # imported before the clock starts, for every tool
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            trackio.init(project="s4", name=f"run-{r:04d}", config=c.s4_params(r), embed=False)
            for i in range(args.run_steps):
                trackio.log(c.s4_row(r, i), step=i)
            trackio.finish()
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    trackio = _trackio(args)
    import pandas as pd
    from trackio.sqlite_storage import SQLiteStorage

    t = c.Timer()
    t.start()
    rows = []
    for run in trackio.Api().runs("s4"):
        row: dict[str, Any] = {"run": run.name}
        row.update({k: v for k, v in (run.config or {}).items() if not k.startswith("_")})
        for log in SQLiteStorage.get_logs("s4", run.name, run_id=run.id):
            row.update({k: v for k, v in log.items() if k not in ("step", "timestamp")})
        rows.append(row)
    table = pd.DataFrame(rows)
    t.lap("query_s")
    return {**t.spans, "rows": len(table), "columns": [str(x) for x in table.columns],
            "final_val_loss": c.finals(table, "val_loss")}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query}, "trackio")
