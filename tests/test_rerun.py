"""`labtrack rerun`, end to end: a real git repository, real training scripts, real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from labtrack._rerun import plan_rerun, rerun, resolve_run
from labtrack.errors import GitStateError, RunNotFoundError, RunStateError

LABTRACK = [sys.executable, "-c", "from labtrack.cli import main; main()"]

TRAIN = textwrap.dedent("""\
    import argparse
    import labtrack
    from helper import noise

    LR = 0.1

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    run = labtrack.init(experiment="toy", config={"lr": LR, "steps": args.steps}, seed=3)
    with open(__file__.replace("train.py", "init.bin"), "rb") as f:
        w = 5.0 + f.read()[-1] / 100  # a binary file the diff must carry
    for step in range(args.steps):
        w -= LR * (2 * w + noise())
        run.log({"loss": w * w, "w": w}, step=step)
    run.finish()
""")

HELPER = "import random\n\n\ndef noise():\n    return random.gauss(0.0, 0.5)\n"

# Saves a checkpoint after every step; crashes at STOP_AT; resumes from the last checkpoint.
TRAIN_CKPT = textwrap.dedent("""\
    import os
    import random
    import labtrack
    from labtrack.errors import RunStateError

    run = labtrack.init(experiment="ck", seed=1)
    try:
        state = run.load_checkpoint("last")  # restores the RNG states too
    except RunStateError:  # a new run: no checkpoint yet
        state = {"w": 1.0, "step": -1}
    w = state["w"]
    stop_at = int(os.environ.get("STOP_AT", "-1"))
    for step in range(state["step"] + 1, 12):
        if step == stop_at:
            raise RuntimeError("simulated crash")
        w = 0.9 * w + random.gauss(0.0, 1.0)
        run.log({"w": w}, step=step)
        run.save_checkpoint({"w": w, "step": step}, step=step, metric=abs(w), keep_last=2)
    run.finish()
""")


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                          "-c", "init.defaultBranch=main", *args],
                         cwd=repo, capture_output=True, text=True, check=True)
    return out.stdout


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env.update(LABTRACK_ROOT=str(root), LABTRACK_FLUSH_SECONDS="0.2", **extra)
    return env


def _python(repo: Path, root: Path, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, *args], cwd=repo, env=_env(root, **extra),
                         capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def _runs(root: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in root.glob("*/*/run.json")}


def _series(run_dir: Path, name: str) -> list[tuple[int, float]]:
    lines = (run_dir / "scalars" / f"{name}.csv").read_text().splitlines()
    assert lines[0] == "step,value,time"
    return [(int(s), float(v)) for s, v, _t in (line.split(",") for line in lines[1:])]


def _meta(run_dir: Path) -> dict[str, Any]:
    data = json.loads((run_dir / "run.json").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "proj"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text(TRAIN)
    (repo / "train_ckpt.py").write_text(TRAIN_CKPT)
    (repo / ".gitignore").write_text("__pycache__/\n")
    (repo / "init.bin").write_bytes(bytes(range(256)) + b"\x00\x10")
    _git(repo, "add", "train.py", "train_ckpt.py", ".gitignore", "init.bin")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_rerun_reproduces_the_series_from_commit_diff_and_untracked(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    # uncommitted edits of tracked files (text and binary), and an untracked module the script imports
    (repo / "train.py").write_text(TRAIN.replace("LR = 0.1", "LR = 0.05"))
    (repo / "init.bin").write_bytes(bytes(range(255, -1, -1)) + b"\x00\x90")
    (repo / "helper.py").write_text(HELPER)
    _python(repo, root, "train.py", "--steps", "12")
    (original_id, original_dir), = _runs(root).items()
    original = _series(original_dir, "loss")
    assert len(original) == 12
    assert _meta(original_dir)["git"]["dirty"] is True
    assert b"GIT binary patch" in (original_dir / "source" / "diff.patch").read_bytes()

    # the code moves on: another edit committed, the untracked helper changed
    (repo / "train.py").write_text(TRAIN.replace("LR = 0.1", "LR = 0.3"))
    _git(repo, "commit", "-q", "-am", "faster")
    (repo / "helper.py").write_text("def noise():\n    return 0.0\n")
    (repo / "init.bin").write_bytes(b"\x01")
    _python(repo, root, "train.py", "--steps", "12")
    today = next(d for i, d in _runs(root).items() if i != original_id)
    assert _series(today, "loss") != original  # the current code gives other numbers

    out = subprocess.run([*LABTRACK, "rerun", original_id[:17], "--root", str(root)], cwd=tmp_path,
                         env=_env(root), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    new_id = out.stdout.strip().splitlines()[-1]
    runs = _runs(root)
    assert new_id in runs and new_id not in (original_id, today.name)
    new_dir = runs[new_id]
    assert _series(new_dir, "loss") == original
    assert _series(new_dir, "w") == _series(original_dir, "w")
    new_meta = _meta(new_dir)
    assert new_meta["parent"] == original_id
    assert new_meta["status"] == "finished"
    assert new_meta["command"]["argv"] == ["train.py", "--steps", "12"]
    assert json.loads((new_dir / "params.json").read_text()) == {"lr": 0.05, "steps": 12}
    # the re-run recorded the same source: same commit, same diff
    assert new_meta["git"]["commit"] == _meta(original_dir)["git"]["commit"]
    assert (new_dir / "source" / "diff.patch").read_bytes() == (original_dir / "source" / "diff.patch").read_bytes()
    # the temporary worktree is gone and git no longer lists it
    assert len(_git(repo, "worktree", "list").splitlines()) == 1
    # the user's checkout was not touched
    assert "LR = 0.3" in (repo / "train.py").read_text()

    # the re-run recorded a worktree that is gone now; re-running it finds the repository
    # through its parent
    assert not Path(new_meta["git"]["root"]).exists()
    out = subprocess.run([*LABTRACK, "rerun", new_id, "--root", str(root)], cwd=tmp_path,
                         env=_env(root), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    third = _runs(root)[out.stdout.strip().splitlines()[-1]]
    assert _meta(third)["parent"] == new_id
    assert _series(third, "loss") == original


def test_continue_resumes_the_same_run_from_its_last_checkpoint(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _python(repo, root, "train_ckpt.py")  # uninterrupted reference
    (reference_id, reference_dir), = _runs(root).items()
    crashed = _python(repo, root, "train_ckpt.py", check=False, STOP_AT="7")
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    crashed_id = next(i for i in _runs(root) if i != reference_id)
    crashed_dir = _runs(root)[crashed_id]
    assert _meta(crashed_dir)["status"] == "failed"
    assert [s for s, _ in _series(crashed_dir, "w")] == list(range(7))
    assert _meta(crashed_dir)["checkpoints"]["last"] == 6

    out = subprocess.run([*LABTRACK, "rerun", crashed_id, "--continue", "--root", str(root)],
                         cwd=tmp_path, env=_env(root), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == crashed_id
    assert set(_runs(root)) == {reference_id, crashed_id}  # no new run
    meta = _meta(crashed_dir)
    assert meta["status"] == "finished" and len(meta["resumed"]) == 1
    # RNG states came back with the checkpoint: the series equals the uninterrupted one
    assert _series(crashed_dir, "w") == _series(reference_dir, "w")
    ck = meta["checkpoints"]
    assert ck["last"] == 11 and len(ck["steps"]) in (2, 3) and ck["best"] in ck["steps"]


def test_dry_run_and_errors(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (repo / "helper.py").write_text(HELPER)
    _python(repo, root, "train.py", "--steps", "3")
    (run_id, run_dir), = _runs(root).items()

    out = subprocess.run([*LABTRACK, "rerun", run_id, "--dry-run", "--root", str(root)],
                         cwd=tmp_path, env=_env(root), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "untracked: 1 file(s)" in out.stdout and f"_LABTRACK_PARENT={run_id}" in out.stdout
    assert "diff:      (none" in out.stdout
    out = subprocess.run([*LABTRACK, "rerun", run_id, "--dry-run", "--json", "--root", str(root)],
                         cwd=tmp_path, env=_env(root), capture_output=True, text=True, timeout=60)
    plan = json.loads(out.stdout)
    assert plan["untracked"] == ["helper.py"] and plan["diff"] is None
    assert plan["command"][1:] == ["train.py", "--steps", "3"] and plan["cwd"] == "<worktree>/."
    assert plan["env"] == {"LABTRACK_ROOT": str(root.resolve()), "_LABTRACK_PARENT": run_id}
    assert len(_runs(root)) == 1 and len(_git(repo, "worktree", "list").splitlines()) == 1

    with pytest.raises(RunNotFoundError, match="no run matches 'nope' under "):
        resolve_run(root, "nope")
    assert resolve_run(root, f"toy/{run_id}") == run_dir  # experiment/name (the name defaults to the id)

    other = tmp_path / "other"
    other.mkdir()
    _git(other, "init", "-q")
    with pytest.raises(GitStateError, match=r"commit [0-9a-f]{40} recorded by run .* is not in the repository"):
        plan_rerun(root, run_id, repo=other)
    with pytest.raises(GitStateError, match="the given repository .*missing is not there or not a git repository"):
        plan_rerun(root, run_id, repo=tmp_path / "missing")
    (repo / "docs").mkdir()
    assert plan_rerun(root, run_id, repo=repo / "docs").repo == repo.resolve()  # a folder inside the clone

    # a recorded diff that does not fit the commit
    (run_dir / "source" / "diff.patch").write_text(
        "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
        "@@ -1,1 +1,1 @@\n-no such line\n+other\n")
    with pytest.raises(GitStateError, match="does not apply to commit"):
        rerun(plan_rerun(root, run_id), workdir=tmp_path / "wt", echo=lambda line: None)
    assert (tmp_path / "wt").is_dir()  # kept for inspection

    # a run made outside git
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "s.py").write_text("import labtrack\nlabtrack.init(experiment='nogit').finish()\n")
    _python(plain, root, "s.py")
    nogit = next(i for i in _runs(root) if i != run_id)
    out = subprocess.run([*LABTRACK, "rerun", nogit, "--root", str(root)], cwd=tmp_path,
                         env=_env(root), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"error: run {nogit} recorded no git commit (it was not "
                                               "started in a git repository with a commit, or with "
                                               "capture_git=False); it cannot be re-run from source"]
    with pytest.raises(RunStateError, match="recorded no git commit"):
        plan_rerun(root, nogit)


def test_failing_command_reports_its_status(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (repo / "helper.py").write_text("def noise():\n    raise ValueError('boom')\n")
    failed = _python(repo, root, "train.py", "--steps", "2", check=False)
    assert failed.returncode != 0
    (run_id, _), = _runs(root).items()
    out = subprocess.run([*LABTRACK, "rerun", run_id, "--root", str(root), "--workdir", str(tmp_path / "wt")],
                         cwd=tmp_path, env=_env(root), capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    new_id = next(i for i in _runs(root) if i != run_id)
    assert f"error: the command exited with status 1; run {new_id} recorded it" in out.stderr
    assert "kept the worktree" in out.stderr and (tmp_path / "wt" / "helper.py").is_file()


def test_absolute_script_path_and_a_subfolder_cwd(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (repo / "scripts").mkdir()
    (repo / "work").mkdir()
    (repo / "work" / "README").write_text("outputs go here\n")
    (repo / "scripts" / "train.py").write_text(TRAIN.replace('"steps": args.steps}', '"steps": args.steps, '
                                                             '"cwd": __import__("os").getcwd()}'))
    (repo / "scripts" / "init.bin").write_bytes(b"\x07")
    _git(repo, "add", "scripts/train.py", "scripts/init.bin", "work/README")
    _git(repo, "commit", "-q", "-m", "scripts")
    (repo / "scripts" / "helper.py").write_text(HELPER)
    _python(repo / "work", root, str(repo / "scripts" / "train.py"), "--steps", "5")
    (run_id, run_dir), = _runs(root).items()
    (repo / "scripts" / "helper.py").write_text("def noise():\n    return 1.0\n")

    out = subprocess.run([*LABTRACK, "rerun", run_id, "--root", str(root), "--json", "--keep",
                          "--workdir", str(tmp_path / "wt")],
                         cwd=tmp_path, env=_env(root), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # the script's own output went to stderr
    (new_id,) = result["runs"]
    assert result["returncode"] == 0 and result["worktree"] == str((tmp_path / "wt").resolve())
    new_dir = _runs(root)[new_id]
    assert _series(new_dir, "loss") == _series(run_dir, "loss")
    # the script ran from the worktree's copy, in the worktree's equivalent of the cwd
    assert _meta(new_dir)["command"]["script"] == str((tmp_path / "wt" / "scripts" / "train.py").resolve())
    assert json.loads((new_dir / "params.json").read_text())["cwd"] == str((tmp_path / "wt" / "work").resolve())
    assert len(_git(repo, "worktree", "list").splitlines()) == 2  # kept, as asked


def test_code_imported_from_the_repository_comes_from_the_worktree(repo: Path, tmp_path: Path) -> None:
    # src/toylib is importable through PYTHONPATH, as an editable install's .pth file would make it
    root = tmp_path / "runs"
    (repo / "src" / "toylib").mkdir(parents=True)
    (repo / "src" / "toylib" / "__init__.py").write_text("SCALE = 2.0\n")
    (repo / "uses_lib.py").write_text(
        "import labtrack, toylib\n"
        "run = labtrack.init(experiment='lib')\n"
        "for step in range(3):\n"
        "    run.log({'y': toylib.SCALE * step}, step=step)\n"
        "run.finish()\n")
    _git(repo, "add", "src/toylib/__init__.py", "uses_lib.py")
    _git(repo, "commit", "-q", "-m", "lib")
    pythonpath = str(repo / "src")
    (repo / "src" / "toylib" / "__init__.py").write_text("SCALE = 3.0\n")  # uncommitted
    _python(repo, root, "uses_lib.py", PYTHONPATH=pythonpath)
    (run_id, run_dir), = _runs(root).items()
    assert _series(run_dir, "y") == [(0, 0.0), (1, 3.0), (2, 6.0)]
    (repo / "src" / "toylib" / "__init__.py").write_text("SCALE = 5.0\n")  # the checkout moves on

    out = subprocess.run([*LABTRACK, "rerun", run_id, "--root", str(root)], cwd=tmp_path,
                         env=_env(root, PYTHONPATH=pythonpath), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    new_id = out.stdout.strip().splitlines()[-1]
    assert _series(_runs(root)[new_id], "y") == [(0, 0.0), (1, 3.0), (2, 6.0)]
    # the same re-run without the mapping would have imported the checkout's toylib
    plan = plan_rerun(root, run_id)  # this process has no PYTHONPATH into the repository
    assert plan.import_paths == []
    result = rerun(plan, environ=_env(root, PYTHONPATH=pythonpath), echo=lambda line: None,
                   stdout=subprocess.DEVNULL)
    assert result.returncode == 0
    assert _series(_runs(root)[result.run_ids[0]], "y") == [(0, 0.0), (1, 5.0), (2, 10.0)]
