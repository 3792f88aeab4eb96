"""The console as a user sees it, through a fixed-width rich Console writing to a buffer,
and what it records into a real run directory."""

from __future__ import annotations

import io
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

import labtrack
from labtrack._console._display import DISPLAY, use_console
from labtrack._store.reader import read_json, read_jsonl
from labtrack._store.scalars import read_columns as read_scalars
from labtrack.errors import LabtrackNameError, LabtrackTypeError, LabtrackValueError


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """A plain (non-terminal) console 100 columns wide; the buffer holds what a user sees."""
    buf = io.StringIO()
    with use_console(Console(file=buf, width=100, force_terminal=False, color_system=None)):
        yield buf
    assert DISPLAY.frames == [], "a block was left on the display stack"
    assert DISPLAY.live is None


@pytest.fixture
def run(tmp_path: Path) -> Iterator[labtrack.Run]:
    r = labtrack.init(experiment="console", root=tmp_path / "runs", capture_git=False,
                      capture_console=False)
    assert isinstance(r, labtrack.Run)
    yield r
    r.finish()


def lines(buf: io.StringIO) -> list[str]:
    # init() prints the run id first (tests/test_lab_features.py checks that line)
    return [line for line in buf.getvalue().splitlines() if not line.startswith("labtrack: run ")]


def scalars(run: labtrack.Run, name: str) -> tuple[list[int], list[float]]:
    run.flush()
    steps, values, _ = read_scalars(run.dir / "scalars" / f"{name}.csv")
    return steps, values


# --- sections ------------------------------------------------------------------------------------

def test_section_prints_done_line_and_records_its_time(out: io.StringIO, run: labtrack.Run) -> None:
    with labtrack.section("Load data"):
        time.sleep(0.03)
    assert re.fullmatch(r"Load data\.\.\. done \d+(\.\d+)?ms", lines(out)[0])
    steps, values = scalars(run, "timings/Load%20data")
    assert len(values) == 1 and 0.03 <= values[0] < 1.0
    run.finish()
    summary = read_json(run.dir / "summary.json")
    assert summary["timings/Load data"]["count"] == 1


def test_nested_sections_print_a_header_then_indented_children(out: io.StringIO,
                                                                  run: labtrack.Run) -> None:
    with labtrack.section("Prepare"):
        with labtrack.section("Download"):
            pass
        with labtrack.section("Unpack"):
            pass
    got = lines(out)
    assert got[0] == "Prepare..."
    assert got[1].startswith("  Download... done ")
    assert got[2].startswith("  Unpack... done ")
    assert got[3].startswith("Prepare... done ")
    assert len(scalars(run, "timings/Prepare/Download")[1]) == 1
    assert len(scalars(run, "timings/Prepare")[1]) == 1


def test_failing_section_says_so_reraises_and_records_nothing(out: io.StringIO,
                                                              run: labtrack.Run) -> None:
    with pytest.raises(ValueError, match="bad batch"):
        with labtrack.section("Train"):
            raise ValueError("bad batch")
    assert lines(out)[0].startswith("Train... failed ")
    with pytest.raises(KeyboardInterrupt):
        with labtrack.section("Save"):
            raise KeyboardInterrupt
    assert lines(out)[1].startswith("Save... interrupted ")
    run.flush()
    assert not (run.dir / "scalars" / "timings").exists()


def test_section_name_is_checked(out: io.StringIO) -> None:
    with pytest.raises(LabtrackNameError, match="section name"):
        labtrack.section("../x")
    with pytest.raises(LabtrackNameError, match="must be a str"):
        labtrack.section(3)  # type: ignore[arg-type]


def test_without_a_run_the_console_prints_and_writes_nothing(out: io.StringIO, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert labtrack.current_run() is None
    with labtrack.section("Alone"):
        pass
    for _ in labtrack.loop(range(3), print_every=1):
        pass
    assert lines(out)[0].startswith("Alone... done")
    assert len(lines(out)) == 4
    assert list(tmp_path.iterdir()) == []


def test_disabled_run_prints_but_writes_nothing(out: io.StringIO, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    r = labtrack.init(experiment="x", root=root, disabled=True)
    try:
        with labtrack.section("Rank 1 work"):
            pass
        for step in labtrack.loop(range(2), print_every=1):
            r.store(loss=1.0)
            r.write(step)
    finally:
        r.finish()
    assert lines(out)[0].startswith("Rank 1 work... done")
    assert not root.exists()


# --- loops ---------------------------------------------------------------------------------------

def test_loop_keeps_a_plain_line_every_print_every_steps(out: io.StringIO, run: labtrack.Run) -> None:
    for _ in labtrack.loop(range(12), print_every=5):
        pass
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    got = lines(out)
    assert [int(line.split(":")[0]) for line in got] == [0, 5, 10, 11]
    assert [re.search(r"(\d+)/12 \[", line).group(1) for line in got] == ["1", "6", "11", "12"]  # type: ignore[union-attr]
    steps, values = scalars(run, "timings/loop")
    assert len(values) == 12 and all(v >= 0 for v in values)


def test_loop_items_unchanged_and_any_iterable(out: io.StringIO) -> None:
    assert list(labtrack.loop(["a", "b", "c"])) == ["a", "b", "c"]
    assert list(labtrack.loop(4)) == [0, 1, 2, 3]
    gen = (i * i for i in range(5))
    assert list(labtrack.loop(gen, total=5, print_every=100)) == [0, 1, 4, 9, 16]
    assert lines(out)[-1].split()[-4] == "5/5"
    # no len and no total: a count without the ETA
    assert list(labtrack.loop(iter(range(3)), print_every=100)) == [0, 1, 2]
    assert re.search(r"  3 \[0:00, ", lines(out)[-1])


def test_loop_string_items_show_the_iteration_number(out: io.StringIO) -> None:
    for _ in labtrack.loop(["x", "y", "z"], print_every=2):
        pass
    assert [line.split(":")[0].strip() for line in lines(out)] == ["0", "2"]


def test_loop_bad_input(out: io.StringIO) -> None:
    with pytest.raises(LabtrackTypeError, match="float 5.5"):
        labtrack.loop(5.5)  # type: ignore[arg-type]
    with pytest.raises(LabtrackValueError, match="total=-1"):
        labtrack.loop(range(3), total=-1)
    with pytest.raises(LabtrackValueError, match="print_every=0"):
        labtrack.loop(range(3), print_every=0)
    with pytest.raises(LabtrackValueError, match=">= 0"):
        labtrack.progress(-2)
    with pytest.raises(LabtrackNameError):
        labtrack.loop(range(2), name="")


def test_break_and_interrupt_leave_a_stopped_line_and_propagate(out: io.StringIO,
                                                               run: labtrack.Run) -> None:
    for i in labtrack.loop(range(100), print_every=1000):
        if i == 3:
            break
    assert lines(out)[-1].endswith("stopped")
    assert "3/100" in lines(out)[-1]
    with pytest.raises(KeyboardInterrupt):
        for i in labtrack.loop(range(100), print_every=1000):
            if i == 5:
                raise KeyboardInterrupt
    assert lines(out)[-1].endswith("stopped") and "5/100" in lines(out)[-1]
    assert DISPLAY.frames == []


def test_sections_inside_a_loop_show_on_its_line_not_as_lines(out: io.StringIO,
                                                               run: labtrack.Run) -> None:
    for step in labtrack.loop(range(4), print_every=2):
        with labtrack.section("sample"):
            time.sleep(0.002)
        with labtrack.section("train"):
            for _ in labtrack.progress(range(3), name="inner"):
                pass
    got = lines(out)
    assert len(got) == 3  # steps 0 and 2, and the final step 3
    assert all(re.search(r"  sample \S+ms  train \S+ms  ", line) for line in got)
    assert "inner" not in out.getvalue()  # inner progress is cleared when done
    assert len(scalars(run, "timings/sample")[1]) == 4
    assert len(scalars(run, "timings/train")[1]) == 4
    assert not (run.dir / "scalars" / "timings" / "inner.csv").exists()


def test_nested_loops_show_the_outer_position(out: io.StringIO, run: labtrack.Run) -> None:
    for _epoch in labtrack.loop(range(2), name="epoch", print_every=100):
        for _ in labtrack.loop(range(3), name="batch", print_every=100):
            pass
    got = [re.sub(r" \[.*", "", line) for line in lines(out)]
    assert got == [
        "epoch 1/2       0:  1/3",   # step 0 is kept, then the inner loop's last step
        "epoch 1/2       2:  3/3",
        "     0:  1/2",              # the outer loop's own line after its first step
        "epoch 2/2       0:  1/3",
        "epoch 2/2       2:  3/3",
        "     1:  2/2",
    ]
    assert len(scalars(run, "timings/batch")[1]) == 6
    assert len(scalars(run, "timings/epoch")[1]) == 2


def test_loop_inside_a_section_records_under_its_path(out: io.StringIO, run: labtrack.Run) -> None:
    with labtrack.section("Validate"):
        for _ in labtrack.loop(range(2), print_every=100):
            pass
    got = lines(out)
    assert got[0] == "Validate..."
    assert got[1].startswith("       0:  1/2")  # indented under the section
    assert got[2].startswith("       1:  2/2")
    assert got[3].startswith("Validate... done")
    assert len(scalars(run, "timings/Validate/loop")[1]) == 2


def test_progress_alone_prints_nothing_without_a_terminal(out: io.StringIO) -> None:
    assert sum(labtrack.progress(range(10), name="eval")) == 45
    assert out.getvalue() == ""


# --- indicators ----------------------------------------------------------------------------------

def test_indicators_mean_window_histogram_and_hidden(out: io.StringIO, run: labtrack.Run) -> None:
    run.indicator("reward", window=2)
    run.indicator("loss", histogram=True)
    run.indicator("fps", print=False)
    for step in labtrack.loop(range(3), print_every=1):
        run.store(loss=[1.0, 3.0])          # many values at once
        run.store(loss=5.0)
        run.store(reward=float(step * 10), fps=100 + step)
        run.write(step)
    # mean of the values of each write
    assert scalars(run, "loss") == ([0, 1, 2], [3.0, 3.0, 3.0])
    # moving average over the last 2 stored values: 0, (0+10)/2, (10+20)/2
    assert scalars(run, "reward") == ([0, 1, 2], [0.0, 5.0, 15.0])
    assert scalars(run, "fps")[1] == [100.0, 101.0, 102.0]
    hist = read_jsonl(run.dir / "histograms" / "loss.jsonl")
    assert [h["step"] for h in hist] == [0, 1, 2]
    assert all(sum(h["counts"]) == 3 for h in hist)
    got = lines(out)
    assert re.search(r"loss +3\.0000  reward +5\.0000  ", got[1])
    assert "fps" not in out.getvalue()


def test_pairs_are_two_column_series(out: io.StringIO, run: labtrack.Run) -> None:
    run.store(roc=(0.1, 0.5))
    run.store(roc=[(0.2, 0.7), (0.3, 0.9)])
    run.write(4)
    assert scalars(run, "roc/x") == ([4, 4, 4], [0.1, 0.2, 0.3])
    assert scalars(run, "roc/y") == ([4, 4, 4], [0.5, 0.7, 0.9])
    with pytest.raises(LabtrackValueError, match="already holds pairs"):
        run.store(roc=1.0)


def test_store_rejects_bad_values_and_keeps_nothing_of_the_call(out: io.StringIO,
                                                                run: labtrack.Run) -> None:
    with pytest.raises(LabtrackTypeError, match=r"'loss'.*str 'high'"):
        run.store(acc=1.0, loss="high")
    with pytest.raises(LabtrackTypeError, match="dict"):
        run.store(loss={"a": 1})
    with pytest.raises(LabtrackNameError):
        run.indicator("a//b")
    with pytest.raises(LabtrackValueError, match="window=0"):
        run.indicator("loss", window=0)
    with pytest.raises(LabtrackTypeError, match="histogram='yes'"):
        run.indicator("loss", histogram="yes")  # type: ignore[arg-type]
    with pytest.raises(LabtrackTypeError, match="step"):
        run.write("3")  # type: ignore[arg-type]
    run.store(acc=0.5)
    run.write(1)
    # the 1.0 of the refused call was not kept
    assert scalars(run, "acc") == ([1], [0.5])


def test_write_without_a_loop_keeps_every_print_every_step(out: io.StringIO, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_PRINT_EVERY", "3")
    r = labtrack.init(experiment="w", root=tmp_path, capture_git=False, capture_console=False)
    assert isinstance(r, labtrack.Run)
    try:
        for step in range(7):
            r.store(loss=step)
            r.write(step)
        # no step given: the run's current step, or one past the previous write
        for _ in range(3):
            r.store(loss=1.0)
            r.write()
    finally:
        r.finish()
    assert [line.split(":")[0].strip() for line in lines(out)] == ["0", "3", "6", "9"]
    steps, _, _ = read_scalars(r.dir / "scalars" / "loss.csv")
    assert steps == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_nan_indicator_is_shown(out: io.StringIO, run: labtrack.Run) -> None:
    run.store(loss=float("nan"))
    run.write(0)
    assert re.search(r"loss +nan", lines(out)[0])


# --- tables --------------------------------------------------------------------------------------

def test_table_box_drawn_with_dashes_for_none(out: io.StringIO) -> None:
    labtrack.table(["Name", "Correct", "Total", "Accuracy"],
                   [["cat", 45, 50, 0.9], ["dog", None, 50, None], {"Name": "emu", "Total": 1234}])
    assert out.getvalue() == (
        "┌──────┬─────────┬───────┬──────────┐\n"
        "│ Name │ Correct │ Total │ Accuracy │\n"
        "├──────┼─────────┼───────┼──────────┤\n"
        "│ cat  │      45 │    50 │   0.9000 │\n"
        "│ dog  │       - │    50 │        - │\n"
        "│ emu  │       - │ 1,234 │        - │\n"
        "└──────┴─────────┴───────┴──────────┘\n"
    )


def test_table_rows_from_numpy(out: io.StringIO) -> None:
    import numpy as np

    labtrack.table(["x", "y"], np.array([[1.5, 2.0], [3.0, 4.25]]))
    assert "│ 1.5000 │ 2.0000 │" in out.getvalue()
    assert "│ 3.0000 │ 4.2500 │" in out.getvalue()


def test_table_bad_input(out: io.StringIO) -> None:
    with pytest.raises(LabtrackValueError, match=r"row 1 has 1 values but there are 2 headers"):
        labtrack.table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(LabtrackTypeError, match="row 0 is a int"):
        labtrack.table(["a"], [5])  # type: ignore[list-item]
    with pytest.raises(LabtrackTypeError, match="headers must be a list of str"):
        labtrack.table("ab", [])
    assert out.getvalue() == ""


def test_log_params_prints_flattened_table(out: io.StringIO, run: labtrack.Run) -> None:
    run.log_params({"lr": 0.001, "opt": {"name": "adam", "betas": [0.9, 0.99]}, "note": None})
    text = out.getvalue()
    assert "│ param     │ value       │" in text
    assert "│ opt.name  │ adam        │" in text
    assert "│ opt.betas │ [0.9, 0.99] │" in text
    assert "│ lr        │ 0.001       │" in text
    assert "│ note      │ -           │" in text


def test_print_step(out: io.StringIO) -> None:
    labtrack.print_step(1200, {"train/loss": 0.1234, "acc": 0.91, "note": "ok"})
    assert out.getvalue() == (
        "┌────────────┬────────┐\n"
        "│ step       │  1,200 │\n"
        "├────────────┼────────┤\n"
        "│ train/loss │ 0.1234 │\n"
        "│ acc        │ 0.9100 │\n"
        "│ note       │     ok │\n"
        "└────────────┴────────┘\n"
    )
    with pytest.raises(LabtrackTypeError, match="step must be an int"):
        labtrack.print_step("1", {})  # type: ignore[arg-type]


def test_spinner_without_terminal_prints_its_text_once(out: io.StringIO) -> None:
    with labtrack.spinner("Loading..."):
        time.sleep(0.05)
    assert out.getvalue() == "Loading...\n"
    with pytest.raises(LabtrackTypeError):
        labtrack.spinner(3)  # type: ignore[arg-type]


# --- a terminal (rich console forced to terminal mode, writing to a buffer) ----------------------

def test_terminal_status_line_redraws_in_place(run: labtrack.Run) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system="standard")
    with use_console(console):
        for step in labtrack.loop(range(5), print_every=2):
            run.store(loss=0.5)
            run.write(step)
            if step == 3:
                print("user message")
            time.sleep(0.15)  # let rich's refresh thread redraw (8 per second)
    assert DISPLAY.live is None
    raw = buf.getvalue()
    assert "\r\x1b[2K" in raw  # redrawn in place
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    finals = [s.rsplit("\r", 1)[-1] for s in plain.split("\n")]
    kept = [s for s in finals if re.match(r" +\d+:", s)]
    assert [int(s.split(":")[0]) for s in kept] == [0, 2, 4]
    assert "user message" in finals  # a print inside the loop gets a line of its own
    # bounded redraws: the line is redrawn by the refresh thread, not per iteration
    assert raw.count("\x1b[2K") < 40


# --- delayed interrupt (a real SIGINT to this process) -------------------------------------------

def test_delayed_interrupt_waits_for_the_block(out: io.StringIO) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with labtrack.delayed_interrupt():
            signal.raise_signal(signal.SIGINT)
            done.append("block finished")
    assert done == ["block finished"]
    assert "Interrupt received" in out.getvalue()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_interrupt_stops_at_once(out: io.StringIO) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with labtrack.delayed_interrupt():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            done.append("should not run")
    assert done == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_delayed_interrupt_hands_over_to_the_outer_block(out: io.StringIO) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with labtrack.delayed_interrupt():
            with labtrack.delayed_interrupt():
                signal.raise_signal(signal.SIGINT)
                steps.append("inner done")
            steps.append("outer done")
    assert steps == ["inner done", "outer done"]
    assert out.getvalue().count("Interrupt received") == 1


def test_no_interrupt_no_effect(out: io.StringIO) -> None:
    with labtrack.delayed_interrupt():
        x = 1
    assert x == 1 and out.getvalue() == ""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_summary_has_timing_totals(out: io.StringIO, run: labtrack.Run) -> None:
    for _ in labtrack.loop(range(3), print_every=100):
        with labtrack.section("step"):
            time.sleep(0.01)
    run.finish()
    summary = read_json(run.dir / "summary.json")
    assert summary["timings/step"]["count"] == 3
    assert summary["timings/step"]["sum"] >= 0.03
    assert summary["timings/loop"]["sum"] >= summary["timings/step"]["sum"]
    json.dumps(summary)


def test_terminal_write_without_a_loop_shows_a_live_line_until_exit(tmp_path: Path) -> None:
    buf = io.StringIO()
    r = labtrack.init(experiment="w", root=tmp_path, capture_git=False, capture_console=False)
    assert isinstance(r, labtrack.Run)
    try:
        with use_console(Console(file=buf, width=80, force_terminal=True, color_system=None)):
            for step in range(1, 4):
                r.store(acc=step / 10)
                r.write(step)
            assert DISPLAY.live is not None  # shown in place between kept lines
            DISPLAY.close()  # what the atexit hook does
            assert DISPLAY.live is None
    finally:
        r.finish()
    raw = buf.getvalue()
    assert "\r\x1b[2K" in raw
    # the last values stay on the screen when the line stops
    tail = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw).rsplit("\r", 1)[-1]
    assert re.search(r"3:  acc +0\.3000", tail)


def test_delayed_interrupt_in_a_thread_is_a_plain_block(out: io.StringIO) -> None:
    import threading

    result: list[object] = []

    def work() -> None:
        try:
            with labtrack.delayed_interrupt():
                result.append("ran")
        except BaseException as e:  # pragma: no cover - would be the failure
            result.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert result == ["ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_user_print_during_the_live_line_gets_its_own_line(run: labtrack.Run) -> None:
    import sys

    buf = io.StringIO()
    before = sys.stdout
    with use_console(Console(file=buf, width=60, force_terminal=True, color_system=None)):
        for step in labtrack.loop(range(2), print_every=100):
            print(f"hello {step}")
            sys.stdout.write("no newline yet")
    assert sys.stdout is before
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    finals = [s.rsplit("\r", 1)[-1].rstrip() for s in plain.split("\n")]
    assert "hello 0" in finals
    assert "no newline yethello 1" in finals  # as a terminal shows two writes without newline
    # a partial line is printed when the live line stops, not lost
    assert "no newline yet" in finals
    assert not any("acc" in s for s in finals)  # nothing left over from another run


def test_loop_lines_follow_the_step_given_to_write(out: io.StringIO, run: labtrack.Run) -> None:
    for i, _batch in enumerate(labtrack.loop(["a", "b", "c", "d", "e"], print_every=20)):
        run.store(loss=1.0)
        run.write(10 * i)  # a global step that is not the loop's item
    assert [int(line.split(":")[0]) for line in lines(out)] == [0, 20, 40]


def test_terminal_progress_alone_draws_a_bar_and_clears_it() -> None:
    buf = io.StringIO()
    with use_console(Console(file=buf, width=100, force_terminal=True, color_system=None)):
        for _ in labtrack.progress(range(3), name="eval"):
            time.sleep(0.15)
    raw = buf.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert re.search(r"eval +━*.* \d/3 \[", plain)
    # cleared when done: the last thing written erases the line it drew
    assert raw.endswith("\x1b[2K")


def test_section_timings_inside_a_loop_are_recorded_at_the_iterations_step(
        out: io.StringIO, run: labtrack.Run) -> None:
    # The usual body: sections first, then the iteration's values at its step.
    for step in labtrack.loop(range(10, 14), print_every=100):
        with labtrack.section("forward"):
            pass
        run.log({"loss": 1.0 / step}, step=step)
    for i in labtrack.loop(range(3), print_every=100):
        with labtrack.section("eval"):
            pass
        run.log({"acc": 0.5}, step=20 + i)
        if i == 1:
            break  # the iteration that breaks out keeps its timing too
    steps, _ = scalars(run, "timings/forward")
    assert steps == [10, 11, 12, 13]
    assert scalars(run, "timings/loop")[0] == [10, 11, 12, 13, 20]  # a broken iteration has no loop time
    assert scalars(run, "timings/eval")[0] == [20, 21]
