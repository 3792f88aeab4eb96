"""Shared fixtures: a run factory rooted in tmp_path, a git repository, a child-process helper."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import labtrack

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def _no_system_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system sampler off by default in every test (LABTRACK_SYSTEM=0), as `make_run` and
    `child_env` have it: its series would change every exact list of series a test compares.
    tests/test_system.py and the tests that want it turn it on by argument or environment."""
    monkeypatch.setenv("LABTRACK_SYSTEM", "0")


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[..., labtrack.Run]]:
    """`make_run(**kwargs)`: a Run under tmp_path/root with no git/console capture and no system
    sampler (tests/test_system.py asks for it), finished at teardown."""
    runs: list[labtrack.Run] = []

    def make(**kwargs: Any) -> labtrack.Run:
        kwargs.setdefault("experiment", "exp")
        kwargs.setdefault("root", tmp_path / "root")
        kwargs.setdefault("capture_git", False)
        kwargs.setdefault("capture_console", False)
        kwargs.setdefault("system", False)
        kwargs.setdefault("_environ", {})
        run = labtrack.Run(**kwargs)
        runs.append(run)
        return run

    yield make
    for run in runs:
        try:
            run.finish()
        except Exception:  # a test of a broken writer has already reported it
            pass


def flush(run: Any, timeout: float = 20.0) -> None:
    """`run.flush()`, failing the test instead of hanging when the writer never answers."""
    t = threading.Thread(target=run.flush, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"run.flush() did not return within {timeout}s: the writer thread is stuck or dead"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout (fails the test on a git error)."""
    p = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                       env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)})
    assert p.returncode == 0, f"git {args}: {p.stderr}"
    return p.stdout


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git repository with one commit of train.py on branch main."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test User")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "train.py").write_text("print('train')\n")
    (repo / ".gitignore").write_text("ignored.txt\nlabtrack/\n")
    git(repo, "add", "train.py", ".gitignore")
    git(repo, "commit", "-q", "-m", "first commit\n\nwith a body line")
    return repo


def run_script(code: str, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
               **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """Run `code` as a script file in a fresh interpreter (labtrack importable) and wait."""
    script = cwd / "script.py"
    script.write_text(textwrap.dedent(code))
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=child_env(env),
                          capture_output=True, timeout=timeout, **kwargs)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child interpreter: this one's, minus LABTRACK_*, plus `extra`.

    The system sampler is off (LABTRACK_SYSTEM=0) unless `extra` turns it on: its series and
    its info lines would change the files and output these tests compare exactly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_")}
    env["LABTRACK_SYSTEM"] = "0"
    env["PYTHONPATH"] = str(SRC)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def without_banner(text: str) -> str:
    """`text` without the `labtrack: run <id> ...` lines init() prints (docs/older-tools.md)."""
    return "".join(line for line in text.splitlines(keepends=True) if not banner(line))


def banner(line: str) -> bool:
    """True for the lines init() prints: `labtrack: run <id> ...` and the params table."""
    return line.startswith(("labtrack: run ", "┌", "│", "├", "└"))


def read_line(stream: Any) -> str:
    """The next line of a child's stdout that is not init()'s banner (see `banner`)."""
    line = stream.readline()
    while banner(line):
        line = stream.readline()
    return str(line)


def only_run_dir(root: Path) -> Path:
    """The one run directory under `root` (fails if there is not exactly one)."""
    dirs = [p.parent for p in root.glob("*/*/run.json")]
    assert len(dirs) == 1, f"expected one run under {root}, found {dirs}"
    return dirs[0]
