"""labtrack's side of the scenarios: the calls a training script and a notebook make."""

from __future__ import annotations

import argparse
import os
from typing import Any

import _common as c


def _root(args: argparse.Namespace) -> str:
    return os.path.join(args.dir, "labtrack")


def s1(args: argparse.Namespace) -> dict[str, Any]:
    import labtrack

    values = c.s1_values(args.steps)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    run = labtrack.init(experiment="s1", name="hot-loop", root=_root(args))
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            run.log({"loss": values[i]}, step=i)
    t.lap("loop_s", partial={"n": budget.done})
    run.finish()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    import labtrack

    rows = c.s2_rows(args.wide_steps, args.width)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    run = labtrack.init(experiment="s2", name="wide", root=_root(args))
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            run.log(rows[i], step=i)
    t.lap("loop_s", partial={"n": budget.done})
    run.finish()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": run.id}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd  # noqa: F401  (a notebook has pandas loaded before it reads)
    import labtrack

    t = c.Timer()
    t.start()
    book = labtrack.open(_root(args))
    df = book[args.ref].scalars()
    t.lap("read_s")
    return {**t.spans, "points": int(df.notna().sum().sum()), "shape": list(df.shape)}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    import labtrack

    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            run = labtrack.init(experiment="s4", name=f"run-{r:04d}", config=c.s4_params(r),
                                root=_root(args))
            for i in range(args.run_steps):
                run.log(c.s4_row(r, i), step=i)
            run.finish()
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd  # noqa: F401  (a notebook has pandas loaded before it reads)
    import labtrack

    t = c.Timer()
    t.start()
    book = labtrack.open(_root(args))
    table = book.table(book.runs(experiment="s4"), params=list(c.S4_PARAMS),
                       metrics=list(c.S4_METRICS))
    t.lap("query_s")
    return {**t.spans, "rows": len(table), "columns": [str(x) for x in table.columns],
            "final_val_loss": c.finals(table, "val_loss")}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query}, "labtrack")
