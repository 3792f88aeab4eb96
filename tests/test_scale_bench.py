"""benchmarks/scale.py writes valid runs: what it measures is what labtrack reads.

The figures are not judged here; the roots it writes by hand must be runs labtrack lists and
reads back with the values their summaries claim, and its table must say met or not met.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from labtrack._index import Index
from labtrack._server.series import SeriesCache

ROOT = Path(__file__).resolve().parents[1]


def _scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module
    spec.loader.exec_module(module)
    return module


def test_the_synthetic_roots_are_valid_runs(tmp_path: Path) -> None:
    scale = _scale()
    runs = tmp_path / "runs"
    scale.make_runs(runs, 25)
    scale.check_valid(runs)  # through labtrack.open: each series agrees with summary.json
    with Index(runs, path=tmp_path / "index.sqlite") as index:
        total, rows = index.query(sort="-started", limit=3)
        assert index.problems() == []
    assert total == 25 and [r["name"] for r in rows] == ["trial-24", "trial-23", "trial-22"]
    assert rows[0]["params"]["opt.name"] == "adam" and "val/acc" in rows[0]["metrics"]

    series = tmp_path / "series"
    rid = scale.make_series(series, 30_000)
    run = series / "long" / rid
    cols = SeriesCache().get(run / "scalars" / "train" / "loss.csv")
    summary = json.loads((run / "summary.json").read_text())["train/loss"]
    assert len(cols) == summary["count"] == 30_000
    np.testing.assert_array_equal(cols.step, np.arange(30_000))
    assert cols.value[-1] == summary["last"] and cols.value.max() == summary["max"] > 40


def test_the_table_says_met_or_not(tmp_path: Path) -> None:
    scale = _scale()
    results = {"sizes": {"runs": 10_000, "large": 100_000, "points": 10_000_000, "huge": 10**8},
               "rows": {"cold_ui_s": 0.5, "ls_warm_s": 0.75}, "baseline": {"cold_ui_s": 5.0}}
    lines = scale.table(results).splitlines()
    assert "| 0.500 s | 5.000 s | 0.100 | 0.50 | met |" in lines[2]
    assert lines[3].endswith("| 0.750 s | - | - | 1.50 | **not met** |")
