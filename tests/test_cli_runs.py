"""The run-management commands, on runs made by the library, as a user runs them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
from click.testing import CliRunner, Result

import labtrack
from conftest import child_env, run_script
from labtrack.cli import main

MakeRun = Callable[..., labtrack.Run]


@pytest.fixture
def root(make_run: MakeRun, tmp_path: Path) -> Path:
    a = make_run(experiment="mnist", name="base", config={"lr": 0.1, "batch": 64}, tags=["cnn"],
                 comment="first try")
    for step in range(5):
        a.log({"train/loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
    a.save_object("vocab", {"a": 1})
    a.finish()
    time.sleep(0.01)
    b = make_run(experiment="mnist", name="small", config={"lr": 0.01, "batch": 64})
    b.log({"train/loss": 0.05, "acc": 0.9}, step=0)
    b.finish()
    time.sleep(0.01)
    c = make_run(experiment="cifar", name="wide", config={"lr": 0.1, "width": 4})
    c.log({"acc": 0.5}, step=0)
    c.finish()
    return tmp_path / "root"


def cli(root: Path | None, *args: str, input: str | None = None) -> Result:
    full = list(args) + (["--root", str(root)] if root is not None else [])
    return CliRunner().invoke(main, full, input=input, prog_name="labtrack", catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def assert_fails(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


def run_id(root: Path, ref: str) -> str:
    with labtrack.open(root) as book:
        return book[ref].id


def test_ls_lists_newest_first(root: Path) -> None:
    lines = ok(cli(root, "ls")).splitlines()
    assert lines[0].split()[:8] == ["ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION",
                                    "COMMIT", "TAGS"]
    assert [line.split()[2] for line in lines[1:]] == ["wide", "small", "base"]
    assert all(line.split()[3] == "finished" for line in lines[1:])
    assert lines[-1].rstrip().endswith("first try") and "cnn" in lines[-1]


def test_ls_filters_columns_and_limits(root: Path) -> None:
    out = ok(cli(root, "ls", "-e", "mnist", "-c", "params.lr,metrics.acc:max", "-c", "host"))
    header, *rows = out.splitlines()
    assert "PARAMS.LR" in header and "METRICS.ACC:MAX" in header and "HOST" in header
    assert [r.split()[2] for r in rows] == ["small", "base"]
    assert rows[0].split()[8:10] == ["0.01", "0.9"]
    assert [r.split()[2] for r in ok(cli(root, "ls", "-w", "params.lr < 0.05")).splitlines()[1:]] == ["small"]
    assert [r.split()[2] for r in ok(cli(root, "ls", "-q", "FIRST")).splitlines()[1:]] == ["base"]
    assert [r.split()[2] for r in ok(cli(root, "ls", "--sort", "params.lr")).splitlines()[1:]][0] == "small"
    limited = cli(root, "ls", "-n", "1")
    assert len(ok(limited).splitlines()) == 2 and "(1 of 3 runs shown)" in limited.stderr
    none = cli(root, "ls", "-s", "failed")
    assert ok(none) == "" and "no runs match" in none.stderr


def test_ls_json(root: Path) -> None:
    doc = json.loads(ok(cli(root, "ls", "--json", "-w", '"cnn" in tags')))
    assert doc["total"] == 1
    (row,) = doc["runs"]
    assert row["name"] == "base" and row["params"] == {"lr": 0.1, "batch": 64}
    assert row["metrics"]["acc"] == pytest.approx(0.4) and row["status"] == "finished"


def test_ls_errors_are_one_line(root: Path, tmp_path: Path) -> None:
    assert_fails(cli(root, "ls", "-w", "params.lr <"), "cannot parse where expression 'params.lr <' at position 11")
    assert_fails(cli(root, "ls", "-w", "params.lrr < 1"), "did you mean params.lr?")
    assert_fails(cli(root, "ls", "-c", "params.lrr"), "unknown column 'params.lrr'")
    assert_fails(cli(root, "ls", "--sort", "bogus"), "cannot sort by 'bogus'")
    assert_fails(cli(tmp_path / "missing", "ls"), "no labtrack root at")


def test_ls_uses_labtrack_root_and_exits_1_as_a_real_process(root: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("labtrack")
    good = subprocess.run([str(exe), "ls"], env=child_env({"LABTRACK_ROOT": str(root)}),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert good.returncode == 0 and len(good.stdout.splitlines()) == 4, good.stderr
    bad = subprocess.run([str(exe), "show", "nope"], env=child_env({"LABTRACK_ROOT": str(root)}),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: no run matches 'nope'") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr


def test_show(root: Path) -> None:
    out = ok(cli(root, "show", "mnist/base"))
    assert out.splitlines()[0] == f"run {run_id(root, 'mnist/base')}  mnist/base  finished"
    lines = [line.split() for line in out.splitlines()]
    assert ["lr", "0.1"] in lines and ["batch", "64"] in lines
    assert ["acc", "0.4", "0", "0.4", "0.2", "5", "4"] in lines  # last min max mean count step
    assert "train/loss" in out and "artifacts/vocab.pkl" in out and "tags" in out and "first try" in out
    doc = json.loads(ok(cli(root, "show", "mnist/base", "--json")))
    assert doc["run"]["name"] == "base" and doc["params"] == {"lr": 0.1, "batch": 64}
    assert doc["summary"]["acc"]["count"] == 5
    assert {"path": "artifacts/vocab.pkl", "size": (Path(doc["run"]["dir"]) / "artifacts/vocab.pkl").stat().st_size} in doc["files"]
    assert_fails(cli(root, "show", "2026"), "matches 3 runs")


def test_diff(git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_run: MakeRun) -> None:
    monkeypatch.chdir(git_repo)
    (git_repo / "train.py").write_text("print('train')\nprint('changed')\n")
    dirty = make_run(experiment="git", name="dirty", capture_git=True)
    dirty.finish()
    subprocess.run(["git", "checkout", "--", "train.py"], cwd=git_repo, check=True)
    clean = make_run(experiment="git", name="clean", capture_git=True)
    clean.finish()
    nogit = make_run(experiment="git", name="nogit")
    nogit.finish()
    root = tmp_path / "root"
    out = ok(cli(root, "diff", "git/dirty", "--no-color"))
    assert "+print('changed')" in out and "\x1b[" not in out
    coloured = ok(cli(root, "diff", "git/dirty", "--color"))
    assert "\x1b[32m+print('changed')" in coloured
    empty = cli(root, "diff", "git/clean")
    assert ok(empty) == "" and "no uncommitted changes" in empty.stderr
    assert_fails(cli(root, "diff", "git/nogit"), "recorded no git diff")


def test_compare(root: Path) -> None:
    out = ok(cli(root, "compare", "mnist/base", "mnist/small"))
    lines = out.splitlines()
    assert any(line.startswith("* params.lr") for line in lines)
    assert any(line.startswith("  params.batch") for line in lines)
    only = ok(cli(root, "compare", "mnist/base", "mnist/small", "--only-diff"))
    assert "params.batch" not in only and "params.lr" in only
    doc = json.loads(ok(cli(root, "compare", "mnist/base", "mnist/small", "--json")))
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["params.lr"]["values"] == [0.1, 0.01] and rows["params.lr"]["differs"]
    assert not rows["params.batch"]["differs"]
    assert_fails(cli(root, "compare", "mnist/base", "mnist/base"), "at least two different runs")


def test_table_formats(root: Path, tmp_path: Path) -> None:
    md = ok(cli(root, "table", "-e", "mnist", "-m", "acc,train/loss:min"))
    header = md.splitlines()[0]
    assert header.startswith("| id") and "| lr" in header and "train/loss:min" in header
    assert "| small" in md and "| 0.01" in md
    csv = ok(cli(root, "table", "-e", "mnist", "-p", "lr,batch", "-m", "acc", "-f", "csv"))
    frame = pd.read_csv(io.StringIO(csv), index_col="id")
    assert list(frame.columns) == ["experiment", "name", "status", "lr", "batch", "acc"]
    assert frame.set_index("name").loc["base", "acc"] == pytest.approx(0.4)
    html = ok(cli(root, "table", "-f", "html"))
    assert html.lstrip().startswith("<table") and "wide" in html
    doc = json.loads(ok(cli(root, "table", "--json", "-w", "params.lr > 0.05")))
    assert sorted(r["name"] for r in doc) == ["base", "wide"]
    target = tmp_path / "out.csv"
    written = cli(root, "table", "-f", "csv", "-o", str(target))
    assert ok(written) == "" and "wrote 3 runs" in written.stderr
    assert len(pd.read_csv(target)) == 3


def test_table_from_a_run_list_file(root: Path, tmp_path: Path) -> None:
    listing = tmp_path / "runs.txt"
    listing.write_text(f"# the lr sweep\nmnist/base   # baseline\n\n{run_id(root, 'mnist/small')[:-1]}\n")
    csv = ok(cli(root, "table", "--from", str(listing), "-f", "csv"))
    frame = pd.read_csv(io.StringIO(csv))
    assert frame["name"].tolist() == ["base", "small"] and "lr" in frame.columns
    from_stdin = ok(cli(root, "table", "--from", "-", "-f", "csv", input="cifar/wide\n"))
    assert pd.read_csv(io.StringIO(from_stdin))["name"].tolist() == ["wide"]
    assert_fails(cli(root, "table", "--from", str(listing), "-w", "params.lr > 0"), "not both")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert_fails(cli(root, "table", "--from", str(tmp_path / "empty.txt")), "names no runs")
    assert_fails(cli(root, "table", "--from", str(tmp_path / "absent.txt")), "cannot read the run list")
    assert_fails(cli(root, "table", "mnist/base", "-p", "nope"), "no selected run has a param 'nope'")


def test_rm_gc_mv_tag_comment(root: Path) -> None:
    base_id = run_id(root, "mnist/base")
    assert_fails(cli(root, "rm", "mnist/small", "nope"), "no run matches 'nope'")
    assert len(ok(cli(root, "ls")).splitlines()) == 4  # nothing moved by the failed command
    out = ok(cli(root, "rm", "mnist/small"))
    assert out.startswith("moved ") and ".trash" in out
    assert [line.split()[2] for line in ok(cli(root, "ls")).splitlines()[1:]] == ["wide", "base"]
    assert json.loads(ok(cli(root, "gc", "--dry-run", "--json")))["runs"] == 1
    assert "deleted 1 run(s)" in ok(cli(root, "gc"))
    assert not (root / ".trash").exists()

    assert "moved" in ok(cli(root, "mv", "mnist/base", "archive"))
    assert (root / "archive" / base_id / "run.json").is_file()
    assert json.loads((root / "archive" / base_id / "run.json").read_text())["experiment"] == "archive"
    assert "archive" in ok(cli(root, "ls", "-e", "archive"))

    assert ok(cli(root, "tag", base_id, "best", "v2")) == f"{base_id} tags: cnn, best, v2\n"
    assert json.loads(ok(cli(root, "tag", base_id, "cnn", "--remove", "--json")))["tags"] == ["best", "v2"]
    ok(cli(root, "comment", base_id, "stride fix"))
    assert "stride fix" in ok(cli(root, "ls", "-q", "stride"))
    ok(cli(root, "comment", base_id, ""))
    assert ok(cli(root, "ls", "-q", "stride")) == ""
    assert_fails(cli(root, "tag", base_id, ""), "tag '' is not allowed")
    assert_fails(cli(root, "mv", base_id, " "), "experiment name ' ' is not allowed")


def test_reindex_lists_unreadable_runs(root: Path) -> None:
    broken = root / "mnist" / "20261121-000000-broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    result = cli(root, "reindex")
    assert ok(result).startswith("indexed 3 runs in ")
    assert "unreadable: mnist/20261121-000000-broken" in result.stderr
    doc = json.loads(ok(cli(root, "reindex", "--json")))
    assert doc["runs"] == 3 and doc["unreadable"][0]["dir"] == "mnist/20261121-000000-broken"
    assert "could not be read" in cli(root, "ls").stderr


SCRIPT = """\
import labtrack

run = labtrack.init(experiment="annotated", config={{"lr": 0.5}}, root={root!r},
                    capture_git=False, capture_console=False)
for step in range(3):
    run.log({{"loss": 1.0 / (step + 1)}}, step=step)
run.finish()
"""


def test_annotate_writes_and_replaces_one_block(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run_script(SCRIPT.format(root=str(root)), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    script = tmp_path / "script.py"
    original = script.read_text()
    with labtrack.open(root) as book:
        (run,) = book.runs()
    preview = ok(cli(root, "annotate", run.id, "--dry-run"))
    assert preview.startswith('"""labtrack results') and script.read_text() == original
    assert f"wrote the results of {run.id} into {script}" in ok(cli(root, "annotate", run.id))
    text = script.read_text()
    assert text.startswith(original) and text.count('"""labtrack results') == 1
    assert "| loss" in text and "params: lr=0.5" in text and run.id in text
    compile(text, str(script), "exec")
    # The annotated script still runs, and annotating the new run replaces the block.
    second = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    with labtrack.open(root) as book:
        newest = book.runs()[0]
    assert newest.id != run.id
    ok(cli(root, "annotate", newest.id))
    again = script.read_text()
    assert again.count('"""labtrack results') == 1 and newest.id in again and run.id not in again
    assert again.startswith(original)


def test_annotate_refuses_what_it_cannot_write(root: Path, tmp_path: Path) -> None:
    # Runs made inside pytest recorded pytest's own script: never write into it.
    assert_fails(cli(root, "annotate", "mnist/base"), "belongs to an installed package")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert_fails(cli(root, "annotate", "mnist/base", "--file", str(notes)), "is not a Python file")
    assert_fails(cli(root, "annotate", "mnist/base", "--file", str(tmp_path / "gone.py")), "does not exist")
    target = tmp_path / "exp.py"
    target.write_text('x = 1\r\nprint("a \\\\ b")\r\n')
    ok(cli(root, "annotate", "mnist/base", "--file", str(target)))
    text = target.read_bytes().decode()
    assert '"""labtrack results' in text and "\n" not in text.replace("\r\n", "")
    compile(text, str(target), "exec")


def test_every_command_has_help() -> None:
    for name in ("ls", "show", "diff", "compare", "table", "rm", "gc", "mv", "tag", "comment",
                 "reindex", "annotate"):
        result = CliRunner().invoke(main, [name, "--help"], prog_name="labtrack")
        assert result.exit_code == 0 and result.output.startswith(f"Usage: labtrack {name}")
        assert "--root" in result.output



def test_a_killed_run_shows_the_time_to_its_last_sign_of_life(tmp_path: Path) -> None:
    # A real training process logs for ~2 s and is killed with SIGKILL: run.json still says
    # running, no end time; ls, show and the Book must not show 0:00:00 or nothing.
    import signal

    root = tmp_path / "root"
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, time, labtrack\n"
        f"run = labtrack.init(root={str(root)!r}, experiment='crash')\n"
        "t0 = time.time()\n"
        "step = 0\n"
        "while time.time() - t0 < 2.2:\n"
        "    run.log({'loss': 1.0 / (step + 1)}, step=step)\n"
        "    step += 1\n"
        "    time.sleep(0.02)\n"
        "run.flush()\n"
        "print('logged', flush=True)\n"
        "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("labtrack: run ")  # init() names the run
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert line.strip() == "logged", line + err
    listed = json.loads(ok(cli(root, "ls", "--json")))["runs"]
    assert len(listed) == 1 and listed[0]["status"] == "crashed"
    assert 1.5 <= listed[0]["duration"] < 60, listed[0]
    rid = listed[0]["id"]
    shown = json.loads(ok(cli(root, "show", rid, "--json")))
    assert 1.5 <= shown["duration"] < 60
    text = ok(cli(root, "show", rid))
    assert "duration  0:00:02" in text or "duration  0:00:03" in text, text
    table = ok(cli(root, "ls"))
    assert "0:00:00" not in table and ("0:00:02" in table or "0:00:03" in table), table
    with labtrack.open(root) as book:
        view = book[rid]
        assert view.status == "crashed" and view.duration is not None and 1.5 <= view.duration < 60
        assert 1.5 <= book.runs().to_pandas().loc[rid, "duration"] < 60
