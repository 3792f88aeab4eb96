"""labtrack merge ROOT... --into ROOT: runs of disconnected roots into one, no id clashes, safe
to repeat, complete after a SIGKILL, never reading through a symlink out of a source root."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import labtrack
from labtrack._merge import merge_runs
from labtrack._store.rundir import RunDir, iter_runs
from labtrack.cli import main

from conftest import child_env


def finished_run(root: Path, experiment: str = "exp", points: int = 20, **kw: Any) -> labtrack.Run:
    run = labtrack.Run(experiment, root=root, capture_git=False, capture_console=False, system=False,
                       _environ={}, **kw)
    for i in range(points):
        run.log({"loss": 1.0 / (i + 1), "train/acc": i / points}, step=i)
    run.finish()
    return run


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def listing(root: Path) -> list[str]:
    return [f"{r.experiment_dir}/{r.id}" for r in iter_runs(root)]


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_two_roots_merge_into_one_and_a_clash_gets_a_new_id(tmp_path: Path) -> None:
    a, b, into = tmp_path / "a", tmp_path / "b", tmp_path / "into"
    ra = [finished_run(a, "mnist", name=f"a{i}") for i in range(2)]
    rb = finished_run(b, "cifar", name="b0")
    # the same id made on another machine: B holds a different run under ra[0]'s id
    clash = b / "mnist" / ra[0].id
    shutil.copytree(ra[0].dir, clash)
    meta = json.loads((clash / "run.json").read_text())
    meta.update(tags=["from-b"], host="machine-b", pid=4242)  # made there, not here
    (clash / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    with open(clash / "scalars" / "loss.csv", "a") as f:
        f.write("20,0.01,1767225600.000\n")

    result = cli("merge", str(a), str(b), "--into", str(into))
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert re.fullmatch(rf"merged 4 runs \(\d+\.\d MB\) into {re.escape(str(into))}, 1 under a new id \(id clash: "
                        rf"mnist/{ra[0].id} -> {ra[0].id[:16]}[0-9a-z]{{6}}\) in \d+\.\d s", line), line
    runs = listing(into)
    assert len(runs) == 4
    for r in ra:  # copied byte for byte, modification times kept
        assert files_of(into / "mnist" / r.id) == files_of(Path(r.dir))
        assert os.stat(into / "mnist" / r.id / "heartbeat").st_mtime == os.stat(Path(r.dir) / "heartbeat").st_mtime
    assert files_of(into / "cifar" / rb.id) == files_of(Path(rb.dir))
    [new] = [r for r in runs if r.startswith("mnist/") and r.split("/")[1] not in (ra[0].id, ra[1].id)]
    copy = RunDir(into / new)
    meta = copy.raw_meta()
    assert meta["id"] == new.split("/")[1] and meta["tags"] == ["from-b"]
    assert meta["merged_from"]["id"] == ra[0].id and meta["merged_from"]["root"] == os.path.realpath(b)
    assert copy.read_text("scalars/loss.csv") == (clash / "scalars" / "loss.csv").read_text()
    assert RunDir(into / "mnist" / ra[0].id).raw_meta()["tags"] == []  # the first one stays as it was

    # merged again: nothing new, nothing renamed a second time
    before = {r: files_of(into / r) for r in runs}
    again = cli("merge", str(a), str(b), "--into", str(into))
    assert again.exit_code == 0
    assert re.fullmatch(r"merged 0 runs \(0\.0 MB\) into .*, 4 already there in \d+\.\d s", again.output.strip())
    assert {r: files_of(into / r) for r in listing(into)} == before

    # the newcomer went on logging on its machine: its renamed copy is brought up to date
    with open(clash / "scalars" / "loss.csv", "a") as f:
        f.write("21,0.005,1767225601.000\n")
    grown = cli("merge", str(b), "--into", str(into))
    assert "1 updated (grown since an earlier merge)" in grown.output, grown.output
    assert listing(into) == runs
    assert copy.read_text("scalars/loss.csv") == (clash / "scalars" / "loss.csv").read_text()
    assert copy.raw_meta()["id"] == new.split("/")[1] and copy.raw_meta()["merged_from"]["id"] == ra[0].id
    assert "already there" in cli("merge", str(b), "--into", str(into)).output

    # and the target's index (a cache) sees them: labtrack ls
    ls = cli("ls", "--root", str(into))
    assert ls.exit_code == 0
    for r in runs:
        assert r.split("/")[1] in ls.output


def test_a_run_that_went_on_after_a_merge_is_updated_and_an_older_copy_changes_nothing(tmp_path: Path) -> None:
    a, old_copy, into = tmp_path / "a", tmp_path / "old", tmp_path / "into"
    run = finished_run(a)
    shutil.copytree(Path(run.dir).parent, old_copy / "exp")  # another machine's copy of it, then
    merge_runs([a], into)
    more = labtrack.Run("exp", root=a, resume=run.id, capture_git=False, capture_console=False, system=False,
                        _environ={})  # resumed (in a new process it would have a new pid)
    more.log({"loss": 0.01}, step=100)
    more.finish()
    result = cli("merge", str(a), "--into", str(into))
    assert result.exit_code == 0
    assert re.fullmatch(r"merged 1 run \(\d+\.\d MB\) into .*, 1 updated \(grown since an earlier merge\) "
                        r"in \d+\.\d s", result.output.strip()), result.output
    assert listing(into) == [f"exp/{run.id}"]
    assert files_of(into / "exp" / run.id) == files_of(Path(run.dir))
    assert "100,0.01," in (into / "exp" / run.id / "scalars" / "loss.csv").read_text()
    # the stale copy from the other machine is older than what the target holds: nothing changes
    before = files_of(into / "exp" / run.id)
    assert merge_runs([old_copy], into).same == [f"exp/{run.id}"]
    assert files_of(into / "exp" / run.id) == before and listing(into) == [f"exp/{run.id}"]


def test_merging_the_target_into_itself_and_a_missing_root(tmp_path: Path) -> None:
    a = tmp_path / "a"
    run = finished_run(a)
    result = merge_runs([a], a)
    assert result.same == [f"exp/{run.id}"] and result.copied == []
    bad = cli("merge", str(tmp_path / "nope"), "--into", str(a))
    assert bad.exit_code != 0 and "nope" in bad.output and "Traceback" not in bad.output


def test_a_live_run_is_left_out_and_named_then_merged_when_finished(tmp_path: Path) -> None:
    a, into = tmp_path / "a", tmp_path / "into"
    done = finished_run(a)
    live = labtrack.Run("exp", root=a, capture_git=False, capture_console=False, system=False, _environ={})
    try:
        live.log({"loss": 1.0}, step=0)
        live.flush()
        result = cli("merge", str(a), "--into", str(into))
        assert result.exit_code == 0
        assert f"1 still running, left out (exp/{live.id}; merge again when finished)" in result.output
        assert listing(into) == [f"exp/{done.id}"]
    finally:
        live.finish()
    result = cli("merge", str(a), "--into", str(into))
    assert "merged 1 run " in result.output and "1 already there" in result.output
    assert files_of(into / "exp" / live.id) == files_of(Path(live.dir))


def test_a_crashed_run_is_copied_and_still_reads_as_crashed(tmp_path: Path) -> None:
    a, into = tmp_path / "a", tmp_path / "into"
    run = finished_run(a)
    meta = json.loads((Path(run.dir) / "run.json").read_text())
    meta.update(status="running", ended=None, host="another-machine")
    (Path(run.dir) / "run.json").write_text(json.dumps(meta))
    old = time.time() - 3600
    os.utime(Path(run.dir) / "heartbeat", (old, old))
    merge_runs([a], into)
    assert RunDir(into / "exp" / run.id).meta()["status"] == "crashed"


def test_symlinks_never_lead_a_merge_out_of_its_source_root(tmp_path: Path) -> None:
    a, into, outside = tmp_path / "a", tmp_path / "into", tmp_path / "outside"
    run = finished_run(a)
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("SECRET-OUTSIDE\n")
    art = Path(run.dir) / "artifacts"
    art.mkdir()
    (art / "passwd").symlink_to("/etc/passwd")
    (art / "secret.txt").symlink_to(secret)
    (art / "outdir").symlink_to(outside, target_is_directory=True)
    (art / "mine.txt").write_text("inside\n")
    (art / "alias.txt").symlink_to(art / "mine.txt")  # inside the run: followed
    # a run folder and an experiment folder that lead out of the root
    elsewhere = finished_run(outside / "root", "far")
    (a / "exp" / "20991231-000000-zzzzzz").symlink_to(elsewhere.dir, target_is_directory=True)
    (a / "evil").symlink_to(outside / "root" / "far", target_is_directory=True)

    result = merge_runs([a], into)
    assert result.copied == [f"exp/{run.id}"] and result.failed == []
    assert listing(into) == [f"exp/{run.id}"]
    copied = into / "exp" / run.id / "artifacts"
    assert sorted(p.name for p in copied.iterdir()) == ["alias.txt", "mine.txt"]
    assert (copied / "alias.txt").read_text() == "inside\n" and not (copied / "alias.txt").is_symlink()
    passwd = Path("/etc/passwd").read_bytes()
    for p in into.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"SECRET-OUTSIDE" not in data and (not passwd or passwd not in data), p


def _big_runs(root: Path, n: int, files: int) -> list[labtrack.Run]:
    runs = []
    for i in range(n):
        run = finished_run(root, points=5, name=f"r{i}")
        art = Path(run.dir) / "artifacts"
        art.mkdir()
        for j in range(files):
            (art / f"f{j:05d}.bin").write_bytes(os.urandom(2048))
        runs.append(run)
    return runs


def test_a_merge_killed_with_sigkill_leaves_no_half_run_and_the_next_completes(tmp_path: Path) -> None:
    a, into = tmp_path / "a", tmp_path / "into"
    runs = _big_runs(a, 4, 1500)
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-c", "from labtrack.cli import main; main()", "merge", str(a),
                             "--into", str(into)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    partial: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        # kill once a run is half copied (its files are going into the hidden folder)
        partial = [p for p in into.glob("exp/.merge-*.tmp") if sum(1 for _ in p.rglob("*.bin")) > 100]
        if partial:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(30)
    out, err = proc.communicate()
    assert partial and proc.returncode == -signal.SIGKILL, (proc.returncode, err.decode()[-2000:])
    assert any(p.exists() for p in partial)  # the half run is there, hidden
    by_id = {r.id: r for r in runs}
    for name in listing(into):  # whatever is visible is whole
        rid = name.split("/")[1]
        assert files_of(into / name) == files_of(Path(by_id[rid].dir)), name

    result = cli("merge", str(a), "--into", str(into))
    assert result.exit_code == 0, result.output
    assert sorted(listing(into)) == sorted(f"exp/{r.id}" for r in runs)
    for r in runs:
        assert files_of(into / "exp" / r.id) == files_of(Path(r.dir))
    assert list(into.glob("exp/.merge-*")) == []


def test_progress_on_a_terminal_does_not_change_the_summary(tmp_path: Path) -> None:
    a, into = tmp_path / "a", tmp_path / "into"
    finished_run(a)
    result = cli("merge", str(a), "--into", str(into), "--progress")
    assert result.exit_code == 0
    assert result.output.strip().splitlines()[-1].startswith("merged 1 run (")


def test_an_unreadable_run_is_named_and_the_rest_merged(tmp_path: Path) -> None:
    a, into = tmp_path / "a", tmp_path / "into"
    good, bad = finished_run(a), finished_run(a)
    (Path(bad.dir) / "run.json").write_text('{"id": "torn')  # cut off by hand or by a full disk
    result = merge_runs([a], into)
    assert result.copied == [f"exp/{good.id}"] and [r for r, _ in result.failed] == [f"exp/{bad.id}"]
    assert "is not valid JSON" in result.failed[0][1]
    assert f"1 unreadable, left out (exp/{bad.id}: " in result.summary()
    assert listing(into) == [f"exp/{good.id}"]


def test_a_target_experiment_folder_leading_out_is_not_written_through(tmp_path: Path) -> None:
    a, into, outside = tmp_path / "a", tmp_path / "into", tmp_path / "outside"
    run = finished_run(a)
    outside.mkdir()
    into.mkdir()
    (into / "exp").symlink_to(outside, target_is_directory=True)
    leftover = outside / f".merge-999999999-{run.id}.tmp"  # looks like a killed merge's, but is not ours
    leftover.mkdir()
    result = merge_runs([a], into)
    assert result.copied == [] and [r for r, _ in result.failed] == [f"exp/{run.id}"]
    assert "leads outside" in result.failed[0][1]
    assert list(outside.iterdir()) == [leftover]


def test_a_folder_in_the_way_that_is_no_run_is_kept_and_the_run_arrives_under_a_new_id(tmp_path: Path) -> None:
    a, into = tmp_path / "a", tmp_path / "into"
    run = finished_run(a)
    (into / "exp" / run.id).mkdir(parents=True)
    (into / "exp" / run.id / "notes.txt").write_text("mine\n")
    result = merge_runs([a], into)
    [(old, new)] = result.renamed
    assert old == f"exp/{run.id}" and (into / "exp" / run.id / "notes.txt").read_text() == "mine\n"
    assert RunDir(into / new).raw_meta()["merged_from"]["id"] == run.id
