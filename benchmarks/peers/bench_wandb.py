"""W&B's side, offline (``WANDB_MODE=offline``, ``mode="offline"``): it never touches the network.

Offline runs are kept in ``<dir>/wandb/offline-run-*``. W&B's public read API
(``wandb.Api``) reads only from a W&B server, so S3 and the S4 query are not available
offline; they are reported as such.
"""

from __future__ import annotations

import argparse
from typing import Any

import _common as c

NO_READ = ("W&B's public read API (wandb.Api) reads only from a W&B server; offline runs "
           "cannot be read back without syncing them to one")


def _init(args: argparse.Namespace, project: str, name: str, config: Any = None) -> Any:
    import wandb

    return wandb.init(project=project, name=name, config=config, dir=args.dir,
                      mode="offline", reinit="create_new")


def s1(args: argparse.Namespace) -> dict[str, Any]:
    import wandb  # noqa: F401  (imported before the clock starts, for every tool)
    values = c.s1_values(args.steps)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    run = _init(args, "s1", "hot-loop")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            run.log({"loss": values[i]}, step=i)
    t.lap("loop_s", partial={"n": budget.done})
    run.finish()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    import wandb  # noqa: F401  (imported before the clock starts, for every tool)
    rows = c.s2_rows(args.wide_steps, args.width)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    run = _init(args, "s2", "wide")
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            run.log(rows[i], step=i)
    t.lap("loop_s", partial={"n": budget.done})
    run.finish()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": run.id}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    return {"status": "n/a", "why": NO_READ}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    import wandb  # noqa: F401  (imported before the clock starts, for every tool)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            run = _init(args, "s4", f"run-{r:04d}", config=c.s4_params(r))
            for i in range(args.run_steps):
                run.log(c.s4_row(r, i), step=i)
            run.finish()
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    return {"status": "n/a", "why": NO_READ}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query}, "wandb")
