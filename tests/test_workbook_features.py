"""Issue 14: what Lab Workbook, ML-Logger and Lavd users did with those tools, done with labtrack.

Each test follows the older tool's documented use (named in the test's docstring).
"""

from __future__ import annotations

import io
import re
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from rich.console import Console

import labtrack
from labtrack._console._display import DISPLAY, use_console
from labtrack.errors import LabtrackTypeError, LabtrackValueError
from tests.conftest import flush, only_run_dir, run_script

MakeRun = Callable[..., labtrack.Run]


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


# --- Lab Workbook -----------------------------------------------------------------------------------

def test_series_log_writes_named_columns_with_a_utc_date_and_reads_back_as_a_frame(
        make_run: MakeRun, tmp_path: Path) -> None:
    """Lab Workbook: `loss_log = run.series_log("Training loss", [...]); loss_log(epoch=..., ...)`,
    then `book[tag]["Training loss.csv"]` is a frame indexed by the first field."""
    run = make_run()
    before = datetime.now(timezone.utc)
    loss_log = run.series_log("Training loss", ["epoch", "loss", "gradientNorm"])
    loss_log(epoch=0.5, loss=0.23, gradientNorm=1.2)
    loss_log(epoch=1, loss=0.2, gradientNorm=0.9)
    loss_log(1.5, 0.19)  # by position; the missing field is an empty cell
    assert run.series_log("Training loss", ["epoch", "loss", "gradientNorm"]) is loss_log
    flush(run)
    path = run.dir / "series" / "Training%20loss.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,loss,gradientNorm,Date"
    assert lines[1].startswith("0.5,0.23,1.2,")
    assert len(lines) == 4 and lines[3].startswith("1.5,0.19,,")

    frame = labtrack.open(run.root)[run.id]["Training loss.csv"]
    assert frame.index.name == "epoch"
    assert list(frame.index) == [0.5, 1.0, 1.5]
    assert list(frame.columns) == ["loss", "gradientNorm", "Date"]
    assert frame.loc[0.5, "loss"] == 0.23
    dates = frame["Date"]
    assert str(dates.dt.tz) == "UTC"
    assert before - timedelta(seconds=1) <= dates.iloc[0].to_pydatetime() <= datetime.now(timezone.utc)


def test_series_log_refuses_bad_fields_and_values(make_run: MakeRun) -> None:
    """Lab Workbook's series have fixed columns: a wrong field or value is a clear error."""
    run = make_run()
    with pytest.raises(LabtrackValueError, match="Date"):
        run.series_log("s", ["epoch", "Date"])
    with pytest.raises(LabtrackValueError, match="twice"):
        run.series_log("s", ["a", "a"])
    with pytest.raises(LabtrackTypeError, match="list of column names"):
        run.series_log("s", "epoch")
    log = run.series_log("s", ["epoch", "loss"])
    with pytest.raises(LabtrackValueError, match="no field 'acc'.*epoch"):
        log(epoch=1, acc=0.5)
    with pytest.raises(LabtrackTypeError, match="numbers, text and None"):
        log(epoch=1, loss=[1, 2])
    with pytest.raises(LabtrackValueError, match="line break"):
        log(epoch=1, loss="a\nb")
    with pytest.raises(LabtrackValueError, match="already has the fields"):
        run.series_log("s", ["epoch"])
    log(epoch=2, loss="ok")
    flush(run)
    assert (run.dir / "series" / "s.csv").read_text().splitlines()[1].startswith("2,ok,")


def test_save_json_goes_to_artifacts_and_the_book_returns_the_dict(make_run: MakeRun) -> None:
    """Lab Workbook: `run.save_json("options", {...})`, then `book[tag]["options.json"]`."""
    run = make_run()
    path = run.save_json("options", {"lr": 0.1, "layers": [64, 32]})
    assert path == run.dir / "artifacts" / "options.json"
    run.finish()
    assert labtrack.open(run.root)[run.id]["options.json"] == {"lr": 0.1, "layers": [64, 32]}
    with pytest.raises(LabtrackTypeError, match="JSON"):
        labtrack.Run("x", root=run.root, capture_git=False, _environ={}).save_json("bad", {"f": object()})


def test_book_slices_select_runs_by_start_time(make_run: MakeRun) -> None:
    """Lab Workbook: `book[:]` is every run; here `book[a:b]` is the runs started in [a, b)."""
    runs = []
    for _ in range(3):
        runs.append(make_run())
        time.sleep(0.02)
    for r in runs:
        r.finish()
    book = labtrack.open(runs[0].root)
    assert [v.id for v in book[:]] == [r.id for r in runs]  # oldest first
    started = [datetime.fromisoformat(book[r.id].started or "") for r in runs]
    middle = book[started[1]:started[2]]
    assert [v.id for v in middle] == [runs[1].id]
    assert [v.id for v in book[started[1].isoformat():]] == [runs[1].id, runs[2].id]
    assert len(book[:"2000-01-01"]) == 0
    with pytest.raises(LabtrackValueError, match="ISO 8601"):
        book["yesterday":]
    with pytest.raises(LabtrackValueError, match="step"):
        book[::2]


def test_meld_labels_columns_by_run_name_and_by_id_where_names_repeat(make_run: MakeRun) -> None:
    """Lab Workbook's `meld` of one column across runs, one column per run."""
    a = make_run(name="lr=0.1")
    b = make_run(name="twin")
    c = make_run(name="twin")
    for i, r in enumerate((a, b, c)):
        r.log({"val/acc": 0.5 + i / 10}, step=0)
        r.finish()
    frame = labtrack.open(a.root).meld([a.id, b.id, c.id], "val/acc")
    assert list(frame.columns) == ["lr=0.1", b.id, c.id]
    assert frame.loc[0, "lr=0.1"] == 0.5


# --- ML-Logger --------------------------------------------------------------------------------------

def test_print_steps_prints_a_box_table_when_the_step_changes(tmp_path: Path) -> None:
    """ML-Logger: per-step values printed as a box table (`logger.flush()` after each step);
    `print_skip` silences keys by glob, `labtrack.Color` styles a cell and logs the number."""
    buf = io.StringIO()
    with use_console(Console(file=buf, width=80, force_terminal=True, color_system="standard")):
        run = labtrack.init("steps", root=tmp_path, capture_git=False, capture_console=False,
                            print_steps=True, print_skip=["debug/*"])
        try:
            run.log({"loss": 0.5, "debug/grad": 3.0}, step=0)
            run.log({"acc": labtrack.Color(0.85, "yellow", fmt="{:.1%}")}, step=0)
            assert "loss" not in _plain(buf.getvalue())  # step 0 is still open
            run.log({"loss": 0.25}, step=1)
            first = _plain(buf.getvalue())
        finally:
            run.finish()
    out = _plain(buf.getvalue())
    assert "┌" in first and "│ step" in first and "0.5000" in first and "85.0%" in first
    assert "debug/grad" not in out
    assert out.count("│ step") == 2 and "0.2500" in out  # the last step printed at finish
    assert "\x1b[33m" in buf.getvalue()  # yellow
    flush_lines = (run.dir / "scalars" / "acc.csv").read_text().splitlines()
    assert flush_lines[1].split(",")[:2] == ["0", "0.85"]  # the plain number is recorded


def test_print_steps_from_the_environment_in_a_real_process(tmp_path: Path) -> None:
    """ML-Logger users turn the table on without editing the script: LABTRACK_PRINT_STEPS=1."""
    code = """
        import labtrack
        run = labtrack.init("envsteps", capture_git=False)
        run.log({"loss": 0.5}, step=0)
        run.log({"loss": 0.4}, step=1)
        run.finish()
    """
    p = run_script(code, cwd=tmp_path, env={"LABTRACK_PRINT_STEPS": "1", "LABTRACK_ROOT": str(tmp_path / "r")})
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("│ step") == 2 and "0.4000" in p.stdout
    p = run_script(code, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "r2")})
    assert p.returncode == 0 and "│ step" not in p.stdout


def test_a_color_value_logs_its_number_without_print_steps(make_run: MakeRun) -> None:
    """A script written for ML-Logger keeps its Color values when the table is off."""
    run = make_run()
    assert type(run) is labtrack.Run  # no table: the class, and its C log, are untouched
    run.log({"acc": labtrack.Color(0.75, "red"), "loss": 1.0}, step=4)
    flush(run)
    assert (run.dir / "scalars" / "acc.csv").read_text().splitlines()[1].startswith("4,0.75,")
    with pytest.raises(LabtrackValueError, match="cannot format"):
        labtrack.Color(1.0, "red", fmt="{:d")
    with pytest.raises(LabtrackTypeError, match="scalar|number|str"):
        run.log({"acc": labtrack.Color("high", "red")})


def test_log_without_init_starts_one_default_run_named_after_the_script(tmp_path: Path) -> None:
    """ML-Logger's zero config: `logger.log(loss=1.0)` with no configure(); here labtrack.log."""
    code = """
        import threading
        import labtrack
        threads = [threading.Thread(target=labtrack.log, args=({"loss": 1.0},)) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        labtrack.log({"loss": 0.5})
        print("current", labtrack.current_run().id)
    """
    root = tmp_path / "runs"
    p = run_script(code, cwd=tmp_path, env={"LABTRACK_ROOT": str(root), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0, p.stderr
    run_dir = only_run_dir(root)  # one run for the eight threads
    assert run_dir.parent.name == "script"  # the experiment is the script's name
    said = [line for line in p.stderr.splitlines() if "no init()" in line]
    assert len(said) == 1 and run_dir.name in said[0]
    assert f"current {run_dir.name}" in p.stdout
    lines = (run_dir / "scalars" / "loss.csv").read_text().splitlines()
    assert len(lines) == 1 + 9
    assert '"status": "finished"' in (run_dir / "run.json").read_text()


# --- Lavd -------------------------------------------------------------------------------------------

def test_log_summary_writes_markdown_shown_with_the_runs_documents(make_run: MakeRun) -> None:
    """Lavd: `logger.log_summary(infos={...}, sections={...})` writes summary.md."""
    run = make_run()
    run.log_summary(infos={"size": {"train": 1000, "validation": 200}, "model": "resnet"},
                    sections={"Notes": "Trained on *half* the data."})
    flush(run)
    text = (run.dir / "markdown" / "summary.md").read_text()
    assert "## size" in text and "- **train**: 1000" in text and "- **validation**: 200" in text
    assert "## model" in text and "resnet" in text
    assert "## Notes\n\nTrained on *half* the data." in text
    assert labtrack.open(run.root)[run.id].markdown("summary") == text
    with pytest.raises(LabtrackTypeError, match="sections"):
        run.log_summary(sections=["Notes"])  # type: ignore[arg-type]


def test_manual_progress_bar_counts_updates(tmp_path: Path) -> None:
    """Lavd: a progress bar moved by hand; labtrack.progress(total=..., name=...) + update(n)."""
    buf = io.StringIO()
    with use_console(Console(file=buf, width=100, force_terminal=True, color_system=None)):
        with labtrack.progress(total=100, name="Manual") as bar:
            bar.update(4)
            bar.update(6)
            shown = _plain(_render())
            assert bar.n == 10
        assert DISPLAY.frames == []
    assert "Manual" in shown and "10/100" in shown
    with pytest.raises(LabtrackValueError, match="whole number"):
        labtrack.progress(total=3).update(-1)
    assert list(labtrack.progress(3)) == [0, 1, 2]  # the iterating form is unchanged


def _render() -> str:
    c = Console(file=io.StringIO(), width=100, color_system=None, force_terminal=False)
    with c.capture() as cap:
        c.print(DISPLAY.render_live())
    return cap.get()


def test_spinner_as_an_object_with_start_and_stop() -> None:
    """Lavd: `spinner = Spinner("Loading"); spinner.start(); ...; spinner.stop()`."""
    buf = io.StringIO()
    with use_console(Console(file=buf, width=80, force_terminal=False, color_system=None)):
        sp = labtrack.spinner("Loading")
        assert sp.start() is sp
        sp.start()  # once
        assert [f.name for f in DISPLAY.frames] == ["Loading"]
        sp.stop()
        sp.stop()
        assert DISPLAY.frames == []
        with labtrack.spinner("Again"):
            pass
    assert buf.getvalue().count("Loading") == 1 and "Again" in buf.getvalue()


def test_save_model_unwraps_dataparallel_and_saves_gradients(make_run: MakeRun) -> None:
    """Lavd: `logger.save_model(model, step=3)` with a DataParallel model; gradients too."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    wrapped = torch.nn.DataParallel(net)  # on CPU it runs the module itself
    wrapped(torch.randn(5, 3)).sum().backward()
    run = make_run()
    path = run.save_model(wrapped, step=3, grads=True)
    assert path == run.dir / "artifacts" / "models" / "3" / "model.pt"
    state = torch.load(path, weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # no "module." prefix
    assert torch.equal(state["0.weight"], net[0].weight)
    grads = torch.load(path.with_name("grads.pt"), weights_only=True)
    assert torch.equal(grads["2.weight"], net[2].weight.grad)
    assert not (run.dir / "artifacts" / "models" / "4").exists()
    run.save_model(net, step=4)
    assert not (run.dir / "artifacts" / "models" / "4" / "grads.pt").exists()
    with pytest.raises(LabtrackTypeError, match="torch.nn.Module"):
        run.save_model({"w": 1})


def test_save_object_unwraps_dataparallel(make_run: MakeRun) -> None:
    """Lavd: `logger.save_obj(model)` of a wrapped model stores the model itself."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 2)
    run = make_run()
    path = run.save_object("net", torch.nn.DataParallel(net))
    loaded = torch.load(path, weights_only=False)
    assert type(loaded) is torch.nn.Linear
    assert torch.equal(loaded.weight, net.weight)


def test_disable_then_enable_drops_the_calls_in_between(make_run: MakeRun, capsys: Any) -> None:
    """Lavd: `logger.disable()` ... `logger.enable()`; the calls while disabled do nothing."""
    run = make_run()
    series = run.series_log("s", ["x"])
    run.log({"loss": 1.0}, step=0)
    series(x=1)
    run.disable()
    assert not run.enabled
    run.log({"loss": 99.0}, step=1)
    run.log_text("note", "dropped")
    series(x=99)
    assert run.save_json("dropped", {}) is None
    run.println("printed anyway")
    run.enable()
    assert run.enabled and type(run) is labtrack.Run
    run.log({"loss": 2.0}, step=2)
    series(x=2)
    run.disable()
    run.finish()  # finish works on a disabled run
    assert run.status == "finished"
    assert [ln.split(",")[0] for ln in (run.dir / "scalars" / "loss.csv").read_text().splitlines()[1:]] == ["0", "2"]
    assert [ln.split(",")[0] for ln in (run.dir / "series" / "s.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert not (run.dir / "text").exists() and not (run.dir / "artifacts" / "dropped.json").exists()
    assert "printed anyway" in capsys.readouterr().out


# --- the bug: finish() and a server never reached ------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed_finish(run: labtrack.Run) -> float:
    for i in range(200):
        run.log({"loss": float(i)}, step=i)
    t0 = time.perf_counter()
    run.finish()
    return time.perf_counter() - t0


def test_finish_returns_promptly_when_the_server_was_never_reached(tmp_path: Path, capsys: Any) -> None:
    """A run with remote= whose server never answers: finish says so in one line and does not
    wait out the sync timeout (10 s); everything is on disk."""
    local = labtrack.Run("plain", root=tmp_path / "a", capture_git=False, capture_console=False, _environ={})
    base = _timed_finish(local)
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    remote = labtrack.Run("remote", root=tmp_path / "b", capture_git=False, capture_console=False,
                          remote=url, _environ={})
    time.sleep(0.3)  # the shipper's first round has failed by now
    waited = _timed_finish(remote)
    sync_timeout = 10.0
    assert waited < sync_timeout / 10, waited  # was the full sync timeout
    assert waited < 20 * base + 0.25, (waited, base)
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "never reached" in line]
    assert len(said) == 1 and url in said[0] and f"labtrack sync {remote.id}" in said[0]
    lines = (remote.dir / "scalars" / "loss.csv").read_text().splitlines()
    assert len(lines) == 201 and lines[-1].startswith("199,199.0,")
    assert remote.status == "finished"


def test_series_log_rows_reach_a_real_server_as_appends(tmp_path: Path) -> None:
    """Lab Workbook's series in one place for the team: a run with remote= replicates
    series/<name>.csv like the other append-only series (byte for byte)."""
    from labtrack._remote.upload import is_append_only
    from tests.test_remote_e2e import Server

    assert is_append_only("series/Training%20loss.csv")
    srv = Server(tmp_path / "server-root", _free_port(), tmp_path / "serve.log")
    srv.start()
    try:
        run = labtrack.Run("team", root=tmp_path / "local", capture_git=False, capture_console=False,
                           remote=srv.url, _environ={})
        log = run.series_log("Training loss", ["epoch", "loss"])
        for i in range(50):
            log(epoch=i / 10, loss=1.0 / (i + 1))
        run.finish()
        local = (run.dir / "series" / "Training%20loss.csv").read_bytes()
        remote = srv.root / "team" / run.id / "series" / "Training%20loss.csv"
        assert remote.read_bytes() == local and local.count(b"\n") == 51
    finally:
        srv.kill()
