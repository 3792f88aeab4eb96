"""What every scenario script shares: the command line, the data, the timer, the result line.

A scenario script is run by ``benchmarks/run.py`` in a fresh process, once per repetition:

    python benchmarks/peers/bench_<tool>.py <scenario> --dir DIR [--steps N ...]

It does the work a training script (S1, S2, S4 create) or a notebook (S3, S4 query) does,
times it with ``time.perf_counter`` inside the process, and prints one line
``RESULT {json}`` on stdout as its last line. Everything else it prints is ignored.
Only the standard library is imported here, so the tool's import stays the first heavy one.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

SCENARIOS = ("s1", "s2", "s3", "s4create", "s4query")

# S4: ten params and five metrics per run, the same for every tool.
S4_PARAMS = ("lr", "batch_size", "epochs", "dropout", "optimizer", "weight_decay",
             "momentum", "layers", "hidden", "seed")
S4_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr_now")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a scenario script's command line (the harness passes every size)."""
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--dir", required=True, help="where the tool keeps its data (the cwd too)")
    p.add_argument("--steps", type=int, default=100_000, help="S1 steps")
    p.add_argument("--wide-steps", type=int, default=10_000, help="S2 steps")
    p.add_argument("--width", type=int, default=20, help="S2 scalars per step")
    p.add_argument("--runs", type=int, default=500, help="S4 runs")
    p.add_argument("--run-steps", type=int, default=100, help="S4 steps per run")
    p.add_argument("--ref", default="", help="S3/S4 query: what S2/S4 create reported")
    p.add_argument("--mode", default="", help="tool variant, e.g. mlflow's async logging")
    p.add_argument("--budget", type=float, default=0.0,
                   help="seconds after which a slow tool's loop stops at the next chunk "
                        "boundary (0: none); the result says how much was done")
    return p.parse_args(argv)


def s1_values(n: int) -> list[float]:
    """The S1 series: a decaying, noisy loss (precomputed so the loop times only logging)."""
    return [2.5 * math.exp(-i / (n / 5 + 1)) + 0.01 * math.sin(i) for i in range(n)]


def s2_keys(width: int) -> list[str]:
    return [f"metric_{j:02d}" for j in range(width)]


def s2_rows(steps: int, width: int) -> list[dict[str, float]]:
    """One dict per step, built up front: a training script has its dict ready to log."""
    keys = s2_keys(width)
    return [{k: math.sin(i * 0.001 + j) for j, k in enumerate(keys)} for i in range(steps)]


def s4_params(r: int) -> dict[str, Any]:
    return {"lr": 10 ** (-1 - r % 4), "batch_size": 32 * (1 + r % 4), "epochs": 10 + r % 7,
            "dropout": round(0.1 * (r % 5), 2), "optimizer": ("sgd", "adam", "adamw")[r % 3],
            "weight_decay": 1e-4 * (1 + r % 3), "momentum": 0.9, "layers": 2 + r % 4,
            "hidden": 64 * (1 + r % 8), "seed": r}


def s4_row(r: int, i: int) -> dict[str, float]:
    base = 1.0 / (1 + i + r % 10)
    return {"train_loss": base, "val_loss": base * 1.1, "train_acc": 1 - base,
            "val_acc": 1 - base * 1.2, "lr_now": 0.1 * 0.99 ** i}


def finals(table: Any, metric: str) -> list[float]:
    """A metric's final values from a query table, sorted: the harness checks them."""
    for col in table.columns:
        if str(col) == metric or str(col).endswith(("." + metric, "/" + metric, ":" + metric)):
            return sorted(round(float(x), 9) for x in table[col])
    return []


def expected_finals(runs: int, run_steps: int) -> list[float]:
    return sorted(round(s4_row(r, run_steps - 1)["val_loss"], 9) for r in range(runs))


class Budget:
    """Chunks of a loop, and a deadline checked only between chunks.

    The inner loop of each scenario stays a plain ``for i in range(lo, hi)`` around the
    tool's call, as in a training script; the deadline is looked at once per chunk, so it
    costs nothing measurable per call. A tool too slow to finish in time stops early and the
    result records how many steps (or runs) it did.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.done = 0

    def chunks(self, n: int, size: int) -> Any:
        """Yield (lo, hi) bounds; the clock starts with the first chunk, not before."""
        deadline = time.perf_counter() + self.seconds if self.seconds > 0 else math.inf
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            yield lo, hi
            self.done = hi
            if time.perf_counter() > deadline:
                return


class Timer:
    """Named wall-clock spans measured with perf_counter."""

    def __init__(self) -> None:
        self.spans: dict[str, float] = {}
        self._t = 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, name: str, partial: dict[str, Any] | None = None) -> None:
        """Close the span `name`; with `partial`, also print what is known so far.

        The partial line lets the harness keep the loop's figures when a slow tool's
        finish runs past the time limit; it is printed outside every timed span.
        """
        now = time.perf_counter()
        self.spans[name] = now - self._t
        if partial is not None:
            sys.stdout.write("\nPARTIAL " + json.dumps({**self.spans, **partial}) + "\n")
            sys.stdout.flush()
            now = time.perf_counter()
        self._t = now


def emit(result: dict[str, Any]) -> None:
    """Print the result line the harness reads (always the last line on stdout)."""
    sys.stdout.flush()
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def main(handlers: dict[str, Callable[[argparse.Namespace], dict[str, Any]]],
         distribution: str) -> None:
    """Run the scenario named on the command line and print its result line."""
    args = parse()
    os.makedirs(args.dir, exist_ok=True)
    os.chdir(args.dir)
    if args.scenario not in handlers:
        emit({"status": "n/a", "why": "no such scenario for this tool"})
        return
    out = handlers[args.scenario](args)
    out.setdefault("status", "ok")
    out["version"] = importlib.metadata.version(distribution)
    emit(out)
