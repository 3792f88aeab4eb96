"""MLflow -> labtrack: stores written by real mlflow (in the peers' side venv), imported here and
compared point for point with what mlflow's own client reads from the same store."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import labtrack.importers
from labtrack._store import layout
from labtrack._store.scalars import read_columns
from labtrack.cli import main
from labtrack.importers import SourceError
from labtrack.importers._mlflow import param_value, system_name
from labtrack.importers._mlflow_stores import parse_meta_yaml

from peers import as_json, peer_script, peers  # noqa: F401  (peers is a fixture)

pytestmark = pytest.mark.slow

# Writes a store with mlflow's own API, then prints what mlflow's client reads back from it.
WRITE = r'''
import json, os, sys, time
import numpy as np
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

uri = sys.argv[1] if len(sys.argv) > 1 else os.environ["STORE"]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("vision")
with mlflow.start_run(run_name="baseline") as parent:
    mlflow.log_params({"lr": 0.1, "layers": 3, "opt": "adam", "flag": True, "none": None,
                       "sizes": [1, 2], "text_num": "0.10"})
    mlflow.set_tags({"team": "red", "mlflow.note.content": "the first try", "stage/kind": "dev",
                     "mlflow.source.git.commit": "abc123", "multi": "two\nlines"})
    for i in range(300):
        mlflow.log_metric("train/loss", 1.0 / (i + 1), step=i)
        if i % 3 == 0:
            mlflow.log_metric("acc", i * 0.001, step=i)
    for i in range(10):  # several metrics at one step and one time
        mlflow.log_metrics({"val/a": i * 0.5, "val/b": -i}, step=i)
    mlflow.log_metric("odd", float("nan"), step=5)
    mlflow.log_metric("odd", 2.5, step=5)  # two values at one step
    mlflow.log_image(np.full((6, 8, 3), 7, dtype=np.uint8), key="samples/grid", step=3)
    mlflow.log_image(np.zeros((4, 4, 3), dtype=np.uint8), "plain.png")
    open("model.bin", "wb").write(bytes(range(256)) * 40)
    mlflow.log_artifact("model.bin", artifact_path="models")
    mlflow.log_text("hello", "notes/readme.txt")
    mlflow.log_table({"epoch": [1, 2], "label": ["cat", "dog"]}, "tables/preds.json")
    # the system metrics monitor, as mlflow's own log_system_metrics writes them
    client = MlflowClient()
    t0 = int(time.time() * 1000)
    client.log_batch(parent.info.run_id, metrics=[
        Metric("system/cpu_utilization_percentage", 12.5 + s, t0 + s * 1000, s) for s in range(4)] + [
        Metric("system/system_memory_usage_megabytes", 2048.3 + s, t0 + s * 1000, s) for s in range(4)] + [
        Metric("system/gpu_0_utilization_percentage", 50.0, t0 + s * 1000, s) for s in range(4)] + [
        Metric("system/disk_usage_percentage", 40.1, t0 + s * 1000, s) for s in range(4)])
    with mlflow.start_run(run_name="child", nested=True):
        mlflow.log_metric("x", 1.5)
client = MlflowClient()
exp = client.get_experiment_by_name("vision").experiment_id
failed = client.create_run(exp, run_name="broke", start_time=1700000000000)
client.log_metric(failed.info.run_id, "m", 3.0, timestamp=1700000000123, step=7)
client.set_terminated(failed.info.run_id, "FAILED", end_time=1700000005000)
killed = client.create_run(exp, run_name="stopped")
client.set_terminated(killed.info.run_id, "KILLED")
running = client.create_run(exp, run_name="still going")
gone = client.create_run(exp, run_name="gone")
client.set_terminated(gone.info.run_id)
client.delete_run(gone.info.run_id)
mlflow.set_system_metrics_sampling_interval(0.5)  # mlflow's own monitor, sampling for real
mlflow.set_system_metrics_samples_before_logging(1)
with mlflow.start_run(run_name="monitored", log_system_metrics=True):
    time.sleep(1.6)
mlflow.set_experiment("text")
with mlflow.start_run(run_name="withds"):
    import pandas as pd
    mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"a": [1.0, 2.0]}), name="ds1"), context="training")
    mlflow.log_param("k", "v")

from mlflow.entities import ViewType
out = []
for e in client.search_experiments(view_type=ViewType.ALL):
    for r in client.search_runs([e.experiment_id], run_view_type=ViewType.ALL):
        metrics = {k: [[m.value if m.value == m.value else "nan", m.step, m.timestamp]
                       for m in client.get_metric_history(r.info.run_id, k)] for k in r.data.metrics}
        def walk(path=None):
            got = []
            for f in client.list_artifacts(r.info.run_id, path):
                got += walk(f.path) if f.is_dir else [f.path]
            return got
        out.append({"run_id": r.info.run_id, "experiment": e.name, "name": r.info.run_name,
                    "status": r.info.status, "start": r.info.start_time, "end": r.info.end_time,
                    "stage": r.info.lifecycle_stage, "params": r.data.params, "tags": r.data.tags,
                    "metrics": metrics, "artifacts": sorted(walk())})
print(json.dumps(out))
'''


def _write_store(peers: Path, where: Path, kind: str) -> tuple[str, list[dict[str, Any]]]:
    where.mkdir(parents=True, exist_ok=True)
    uri = "sqlite:///mlflow.db" if kind == "sqlite" else "file:./mlruns"
    p = peer_script(peers, WRITE, cwd=where, env={"STORE": uri, "MLFLOW_ALLOW_FILE_STORE": "true"})
    source = str(where / "mlflow.db") if kind == "sqlite" else str(where / "mlruns")
    return source, as_json(p)


@pytest.fixture(scope="module", params=["sqlite", "file"])
def store(request: pytest.FixtureRequest, peers: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, str, list[dict[str, Any]]]:
    """(kind, source path, what mlflow's client reads) of a store mlflow wrote; read-only."""
    source, truth = _write_store(peers, tmp_path_factory.mktemp(f"mlflow-{request.param}"), request.param)
    return request.param, source, truth


def _runs(root: Path) -> dict[str, Path]:
    """source id -> run directory of every imported run under `root`."""
    out = {}
    for p in root.glob("*/*/run.json"):
        meta = json.loads(p.read_text())
        out[meta["imported_from"]["source_id"]] = p.parent
    return out


def _points(run_dir: Path, name: str) -> list[tuple[int, int, Any]]:
    """(step, time in ms, value) of every point of a series, sorted ("nan" for NaN)."""
    steps, values, times = read_columns(layout.scalar_path(run_dir, name))
    return sorted(((s, round(t * 1000), "nan" if math.isnan(v) else v) for s, v, t in zip(steps, values, times)),
                  key=repr)


def test_every_run_point_param_tag_and_time(store: tuple[str, str, list[dict[str, Any]]], tmp_path: Path) -> None:
    kind, source, truth = store
    root = tmp_path / "lt"
    imp = labtrack.importers.run_import("mlflow", source if kind == "file" else f"sqlite:///{source}", root)
    live = [r for r in truth if r["stage"] == "active"]
    assert len(truth) - len(live) == 1
    assert len(imp.new) == len(live) == 7 and imp.notes == ["1 deleted run skipped"]
    runs = _runs(root)
    assert set(runs) == {r["run_id"] for r in live}
    total = 0
    for r in live:
        d = runs[r["run_id"]]
        meta = json.loads((d / "run.json").read_text())
        assert meta["experiment"] == r["experiment"] and meta["name"] == r["name"]
        assert meta["status"] == {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed",
                                  "RUNNING": "running"}[r["status"]]
        assert meta["started"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r["start"] / 1000)))
        from labtrack._store.reader import iso_to_unix

        assert round(iso_to_unix(meta["started"]) * 1000) == r["start"]
        if r["end"] is not None:
            assert round(iso_to_unix(meta["ended"]) * 1000) == r["end"]
        assert meta["imported_from"]["tags"] == r["tags"]
        assert meta["imported_from"]["complete"] is True and meta["pid"] is None and meta["host"] is None
        params = json.loads((d / "params.json").read_text())
        assert {k: str(v) for k, v in params.items()} == r["params"]
        for key, points in r["metrics"].items():
            name, factor = system_name(key)
            want = sorted(((s, ts, v if v == "nan" else float(round(v * factor)) if factor != 1 else v)
                           for v, s, ts in points), key=repr)
            assert _points(d, name) == want, f"{r['name']}: {key}"
            total += len(points)
        # every artifact: keyed images became labtrack images, the rest are files as they were
        media = [json.loads(x) for x in (d / "media.jsonl").read_text().splitlines()] if (d / "media.jsonl").exists() else []
        images = [a for a in r["artifacts"] if a.startswith("images/")]
        kept = sorted(p.relative_to(d / "artifacts").as_posix() for p in (d / "artifacts").rglob("*") if p.is_file()) \
            if (d / "artifacts").exists() else []
        assert kept == sorted(a for a in r["artifacts"] if not a.startswith("images/"))
        assert len(media) == len(images) // 2  # each PNG has its +compressed.webp
    monitored = next(r for r in live if r["name"] == "monitored")
    assert imp.points == total == 300 + 100 + 20 + 2 + 16 + 1 + 1 + sum(map(len, monitored["metrics"].values()))
    got = {p.relative_to(runs[monitored["run_id"]] / layout.SCALARS_DIR).with_suffix("").as_posix()
           for p in (runs[monitored["run_id"]] / layout.SCALARS_DIR).rglob("*.csv")}
    assert {"system/cpu/percent", "system/memory/used_bytes", "system/memory/percent",
            "system/network/recv_bytes", "system/network/sent_bytes", "system/disk_usage_percentage"} <= got

    first = next(r for r in live if r["name"] == "baseline")
    d = runs[first["run_id"]]
    meta = json.loads((d / "run.json").read_text())
    assert meta["comment"] == "the first try"
    assert meta["tags"] == ["stage/kind=dev", "team=red"]  # "multi" has a line break: imported_from only
    assert meta["git"]["commit"] == "abc123" and meta["user"] and meta["command"]["script"]
    params = json.loads((d / "params.json").read_text())
    assert params == {"lr": 0.1, "layers": 3, "opt": "adam", "flag": True, "none": None, "sizes": [1, 2],
                      "text_num": "0.10"}
    assert (d / "artifacts" / "models" / "model.bin").read_bytes() == bytes(range(256)) * 40
    assert (d / layout.TABLES_DIR / "tables" / "preds.csv").read_text().splitlines() == ["epoch,label", "1,cat", "2,dog"]
    (entry,) = [json.loads(x) for x in (d / "media.jsonl").read_text().splitlines()]
    assert (entry["name"], entry["step"], entry["width"], entry["height"]) == ("samples/grid", 3, 8, 6)
    from PIL import Image

    assert Image.open(d / entry["path"]).getpixel((0, 0)) == (7, 7, 7)
    assert _points(d, "system/memory/used_bytes")[0][2] == 2048300000.0
    assert (d / layout.SCALARS_DIR / "system" / "disk_usage_percentage.csv").exists()
    child = next(r for r in live if r["name"] == "child")
    assert json.loads((runs[child["run_id"]] / "run.json").read_text())["parent"] == d.name
    ds = next(r for r in live if r["name"] == "withds")
    (dataset,) = json.loads((runs[ds["run_id"]] / "run.json").read_text())["imported_from"]["datasets"]
    assert dataset["name"] == "ds1" and dataset["tags"] == {"mlflow.data.context": "training"}

    # again: nothing written, the same ids
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = labtrack.importers.run_import("mlflow", source, root)
    assert again.new == [] and sorted(again.skipped) == sorted(imp.ids) and again.ids == imp.ids
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before


def test_cli_summary_and_json(store: tuple[str, str, list[dict[str, Any]]], tmp_path: Path) -> None:
    kind, source, truth = store
    uri = f"file://{source}" if kind == "file" else f"sqlite:///{source}"
    res = CliRunner().invoke(main, ["import", "mlflow", uri, "--root", str(tmp_path / "lt"),
                                    "--experiment", "moved"])
    assert res.exit_code == 0, res.output
    (line,) = res.output.splitlines()
    assert line.startswith("imported 7 runs from mlflow (") and "1 deleted run skipped" in line
    assert {p.parent.name for p in (tmp_path / "lt").glob("*/*/run.json")} and \
        [p.name for p in (tmp_path / "lt").iterdir() if p.is_dir() and not p.name.startswith(".")] == ["moved"]
    res = CliRunner().invoke(main, ["import", "mlflow", uri, "--root", str(tmp_path / "lt"), "--json",
                                    "--experiment", "moved"])
    got = json.loads(res.output)
    assert got["imported"] == [] and len(got["already_imported"]) == 7 and got["points"] == 0


def test_a_grown_run_is_imported_again(peers: Path, tmp_path: Path) -> None:
    src, truth = _write_store(peers, tmp_path / "s", "sqlite")
    root = tmp_path / "lt"
    first = labtrack.importers.run_import("mlflow", src, root)
    baseline = next(r for r in truth if r["name"] == "baseline")
    peer_script(peers, f"""
        import mlflow
        from mlflow.tracking import MlflowClient
        MlflowClient("sqlite:///mlflow.db").log_metric({baseline['run_id']!r}, "train/loss", 0.001, step=300)
        """, cwd=tmp_path / "s")
    second = labtrack.importers.run_import("mlflow", src, root)
    assert len(second.new) == 1 and len(second.skipped) == 6 and second.ids == first.ids
    d = _runs(root)[baseline["run_id"]]
    assert len(_points(d, "train/loss")) == 301


def test_a_killed_import_completes_when_run_again(peers: Path, tmp_path: Path) -> None:
    """SIGKILL while the first run's 40 MB artifact is being copied; the next import redoes
    that run and writes the rest, and a third changes nothing."""
    where = tmp_path / "s"
    where.mkdir()
    peer_script(peers, """
        import mlflow, os
        mlflow.set_tracking_uri("sqlite:///mlflow.db")
        mlflow.set_experiment("big")
        for r in range(3):
            with mlflow.start_run(run_name=f"r{r}"):
                for i in range(200):
                    mlflow.log_metric("loss", i * 0.5, step=i)
                with open("weights.bin", "wb") as f:
                    f.write(os.urandom(40 << 20))
                mlflow.log_artifact("weights.bin")
        """, cwd=where)
    root = tmp_path / "lt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env["PYTHONPATH"] = str(Path(labtrack.importers.__file__).parents[2])
    code = ("import labtrack.importers as i, sys; i.mlflow(sys.argv[1], root=sys.argv[2])")
    child = subprocess.Popen([sys.executable, "-c", code, str(where / "mlflow.db"), str(root)], env=env,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    killed = False
    while time.monotonic() < deadline and child.poll() is None:
        for p in root.glob("*/*/artifacts/.*.tmp"):  # an artifact copy under way
            child.send_signal(signal.SIGKILL)
            killed = True
            break
        if killed:
            break
        time.sleep(0.002)
    _, err = child.communicate(timeout=30)
    assert killed, f"the import ended before it could be killed: {err.decode()}"
    states = [json.loads(p.read_text())["imported_from"]["complete"] for p in root.glob("*/*/run.json")]
    assert False in states
    imp = labtrack.importers.run_import("mlflow", str(where / "mlflow.db"), root)
    runs = _runs(root)
    assert len(runs) == 3 and len(imp.new) >= 1 and len(imp.new) + len(imp.skipped) == 3
    for d in runs.values():
        assert json.loads((d / "run.json").read_text())["imported_from"]["complete"] is True
        assert (d / "artifacts" / "weights.bin").stat().st_size == 40 << 20
        assert [v for _, _, v in sorted(_points(d, "loss"))] == [i * 0.5 for i in range(200)]
        assert not list(d.rglob(".*.tmp"))
    assert labtrack.importers.run_import("mlflow", str(where / "mlflow.db"), root).new == []


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.db", "does not exist"),
    (lambda d: (d / "junk.db").write_bytes(b"not a database at all" * 100) and d / "junk.db", "is not a SQLite database"),
    (lambda d: sqlite3.connect(d / "other.db").execute("create table t (x)") and d / "other.db",
     "not MLflow's tracking store: it has no table experiments"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "is not an MLflow file store"),
    (lambda d: "postgresql://u@h/db", "tracking server or database labtrack does not read"),
])
def test_bad_sources_name_the_file(tmp_path: Path, make: Any, message: str) -> None:
    source = str(make(tmp_path))
    with pytest.raises(SourceError, match=message) as e:
        labtrack.importers.mlflow(source, root=tmp_path / "lt")
    assert os.path.basename(source) in str(e.value)
    res = CliRunner().invoke(main, ["import", "mlflow", source, "--root", str(tmp_path / "lt")])
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "lt").exists() or not list((tmp_path / "lt").glob("*/*/run.json"))


def test_a_broken_meta_yaml_is_named(tmp_path: Path) -> None:
    exp = tmp_path / "mlruns" / "0"
    exp.mkdir(parents=True)
    (exp / "meta.yaml").write_text("name: Default\nexperiment_id: '0'\n")
    (exp / "abc").mkdir()
    (exp / "abc" / "meta.yaml").write_text("run_id: abc\nstatus 3\n")
    with pytest.raises(SourceError, match=r"abc/meta.yaml: line 2 is not `key: value`: 'status 3'"):
        labtrack.importers.mlflow(str(tmp_path / "mlruns"), root=tmp_path / "lt")


def test_meta_yaml_reader() -> None:
    text = ("artifact_location: file:///tmp/m/1\ncreation_time: 1796352395645\nexperiment_id: '706'\n"
            "lifecycle_stage: active\nname: exp one\ntrace_location: null\ntags: []\n"
            "quoted: 'it''s: a long\n  folded value'\ndq: \"tab\\there \\u00e9\"\nstatus: 3\nratio: 0.5\n"
            "tags2:\n  mlflow.data.context: training\n  n: '1'\n")
    assert parse_meta_yaml(text, "x") == {
        "artifact_location": "file:///tmp/m/1", "creation_time": 1796352395645, "experiment_id": "706",
        "lifecycle_stage": "active", "name": "exp one", "trace_location": None, "tags": [],
        "quoted": "it's: a long folded value", "dq": "tab\there \u00e9", "status": 3, "ratio": 0.5,
        "tags2": {"mlflow.data.context": "training", "n": "1"}}
    with pytest.raises(SourceError, match="x: line 1 holds YAML"):
        parse_meta_yaml("a: |\n  block\n", "x")


def test_param_values_come_back_only_when_certain() -> None:
    assert [param_value(t) for t in ("0.1", "3", "True", "None", "[1, 2]", "{'a': 1}", "0.10", "1e3",
                                     "adam", "(1, 2)", "'q'", "nan", "")] == [
        0.1, 3, True, None, [1, 2], {"a": 1}, "0.10", "1e3", "adam", "(1, 2)", "'q'", "nan", ""]
    assert system_name("system/gpu_1_memory_usage_megabytes") == ("system/gpu/1/memory_used_bytes", 1e6)
    assert system_name("system/disk_usage_megabytes") == ("system/disk_usage_megabytes", 1.0)
    assert system_name("train/loss") == ("train/loss", 1.0)


def test_a_store_moved_elsewhere_still_finds_its_artifacts(store: tuple[str, str, list[dict[str, Any]]],
                                                           tmp_path: Path) -> None:
    kind, source, truth = store
    if kind != "sqlite":
        pytest.skip("the file store keeps artifacts inside each run's folder")
    moved = tmp_path / "copy"
    shutil.copytree(Path(source).parent, moved)
    with sqlite3.connect(moved / "mlflow.db") as db:  # as if written on another machine
        db.execute("UPDATE runs SET artifact_uri = '/elsewhere/mlruns/' || experiment_id || '/' || run_uuid "
                   "|| '/artifacts'")
    imp = labtrack.importers.run_import("mlflow", f"sqlite:///{moved / 'mlflow.db'}", tmp_path / "lt")
    baseline = next(r for r in truth if r["name"] == "baseline")
    d = _runs(tmp_path / "lt")[baseline["run_id"]]
    assert (d / "artifacts" / "notes" / "readme.txt").read_text() == "hello" and len(imp.new) == 7


def test_a_torn_last_metric_line_is_left_out_and_counted(store: tuple[str, str, list[dict[str, Any]]],
                                                         tmp_path: Path) -> None:
    kind, source, truth = store
    if kind != "file":
        pytest.skip("the file store's metric files only")
    copy = tmp_path / "mlruns"
    shutil.copytree(source, copy)
    baseline = next(r for r in truth if r["name"] == "baseline")
    (metric,) = copy.glob(f"*/{baseline['run_id']}/metrics/acc")
    with open(metric, "ab") as f:
        f.write(b"1796352395723 0.3")  # the step and newline never written
    imp = labtrack.importers.run_import("mlflow", str(copy), tmp_path / "lt")
    assert "1 unreadable metric line skipped" in imp.notes
    d = _runs(tmp_path / "lt")[baseline["run_id"]]
    assert len(_points(d, "acc")) == len(baseline["metrics"]["acc"])
