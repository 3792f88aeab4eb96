"""labtrack export --to parquet|csv, read back with pyarrow and pandas point for point, and
labtrack -> Parquet -> labtrack through `labtrack import parquet`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import labtrack
from labtrack._store.rundir import RunDir, iter_runs
from labtrack._store.scalars import read_columns
from labtrack.cli import main

MakeRun = Callable[..., labtrack.Run]
T0 = 1_700_000_000.0
PARAMS = {"lr": 0.001, "model": {"depth": 4, "act": "gelu", "dims": [64, 32]}, "name": "a,b \"q\"",
          "flag": True, "none": None}


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def logged_run(make_run: MakeRun, forward: bool = False) -> labtrack.Run:
    """A run with everything the tables keep: series with / in their names, a rank's and the
    system sampler's series, NaN and infinities, a repeated step, times to the millisecond
    far from now, nested params, tags, comment and a summary value the script set."""
    run = make_run(experiment="tables exp", name="first", config=PARAMS, tags=["x", "y"], comment="c, d",
                   system=True, _environ={"LABTRACK_SYSTEM_SECONDS": "30"})
    for i in range(300):
        t = T0 + i * 0.001 + (0 if forward else (i % 7) * 1.5)  # out of order, unless forward
        run.log({"train/loss": 1.0 / (i + 1), "acc": i / 300, "rank1/loss": 2.0 ** -i}, step=i, time=t)
        if i % 50 == 0:
            run.log({"odd,name": [math.nan, math.inf, -math.inf, 1e-300, -0.0, 1e300][i // 50]}, step=i, time=t)
    run.log({"train/loss": 0.5}, step=10, time=T0 + 999.999)  # a resumed run repeats a step
    run._set_summary({"best": {"value": 0.93}})
    run.finish()
    return run


def series_of(run_dir: Path) -> dict[str, tuple[list[int], list[float], list[float]]]:
    rd = RunDir(run_dir)
    return {name: read_columns(rd.path / rel) for name, rel in rd.named("scalars")}


def same_floats(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))


def test_parquet_has_every_point_with_its_step_value_and_time(make_run: MakeRun, tmp_path: Path) -> None:
    run = logged_run(make_run)
    out = tmp_path / "out"
    result = cli("export", run.id, "--to", "parquet", "--out", str(out), "--root", str(tmp_path / "root"))
    assert result.exit_code == 0, result.output
    want = series_of(Path(run.dir))
    points = sum(len(s[0]) for s in want.values())
    assert result.output.strip().splitlines()[-1].startswith(f"exported 1 run ({points:,} points) to Parquet in {out}")
    assert any(n.startswith("system/") for n in want) and "rank1/loss" in want

    path = out / "tables-exp" / f"{run.id}.parquet"
    table = pq.read_table(path)
    assert table.schema.names == ["name", "step", "value", "time"]
    assert table.schema.types == [pa.string(), pa.int64(), pa.float64(), pa.timestamp("ms", tz="UTC")]
    assert table.num_rows == points
    names = table.column("name").to_pylist()
    ms = table.column("time").cast(pa.int64()).to_pylist()
    got: dict[str, tuple[list[int], list[float], list[float]]] = {}
    for n, s, v, t in zip(names, table.column("step").to_pylist(), table.column("value").to_pylist(), ms):
        entry = got.setdefault(n, ([], [], []))
        entry[0].append(s)
        entry[1].append(v)
        entry[2].append(t / 1000)
    assert list(got) == sorted(want)  # series after series, each in file order
    for name, (steps, values, times) in want.items():
        assert got[name][0] == steps, name
        assert same_floats(got[name][1], values), name
        assert got[name][2] == times, name  # milliseconds: labtrack's own precision, exact
    assert [np.signbit(v) for v in got["odd,name"][1]] == [False, False, True, False, True, False]

    frame = pd.read_parquet(path)  # pandas: the metadata comes back as .attrs
    assert frame.attrs["params"] == PARAMS
    assert frame.attrs["run"]["id"] == run.id and frame.attrs["run"]["tags"] == ["x", "y"]
    assert frame.attrs["summary"]["best"] == {"value": 0.93}
    assert frame.attrs["summary"]["acc"]["count"] == 300
    assert frame.attrs["format"] == 1 and frame.attrs["env"]["python"]
    assert str(frame["time"].dtype) == "datetime64[ms, UTC]"
    loss = frame[frame.name == "train/loss"]
    assert loss.step.tolist() == want["train/loss"][0]
    assert (loss.time.iloc[0].timestamp()) == want["train/loss"][2][0]


def test_csv_has_every_point_params_summary_and_the_run(make_run: MakeRun, tmp_path: Path) -> None:
    run = logged_run(make_run)
    out = tmp_path / "csv"
    result = cli("export", "tables exp", "--to", "csv", "--out", str(out), "--root", str(tmp_path / "root"), "--progress")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("exported 1 run (")  # progress shown, then the line
    folder = out / "tables-exp" / run.id
    assert sorted(p.name for p in folder.iterdir()) == ["env.json", "params.csv", "params.json", "run.json",
                                                        "scalars.csv", "summary.csv", "summary.json"]
    frame = pd.read_csv(folder / "scalars.csv", keep_default_na=False, na_values=["nan"])
    assert list(frame.columns) == ["name", "step", "value", "time"]
    for name, (steps, values, times) in series_of(Path(run.dir)).items():
        part = frame[frame.name == name]
        assert part.step.tolist() == steps, name
        assert same_floats(part.value.tolist(), values), name
        assert part.time.tolist() == times, name
    assert json.loads((folder / "params.json").read_text()) == PARAMS
    flat = pd.read_csv(folder / "params.csv", keep_default_na=False)
    assert dict(zip(flat.key, flat.value)) == {"lr": "0.001", "model.depth": "4", "model.act": "gelu",
                                               "model.dims": "[64, 32]", "name": 'a,b "q"', "flag": "true",
                                               "none": ""}
    summary = pd.read_csv(folder / "summary.csv").set_index("name")
    assert summary.loc["acc", "count"] == 300 and summary.loc["best", "value"] == 0.93
    assert json.loads((folder / "summary.json").read_text()) == json.loads(
        (Path(run.dir) / "summary.json").read_text())
    assert json.loads((folder / "run.json").read_text())["id"] == run.id


@pytest.mark.parametrize("forward", [False, True], ids=["times-out-of-order", "times-forward"])
def test_labtrack_parquet_labtrack_keeps_every_point(make_run: MakeRun, tmp_path: Path, forward: bool) -> None:
    # forward: points of one step and time go back in one call; out of order: one by one
    run = logged_run(make_run, forward)
    out, back = tmp_path / "out", tmp_path / "back"
    assert cli("export", run.id, "--to", "parquet", "--out", str(out), "--root", str(tmp_path / "root")).exit_code == 0
    result = cli("import", "parquet", str(out), "--root", str(back))
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("imported 1 run from parquet (")
    [copy] = list(iter_runs(back))
    want, got = series_of(Path(run.dir)), series_of(copy.path)
    assert list(got) == list(want)
    for name in want:
        assert got[name][0] == want[name][0], name
        assert same_floats(got[name][1], want[name][1]), name
        assert got[name][2] == want[name][2], name
    original = RunDir(run.dir)
    assert copy.params() == original.params() == PARAMS
    # every statistic (count, sum, mean, last step and time ...) and the script's summary value
    assert json.loads(copy.read_text("summary.json") or "") == json.loads(original.read_text("summary.json") or "")
    meta, old = copy.raw_meta(), original.raw_meta()
    for key in ("experiment", "name", "comment", "tags", "status", "started", "ended", "host", "command"):
        assert meta[key] == old[key], key
    assert meta["imported_from"]["tool"] == "parquet" and meta["imported_from"]["run_id"] == run.id
    assert meta["imported_from"]["version"] == labtrack.__version__
    assert copy.env() == original.env()

    again = cli("import", "parquet", str(out), "--root", str(back))
    assert "imported 0 runs" in again.output and "1 already imported" in again.output
    assert [r.id for r in iter_runs(back)] == [copy.id]


def test_a_parquet_file_of_another_tool_with_name_step_value_time(tmp_path: Path) -> None:
    src = tmp_path / "theirs" / "proj"
    src.mkdir(parents=True)
    times = pd.to_datetime([T0, T0 + 1.5, T0 + 2.25], unit="s", utc=True)
    pd.DataFrame({"name": ["loss", "loss", "acc"], "step": [0, 1, 0], "value": [0.5, 0.25, 0.75],
                  "time": times}).to_parquet(src / "run-7.parquet")
    result = cli("import", "parquet", str(tmp_path / "theirs"), "--root", str(tmp_path / "root"))
    assert result.exit_code == 0, result.output
    [run] = list(iter_runs(tmp_path / "root"))
    assert run.meta()["experiment"] == "proj"
    assert series_of(run.path) == {"acc": ([0], [0.75], [T0 + 2.25]), "loss": ([0, 1], [0.5, 0.25], [T0, T0 + 1.5])}


@pytest.mark.parametrize("frame, says", [
    (pd.DataFrame({"metric": ["a"], "step": [0], "value": [1.0]}), "has no column 'name'"),
    (pd.DataFrame({"name": ["a"], "step": [-1], "value": [1.0]}), "negative step"),
    (pd.DataFrame({"name": ["a"], "step": ["ten"], "value": [1.0]}), "step a whole number"),
])
def test_a_bad_parquet_file_is_named_in_a_clear_error(tmp_path: Path, frame: pd.DataFrame, says: str) -> None:
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    result = CliRunner().invoke(main, ["import", "parquet", str(path), "--root", str(tmp_path / "root")])
    assert result.exit_code != 0
    assert str(path) in result.output and says in result.output
    assert "Traceback" not in result.output
    assert list(iter_runs(tmp_path / "root")) == []


def test_not_parquet_and_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    result = CliRunner().invoke(main, ["import", "parquet", str(tmp_path / "junk.parquet"), "--root", str(tmp_path)])
    assert result.exit_code != 0 and "is not a readable Parquet file" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["import", "parquet", str(tmp_path / "empty"), "--root", str(tmp_path)])
    assert result.exit_code != 0 and "holds no .parquet files" in result.output


def test_without_pyarrow_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from labtrack._export import tables
    from labtrack.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an environment without it gives
    with pytest.raises(MissingDependencyError, match=r"pip install 'labtrack\[parquet\]'"):
        tables.export([], "parquet", Path("unused"))


RANK_SCRIPT = """
import os, labtrack
rank = int(os.environ["RANK"])
run = labtrack.init(experiment="job", config={"lr": 0.1}, capture_git=False)
for i in range(50):
    run.log({"loss": rank + 1.0 / (i + 1)}, step=i)
run.finish()
"""


def test_a_one_run_distributed_job_keeps_every_ranks_series(tmp_path: Path) -> None:
    import subprocess

    from conftest import child_env

    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=child_env({"LABTRACK_ROOT": str(tmp_path / "root"), "RANK": str(r),
                                             "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2",
                                             "TORCHELASTIC_RUN_ID": "job-1"}))
             for r in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    [job] = list(iter_runs(tmp_path / "root"))
    assert job.ranks() == [0, 1] and "rank1/loss" in job.names("scalars")
    out, back = tmp_path / "out", tmp_path / "back"
    assert cli("export", "job", "--to", "parquet", "--out", str(out), "--root", str(tmp_path / "root")).exit_code == 0
    frame = pd.read_parquet(out / "job" / f"{job.id}.parquet")
    assert sorted(set(frame.name)) == ["loss", "rank1/loss"] and len(frame) == 100
    assert set(frame.attrs["summary"]) == {"loss", "rank1/loss"}  # rank 1's summary.json too
    assert cli("import", "parquet", str(out), "--root", str(back)).exit_code == 0
    [copy] = list(iter_runs(back))
    assert series_of(copy.path) == series_of(job.path)
    assert copy.summary() == job.summary()


def test_long_runs_are_written_in_row_groups_with_the_same_rows(make_run: MakeRun, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from labtrack._export import tables

    run = logged_run(make_run)
    whole = tables.export([Path(run.dir)], "parquet", tmp_path / "whole")
    monkeypatch.setattr(tables, "ROW_GROUP", 64)  # a few series per row group, a long one alone
    parts = tables.export([Path(run.dir)], "parquet", tmp_path / "parts")
    assert whole.split(" in ")[0] == parts.split(" in ")[0]
    a = pq.ParquetFile(tmp_path / "whole" / "tables-exp" / f"{run.id}.parquet")
    b = pq.ParquetFile(tmp_path / "parts" / "tables-exp" / f"{run.id}.parquet")
    assert a.metadata.num_row_groups == 1 and b.metadata.num_row_groups > 2
    ta, tb = a.read(), b.read()
    assert ta.schema.equals(tb.schema, check_metadata=False) and ta.to_pandas().equals(tb.to_pandas())  # NaN == NaN


def test_a_run_without_series_gives_an_empty_table(make_run: MakeRun, tmp_path: Path) -> None:
    from labtrack._export import tables

    run = make_run(config={"lr": 1})
    run.finish()
    assert tables.export([Path(run.dir)], "parquet", tmp_path / "o").startswith("exported 1 run (0 points)")
    frame = pd.read_parquet(tmp_path / "o" / "exp" / f"{run.id}.parquet")
    assert len(frame) == 0 and list(frame.columns) == ["name", "step", "value", "time"]
    assert frame.attrs["params"] == {"lr": 1}
    result = cli("import", "parquet", str(tmp_path / "o"), "--root", str(tmp_path / "back"))
    assert result.exit_code == 0, result.output
    [copy] = list(iter_runs(tmp_path / "back"))
    assert copy.params() == {"lr": 1} and copy.names("scalars") == []
