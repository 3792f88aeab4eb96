"""labtrack.wandb: scripts written for wandb, unchanged but for the import, log to labtrack.

The scripts under tests/bridges/ run as real child processes; what they logged is compared
with what `labtrack.open(root)` reads back. The in-process tests pin wandb's rules one by
one (steps, commit, config, summary, define_metric, boxes, watch, resume, errors).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import labtrack
import labtrack.wandb as wandb
from labtrack._bridges.wandb_media import UnsupportedError, map_boxes
from labtrack.errors import LabtrackTypeError, LabtrackValueError, RunNotFoundError, RunStateError

from conftest import child_env

BRIDGES = Path(__file__).resolve().parent / "bridges"


def run_bridge(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, str(BRIDGES / script), *args], cwd=cwd, env=child_env(env),
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of an in-process wandb.init: runs under tmp_path/root, no captures."""
    yield {"LABTRACK_ROOT": str(tmp_path / "root"), "LABTRACK_CAPTURE_GIT": "false",
           "LABTRACK_CAPTURE_CONSOLE": "false"}
    wandb.finish()  # a test that failed midway leaves no default run behind


def book(tmp_path: Path) -> Any:
    return labtrack.open(tmp_path / "root")


# --- real scripts ----------------------------------------------------------------------------

def test_training_script_lands_as_logged(tmp_path: Path) -> None:
    run_bridge("wandb_train.py", "--record", "rec.json", "--epochs", "3", cwd=tmp_path)
    rec = json.loads((tmp_path / "rec.json").read_text())
    view = labtrack.open(tmp_path / "labtrack")[rec["id"]]
    assert view.experiment == "digits" and view.name == "mlp-baseline"
    assert view.tags == ["mlp", "bridge"] and view.comment == "random digits, tiny MLP"
    assert view.meta["group"] == "sweep-1" and view.meta["job_type"] == "train"
    assert view.status == "finished"
    assert view.params == {"epochs": 3, "lr": 0.1, "hidden": 32, "batch_size": 32} == rec["config"]

    # train/loss without step: one step per call, the epoch's validation log takes one more
    n = rec["batches"]
    loss = view.scalars("train/loss")
    want_steps = [e * (n + 1) + b for e in range(3) for b in range(n)]
    assert list(loss.index) == want_steps
    assert np.allclose(loss.value.to_numpy(), rec["logged"]["train/loss"])
    # val/* were defined with step_metric="epoch": their steps are the epochs
    acc = view.scalars("val/acc")
    assert list(acc.index) == [0, 1, 2] and np.allclose(acc.value.to_numpy(), rec["logged"]["val/acc"])
    assert list(view.scalars("epoch").index) == [n, 2 * n + 1, 3 * n + 2]

    summary = view.summary
    assert summary["val/acc"]["summary"] == {"max": max(rec["logged"]["val/acc"])}
    assert summary["train/loss"]["summary"]["min"] == pytest.approx(min(rec["logged"]["train/loss"]))
    assert summary["train/loss"]["summary"]["mean"] == pytest.approx(float(np.mean(rec["logged"]["train/loss"])))
    assert summary["best_acc"]["value"] == max(rec["logged"]["val/acc"])
    assert summary["final_note"]["value"] == "done"

    # a list of images: one image per item, boxes mapped from fractions to pixels
    names = {i.name for i in view.images()}
    assert names == {"examples/0", "examples/1"}
    first = view.images("examples/0")
    assert [i.step for i in first] == [n, 2 * n + 1, 3 * n + 2]
    box = first[0].boxes["boxes"][0]
    assert (box["xStart"], box["xEnd"], box["yStart"], box["yEnd"]) == (2, 6, 0, 4)
    assert box["className"].startswith("digit") and 0 < box["probability"] <= 1
    assert first[0].boxes["classes"] == [f"digit{k}" for k in range(10)]
    assert [h["step"] for h in view.histograms("logits")] == [n, 2 * n + 1, 3 * n + 2]
    assert len(view.histograms("logits")[0]["counts"]) == 16
    table = view.table("predictions")
    assert list(table.columns) == ["id", "pred", "label"] and list(table.id) == [0, 1, 2, 3, 4]

    # watch(log="all", log_freq=4): every 4th forward pass (8 train + 1 val per epoch = 27)
    grads = view.histograms("gradients/0.weight")
    params = view.histograms("parameters/2.bias")
    assert len(params) == 27 // 4 and len(grads) >= 5
    assert sum(grads[0]["counts"]) == 32 * 64


def test_steps_commit_and_media_land_as_logged(tmp_path: Path) -> None:
    run_bridge("wandb_steps.py", "rec.json", cwd=tmp_path)
    rec = json.loads((tmp_path / "rec.json").read_text())
    view = labtrack.open(tmp_path / "labtrack")[rec["id"]]
    assert view.comment == "explicit steps"
    assert view.params == {"opt": {"name": "adam", "betas": [0.9, 0.99]}, "seed": 7}
    loss = view.scalars("loss")
    assert list(loss.index) == [0, 10, 20], "the step that went back must be dropped"
    assert list(loss.value) == [1.0, 1 / 11, 1 / 21]
    assert list(view.scalars("acc").index) == [0, 10, 20]
    assert list(view.scalars("partial").index) == [20] and list(view.scalars("partial2").index) == [20]
    assert list(view.scalars("after").index) == [21]
    assert rec["went_back"] and "step 5 is lower than the current step 22" in rec["went_back"][0]
    assert rec["summary_loss"] == 1 / 21

    images = {i.name: i for i in view.images()}
    assert set(images) == {"img/array", "img/pil", "img/path"}
    assert all(i.step == 30 and (i.width, i.height) == (60, 40) for i in images.values())
    assert np.array_equal(np.asarray(images["img/path"].open()), np.asarray(images["img/array"].open()))
    boxes = images["img/array"].boxes
    assert boxes["classes"] == ["cat", "dog"]
    assert boxes["boxes"][0] == {"xStart": 5, "yStart": 4, "xEnd": 25, "yEnd": 30, "className": "cat",
                                 "probability": 0.8}
    # middle/width/height as fractions; a "loss" score outside [0, 1] is no probability
    assert boxes["boxes"][1] == {"xStart": 24, "yStart": 10, "xEnd": 36, "yEnd": 30, "className": "dog"}
    assert view.table("table").to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    binned = view.histograms("hist/binned")[0]
    assert binned["bins"] == [0.0, 1.0, 2.0, 3.0] and binned["counts"] == [1, 3, 2] and binned["step"] == 30
    values = view.histograms("hist/values")[0]
    assert len(values["counts"]) == 20 and sum(values["counts"]) == 500
    report = [m for m in view.media() if m["name"] == "report"]
    assert report and report[0]["kind"] == "html"
    assert (view.dir / report[0]["path"]).read_text() == "<h1>Report</h1><p>all good</p>"
    assert list(view.texts("note").text) == ["a text value"]
    assert view.summary["best"]["value"] == 0.95 and view.summary["epochs"]["value"] == 3
    assert view.status == "finished"


def test_exit_code_marks_the_run_failed(tmp_path: Path) -> None:
    run_bridge("wandb_steps.py", "rec.json", "1", cwd=tmp_path)
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert labtrack.open(tmp_path / "labtrack")[rec["id"]].status == "failed"


def test_wandb_mode_disabled_records_nothing(tmp_path: Path) -> None:
    run_bridge("wandb_train.py", "--record", "rec.json", "--epochs", "1", cwd=tmp_path,
               env={"WANDB_MODE": "disabled"})
    assert json.loads((tmp_path / "rec.json").read_text())["dir"] is None
    assert not (tmp_path / "labtrack").exists()


def test_audio_and_video_land_as_logged(tmp_path: Path) -> None:
    run_bridge("wandb_av.py", "rec.json", cwd=tmp_path)
    rec = json.loads((tmp_path / "rec.json").read_text())
    view = labtrack.open(tmp_path / "labtrack")[rec["id"]]
    media = {m["name"]: m for m in view.media()}
    assert media["tone"]["step"] == 3 and media["tone"].get("caption") == "440 Hz"
    assert media["clip"]["step"] == 3 and media["clip"].get("caption") == "noise"
    assert (view.dir / media["tone"]["path"]).read_bytes()[:4] == b"RIFF"


def test_video_frames_are_read_as_time_channel_height_width(tmp_path: Path, env: dict[str, str]) -> None:
    frames = np.zeros((4, 3, 10, 12), dtype=np.uint8)
    frames[:, 0] = 255  # red
    v = wandb.Video(frames, fps=2)
    assert v.frames.shape == (4, 10, 12, 3) and (v.frames[..., 0] == 255).all() and v.fps == 2
    run = wandb.init(project="v", _environ=env)
    wandb.log({"clip": v}, step=1)
    wandb.finish()
    assert [m["kind"] for m in book(tmp_path)[run.id].media()] in (["video"], ["animation"])


def test_video_batches_tile_into_a_grid() -> None:
    v = wandb.Video(np.ones((5, 2, 1, 4, 6), dtype=np.uint8) * 200)
    assert v.frames.shape == (2, 2 * 4, 3 * 6, 3) and v.fps == 4.0
    assert (v.frames[:, :4, :, :] == 200).all() and (v.frames[:, 4:, 12:, :] == 0).all()
    with pytest.raises(LabtrackValueError, match="time, channel, height, width"):
        wandb.Video(np.zeros((4, 10, 12, 3)))


# --- init --------------------------------------------------------------------------------------

def test_init_maps_arguments_and_the_run_attributes(tmp_path: Path, env: dict[str, str]) -> None:
    assert wandb.run is None
    run = wandb.init(project="p", name="n", config={"lr": 0.1}, tags=["a"], notes="c", group="g",
                     job_type="eval", entity="team", settings=wandb.Settings(console="off"),
                     save_code=True, _environ=env)
    assert wandb.run is run and labtrack.current_run() is run.labtrack_run
    assert (run.project, run.name, run.group, run.job_type, run.url) == ("p", "n", "g", "eval", None)
    assert Path(run.dir).parent.parent == tmp_path / "root"
    assert wandb.init(project="other", _environ=env) is run, "wandb returns the current run without reinit"
    wandb.finish()
    assert wandb.run is None
    meta = json.loads((Path(run.dir) / "run.json").read_text())
    assert (meta["experiment"], meta["comment"], meta["tags"], meta["group"], meta["job_type"]) == \
        ("p", "c", ["a"], "g", "eval")


def test_dir_puts_runs_in_a_labtrack_folder_inside_it(tmp_path: Path) -> None:
    run = wandb.init(project="p", dir=tmp_path / "out", _environ={"LABTRACK_CAPTURE_GIT": "false"})
    wandb.finish()
    assert Path(run.dir).parent.parent == tmp_path / "out" / "labtrack"


def test_reinit_finishes_or_keeps_the_previous_run(env: dict[str, str]) -> None:
    a = wandb.init(project="p", _environ=env)
    b = wandb.init(project="p", reinit=True, _environ=env)
    assert b is not a and a.labtrack_run.status == "finished" and wandb.run is b
    c = wandb.init(project="p", reinit="create_new", _environ=env)
    assert b.labtrack_run.status == "running"
    c.finish()
    b.finish()


@pytest.mark.parametrize("kwargs, match", [
    ({"sync_tensorboard": True}, "labtrack.tensorboard"),
    ({"monitor_gym": True}, "monitor_gym"),
    ({"fork_from": "x?_step=1"}, "fork_from"),
    ({"mode": "online-ish"}, "mode must be one of"),
    ({"resume": "sometimes"}, "resume='sometimes'"),
    ({"resume": "must"}, "needs id="),
    ({"tensorbaord": True}, r"wandb.init\(tensorbaord=...\) is not supported"),
])
def test_init_refuses_what_it_cannot_honour(env: dict[str, str], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(LabtrackValueError, match=match):
        wandb.init(project="p", _environ=env, **kwargs)
    assert wandb.run is None


def test_id_and_resume(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(RunNotFoundError, match="no run 'job-1'"):
        wandb.init(project="p", id="job-1", resume="must", _environ=env)
    run = wandb.init(project="p", id="job-1", resume="allow", _environ=env)  # new, with that id
    assert run.id == "job-1"
    wandb.log({"loss": 1.0})
    wandb.log({"loss": 0.5})
    wandb.finish()
    with pytest.raises(LabtrackValueError, match="resume='allow'"):
        wandb.init(project="p", id="job-1", _environ=env)
    again = wandb.init(project="p", id="job-1", resume="must", config={"more": 1}, _environ=env)
    assert again.step == 2 and again.dir == run.dir
    wandb.log({"loss": 0.25})
    wandb.finish()
    view = book(tmp_path)["job-1"]
    assert list(view.scalars("loss").index) == [0, 1, 2] and view.params == {"more": 1}
    with pytest.raises(LabtrackValueError, match="is not allowed"):
        wandb.init(project="p", id="../evil", _environ=env)


def test_mode_disabled_accepts_every_call(tmp_path: Path, env: dict[str, str]) -> None:
    run = wandb.init(project="p", mode="disabled", config={"a": 1}, _environ=env)
    assert run.dir is None and wandb.config.a == 1
    wandb.config.b = 2
    wandb.define_metric("x", summary="max")
    wandb.log({"x": 1.0, "img": wandb.Image(np.zeros((4, 4)))}, step=3)
    run.summary["best"] = 1
    import torch

    wandb.watch(torch.nn.Linear(2, 2))
    wandb.finish()
    assert not (tmp_path / "root").exists()


# --- config and summary -----------------------------------------------------------------------

def test_config_access_update_and_changes(tmp_path: Path, env: dict[str, str]) -> None:
    run = wandb.init(project="p", config={"lr": 0.1, "opt": {"name": "sgd"}}, _environ=env)
    assert wandb.config.lr == 0.1 == wandb.config["lr"] and wandb.config.opt == {"name": "sgd"}
    wandb.config.update({"bs": 64})
    wandb.config.epochs = 3
    wandb.config["seed"] = 1
    wandb.config.setdefaults({"bs": 1, "warmup": 5})
    assert dict(wandb.config.items()) == wandb.config.as_dict() == \
        {"lr": 0.1, "opt": {"name": "sgd"}, "bs": 64, "epochs": 3, "seed": 1, "warmup": 5}
    assert "bs" in wandb.config and sorted(wandb.config.keys())[0] == "bs"
    with pytest.raises(LabtrackValueError, match="allow_val_change=True"):
        wandb.config.lr = 0.2
    wandb.config.update({"lr": 0.2}, allow_val_change=True)
    with pytest.raises(AttributeError, match="no key 'nope'"):
        wandb.config.nope
    wandb.finish()
    assert json.loads((Path(run.dir) / "params.json").read_text())["lr"] == 0.2
    assert book(tmp_path)[run.id].params["warmup"] == 5


def test_config_and_summary_before_init_say_so() -> None:
    with pytest.raises(RunStateError, match="before wandb.init"):
        wandb.config.lr
    with pytest.raises(RunStateError, match="before wandb.init"):
        wandb.summary["x"] = 1
    with pytest.raises(RunStateError, match="call wandb.init"):
        wandb.log({"x": 1})
    assert wandb.login() is True


def test_summary_is_written_to_summary_json_and_shown_in_the_index(tmp_path: Path, env: dict[str, str]) -> None:
    run = wandb.init(project="p", _environ=env)
    wandb.log({"acc": 0.5})
    wandb.log({"acc": 0.7})
    assert run.summary["acc"] == 0.7 and "acc" in run.summary
    run.summary["acc"] = 0.9  # wandb's override of the last value
    run.summary.best_epoch = np.int64(3)
    wandb.summary.update({"notes": "ok"})
    assert run.summary["acc"] == 0.9 and run.summary.best_epoch == 3
    with pytest.raises(LabtrackTypeError, match="summary"):
        run.summary["bad"] = object()
    wandb.finish()
    summary = json.loads((Path(run.dir) / "summary.json").read_text())
    assert summary["acc"]["last"] == 0.7 and summary["acc"]["value"] == 0.9
    assert summary["best_epoch"] == {"value": 3} and summary["notes"] == {"value": "ok"}
    _, rows = labtrack.open(tmp_path / "root").index.query()
    assert rows[0]["metrics"]["acc"] == 0.9 and rows[0]["metrics"]["best_epoch"] == 3
    # `labtrack show` shows the script's value as the last one, as the runs table does
    from click.testing import CliRunner

    from labtrack.cli import main

    out = CliRunner().invoke(main, ["show", run.id, "--root", str(tmp_path / "root")]).output
    acc = next(line.split() for line in out.splitlines() if line.strip().startswith("acc "))
    best = next(line.split() for line in out.splitlines() if line.strip().startswith("best_epoch "))
    assert acc[1] == "0.9" and best[1] == "3", out


def test_summary_survives_a_resume(tmp_path: Path, env: dict[str, str]) -> None:
    run = wandb.init(project="p", id="r1", resume="allow", _environ=env)
    wandb.log({"x": 1.0})
    run.summary["kept"] = 1
    wandb.finish()
    wandb.init(project="p", id="r1", resume="allow", _environ=env)
    wandb.log({"x": 2.0})
    wandb.finish()
    summary = json.loads((Path(run.dir) / "summary.json").read_text())
    assert summary["kept"] == {"value": 1} and summary["x"]["count"] == 2


# --- log ---------------------------------------------------------------------------------------

def test_step_rules(tmp_path: Path, env: dict[str, str]) -> None:
    run = wandb.init(project="p", _environ=env)
    wandb.log({"a": 1})                   # 0
    wandb.log({"a": 2, "b": 1}, commit=False)
    wandb.log({"a": 3})                   # still 1: the later value of a in one step wins
    assert run.step == 2
    wandb.log({"c": 1}, step=5)           # gathered, not committed yet
    wandb.log({"d": 1}, step=5)
    wandb.log({"c": 2}, step=7)           # step 5 is committed by the larger step
    wandb.log({"e": {"f": {"g": 1.5}}})   # nested, committed at 7, then 8
    with pytest.warns(UserWarning, match="step 3 is lower than the current step 8"):
        wandb.log({"a": 100}, step=3)
    wandb.log({"a": 4}, step=9, commit=True)
    assert run.step == 10
    wandb.finish()
    view = book(tmp_path)[run.id]
    assert view.scalars("a").value.to_dict() == {0: 1.0, 1: 3.0, 9: 4.0}
    assert list(view.scalars("b").index) == [1]
    assert view.scalars("c").value.to_dict() == {5: 1.0, 7: 2.0}
    assert list(view.scalars("d").index) == [5] and list(view.scalars("e/f/g").index) == [7]


def test_log_takes_numpy_torch_and_arrays_as_histograms(tmp_path: Path, env: dict[str, str]) -> None:
    import torch

    run = wandb.init(project="p", _environ=env)
    wandb.log({"np": np.float32(0.5), "t": torch.tensor(2.0), "flag": True, "none": None,
               "arr": np.arange(100.0), "grads": torch.randn(50)})
    with pytest.raises(LabtrackTypeError, match="'bad' is a object"):
        wandb.log({"bad": object()})
    with pytest.raises(LabtrackTypeError, match="keys must be str"):
        wandb.log({1: 2.0})
    wandb.finish()
    view = book(tmp_path)[run.id]
    assert view.scalars("np").value.iloc[0] == 0.5 and view.scalars("t").value.iloc[0] == 2.0
    assert view.scalars("flag").value.iloc[0] == 1.0 and "none" not in view.series()
    assert sum(view.histograms("arr")[0]["counts"]) == 100 and sum(view.histograms("grads")[0]["counts"]) == 50
    assert "bad" not in view.series()


def test_define_metric_summaries_and_globs(tmp_path: Path, env: dict[str, str]) -> None:
    run = wandb.init(project="p", _environ=env)
    wandb.define_metric("val/*", summary="min,max,mean,last,first")
    wandb.define_metric("loss", summary="best", goal="minimize")
    for v in (3.0, 1.0, 2.0):
        wandb.log({"val/a": v, "val/b": -v, "loss": v, "other": v})
    with pytest.raises(LabtrackValueError, match="needs goal="):
        wandb.define_metric("x", summary="best")
    with pytest.raises(LabtrackValueError, match="'median' is not one of"):
        wandb.define_metric("x", summary="median")
    wandb.finish()
    s = book(tmp_path)[run.id].summary
    assert s["val/a"]["summary"] == {"min": 1.0, "max": 3.0, "mean": 2.0, "last": 2.0, "first": 3.0}
    assert s["val/b"]["summary"]["max"] == -1.0
    assert s["loss"]["summary"] == {"best": 1.0} and s["loss"]["goal"] == "minimize"
    assert "summary" not in s["other"]


def test_define_metric_step_metric_must_be_whole(env: dict[str, str]) -> None:
    wandb.init(project="p", _environ=env)
    wandb.define_metric("val/*", step_metric="epoch")
    with pytest.raises(LabtrackValueError, match="step metric 'epoch' is 0.5"):
        wandb.log({"epoch": 0.5, "val/acc": 1.0})


def test_watch_logs_histograms_every_log_freq_forward_passes(tmp_path: Path, env: dict[str, str]) -> None:
    import torch

    run = wandb.init(project="p", _environ=env)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    wandb.watch(model, log="gradients", log_freq=3)
    for _ in range(7):
        model(torch.randn(5, 3)).sum().backward()
        wandb.log({"loss": 1.0})
    wandb.unwatch(model)
    model(torch.randn(5, 3)).sum().backward()  # unwatched: nothing more
    with pytest.raises(LabtrackValueError, match="log='weights'"):
        wandb.watch(model, log="weights")
    with pytest.raises(LabtrackValueError, match="log_graph=True"):
        wandb.watch(model, log_graph=True)
    wandb.finish()
    view = book(tmp_path)[run.id]
    grads = view.histograms("gradients/0.weight")
    assert [g["step"] for g in grads] == [2, 5], "calls 3 and 6, at the steps they happened in"
    assert sum(grads[0]["counts"]) == 12
    assert not [n for n in (view.dir / "histograms").rglob("*") if "parameters" in str(n)]


def test_save_copies_files_into_artifacts(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "model.txt").write_text("weights")
    run = wandb.init(project="p", _environ=env)
    wandb.save(str(tmp_path / "*.txt"))
    with pytest.raises(LabtrackValueError, match="nothing matches"):
        wandb.save(str(tmp_path / "*.nothing"))
    wandb.finish()
    assert (Path(run.dir) / "artifacts" / "model.txt").read_text() == "weights"


# --- media objects (pure) ---------------------------------------------------------------------

def test_map_boxes_positions_domains_groups_and_scores() -> None:
    boxes, classes = map_boxes({
        "predictions": {"box_data": [
            {"position": {"minX": 0.1, "maxX": 0.5, "minY": 0.0, "maxY": 1.0}, "class_id": 2,
             "scores": {"acc": 0.3}},
            {"position": {"middle": [10, 20], "width": 4, "height": 6}, "domain": "pixel",
             "box_caption": "mystery", "scores": {"a": 0.1, "b": 0.2}}],
            "class_labels": {2: "car"}},
        "ground_truth": {"box_data": [{"position": {"minX": 0, "maxX": 1, "minY": 0, "maxY": 1}, "class_id": 2}],
                         "class_labels": {2: "car"}},
    }, width=100, height=50)
    assert boxes[0] == {"xStart": 10.0, "yStart": 0.0, "xEnd": 50.0, "yEnd": 50.0,
                        "className": "predictions/car", "probability": 0.3}
    assert boxes[1] == {"xStart": 8.0, "yStart": 17.0, "xEnd": 12.0, "yEnd": 23.0,
                        "className": "predictions/mystery"}
    assert boxes[2]["className"] == "ground_truth/car" and boxes[2]["xEnd"] == 100
    assert classes == ["predictions/car", "predictions/mystery", "ground_truth/car"]
    with pytest.raises(LabtrackValueError, match="position needs"):
        map_boxes({"p": {"box_data": [{"position": {"x": 1}}]}}, 10, 10)
    with pytest.raises(LabtrackTypeError, match="box_data"):
        map_boxes({"p": [1, 2]}, 10, 10)


def test_image_sources_and_normalisation(tmp_path: Path) -> None:
    import torch
    from PIL import Image as PILImage

    assert wandb.Image(np.full((2, 2), 0.5)).array.tolist() == [[128, 128], [128, 128]]
    neg = wandb.Image(np.array([[-1.0, 1.0]]))
    assert neg.array.tolist() == [[0, 255]]
    assert wandb.Image(np.array([[300, -5]])).array.tolist() == [[255, 0]]
    chw = wandb.Image(torch.zeros(3, 4, 5))
    assert chw.array.shape == (4, 5, 3)
    assert wandb.Image(PILImage.new("RGB", (6, 3))).array.shape == (3, 6, 3)
    with pytest.raises(LabtrackValueError, match="no image file"):
        wandb.Image(tmp_path / "missing.png")
    with pytest.raises(UnsupportedError, match="masks"):
        wandb.Image(np.zeros((2, 2)), masks={"m": {}})
    with pytest.raises(LabtrackTypeError, match="caption must be a str"):
        wandb.Image(np.zeros((2, 2)), caption=3)


def test_table_histogram_html_audio_objects(tmp_path: Path) -> None:
    import pandas as pd

    t = wandb.Table(dataframe=pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}))
    t.add_data(3, "c")
    t.add_column("z", [0.1, 0.2, 0.3])
    assert t.columns == ["x", "y", "z"] and t.get_column("y") == ["a", "b", "c"]
    assert t.labtrack_data() == {"x": [1, 2, 3], "y": ["a", "b", "c"], "z": [0.1, 0.2, 0.3]}
    with pytest.raises(LabtrackValueError, match="a row has 1 values for 3 columns"):
        t.add_data(1)
    assert isinstance(wandb.Table(columns=["img"], data=[[wandb.Image(np.zeros((2, 2)))]]).labtrack_data(),
                      labtrack.Table)
    with pytest.raises(LabtrackValueError, match="2 counts and 2 edges"):
        wandb.Histogram(np_histogram=([1, 2], [0, 1]))
    with pytest.raises(LabtrackValueError, match="needs a sequence"):
        wandb.Histogram()
    (tmp_path / "page.html").write_text("<b>x</b>")
    assert wandb.Html(str(tmp_path / "page.html")).html == "<b>x</b>"
    assert wandb.Html("<i>y</i>").html == "<i>y</i>"
    with pytest.raises(LabtrackValueError, match="sample_rate= is required"):
        wandb.Audio(np.zeros(10))
    import wave

    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.array([0, 16384, -16384], dtype=np.int16)).tobytes())
    a = wandb.Audio(str(tmp_path / "a.wav"), caption="c")
    assert a.sample_rate == 8000 and a.data.tolist() == [0.0, 0.5, -0.5] and a.caption == "c"


# --- what is not supported --------------------------------------------------------------------

@pytest.mark.parametrize("name, hint", [
    ("Artifact", "save"), ("use_artifact", "labtrack.open"), ("log_artifact", "wandb.save"),
    ("alert", "console.log"), ("sweep", "group="), ("agent", "group="), ("plot", "matplotlib"),
    ("Object3D", "wandb.Image"), ("Api", "labtrack.open"),
])
def test_unsupported_names_raise_with_what_to_use(name: str, hint: str) -> None:
    with pytest.raises(UnsupportedError, match=f"wandb.{name} is not supported.*{hint}"):
        getattr(wandb, name)
    assert not hasattr(wandb, name)  # also an AttributeError: hasattr/getattr(default) work


def test_unknown_names_are_attribute_errors_with_guidance(env: dict[str, str]) -> None:
    with pytest.raises(AttributeError, match="docs/integrations.md"):
        wandb.no_such_thing
    run = wandb.init(project="p", _environ=env)
    with pytest.raises(UnsupportedError, match="run.log_artifact is not supported.*save"):
        run.log_artifact("x")
    with pytest.raises(AttributeError, match="no 'nope'"):
        run.nope


def test_importing_the_bridge_keeps_labtrack_light() -> None:
    code = ("import sys, labtrack.wandb; bad = [m for m in ('numpy', 'pandas', 'torch') if m in sys.modules];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


# --- group and job_type across labtrack ------------------------------------------------------

def test_show_prints_group_and_job_type(tmp_path: Path, env: dict[str, str]) -> None:
    from click.testing import CliRunner

    from labtrack.cli import main

    run = wandb.init(project="p", group="sweep-1", job_type="eval", _environ=env)
    wandb.finish()
    out = CliRunner().invoke(main, ["show", run.id, "--root", str(tmp_path / "root")]).output
    assert "group     sweep-1" in out and "job type  eval" in out, out


def test_group_and_job_type_in_run_json_index_cli_and_api(tmp_path: Path, make_run: Any) -> None:
    from click.testing import CliRunner

    from labtrack.cli import main

    root = tmp_path / "root"
    a = make_run(group="sweep-1", job_type="train", name="a")
    b = make_run(group="sweep-2", name="b")
    c = make_run(name="c")
    for r in (a, b, c):
        r.finish()
    meta = json.loads((a.dir / "run.json").read_text())
    assert meta["group"] == "sweep-1" and meta["job_type"] == "train"
    assert "group" not in json.loads((c.dir / "run.json").read_text()), "only written when given"
    with pytest.raises(LabtrackTypeError, match="group must be a str"):
        make_run(group=3)

    bk = labtrack.open(root)
    _, rows = bk.index.query(where='group == "sweep-1"')
    assert [r["name"] for r in rows] == ["a"] and rows[0]["job_type"] == "train"
    _, rows = bk.index.query(sort="group")
    assert [r["group"] for r in rows][:2] == ["sweep-1", "sweep-2"]

    out = CliRunner().invoke(main, ["ls", "--group", "sweep-2", "--root", str(root)], catch_exceptions=False)
    assert out.exit_code == 0 and "GROUP" in out.stdout and "sweep-2" in out.stdout
    assert " b " in out.stdout and " a " not in out.stdout
    out = CliRunner().invoke(main, ["ls", "--group", 'we"ird', "--root", str(root)], catch_exceptions=False)
    assert out.exit_code == 0 and "no runs match" in out.stderr

    import httpx

    from labtrack._server.app import create_app

    app = create_app(root)

    async def get() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as cl:
            return (await cl.get("/api/v1/runs", params={"sort": "group"})).json()

    try:
        page = asyncio.run(get())
    finally:
        app.state.labtrack.close()
    by_name = {r["name"]: r for r in page["runs"]}
    assert by_name["a"]["group"] == "sweep-1" and by_name["a"]["job_type"] == "train"
    assert by_name["c"]["group"] is None


def test_labtrack_init_takes_group_and_job_type(tmp_path: Path) -> None:
    run = labtrack.init(experiment="e", group="g", job_type="eval", root=tmp_path, capture_git=False,
                        capture_console=False)
    run.finish()
    meta = json.loads((run.dir / "run.json").read_text())
    assert (meta["group"], meta["job_type"]) == ("g", "eval")



def test_a_with_block_that_raises_fails_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ZeroDivisionError):
        with wandb.init(project="p", _environ=env) as run:
            wandb.log({"x": 1.0}, commit=False)
            1 / 0
    view = book(tmp_path)[run.id]
    assert view.status == "failed" and view.meta["error"]["type"] == "ZeroDivisionError"
    assert list(view.scalars("x").index) == [0], "what was gathered for the step is still recorded"
    assert wandb.run is None
