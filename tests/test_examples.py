"""The examples `make demo` runs: each one runs and records what it says it does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import labtrack

from conftest import child_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_wandb_style_example_records_every_kind_of_value(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(EXAMPLES / "wandb_style.py"), "--root", str(tmp_path),
                        "--steps", "25"], env=child_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    book = labtrack.open(tmp_path)
    (run,) = book[:]
    assert (run.experiment, run.name, run.status) == ("wandb-style", "line-fit", "finished")
    assert run.params == {"lr": 0.05, "noise": 0.3}
    assert len(run.scalars("loss")) == 25 and run.scalars("loss").value.iloc[-1] < run.scalars("loss").value.iloc[0]
    kinds = {(m["name"], m["kind"]) for m in run.media()}
    assert {("sample", "image"), ("tone", "audio"), ("motion", "video"), ("fit", "table")} <= kinds, kinds
    assert [m["step"] for m in run.media() if m["name"] == "tone"] == [0, 20]
    assert run.histograms("residuals")[0]["count"] == 200
    assert run.summary["w"]["value"] > 1
