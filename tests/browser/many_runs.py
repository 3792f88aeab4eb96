"""Write a root of many small finished runs by hand, per docs/format.md (fast: no threads)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path


def write_many_runs(root: Path, n: int) -> list[str]:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = []
    for i in range(n):
        t0 = start + timedelta(minutes=i)
        run_id = t0.strftime("%Y%m%d-%H%M%S-") + f"{i:06d}"[-6:].translate(str.maketrans("0123456789", "abcdefghij"))
        exp = f"sweep-{i % 4}"
        d = root / exp / run_id
        d.mkdir(parents=True)
        meta = {
            "format_version": 1, "id": run_id, "experiment": exp, "name": f"trial-{i:05d}",
            "comment": "", "tags": ["sweep"], "status": "finished",
            "started": t0.isoformat(timespec="microseconds"),
            "ended": (t0 + timedelta(seconds=30 + i % 90)).isoformat(timespec="microseconds"),
            "pid": 1, "host": "node", "user": "u", "command": None, "git": None, "seed": i,
            "parent": None, "error": None,
            "checkpoints": {"last": None, "best": None, "mode": None, "metric": None},
        }
        (d / "run.json").write_text(json.dumps(meta))
        (d / "params.json").write_text(json.dumps({"lr": 10 ** -(1 + i % 4), "width": 64 * (1 + i % 3)}))
        loss = 1.0 / (1 + i % 97)
        (d / "summary.json").write_text(json.dumps({"loss": {
            "last": loss, "min": loss, "max": 1.0, "mean": 0.5, "sum": 5.0, "count": 10, "step": 9,
            "time": t0.timestamp() + 30}}))
        ids.append(run_id)
    return ids
