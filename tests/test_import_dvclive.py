"""`labtrack import dvclive`: folders written by dvclive.Live (in the peers' side venv),
compared with the files DVCLive wrote: every value, step and timestamp, params, images."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labtrack._store.scalars import format_time
from labtrack.importers import SourceError, dvclive, run_import
from peers import peer_script, peers  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parents[1]

WRITE = r'''
import math, sys
import numpy as np
from dvclive import Live

def train(folder, n, seed):
    rs = np.random.RandomState(seed)
    with Live(folder, save_dvc_exp=False) as live:
        live.log_params({"lr": 0.01 * seed, "model": {"layers": 3, "act": "relu"}, "tags": ["a", "b"]})
        live.log_param("seed", seed)
        for step in range(n):
            live.log_metric("train/loss", 1.0 / (step + 1) + rs.rand() / 7)
            live.log_metric("acc", step / 10, timestamp=True)
            if step == 2:
                live.log_metric("odd", float("nan"))
            live.log_image(f"samples/{step}.png", (rs.rand(4, 5, 3) * 255).astype(np.uint8))
            live.next_step()
        live.log_image("final.png", (rs.rand(6, 6, 3) * 255).astype(np.uint8))
        live.log_metric("best", 0.875, plot=False)
        live.log_plot("curve", [{"x": 1, "y": 2.5}, {"x": 2, "y": 3.5}], x="x", y="y")

train("proj/dvclive", 12, 1)
train("many/first/dvclive", 5, 2)
train("many/second/dvclive", 7, 3)
'''


@pytest.fixture(scope="module")
def written(peers: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("dvc")
    peer_script(peers, WRITE, cwd=work)
    return work


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "value", "time"]
    return rows[1:]


def _run(root: Path) -> Path:
    (meta,) = root.glob("*/*/run.json")
    return meta.parent


def test_every_metric_point_params_and_images(written: Path, tmp_path: Path) -> None:
    import yaml

    folder = written / "proj" / "dvclive"
    ids = dvclive(folder, root=tmp_path)
    run = _run(tmp_path)
    assert ids == [run.name] and run.parent.name == "proj"
    meta = json.loads((run / "run.json").read_text())
    assert meta["name"] == "dvclive" and meta["status"] == "finished"
    assert meta["imported_from"]["tool"] == "dvclive" and meta["imported_from"]["complete"] is True
    assert meta["imported_from"]["source_id"] == str(folder.resolve())
    assert "version" in meta["imported_from"]  # DVCLive's files do not say which version wrote them
    assert json.loads((run / "params.json").read_text()) == yaml.safe_load((folder / "params.yaml").read_text())
    # acc was logged with timestamp=True: its wall times are DVCLive's
    acc = _tsv(folder / "plots" / "metrics" / "acc.tsv")
    assert _csv(run / "scalars" / "acc.csv") == [
        [r["step"], repr(float(r["acc"])), format_time(int(r["timestamp"]) / 1000)] for r in acc]
    assert meta["started"].startswith("20") and acc[0]["timestamp"]
    loss = _tsv(folder / "plots" / "metrics" / "train" / "loss.tsv")
    got = _csv(run / "scalars" / "train" / "loss.csv")
    assert [(int(s), float(v)) for s, v, _ in got] == [(int(r["step"]), float(r["loss"])) for r in loss] and \
        [int(s) for s, _, _ in got] == list(range(12))
    odd = _csv(run / "scalars" / "odd.csv")
    assert len(odd) == 1 and odd[0][0] == "2" and odd[0][1] == "nan"
    summary = json.loads((folder / "metrics.json").read_text())
    assert _csv(run / "scalars" / "best.csv")[0][:2] == [str(summary["step"]), "0.875"]
    media = [json.loads(x) for x in (run / "media.jsonl").read_text().splitlines()]
    images = sorted((m["name"], m["step"]) for m in media if m["kind"] == "image")
    n_files = len(list((folder / "plots" / "images").rglob("*.png")))
    assert len(images) == n_files == 13
    assert images == sorted([("samples", s) for s in range(12)] + [("final", summary["step"])])
    from PIL import Image

    with Image.open(folder / "plots" / "images" / "samples" / "3.png") as a, \
            Image.open(run / "media" / "3" / "samples.png") as b:
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()
    table = (run / "tables" / "custom" / "curve.csv").read_text().splitlines()
    assert table == ["x,y", "1,2.5", "2,3.5"]
    assert (run / "artifacts" / "dvclive" / "metrics.json").read_bytes() == (folder / "metrics.json").read_bytes()


def test_a_folder_of_several_dvclive_folders_is_several_runs(written: Path, tmp_path: Path) -> None:
    imp = run_import("dvclive", written / "many", tmp_path)
    assert len(imp.ids) == 2 == len(imp.new)
    names = {}
    for meta in tmp_path.glob("*/*/run.json"):
        raw = json.loads(meta.read_text())
        names[raw["name"]] = meta.parent
        assert raw["experiment"] == "many"
    assert sorted(names) == ["first/dvclive", "second/dvclive"]
    assert len(_csv(names["second/dvclive"] / "scalars" / "acc.csv")) == 7
    assert json.loads((names["first/dvclive"] / "params.json").read_text())["seed"] == 2


def test_reimport_changes_nothing_and_a_grown_run_is_redone(written: Path, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(written / "proj" / "dvclive", src)
    root = tmp_path / "root"
    first = dvclive(src, root=root)
    before = {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    imp = run_import("dvclive", src, root)
    assert imp.ids == first and imp.new == [] and imp.skipped == first
    assert {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before
    tsv = src / "plots" / "metrics" / "acc.tsv"
    later = max(int(line.split("\t")[0]) for line in tsv.read_text().splitlines()[1:]) + 60_000
    with open(tsv, "a") as f:  # the run went on (Live(resume=True) appends), a minute after its last point
        f.write(f"{later}\t12\t1.2\n")
    imp = run_import("dvclive", src, root)
    assert imp.ids == first and imp.new == first
    assert _csv(_run(root) / "scalars" / "acc.csv")[-1] == ["12", "1.2", f"{later / 1000:.3f}"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_summary_line_json_and_bad_sources(written: Path, tmp_path: Path) -> None:
    p = _cli("import", "dvclive", str(written / "proj" / "dvclive"), "--root", str(tmp_path / "root"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") == 1 and p.stdout.startswith("imported 1 run from dvclive (")
    p = _cli("import", "dvclive", str(written / "proj" / "dvclive"), "--root", str(tmp_path / "root"), "--json")
    out: dict[str, Any] = json.loads(p.stdout)
    assert out["imported"] == [] and len(out["already_imported"]) == 1
    p = _cli("import", "dvclive", str(tmp_path / "missing"), "--root", str(tmp_path / "root"))
    assert p.returncode != 0 and "does not exist" in p.stderr and "Traceback" not in p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="holds no DVCLive folder"):
        dvclive(empty, root=tmp_path / "root")
    bad = tmp_path / "bad" / "plots" / "metrics"
    bad.mkdir(parents=True)
    (bad / "loss.tsv").write_text("step\tloss\n0\t0.5\nnot-a-step\t0.25\n")
    p = _cli("import", "dvclive", str(tmp_path / "bad"), "--root", str(tmp_path / "root2"))
    assert p.returncode != 0 and str(bad / "loss.tsv") in p.stderr and "line 3" in p.stderr
    assert "Traceback" not in p.stderr


GROW = r'''
from dvclive import Live
with Live("big/dvclive", save_dvc_exp=False) as live:
    live.log_param("lr", 0.1)
    for step in range(3):
        for j in range(8):
            live.log_metric(f"m{j}", step * 0.5 + j)
        live.next_step()
'''


def test_an_import_killed_half_way_is_completed_by_the_next(peers: Path, tmp_path: Path) -> None:  # noqa: F811
    import signal
    import time

    peer_script(peers, GROW, cwd=tmp_path)
    # dvclive wrote three steps of each metric; the same files grown to 60,000 rows in its own
    # layout (a header, then step<TAB>value lines) make an import slow enough to be killed.
    tsvs = sorted((tmp_path / "big" / "dvclive" / "plots" / "metrics").glob("m*.tsv"))
    assert len(tsvs) == 8
    for j, tsv in enumerate(tsvs):
        header = tsv.read_text().splitlines()[0].split("\t")
        assert header == ["step", tsv.stem], header
        with open(tsv, "a") as f:
            f.writelines(f"{i}\t{i * 0.5 + j}\n" for i in range(3, 60_000))
    source, root = tmp_path / "big", tmp_path / "lt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env.update({"PYTHONPATH": str(REPO / "src"), "LABTRACK_SYSTEM": "0"})
    code = f"import labtrack.importers as i; i.dvclive({str(source)!r}, root={str(root)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    killed_half_way = False
    while time.monotonic() < deadline and child.poll() is None:
        metas = list(root.glob("*/*/run.json"))
        if metas:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed_half_way = not json.loads(metas[0].read_text())["imported_from"]["complete"]
            break
        time.sleep(0.002)
    assert killed_half_way, "the import finished before it could be killed; grow the files more"
    ids = dvclive(source, root=root)
    d = _run(root)
    assert d.name == ids[0] and json.loads((d / "run.json").read_text())["imported_from"]["complete"]
    for j in range(8):
        rows = _csv(d / "scalars" / f"m{j}.csv")
        assert [(int(s), float(v)) for s, v, _ in rows] == [(i, i * 0.5 + j) for i in range(60_000)]
    assert dvclive(source, root=root) == ids  # and a third import changes nothing
