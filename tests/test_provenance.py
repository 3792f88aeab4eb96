"""Provenance: git (real repositories made here), command, environment, seeds."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

import labtrack
from labtrack import _provenance
from labtrack._store.reader import read_run_meta
from labtrack.errors import GitStateError

from conftest import flush, git, only_run_dir, run_script

pytestmark = pytest.mark.timeout(120)

MakeRun = Callable[..., labtrack.Run]


def _git_run(make_run: MakeRun, repo: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> labtrack.Run:
    monkeypatch.chdir(repo)
    run = make_run(capture_git=True, root=kwargs.pop("root", repo.parent / "runs"), **kwargs)
    flush(run)  # provenance is collected on the writer thread
    return run


def test_clean_repository(make_run: MakeRun, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _git_run(make_run, git_repo, monkeypatch)
    run.finish()
    sha = git(git_repo, "rev-parse", "HEAD").strip()
    meta = read_run_meta(run.dir)
    assert meta["git"] == {"commit": sha, "message": "first commit\n\nwith a body line", "branch": "main",
                           "dirty": False, "remote": None, "root": str(git_repo.resolve())}
    assert (run.dir / "source" / "commit.txt").read_text() == f"{sha}\n\nfirst commit\n\nwith a body line\n"
    assert (run.dir / "source" / "diff.patch").read_bytes() == b""
    assert not (run.dir / "source" / "untracked").exists()


def test_dirty_repository_diff_untracked_and_remote_without_credentials(
        make_run: MakeRun, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(git_repo, "remote", "add", "origin", "https://alice:ghp_SECRET@github.com/alice/proj.git")
    git(git_repo, "checkout", "-q", "-b", "feature/x")
    (git_repo / "train.py").write_text("print('train')\nprint('changed')\n")
    (git_repo / "model.py").write_text("W = 1\n")
    (git_repo / "sub").mkdir()
    (git_repo / "sub" / "data.txt").write_bytes(b"\x00\x01 binary")
    (git_repo / "ignored.txt").write_text("secret, ignored\n")
    run = _git_run(make_run, git_repo, monkeypatch)
    run.finish()
    g = read_run_meta(run.dir)["git"]
    assert g["dirty"] is True and g["branch"] == "feature/x"
    assert g["remote"] == "https://github.com/alice/proj.git"
    assert "SECRET" not in (run.dir / "run.json").read_text()
    patch = (run.dir / "source" / "diff.patch").read_text()
    assert "+print('changed')" in patch and "train.py" in patch
    untracked = run.dir / "source" / "untracked"
    assert (untracked / "model.py").read_text() == "W = 1\n"
    assert (untracked / "sub" / "data.txt").read_bytes() == b"\x00\x01 binary"
    assert not (untracked / "ignored.txt").exists()
    assert not (untracked / "SKIPPED.txt").exists()


def test_diff_patch_applies_to_the_commit(make_run: MakeRun, git_repo: Path, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    (git_repo / "train.py").write_text("print('v2')\n")
    (git_repo / "logo.bin").write_bytes(bytes(range(256)))
    git(git_repo, "add", "logo.bin")  # staged binary file: in `git diff HEAD --binary`
    run = _git_run(make_run, git_repo, monkeypatch)
    run.finish()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(git_repo), str(clone))
    git(clone, "apply", str(run.dir / "source" / "diff.patch"))
    assert (clone / "train.py").read_text() == "print('v2')\n"
    assert (clone / "logo.bin").read_bytes() == bytes(range(256))


def test_untracked_files_are_size_capped(tmp_path: Path, git_repo: Path) -> None:
    (git_repo / "small.py").write_text("x = 1\n")
    (git_repo / "big.bin").write_bytes(b"x" * 5000)
    p = run_script("""
        import labtrack
        labtrack.init("prov").finish()
    """, cwd=git_repo, env={"LABTRACK_ROOT": str(tmp_path / "runs"), "LABTRACK_UNTRACKED_MAX_BYTES": "1000",
                            "LABTRACK_CAPTURE_CONSOLE": "0"})
    assert p.returncode == 0, p.stderr
    untracked = only_run_dir(tmp_path / "runs") / "source" / "untracked"
    assert (untracked / "small.py").read_text() == "x = 1\n"
    assert not (untracked / "big.bin").exists()
    assert (untracked / "SKIPPED.txt").read_text() == "big.bin\t5000 bytes\n"


def test_untracked_files_are_capped_in_total_too(tmp_path: Path, git_repo: Path) -> None:
    # A data folder someone forgot to ignore: 30 files of 900 bytes under a 1000-byte cap; at
    # most 20 caps (20,000 bytes) are copied and every file left out is listed.
    (git_repo / "data").mkdir()
    for i in range(30):
        (git_repo / "data" / f"part-{i:02d}.bin").write_bytes(b"x" * 900)
    p = run_script("""
        import labtrack
        labtrack.init("prov").finish()
    """, cwd=git_repo, env={"LABTRACK_ROOT": str(tmp_path / "runs"), "LABTRACK_UNTRACKED_MAX_BYTES": "1000",
                            "LABTRACK_CAPTURE_CONSOLE": "0"})
    assert p.returncode == 0, p.stderr
    untracked = only_run_dir(tmp_path / "runs") / "source" / "untracked"
    copied = sorted(untracked.glob("data/*.bin"))
    skipped = (untracked / "SKIPPED.txt").read_text().splitlines()
    assert len(copied) == 22 and sum(f.stat().st_size for f in copied) <= 20_000
    assert len(skipped) == 8 and all("over the total of 20000 bytes" in line for line in skipped)


def test_untracked_cap_follows_the_runs_environment(make_run: MakeRun, git_repo: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (git_repo / "big.bin").write_bytes(b"x" * 5000)
    run = _git_run(make_run, git_repo, monkeypatch, _environ={"LABTRACK_UNTRACKED_MAX_BYTES": "1000"})
    run.finish()
    assert not (run.dir / "source" / "untracked" / "big.bin").exists()


def test_the_default_root_inside_the_repository_does_not_make_it_dirty(
        make_run: MakeRun, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ./labtrack is the default root, usually inside the project's repository and not ignored.
    (git_repo / ".gitignore").write_text("")
    git(git_repo, "commit", "-q", "-am", "ignore nothing")
    first = _git_run(make_run, git_repo, monkeypatch, root=git_repo / "labtrack")
    first.finish()
    second = _git_run(make_run, git_repo, monkeypatch, root=git_repo / "labtrack")
    second.finish()
    assert read_run_meta(second.dir)["git"]["dirty"] is False
    assert not (second.dir / "source" / "untracked").exists()
    third = _git_run(make_run, git_repo, monkeypatch, root=git_repo / "labtrack", require_clean_git=True)
    third.finish()


def test_own_runs_are_never_copied_as_untracked(make_run: MakeRun, git_repo: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (git_repo / ".gitignore").write_text("")
    git(git_repo, "commit", "-q", "-am", "ignore nothing")
    first = _git_run(make_run, git_repo, monkeypatch, root=git_repo / "labtrack")
    first.log({"a": 1.0})
    first.finish()
    second = _git_run(make_run, git_repo, monkeypatch, root=git_repo / "labtrack")
    second.finish()
    assert not list((second.dir / "source").rglob("*.csv"))
    assert not list((second.dir / "source").rglob("run.json"))


def test_outside_a_repository_git_is_null(tmp_path: Path) -> None:
    plain = tmp_path / "plain"  # the script and the working directory, outside any repository
    plain.mkdir()
    p = run_script("""
        import labtrack
        labtrack.init("prov").finish()
    """, cwd=plain, env={"LABTRACK_ROOT": str(tmp_path / "runs"), "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    assert read_run_meta(run_dir)["git"] is None
    # no git files; the script itself is kept instead (tests/test_lab_features.py)
    assert [p.relative_to(run_dir).as_posix() for p in (run_dir / "source").rglob("*")] == [
        "source/files", "source/files/script.py"]
    assert (run_dir / "env.json").is_file()


def test_capture_git_false_records_nothing(make_run: MakeRun, git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(git_repo)
    run = make_run(capture_git=False, root=git_repo.parent / "runs")
    run.finish()
    assert read_run_meta(run.dir)["git"] is None and not (run.dir / "source").exists()


def test_require_clean_git_lists_the_dirty_files(make_run: MakeRun, git_repo: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (git_repo / "train.py").write_text("changed\n")
    (git_repo / "notes.md").write_text("new\n")
    monkeypatch.chdir(git_repo)
    with pytest.raises(GitStateError) as info:
        make_run(require_clean_git=True, root=tmp_path / "runs")
    msg = str(info.value)
    assert "train.py" in msg and "notes.md" in msg and "2 uncommitted" in msg
    assert not (tmp_path / "runs").exists()
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "clean")
    run = make_run(require_clean_git=True, root=tmp_path / "runs")
    run.finish()
    assert read_run_meta(run.dir)["status"] == "finished"


def test_detached_head_and_repository_without_commits(make_run: MakeRun, git_repo: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sha = git(git_repo, "rev-parse", "HEAD").strip()
    git(git_repo, "checkout", "-q", "--detach")
    run = _git_run(make_run, git_repo, monkeypatch)
    run.finish()
    g = read_run_meta(run.dir)["git"]
    assert g["commit"] == sha and g["branch"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    (empty / "a.py").write_text("a\n")
    run = _git_run(make_run, empty, monkeypatch)
    run.finish()
    g = read_run_meta(run.dir)["git"]
    assert g["commit"] is None and g["dirty"] is True


@pytest.mark.parametrize("url,expected", [
    ("https://user:token@github.com/a/b.git", "https://github.com/a/b.git"),
    ("https://token@gitlab.com/a/b.git", "https://gitlab.com/a/b.git"),
    ("ssh://git@host:22/a/b.git", "ssh://host:22/a/b.git"),
    ("git@github.com:a/b.git", "git@github.com:a/b.git"),
    ("https://github.com/a/b.git", "https://github.com/a/b.git"),
    ("/srv/git/b.git", "/srv/git/b.git"),
])
def test_strip_credentials(url: str, expected: str) -> None:
    assert _provenance.strip_credentials(url) == expected


def test_command_and_environment(tmp_path: Path) -> None:
    p = run_script("""
        import labtrack, sys
        run = labtrack.init("prov", seed=7)
        run.finish()
        print(run.dir)
    """, cwd=tmp_path, env={"LABTRACK_ROOT": str(tmp_path / "runs"), "LABTRACK_CAPTURE_GIT": "0"})
    assert p.returncode == 0, p.stderr
    run_dir = Path(p.stdout.strip().splitlines()[-1])
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["command"]["script"] == str((tmp_path / "script.py").resolve())
    assert meta["command"]["argv"] == [str(tmp_path / "script.py")]
    assert meta["command"]["cwd"] == str(tmp_path) and meta["command"]["python"] == sys.executable
    assert meta["seed"] == 7 and meta["user"] and meta["host"] and isinstance(meta["pid"], int)
    env = json.loads((run_dir / "env.json").read_text())
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["python"]["executable"] == sys.executable
    assert {"numpy", "pillow"} <= {k.lower() for k in env["packages"]}
    assert env["cpus"] == os.cpu_count() and isinstance(env["gpus"], list)


def test_seed_everything_seeds_random_numpy_and_torch() -> None:
    import random

    import numpy as np

    torch = pytest.importorskip("torch")
    _provenance.seed_everything(5)
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    _provenance.seed_everything(5)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


def test_installed_packages_match_importlib_metadata() -> None:
    # The fast scan (two headers of each METADATA, no importlib.metadata) lists what
    # importlib.metadata lists, with the first distribution of a name on sys.path winning.
    from importlib import metadata

    from labtrack._provenance import installed_packages

    expected: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            expected.setdefault(name, dist.version)
    assert dict(installed_packages()) == expected
