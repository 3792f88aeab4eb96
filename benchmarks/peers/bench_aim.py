"""Aim's side: a repository at ``<dir>/aim`` (its ``.aim`` folder holds RocksDB stores).

Reading uses Aim's SDK: ``Run(hash, read_only=True).metrics().dataframe()`` for S3 and one
``Repo.query_metrics(...)`` with the params for the S4 table.

Aim's SDK reads finished runs through its index, which ``aim up`` (or ``aim storage
reindex``) fills in the background after a run closes; a run not yet indexed reads as having
no metrics. So S3 and the S4 query first index the runs the way ``aim up`` does, outside the
timed span (reported apart as ``index_s``), then time the read.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import _common as c


def _repo(args: argparse.Namespace) -> str:
    path = os.path.join(args.dir, "aim")
    os.makedirs(path, exist_ok=True)
    return path


def _index(repo_path: str, hashes: list[str] | None = None) -> None:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo(repo_path)
    manager = RepoIndexManager.get_index_manager(repo)
    for run_hash in hashes if hashes is not None else repo.list_all_runs():
        manager.index(run_hash)
    repo.close()


def s1(args: argparse.Namespace) -> dict[str, Any]:
    from aim import Run

    values = c.s1_values(args.steps)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    run = Run(repo=_repo(args), experiment="s1")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            run.track(values[i], name="loss", step=i)
    t.lap("loop_s", partial={"n": budget.done})
    run.close()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    from aim import Run

    rows = c.s2_rows(args.wide_steps, args.width)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    run = Run(repo=_repo(args), experiment="s2")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            run.track(rows[i], step=i)
    t.lap("loop_s", partial={"n": budget.done})
    ref = run.hash
    run.close()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": ref}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd  # noqa: F401  (a notebook has pandas loaded before it reads)
    from aim import Run

    t = c.Timer()
    t.start()
    _index(_repo(args), [args.ref])
    t.lap("index_s")
    run = Run(args.ref, repo=_repo(args), read_only=True)
    df = run.metrics().dataframe(include_props=False, include_params=False)
    t.lap("read_s")
    return {**t.spans, "points": int(df["value"].notna().sum()), "shape": list(df.shape)}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    from aim import Run

    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            run = Run(repo=_repo(args), experiment="s4")
            run["hparams"] = c.s4_params(r)
            for i in range(args.run_steps):
                run.track(c.s4_row(r, i), step=i)
            run.close()
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd  # noqa: F401  (a notebook has pandas loaded before it reads)
    from aim import Repo

    t = c.Timer()
    t.start()
    _index(_repo(args))
    t.lap("index_s")
    repo = Repo(_repo(args))
    # Every point, then the one at the highest step: Aim's own only_last=True (and
    # Metric.values.last()) answer the point whose storage key sorts last, which is not the
    # last step (checked with aim 3.29.1: it gave step 62 of 0..99).
    long = repo.query_metrics("run.experiment == 's4'").dataframe(
        include_context=False, include_props=False, include_params=True)
    param_cols = [col for col in long.columns if col.startswith("run.hparams.")]
    last = long.sort_values("step").groupby(["run.hash", "metric.name"]).tail(1)
    table = last.pivot_table(index=["run.hash", *param_cols], columns="metric.name",
                             values="value", aggfunc="last").reset_index()
    t.lap("query_s")
    return {**t.spans, "rows": len(table), "columns": [str(x) for x in table.columns],
            "final_val_loss": c.finals(table, "val_loss")}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query}, "aim")
