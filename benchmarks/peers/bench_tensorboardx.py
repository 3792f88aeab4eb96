"""tensorboardX's side: event files under ``<dir>/tb/<run>``.

tensorboardX only writes. S3 reads the event files with TensorBoard's own reader,
``EventAccumulator`` (``size_guidance`` 0 keeps every point instead of its default sample of
10,000). tensorboardX has no batch call for independent scalars (``add_scalars`` makes one
event-file writer per key, for one chart), so S2 calls ``add_scalar`` per key, as scripts do.
Params are written with ``add_hparams`` at the end of each S4 run; neither tensorboardX nor
TensorBoard has a Python API to query them back into a table, so the S4 query is n/a.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import _common as c


def _logdir(args: argparse.Namespace, name: str) -> str:
    return os.path.join(args.dir, "tb", name)


def s1(args: argparse.Namespace) -> dict[str, Any]:
    from tensorboardX import SummaryWriter

    values = c.s1_values(args.steps)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    writer = SummaryWriter(logdir=_logdir(args, "hot-loop"))
    t.lap("init_s")
    for lo, hi in budget.chunks(args.steps, 100):
        for i in range(lo, hi):
            writer.add_scalar("loss", values[i], i)
    t.lap("loop_s", partial={"n": budget.done})
    writer.close()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done}


def s2(args: argparse.Namespace) -> dict[str, Any]:
    from tensorboardX import SummaryWriter

    rows = c.s2_rows(args.wide_steps, args.width)
    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    writer = SummaryWriter(logdir=_logdir(args, "wide"))
    t.lap("init_s")
    for lo, hi in budget.chunks(args.wide_steps, 10):
        for i in range(lo, hi):
            for key, value in rows[i].items():
                writer.add_scalar(key, value, i)
    t.lap("loop_s", partial={"n": budget.done})
    writer.close()
    t.lap("finish_s")
    return {**t.spans, "n": budget.done, "ref": "wide"}


def s3(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t = c.Timer()
    t.start()
    acc = EventAccumulator(_logdir(args, args.ref), size_guidance={"scalars": 0})
    acc.Reload()
    records = [(tag, e.step, e.value, e.wall_time)
               for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    df = pd.DataFrame.from_records(records, columns=["name", "step", "value", "wall_time"])
    t.lap("read_s")
    return {**t.spans, "points": int(df["value"].notna().sum()), "shape": list(df.shape)}


def s4create(args: argparse.Namespace) -> dict[str, Any]:
    from tensorboardX import SummaryWriter

    budget = c.Budget(args.budget)
    t = c.Timer()
    t.start()
    for lo, hi in budget.chunks(args.runs, 1):
        for r in range(lo, hi):
            writer = SummaryWriter(logdir=_logdir(args, f"run-{r:04d}"))
            row: dict[str, float] = {}
            for i in range(args.run_steps):
                row = c.s4_row(r, i)
                for key, value in row.items():
                    writer.add_scalar(key, value, i)
            writer.add_hparams(c.s4_params(r), {"hparam/" + k: v for k, v in row.items()})
            writer.close()
    t.lap("create_s")
    return {**t.spans, "n": budget.done}


def s4query(args: argparse.Namespace) -> dict[str, Any]:
    return {"status": "n/a", "why": "no Python API in tensorboardX or TensorBoard reads "
                                    "hparams back into a table (only TensorBoard's UI)"}


if __name__ == "__main__":
    c.main({"s1": s1, "s2": s2, "s3": s3, "s4create": s4create, "s4query": s4query},
           "tensorboardX")
