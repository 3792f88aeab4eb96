"""labtrack.tensorboard.SummaryWriter: torch.utils.tensorboard's API, recorded as labtrack runs.

The bridge tests run tests/bridges/tb_script.py (a script written for torch.utils.tensorboard)
twice in real interpreters: unchanged, writing TensorBoard event files, and with only its
import changed to labtrack's. What labtrack.open() reads back is compared with the script's
manifest and with what TensorBoard's own event reader reads from the event files.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the SummaryWriter tests use real torch tensors")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

import labtrack  # noqa: E402
from labtrack import errors  # noqa: E402
from labtrack.tensorboard import SummaryWriter  # noqa: E402

from conftest import child_env  # noqa: E402

SCRIPT = Path(__file__).parent / "bridges" / "tb_script.py"
TORCH_IMPORT = "from torch.utils.tensorboard import SummaryWriter"
LABTRACK_IMPORT = "from labtrack.tensorboard import SummaryWriter"


@pytest.fixture(autouse=True)
def _quiet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process writers must not tee pytest's streams or run git on the checkout.
    monkeypatch.setenv("LABTRACK_CAPTURE_CONSOLE", "0")
    monkeypatch.setenv("LABTRACK_CAPTURE_GIT", "0")


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[list[SummaryWriter]]:
    made: list[SummaryWriter] = []
    yield made
    for w in made:
        w.close()


def writer(made: list[SummaryWriter], tmp_path: Path, log_dir: str = "runs/exp1", **kw: Any) -> SummaryWriter:
    w = SummaryWriter(log_dir, root=tmp_path / "lt", **kw)
    made.append(w)
    return w


def view(w: SummaryWriter) -> Any:
    w.flush()
    return labtrack.open(w.run.root)[w.run.id]


def png(item: Any) -> Any:
    return np.asarray(Image.open(item.path))


# --- the bridge: one script, run with TensorBoard and with labtrack -------------------------------

@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("bridge")
    source = SCRIPT.read_text(encoding="utf-8")
    changed = source.replace(TORCH_IMPORT, LABTRACK_IMPORT)
    procs = {}
    for kind, text in (("tb", source), ("lt", changed)):
        d = base / kind
        d.mkdir()
        (d / "train.py").write_text(text, encoding="utf-8")
        env = child_env({"LABTRACK_ROOT": str(d / "labtrack"), "LABTRACK_CAPTURE_GIT": "0"})
        procs[kind] = subprocess.Popen([sys.executable, "train.py", "runs/exp1", "manifest.json"], cwd=d,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for kind, p in procs.items():
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, f"the {kind} run of tb_script.py failed:\n{out}"
    manifests = {k: json.loads((base / k / "manifest.json").read_text()) for k in procs}
    book = labtrack.open(base / "lt" / "labtrack")
    runs = book.runs()
    assert len(runs) == 1, runs
    return {"base": base, "source": source, "changed": changed, "manifest": manifests["lt"],
            "tb_manifest": manifests["tb"], "run": runs[0]}


def accumulator(path: Path) -> Any:
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(path), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.HISTOGRAMS: 0,
                                                       ea.TENSORS: 0})
    acc.Reload()
    return acc


def test_the_script_changes_only_its_import(bridge: dict[str, Any]) -> None:
    before, after = bridge["source"].splitlines(), bridge["changed"].splitlines()
    assert bridge["source"].count(TORCH_IMPORT) == 1
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1
    assert changed[0][1].startswith(LABTRACK_IMPORT)


def test_the_run_is_named_from_log_dir_and_finished(bridge: dict[str, Any]) -> None:
    run = bridge["run"]
    assert (run.experiment, run.name, run.status) == ("runs", "exp1", "finished")
    # labtrack writes nothing into log_dir: the run lives under LABTRACK_ROOT.
    assert not (bridge["base"] / "lt" / "runs").exists()
    assert (bridge["base"] / "tb" / "runs" / "exp1").is_dir()


def test_labtrack_records_every_scalar_with_its_step_and_walltime(bridge: dict[str, Any]) -> None:
    run, m = bridge["run"], bridge["manifest"]
    for tag, points in m["scalars"].items():
        frame = run.scalars(tag)
        assert list(frame.index) == [p[0] for p in points], tag
        assert list(frame["value"]) == [p[1] for p in points], tag  # float64, exactly as logged
        # labtrack keeps times in milliseconds (docs/format.md)
        assert all(abs(t - p[2]) < 0.0006 for t, p in zip(frame["time"], points)), tag
    auto = run.scalars("epoch_seconds")
    assert list(auto.index) == list(range(40))  # no global_step: the tag's own count
    assert list(auto["value"]) == m["auto"]["epoch_seconds"]
    assert all(m["started"] - 0.001 <= t <= m["ended"] + 0.001 for t in auto["time"])


def test_labtrack_records_images_histograms_text_and_hparams(bridge: dict[str, Any]) -> None:
    run, m = bridge["run"], bridge["manifest"]
    images = {i.name: i for i in run.images()}
    for tag, (step, h, w) in m["images"].items():
        item = images[tag]
        assert (item.step, item.height, item.width) == (step, h, w), tag
        assert png(item).shape[:2] == (h, w)
    chw = png(images["input/chw"])
    assert chw[0, 0, 0] == 0 and chw[-1, -1, 2] == 255  # linspace 0..1 scaled to 0..255
    assert images["loss_curve"].kind == "figure" and images["loss_curve"].step == 39
    assert m["figure_closed"]
    for step, n, lo, hi in m["histograms"]["weights"]:
        rec = next(r for r in run.histograms("weights") if r["step"] == step)
        assert (rec["count"], rec["min"], rec["max"]) == (n, lo, hi)
        assert sum(rec["counts"]) == n
    texts = run.texts("status")
    assert [[s, t] for s, t in zip(texts.index, texts["text"])] == m["texts"]["status"]
    assert run.params == m["hparams"]
    step, final = m["metrics"]["hparam/final_loss"]
    frame = run.scalars("hparam/final_loss")
    assert list(frame.index) == [step] and list(frame["value"]) == [final]
    assert run.summary["hparam/final_loss"]["last"] == final


def test_labtrack_points_equal_tensorboards_event_files(bridge: dict[str, Any]) -> None:
    run, m = bridge["run"], bridge["manifest"]
    logdir = bridge["base"] / "tb" / "runs" / "exp1"
    main = accumulator(logdir)
    # The same script, the same seeds: both runs logged the same values.
    assert m["scalars"] == bridge["tb_manifest"]["scalars"]
    compared = 0
    for tag in m["scalars"]:
        if tag.startswith("params/"):  # torch writes add_scalars into a writer per tag
            events = accumulator(logdir / ("params_" + tag.split("/", 1)[1])).Scalars("params")
        else:
            events = main.Scalars(tag)
        frame = run.scalars(tag)
        assert [e.step for e in events] == list(frame.index), tag
        assert [e.value for e in events] == [float(np.float32(v)) for v in frame["value"]], tag
        assert [round(e.wall_time, 3) for e in events] == pytest.approx(list(frame["time"]), abs=1e-6), tag
        compared += len(events)
    assert compared == 40 * 4 + 4
    hp = accumulator(logdir / "hp").Scalars("hparam/final_loss")
    frame = run.scalars("hparam/final_loss")
    assert [(e.step, e.value) for e in hp] == [(int(s), float(np.float32(v))) for s, v in frame["value"].items()]
    # TensorBoard puts every point without a global_step at step 0; labtrack counts them.
    assert {e.step for e in main.Scalars("epoch_seconds")} == {0}
    assert list(run.scalars("epoch_seconds").index) == list(range(40))


def test_images_and_histograms_equal_tensorboards(bridge: dict[str, Any]) -> None:
    run = bridge["run"]
    main = accumulator(bridge["base"] / "tb" / "runs" / "exp1")
    ours = {i.name: i for i in run.images()}
    for tag in ("input/chw", "input/batch", "input/hwc"):
        (event,) = main.Images(tag)
        theirs = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        assert (event.width, event.height, event.step) == (ours[tag].width, ours[tag].height, ours[tag].step)
        assert np.array_equal(theirs, png(ours[tag])), f"{tag}: the pixels differ from TensorBoard's"
    for event in main.Histograms("weights"):
        rec = next(r for r in run.histograms("weights") if r["step"] == event.step)
        h = event.histogram_value
        assert (h.num, h.min, h.max) == (rec["count"], rec["min"], rec["max"])


# --- in-process: the writer and its runs -----------------------------------------------------------

def test_log_dir_names_the_run_and_every_writer_makes_its_own(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    a = writer(writers, tmp_path, "runs/exp1")
    b = writer(writers, tmp_path, "logs/mnist/lr0.1", experiment="mnist-sweep")
    c = writer(writers, tmp_path, "single")
    d = SummaryWriter(comment="_LR0.1", root=tmp_path / "lt")
    writers.append(d)
    assert (a.run.experiment, a.run.name) == ("runs", "exp1")
    assert (b.run.experiment, b.run.name) == ("mnist-sweep", "lr0.1")
    assert (c.run.experiment, c.run.name) == ("tensorboard", "single")
    assert d.get_logdir().startswith("runs" + "/") and d.get_logdir().endswith("_LR0.1")
    assert d.run.experiment == "runs" and d.run.name == Path(d.get_logdir()).name
    assert len({w.run.id for w in writers}) == 4
    assert labtrack.current_run() is None  # no writer is the default run
    assert a.get_logdir() == a.log_dir == a.logdir == "runs/exp1"
    assert not (Path.cwd() / "single").exists()
    a.add_scalar("x", 1.0, 0)
    b.add_scalar("x", 2.0, 0)
    assert list(view(a).scalars("x")["value"]) == [1.0] and list(view(b).scalars("x")["value"]) == [2.0]


def test_add_scalar_takes_tensors_numpy_and_numbers(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    values = [torch.tensor(0.5), torch.tensor([1.5]), torch.tensor([[2]], dtype=torch.int64),
              torch.tensor(3.25, requires_grad=True) * 1, np.float32(4.5), np.array([5.5]), np.int64(6), 7,
              8.25, True, torch.tensor(9.0, dtype=torch.bfloat16)]
    for step, v in enumerate(values):
        w.add_scalar("v", v, step)
    assert list(view(w).scalars("v")["value"]) == [0.5, 1.5, 2.0, 3.25, 4.5, 5.5, 6.0, 7.0, 8.25, 1.0, 9.0]


@pytest.mark.parametrize("bad, error, words", [
    ("0.5", errors.LabtrackTypeError, "str"),
    (None, errors.LabtrackTypeError, "NoneType"),
    (torch.zeros(3), errors.LabtrackTypeError, "shape (3,)"),
    (np.zeros((2, 2)), errors.LabtrackTypeError, "shape (2, 2)"),
    ([1.0], errors.LabtrackTypeError, "list"),
    (torch.tensor(1j), errors.LabtrackTypeError, "complex"),
])
def test_add_scalar_refuses_what_is_not_one_number(tmp_path: Path, writers: list[SummaryWriter], bad: Any,
                                                   error: type, words: str) -> None:
    w = writer(writers, tmp_path)
    with pytest.raises(error, match="'loss'") as info:
        w.add_scalar("loss", bad, 0)
    assert words in str(info.value)


def test_steps_walltime_and_their_errors(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_scalar("a", 1.0)  # no step: 0, then one past the tag's last step
    w.add_scalar("a", 2.0)
    w.add_scalar("b", 3.0)  # another tag counts on its own
    w.add_scalar("a", 4.0, 10)
    w.add_scalar("a", 5.0)
    w.add_scalar("c", 1.0, 3.0, walltime=1_700_000_000.5)  # an integral float step, as torch allows
    w.add_scalar("c", 2.0, torch.tensor(4), walltime=np.float64(1_700_000_001.25))
    w.add_scalar("c", 3.0, np.int64(5), walltime=torch.tensor(1_700_000_002.0, dtype=torch.float64))
    v = view(w)
    assert list(v.scalars("a").index) == [0, 1, 10, 11]
    assert list(v.scalars("b").index) == [0]
    c = v.scalars("c")
    assert list(c.index) == [3, 4, 5] and list(c["time"]) == [1_700_000_000.5, 1_700_000_001.25, 1_700_000_002.0]
    for bad_step, error in ((-1, errors.LabtrackValueError), (1.5, errors.LabtrackValueError),
                            ("3", errors.LabtrackTypeError), (math.nan, errors.LabtrackValueError)):
        with pytest.raises(error, match="global_step"):
            w.add_scalar("d", 1.0, bad_step)
    for bad_time, error in (("now", errors.LabtrackTypeError), (math.inf, errors.LabtrackValueError),
                            (True, errors.LabtrackTypeError)):
        with pytest.raises(error, match="walltime"):
            w.add_scalar("d", 1.0, 0, walltime=bad_time)
    assert "d" not in view(w).series()  # a refused call records nothing


def test_add_scalars_is_one_step_of_main_tag_series(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_scalars("loss", {"train": torch.tensor(0.5), "val": np.float64(0.75)}, 7, walltime=1_700_000_000.0)
    w.add_scalars("loss", {"train": 0.25, "val": 0.5})
    v = view(w)
    assert v.series() == ["loss/train", "loss/val"]
    assert list(v.scalars("loss/val").index) == [7, 8] and list(v.scalars("loss/val")["value"]) == [0.75, 0.5]
    assert v.scalars("loss/train")["time"].iloc[0] == 1_700_000_000.0
    with pytest.raises(errors.LabtrackTypeError, match="dict"):
        w.add_scalars("loss", [0.1, 0.2], 0)
    with pytest.raises(errors.LabtrackTypeError, match="loss/bad"):
        w.add_scalars("loss", {"bad": "x"}, 0)


def test_add_image_layouts_scaling_and_grids(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    chw = torch.zeros(3, 4, 6)
    chw[0] = 1.0
    chw[1, 0, 0] = 0.5
    w.add_image("chw", chw, 0)
    hwc = np.zeros((4, 6, 3), np.uint8)
    hwc[..., 2] = 200
    w.add_image("hwc", hwc, 0, dataformats="HWC")
    wh = np.zeros((6, 4))
    wh[5, 0] = 2.0  # out of range: clipped to 255, as TensorBoard does
    w.add_image("wh", wh, 0, dataformats="WH")
    w.add_image("grey", torch.full((1, 4, 6), 0.25), 0)
    batch = torch.zeros(10, 3, 2, 3)
    for i in range(10):
        batch[i] = i / 10
    w.add_images("batch", batch, 0)
    w.add_images("nhwc", np.zeros((2, 5, 7, 4), np.uint8), 0, dataformats="NHWC")
    items = {i.name: png(i) for i in view(w).images()}
    assert items["chw"].shape == (4, 6, 3) and tuple(items["chw"][0, 0]) == (255, 127, 0)
    assert items["hwc"].shape == (4, 6, 3) and items["hwc"][..., 2].min() == 200
    assert items["wh"].shape == (4, 6) and items["wh"][0, 5] == 255
    assert items["grey"].shape == (4, 6) and items["grey"].max() == 63  # one channel stays grey
    b = items["batch"]
    assert b.shape == (4, 24, 3)  # 8 images in the first row, 2 in the second
    assert b[0, 3 * 7, 0] == int(np.float32(0.7) * 255) and b[2, 3 * 1, 0] == int(np.float32(0.9) * 255)
    assert b[2, 3 * 2:].max() == 0  # the rest of the second row is empty
    assert items["nhwc"].shape == (5, 14, 4)


@pytest.mark.parametrize("image, fmt, words", [
    (torch.zeros(3, 4, 5), "HWC", "5 channels"),
    (torch.zeros(4, 5), "CHW", "2 dimensions"),
    (torch.zeros(3, 4, 5), "CHH", "each once"),
    (torch.zeros(3, 4, 5), "XYZ", "dataformats"),
    (torch.full((3, 4, 5), math.nan), "CHW", "NaN"),
    (torch.zeros(3, 0, 5), "CHW", "empty"),
    ("img.png", "CHW", "str"),
])
def test_add_image_refuses_bad_input(tmp_path: Path, writers: list[SummaryWriter], image: Any, fmt: str,
                                     words: str) -> None:
    w = writer(writers, tmp_path)
    with pytest.raises(errors.LabtrackError, match="'pic'") as info:
        w.add_image("pic", image, 0, dataformats=fmt)
    assert words in str(info.value)


def test_add_image_with_boxes_keeps_boxes_and_labels(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_image_with_boxes("det", torch.rand(3, 20, 30), torch.tensor([[1, 2, 10, 12], [5, 5, 25, 15]]), 3,
                           labels=["cat", "dog"])
    w.add_image_with_boxes("det2", torch.rand(3, 10, 10), np.array([1, 1, 4, 4]), 0, rescale=2)
    items = {i.name: i for i in view(w).images()}
    assert items["det"].boxes["boxes"][1] == {"xStart": 5, "yStart": 5, "xEnd": 25, "yEnd": 15, "className": "dog"}
    assert items["det"].boxes["classes"] == ["cat", "dog"]
    assert (items["det2"].width, items["det2"].height) == (20, 20)
    assert items["det2"].boxes["boxes"] == [{"xStart": 2, "yStart": 2, "xEnd": 8, "yEnd": 8}]
    with pytest.raises(errors.LabtrackValueError, match="N, 4"):
        w.add_image_with_boxes("det", torch.rand(3, 5, 5), torch.zeros(2, 3), 4)


def test_add_figure_one_and_many(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    fig, ax = plt.subplots(figsize=(2, 2), dpi=40)
    ax.plot([0, 1], [1, 0])
    w.add_figure("curve", fig, 2)
    assert not plt.fignum_exists(fig.number)  # close=True, as TensorBoard does
    figs = [plt.figure(figsize=(2, 1), dpi=30) for _ in range(3)]
    w.add_figure("many", figs, 1, close=False)
    assert all(plt.fignum_exists(f.number) for f in figs)
    plt.close("all")
    items = {i.name: i for i in view(w).images()}
    assert items["curve"].kind == "figure" and png(items["curve"]).ndim == 3
    assert items["many"].kind == "image" and png(items["many"]).shape == (30, 3 * 60, 3)
    with pytest.raises(errors.LabtrackTypeError, match="matplotlib"):
        w.add_figure("x", np.zeros((3, 3)), 0)
    with pytest.raises(errors.LabtrackValueError, match="differ in size"):
        w.add_figure("x", [plt.figure(figsize=(1, 1), dpi=20), plt.figure(figsize=(2, 1), dpi=20)])
    plt.close("all")


def test_add_histogram_bins(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    values = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    w.add_histogram("h", values, 0)
    w.add_histogram("h", values.numpy() + 1, 1, bins=10)
    w.add_histogram("h", [1.0, 2.0, 2.0, math.nan], 2, bins="auto", max_bins=2)
    recs = view(w).histograms("h")
    assert [len(r["counts"]) for r in recs] == [64, 10, 2]
    assert recs[0]["count"] == 1000 and recs[0]["min"] == float(values.min()) and recs[0]["max"] == float(values.max())
    assert recs[1]["min"] == pytest.approx(float(values.min()) + 1)
    assert recs[2]["count"] == 3 and recs[2]["nonfinite"] == 1
    with pytest.raises(errors.LabtrackValueError, match="bins evenly"):
        w.add_histogram("h", values, 3, bins=[0, 1, 2])
    with pytest.raises(errors.LabtrackValueError, match="'tensorflow'"):
        w.add_histogram("h", values, 3, bins="nope")


def test_add_text(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_text("notes", "first", 0)
    w.add_text("notes", "**second**")
    texts = view(w).texts("notes")
    assert list(texts.index) == [0, 1] and list(texts["text"]) == ["first", "**second**"]
    with pytest.raises(errors.LabtrackTypeError, match="str"):
        w.add_text("notes", 3, 2)


def test_add_hparams_writes_params_and_metrics(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_scalar("loss", 0.5, 0)
    w.add_hparams({"lr": 0.1, "bs": torch.tensor(32), "opt": "adam", "nesterov": False, "wd": None},
                  {"hparam/accuracy": torch.tensor(0.9), "hparam/loss": 0.25},
                  hparam_domain_discrete={"opt": ["adam", "sgd"]}, run_name="ignored", global_step=5)
    w.add_hparams({"lr": 0.1}, {"hparam/accuracy": 0.95}, global_step=6)  # the same value again: fine
    v = view(w)
    assert v.params == {"lr": 0.1, "bs": 32, "opt": "adam", "nesterov": False, "wd": None}
    assert list(v.scalars("hparam/accuracy")["value"]) == [pytest.approx(0.9), 0.95]
    assert v.summary["hparam/loss"]["last"] == 0.25 and v.summary["hparam/accuracy"]["step"] == 6
    with pytest.raises(errors.RunStateError, match="lr=0.1.*lr=0.2.*one SummaryWriter per configuration"):
        w.add_hparams({"lr": 0.2}, {})
    with pytest.raises(errors.LabtrackTypeError, match="hparam 'f'"):
        w.add_hparams({"f": [1, 2]}, {})
    with pytest.raises(errors.LabtrackValueError, match="hparam_domain_discrete"):
        w.add_hparams({"a": 1}, {}, hparam_domain_discrete={"b": [1]})
    with pytest.raises(errors.LabtrackTypeError, match="two dicts"):
        w.add_hparams([("a", 1)], {})


def test_add_custom_scalars_is_kept_as_markdown(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_custom_scalars({"Losses": {"all": ["Multiline", ["loss/train", "loss/val"]]}})
    w.add_custom_scalars_marginchart(["acc", "acc_lo", "acc_hi"], category="Acc", title="band")
    w.add_custom_scalars_multilinechart(["lr"])
    md = view(w).markdown("tensorboard/custom_scalars")
    assert "## Losses" in md and "`loss/val`" in md and "**band** (Margin)" in md and "**untitled**" in md
    with pytest.raises(errors.LabtrackValueError, match="Margin"):
        w.add_custom_scalars_marginchart(["a", "b"])
    with pytest.raises(errors.LabtrackTypeError, match="dict"):
        w.add_custom_scalars(["Multiline", ["a"]])


UNSUPPORTED = [
    ("add_graph", (torch.nn.Linear(2, 1), torch.zeros(1, 2))),
    ("add_onnx_graph", ("model.onnx",)),
    ("add_embedding", (torch.zeros(4, 3),)),
    ("add_pr_curve", ("pr", np.array([0, 1]), np.array([0.2, 0.8]), 0)),
    ("add_pr_curve_raw", ("pr", 1, 1, 1, 1, 1, 1)),
    ("add_mesh", ("mesh", torch.zeros(1, 3, 3))),
    ("add_histogram_raw", ("h", 0, 1, 2, 1, 1, [1], [2])),
    ("add_tensor", ("t", torch.zeros(2))),
    ("add_event", (None,)),
    ("add_summary", (None,)),
    ("export_scalars_to_json", ("all.json",)),
    ("reopen", ()),
]


@pytest.mark.parametrize("method, args", UNSUPPORTED)
def test_unsupported_methods_raise_by_name(tmp_path: Path, writers: list[SummaryWriter], method: str,
                                           args: tuple[Any, ...]) -> None:
    w = writer(writers, tmp_path)
    with pytest.raises(errors.UnsupportedError, match=rf"SummaryWriter\.{method}\(\) is not supported.*use ") as info:
        getattr(w, method)(*args)
    assert isinstance(info.value, NotImplementedError)


def test_unknown_attributes_raise_attribute_error(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    with pytest.raises(AttributeError, match="add_scalarz"):
        w.add_scalarz("x", 1.0)  # type: ignore[attr-defined]


def test_video_and_audio(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    video = torch.rand(2, 5, 3, 8, 6)
    wave = torch.sin(torch.linspace(0, 100, 1600)).reshape(1, -1) * 1.5
    w.add_video("clip", video, 0, fps=5)
    w.add_audio("sound", wave, 0, sample_rate=16000)
    kinds = {e.get("name"): e for e in view(w).media()}
    assert kinds["clip"]["kind"] == "video" and kinds["clip"]["fps"] == 5
    assert kinds["sound"]["kind"] == "audio" and kinds["sound"]["sample_rate"] == 16000


def test_video_and_audio_conversions() -> None:
    from labtrack import _tb_convert as conv

    frames = conv.video_frames("v", torch.ones(3, 4, 1, 2, 5))
    assert frames.shape == (4, 2, 15, 3) and frames.dtype == np.uint8 and frames.max() == 255
    wave = conv.audio_wave("a", np.array([[0.0, 2.0, -3.0, 0.5]]))
    assert wave.tolist() == [0.0, 1.0, -1.0, 0.5]
    with pytest.raises(errors.LabtrackValueError, match="N, T, C, H, W"):
        conv.video_frames("v", torch.zeros(4, 3, 8, 8))
    with pytest.raises(errors.LabtrackValueError, match="one channel"):
        conv.audio_wave("a", np.zeros((2, 10)))


def test_close_finishes_the_run_and_later_calls_raise(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = writer(writers, tmp_path)
    w.add_scalar("x", 1.0, 0)
    w.flush()
    assert labtrack.open(tmp_path / "lt")[w.run.id].status == "running"
    assert list(labtrack.open(tmp_path / "lt")[w.run.id].scalars("x")["value"]) == [1.0]  # flush() is a barrier
    w.close()
    w.close()  # a second close does nothing
    w.flush()
    assert labtrack.open(tmp_path / "lt")[w.run.id].status == "finished"
    for call in (lambda: w.add_scalar("x", 2.0, 1), lambda: w.add_text("t", "x"),
                 lambda: w.add_image("i", torch.zeros(3, 2, 2)), lambda: w.add_hparams({"a": 1}, {})):
        with pytest.raises(errors.RunStateError, match="closed"):
            call()


def test_context_manager_finishes_or_fails_the_run(tmp_path: Path) -> None:
    with SummaryWriter("runs/ok", root=tmp_path / "lt") as w:
        w.add_scalar("x", 1.0, 0)
    with pytest.raises(KeyError):
        with SummaryWriter("runs/broken", root=tmp_path / "lt") as bad:
            bad.add_scalar("x", 1.0, 0)
            raise KeyError("boom")
    book = labtrack.open(tmp_path / "lt")
    assert book[w.run.id].status == "finished" and book[bad.run.id].status == "failed"
    with pytest.raises(errors.RunStateError):
        w.add_scalar("x", 2.0, 1)


def test_arguments_without_meaning_are_checked_and_write_to_disk_false_records_nothing(tmp_path: Path) -> None:
    w = SummaryWriter("runs/a", "c", 3, 100, 5, ".suffix", root=tmp_path / "lt")
    w.close()
    assert labtrack.open(tmp_path / "lt")[w.run.id].comment == "c"
    for kwargs, error in (({"flush_secs": 0}, errors.LabtrackValueError),
                          ({"max_queue": "10"}, errors.LabtrackValueError),
                          ({"filename_suffix": 1}, errors.LabtrackTypeError),
                          ({"purge_step": -1}, errors.LabtrackValueError),
                          ({"comment": 5}, errors.LabtrackTypeError)):
        with pytest.raises(error):
            SummaryWriter("runs/b", root=tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()  # a refused writer leaves no run behind
    off = SummaryWriter(logdir="runs/off", root=tmp_path / "off", write_to_disk=False)
    off.add_scalar("x", 1.0, 0)
    off.add_image("i", torch.zeros(3, 2, 2), 0)
    off.close()
    assert off.get_logdir() == "runs/off" and not (tmp_path / "off").exists()


# --- the docs ---------------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def tb_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## TensorBoard SummaryWriter")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_the_docs_example_runs_and_records_what_it_says(tmp_path: Path) -> None:
    section = tb_section()
    assert LABTRACK_IMPORT in section  # the one line a user changes
    code = section.split("A complete script:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text("import matplotlib\nmatplotlib.use('Agg')\n" + code)
    p = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                       env=child_env({"LABTRACK_ROOT": str(tmp_path / "labtrack"), "LABTRACK_CAPTURE_GIT": "0"}))
    assert p.returncode == 0, p.stdout + p.stderr
    run = labtrack.open(tmp_path / "labtrack")["runs/exp1"]  # experiment/name, as log_dir spelled it
    assert run.status == "finished" and len(run.scalars("Loss/train")) == 100
    assert {"params/w0", "params/bias", "hparam/final_loss"} <= set(run.series())
    assert {i.name for i in run.images()} == {"input", "batch", "curve"}
    assert len(run.histograms("weights")) == 10 and run.params == {"lr": 0.05, "optimizer": "sgd"}


def test_the_docs_name_every_unsupported_method() -> None:
    section = tb_section()
    missing = [m for m, _ in UNSUPPORTED if f"`{m}`" not in section]
    assert missing == []


def test_tensorboardx_spellings(tmp_path: Path, writers: list[SummaryWriter]) -> None:
    w = SummaryWriter(logdir="runs/tbx", root=tmp_path / "lt")
    writers.append(w)
    w.add_scalar("x", 1.0, 0, display_name="X", summary_description="the x")
    w.add_hparams({"lr": 0.1}, {"hp/acc": 0.5}, "trial-1")  # tensorboardX: (hparams, metrics, name)
    w.add_hparams({"lr": 0.1}, {"hp/acc": 0.6}, name="trial-1", global_step=4)
    v = view(w)
    assert (v.name, v.params) == ("tbx", {"lr": 0.1})
    assert list(v.scalars("hp/acc").index) == [0, 4]
    with pytest.raises(errors.LabtrackValueError, match="log_dir or logdir"):
        SummaryWriter("a/b", logdir="a/c", root=tmp_path / "lt")


def test_a_writer_never_closed_is_finished_at_exit(tmp_path: Path) -> None:
    code = ("from labtrack.tensorboard import SummaryWriter\n"
            "w = SummaryWriter('runs/forgot')\n"
            "for i in range(5):\n"
            "    w.add_scalar('loss', 1.0 / (i + 1), i)\n")
    (tmp_path / "forgot.py").write_text(code)
    p = subprocess.run([sys.executable, "forgot.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=child_env({"LABTRACK_ROOT": str(tmp_path / "labtrack"), "LABTRACK_CAPTURE_GIT": "0"}))
    assert p.returncode == 0, p.stderr
    run = labtrack.open(tmp_path / "labtrack")["runs/forgot"]
    assert run.status == "finished" and list(run.scalars("loss").index) == [0, 1, 2, 3, 4]


def test_names_and_default_log_dir_are_torchs() -> None:
    import datetime
    import os

    from labtrack import _tb_convert as conv

    assert conv.run_names("runs/exp1") == ("runs", "exp1")
    assert conv.run_names("/abs/path/to/run/") == ("to", "run")
    assert conv.run_names("./exp1") == ("tensorboard", "exp1")
    assert conv.run_names("../x/y") == ("x", "y")
    assert conv.run_names(".") == ("tensorboard", None)
    now = datetime.datetime(2026, 5, 4, 22, 14, 54)
    assert conv.default_log_dir("LR_0.1", now, "host") == os.path.join("runs", "May04_22-14-54_hostLR_0.1")
    assert conv.hparam_value("n", np.int64(3)) == 3 and conv.hparam_value("b", np.bool_(False)) is False


def test_a_writer_beside_the_default_run(tmp_path: Path) -> None:
    run = labtrack.init(experiment="main", root=tmp_path / "lt", capture_git=False, capture_console=False)
    try:
        with SummaryWriter("runs/side", root=tmp_path / "lt") as w:
            w.add_scalar("side", 1.0, 0)
            labtrack.log({"main": 2.0}, step=0)
            assert labtrack.current_run() is run and w.run is not run
    finally:
        labtrack.finish()
    book = labtrack.open(tmp_path / "lt")
    assert book["runs/side"].series() == ["side"] and book[run.id].series() == ["main"]
