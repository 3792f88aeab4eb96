"""A training script for the live test: logs until a stop file appears (run as a script).

    python live_child.py ROOT STOPFILE
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import labtrack


def main() -> None:
    root, stop = sys.argv[1], Path(sys.argv[2])
    run = labtrack.Run("live", "streaming", config={"lr": 0.2}, root=root, capture_console=False,
                       capture_git=False, flush_seconds=0.2)
    print(run.id, flush=True)
    step = 0
    deadline = time.monotonic() + 120
    while not stop.exists() and time.monotonic() < deadline:
        run.log({"train/loss": 1.0 / (1 + step / 20) + 0.05 * math.sin(step)}, step=step)
        if step % 10 == 0:
            run.println("live step {}", step)
        step += 1
        time.sleep(0.05)
    run.finish()


if __name__ == "__main__":
    main()
