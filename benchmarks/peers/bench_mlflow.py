"""MLflow's side: its default SQLite store; ``--mode async`` logs with synchronous=False.

The tracking URI is ``sqlite:///<dir>/mlflow.db`` and artifacts go to ``<dir>/mlruns`` (the
default artifact root next to the cwd). ``mlflow.end_run()`` drains the async queue before it
returns, so the finish time includes writing everything that was logged.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import _common as c


def _setup(args: argparse.Namespace, experiment: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri("sqlite:///" + os.path.join(args.dir, "mlflow.db"))
    mlflow.set_experiment(experiment)
    return mlflow


def _sync(args: argparse.Namespace) -> bool:
    return args.mode != "async"


def s1(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow  # noqa: F401  (imported before the clock starts, for every tool)
    values = c.s1_values(args.steps)
    sync = _sync(args)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    mlflow = _setup(args, "s1")
    mlflow.start_run(run_name="hot-loop")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            mlflow.log_metric("loss", values[i], step=i, synchronous=sync)
    t.lap("loop_s", partial={"n": budget.done})
    mlflow.end_run()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow  # noqa: F401  (imported before the clock starts, for every tool)
    rows = c.s2_rows(args.wide_steps, args.width)
    sync = _sync(args)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    mlflow = _setup(args, "s2")
    run = mlflow.start_run(run_name="wide")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            mlflow.log_metrics(rows[i], step=i, synchronous=sync)
    t.lap("loop_s", partial={"n": budget.done})
    mlflow.end_run()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": run.info.run_id}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    t = c.Timer()
    t.start()
    client = MlflowClient(tracking_uri="sqlite:///" + os.path.join(args.dir, "mlflow.db"))
    run = client.get_run(args.ref)
    records = [(key, m.step, m.value, m.timestamp)
               for key in sorted(run.data.metrics)
               for m in client.get_metric_history(args.ref, key)]
    df = pd.DataFrame.from_records(records, columns=["name", "step", "value", "timestamp"])
    t.lap("read_s")
    return {**t.spans, "points": int(df["value"].notna().sum()), "shape": list(df.shape)}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow  # noqa: F401  (imported before the clock starts, for every tool)
    sync = _sync(args)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    mlflow = _setup(args, "s4")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            with mlflow.start_run(run_name=f"run-{r:04d}"):
                mlflow.log_params(c.s4_params(r), synchronous=sync)
                for i in range(args.run_steps):
                    mlflow.log_metrics(c.s4_row(r, i), step=i, synchronous=sync)
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow  # noqa: F401  (imported before the clock starts, for every tool)
    import pandas as pd  # noqa: F401  (a notebook has pandas loaded before it reads)
    t = c.Timer()
    t.start()
    mlflow = _setup(args, "s4")
    table = mlflow.search_runs(experiment_names=["s4"])
    t.lap("query_s")
    return {**t.spans, "rows": len(table), "columns": [str(x) for x in table.columns],
            "final_val_loss": c.finals(table, "val_loss")}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query}, "mlflow")
