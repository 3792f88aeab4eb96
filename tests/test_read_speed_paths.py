"""`RunView.scalars()` reads every series in one pass: the frame must be exactly what reading
each file on its own and joining them on step gives, for every shape of file."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

import labtrack
from labtrack._store import scalars as series_module
from labtrack._store.scalars import join_frames as join_series, read_frame as read_scalar_frame, read_joined as read_joined_values
from labtrack.errors import FormatError

MakeRun = Callable[..., labtrack.Run]
HEADER = "step,value,time\n"


def reference(series: dict[str, Path]) -> pd.DataFrame:
    """The frame one read per file and a pandas join give (the definition of the result)."""
    return join_series({label: read_scalar_frame(path) for label, path in series.items()})


def write(folder: Path, files: dict[str, str]) -> dict[str, Path]:
    out = {}
    for label, text in files.items():
        path = folder / f"{label}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[label] = path
    return out


def lines(points: list[tuple[int, str]]) -> str:
    return "".join(f"{s},{v},1763734503.{s % 1000:03d}\n" for s, v in points)


def assert_read(folder: Path, files: dict[str, str]) -> pd.DataFrame:
    series = write(folder, files)
    got = read_joined_values(series)
    pd.testing.assert_frame_equal(got, reference(series))
    assert got.index.name == "step" and got.index.dtype == "int64"
    assert list(got.columns) == list(files)
    assert all(str(t) == "float64" for t in got.dtypes)
    return got


def test_same_steps_in_every_series_reshape_into_one_frame(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"m{j:02d}": HEADER + lines([(s, repr(s * 0.5 + j)) for s in range(50)]) for j in range(7)}
    files["empty"] = HEADER
    files["torn"] = HEADER + "0,1."

    def no_join(*args: object) -> None:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(series_module, "_last_per_step", no_join)
    got = assert_read(tmp_path / "1", files)
    assert got.shape == (50, 9) and got.loc[49, "m03"] == 49 * 0.5 + 3
    del files["empty"], files["torn"]
    got = assert_read(tmp_path / "2", files)
    got.iloc[0, 0] = 99.0  # the frame owns its values
    assert got.iloc[0, 0] == 99.0 and read_joined_values(write(tmp_path / "2", files)).iloc[0, 0] == 0.0


def test_special_values_and_both_number_spellings_read_back_faithfully(tmp_path: Path) -> None:
    vals = ["nan", "inf", "-inf", "2", "2.0", "1e-05", "0.00001", "-0", "1e+16", "0.1"]
    files = {"a": HEADER + lines(list(enumerate(vals))), "b": HEADER + lines(list(enumerate(reversed(vals))))}
    got = assert_read(tmp_path, files)
    a = got["a"].tolist()
    assert math.isnan(a[0]) and a[1:4] == [math.inf, -math.inf, 2.0] and a[5] == 1e-05
    assert math.copysign(1.0, a[7]) == -1.0
    assert math.isnan(got["b"].iloc[-1])


def test_torn_last_lines_are_left_out_wherever_the_file_comes(tmp_path: Path) -> None:
    files = {"a": HEADER + lines([(0, "1.0"), (1, "2.0")]) + "2,3.",
             "b": HEADER + lines([(0, "4.0"), (1, "5.0")]) + "2,6.0,17637",
             "c": HEADER + lines([(0, "7.0"), (1, "8.0")]) + "2"}
    got = assert_read(tmp_path, files)
    assert list(got.index) == [0, 1] and got["c"].tolist() == [7.0, 8.0]


def test_different_steps_are_outer_joined_and_a_repeated_step_keeps_its_last_value(tmp_path: Path) -> None:
    assert_read(tmp_path / "1", {
        "train": HEADER + lines([(s, str(s)) for s in range(10)]),
        "eval": HEADER + lines([(s, str(-s)) for s in range(0, 10, 3)]),
        "late": HEADER + lines([(s, "1.5") for s in range(8, 14)]),
    })
    got = assert_read(tmp_path / "2", {  # a resumed run logs old steps again
        "a": HEADER + lines([(0, "1"), (1, "2"), (2, "3"), (1, "20"), (2, "30"), (3, "40")]),
        "b": HEADER + lines([(3, "1"), (1, "2"), (2, "3")]),
    })
    assert got["a"].tolist() == [1.0, 20.0, 30.0, 40.0]


def test_equal_but_not_increasing_steps_take_the_general_path(tmp_path: Path) -> None:
    same = lines([(0, "1"), (1, "2"), (1, "3"), (0, "4")])
    assert_read(tmp_path, {"a": HEADER + same, "b": HEADER + same})


def test_rows_that_repeat_the_steps_of_other_files_are_not_taken_for_them(tmp_path: Path) -> None:
    # Concatenated, both cases read 0,1,0,1 (two files of the same two steps), but they are not.
    assert_read(tmp_path / "1", {"a": HEADER + lines([(0, "1"), (1, "2"), (0, "3")]),
                                 "b": HEADER + lines([(1, "4")])})
    assert_read(tmp_path / "2", {"a": HEADER + lines([(0, "1")]),
                                 "b": HEADER + lines([(1, "2"), (0, "3"), (1, "4")])})
    assert_read(tmp_path / "3", {"a": HEADER + lines([(5, "1")]), "b": HEADER + lines([(5, "2")]),
                                 "c": HEADER + lines([(5, "3")])})


def test_empty_and_half_written_files_are_empty_columns(tmp_path: Path) -> None:
    rows = lines([(s, "0.25") for s in range(5)])
    got = assert_read(tmp_path / "1", {"a": HEADER + rows, "new": HEADER, "none": "", "half": "step,val",
                                       "b": HEADER + rows, "torn": HEADER + "0,1."})
    assert got["new"].isna().all() and got["a"].notna().all()
    assert_read(tmp_path / "2", {"new": HEADER, "none": ""})
    assert_read(tmp_path / "3", {"a": HEADER + rows, "crlf": "step,value,time\r\n0,1.0,2.0\r\n"})
    assert read_joined_values({}).shape == (0, 0)


def test_a_blank_line_or_an_odd_header_still_reads_as_before(tmp_path: Path) -> None:
    rows = lines([(s, "1") for s in range(3)])
    assert_read(tmp_path / "1", {"a": HEADER + rows + "\n" + lines([(3, "2")]), "b": HEADER + rows})
    assert_read(tmp_path / "2", {"a": "step,value,time,extra\n0,1,2,3\n", "b": HEADER + rows})


def test_a_file_that_is_not_a_series_or_has_a_bad_line_names_itself(tmp_path: Path) -> None:
    rows = lines([(s, "1") for s in range(3)])
    series = write(tmp_path / "1", {"a": HEADER + rows, "bad": "a,b\n1,2\n"})
    with pytest.raises(FormatError, match="bad.csv.*step,value,time"):
        read_joined_values(series)
    series = write(tmp_path / "2", {"a": HEADER + rows, "worse": HEADER + "0,1\n1,x,2\n"})
    with pytest.raises(FormatError, match="worse.csv"):
        read_joined_values(series)


def test_random_series_match_the_per_file_join(tmp_path: Path) -> None:
    rng = random.Random(7)
    for case in range(40):
        files = {}
        for j in range(rng.randint(1, 6)):
            kind = rng.random()
            if kind < 0.4:
                steps = list(range(rng.randint(0, 5)))
            else:
                steps = [rng.randint(0, 6) for _ in range(rng.randint(0, 6))]
            vals = [rng.choice(["nan", "inf", "-inf", "1", "2.0", repr(rng.random())]) for _ in steps]
            text = HEADER + lines(list(zip(steps, vals)))
            if rng.random() < 0.2:
                text += "9,0.5"
            files[f"s{j}"] = text
        assert_read(tmp_path / str(case), files)


def test_run_view_reads_all_series_of_a_logged_run(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(experiment="x")
    for i in range(300):
        row = {f"m{j}": i * 0.1 + j for j in range(5)}
        row["train/loss"] = 1.0 / (i + 1)
        if i % 7 == 0:
            row["eval/acc"] = float("nan") if i == 0 else i / 300
        run.log(row, step=i)
    run.finish()
    view = labtrack.open(tmp_path / "root")[run.id]
    frame = view.scalars()
    expected = join_series({n: view.scalars(n) for n in view.series()})
    pd.testing.assert_frame_equal(frame, expected)
    assert frame.shape == (300, 7) and list(frame.columns) == view.series()
    assert frame["train/loss"].iloc[-1] == 1.0 / 300 and math.isnan(frame.loc[0, "eval/acc"])
    assert frame["eval/acc"].notna().sum() == 300 // 7


def test_spellings_the_fast_parse_refuses_read_as_the_per_file_reader_reads_them(tmp_path: Path) -> None:
    rows = lines([(s, "1") for s in range(3)])
    for i, odd in enumerate(["", "N/A", "NaN", "-nan", "null", "Infinity", '"2.5"', " 3"]):
        assert_read(tmp_path / str(i), {"a": HEADER + rows, "b": HEADER + f"0,{odd},1.0\n1,2.0,1.0\n2,3,1.0\n"})
    assert_read(tmp_path / "q", {"a": HEADER + rows, "b": HEADER + '"0",1.0,2.0\n"1",2,3\n'})


def test_a_few_sparse_series_beside_many_full_ones_join_without_sorting(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The shape of a run that logs a dict per step and samples system metrics now and then.
    import numpy as np

    files = {f"m{j:02d}": HEADER + lines([(s, repr(s * 0.25 - j)) for s in range(40)]) for j in range(6)}
    files["system/cpu"] = HEADER + lines([(0, "100.0")])
    files["eval"] = HEADER + lines([(s, repr(s / 7)) for s in range(0, 40, 9)])
    files["resumed"] = HEADER + lines([(s, "1.0") for s in range(30)] + [(s, "2.0") for s in range(20, 40)])
    series = write(tmp_path / "1", files)
    want = reference(series)

    def no_sort(*args: object, **kwargs: object) -> None:
        raise AssertionError("the steps were sorted")

    monkeypatch.setattr(np, "unique", no_sort)
    got = read_joined_values(series)
    pd.testing.assert_frame_equal(got, want)
    assert got.loc[25, "resumed"] == 2.0 and got.loc[9, "eval"] == 9 / 7 and math.isnan(got.loc[1, "system/cpu"])
    monkeypatch.undo()
    # Steps the longest series does not have, or as many steps but other ones: the full union.
    assert_read(tmp_path / "2", {**files, "late": HEADER + lines([(41, "3.0"), (45, "4.0")])})
    assert_read(tmp_path / "3", {**files, "odd": HEADER + lines([(s, "5.0") for s in range(1, 81, 2)])})
    assert_read(tmp_path / "4", {**files, "neg": HEADER + lines([(-1, "6.0")])})
