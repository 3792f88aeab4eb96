"""DVCLive's side: ``Live(dir=<dir>/dvclive/<run>)`` with its defaults, outside any DVC repo.

DVCLive's step is implicit: a training step is ``log_metric`` for each value, then
``next_step()``, which writes the step out; both are timed as the per-step call. Its read
side is its documented files (``plots/metrics/<name>.tsv``, ``params.yaml``,
``metrics.json``): ``dvc exp show`` needs a DVC repository with git, which these runs do not
have, so S3 and the S4 query read those files with pandas, yaml and json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Any

import _common as c


def _dir(args: argparse.Namespace, name: str) -> str:
    return os.path.join(args.dir, "dvclive", name)


def s1(args: argparse.Namespace) -> dict[str, Any]:
    from dvclive import Live

    values = c.s1_values(args.steps)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    live = Live(dir=_dir(args, "hot-loop"))
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            live.log_metric("loss", values[i])
            live.next_step()
    t.lap("loop_s", partial={"n": budget.done})
    live.end()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    from dvclive import Live

    rows = c.s2_rows(args.wide_steps, args.width)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    live = Live(dir=_dir(args, "wide"))
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            for key, value in rows[i].items():
                live.log_metric(key, value)
            live.next_step()
    t.lap("loop_s", partial={"n": budget.done})
    live.end()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": "wide"}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    t = c.Timer()
    t.start()
    frames = []
    for path in sorted(glob.glob(os.path.join(_dir(args, args.ref), "plots", "metrics", "**",
                                              "*.tsv"), recursive=True)):
        frame = pd.read_csv(path, sep="\t")
        name = frame.columns[-1]
        frames.append(frame.rename(columns={name: "value"}).assign(name=name))
    df = pd.concat(frames, ignore_index=True)
    t.lap("read_s")
    return {**t.spans, "points": int(df["value"].notna().sum()), "shape": list(df.shape)}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    from dvclive import Live

    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            live = Live(dir=_dir(args, f"run-{r:04d}"))
            live.log_params(c.s4_params(r))
            for i in range(args.run_steps):
                for key, value in c.s4_row(r, i).items():
                    live.log_metric(key, value)
                live.next_step()
            live.end()
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    import yaml

    t = c.Timer()
    t.start()
    rows = []
    for run_dir in sorted(glob.glob(_dir(args, "run-*"))):
        with open(os.path.join(run_dir, "params.yaml")) as f:
            row = dict(yaml.safe_load(f))
        with open(os.path.join(run_dir, "metrics.json")) as f:
            row.update(json.load(f))
        row["run"] = os.path.basename(run_dir)
        rows.append(row)
    table = pd.DataFrame(rows)
    t.lap("query_s")
    return {**t.spans, "rows": len(table), "columns": [str(x) for x in table.columns],
            "final_val_loss": c.finals(table, "val_loss")}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query}, "dvclive")
