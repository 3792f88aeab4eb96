"""Run: values, names, all-or-nothing log calls, media, lifecycle, resume, disabled runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import labtrack
from labtrack._store.reader import read_jsonl, read_run_meta
from labtrack._store.rundir import RunDir
from labtrack.errors import (
    LabtrackError,
    LabtrackNameError,
    LabtrackTypeError,
    LabtrackValueError,
    RunNotFoundError,
    RunStateError,
)

from conftest import flush, only_run_dir, run_script

pytestmark = pytest.mark.timeout(120)

MakeRun = Callable[..., labtrack.Run]


def _csv(run: labtrack.Run, relpath: str) -> pd.DataFrame:
    return pd.read_csv(run.dir / "scalars" / relpath)


def _summary(run: labtrack.Run) -> dict[str, Any]:
    return json.loads((run.dir / "summary.json").read_text(encoding="utf-8"))


# --- values --------------------------------------------------------------------------------------

def test_nan_and_infinities_are_stored_and_read_back_by_pandas(make_run: MakeRun) -> None:
    run = make_run()
    for step, value in enumerate([float("nan"), float("inf"), float("-inf"), 0.1]):
        run.log({"x": value}, step=step)
        flush(run)  # one point per flush (see the next test for one flush)
    df = _csv(run, "x.csv")
    assert list(df.columns) == ["step", "value", "time"]
    assert df["value"].dtype == np.float64
    v = df["value"].tolist()
    assert math.isnan(v[0]) and v[1] == math.inf and v[2] == -math.inf and v[3] == 0.1
    assert df["step"].tolist() == [0, 1, 2, 3]
    s = _summary(run)["x"]
    assert s["last"] == 0.1 and s["count"] == 4 and s["finite"] == 1 and s["step"] == 3
    assert s["min"] == "-Infinity" and s["max"] == "Infinity" and s["mean"] == 0.1


def test_inf_and_minus_inf_in_one_flush(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"ratio": float("inf")}, step=0)
    run.log({"ratio": float("-inf")}, step=1)
    run.log({"ratio": 2.0}, step=2)
    flush(run, timeout=10)
    assert pd.read_csv(run.dir / "scalars" / "ratio.csv")["value"].tolist() == [math.inf, -math.inf, 2.0]
    run.log({"ratio": 3.0}, step=3)  # the writer is still alive afterwards
    run.finish()
    s = _summary(run)["ratio"]
    assert s["count"] == 4 and s["finite"] == 2 and s["sum"] == 5.0


def test_summary_min_max_of_only_infinite_values(make_run: MakeRun) -> None:
    # format.md: min and max ignore NaN only; a series that is only +inf has min +inf.
    run = make_run()
    run.log({"up": float("inf"), "down": float("-inf")})
    flush(run)
    s = _summary(run)
    assert s["up"]["min"] == "Infinity" and s["up"]["max"] == "Infinity"
    assert s["down"]["min"] == "-Infinity" and s["down"]["max"] == "-Infinity"


def test_numpy_scalars_0d_arrays_and_bools(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"f32": np.float32(1.5), "f16": np.float16(0.5), "i64": np.int64(7), "u8": np.uint8(255),
             "zero_d": np.array(2.25), "np_true": np.bool_(True), "py_false": False, "py_true": True,
             "int": 3, "big": 2**60}, step=5)
    flush(run)
    expected = {"f32": 1.5, "f16": 0.5, "i64": 7.0, "u8": 255.0, "zero_d": 2.25, "np_true": 1.0,
                "py_false": 0.0, "py_true": 1.0, "int": 3.0, "big": float(2**60)}
    for name, value in expected.items():
        df = _csv(run, f"{name}.csv")
        assert df["step"].tolist() == [5] and df["value"].tolist() == [value], name
    # booleans are written as the numbers 1 and 0, never True/False
    assert (run.dir / "scalars" / "py_true.csv").read_text().splitlines()[1].split(",")[1] == "1.0"


def test_torch_scalars_and_0d_tensors(make_run: MakeRun) -> None:
    torch = pytest.importorskip("torch")
    run = make_run()
    run.log({"t": torch.tensor(0.25), "ti": torch.tensor(3), "tb": torch.tensor(True),
             "th": torch.tensor(1.5, dtype=torch.float16), "grad": torch.tensor(2.0, requires_grad=True) * 2})
    flush(run)
    assert _csv(run, "t.csv")["value"].tolist() == [0.25]
    assert _csv(run, "ti.csv")["value"].tolist() == [3.0]
    assert _csv(run, "tb.csv")["value"].tolist() == [1.0]
    assert _csv(run, "th.csv")["value"].tolist() == [1.5]
    assert _csv(run, "grad.csv")["value"].tolist() == [4.0]


def _bad_values() -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = [
        ("0.5", "str"), (None, "NoneType"), ([1.0], "list"), ((1.0,), "tuple"),
        (np.array([1.0]), "shape (1,)"), (np.zeros((2, 2)), "shape (2, 2)"), (1 + 2j, "complex"),
        (np.complex128(1j), "complex128"), ({"a": 1}, "dict"), (b"1", "bytes"),
    ]
    return out


@pytest.mark.parametrize("bad,type_text", _bad_values(), ids=lambda x: type(x).__name__ if not isinstance(x, str) else x)
def test_wrong_types_raise_naming_key_type_and_allowed(make_run: MakeRun, bad: Any, type_text: str) -> None:
    run = make_run()
    with pytest.raises(LabtrackTypeError) as info:
        run.log({"train/loss": bad})
    msg = str(info.value)
    assert "'train/loss'" in msg and type_text in msg and "allowed" in msg and "int, float" in msg
    assert isinstance(info.value, TypeError) and isinstance(info.value, LabtrackError)


def test_torch_tensors_with_elements_and_complex_raise(make_run: MakeRun) -> None:
    torch = pytest.importorskip("torch")
    run = make_run()
    with pytest.raises(LabtrackTypeError, match=r"'acc'.*torch tensor of shape \(1,\).*allowed"):
        run.log({"acc": torch.tensor([0.5])})
    with pytest.raises(LabtrackTypeError, match=r"'acc'.*complex"):
        run.log({"acc": torch.tensor(1 + 1j)})


def test_int_too_large_for_float64_is_refused(make_run: MakeRun) -> None:
    run = make_run()
    with pytest.raises(LabtrackValueError, match=r"'huge'.*too large"):
        run.log({"huge": 10**400})
    run.log({"huge": -(10**300)})  # large but representable
    flush(run)
    assert _csv(run, "huge.csv")["value"].tolist() == [float(-(10**300))]


def test_a_failed_log_call_records_nothing(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": 1.0, "b": 1.0}, step=0)
    for bad in ({"a": 2.0, "b": 2.0, "c": "oops"}, {"a": 2.0, "b": "oops"}, {"a": 2.0, "../x": 1.0}):
        with pytest.raises(LabtrackError):
            run.log(bad, step=1)
    run.log({"a": 3.0}, step=2)
    flush(run)
    assert _csv(run, "a.csv")["step"].tolist() == [0, 2]
    assert _csv(run, "b.csv")["step"].tolist() == [0]
    assert not (run.dir / "scalars" / "c.csv").exists()
    assert RunDir(run.dir).names("scalars") == ["a", "b"]
    assert not (run.root / "x.csv").exists() and not (run.dir / "x.csv").exists()


def test_a_failed_call_does_not_move_the_automatic_step(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": 1.0})
    with pytest.raises(LabtrackTypeError):
        run.log({"a": None})
    run.log({"a": 2.0})
    flush(run)
    assert _csv(run, "a.csv")["step"].tolist() == [0, 1]


def test_steps_auto_increment_and_continue_from_an_explicit_step(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": 0.0})
    run.log({"a": 1.0})
    run.log({"a": 2.0}, step=10)
    run.log({"a": 3.0})
    flush(run)
    assert _csv(run, "a.csv")["step"].tolist() == [0, 1, 10, 11]


@pytest.mark.parametrize("step", [-1, 1.5, "3", None.__class__, True])
def test_bad_steps_raise(make_run: MakeRun, step: Any) -> None:
    run = make_run()
    with pytest.raises((LabtrackTypeError, LabtrackValueError), match="step"):
        run.log({"a": 1.0}, step=step)


@pytest.mark.parametrize("values", [[("a", 1.0)], None, 3, "abc", 1.5])
def test_log_takes_a_mapping(make_run: MakeRun, values: Any) -> None:
    run = make_run()
    with pytest.raises(LabtrackTypeError, match=r"dict of name"):
        run.log(values)
    run.log({"a": 1.0})
    flush(run)
    assert _csv(run, "a.csv")["step"].tolist() == [0]  # the refused call moved nothing


# --- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../evil", "a/../../b", "/abs", "a\nb", "tab\there", "nul\x00", "del\x7f",
                                  "a//b", "a/", "", ".", "a/./b", "x" * 251])
def test_bad_names_are_refused_and_nothing_is_written(make_run: MakeRun, name: str, tmp_path: Path) -> None:
    run = make_run()
    with pytest.raises(LabtrackNameError):
        run.log({name: 1.0})
    with pytest.raises(LabtrackNameError):
        run.log_text(name, "hello")
    with pytest.raises(LabtrackNameError):
        run.log_image(name, np.zeros((2, 2), np.uint8))
    with pytest.raises(LabtrackNameError):
        run.log_histogram(name, [1.0, 2.0])
    flush(run)
    assert not (run.dir / "scalars").exists()
    assert not (run.dir / "text").exists() and not (run.dir / "media").exists()
    # nothing escaped the run directory either
    outside = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if run.dir not in (p, *p.parents))
    assert all(str(p) in ("root", "root/exp") for p in outside), outside


def test_unusual_characters_are_escaped_in_file_names_and_verbatim_inside(make_run: MakeRun) -> None:
    run = make_run()
    names = ["val acc/top-1", "é/ü", ".hidden", "a%b", "x:y*z?", "emoji 🙂"]
    run.log({n: float(i) for i, n in enumerate(names)})
    run.log_text("say what?", "hi")
    flush(run)
    sc = run.dir / "scalars"
    assert (sc / "val%20acc" / "top-1.csv").is_file()
    assert (sc / "%C3%A9" / "%C3%BC.csv").is_file()
    assert (sc / "%2Ehidden.csv").is_file()
    assert (sc / "a%25b.csv").is_file()
    assert (sc / "x%3Ay%2Az%3F.csv").is_file()
    assert (run.dir / "text" / "say%20what%3F.jsonl").is_file()
    assert sorted(_summary(run)) == sorted(names)
    assert RunDir(run.dir).names("scalars") == sorted(names)
    # every file name is within the safe set
    for p in run.dir.rglob("*"):
        assert all(c.isascii() and (c.isalnum() or c in "_.-%") for c in p.name), p.name


# --- lifecycle -----------------------------------------------------------------------------------

def test_log_after_finish_raises_and_finish_is_idempotent(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": 1.0})
    run.finish()
    run.finish()
    for call in (lambda: run.log({"a": 2.0}), lambda: run.log_text("t", "x"),
                 lambda: run.log_image("i", np.zeros((2, 2), np.uint8)),
                 lambda: run.log_histogram("h", [1.0]), lambda: run.log_markdown("m", "x")):
        with pytest.raises(RunStateError, match="finished"):
            call()
    meta = read_run_meta(run.dir)
    assert meta["status"] == "finished" and meta["ended"] is not None
    assert _csv(run, "a.csv")["value"].tolist() == [1.0]


def test_finish_writes_summary_and_status(make_run: MakeRun) -> None:
    run = make_run()
    for i in range(10):
        run.log({"loss": 1.0 / (i + 1)})
    run.finish()
    s = _summary(run)["loss"]
    assert s == {**s, "last": 0.1, "min": 0.1, "max": 1.0, "count": 10, "finite": 10, "step": 9}
    assert math.isclose(s["sum"], sum(1.0 / (i + 1) for i in range(10)))
    assert read_run_meta(run.dir)["status"] == "finished"


def test_flush_is_a_barrier(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=3600)
    for i in range(1000):
        run.log({"a": float(i)})
    run.log_text("t", "hello", step=3)
    flush(run)
    assert len(_csv(run, "a.csv")) == 1000
    assert read_jsonl(run.dir / "text" / "t.jsonl")[0]["text"] == "hello"


def _divide(a: float, b: float) -> float:
    return a / b


def test_context_manager_failing_block_marks_failed_with_traceback(make_run: MakeRun) -> None:
    run = make_run()
    with pytest.raises(ZeroDivisionError):
        with run:
            run.log({"a": 1.0})
            _divide(1, 0)
    meta = read_run_meta(run.dir)
    assert meta["status"] == "failed"
    assert meta["error"]["type"] == "ZeroDivisionError"
    assert "in _divide" in meta["error"]["traceback"] and "division by zero" in meta["error"]["message"]
    assert _csv(run, "a.csv")["value"].tolist() == [1.0]


def test_with_init_failing_marks_failed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="bad batch"):
        with labtrack.init("exp", root=root, capture_git=False, capture_console=False) as run:
            labtrack.log({"a": 1.0})
            raise ValueError("bad batch")
    assert labtrack.current_run() is None
    meta = read_run_meta(only_run_dir(root))
    assert meta["status"] == "failed" and meta["error"]["type"] == "ValueError"
    assert run.status == "failed"


def test_module_level_forwards_to_the_default_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = labtrack.init("exp", name="fwd", root=root, capture_git=False, capture_console=False,
                        config={"lr": 0.1, "opt": {"beta": (0.9, 0.99)}})
    try:
        assert labtrack.current_run() is run
        labtrack.log({"a": 1.0}, step=4)
        labtrack.log_text("t", "x")
        labtrack.log_markdown("notes", "# hi")
        labtrack.log_histogram("h", [1, 2, 3])
        labtrack.log_image("img", np.zeros((3, 4), np.uint8))
        labtrack.log_table("tab", [{"a": 1, "b": "x"}])
        labtrack.flush()
        assert pd.read_csv(run.dir / "scalars" / "a.csv")["step"].tolist() == [4]
        assert (run.dir / "markdown" / "notes.md").read_text() == "# hi"
        assert read_jsonl(run.dir / "text" / "t.jsonl")[0]["step"] == 4
        assert json.loads((run.dir / "params.json").read_text()) == {"lr": 0.1, "opt": {"beta": [0.9, 0.99]}}
        assert run.config["opt"] == {"beta": [0.9, 0.99]}
        with pytest.raises(TypeError):
            run.config["lr"] = 1  # type: ignore[index]
    finally:
        labtrack.finish()
    assert labtrack.current_run() is None
    with pytest.raises(RunStateError, match="init"):
        labtrack.log({"a": 1.0})


def test_init_again_finishes_the_previous_default_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = labtrack.init("exp", root=root, capture_git=False, capture_console=False)
    second = labtrack.init("exp", root=root, capture_git=False, capture_console=False)
    try:
        assert read_run_meta(first.dir)["status"] == "finished"
        assert labtrack.current_run() is second
    finally:
        labtrack.finish()


def test_run_json_records_the_arguments(make_run: MakeRun) -> None:
    run = make_run(experiment="my exp/1", name="baseline", comment="stride fix", tags=["cnn", "small"], seed=3)
    run.finish()
    assert run.dir.parent.name == "my-exp-1"
    meta = json.loads((run.dir / "run.json").read_text())
    assert meta["format_version"] == 1 and meta["id"] == run.dir.name == run.id
    assert meta["experiment"] == "my exp/1" and meta["name"] == "baseline"
    assert meta["comment"] == "stride fix" and meta["tags"] == ["cnn", "small"] and meta["seed"] == 3
    assert meta["pid"] == os.getpid() and meta["git"] is None and meta["status"] == "finished"
    assert meta["command"]["cwd"] == os.getcwd()


@pytest.mark.parametrize("kwargs", [{"tags": "cnn"}, {"tags": [1]}, {"experiment": ""}, {"name": 3},
                                    {"seed": -1}, {"seed": "1"}, {"config": 3}])
def test_bad_init_arguments_raise_before_creating_anything(make_run: MakeRun, kwargs: dict[str, Any],
                                                           tmp_path: Path) -> None:
    with pytest.raises(LabtrackError):
        make_run(**kwargs)
    assert not (tmp_path / "root").exists()


def test_seed_seeds_random_and_numpy(make_run: MakeRun) -> None:
    import random

    make_run(seed=123)
    a = (random.random(), np.random.rand())
    make_run(seed=123)
    b = (random.random(), np.random.rand())
    assert a == b


# --- resume --------------------------------------------------------------------------------------

def test_resume_appends_to_the_same_run_and_continues_the_step(make_run: MakeRun) -> None:
    first = make_run(config={"lr": 0.1})
    for i in range(5):
        first.log({"loss": float(i)})
    first.log_text("t", "one")
    first.finish()
    second = make_run(resume=first.id[:17], config={"epochs": 3})
    assert second.dir == first.dir and second.id == first.id
    second.log({"loss": 5.0})
    second.log_text("t", "two")
    second.finish()
    df = pd.read_csv(first.dir / "scalars" / "loss.csv")
    assert df["step"].tolist() == [0, 1, 2, 3, 4, 5]
    assert (first.dir / "scalars" / "loss.csv").read_text().count("step,value,time") == 1
    assert [r["text"] for r in read_jsonl(first.dir / "text" / "t.jsonl")] == ["one", "two"]
    s = _summary(second)["loss"]
    assert s["count"] == 6 and s["max"] == 5.0 and s["min"] == 0.0 and s["step"] == 5
    meta = read_run_meta(first.dir)
    assert meta["status"] == "finished" and len(meta["resumed"]) == 1
    assert json.loads((first.dir / "params.json").read_text()) == {"lr": 0.1, "epochs": 3}
    assert len(list((first.root / "exp").iterdir())) == 1


def test_resume_of_an_unknown_run_raises(make_run: MakeRun) -> None:
    make_run().finish()
    with pytest.raises(RunNotFoundError, match="nope"):
        make_run(resume="nope")


# --- disabled ------------------------------------------------------------------------------------

def test_init_disabled_records_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = labtrack.init("exp", root=root, disabled=True, config={"lr": 0.1})
    try:
        assert isinstance(run, labtrack.DisabledRun)
        run.log({"a": 1.0})
        labtrack.log({"a": 2.0})
        run.log_image("i", np.zeros((2, 2), np.uint8))
        run.log_text("t", "x")
        run.log_histogram("h", [1.0])
        run.save_object("o", {"a": 1})
        flush(run)
        assert run.config["lr"] == 0.1
    finally:
        labtrack.finish()
    assert not root.exists()


def test_labtrack_disabled_env_creates_nothing(tmp_path: Path) -> None:
    code = """
        import labtrack, numpy as np
        run = labtrack.init("exp", config={"lr": 0.1})
        print(type(run).__name__)
        run.log({"a": 1.0}); labtrack.log({"b": 2.0})
        run.log_image("i", np.zeros((2, 2), np.uint8)); run.log_text("t", "x")
        run.println("hello {}", 1)
        run.finish()
    """
    p = run_script(code, cwd=tmp_path, env={"LABTRACK_DISABLED": "1", "LABTRACK_ROOT": str(tmp_path / "root")})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["DisabledRun", "hello 1"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["script.py"]


# --- media ---------------------------------------------------------------------------------------

def _image_kinds() -> list[tuple[str, Any, np.ndarray]]:
    """(id, image as given, expected pixels as PIL reads the PNG back)."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    return [
        ("hw_uint8", grey, grey),
        ("hw1_uint8", grey[:, :, None], grey),
        ("hwc_rgb", rgb, rgb),
        ("hwc_rgba", rgba, rgba),
        ("chw_rgb", np.transpose(rgb, (2, 0, 1)).copy(), rgb),
        ("chw_rgba", np.transpose(rgba, (2, 0, 1)).copy(), rgba),
        ("hw_float", grey / 255.0, grey),
        ("hwc_float32", (rgb / 255.0).astype(np.float32), rgb),
        ("chw_float", np.transpose(rgba / 255.0, (2, 0, 1)), rgba),
        ("pil_L", Image.fromarray(grey), grey),
        ("pil_RGB", Image.fromarray(rgb), rgb),
        ("pil_RGBA", Image.fromarray(rgba), rgba),
    ]


@pytest.mark.parametrize("kind,image,expected", _image_kinds(), ids=[k[0] for k in _image_kinds()])
def test_images_of_every_accepted_kind_round_trip(make_run: MakeRun, kind: str, image: Any,
                                                  expected: np.ndarray) -> None:
    run = make_run()
    run.log_image("samples/x", image, step=2)
    flush(run)
    png = run.dir / "media" / "2" / "samples" / "x.png"
    with Image.open(png) as im:
        assert im.format == "PNG"
        got = np.asarray(im)
    assert got.shape == expected.shape and np.array_equal(got, expected)
    (entry,) = read_jsonl(run.dir / "media.jsonl")
    assert entry["kind"] == "image" and entry["path"] == "media/2/samples/x.png" and entry["name"] == "samples/x"
    assert (entry["width"], entry["height"]) == (5, 6) and "boxes" not in entry


def test_torch_images(make_run: MakeRun) -> None:
    torch = pytest.importorskip("torch")
    run = make_run()
    rgb = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    run.log_image("chw", torch.from_numpy(np.transpose(rgb, (2, 0, 1)).copy()).float() / 255, step=0)
    run.log_image("hw", torch.from_numpy(rgb[:, :, 0].copy()), step=0)
    flush(run)
    with Image.open(run.dir / "media/0/chw.png") as im:
        assert np.array_equal(np.asarray(im), rgb)
    with Image.open(run.dir / "media/0/hw.png") as im:
        assert np.array_equal(np.asarray(im), rgb[:, :, 0])


def test_a_list_of_frames_is_an_animated_gif(make_run: MakeRun) -> None:
    run = make_run()
    frames = [np.full((8, 10, 3), v, np.uint8) for v in (0, 128, 255)]
    run.log_image("anim", frames, step=1, fps=10)
    flush(run)
    (entry,) = read_jsonl(run.dir / "media.jsonl")
    assert entry["kind"] == "animation" and entry["path"] == "media/1/anim.gif"
    with Image.open(run.dir / "media/1/anim.gif") as im:
        assert im.format == "GIF" and im.n_frames == 3 and im.size == (10, 8)
        seen = []
        for i in range(3):
            im.seek(i)
            seen.append(np.asarray(im.convert("RGB"))[0, 0].tolist())
    assert seen == [[0, 0, 0], [128, 128, 128], [255, 255, 255]]


@pytest.mark.parametrize("image,exc,text", [
    (np.zeros((2, 3, 5), np.uint8), LabtrackValueError, "shape"),
    (np.zeros((2,), np.uint8), LabtrackValueError, "shape"),
    (np.zeros((1, 2, 3, 3), np.uint8), LabtrackValueError, "shape"),
    (np.zeros((0, 3), np.uint8), LabtrackValueError, "empty"),
    (np.full((2, 2), 1.5), LabtrackValueError, r"\[0, 1\]"),
    (np.full((2, 2), -0.1), LabtrackValueError, r"\[0, 1\]"),
    (np.array([[0.5, np.nan]]), LabtrackValueError, "NaN"),
    (np.array([[0, 300]], np.int32), LabtrackValueError, r"\[0, 255\]"),
    ("picture.png", LabtrackTypeError, "str"),
    ([[0, 1], [1, 0]], LabtrackTypeError, "list"),
    ([], LabtrackValueError, "no frames"),
    ([np.zeros((2, 2), np.uint8), np.zeros((3, 3), np.uint8)], LabtrackValueError, "differ"),
])
def test_bad_images_raise_and_write_nothing(make_run: MakeRun, image: Any, exc: type, text: str) -> None:
    run = make_run()
    with pytest.raises(exc, match=text) as info:
        run.log_image("bad", image)
    assert "'bad'" in str(info.value)
    flush(run)
    assert not (run.dir / "media").exists() and not (run.dir / "media.jsonl").exists()


def test_boxes_are_stored_beside_the_image(make_run: MakeRun) -> None:
    run = make_run()
    boxes = [{"xStart": 1, "yStart": 2, "xEnd": 5, "yEnd": 6, "className": "bird", "probability": 0.4},
             {"xStart": np.int64(0), "yStart": 0.5, "xEnd": 3, "yEnd": 3}]
    run.log_image("samples/bird", np.zeros((8, 8, 3), np.uint8), step=3, boxes=boxes,
                  classes=["bird", "orange"], threshold=0.2)
    flush(run)
    (entry,) = read_jsonl(run.dir / "media.jsonl")
    assert entry["boxes"] == "media/3/samples/bird.json"
    data = json.loads((run.dir / entry["boxes"]).read_text())
    assert data == {"boxes": [boxes[0], {"xStart": 0, "yStart": 0.5, "xEnd": 3, "yEnd": 3}],
                    "classes": ["bird", "orange"], "threshold": 0.2}


@pytest.mark.parametrize("boxes,classes,threshold,text", [
    ([{"xStart": 1, "yStart": 2, "xEnd": 5}], None, None, "yEnd"),
    ([{"xStart": 5, "yStart": 2, "xEnd": 1, "yEnd": 6}], None, None, "ends before"),
    ([{"xStart": "a", "yStart": 2, "xEnd": 5, "yEnd": 6}], None, None, "xStart"),
    ([{"xStart": float("nan"), "yStart": 2, "xEnd": 5, "yEnd": 6}], None, None, "finite"),
    ([{"xStart": 1, "yStart": 2, "xEnd": 5, "yEnd": 6, "probability": 1.5}], None, None, "probability"),
    ([{"xStart": 1, "yStart": 2, "xEnd": 5, "yEnd": 6, "className": "cat"}], ["bird"], None, "cat"),
    ([{"xStart": 1, "yStart": 2, "xEnd": 5, "yEnd": 6, "className": 3}], None, None, "className"),
    ([(1, 2, 5, 6)], None, None, "dict"),
    ({"xStart": 1}, None, None, "list"),
    ([], ["a", 1], None, "classes"),
    ([], None, 2.0, "threshold"),
])
def test_bad_boxes_raise_and_write_nothing(make_run: MakeRun, boxes: Any, classes: Any, threshold: Any,
                                           text: str) -> None:
    run = make_run()
    with pytest.raises((LabtrackTypeError, LabtrackValueError), match=text):
        run.log_image("img", np.zeros((8, 8), np.uint8), boxes=boxes, classes=classes, threshold=threshold)
    flush(run)
    assert not (run.dir / "media").exists()


def test_text_markdown_histogram_table(make_run: MakeRun) -> None:
    run = make_run()
    run.log_text("translation", "Hallo Welt", step=3, expected="Hello world")
    run.log_text("translation", "zwei\nZeilen", step=4)
    run.log_markdown("notes", "# Result\n\nGood")
    run.log_markdown("notes", "# Result\n\nBetter")
    run.log_markdown("per-step", "step md", step=2)
    run.log_histogram("weights/fc1", np.array([0.0, 1.0, 1.0, np.nan, np.inf]), step=3, bins=2)
    run.log_table("predictions", [{"x": 1, "y": "a,b"}, {"x": 2.5, "z": None}], step=5)
    flush(run)
    recs = read_jsonl(run.dir / "text" / "translation.jsonl")
    assert [(r["step"], r["text"], r.get("expected")) for r in recs] == [
        (3, "Hallo Welt", "Hello world"), (4, "zwei\nZeilen", None)]
    assert (run.dir / "markdown" / "notes.md").read_text() == "# Result\n\nBetter"
    assert (run.dir / "media" / "2" / "per-step.md").read_text() == "step md"
    (h,) = read_jsonl(run.dir / "histograms" / "weights" / "fc1.jsonl")
    assert h["step"] == 3 and h["counts"] == [1, 2] and h["bins"] == [0.0, 0.5, 1.0]
    assert h["count"] == 3 and h["nonfinite"] == 2 and h["min"] == 0.0 and h["max"] == 1.0
    table = pd.read_csv(run.dir / "tables" / "predictions.csv")
    assert list(table.columns) == ["x", "y", "z"] and table["y"].tolist()[0] == "a,b"
    assert (run.dir / "media" / "5" / "predictions.csv").read_bytes() == (run.dir / "tables" / "predictions.csv").read_bytes()
    kinds = sorted(e["kind"] for e in read_jsonl(run.dir / "media.jsonl"))
    assert kinds == ["markdown", "table"]


def test_bad_text_markdown_histogram_table(make_run: MakeRun) -> None:
    run = make_run()
    with pytest.raises(LabtrackTypeError, match="text"):
        run.log_text("t", 3)  # type: ignore[arg-type]
    with pytest.raises(LabtrackTypeError, match="expected"):
        run.log_text("t", "a", expected=b"b")  # type: ignore[arg-type]
    with pytest.raises(LabtrackTypeError, match="markdown"):
        run.log_markdown("m", None)  # type: ignore[arg-type]
    with pytest.raises(LabtrackTypeError, match="not numbers"):
        run.log_histogram("h", ["a", "b"])
    with pytest.raises(LabtrackValueError, match="bins"):
        run.log_histogram("h", [1.0], bins=0)
    with pytest.raises(LabtrackTypeError, match="table"):
        run.log_table("tab", "a,b\n1,2")
    with pytest.raises(LabtrackValueError, match="lengths"):
        run.log_table("tab", {"a": [1, 2], "b": [1]})
    flush(run)
    assert sorted(p.name for p in run.dir.iterdir()) == ["env.json", "heartbeat", "params.json", "run.json"]


def test_figure_is_stored_as_png(make_run: MakeRun) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    run = make_run()
    run.log_figure("confusion", fig, step=3)
    plt.close(fig)
    flush(run)
    with Image.open(run.dir / "media" / "3" / "confusion.png") as im:
        assert im.format == "PNG" and im.size[0] > 50
    assert read_jsonl(run.dir / "media.jsonl")[0]["kind"] == "figure"
    with pytest.raises(LabtrackTypeError, match="matplotlib"):
        run.log_figure("f", np.zeros((2, 2)))


def test_save_artifact_and_object(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run()
    src = tmp_path / "model.onnx"
    src.write_bytes(b"\x00weights")
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    p1 = run.save_artifact(src)
    p2 = run.save_artifact(folder, name="export/all")
    src.write_bytes(b"changed later")
    assert p1.read_bytes() == b"\x00weights"
    assert (p2 / "sub" / "a.txt").read_text() == "a"
    npy = run.save_object("arr", np.arange(3))
    pkl = run.save_object("vocab", {"a": 1})
    assert npy.suffix == ".npy" and np.load(npy).tolist() == [0, 1, 2]
    import pickle

    assert pkl.suffix == ".pkl" and pickle.loads(pkl.read_bytes()) == {"a": 1}
    with pytest.raises(LabtrackValueError, match="does not exist"):
        run.save_artifact(tmp_path / "missing")
    with pytest.raises(LabtrackTypeError, match="pickled"):
        run.save_object("lam", lambda: 1)


def test_log_command_records_options(make_run: MakeRun) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
    parser.add_argument("--layers", type=int, nargs="+", default=[1])
    args = parser.parse_args(["--lr", "0.5", "--layers", "2", "3"])
    run = make_run()
    run.log_command(parser, args)
    flush(run)
    opts = {o["dest"]: o for o in json.loads((run.dir / "options.json").read_text())}
    assert opts["lr"]["value"] == 0.5 and opts["lr"]["default"] == 0.1 and opts["lr"]["options"] == ["--lr"]
    assert opts["layers"]["value"] == [2, 3] and opts["lr"]["help"] == "learning rate"


def test_println_reaches_the_terminal_and_console_log(make_run: MakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run()
    assert capsys.readouterr().out.startswith(f"labtrack: run {run.id}")  # init() names the run
    run.println("epoch {} done, loss {loss:.3f}", 3, loss=0.2)
    run.eprintln("warning: {}", "careful")
    flush(run)
    out, err = capsys.readouterr()
    assert out == "epoch 3 done, loss 0.200\n" and err == "warning: careful\n"
    assert (run.dir / "console.log").read_text() == "epoch 3 done, loss 0.200\nwarning: careful\n"


def test_a_name_too_long_once_escaped_is_refused_at_the_call_site(make_run: MakeRun) -> None:
    # 100 characters pass the 250-character limit, but each 'é' is 6 bytes once escaped
    # (%C3%A9): the file name would exceed the 255 bytes file systems allow.
    run = make_run()
    with pytest.raises(LabtrackNameError, match="long"):
        run.log({"é" * 100: 1.0})
    with pytest.raises(LabtrackNameError, match="long"):
        run.log_text("%" * 100, "x")


def test_a_numpy_float_step_is_refused_not_truncated(make_run: MakeRun) -> None:
    run = make_run()
    with pytest.raises(LabtrackTypeError, match="step"):
        run.log({"a": 1.0}, step=np.float64(2.7))


def test_an_image_changed_after_log_image_is_stored_as_it_was(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=3600)
    arr = np.zeros((4, 4), np.uint8)
    run.log_image("np", arr, step=0)
    arr[:] = 255  # the training loop reuses its buffer before the writer runs
    frames = [np.zeros((2, 2), np.uint8), np.full((2, 2), 100, np.uint8)]
    run.log_image("anim", frames, step=0)
    frames[1][:] = 200
    torch = pytest.importorskip("torch")
    t = torch.zeros(4, 4, dtype=torch.uint8)
    run.log_image("torch", t, step=0)
    t.fill_(255)
    flush(run)
    for name in ("np", "torch"):
        with Image.open(run.dir / "media" / "0" / f"{name}.png") as im:
            assert np.asarray(im).max() == 0, name
    with Image.open(run.dir / "media" / "0" / "anim.gif") as im:
        im.seek(1)
        assert np.asarray(im.convert("L")).max() == 100


@pytest.mark.parametrize("environ", [{"LABTRACK_FLUSH_SECONDS": "soon"}, {"LABTRACK_HEARTBEAT_SECONDS": "x"},
                                     {"LABTRACK_QUEUE_SIZE": "0"}, {"LABTRACK_REMOTE": "not a url"}],
                         ids=["flush", "heartbeat", "queue", "remote"])
def test_a_bad_setting_fails_init_before_anything_is_created(tmp_path: Path, environ: dict[str, str]) -> None:
    import sys
    import threading

    out, err = sys.stdout, sys.stderr
    writers = {t for t in threading.enumerate() if t.name.startswith("labtrack-writer")}
    try:
        with pytest.raises(LabtrackError):
            labtrack.Run("exp", root=tmp_path / "root", capture_git=False, capture_console=True, _environ=environ)
        restored = sys.stdout is out and sys.stderr is err
    finally:
        sys.stdout, sys.stderr = out, err  # keep later tests' output working either way
    assert restored  # console capture not left installed
    assert {t for t in threading.enumerate() if t.name.startswith("labtrack-writer")} == writers
    assert not (tmp_path / "root").exists()  # no orphan "running" run that reads as crashed


def test_module_println_without_a_run_just_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert labtrack.current_run() is None
    labtrack.println("a {} {x}", 1, x=2)
    labtrack.eprintln("e {}", 3)
    labtrack.flush()  # nothing to flush: no error
    labtrack.finish()
    assert capsys.readouterr() == ("a 1 2\n", "e 3\n")


def test_module_forwards_for_files_and_options(tmp_path: Path) -> None:
    import argparse

    src = tmp_path / "weights.bin"
    src.write_bytes(b"w")
    run = labtrack.init("exp", root=tmp_path / "root", capture_git=False, capture_console=False)
    try:
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, default=0.1)
        labtrack.log_command(parser, parser.parse_args([]))
        art = labtrack.save_artifact(src)
        obj = labtrack.save_object("cfg", {"a": 1})
        flush(run)
        assert art.read_bytes() == b"w" and art.parent == run.dir / "artifacts"
        assert obj == run.dir / "artifacts" / "cfg.pkl"
        assert json.loads((run.dir / "options.json").read_text())[0]["dest"] == "lr"
    finally:
        labtrack.finish()


def test_an_empty_log_after_finish_raises_too(make_run: MakeRun) -> None:
    run = make_run()
    run.finish()
    with pytest.raises(RunStateError):
        run.log({})


def test_labtrack_resume_setting_reopens_the_run(make_run: MakeRun) -> None:
    first = make_run()
    first.log({"a": 1.0})
    first.finish()
    again = make_run(_environ={"_LABTRACK_RESUME": first.id})
    assert again.dir == first.dir
    again.log({"a": 2.0})
    again.finish()
    assert _csv(first, "a.csv")["step"].tolist() == [0, 1]


def test_parent_is_recorded(make_run: MakeRun) -> None:
    first = make_run()
    first.finish()
    child = make_run(parent=first.id)
    child.finish()
    assert read_run_meta(child.dir)["parent"] == first.id


def test_the_index_is_touched_at_finish_only_when_asked(make_run: MakeRun, tmp_path: Path) -> None:
    import sqlite3

    plain = make_run()
    plain.log({"a": 1.0})
    plain.finish()
    index = plain.root / ".labtrack" / "index.sqlite"
    assert not index.exists()  # training processes leave the index to readers by default
    noted = make_run(_environ={"LABTRACK_INDEX_ON_FINISH": "1"})
    noted.log({"a": 2.0})
    noted.finish()
    with sqlite3.connect(index) as con:
        rows = [r[0] for r in con.execute("SELECT relpath FROM runs")]
    assert rows == [f"{noted.dir.parent.name}/{noted.dir.name}"]
    listed = labtrack.open(noted.root).runs()  # the reader still finds both, from the files
    assert {r.id for r in listed} == {plain.id, noted.id}


def test_a_folder_artifact_with_the_longest_allowed_name_is_saved_through_the_store(make_run, tmp_path) -> None:
    # The copy goes through the store's folder replace (a short temporary name), so a name
    # that check_name allows fits however long it is; saving it again replaces it whole.
    src = tmp_path / "weights"
    src.mkdir()
    (src / "a.bin").write_bytes(b"1")
    run = make_run()
    name = "w" * 249  # the most check_name allows in one part
    dst = run.save_artifact(src, name=name)
    assert (dst / "a.bin").read_bytes() == b"1"
    (src / "a.bin").unlink()
    (src / "b.bin").write_bytes(b"2")
    dst = run.save_artifact(src, name=name)
    assert sorted(p.name for p in dst.iterdir()) == ["b.bin"]
    assert [p.name for p in dst.parent.iterdir()] == [name]  # no temporary folder left
