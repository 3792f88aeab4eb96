"""labtrack export --to tensorboard, then labtrack import tensorboard: every point comes back
with its step and wall time, its value as TensorBoard's float32 holds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from click.testing import CliRunner

import labtrack
from labtrack._store.rundir import RunDir
from labtrack._store.scalars import read_columns
from labtrack.cli import main

MakeRun = Callable[..., labtrack.Run]
T0 = 1_700_000_000.0


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def series(run_dir: Path) -> dict[str, tuple[list[int], list[float], list[float]]]:
    rd = RunDir(run_dir)
    return {name: read_columns(rd.path / rel) for name, rel in rd.named("scalars")}


def test_labtrack_tensorboard_labtrack_keeps_every_point(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(experiment="tb", name="first")
    for i in range(500):
        run.log({"train/loss": 1.0 / (i + 1), "val/acc": i / 500}, step=i * 3, time=T0 + i * 0.25)
    run.finish()
    root = tmp_path / "root"
    out = tmp_path / "tb-out"
    r = cli("export", run.id, "--to", "tensorboard", "--out", str(out), "--root", str(root))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("exported 1 run to TensorBoard event files in "), r.output
    assert list(out.rglob("*tfevents*")), "no event files written"

    back = tmp_path / "back"
    r = cli("import", "tensorboard", str(out), "--root", str(back), "--json")
    assert r.exit_code == 0, r.output
    ids = json.loads(r.output)["runs"]
    assert len(ids) == 1
    (imported,) = [p for p in back.glob("*/*") if p.name == ids[0]]
    before, after = series(run.dir), series(imported)
    assert set(after) == set(before)
    for name, (steps, values, times) in before.items():
        steps2, values2, times2 = after[name]
        assert steps2 == steps, name
        assert values2 == [float(np.float32(v)) for v in values], name  # TensorBoard keeps float32
        assert times2 == times, name
    meta = json.loads((imported / "run.json").read_text())
    assert meta["imported_from"]["tool"] == "tensorboard" and meta["imported_from"]["complete"] is True


def test_show_says_where_an_imported_run_came_from(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(experiment="tb", name="first")
    run.log({"loss": 0.5}, step=1, time=T0)
    run.finish()
    out = tmp_path / "tb-out"
    assert cli("export", run.id, "--to", "tensorboard", "--out", str(out), "--root", str(tmp_path / "root")).exit_code == 0
    back = tmp_path / "back"
    (rid,) = json.loads(cli("import", "tensorboard", str(out), "--root", str(back), "--json").output)["runs"]
    shown = cli("show", rid, "--root", str(back)).output
    lines = {ln.split(None, 1)[0]: ln.split(None, 1)[1] for ln in shown.splitlines()[1:8] if ln.strip()}
    assert lines["host"] == "-"  # an imported run claims no machine, pid or user
    assert lines["imported"].startswith(f"from tensorboard: {out}"), shown
