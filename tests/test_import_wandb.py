"""labtrack import wandb: run folders written by the real wandb (offline), compared point for point.

The inputs come from wandb 0.31 in the peers' side venv (tests/peers.py); the script also
records what it logged and when (time.time() around each wandb.log call), which is what the
import is compared with. labtrack's own .venv has no wandb, so imports here use labtrack's own
decoder; the same import run in the side venv uses wandb's protobuf classes, and both must
give the same runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import labtrack.importers
from labtrack.cli import main as cli
from labtrack.importers import SourceError, _wandb_format
from peers import as_json, by_name, lines, peer_script, peers, series  # noqa: F401  (peers is a fixture)

pytestmark = pytest.mark.slow

WRITE_RUNS = r"""
import json, time
import numpy as np
import wandb

rng = np.random.default_rng(0)
out = {}
run = wandb.init(project="vision", name="first", config={"lr": 0.1, "model": {"depth": 3, "act": "relu"}},
                 tags=["baseline", "cnn"], notes="the first try", group="sweep-1", job_type="train")
truth = {"id": run.id, "start": run.start_time, "rows": [], "images": 0, "tables": 0, "histograms": 0,
         "html": 0}
for i in range(40):
    row = {"loss": 1.0 / (i + 1), "acc": i / 40, "train/lr": 0.1 * 0.9 ** i}
    if i % 10 == 5:
        boxes = {"predictions": {"box_data": [{"position": {"minX": 0.125, "maxX": 0.5, "minY": 0.25, "maxY": 0.75},
                                               "class_id": 1, "scores": {"prob": 0.8}}], "class_labels": {1: "cat"}}}
        row["sample"] = wandb.Image(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), caption=f"step {i}",
                                    boxes=boxes)
        row["preds"] = wandb.Table(columns=["x", "y"], data=[[i, "a"], [i + 1, "b"]])
        row["weights"] = wandb.Histogram(rng.normal(size=200))
        row["report"] = wandb.Html(f"<p>step {i}</p>")
        truth["images"] += 1; truth["tables"] += 1; truth["histograms"] += 1; truth["html"] += 1
    if i == 7:
        row["note"] = "lr looks high"
        import wave
        with wave.open("voice.wav", "wb") as w:  # wandb.Audio of an array needs soundfile; a file does not
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
            w.writeframes((np.sin(np.linspace(0, 100, 1600)) * 3000).astype("<i2").tobytes())
        row["voice"] = wandb.Audio("voice.wav")
    before = time.time()
    wandb.log(row)
    truth["rows"].append({"step": i, "before": before, "after": time.time(),
                          "values": {k: v for k, v in row.items() if isinstance(v, float)}})
    print("step", i, flush=True)
run.summary["best_acc"] = 0.975
truth["end"] = time.time()
wandb.finish(exit_code=0)
out["first"] = truth

run = wandb.init(project="vision", name="second", config={"lr": 0.5}, tags=["big-lr"])
truth = {"id": run.id, "start": run.start_time, "rows": []}
run.config.update({"batch": 64})
for s in (0, 3, 7, 100):
    before = time.time()
    wandb.log({"loss": float(s) * 2.0}, step=s)
    truth["rows"].append({"step": s, "before": before, "after": time.time(), "values": {"loss": float(s) * 2.0}})
truth["end"] = time.time()
wandb.finish(exit_code=2)
out["second"] = truth
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def written(peers: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:  # noqa: F811
    """./wandb with two offline runs written by the real wandb, and what the script logged."""
    cwd = tmp_path_factory.mktemp("wandb-src")
    truth = as_json(peer_script(peers, WRITE_RUNS, cwd=cwd))
    return cwd / "wandb", truth


def test_labtracks_venv_has_no_wandb_so_its_own_decoder_reads() -> None:
    assert _wandb_format.wandb_decoder() is None


def test_every_point_step_and_wall_time_matches_what_wandb_logged(written: tuple[Path, dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    source, truth = written
    ids = labtrack.importers.wandb(source, root=tmp_path / "lt")
    assert len(ids) == 2
    runs = by_name(tmp_path / "lt")
    for name, t in truth.items():
        d = runs[name]
        names = {k for row in t["rows"] for k in row["values"]}
        for key in names:
            want = [(row["step"], row["values"][key]) for row in t["rows"] if key in row["values"]]
            got = series(d, key)
            assert [(s, v) for s, v, _ in got] == want, key
            for (s, v, tm), row in zip(got, [r for r in t["rows"] if key in r["values"]]):
                # W&B's _timestamp was taken inside wandb.log; labtrack keeps it to the millisecond
                assert row["before"] - 0.001 <= tm <= row["after"] + 0.001, (key, s)
        meta = json.loads((d / "run.json").read_text())
        assert meta["experiment"] == "vision"
        assert meta["imported_from"]["source_id"] == t["id"]
        assert meta["imported_from"]["tool"] == "wandb" and meta["imported_from"]["version"] == "0.31.0"
        assert meta["imported_from"]["complete"] is True
        started = meta["started"]
        from datetime import datetime
        assert abs(datetime.fromisoformat(started).timestamp() - t["start"]) < 1e-3
        assert t["rows"][-1]["before"] <= datetime.fromisoformat(meta["ended"]).timestamp() <= t["end"] + 1
    first, second = runs["first"], runs["second"]
    meta = json.loads((first / "run.json").read_text())
    assert (meta["tags"], meta["comment"], meta["group"], meta["job_type"], meta["status"]) == (
        ["baseline", "cnn"], "the first try", "sweep-1", "train", "finished")
    assert meta["host"] and meta["command"]["cwd"] == str(source.parent)  # W&B's environment record
    meta2 = json.loads((second / "run.json").read_text())
    assert (meta2["status"], meta2["error"], meta2["tags"]) == ("failed", "exit code 2", ["big-lr"])
    assert json.loads((first / "params.json").read_text()) == {"lr": 0.1, "model": {"depth": 3, "act": "relu"}}
    assert json.loads((second / "params.json").read_text()) == {"lr": 0.5, "batch": 64}  # config.update too
    summary = json.loads((first / "summary.json").read_text())
    assert summary["best_acc"]["value"] == 0.975 and summary["loss"]["count"] == 40


def test_images_tables_histograms_and_html_all_arrive(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    source, truth = written
    labtrack.importers.wandb(source, root=tmp_path / "lt")
    d = by_name(tmp_path / "lt")["first"]
    media = lines(d / "media.jsonl")
    kinds: dict[str, list[int]] = {}
    for m in media:
        kinds.setdefault(m["kind"], []).append(m["step"])
    t = truth["first"]
    assert kinds["image"] == [5, 15, 25, 35] and len(kinds["image"]) == t["images"]
    assert len(kinds["table"]) == t["tables"] and len(kinds["html"]) == t["html"]
    images = [m for m in media if m["kind"] == "image"]
    assert images[0]["caption"] == "step 5" and (images[0]["width"], images[0]["height"]) == (8, 6)
    boxes = json.loads((d / images[0]["boxes"]).read_text())  # W&B's fractions, in pixels
    assert boxes == {"boxes": [{"xStart": 1, "yStart": 1.5, "xEnd": 4, "yEnd": 4.5, "className": "cat",
                                "probability": 0.8}], "classes": ["cat"]}
    hist = lines(d / "histograms" / "weights.jsonl")
    assert [h["step"] for h in hist] == [5, 15, 25, 35] and all(h["count"] == 200 for h in hist)
    table = (d / [m["path"] for m in media if m["kind"] == "table"][0]).read_text()
    assert table.splitlines() == ["x,y", "5,a", "6,b"]
    assert "<p>step 5</p>" in (d / [m["path"] for m in media if m["kind"] == "html"][0]).read_text()
    assert [(t["step"], t["text"]) for t in lines(d / "text" / "note.jsonl")] == [(7, "lr looks high")]
    assert [(m["step"], m["kind"]) for m in media if m["name"] == "voice"] == [(7, "audio")]
    # W&B's system stats: mapped to labtrack's names, and kept under W&B's own
    mem, raw = series(d, "system/memory/percent"), series(d, "system/wandb/memory_percent")
    rss, raw_rss = series(d, "system/process/rss_bytes"), series(d, "system/wandb/proc.memory.rssMB")
    assert mem and [v for _, v, _ in mem] == [v for _, v, _ in raw]
    assert [v for _, v, _ in rss] == [v * 2**20 for _, v, _ in raw_rss]
    assert all(0 <= s <= 60 for s, _, _ in mem)  # seconds since the start, like labtrack's sampler
    console = (d / "console.log").read_text()
    assert console.splitlines()[:2] == ["step 0", "step 1"] and "step 39" in console
    assert (d / "artifacts" / "wandb" / "requirements.txt").is_file()
    assert not (d / "artifacts" / "wandb" / "media").exists()  # every media file was mapped


def comparable(root: Path) -> dict[str, Any]:
    """The files of every run under root, without what the importing process stamps (the times
    of text and media records) and the derived caches (.row.json holds this host's inodes and
    mtimes, .lod/ the series envelopes: docs/format.md)."""
    out: dict[str, Any] = {}
    for d in sorted(p.parent for p in root.glob("*/*/run.json")):
        for f in sorted(d.rglob("*")):
            rel = f"{d.name}/{f.relative_to(d)}"
            if not f.is_file() or f.name in ("heartbeat", ".row.json") or ".lod" in f.parts:
                continue
            if f.suffix == ".png":  # the pixels (the two venvs' Pillow may compress differently)
                from PIL import Image

                with Image.open(f) as im:
                    out[rel] = (im.mode, im.size, im.tobytes())
            elif f.suffix == ".jsonl":
                out[rel] = [{k: v for k, v in r.items() if k != "time"} for r in lines(f)]
            else:
                out[rel] = f.read_bytes()
    return out


def test_wandbs_own_decoder_and_labtracks_give_the_same_runs(peers: Path, written: tuple[Path, dict[str, Any]],  # noqa: F811
                                                             tmp_path: Path) -> None:
    source, _ = written
    labtrack.importers.wandb(source, root=tmp_path / "own")
    p = peer_script(peers, f"""
        import json, labtrack.importers
        from labtrack.importers import _wandb_format
        assert _wandb_format.wandb_decoder() is not None
        print(json.dumps(labtrack.importers.wandb({str(source)!r}, root={str(tmp_path / 'theirs')!r})))
    """, cwd=tmp_path)
    assert sorted(as_json(p)) == sorted(p.parent.name for p in (tmp_path / "own").glob("*/*/run.json"))
    own, theirs = comparable(tmp_path / "own"), comparable(tmp_path / "theirs")
    assert own.keys() == theirs.keys()
    for k in own:
        assert own[k] == theirs[k], k


def test_reimport_writes_nothing_and_the_cli_says_so(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    source, _ = written
    root = tmp_path / "lt"
    first = CliRunner().invoke(cli, ["import", "wandb", str(source), "--root", str(root)])
    assert first.exit_code == 0, first.output
    assert first.output.count("\n") == 1 and first.output.startswith("imported 2 runs from wandb (")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = CliRunner().invoke(cli, ["import", "wandb", str(source), "--root", str(root), "--json"])
    assert again.exit_code == 0, again.output
    out = json.loads(again.output)
    assert out["imported"] == [] and len(out["already_imported"]) == 2 and out["points"] == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before
    one = CliRunner().invoke(cli, ["import", "wandb", str(next(source.glob("offline-run-*"))), "--root",
                                   str(root), "--json"])
    one_out = json.loads(one.output)  # one run folder of the same source: that run, already there
    assert one_out["imported"] == [] and len(one_out["already_imported"]) == 1
    assert one_out["already_imported"][0] in out["runs"]


def test_a_run_killed_while_wandb_wrote_it_imports_as_crashed(written: tuple[Path, dict[str, Any]],
                                                              tmp_path: Path) -> None:
    source, truth = written
    run_folder = next(d for d in sorted(source.glob("offline-run-*")) if truth["first"]["id"] in d.name)
    cut = tmp_path / "wandb" / run_folder.name
    shutil.copytree(run_folder, cut)
    f = next(cut.glob("*.wandb"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3 + 3])  # torn in the middle of a record, no exit record
    labtrack.importers.wandb(cut, root=tmp_path / "lt")
    d = by_name(tmp_path / "lt")["first"]
    meta = json.loads((d / "run.json").read_text())
    assert meta["status"] == "crashed"
    got = series(d, "loss")
    assert 0 < len(got) < 40 and [s for s, _, _ in got] == list(range(len(got)))


@pytest.mark.parametrize("damage", ["flip", "header", "missing", "empty-folder", "text"])
def test_a_bad_source_is_a_clear_error_naming_the_file(written: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                       damage: str) -> None:
    source, _ = written
    bad = tmp_path / "wandb" / "offline-run-x"
    shutil.copytree(next(source.glob("offline-run-*")), bad)
    f = next(bad.glob("*.wandb"))
    data = bytearray(f.read_bytes())
    target: Path = bad
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
        words = [str(f), "corrupt", "checksum"]
    elif damage == "header":
        f.write_bytes(b"PK\x03\x04" + bytes(data[4:]))
        words = [str(f), "not a W&B run file"]
    elif damage == "missing":
        target = tmp_path / "nowhere"
        words = [str(target), "does not exist"]
    elif damage == "empty-folder":
        target = tmp_path / "empty"
        target.mkdir()
        words = [str(target), "no W&B run files"]
    else:
        target = tmp_path / "notes.txt"
        target.write_text("hello")
        words = [str(target), "not a W&B run file"]
    with pytest.raises(SourceError) as e:
        labtrack.importers.wandb(target, root=tmp_path / "lt")
    for w in words:
        assert w in str(e.value)
    r = CliRunner().invoke(cli, ["import", "wandb", str(target), "--root", str(tmp_path / "lt")])
    assert r.exit_code != 0 and "Traceback" not in r.output and words[0] in r.output
    assert not list((tmp_path / "lt").glob("*/*/run.json"))  # the file is read before anything is written


BIG_RUN = r"""
import wandb
run = wandb.init(project="big", config={"n": 1})
for i in range(6000):
    wandb.log({f"m{j}": i * 0.5 + j for j in range(8)})
wandb.finish()
"""


def test_an_import_killed_half_way_is_completed_by_the_next(peers: Path, tmp_path: Path) -> None:  # noqa: F811
    peer_script(peers, BIG_RUN, cwd=tmp_path)
    source, root = tmp_path / "wandb", tmp_path / "lt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env.update({"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "LABTRACK_SYSTEM": "0"})
    code = f"import labtrack.importers as i; i.wandb({str(source)!r}, root={str(root)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    killed_half_way = False
    while time.monotonic() < deadline and child.poll() is None:
        metas = list(root.glob("*/*/run.json"))
        if metas and (root.glob("*/*/scalars/m0.csv") and list(root.glob("*/*/scalars/m0.csv"))):
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed_half_way = not json.loads(metas[0].read_text())["imported_from"]["complete"]
            break
        time.sleep(0.005)
    assert killed_half_way, "the import finished before it could be killed; make BIG_RUN bigger"
    ids = labtrack.importers.wandb(source, root=root)
    d = next(root.glob("*/*/run.json")).parent
    assert d.name == ids[0] and json.loads((d / "run.json").read_text())["imported_from"]["complete"]
    for j in range(8):
        got = series(d, f"m{j}")
        assert [(s, v) for s, v, _ in got] == [(i, i * 0.5 + j) for i in range(6000)]


GIT_RUN = r"""
import subprocess, sys
def git(*a): subprocess.run(["git", "-c", "user.email=a@b.c", "-c", "user.name=a", *a], check=True, capture_output=True)
git("init", "-q"); git("remote", "add", "origin", "https://example.com/me/vision.git")
open("train.py", "w").write("import wandb\nrun = wandb.init(project='p')\nwandb.log({'a': 1.0})\nwandb.finish()\n")
git("add", "train.py"); git("commit", "-qm", "first")
subprocess.run([sys.executable, "train.py", "--lr", "3"], check=True)
print(subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
"""


def test_git_and_command_come_from_wandbs_environment_record(peers: Path, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "src"
    src.mkdir()
    commit = peer_script(peers, GIT_RUN, cwd=src, env={"WANDB_DISABLE_GIT": "false"}).stdout.strip().splitlines()[-1]
    labtrack.importers.wandb(src / "wandb", root=tmp_path / "lt")
    d = next((tmp_path / "lt").glob("*/*/run.json")).parent
    meta = json.loads((d / "run.json").read_text())
    assert meta["git"]["commit"] == commit and meta["git"]["remote"] == "https://example.com/me/vision.git"
    assert meta["command"]["argv"] == ["train.py", "--lr", "3"] and meta["command"]["cwd"] == str(src)
    assert meta["command"]["script"] == str(src / "train.py")
    env = json.loads((d / "env.json").read_text())
    assert env["python"]["version"] == "3.11.7" and env["platform"]["system"] == "Linux" and env["cpus"] >= 1


RESUMED = r"""
import time, wandb
for value in (1.0, 2.0):
    wandb.init(project="p", id="sameid01", resume="allow")
    wandb.log({"a": value})
    wandb.finish()
    time.sleep(1.1)  # the second folder's name and start time are a second later
"""


def test_an_offline_resume_with_the_same_id_is_a_run_of_its_own(peers: Path, tmp_path: Path) -> None:  # noqa: F811
    peer_script(peers, RESUMED, cwd=tmp_path)
    ids = labtrack.importers.wandb(tmp_path / "wandb", root=tmp_path / "lt")
    assert len(set(ids)) == 2
    values = sorted(series(tmp_path / "lt" / "p" / i, "a")[0][1] for i in ids)
    assert values == [1.0, 2.0]
    second = sorted(tmp_path.glob("wandb/offline-run-*"))[1]
    imp = labtrack.importers.run_import("wandb", second, root=tmp_path / "lt")
    assert imp.new == [] and len(imp.skipped) == 1 and imp.skipped[0] in ids
