"""The C fast path of Run.log (`labtrack._hot`) and the Python path record the same thing.

Every other test runs with the C path where it is built; here the same script runs once with
it and once with LABTRACK_NO_C=1, and the files must agree in everything but the times.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

import labtrack
from labtrack import _run
from labtrack.errors import LabtrackTypeError, RunStateError

from conftest import only_run_dir, run_script, without_banner

MakeRun = Callable[..., labtrack.Run]

SCRIPT = """
    import labtrack
    from labtrack.errors import LabtrackError
    import labtrack._run as r
    print("HOT", r.HOT)
    run = labtrack.init("hot", capture_git=False, capture_console=False)
    run.log({"a": 1.0, "b": 2})                    # a new series each: the Python path
    run.log({"a": 0.1, "b": -3})                   # known series, float and int: the C path
    run.log({"a": float("nan"), "b": float("inf")}, step=10)
    run.log({"a": -0.0, "b": 2 ** 60})             # a big int: handed to Python
    run.log({"a": True, "b": 1e300})               # a bool: handed to Python
    run.log({"a": 5.5}, 7)                         # positional step
    run.log({"a": 5.25, "b": 4}, step=8)           # keyword step: still the C path
    run.log(values={"b": 6.5}, step=20)            # keywords: handed to Python
    for bad in ({"a": 1.0, "b": "x"}, {"a": 1.0, "b": None}, {"a": 2.0, 3: 1.0}):
        try:
            run.log(bad)                           # all or nothing: "a" gets no point
        except LabtrackError as e:
            print("refused", type(e).__name__)
    for bad_step in (-1, 2 ** 53, 1.5, "3"):
        try:
            run.log({"a": 1.0}, step=bad_step)
        except LabtrackError as e:
            print("refused step", type(e).__name__)
    run.log({"a": 9.0})
    run.log({})
    run.log({"c": 1.0, "a": 8.0, "d": 3})          # mixed known and new keys
    run.finish()
    for values in ({"a": 1.0}, {}):
        try:
            run.log(values)
        except LabtrackError as e:
            print("finished", type(e).__name__)
"""


def _series(run_dir: Path) -> dict[str, list[list[str]]]:
    out = {}
    for p in sorted((run_dir / "scalars").glob("*.csv")):
        rows = [line.split(",") for line in p.read_text().splitlines()]
        out[p.name] = [row[:2] for row in rows]  # step, value (times differ)
    return out


@pytest.mark.skipif(not _run.HOT, reason="the C fast path is not built")
def test_the_c_and_python_paths_write_the_same_files(tmp_path: Path) -> None:
    results = []
    for no_c in ("0", "1"):
        root = tmp_path / f"root-{no_c}"
        cwd = tmp_path / f"cwd-{no_c}"
        cwd.mkdir()
        p = run_script(SCRIPT, cwd=cwd, env={"LABTRACK_ROOT": str(root), "LABTRACK_NO_C": no_c})
        assert p.returncode == 0, p.stderr
        run_dir = only_run_dir(root)
        summary = json.loads((run_dir / "summary.json").read_text())
        for s in summary.values():
            s.pop("time", None)
        results.append((without_banner(p.stdout).replace("HOT True", "HOT").replace("HOT False", "HOT"),
                        _series(run_dir), summary))
    assert "HOT" in results[0][0]
    assert results[0] == results[1]
    stdout, series, _ = results[0]
    assert stdout.count("refused Labtrack") == 3
    assert stdout.count("refused step") == 4
    assert stdout.count("finished RunStateError") == 2
    assert series["a.csv"][1:] == [["0", "1.0"], ["1", "0.1"], ["10", "nan"], ["11", "-0.0"], ["12", "1.0"],
                                   ["7", "5.5"], ["8", "5.25"], ["21", "9.0"],
                                   ["23", "8.0"]]
    assert series["b.csv"][4:] == [["11", "1.152921504606847e+18"], ["12", "1e+300"], ["8", "4.0"], ["20", "6.5"]]


def test_the_c_path_is_built_where_a_compiler_is(tmp_path: Path) -> None:
    # `make install` compiles src/labtrack/_hot.c (hatch_build.py); LABTRACK_NO_C=1 opts out.
    if os.environ.get("LABTRACK_NO_C", "").lower() in ("1", "true", "yes", "on"):
        pytest.skip("LABTRACK_NO_C is set")
    assert _run.HOT, ("labtrack._hot is not built: reinstall with a C compiler and the Python "
                      "headers (make install), or set LABTRACK_NO_C=1 to test the Python path")
    assert labtrack.Run.log.__doc__ and "Record scalar values" in labtrack.Run.log.__doc__


def test_a_step_the_c_path_cannot_take_still_gets_a_clear_error(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": 1.0})
    with pytest.raises(LabtrackTypeError, match="dict"):
        run.log([("a", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        run.log()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        run.log({"a": 1.0}, 1, 2)  # type: ignore[call-arg]
    run.finish()
    with pytest.raises(RunStateError):
        run.log({"a": 2.0})


def test_the_c_reader_parses_what_the_writer_writes_and_refuses_the_rest() -> None:
    import random
    from array import array

    import numpy as np

    from labtrack._store.scalars import format_rows_py

    hot = pytest.importorskip("labtrack._hot")
    rng = random.Random(2)
    col = array("d")
    for i in range(30_000):  # enough for the two-thread split
        v = rng.choice([rng.random(), float("nan"), float("inf"), -float("inf"),
                        rng.uniform(-1e300, 1e300), 5e-324, -0.0, float(i)])
        col.fromlist([i % 7000, v, 1763734503.0 + i])
    steps, values = hot.parse_step_value(b"step,value,time\n" + format_rows_py(col))
    s, v = np.frombuffer(steps, dtype=np.int64), np.frombuffer(values, dtype=np.float64)
    want = np.frombuffer(col, dtype=np.float64).reshape(-1, 3)
    assert (s == want[:, 0]).all()
    assert ((v == want[:, 1]) | (np.isnan(v) & np.isnan(want[:, 1]))).all()
    assert (np.signbit(v) == np.signbit(want[:, 1])).all()
    # A torn last line is not a line yet; a negative step (an old resumed file) reads.
    steps, values = hot.parse_step_value(b"step,value,time\n-3,1e5,1.0\n7,2.0,1.5\n8,0.")
    assert list(np.frombuffer(steps, dtype=np.int64)) == [-3, 7]
    for bad in (b"step,value,time\n1,2\n", b"step,value,time\n1,,3\n", b"step,value,time\n\n",
                b"step,value,time\n1,2,3,4\n", b'step,value,time\n"1",2,3\n', b"step,value,time\nx,2,3\n",
                b"step,value,time\n1, 2,3\n", b"step,value,time\n1,2\x00,3\n", b"nope\n1,2,3\n",
                b"step,value,time\n1,2,\n", b"step,value,time\n1234567890123456789,2,3\n"):
        with pytest.raises(ValueError):
            hot.parse_step_value(bad)


def test_the_c_reader_rounds_every_decimal_as_python_does() -> None:
    """The reader computes plain decimals itself (no strtod): every value must be the
    correctly rounded double, bit for bit, including ties and both ends of its range."""
    import random
    import struct

    import numpy as np

    hot = pytest.importorskip("labtrack._hot")
    rng = random.Random(11)
    texts = []
    for _ in range(20_000):  # what the writer writes: repr of any double
        texts.append(repr(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]))
        texts.append(repr(rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)))
    for _ in range(20_000):  # any decimal of up to 19 digits, with or without an exponent
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19)))
        cut = rng.randint(1, len(digits))
        t = digits[:cut] + ("." + digits[cut:] if cut < len(digits) else "")
        if rng.random() < 0.5:
            t += rng.choice("eE") + rng.choice(["", "-", "+"]) + str(rng.randint(0, 40))
        texts.append(("-" if rng.random() < 0.5 else "") + t)
    for _ in range(20_000):  # integers at and next to halfway between two doubles, scaled
        e = rng.randint(54, 63)
        n = min(10**19 - 1, (1 << e) + rng.randint(-3000, 3000) * (1 << (e - 54)) + rng.choice([-1, 0, 0, 1]))
        texts.append(f"{n}e{rng.randint(-27, 27)}")
    texts += ["0", "-0", "0.0", "-0.0", "0e5", "9007199254740993", "9007199254740995", "1e22", "1e23",
              "1e-27", "1e-28", "9999999999999999999", "10000000000000000000", "1.", "5e-324", "1e400",
              "2.2250738585072014e-308", "1.7976931348623157e+308", "0.1", "0.30000000000000004"]
    body = ("step,value,time\n" + "".join(f"{i},{t},1.5\n" for i, t in enumerate(texts))).encode()
    got = np.frombuffer(hot.parse_step_value(body)[1], dtype=np.float64)
    want = np.array([float(t) for t in texts])
    wrong = [texts[i] for i in np.nonzero(got.view(np.uint64) != want.view(np.uint64))[0][:5]]
    assert not wrong, wrong


def test_the_c_reader_splits_long_text_at_a_line_and_names_the_bad_line() -> None:
    import numpy as np

    hot = pytest.importorskip("labtrack._hot")
    n = 60_000  # over 1 MiB: parsed in two halves on two threads
    body = "step,value,time\n" + "".join(f"{i},{i * 0.001!r},1763734503.{i % 1000:03d}\n" for i in range(n))
    assert len(body) > 1 << 20
    steps, values = hot.parse_step_value((body + "60000,0.5").encode())  # and a torn last line
    s, v = np.frombuffer(steps, dtype=np.int64), np.frombuffer(values, dtype=np.float64)
    assert len(s) == n and (s == np.arange(n)).all() and (v == np.arange(n) * 0.001).all()
    lines = body.splitlines(keepends=True)
    for at in (1, n // 4, n // 2, n // 2 + 1, n - 1, n):  # a bad line in either half, or at its edge
        bad = lines[:at] + ["7,oops,1.0\n"] + lines[at:]
        with pytest.raises(ValueError, match=f"line {at} after the header"):
            hot.parse_step_value("".join(bad).encode())
    assert [len(x) for x in hot.parse_step_value(b"step,value,time\n")] == [0, 0]
    assert [len(x) for x in hot.parse_step_value(b"step,value,time\n1,2,3")] == [0, 0]
