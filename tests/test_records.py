"""Records (pure, no disk): scalars, steps, config, images, boxes, histograms, tables, objects."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import fractions
import io
import math
import pathlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from labtrack import _records
from labtrack.errors import LabtrackTypeError, LabtrackValueError


@pytest.mark.parametrize("value,expected", [
    (1.5, 1.5), (3, 3.0), (True, 1.0), (False, 0.0), (np.float64(0.1), 0.1), (np.float32(0.5), 0.5),
    (np.int8(-3), -3.0), (np.uint64(2**63), float(2**63)), (np.bool_(True), 1.0), (np.array(7), 7.0),
    (np.array(np.nan), math.nan), (fractions.Fraction(1, 4), 0.25), (2**1000, float(2**1000)),
])
def test_coerce_scalar_accepts(value: Any, expected: float) -> None:
    got = _records.coerce_scalar("k", value)
    assert type(got) is float
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize("value", ["1", None, [1], (1,), {1: 2}, 1j, np.complex64(1), np.array([1]),
                                   np.array("s"), object(), b"1"])
def test_coerce_scalar_refuses(value: Any) -> None:
    with pytest.raises(LabtrackTypeError) as info:
        _records.coerce_scalar("my/key", value)
    assert "'my/key'" in str(info.value) and "allowed" in str(info.value)


def test_coerce_torch() -> None:
    torch = pytest.importorskip("torch")
    assert _records.coerce_scalar("k", torch.tensor(0.5)) == 0.5
    assert _records.coerce_scalar("k", torch.tensor(2, dtype=torch.int32)) == 2.0
    with pytest.raises(LabtrackTypeError, match=r"shape \(2,\)"):
        _records.coerce_scalar("k", torch.zeros(2))


@pytest.mark.parametrize("step,expected", [(0, 0), (5, 5), (np.int64(4), 4), (2**53 - 1, 2**53 - 1)])
def test_check_step_accepts(step: Any, expected: int) -> None:
    assert _records.check_step(step) == expected and type(_records.check_step(step)) is int


@pytest.mark.parametrize("step", [-1, 1.0, 2.5, "1", None, True, 2**53, 2**64, np.int64(-1)])
def test_check_step_refuses(step: Any) -> None:
    with pytest.raises((LabtrackTypeError, LabtrackValueError), match="step"):
        _records.check_step(step)


def test_numpy_and_torch_fractional_steps_are_refused_not_truncated() -> None:
    # A Python 2.7 is refused; numpy's 2.7 must not silently become step 2.
    for step in (np.float64(2.7), np.float32(1.5)):
        with pytest.raises(LabtrackTypeError, match="step"):
            _records.check_step(step)
    torch = pytest.importorskip("torch")
    with pytest.raises(LabtrackTypeError, match="step"):
        _records.check_step(torch.tensor(2.5))


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)


def test_config_to_dict_from_every_accepted_kind() -> None:
    ns = argparse.Namespace(lr=0.1, tags={"b", "a"}, path=pathlib.Path("/data"), color=Color.RED,
                            arr=np.arange(3), opt=Opt(), nested={"x": (1, 2)}, inf=float("inf"))
    d = _records.config_to_dict(ns)
    assert d == {"lr": 0.1, "tags": ["a", "b"], "path": "/data", "color": "red", "arr": [0, 1, 2],
                 "opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "nested": {"x": [1, 2]}, "inf": float("inf")}
    assert _records.config_to_dict(Opt()) == {"lr": 0.1, "betas": [0.9, 0.99]}
    assert _records.config_to_dict({"a": 1, 2: "b"}) == {"a": 1, "2": "b"}
    assert _records.config_to_dict(None) == {}

    class Obj:
        def __init__(self) -> None:
            self.a = 1
            self._private = 2

    assert _records.config_to_dict(Obj()) == {"a": 1}
    unknown = _records.config_to_dict({"f": len})["f"]
    assert unknown == repr(len)


@pytest.mark.parametrize("config", [3, "lr=0.1", [("a", 1)], Opt])
def test_config_to_dict_refuses(config: Any) -> None:
    with pytest.raises(LabtrackTypeError, match="config"):
        _records.config_to_dict(config)


def test_image_to_array_shapes_and_copies() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)  # CHW
    out = _records.image_to_array("i", rgb)
    assert out.shape == (5, 7, 3) and out.flags.c_contiguous and out.dtype == np.uint8
    hw = np.zeros((4, 4), np.uint8)
    out = _records.image_to_array("i", hw)
    hw[0, 0] = 9
    assert out[0, 0] == 0  # a copy: later changes to the caller's array do not leak in
    assert _records.image_to_array("i", np.array([[True, False]])).tolist() == [[255, 0]]
    assert _records.image_to_array("i", np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]
    pal = Image.new("P", (2, 2))
    assert _records.image_to_array("i", pal).shape == (2, 2, 3)
    la = Image.new("LA", (2, 2))
    assert _records.image_to_array("i", la).shape == (2, 2, 4)


def test_png_and_gif_encoding_round_trip() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    with Image.open(io.BytesIO(_records.encode_png(arr))) as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), arr)
    frames = [np.full((3, 3), v, np.uint8) for v in (0, 100, 200)]
    with Image.open(io.BytesIO(_records.encode_gif(frames, fps=5))) as im:
        assert im.n_frames == 3 and im.info.get("duration") == 200 and im.info.get("loop") == 0


def test_check_boxes_normalises() -> None:
    out = _records.check_boxes("img", [{"xStart": 1.0, "yStart": np.float32(2.5), "xEnd": 3, "yEnd": 4,
                                        "className": None, "probability": np.float64(1.0), "extra": 1}],
                               ("a",), 0, 10, 10)
    assert out == {"boxes": [{"xStart": 1, "yStart": 2.5, "xEnd": 3, "yEnd": 4, "probability": 1.0}],
                   "classes": ["a"], "threshold": 0.0}
    assert _records.check_boxes("img", None, None, None, 1, 1) == {"boxes": []}


def test_histogram_records() -> None:
    h = _records.histogram("h", [1, 2, 2, 3], bins=2)
    assert h == {"bins": [1.0, 2.0, 3.0], "counts": [1, 3], "count": 4, "min": 1.0, "max": 3.0}
    same = _records.histogram("h", [5.0, 5.0], bins=3)
    assert same["counts"] == [0, 2, 0] and same["bins"][0] == 4.5 and same["bins"][-1] == 5.5
    empty = _records.histogram("h", [np.nan, np.inf], bins=4)
    assert empty == {"bins": [0.0, 1.0], "counts": [0], "count": 0, "nonfinite": 2}
    assert sum(_records.histogram("h", np.random.default_rng(0).normal(size=(10, 10)))["counts"]) == 100
    with pytest.raises(LabtrackValueError, match="bins"):
        _records.histogram("h", [1.0], bins=True)  # type: ignore[arg-type]


def test_table_to_csv_kinds() -> None:
    pd = pytest.importorskip("pandas")
    rows = [{"a": 1, "b": "x,y"}, {"a": 0.1, "c": None}]
    text = _records.table_to_csv("t", rows).decode()
    assert text == 'a,b,c\n1,"x,y",\n0.1,,\n'
    assert _records.table_to_csv("t", {"a": [1, 2], "b": ["u", "v"]}).decode() == "a,b\n1,u\n2,v\n"
    df = pd.DataFrame({"a": [1, 2], "b": ["u", "v"]})
    assert _records.table_to_csv("t", df).decode() == "a,b\n1,u\n2,v\n"
    back = pd.read_csv(io.BytesIO(_records.table_to_csv("t", rows)))
    assert back["a"].tolist() == [1.0, 0.1]
    with pytest.raises(LabtrackTypeError, match="every row"):
        _records.table_to_csv("t", [{"a": 1}, [1]])


def test_object_to_bytes() -> None:
    suffix, data = _records.object_to_bytes("o", np.arange(3))
    assert suffix == ".npy" and np.load(io.BytesIO(data)).tolist() == [0, 1, 2]
    suffix, _ = _records.object_to_bytes("o", {"a": 1})
    assert suffix == ".pkl"
    with pytest.raises(LabtrackTypeError, match="pickled"):
        _records.object_to_bytes("o", lambda: 0)


def test_object_arrays_are_saved_or_refused_clearly() -> None:
    try:
        suffix, data = _records.object_to_bytes("o", np.array([{"a": 1}, None], dtype=object))
    except LabtrackTypeError:
        return  # a clear refusal is fine too
    if suffix == ".pkl":  # object arrays are pickled whole
        import pickle

        loaded = pickle.loads(data)
    else:
        loaded = np.load(io.BytesIO(data), allow_pickle=True) if suffix == ".npy" else None
    assert loaded is not None and loaded[0] == {"a": 1} and loaded[1] is None


def test_object_to_bytes_torch() -> None:
    torch = pytest.importorskip("torch")
    suffix, data = _records.object_to_bytes("o", {"w": torch.ones(2)})
    assert suffix == ".pt" and torch.equal(torch.load(io.BytesIO(data))["w"], torch.ones(2))


def test_command_options_skip_help() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--x", default=1)
    opts = _records.command_options(p, p.parse_args([]))
    assert [o["dest"] for o in opts] == ["x"]
    with pytest.raises(LabtrackTypeError, match="ArgumentParser"):
        _records.command_options("parser", {})


# --- lone surrogates are refused, naming the field, and a refused run leaves nothing ----------

SURROGATE = "\ud800"


def test_lone_surrogates_in_run_arguments_are_refused_and_leave_nothing(tmp_path) -> None:
    import labtrack
    from labtrack.errors import LabtrackNameError, LabtrackValueError

    root = tmp_path / "root"
    kw = dict(root=root, capture_git=False, capture_console=False, _environ={})
    for bad, field in ((dict(experiment="e" + SURROGATE), "experiment"), (dict(name=SURROGATE), "name"),
                       (dict(comment=SURROGATE), "comment"), (dict(tags=["t" + SURROGATE]), "tag"),
                       (dict(config={"lr": SURROGATE}), "config"), (dict(config={SURROGATE: 1}), "config")):
        with pytest.raises(LabtrackValueError, match=field):
            labtrack.Run(**{"experiment": "exp", **bad}, **kw)
        assert not root.exists() or not list(root.glob("*/*")), f"{bad} left a run folder"
    run = labtrack.Run("exp", **kw)
    try:
        with pytest.raises(LabtrackNameError, match="surrogate"):
            run.log({"loss" + SURROGATE: 1.0})
        with pytest.raises(LabtrackValueError, match="text of 'q'"):
            run.log_text("q", SURROGATE)
        with pytest.raises(LabtrackValueError, match="expected text of 'q'"):
            run.log_text("q", "ok", expected=SURROGATE)
        with pytest.raises(LabtrackValueError, match="markdown 'm'"):
            run.log_markdown("m", SURROGATE)
        with pytest.raises(LabtrackValueError, match="table 't'"):
            run.log_table("t", [{"a": SURROGATE}])
        with pytest.raises(LabtrackValueError, match="params"):
            run.log_params({"x": SURROGATE})
        run.log({"loss": 1.0})
    finally:
        run.finish()
