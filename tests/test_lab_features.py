"""Lab's and ML-Logger's features as their users wrote them (issue 14; docs/older-tools.md).

Each test follows the older tool's documented use: Lab's `start_step`, `save_progress` and
`is_progress` indicators, its results written into the experiment's script, `tools/tb.py -e`
on experiments while they train, ML-Logger's `log_file(__file__)` (sources outside git), the
run id printed at start, and two fixes (checkpoints of plain data without torch, and
`current_step` before any log).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import labtrack
from conftest import child_env, run_script
from labtrack._console._display import use_console
from labtrack.cli import main

REPO = Path(__file__).resolve().parents[1]


def cli(root: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], prog_name="labtrack",
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def meta(run_dir: Path) -> dict[str, object]:
    data = json.loads((run_dir / "run.json").read_text())
    assert isinstance(data, dict)
    return data


# -- 1. Lab's trial record: start_step, save_progress, is_progress indicators, `show` --------------

def test_trial_record_keeps_start_step_and_progress_snapshots_as_lab_did(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = labtrack.init(experiment="mnist", root=root, start_step=100, capture_git=False,
                        capture_console=False)
    assert isinstance(run, labtrack.Run)
    run.indicator("reward", window=2, progress=True)
    run.indicator("noise")  # not a progress indicator: stays out of the snapshots
    for global_step in (100, 101, 102):
        run.store(reward=float(global_step - 100), noise=7.0)
        run.write(global_step)
        snap = run.save_progress({"accuracy": 0.5 + (global_step - 100) / 10, "test_loss": 1.0},
                                 step=global_step)
        assert snap["step"] == global_step
    record = meta(run.dir)
    assert record["start_step"] == 100 and run.start_step == 100
    progress = record["progress"]
    assert isinstance(progress, list) and [p["step"] for p in progress] == [100, 101, 102]
    assert progress[-1]["values"] == {"reward": 1.5, "accuracy": 0.7, "test_loss": 1.0}
    assert all(set(p) == {"step", "time", "values"} for p in progress)
    assert run.progress == progress
    with pytest.raises(labtrack.errors.LabtrackTypeError, match="name -> number"):
        run.save_progress([1.0])  # type: ignore[arg-type]
    run.finish()

    shown = cli(root, "show", run.id).splitlines()
    at = shown.index("progress (3 snapshots)")
    assert shown[at + 1].split()[:4] == ["global_step", "reward", "accuracy", "test_loss"]
    assert shown[at + 4].split()[:4] == ["102", "1.5", "0.7", "1"]
    assert any(line.startswith("start step") and line.endswith("100") for line in shown)

    # A resumed trial starts from the step it resumes at, and keeps its earlier snapshots.
    again = labtrack.init(root=root, resume=run.id, capture_console=False)
    assert isinstance(again, labtrack.Run)
    assert again.start_step == 103  # one past the last step recorded (the indicators' 102)
    again.log({"loss": 1.0}, step=200)
    again.save_progress({"accuracy": 0.9})
    again.finish()
    third = labtrack.init(root=root, resume=run.id, capture_console=False)
    assert isinstance(third, labtrack.Run)
    assert third.start_step == 201 and [p["step"] for p in third.progress] == [100, 101, 102, 200]
    third.finish()


# -- 2. init(annotate=True): the script's results block, rewritten at each snapshot -------------

ANNOTATED = """\
import labtrack

run = labtrack.init(experiment="ppo", comment="longer rollouts", root={root!r}, annotate=True,
                    config={{"lr": 0.5}}, capture_console=False)
run.indicator("reward", window=10, progress=True)
blocks = []
for global_step in range(3):
    run.store(reward=global_step * 2.0)
    run.write(global_step)
    run.save_progress({{"accuracy": global_step / 10}}, step=global_step)
    text = open(__file__).read()
    compile(text, __file__, "exec")  # the script stays valid Python after each rewrite
    blocks.append(text.count('"' * 3 + "labtrack results"))
print("blocks", blocks)
"""


def test_annotate_rewrites_the_scripts_results_block_at_each_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    code = ANNOTATED.format(root=str(root))
    first = run_script(code, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "blocks [1, 1, 1]" in first.stdout  # one block, replaced at each snapshot
    script = tmp_path / "script.py"
    text = script.read_text()
    assert text.startswith(code)  # the code is untouched; the block is appended
    block = text[len(code):]
    lines = block.strip("\n").splitlines()
    assert "longer rollouts" in lines[2] and lines[2].endswith(" UTC  longer rollouts")
    assert "start_step: 0" in lines and "params: lr=0.5" in lines
    header = next(line for line in lines if line.startswith("| global_step"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["global_step", "reward", "accuracy"]
    assert [c.strip() for c in lines[-2].strip("|").split("|")] == ["2", "2", "0.2"]  # mean of window

    # Run it again: still valid, and its own block replaces the first one.
    second = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    with labtrack.open(root) as book:
        newest, oldest = book.runs()[0], book.runs()[-1]
    again = script.read_text()
    assert again.count('"""labtrack results') == 1 and newest.id in again and oldest.id not in again

    # `labtrack annotate` writes the same block after the run, with the summary table too.
    cli(root, "annotate", oldest.id)
    after = script.read_text()
    assert oldest.id in after and "| global_step" in after and "| metric" in after
    compile(after, str(script), "exec")


def test_annotate_is_refused_where_there_is_no_script_to_write(tmp_path: Path) -> None:
    # Under pytest the recorded script is pytest's own (an installed package).
    with pytest.raises(labtrack.errors.LabtrackValueError, match="annotate=True"):
        labtrack.Run(experiment="x", root=tmp_path, annotate=True, capture_git=False,
                     capture_console=False)
    assert not list(tmp_path.glob("*/*/run.json"))


# -- 3. labtrack tb on experiments, following live runs ----------------------------------------

SLOW = """\
import sys, time, labtrack
run = labtrack.init(experiment="ppo", root={root!r}, capture_git=False, capture_console=False,
                    flush_seconds=0.05)
for step in range(40):
    run.log({{"loss": 1.0 / (step + 1)}}, step=step)
    time.sleep(0.05)
run.finish()
"""


def _tb_steps(folder: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_tb_takes_experiment_names_and_keeps_exporting_live_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with labtrack.Run(experiment="ppo_transformed", root=root, capture_git=False,
                      capture_console=False) as done:
        done.log({"loss": 0.5}, step=0)
    (tmp_path / "slow.py").write_text(SLOW.format(root=str(root)))
    trainer = subprocess.Popen([sys.executable, str(tmp_path / "slow.py")], cwd=tmp_path,
                               env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not list((root / "ppo").glob("*/scalars/loss.csv")) and time.time() < deadline:
            time.sleep(0.05)
        logdir = tmp_path / "tb"
        tb = subprocess.run(
            [sys.executable, "-c", "from labtrack.cli import main; main()", "tb", "ppo", "ppo_transformed", "--root", str(root),
             "--logdir", str(logdir), "--no-launch", "--watch", "--refresh", "0.2", "--json"],
            env=child_env(), capture_output=True, text=True, timeout=120)
    finally:
        _, err = trainer.communicate(timeout=60)
    assert trainer.returncode == 0, err.decode()
    assert tb.returncode == 0, tb.stderr
    out = json.loads(tb.stdout)
    labels = sorted(r["label"].split("/")[0] for r in out["runs"])
    assert labels == ["ppo", "ppo_transformed"]  # both experiments, all their runs
    live_dir = next(Path(r["dir"]) for r in out["runs"] if r["label"].startswith("ppo/"))
    assert "new points" in tb.stderr  # points were appended while the run trained
    assert _tb_steps(live_dir, "loss") == list(range(40))  # each point once, in order


# -- 4. sources outside git (ML-Logger's log_file(__file__)) -----------------------------------

def test_a_run_outside_git_saves_its_script_and_local_modules(tmp_path: Path) -> None:
    work = tmp_path / "proj"
    (work / "models").mkdir(parents=True)
    (work / "models" / "__init__.py").write_text("")
    (work / "models" / "net.py").write_text("WIDTH = 64\n")
    (work / "big_table.py").write_text("DATA = " + repr("x" * 5000) + "\n")
    (work / "notes.txt").write_text("lr sweep\n")
    code = f"""\
        import labtrack
        import models.net, big_table
        run = labtrack.init(experiment="nogit", root={str(tmp_path / 'runs')!r}, capture_console=False)
        run.save_source("notes.txt")
        run.finish()
        """
    result = run_script(code, cwd=work, env={"GIT_CEILING_DIRECTORIES": str(tmp_path),
                                             "LABTRACK_UNTRACKED_MAX_BYTES": "2000"})
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p.parent for p in (tmp_path / "runs").glob("*/*/run.json")]
    assert meta(run_dir)["git"] is None
    files = run_dir / "source" / "files"
    saved = sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file())
    assert saved == ["SKIPPED.txt", "models/__init__.py", "models/net.py", "notes.txt", "script.py"]
    assert (files / "models" / "net.py").read_text() == "WIDTH = 64\n"
    assert "big_table.py" in (files / "SKIPPED.txt").read_text()  # over the 2000-byte cap


# -- 5. the run id at start, and the params table of config= -----------------------------------

def test_init_prints_the_run_id_and_the_config_table(tmp_path: Path) -> None:
    buf = io.StringIO()
    with use_console(Console(file=buf, width=100, force_terminal=False, color_system=None)):
        run = labtrack.init(experiment="mnist", root=tmp_path, config={"lr": 0.01, "opt": {"name": "adam"}},
                            capture_git=False, capture_console=False)
        run.finish()
        quiet = labtrack.init(disabled=True, config={"lr": 0.01})
        quiet.finish()
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"labtrack: run {run.id}  mnist  {run.dir}"  # one line, id first
    assert any("│ opt.name │ adam  │" in line for line in lines)
    assert len(lines) == 1 + 6  # the id line, then the table; the disabled run printed nothing


# -- 6. fixes: checkpoints of plain data without torch, current_step before any log ------------

def test_a_dict_checkpoint_is_saved_and_loaded_without_importing_torch(tmp_path: Path) -> None:
    code = f"""\
        import sys
        import numpy as np
        import labtrack
        run = labtrack.init(experiment="ck", root={str(tmp_path / 'runs')!r}, capture_git=False,
                            capture_console=False)
        state = {{"epoch": 3, "weights": np.arange(4.0), "history": [(1, 0.5)], "name": "adam"}}
        path = run.save_checkpoint(state, step=3)
        loaded = run.load_checkpoint()
        assert loaded["epoch"] == 3 and loaded["history"] == [(1, 0.5)]
        assert (loaded["weights"] == np.arange(4.0)).all()
        print(path.name, "torch" in sys.modules)
        run.finish()
        """
    result = run_script(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "checkpoint.pkl False"


def test_current_step_is_none_before_any_log_and_its_users_still_work(tmp_path: Path) -> None:
    import numpy as np

    run = labtrack.init(experiment="steps", root=tmp_path, capture_git=False, capture_console=False)
    assert isinstance(run, labtrack.Run)
    assert run.current_step is None
    run.log_text("note", "before any log")  # media without a step: step 0
    run.store(loss=1.0)
    run.write()  # indicators without a step: step 0
    assert run.current_step is None  # neither moves the step
    run.log({"acc": 0.5}, step=3)
    assert run.current_step == 3
    run.log_histogram("w", np.arange(5.0))
    run.finish()
    text = [json.loads(line) for line in (run.dir / "text" / "note.jsonl").read_text().splitlines()]
    assert text[0]["step"] == 0
    assert (run.dir / "scalars" / "loss.csv").read_text().splitlines()[1].startswith("0,")
    hist = json.loads((run.dir / "histograms" / "w.jsonl").read_text().splitlines()[0])
    assert hist["step"] == 3
    assert labtrack.init(disabled=True).current_step is None


# -- 7. the docs name each feature by Lab's (and ML-Logger's) name ------------------------------

def test_older_tools_doc_shows_each_feature_under_its_old_name() -> None:
    doc = (REPO / "docs" / "older-tools.md").read_text()
    for old, new in [("start_step", "init(..., start_step=0)"), ("save_progress", "run.save_progress("),
                     ("is_progress", "progress=True"), ("results written into", "annotate=True"),
                     ("tools/tb.py -e", "labtrack tb ppo ppo_transformed"),
                     ("log_file(__file__)", "run.save_source(path)"), ("current_step", "None")]:
        assert old in doc and new in doc, (old, new)
    assert "docs/older-tools.md" in (REPO / "README.md").read_text()
