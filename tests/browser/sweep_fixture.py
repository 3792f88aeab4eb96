"""A sweep for the analysis journeys (run as a script): 20 runs in 4 groups, each logging
train/, val/ and system/ series at steps up to 690,010, with lr spread over three decades.

    python sweep_fixture.py ROOT
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

import labtrack

RUNS = 20
GROUPS = ["sweep-a", "sweep-b", "sweep-c", "sweep-d"]
POINTS = 201
STRIDE = 3450
LAST_STEP = 10 + STRIDE * (POINTS - 1)  # 690,010: a step that must never print as 6.9001e+5


def main() -> None:
    root = Path(sys.argv[1]).absolute()
    ids: dict[str, str] = {}
    for i in range(RUNS):
        group = GROUPS[i % len(GROUPS)]
        lr = 10 ** (-4 + 3 * i / (RUNS - 1))
        cfg = {"lr": lr, "batch_size": [32, 64, 128, 256][i % 4], "optimizer": "adam" if i % 3 else "sgd",
               "warmup": i % 5 if i % 7 else None}
        run = labtrack.Run("sweep", f"run-{i:02d}", config=cfg, group=group, root=root, seed=i,
                           capture_console=False, capture_git=False, system=False)
        rng = np.random.default_rng(i)
        rate = 0.5 + 2.5 * (GROUPS.index(group) + 1) / len(GROUPS) + 0.8 * rng.random()
        for k in range(POINTS):
            step = 10 + STRIDE * k
            frac = k / (POINTS - 1)
            loss = 2.3 * math.exp(-rate * frac * 3) + 0.05 + 0.03 * float(rng.standard_normal())
            acc = 1 - 0.9 * math.exp(-rate * frac * 2.5) - 0.01 * abs(float(rng.standard_normal()))
            run.log({"train/loss": loss, "train/acc": acc}, step=step)
            if k % 5 == 0:
                run.log({"val/loss": loss * 1.1 + 0.02, "val/acc": acc - 0.02}, step=step)
            if k % 10 == 0:
                run.log({"system/cpu/percent": 40 + 20 * float(rng.random()),
                         "system/memory/percent": 30 + 10 * frac}, step=step)
        run.finish()
        ids[run.name or run.id] = run.id
    (root.parent / "sweep-ids.json").write_text(json.dumps(ids, indent=2))


if __name__ == "__main__":
    main()
