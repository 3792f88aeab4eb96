"""The benchmark harness stays working: one labtrack scenario, tiny, through benchmarks/run.py.

Only labtrack runs (no .venv-peers needed); the figures are not judged here, only that the
harness produced a well-formed result from a real scenario process.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
def test_labtrack_hot_loop_through_the_harness(tmp_path: Path) -> None:
    harness = _harness()
    md_before = harness.RESULTS_MD.read_bytes() if harness.RESULTS_MD.exists() else None
    out = tmp_path / "results.json"
    code = harness.main(["--tiny", "--tools", "labtrack", "--scenarios", "s1", "--reps", "1",
                         "--skip-install", "--no-md", "--workdir", str(tmp_path / "work"),
                         "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())

    s1 = results["medians"]["labtrack"]["s1"]
    assert s1["status"] == "ok", s1
    assert s1["n"] == harness.TINY["steps"]  # labtrack is never cut short by a budget
    assert s1["loop_s"] > 0 and s1["finish_s"] > 0 and s1["rss_mb"] > 0
    assert s1["bytes"] > 0  # the run directory was written and measured (S5)

    row = results["rows"]["s1_us_per_call"]["labtrack"]
    assert row["value"] == pytest.approx(s1["loop_s"] / s1["n"] * 1e6)
    assert results["tools"] == [{"key": "labtrack", "label": "labtrack",
                                 "version": results["tools"][0]["version"]}]
    assert results["tools"][0]["version"]
    assert results["machine"]["nproc"] >= 1
    # no peer ran, so there is nothing to compare with: no verdict, rather than a wrong one
    assert results["verdicts"]["s1_us_per_call"]["met"] is None
    # a run that is not `make bench` leaves RESULTS.md alone
    after = harness.RESULTS_MD.read_bytes() if harness.RESULTS_MD.exists() else None
    assert after == md_before


def test_unknown_tool_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    harness = _harness()
    assert harness.main(["--tools", "nosuchtool", "--skip-install"]) == 2
    assert "nosuchtool" in capsys.readouterr().err
