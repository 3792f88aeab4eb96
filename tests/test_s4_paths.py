"""The paths S4 of the benchmarks exercises (many runs): provenance collected with few git
processes and remembered only while valid, and the index kept current cheaply."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from labtrack import _provenance

from conftest import git

pytestmark = pytest.mark.timeout(120)


def _no_git_processes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    return started


def test_outside_a_repository_no_git_process_is_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain" / "deep"
    plain.mkdir(parents=True)
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"):
        monkeypatch.delenv(k, raising=False)
    if any((d / ".git").exists() for d in (tmp_path, *tmp_path.parents)):
        pytest.skip("the temp folder lies inside a git repository")
    started = _no_git_processes(monkeypatch)
    assert _provenance.collect_git(plain) is None
    assert _provenance.git_root(plain) is None
    assert _provenance.is_ignored(plain / "train.py") is False
    assert started == []


def test_git_dir_in_the_environment_still_asks_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   git_repo: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_DIR", str(git_repo / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(git_repo))
    info = _provenance.collect_git(plain)
    assert info is not None and info.meta["commit"] == git(git_repo, "rev-parse", "HEAD").strip()


def _slow(root: Path, exclude: Path | None = None) -> Any:
    info = _provenance._collect_git_slow(root, exclude)
    return info.meta, info.diff, sorted(info.untracked), info.commit_txt


def _fast(root: Path, exclude: Path | None = None) -> Any:
    info = _provenance.collect_git(root, exclude)
    assert info is not None
    return info.meta, info.diff, sorted(info.untracked), info.commit_txt


def test_collect_git_matches_one_command_per_fact_as_the_repository_changes(git_repo: Path) -> None:
    repo = git_repo.resolve()
    assert _fast(repo) == _slow(repo)  # clean
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "new file.py").write_text("x = 1\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "b.bin").write_bytes(b"\x00\x01")
    (repo / "ignored.txt").write_text("ignored\n")
    assert _fast(repo) == _slow(repo)
    assert _fast(repo)[0]["dirty"] is True
    git(repo, "add", "-A")
    git(repo, "mv", "train.py", "renamed.py")  # a rename: status prints its old path too
    assert _fast(repo) == _slow(repo)
    git(repo, "commit", "-q", "-m", "second\n\nbody")
    fast = _fast(repo)
    assert fast == _slow(repo)
    assert fast[0]["message"] == "second\n\nbody" and fast[0]["dirty"] is False
    # The remembered remote follows .git/config.
    git(repo, "remote", "add", "origin", "https://u:secret@example.com/r.git")
    assert _fast(repo)[0]["remote"] == "https://example.com/r.git"
    git(repo, "remote", "set-url", "origin", "https://example.com/other.git")
    assert _fast(repo)[0]["remote"] == "https://example.com/other.git"
    git(repo, "checkout", "-q", "--detach")
    assert _fast(repo)[0]["branch"] is None
    assert _fast(repo) == _slow(repo)
    # Runs kept inside the repository are neither counted nor copied.
    (repo / "runs").mkdir()
    (repo / "runs" / "x.json").write_text("{}")
    assert _fast(repo, repo / "runs")[2] == [] and _fast(repo, repo / "runs")[0]["dirty"] is False


def test_collect_git_without_commits(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    (empty / "a.py").write_text("a\n")
    assert _fast(empty) == _slow(empty)
    git(empty, "add", "a.py")
    fast = _fast(empty)
    assert fast == _slow(empty) and fast[0]["dirty"] is True and fast[0]["commit"] is None


def test_is_ignored_follows_the_ignore_files(git_repo: Path) -> None:
    script = git_repo / "tools" / "run.py"
    script.parent.mkdir()
    script.write_text("pass\n")
    assert _provenance.is_ignored(script) is False
    (git_repo / "tools" / ".gitignore").write_text("run.py\n")
    assert _provenance.is_ignored(script) is True
    (git_repo / "tools" / ".gitignore").write_text("other.py\n")
    assert _provenance.is_ignored(script) is False
    (git_repo / ".gitignore").write_text("tools/\n")
    assert _provenance.is_ignored(script) is True


def test_git_root_follows_a_new_repository(tmp_path: Path) -> None:
    d = tmp_path / "later"
    d.mkdir()
    if any((p / ".git").exists() for p in (tmp_path, *tmp_path.parents)):
        pytest.skip("the temp folder lies inside a git repository")
    assert _provenance.git_root(d) is None
    git(d, "init", "-q")
    assert _provenance.git_root(d) == d.resolve()
