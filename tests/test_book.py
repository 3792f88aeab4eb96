"""Book and RunView on real run directories made by the library (and by real processes)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

import labtrack
from conftest import child_env, read_line
from labtrack._book import Book, RunList, RunView
from labtrack.errors import (LabtrackNameError, LabtrackValueError, QueryError, RunNotFoundError,
                             RunStateError)

MakeRun = Callable[..., labtrack.Run]


@pytest.fixture
def book(make_run: MakeRun, tmp_path: Path) -> Any:
    """Three finished runs of two experiments, logged through the library."""
    a = make_run(experiment="mnist", name="base", config={"lr": 0.1, "opt": {"name": "adam"}, "batch": 64},
                 tags=["cnn"], comment="first")
    for step in range(10):
        a.log({"train/loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
    a.save_object("vocab", {"a": 1, "b": 2})
    a.save_object("weights", np.arange(6, dtype="float32").reshape(2, 3))
    csv = tmp_path / "predictions.csv"
    csv.write_text("x,y\n1,2\n3,4\n")
    a.save_artifact(csv)
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "readme.txt").write_text("hi")
    a.save_artifact(folder)
    a.log_text("translation", "Hallo Welt", step=1, expected="Hello world")
    a.log_text("translation", "Guten Tag", step=2)
    a.log_image("samples/bird", np.zeros((12, 16, 3), dtype="uint8"), step=3,
                boxes=[{"xStart": 1, "yStart": 2, "xEnd": 5, "yEnd": 6, "className": "bird"}],
                classes=["bird"])
    a.log_histogram("weights", np.linspace(-1, 1, 101), step=4, bins=4)
    a.log_markdown("notes", "# Notes\nfine")
    a.log_table("preds", [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}])
    a.finish()
    time.sleep(0.01)  # distinct start times
    b = make_run(experiment="mnist", name="small", config={"lr": 0.01, "opt": {"name": "adam"}, "batch": 64})
    for step in range(0, 10, 2):
        b.log({"train/loss": 0.5 / (step + 1), "acc": 0.5 + step / 20}, step=step)
    b.finish()
    time.sleep(0.01)
    c = make_run(experiment="cifar", name="base", config={"wd": 0.1})
    c.log({"val/acc": 0.7}, step=0)
    c.finish()
    with labtrack.open(tmp_path / "root") as bk:
        yield bk


def test_open_uses_the_root_setting_and_refuses_a_missing_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "r").mkdir()
    monkeypatch.setenv("LABTRACK_ROOT", str(tmp_path / "r"))
    with labtrack.open() as bk:
        assert isinstance(bk, Book) and bk.root == tmp_path / "r"
        assert bk.runs() == []
    with pytest.raises(LabtrackValueError, match="no labtrack root at .*nope.*does not exist"):
        labtrack.open(tmp_path / "nope")


def test_runs_lists_newest_first_and_filters(book: Book) -> None:
    runs = book.runs()
    assert isinstance(runs, RunList)
    assert [(r.experiment, r.name) for r in runs] == [("cifar", "base"), ("mnist", "small"), ("mnist", "base")]
    assert [r.name for r in book.runs(experiment="mnist")] == ["small", "base"]
    assert [r.name for r in book.runs(where="params.lr < 0.05")] == ["small"]
    assert [r.name for r in book.runs(where='metrics.acc:max > 0.85 and "cnn" in tags')] == ["base"]
    assert [r.name for r in book.runs(sort="params.lr")] == ["small", "base", "base"]
    assert book.runs(status="failed") == []
    limited = book.runs(limit=1)
    assert len(limited) == 1 and limited.total == 3
    assert len(book) == 3 and book.experiments() == ["cifar", "mnist"]
    assert book.columns()["params"] == ["batch", "lr", "opt.name", "wd"]
    with pytest.raises(QueryError):
        book.runs(where="params.lr <")


def test_run_list_to_pandas(book: Book) -> None:
    frame = book.runs(experiment="mnist").to_pandas()
    assert list(frame.index) == book.runs(experiment="mnist").ids
    assert frame.loc[frame["name"] == "base", "params.lr"].item() == 0.1
    assert frame.loc[frame["name"] == "small", "metrics.acc"].item() == pytest.approx(0.9)
    assert {"experiment", "status", "started", "duration", "tags", "params.opt.name"} <= set(frame.columns)
    assert "<table" in book.runs()._repr_html_() and "small" in book.runs()._repr_html_()


def test_run_references(book: Book) -> None:
    base = book["mnist/base"]
    assert book[base.id] == base
    assert book[base.id[:-2]] == base
    assert book[f"mnist/{base.id}"] == base
    assert book[base] is base
    with pytest.raises(RunNotFoundError) as info:
        book["base"]
    assert "no run matches 'base'" in str(info.value) and "recent runs:" in str(info.value)
    with pytest.raises(RunNotFoundError) as info:
        book[base.id[:8]]  # the date: all three
    message = str(info.value)
    assert "matches 3 runs" in message and "mnist/small" in message and "cifar/base" in message
    with pytest.raises(RunNotFoundError, match="must be an id"):
        book[3]  # type: ignore[index]
    assert book.get("zzz") is None and "mnist/small" in book and "zzz" not in book
    assert book.resolve("mnist/base") == [base]  # a single reference, not its characters
    broken = book.root / "mnist" / "20261121-000000-broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    with pytest.raises(RunNotFoundError, match="exists but cannot be read: .*not valid JSON"):
        book["20261121-000000-bro"]


def test_metadata(book: Book) -> None:
    run = book["mnist/base"]
    assert run.params == {"lr": 0.1, "opt": {"name": "adam"}, "batch": 64}
    assert run.flat_params == {"lr": 0.1, "opt.name": "adam", "batch": 64}
    assert run.status == "finished" and run.tags == ["cnn"] and run.comment == "first"
    assert run.summary["acc"]["max"] == pytest.approx(0.9) and run.summary["train/loss"]["count"] == 10
    assert run.git is None and run.diff is None
    assert run.command["argv"] and run.dir.parent.name == "mnist"
    assert run.started is not None and run.ended is not None
    assert run.env["python"]["version"].startswith(f"{sys.version_info[0]}.")
    assert repr(run) == f"<RunView {run.id} mnist/base finished>"


def test_scalars_of_one_series(book: Book) -> None:
    run = book["mnist/base"]
    frame = run.scalars("train/loss")
    assert list(frame.columns) == ["value", "time"] and frame.index.name == "step"
    assert frame.index.dtype == "int64" and list(frame.index) == list(range(10))
    assert frame["value"].tolist() == [1.0 / (s + 1) for s in range(10)]
    assert (frame["time"] > 1e9).all()
    with pytest.raises(LabtrackValueError) as info:
        run.scalars("train/los")
    assert "has no series 'train/los'" in str(info.value) and "acc, train/loss" in str(info.value)
    with pytest.raises(LabtrackNameError):
        run.scalars("../run")


def test_scalars_keep_special_values_file_order_and_skip_a_partial_line(make_run: MakeRun,
                                                                          tmp_path: Path) -> None:
    run = make_run(experiment="x")
    run.log({"v": float("nan")}, step=0)
    run.log({"v": float("inf")}, step=1)
    run.log({"v": True}, step=2)
    run.log({"v": -float("inf")}, step=1)  # a step again, as a resumed run does
    run.finish()
    path = run.dir / "scalars" / "v.csv"
    with open(path, "a") as f:
        f.write("7,0.5,17637")  # a line still being written
    view = labtrack.open(tmp_path / "root")[run.id]
    frame = view.scalars("v")
    assert list(frame.index) == [0, 1, 2, 1]
    values = frame["value"].tolist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, 1.0, -math.inf]
    joined = view.scalars()
    assert list(joined.index) == [0, 1, 2] and joined.loc[1, "v"] == -math.inf  # last one wins


def test_all_scalars_outer_joined_on_step(book: Book) -> None:
    frame = book["mnist/small"].scalars()
    assert list(frame.columns) == ["acc", "train/loss"]
    assert list(frame.index) == [0, 2, 4, 6, 8]
    assert book["cifar/base"].scalars().columns.tolist() == ["val/acc"]


def test_empty_series_file_reads_as_empty_frame(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(experiment="x")
    run.finish()
    (run.dir / "scalars").mkdir(exist_ok=True)
    (run.dir / "scalars" / "new.csv").write_text("step,value,time\n")
    (run.dir / "scalars" / "half.csv").write_text("step,val")
    view = labtrack.open(tmp_path / "root")[run.id]
    assert view.scalars("new").empty and view.scalars("half").empty
    (run.dir / "scalars" / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(labtrack.errors.FormatError, match="step,value,time"):
        view.scalars("bad")


def test_artifacts_and_loading_by_type(book: Book) -> None:
    run = book["mnist/base"]
    files = run.list_artifacts()
    assert {"run.json", "params.json", "summary.json", "artifacts/vocab.pkl", "artifacts/weights.npy",
            "artifacts/predictions.csv", "artifacts/assets/readme.txt", "scalars/train/loss.csv",
            "media.jsonl"} <= set(files)
    assert not [f for f in files if f.endswith(".tmp")]
    assert run["vocab"] == {"a": 1, "b": 2}
    assert run["weights"].tolist() == [[0, 1, 2], [3, 4, 5]]
    preds = run["predictions.csv"]
    assert isinstance(preds, pd.DataFrame) and preds["y"].tolist() == [2, 4]
    assert run["params.json"]["lr"] == 0.1
    assert run["assets"] == run.dir / "artifacts" / "assets"
    assert run["assets/readme.txt"] == "hi"
    assert "vocab" in run and "nothing" not in run
    with pytest.raises(LabtrackValueError) as info:
        run["nothing"]
    assert "artifacts/vocab.pkl" in str(info.value)
    with pytest.raises(LabtrackNameError):
        run["../../etc/passwd"]


def test_media_text_histograms_markdown_tables(book: Book) -> None:
    run = book["mnist/base"]
    (image,) = run.images("samples/bird")
    assert (image.step, image.width, image.height, image.kind) == (3, 16, 12, "image")
    assert image.open().size == (16, 12)
    assert image.boxes is not None and image.boxes["boxes"][0]["className"] == "bird"
    assert image._repr_png_() is not None
    assert run.images() == [image]
    with pytest.raises(LabtrackValueError, match="has no image 'nope'; it has: samples/bird"):
        run.images("nope")
    texts = run.texts("translation")
    assert texts.loc[1, "text"] == "Hallo Welt" and texts.loc[1, "expected"] == "Hello world"
    assert texts.loc[2, "expected"] is None
    (hist,) = run.histograms("weights")
    assert hist["step"] == 4 and sum(hist["counts"]) == 101 and len(hist["bins"]) == 5
    assert run.markdown("notes").startswith("# Notes")
    assert run.table("preds")["y"].tolist() == ["a", "b"]
    assert [m["kind"] for m in run.media()] == ["image"]
    with pytest.raises(LabtrackValueError, match="has no text 'x'; it has: translation"):
        run.texts("x")
    with pytest.raises(LabtrackValueError, match="has no histogram"):
        run.histograms("x")
    with pytest.raises(LabtrackValueError, match="has no markdown"):
        run.markdown("x")
    with pytest.raises(LabtrackValueError, match="has no table 'x'; it has: preds"):
        run.table("x")


def test_meld(book: Book) -> None:
    base, small = book["mnist/base"], book["mnist/small"]
    frame = book.meld([base, small.id], "acc")
    assert list(frame.columns) == ["base", "small"]  # by run name (issue 14: Lab Workbook's meld)
    assert list(frame.index) == list(range(10))
    assert math.isnan(frame.loc[1, "small"]) and frame.loc[2, "small"] == pytest.approx(0.6)
    labelled = book.meld({"mnist/base": "lr=0.1", "mnist/small": "lr=0.01"}, "acc")
    assert list(labelled.columns) == ["lr=0.1", "lr=0.01"]
    times = book.meld([base], "acc", column="time")
    assert (times["base"] > 1e9).all()
    with_missing = book.meld([base, "cifar/base"], "acc")  # two runs named base: their ids
    assert list(with_missing.columns) == [base.id, book["cifar/base"].id]
    assert with_missing[book["cifar/base"].id].isna().all()
    with pytest.raises(LabtrackValueError, match="none of the runs has a series 'nope'"):
        book.meld([base, small], "nope")
    with pytest.raises(LabtrackValueError, match="labels must be unique"):
        book.meld({"mnist/base": "x", "mnist/small": "x"}, "acc")
    with pytest.raises(LabtrackValueError, match="'value' or 'time'"):
        book.meld([base], "acc", column="step")


def test_table(book: Book) -> None:
    frame = book.table(experiment="mnist", metrics=["acc", "train/loss:min"])
    assert list(frame.columns) == ["experiment", "name", "status", "lr", "acc", "train/loss:min"]
    by_name = frame.set_index("name")
    assert by_name.loc["small", "lr"] == 0.01 and by_name.loc["base", "train/loss:min"] == pytest.approx(0.1)
    explicit = book.table(["mnist/base", "mnist/small"], params=["batch", "opt.name"], metrics=["acc:max"])
    assert list(explicit.columns) == ["experiment", "name", "status", "batch", "opt.name", "acc:max"]
    assert explicit["acc:max"].tolist() == pytest.approx([0.9, 0.9])
    one = book.table(["mnist/base"])
    assert {"lr", "batch", "opt.name", "acc", "train/loss"} <= set(one.columns)
    with pytest.raises(LabtrackValueError, match="no selected run has a param 'lrr'"):
        book.table(["mnist/base"], params=["lrr"])
    with pytest.raises(LabtrackValueError, match="no selected run has a metric 'ac'"):
        book.table(["mnist/base"], metrics=["ac:max"])
    assert book.table(where="params.lr > 1").empty


def test_compare(book: Book) -> None:
    frame = book.compare(["mnist/base", "mnist/small"])
    assert frame.loc["params.lr", "differs"] and not frame.loc["params.opt.name", "differs"]
    assert frame.loc["params.lr", book["mnist/small"].id] == 0.01
    assert "metrics.acc" in frame.index


def test_tag_comment_move_remove_gc(book: Book) -> None:
    base = book["mnist/base"]
    assert book.tag(base, "best", "cnn") == ["cnn", "best"]
    assert book.tag(base, "cnn", remove=True) == ["best"]
    assert book["mnist/base"].tags == ["best"]
    assert [r.name for r in book.runs(where='"best" in tags')] == ["base"]
    with pytest.raises(LabtrackValueError, match="tag ' ' is not allowed"):
        book.tag(base, " ")
    book.set_comment(base, "stride fix")
    assert book["mnist/base"].comment == "stride fix"
    assert [r.name for r in book.runs(q="stride")] == ["base"]
    assert book["mnist/base"].notes == ""
    book.set_notes(base, "# Why\nthe *stride* was off by one")
    assert book["mnist/base"].notes == "# Why\nthe *stride* was off by one"
    book.set_notes(base, "")
    assert book["mnist/base"].notes == "" and not (base.dir / "notes.md").exists()

    moved = book.move(base, "vision/mnist")
    assert moved.dir == book.root / "vision-mnist" / base.id and not base.dir.exists()
    assert moved.experiment == "vision/mnist" and moved.params["lr"] == 0.1
    assert book[f"vision/mnist/base"].id == base.id
    with pytest.raises(LabtrackValueError, match="experiment name '' is not allowed"):
        book.move(moved, "")

    trashed = book.remove("cifar/base")
    assert trashed.parent.parent == book.root / ".trash" and (trashed / "run.json").is_file()
    assert not (book.root / "cifar").exists()  # its last run left
    assert [r.experiment for r in book.runs()] == ["mnist", "vision/mnist"]
    assert book.gc(dry_run=True)[0] == 1 and trashed.exists()
    count, size = book.gc()
    assert count == 1 and size > 0 and not (book.root / ".trash").exists()
    assert book.gc() == (0, 0)


def test_changes_keep_unknown_keys_and_non_finite_values(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(experiment="x")
    run.finish()
    doc = json.loads((run.dir / "run.json").read_text())
    doc["future_key"] = {"kept": "NaN"}
    (run.dir / "run.json").write_text(json.dumps(doc))
    with labtrack.open(tmp_path / "root") as bk:
        bk.tag(run.id, "t")
    after = json.loads((run.dir / "run.json").read_text())
    assert after["future_key"] == {"kept": "NaN"} and after["tags"] == ["t"]
    assert set(doc) <= set(after)


def _start_live_run(tmp_path: Path, steps: int = 20) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import time, labtrack
        run = labtrack.init(experiment="live", name="writer", config={{"lr": 0.3}},
                            root={str(tmp_path / "root")!r}, capture_git=False,
                            capture_console=False, flush_seconds=0.05)
        for step in range({steps}):
            run.log({{"loss": 1.0 / (step + 1)}}, step=step)
        run.flush()
        print(run.id, flush=True)
        time.sleep(120)
    """)
    return subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_live_run_reads_as_running_then_crashed_after_kill_9(tmp_path: Path) -> None:
    child = _start_live_run(tmp_path)
    try:
        assert child.stdout is not None
        run_id = read_line(child.stdout).strip()
        assert run_id, child.stderr.read() if child.stderr else ""
        with labtrack.open(tmp_path / "root") as bk:
            view = bk[run_id]
            assert view.status == "running" and view.ended is None
            assert len(view.scalars("loss")) == 20
            assert [r.status for r in bk.runs()] == ["running"]
            with pytest.raises(RunStateError, match="still running"):
                bk.tag(view, "x")
            with pytest.raises(RunStateError, match="cannot remove a live run"):
                bk.remove(view)
            with pytest.raises(RunStateError):
                bk.move(view, "other")
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            assert view.status == "crashed"
            assert bk.runs()[0].status == "crashed"
            assert view.scalars("loss")["value"].iloc[-1] == pytest.approx(1 / 20)
            bk.tag(view, "crashed-ok")  # a dead run can be changed
            assert bk[run_id].tags == ["crashed-ok"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_checkpoints_through_a_run_view(book: Book) -> None:
    run = book["cifar/base"]
    run.save_checkpoint({"w": [1, 2, 3]}, step=5, metric=0.3)
    run.save_checkpoint({"w": [4, 5, 6]}, step=6, metric=0.5)
    assert run.load_checkpoint("last") == {"w": [4, 5, 6]}
    assert run.load_checkpoint("best") == {"w": [1, 2, 3]}
    assert run.load_checkpoint(5) == {"w": [1, 2, 3]}


def test_listing_does_not_import_pandas(book: Book) -> None:
    code = textwrap.dedent(f"""
        import sys, labtrack
        book = labtrack.open({str(book.root)!r})
        runs = book.runs(where="params.lr > 0")
        assert len(runs) == 2, runs
        run = book["mnist/base"]
        run.params, run.summary, run.status, run.list_artifacts()
        heavy = [m for m in ("pandas", "pyarrow") if m in sys.modules]
        print(",".join(heavy) or "none")
    """)
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"


def test_run_view_on_a_bare_directory(tmp_path: Path) -> None:
    d = tmp_path / "root" / "e" / "20261121-100000-aaaaaa"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"id": "20261121-100000-aaaaaa", "experiment": "e",
                                            "status": "finished"}))
    view = RunView(d)
    assert view.params == {} and view.summary == {} and view.options == {} and view.console == ""
    assert view.series() == [] and view.scalars().empty and view.images() == []
