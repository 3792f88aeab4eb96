"""labtrack -> MLflow (inside the peers' side venv, through mlflow's own client), read back with
mlflow's client and compared point for point; and the round trip labtrack -> MLflow -> labtrack."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
import numpy as np
import pytest
from click.testing import CliRunner

import labtrack
import labtrack.importers
from labtrack._export.mlflow import mlflow_key, system_key
from labtrack._store import layout
from labtrack._store.scalars import read_columns
from labtrack.cli import main

from peers import REPO, as_json, peer_script, peers  # noqa: F401  (peers is a fixture)

pytestmark = pytest.mark.slow

EXPORT = """
    import sys
    from pathlib import Path
    from labtrack._export import export
    print(export([Path(p) for p in sys.argv[1:]] or sorted(Path("lt").glob("*/*-*")), "mlflow", "sqlite:///out.db"))
"""

READ = r"""
    import json
    from mlflow.tracking import MlflowClient
    from mlflow.entities import ViewType
    client = MlflowClient("sqlite:///out.db")
    out = []
    for e in client.search_experiments():
        for r in client.search_runs([e.experiment_id], run_view_type=ViewType.ALL):
            def walk(path=None):
                got = []
                for f in client.list_artifacts(r.info.run_id, path):
                    got += walk(f.path) if f.is_dir else [f.path]
                return got
            out.append({"run_id": r.info.run_id, "experiment": e.name, "name": r.info.run_name,
                        "status": r.info.status, "start": r.info.start_time, "end": r.info.end_time,
                        "stage": r.info.lifecycle_stage, "params": r.data.params, "tags": r.data.tags,
                        "metrics": {k: [[m.value if m.value == m.value else "nan", m.step, m.timestamp]
                                        for m in client.get_metric_history(r.info.run_id, k)]
                                    for k in r.data.metrics},
                        "artifacts": sorted(walk())})
    print(json.dumps(out))
"""


def _make_runs(root: Path) -> dict[str, Path]:
    """Two labtrack runs (a parent, and an interrupted child) with many kinds of record."""
    t0 = 1767225600.0
    with labtrack.Run("vision", "baseline", root=root, config={"lr": 0.1, "model": {"depth": 4, "act": "relu"},
                                                               "sizes": [1, 2], "odd key!": "x"},
                      comment="first try", tags=["team=red", "quick"], capture_console=False) as parent:
        for i in range(2500):
            parent.log({"train/loss": 1.0 / (i + 1), "acc": i / 2500}, step=i, time=t0 + i * 0.0137)
        parent.log({"weird": float("nan")}, step=3, time=t0 + 1)
        parent.log({"system/memory/used_bytes": 8123456789.0, "system/cpu/percent": 37.5,
                    "system/process/rss_bytes": 123456.0}, step=0, time=t0 + 2)
        parent.log_image("samples/grid", np.full((6, 8, 3), 7, dtype=np.uint8), step=3)
        parent.log_text("notes", "hello", step=1)
        (root.parent / "weights.bin").write_bytes(bytes(range(256)) * 10)
        parent.save_artifact(root.parent / "weights.bin", "models/weights.bin")
    child = labtrack.Run("vision", "child", root=root, parent=parent.id, capture_console=False)
    child.log({"x": 2.5}, step=7, time=t0 + 5)
    child.finish(status="interrupted")
    return {parent.id: parent.dir, child.id: child.dir}


def _series(run_dir: Path) -> dict[str, list[tuple[int, float, float]]]:
    out = {}
    for p in sorted((run_dir / layout.SCALARS_DIR).rglob("*.csv")):
        name = p.relative_to(run_dir / layout.SCALARS_DIR).with_suffix("").as_posix()
        steps, values, times = read_columns(p)
        out[name] = list(zip(steps, values, times))
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_point_param_tag_and_file_reaches_mlflow(peers: Path, tmp_path: Path) -> None:
    runs = _make_runs(tmp_path / "lt")
    p = peer_script(peers, EXPORT, cwd=tmp_path)
    assert p.stdout.strip().splitlines()[-1].startswith("exported 2 runs to MLflow (5,005 points) in ")
    got = {r["tags"]["labtrack.run_id"]: r for r in as_json(peer_script(peers, READ, cwd=tmp_path))}
    assert set(got) == set(runs)
    for run_id, d in runs.items():
        r = got[run_id]
        meta = json.loads((d / "run.json").read_text())
        assert r["experiment"] == "vision" and r["name"] == meta["name"] and r["stage"] == "active"
        assert r["status"] == {"finished": "FINISHED", "interrupted": "KILLED"}[meta["status"]]
        from labtrack._store.reader import iso_to_unix

        assert r["start"] == round(iso_to_unix(meta["started"]) * 1000)
        assert r["end"] == round(iso_to_unix(meta["ended"]) * 1000)
        assert r["tags"]["labtrack.complete"] == "true"
        series = _series(d)
        assert len(r["metrics"]) == len(series)
        for name, points in series.items():
            key, factor = system_key(name)
            want = [(s, v * factor if factor != 1 else v, round(t * 1000)) for s, v, t in points]
            have = r["metrics"][mlflow_key(key)]
            assert len(have) == len(want), name
            for (v, s, ts), (ws, wv, wts) in zip(sorted(have, key=lambda m: (m[1], m[2])), sorted(want)):
                assert s == ws and ts == wts and _same(float(v), wv), name
    parent_id = next(i for i, d in runs.items() if json.loads((d / "run.json").read_text())["name"] == "baseline")
    parent = got[parent_id]
    assert parent["params"] == {"lr": "0.1", "model.depth": "4", "model.act": "relu", "sizes": "[1, 2]",
                                "odd key_": "x"}
    assert parent["tags"]["team"] == "red" and parent["tags"]["quick"] == ""
    assert parent["tags"]["mlflow.note.content"] == "first try" and parent["tags"]["mlflow.loggedImages"] == "True"
    assert "system/system_memory_usage_megabytes" in parent["metrics"]
    assert parent["metrics"]["system/system_memory_usage_megabytes"][0][0] == pytest.approx(8123.456789)
    assert "system/process/rss_bytes" in parent["metrics"]  # no MLflow counterpart: labtrack's name
    arts = parent["artifacts"]
    assert "models/weights.bin" in arts and "labtrack/text/notes.jsonl" in arts and "labtrack/params.json" in arts
    assert len([a for a in arts if a.startswith("images/samples~grid+step+3+")]) == 2  # png and webp
    child = next(r for i, r in got.items() if i != parent_id)
    assert child["tags"]["mlflow.parentRunId"] == parent["run_id"] and child["tags"]["labtrack.status"] == "interrupted"

    # again: nothing new; after the run changed, it is replaced (one active MLflow run per labtrack run)
    again = peer_script(peers, EXPORT, cwd=tmp_path).stdout.strip().splitlines()[-1]
    assert again.startswith("exported 0 runs to MLflow (0 points), 2 already exported")
    (runs[parent_id] / "artifacts" / "late.txt").write_text("added later")
    third = peer_script(peers, EXPORT, cwd=tmp_path).stdout.strip().splitlines()[-1]
    assert third.startswith("exported 1 run to MLflow (5,004 points), 1 already exported")
    after = as_json(peer_script(peers, READ, cwd=tmp_path))
    active = [r for r in after if r["stage"] == "active"]
    assert sorted(r["tags"]["labtrack.run_id"] for r in active) == sorted(runs)
    assert "late.txt" in next(r for r in active if r["tags"]["labtrack.run_id"] == parent_id)["artifacts"]


def test_round_trip_keeps_every_point(peers: Path, tmp_path: Path) -> None:
    runs = _make_runs(tmp_path / "lt")
    peer_script(peers, EXPORT, cwd=tmp_path)
    imp = labtrack.importers.run_import("mlflow", f"sqlite:///{tmp_path / 'out.db'}", tmp_path / "back")
    assert len(imp.new) == 2 and imp.points == 5005
    back = {}
    for p in (tmp_path / "back").glob("*/*/run.json"):
        meta = json.loads(p.read_text())
        back[meta["imported_from"]["tags"]["labtrack.run_id"]] = p.parent
    assert set(back) == set(runs)
    for run_id, d in runs.items():
        b = back[run_id]
        ours, theirs = _series(d), _series(b)
        assert set(ours) == set(theirs)
        for name in ours:
            a = sorted(ours[name], key=repr)
            c = sorted(theirs[name], key=repr)
            assert len(a) == len(c)
            for (s1, v1, t1), (s2, v2, t2) in zip(a, c):
                assert s1 == s2 and _same(v1, v2) and round(t1 * 1000) == round(t2 * 1000), name
        m1, m2 = json.loads((d / "run.json").read_text()), json.loads((b / "run.json").read_text())
        for field in ("experiment", "name", "comment", "status"):
            assert m1[field] == m2[field], field
        from labtrack._store.reader import iso_to_unix

        for field in ("started", "ended"):  # MLflow keeps milliseconds
            assert round(iso_to_unix(m1[field]) * 1000) == round(iso_to_unix(m2[field]) * 1000), field
        assert sorted(m1["tags"]) == m2["tags"]  # MLflow's tags have no order: they come back sorted
    parent = next(d for d in runs.values() if json.loads((d / "run.json").read_text())["name"] == "baseline")
    b = back[parent.name]
    params = json.loads((b / "params.json").read_text())
    assert params == {"lr": 0.1, "model.depth": 4, "model.act": "relu", "sizes": [1, 2], "odd key_": "x"}
    media = [json.loads(x) for x in (b / "media.jsonl").read_text().splitlines()]
    assert [(m["name"], m["step"]) for m in media] == [("samples/grid", 3)]
    assert (b / media[0]["path"]).read_bytes() == (parent / media[0]["path"]).read_bytes()
    assert (b / "artifacts" / "models" / "weights.bin").read_bytes() == bytes(range(256)) * 10
    child = next(d for d in back.values() if d.name != b.name)
    assert json.loads((child / "run.json").read_text())["parent"] == b.name


def test_a_killed_export_is_redone(peers: Path, tmp_path: Path) -> None:
    root = tmp_path / "lt"
    with labtrack.Run("big", "long", root=root, capture_console=False) as run:
        for i in range(60_000):
            run.log({"loss": i * 0.25}, step=i, time=1767225600.0 + i * 0.001)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABTRACK_", "MLFLOW_"))}
    env.update({"PYTHONPATH": str(REPO / "src"), "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(tmp_path)})
    import textwrap

    child = subprocess.Popen([str(peers), "-c", textwrap.dedent(EXPORT), str(run.dir)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = tmp_path / "out.db"
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and child.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as c:
                    seen = c.execute("SELECT count(*) FROM metrics").fetchone()[0]
            except sqlite3.DatabaseError:
                seen = 0
            if seen:
                child.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    out, err = child.communicate(timeout=30)
    assert 0 < seen < 60_000 and child.returncode == -signal.SIGKILL, err.decode()[-2000:]
    line = peer_script(peers, EXPORT, cwd=tmp_path).stdout.strip().splitlines()[-1]
    assert line.startswith("exported 1 run to MLflow (60,000 points)")
    after = as_json(peer_script(peers, READ, cwd=tmp_path))
    (active,) = [r for r in after if r["stage"] == "active"]
    assert active["tags"]["labtrack.complete"] == "true" and len(active["metrics"]["loss"]) == 60_000
    assert [r["stage"] for r in after if r is not active] == ["deleted"]  # the half-written one


def test_without_mlflow_the_cli_says_what_to_install(tmp_path: Path) -> None:
    try:
        import mlflow  # noqa: F401
        pytest.skip("mlflow is installed in this environment")
    except ImportError:
        pass
    with labtrack.Run("e", "r", root=tmp_path / "lt", capture_console=False) as run:
        run.log({"a": 1.0})
    res = CliRunner().invoke(main, ["export", run.id, "--to", "mlflow", "--out", "sqlite:///x.db",
                                    "--root", str(tmp_path / "lt")])
    assert res.exit_code != 0 and "pip install mlflow" in res.output and "Traceback" not in res.output


def test_keys_mlflow_takes() -> None:
    assert mlflow_key("train/loss") == "train/loss"
    assert mlflow_key("loss (train)%") == "loss _train__"
    assert mlflow_key("a//b/") == "a/b" and mlflow_key("./x") == "_/x"
    assert system_key("system/memory/used_bytes") == ("system/system_memory_usage_megabytes", 1e-6)
    assert system_key("system/gpu/2/power_w") == ("system/gpu_2_power_usage_watts", 1.0)
    assert system_key("system/process/rss_bytes") == ("system/process/rss_bytes", 1.0)


def test_into_a_real_tracking_server_and_back(peers: Path, tmp_path: Path) -> None:
    """`mlflow server` on a free 127.0.0.1 port: the export goes over its REST API (artifacts
    through its proxy into mlartifacts/), stdout holds the summary alone, and importing the
    server's own database brings every point and file back."""
    import socket
    import urllib.request

    runs = _make_runs(tmp_path / "lt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv_dir = tmp_path / "server"
    srv_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABTRACK_", "MLFLOW_"))}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(tmp_path)})
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([str(peers.parent / "mlflow"), "server", "--backend-store-uri", "sqlite:///s.db",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              cwd=srv_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        p = peer_script(peers, EXPORT.replace('"sqlite:///out.db"', repr(url)), cwd=tmp_path)
        assert p.stdout.splitlines() == [p.stdout.strip()] and "View run" not in p.stdout
        assert p.stdout.startswith("exported 2 runs to MLflow (5,005 points) in ")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
    imp = labtrack.importers.run_import("mlflow", str(srv_dir / "s.db"), tmp_path / "back")
    assert len(imp.new) == 2 and imp.points == 5005
    back = {json.loads(p.read_text())["imported_from"]["tags"]["labtrack.run_id"]: p.parent
            for p in (tmp_path / "back").glob("*/*/run.json")}
    for run_id, d in runs.items():
        ours, theirs = _series(d), _series(back[run_id])
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert len(ours[name]) == len(theirs[name]), name
            for (s1, v1, t1), (s2, v2, t2) in zip(sorted(ours[name], key=repr), sorted(theirs[name], key=repr)):
                assert s1 == s2 and _same(v1, v2) and round(t1 * 1000) == round(t2 * 1000), name
    parent = next(i for i, d in runs.items() if json.loads((d / "run.json").read_text())["name"] == "baseline")
    assert (back[parent] / "artifacts" / "models" / "weights.bin").read_bytes() == bytes(range(256)) * 10
    assert (back[parent] / "media.jsonl").exists()
