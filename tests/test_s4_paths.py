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


# -- the index, kept current by the process that wrote a run


def _finished_run(root: Path, name: str, lr: float, acc: float) -> Path:
    import labtrack

    run = labtrack.Run(experiment="s4", name=name, config={"lr": lr, "opt": {"m": 0.9}}, root=root,
                       capture_git=False, capture_console=False, _environ={})
    run.log({"acc": acc, "loss": float("nan")}, step=0)
    run.finish()
    return run.dir


def test_note_run_leaves_nothing_for_the_next_reader_and_matches_a_rebuild(tmp_path: Path) -> None:
    from labtrack._index import Index, note_run

    root = tmp_path / "root"
    dirs = [_finished_run(root, f"r{i}", 0.1 * (i + 1), 0.5 + i / 10) for i in range(3)]
    assert all(note_run(root, d) for d in dirs)
    with Index(root) as index:
        assert index.refresh() == {"added": 0, "updated": 0, "removed": 0, "unreadable": 0, "total": 3}
        noted = {r["id"]: r for r in index.query(with_stats=True)[1]}
    with Index(root, path=tmp_path / "rebuilt.sqlite") as fresh:
        assert fresh.refresh()["added"] == 3
        rebuilt = {r["id"]: r for r in fresh.query(with_stats=True)[1]}
    assert noted.keys() == rebuilt.keys()
    for k in noted:
        a, b = dict(noted[k]), dict(rebuilt[k])
        assert math_equal(a.pop("metrics"), b.pop("metrics"))
        a.pop("stats"), b.pop("stats")
        assert a == b


def math_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import math

    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def test_a_change_after_note_run_is_still_seen(tmp_path: Path) -> None:
    import labtrack
    from labtrack._index import Index, note_run

    root = tmp_path / "root"
    d = _finished_run(root, "r", 0.1, 0.5)
    assert note_run(root, d)
    book = labtrack.open(root)
    book.tag(book.runs()[0].id, "best")
    assert book.runs()[0].tags == ["best"]
    with Index(root) as index:
        assert index.query()[1][0]["tags"] == ["best"]


def test_note_run_never_raises_and_gives_up_on_a_busy_index(tmp_path: Path) -> None:
    import sqlite3
    import time

    from labtrack import _index
    from labtrack._index import Index, note_run

    root = tmp_path / "root"
    d = _finished_run(root, "r", 0.1, 0.5)
    assert note_run(root, tmp_path / "elsewhere" / "x" / "y") is False  # not under root
    assert note_run(root, root / "s4" / "missing") is False
    with Index(root) as index:
        index.refresh()
    holder = sqlite3.connect(str(root / ".labtrack" / "index.sqlite"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        t = time.monotonic()
        assert note_run(root, d) is False
        assert time.monotonic() - t < 5 * _index.NOTE_BUSY_MS / 1000 + 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert note_run(root, d) is True
    (d / "summary.json").write_text("{not json")
    assert note_run(root, d) is False  # unreadable: left for a reader, which reports it
    with Index(root) as index:
        index.refresh()
        assert [rel for rel, _ in index.problems()] == [f"s4/{d.name}"]


def test_table_of_listed_runs_equals_table_by_reference(tmp_path: Path) -> None:
    import labtrack

    root = tmp_path / "root"
    for i in range(4):
        _finished_run(root, f"r{i}", 0.1 * (i + 1), 0.5 + i / 10)
    book = labtrack.open(root)
    listed = book.runs(experiment="s4")
    a = book.table(listed, params=["lr", "opt.m"], metrics=["acc", "acc:max", "loss"])
    b = book.table([v.id for v in listed], params=["lr", "opt.m"], metrics=["acc", "acc:max", "loss"])
    c = book.table(experiment="s4", params=["lr", "opt.m"], metrics=["acc", "acc:max", "loss"])
    import pandas as pd

    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    assert list(a.columns) == ["experiment", "name", "status", "lr", "opt.m", "acc", "acc:max", "loss"]
    assert a["lr"].tolist() == [0.4, 0.30000000000000004, 0.2, 0.1]
    assert a["loss"].isna().all() and (a["status"] == "finished").all()


def test_table_derives_crashed_from_a_dead_pid(tmp_path: Path) -> None:
    import json
    import socket

    import labtrack

    root = tmp_path / "root"
    d = _finished_run(root, "dead", 0.1, 0.5)
    meta = json.loads((d / "run.json").read_text())
    p = subprocess.Popen(["true"])
    p.wait()  # a pid that no longer runs
    meta.update(status="running", ended=None, pid=p.pid, host=socket.gethostname())
    (d / "run.json").write_text(json.dumps(meta))
    _finished_run(root, "alive", 0.2, 0.6)
    book = labtrack.open(root)
    table = book.table(book.runs(), params=["lr"], metrics=["acc"])
    assert dict(zip(table["name"], table["status"])) == {"dead": "crashed", "alive": "finished"}
    assert book.table(status="crashed", params=["lr"])["name"].tolist() == ["dead"]


# -- one work tree, many runs: git asked once while nothing changes


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots kept even for files changed a moment ago (tests sleep past the clock tick)."""
    monkeypatch.setattr(_provenance, "_RACY_NS", 0)
    monkeypatch.setattr(_provenance, "_SNAPSHOTS", {})
    monkeypatch.setattr(_provenance, "_UNWATCHABLE", {})
    monkeypatch.setattr(_provenance, "_RETRY", {})


def _tick() -> None:
    import time

    time.sleep(0.05)  # past the file system's coarse clock


def _count_git(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []
    real_popen, real_run = subprocess.Popen, subprocess.run

    def popen(*args: Any, **kwargs: Any) -> Any:
        started.append(args[0])
        return real_popen(*args, **kwargs)

    def run(*args: Any, **kwargs: Any) -> Any:
        started.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(subprocess, "run", run)
    return started


def _same_as_git(repo: Path, exclude: Path | None = None) -> Any:
    fast = _fast(repo, exclude)
    assert fast == _slow(repo, exclude)
    return fast


def test_snapshot_answers_without_git_until_the_work_tree_changes(
        git_repo: Path, watched: None, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = git_repo.resolve()
    (repo / "empty").mkdir()
    (repo / "only_ignored").mkdir()
    (repo / "only_ignored" / "ignored.txt").write_text("x\n")
    (repo / "cache").mkdir()
    (repo / ".gitignore").write_text("ignored.txt\nlabtrack/\ncache/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    _tick()
    _fast(repo)  # takes the snapshot
    started = _count_git(monkeypatch)
    first = _fast(repo)
    assert started == [] and first[0]["dirty"] is False

    changes = [  # (a change, whether git's answer changes)
        (lambda: (repo / "train.py").write_text("print('edited')\n"), True),   # a tracked file
        (lambda: (repo / "new.py").write_text("n\n"), True),                    # a new file at the top
        (lambda: (repo / "empty" / "a.py").write_text("a\n"), True),            # in an empty folder
        (lambda: (repo / "only_ignored" / "b.py").write_text("b\n"), True),     # beside ignored files
        (lambda: (repo / "deep" / "er").mkdir(parents=True), False),            # a new empty folder
        (lambda: (repo / "deep" / "er" / "c.py").write_text("c\n"), True),      # a file in it
        (lambda: (repo / "cache" / "d.py").write_text("d\n"), False),           # in an ignored folder
        (lambda: (repo / ".gitignore").write_text("ignored.txt\nlabtrack/\ncache/\n*.py\n"), True),
        (lambda: git(repo, "add", "-A"), False),                                # staged: same diff HEAD
        (lambda: git(repo, "commit", "-q", "-m", "more"), True),
        (lambda: git(repo, "checkout", "-q", "-b", "other"), True),
        (lambda: (repo / "train.py").chmod(0o755), True),
        (lambda: (repo / "train.py").unlink(), True),
    ]
    before = first
    for i, (change, differs) in enumerate(changes):
        _tick()
        change()
        _tick()
        after = _same_as_git(repo)
        assert (after != before) is differs, i
        before = after
        n = len(started)
        assert _fast(repo) == after and len(started) == n  # kept again once it was asked


def test_snapshot_ignores_the_runs_own_root_and_ignored_folders(
        git_repo: Path, watched: None, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = git_repo.resolve()
    runs = repo / "runs"  # not ignored: only `exclude` keeps it out
    runs.mkdir()
    (repo / "cache").mkdir()
    (repo / ".gitignore").write_text("cache/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    _tick()
    first = _same_as_git(repo, runs)
    started = _count_git(monkeypatch)
    _tick()
    (runs / "exp" / "run1").mkdir(parents=True)
    (runs / "exp" / "run1" / "run.json").write_text("{}")
    (repo / "cache" / "blob.bin").write_bytes(b"x")
    _tick()
    assert _fast(repo, runs) == first and started == []


def test_no_snapshot_for_a_large_work_tree(git_repo: Path, watched: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    repo = git_repo.resolve()
    monkeypatch.setattr(_provenance, "WATCH_MAX", 3)
    for i in range(5):
        (repo / f"d{i}").mkdir()
    _tick()
    _same_as_git(repo)
    assert _provenance._SNAPSHOTS == {} and len(_provenance._UNWATCHABLE) == 1
    started = _count_git(monkeypatch)
    _same_as_git(repo)
    assert not any("ls-files" in list(a) and "--ignored" in list(a) for a in started)


def test_a_work_tree_changed_a_moment_ago_is_not_watched_until_it_settles(
        git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(_provenance, "_SNAPSHOTS", {})
    monkeypatch.setattr(_provenance, "_UNWATCHABLE", {})
    monkeypatch.setattr(_provenance, "_RETRY", {})
    repo = git_repo.resolve()
    (repo / "train.py").write_text("print('just now')\n")
    _same_as_git(repo)
    assert _provenance._SNAPSHOTS == {}
    (retry,) = _provenance._RETRY.values()
    assert time.time() < retry <= time.time() + _provenance._RACY_NS / 1e9 + 1
    started = _count_git(monkeypatch)
    assert _fast(repo)[0]["dirty"] is True  # before then: only status and diff, nothing to watch
    assert [a[1] for a in started] == ["status", "diff"]
