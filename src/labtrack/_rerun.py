"""Run a recorded run again: from its commit, its diff and its untracked files.

`plan_rerun` reads what a run recorded (run.json `git` and `command`, `source/diff.patch`,
`source/untracked/`) and checks it can be reproduced; `rerun` makes a git worktree at the
recorded commit, applies the diff, copies the untracked files and runs the recorded command
in it, as a new run whose `parent` is the original (the private _LABTRACK_PARENT) or, with
`continue_=True`, as the same run resumed (the private _LABTRACK_RESUME).

Code the interpreter imports from inside the repository through its `sys.path` (an editable
install that adds `<repo>/src` with a .pth file, or PYTHONPATH) is taken from the worktree:
those folders are mapped into it and put first on the command's PYTHONPATH.

What is not reproduced: ignored files (data, caches) are not in the worktree, untracked
files larger than LABTRACK_UNTRACKED_MAX_BYTES were not recorded, and packages installed
from the repository by other means (a regular install, an import hook) come from wherever
they were installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from ._settings import PARENT_ENV, RESUME_ENV
from ._store.rundir import RunDir, iter_runs
from .errors import GitStateError, LabtrackError, LabtrackValueError, RunNotFoundError, RunStateError

_ENV_KEYS = (RESUME_ENV, PARENT_ENV)


@dataclass(frozen=True)
class RerunPlan:
    """Everything `rerun` will do, checked before anything is created."""

    run_id: str
    run_dir: Path
    root: Path
    repo: Path
    commit: str
    patch: Path | None
    untracked: list[str]
    skipped: list[str]
    python: str
    args: list[str]
    script_in_repo: str | None
    cwd_in_repo: str | None
    cwd: Path
    env: dict[str, str]
    continue_: bool
    notes: list[str] = field(default_factory=list)
    import_paths: list[str] = field(default_factory=list)

    def command_args(self, worktree: Path) -> list[str]:
        """The arguments after the interpreter, with the script moved into `worktree`."""
        if self.script_in_repo is None:
            return list(self.args)
        return [(worktree / self.script_in_repo).as_posix(), *self.args[1:]]

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (for `--dry-run --json`)."""
        return {
            "run": self.run_id, "run_dir": str(self.run_dir), "root": str(self.root),
            "repo": str(self.repo), "commit": self.commit,
            "diff": str(self.patch) if self.patch else None, "untracked": self.untracked,
            "skipped": self.skipped, "cwd": (f"<worktree>/{self.cwd_in_repo}" if self.cwd_in_repo is not None
                                             else str(self.cwd)),
            "command": [self.python, *self.command_args(Path("<worktree>"))], "env": self.env,
            "continue": self.continue_, "notes": self.notes,
            "pythonpath": [f"<worktree>/{p}" for p in self.import_paths],
        }

    def describe(self) -> str:
        """A few lines for `--dry-run` and for the log of a re-run."""
        cwd = f"<worktree>/{self.cwd_in_repo}" if self.cwd_in_repo is not None else str(self.cwd)
        lines = [
            f"run:       {self.run_id} ({self.run_dir})",
            f"repo:      {self.repo}",
            f"commit:    {self.commit}",
            f"diff:      {self.patch if self.patch else '(none: the run was started on a clean tree)'}",
            f"untracked: {len(self.untracked)} file(s)" + (f", {len(self.skipped)} not recorded" if self.skipped else ""),
            f"cwd:       {cwd}",
            f"command:   {' '.join([self.python, *self.command_args(Path('<worktree>'))])}",
            "env:       " + " ".join(f"{k}={v}" for k, v in sorted(self.env.items())),
        ]
        if self.import_paths:
            lines.append("pythonpath: " + os.pathsep.join(f"<worktree>/{p}" for p in self.import_paths))
        lines += [f"note:      {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class RerunResult:
    """The outcome of :func:`rerun`."""

    run_ids: list[str]
    returncode: int
    worktree: Path | None


def resolve_run(root: Path, ref: str) -> Path:
    """Find one run under `root` by full id, unique id prefix, or "experiment/name".

    The same resolution as `labtrack show` and `book[ref]` (through the Book).

    Args:
        root: the root folder of runs.
        ref: `20261121-141503-k3f9qz`, a prefix such as `20261121-1415`, or `mnist/baseline`.

    Returns:
        The run directory.

    Raises:
        RunNotFoundError: nothing matches, or more than one run does.

    Example:
        >>> resolve_run(Path("labtrack"), "mnist/baseline")
    """
    return resolve_rundir(root, ref).path


def resolve_rundir(root: Path, ref: str) -> RunDir:
    """Like :func:`resolve_run`, the run's :class:`RunDir` (checked to stay inside `root`).

    Raises:
        RunNotFoundError: nothing matches, or more than one run does.
        OutsideRootError: the run leads outside the root.
    """
    from ._book import Book

    return Book(Path(root))[ref].run


def plan_rerun(
    root: Path,
    ref: str,
    *,
    continue_: bool = False,
    repo: Path | None = None,
    python: str | None = None,
) -> RerunPlan:
    """Check that a run can be re-run and say how.

    Args:
        root: the root folder of runs (the new run is written there too).
        ref: the run: full id, unique id prefix, or experiment/name.
        continue_: resume the same run (_LABTRACK_RESUME) instead of starting a new one.
        repo: the git repository to take the commit from (default: the one the run
            recorded, `git.root`); useful on another machine or in another clone.
        python: the interpreter (default: the recorded one when it still exists, else
            this one).

    Returns:
        The plan; nothing has been created yet.

    Raises:
        RunNotFoundError: no such run.
        RunStateError: the run recorded no git commit or no script command, or (with
            `continue_`) it is still running.
        GitStateError: the repository is missing or does not have the commit.

    Example:
        >>> print(plan_rerun(Path("labtrack"), "mnist/baseline").describe())
    """
    root = Path(root).resolve()
    run = resolve_rundir(root, ref)
    run_dir = run.path
    meta = run.meta()
    run_id = str(meta.get("id") or run.id)
    git = meta.get("git")
    if not isinstance(git, dict) or not git.get("commit"):
        raise RunStateError(
            f"run {run_id} recorded no git commit (it was not started in a git repository with a "
            "commit, or with capture_git=False); it cannot be re-run from source"
        )
    commit = str(git["commit"])
    if continue_ and meta.get("status") == "running":
        raise RunStateError(
            f"run {run_id} is still running (pid {meta.get('pid')} on {meta.get('host')}); "
            "it can be continued only after it stopped"
        )
    command = meta.get("command")
    if not isinstance(command, dict) or not command.get("argv"):
        raise RunStateError(f"run {run_id} recorded no command line; it cannot be re-run")
    if "notebook" in command:  # argv is the kernel's launcher, not the notebook
        raise RunStateError(
            f"run {run_id} was started in a Jupyter notebook ({command['notebook'] or 'path not known'}); "
            "re-run it by running the notebook: the cells it executed are in its source/notebook.py")
    argv = [str(a) for a in command["argv"]]
    if argv[0] in ("", "-c", "-"):
        raise RunStateError(
            f"run {run_id} was started from `python -c`, stdin or an interactive session "
            f"(argv {argv!r}); only runs started from a script can be re-run"
        )

    recorded_root = Path(str(git.get("root") or ""))
    repo_path = _find_repo(root, meta, repo, commit)

    patch_or_none = run.diff_file()
    untracked, skipped = run.untracked()

    cwd = Path(str(command.get("cwd") or recorded_root))
    cwd_in_repo = _relative(cwd, recorded_root)
    notes: list[str] = []
    if cwd_in_repo is None:
        notes.append(f"the recorded cwd {cwd} is outside the repository; the command runs there")
    script = command.get("script")
    args = list(argv)
    script_in_repo = None
    module = command.get("module")
    if isinstance(module, str) and module:
        args = ["-m", module, *argv[1:]]
    elif Path(argv[0]).is_absolute():
        script_in_repo = _relative(Path(argv[0]), recorded_root)
        if script_in_repo is None:
            notes.append(f"the script {argv[0]} is outside the repository; it runs from where it is")
    elif cwd_in_repo is None and script:
        script_in_repo = _relative(Path(str(script)), recorded_root)
    if skipped:
        notes.append(f"{len(skipped)} untracked file(s) were too large to record and are missing: "
                     + ", ".join(skipped[:5]))
    if continue_ and not run.has_checkpoints():
        notes.append(f"run {run_id} has no checkpoints; the script starts its training from the beginning")

    recorded_python = command.get("python")
    if python is None:
        python = str(recorded_python) if recorded_python and os.path.exists(str(recorded_python)) else sys.executable
    import_paths = _import_paths_in_repo(python, recorded_root, repo_path)
    env = {"LABTRACK_ROOT": str(root)}
    env[RESUME_ENV if continue_ else PARENT_ENV] = run_id
    return RerunPlan(run_id=run_id, run_dir=run_dir, root=root, repo=repo_path, commit=commit,
                     patch=patch_or_none, untracked=untracked, skipped=skipped, python=python,
                     args=args, script_in_repo=script_in_repo, cwd_in_repo=cwd_in_repo, cwd=cwd,
                     env=env, continue_=continue_, notes=notes, import_paths=import_paths)


def rerun(
    plan: RerunPlan,
    *,
    workdir: Path | None = None,
    keep: bool = False,
    environ: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    stdout: IO[str] | int | None = None,
) -> RerunResult:
    """Carry out a plan from :func:`plan_rerun`: worktree, diff, untracked files, command.

    The command's output goes to this process's stdout and stderr. The worktree is removed
    afterwards when the command succeeded and `keep` is False; otherwise it is kept for
    inspection (`git worktree remove --force PATH` removes it).

    Args:
        plan: what to run.
        workdir: an empty or missing folder for the worktree (default: a new temporary one).
        keep: keep the worktree even when the command succeeded.
        environ: the environment for the command, before LABTRACK_ROOT and _LABTRACK_PARENT
            (or _LABTRACK_RESUME) are set (default: this process's).
        echo: where progress lines go (default: stderr).
        stdout: where the command's stdout goes (default: this process's stdout).

    Returns:
        The ids of the runs the command wrote (new runs whose parent is the original, or the
        original itself when continuing), its exit status, and the kept worktree.

    Raises:
        GitStateError: the worktree cannot be made or the recorded diff does not apply.
        LabtrackValueError: `workdir` exists and is not empty.

    Example:
        >>> result = rerun(plan_rerun(Path("labtrack"), "mnist/baseline"))
        >>> result.run_ids
    """
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    if workdir is None:
        holder = Path(tempfile.mkdtemp(prefix=f"labtrack-rerun-{plan.run_id}-"))
        worktree = holder / plan.repo.name
    else:
        holder = None
        worktree = Path(workdir).resolve()
        if worktree.exists() and any(worktree.iterdir()):
            raise LabtrackValueError(f"workdir {worktree} is not empty; give a new or empty folder")
    made = _git(plan.repo, "worktree", "add", "--detach", str(worktree), plan.commit)
    if made.returncode != 0:
        _remove_holder(holder)
        raise GitStateError(f"cannot make a worktree of {plan.repo} at {plan.commit}: {made.stderr.strip()}")
    ok = False
    try:
        if plan.patch is not None:
            applied = _git(worktree, "apply", "--binary", "--whitespace=nowarn", str(plan.patch))
            if applied.returncode != 0:
                raise GitStateError(
                    f"the recorded diff {plan.patch} does not apply to commit {plan.commit}: "
                    f"{applied.stderr.strip()}"
                )
        _copy_untracked(RunDir(plan.run_dir, plan.root), plan.untracked, worktree)
        if plan.cwd_in_repo is not None:
            cwd = worktree / plan.cwd_in_repo
            cwd.mkdir(parents=True, exist_ok=True)  # an empty folder is in no commit
        elif plan.cwd.is_dir():
            cwd = plan.cwd
        else:
            cwd = worktree
            say(f"labtrack: the recorded cwd {plan.cwd} is not on this machine; running in {worktree}")
        args = plan.command_args(worktree)
        env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in _ENV_KEYS}
        env.update(plan.env)
        if plan.import_paths:  # the worktree's code, not the checkout's
            mapped = [str(worktree / rel) for rel in plan.import_paths if (worktree / rel).is_dir()]
            env["PYTHONPATH"] = os.pathsep.join(mapped + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        before = {d.id for d in iter_runs(plan.root)}
        what = "continuing run" if plan.continue_ else "re-running run"
        say(f"labtrack: {what} {plan.run_id} at {plan.commit[:12]} in {worktree}")
        proc = subprocess.Popen([plan.python, *args], cwd=cwd, env=env, stdout=stdout)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too; let it finish its run
            code = proc.wait()
        if plan.continue_:
            ids = [plan.run_id]
        else:
            ids = []
            for d in iter_runs(plan.root):
                if d.id not in before:
                    try:
                        meta = d.raw_meta()
                    except (OSError, LabtrackError):
                        continue  # half written, or not a run labtrack can read
                    if meta.get("parent") == plan.run_id:
                        ids.append(d.id)
        ok = code == 0
        return RerunResult(run_ids=ids, returncode=code, worktree=None if ok and not keep else worktree)
    finally:
        if ok and not keep:
            _git(plan.repo, "worktree", "remove", "--force", str(worktree))
            _remove_holder(holder)
        else:
            say(f"labtrack: kept the worktree {worktree} (remove it with: git -C {plan.repo} "
                f"worktree remove --force {worktree})")


def _find_repo(root: Path, meta: dict[str, Any], repo: Path | None, commit: str) -> Path:
    """The top folder of a repository that has `commit`.

    Tried in order: `repo` when given (and only it); the repository the run recorded; those
    of its parents (a re-run ran in a worktree that was removed afterwards); the one this
    process runs in.
    """
    run_id = str(meta.get("id"))
    if repo is not None:
        top = _toplevel(Path(repo).resolve())
        if top is None:
            raise GitStateError(f"the given repository {Path(repo).resolve()} is not there or not a git "
                                f"repository; pass --repo PATH to a clone that has commit {commit}")
        if not _has_commit(top, commit):
            raise GitStateError(f"commit {commit} recorded by run {run_id} is not in the repository {top}; "
                                "fetch it (git fetch --all) or pass --repo PATH to a clone that has it")
        return top
    tried: list[str] = []
    for candidate in _repo_candidates(root, meta):
        top = _toplevel(candidate)
        if top is None:
            tried.append(f"{candidate} (not there)")
        elif _has_commit(top, commit):
            return top
        else:
            tried.append(f"{top} (no such commit)")
    raise GitStateError(
        f"commit {commit} recorded by run {run_id} is in no repository labtrack knows of "
        f"({'; '.join(dict.fromkeys(tried))}); fetch it (git fetch --all) or pass --repo PATH to a "
        "clone that has it"
    )


def _repo_candidates(root: Path, meta: dict[str, Any]) -> Iterator[Path]:
    seen: set[str] = set()
    current: dict[str, Any] | None = meta
    while current is not None and len(seen) < 50:
        git = current.get("git")
        if isinstance(git, dict) and git.get("root"):
            yield Path(str(git["root"]))
        parent = current.get("parent")
        if not isinstance(parent, str) or not parent or parent in seen:
            break
        seen.add(parent)
        try:
            current = resolve_rundir(root, parent).raw_meta()
        except (RunNotFoundError, OSError, LabtrackError):
            break
    yield Path.cwd()


def _toplevel(path: Path) -> Path | None:
    if not str(path) or not path.is_dir():
        return None
    top = _git(path, "rev-parse", "--show-toplevel")
    return Path(top.stdout.strip()) if top.returncode == 0 else None


def _has_commit(repo: Path, commit: str) -> bool:
    return _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise GitStateError("git is not installed or not on PATH; re-running needs git")
    env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def _import_paths_in_repo(python: str, *roots: Path) -> list[str]:
    """Folders of the interpreter's sys.path inside the repository, relative to its root.

    Asked of the interpreter itself (from a neutral folder, so its cwd adds nothing), which
    sees its .pth files and the PYTHONPATH it will be given.
    """
    try:
        out = subprocess.run([python, "-c", "import json, sys; print(json.dumps(sys.path))"],
                             capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir())
        entries = json.loads(out.stdout) if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            continue
        for root in (r for r in roots if r.is_dir()):
            rel = _relative(Path(entry).resolve(), root)
            if rel is not None:
                # an ignored folder (a virtualenv inside the project) has no copy in the worktree
                if rel not in found and (rel == "." or _git(root, "check-ignore", "-q", rel).returncode != 0):
                    found.append(rel)
                break
    return found


def _relative(path: Path, base: Path) -> str | None:
    if not str(base):
        return None
    try:
        rel = path.relative_to(base)
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else "."


def _copy_untracked(run: RunDir, names: list[str], worktree: Path) -> None:
    top = worktree.resolve()
    for rel in names:
        dest = (worktree / rel).resolve()
        if top not in dest.parents:
            raise LabtrackValueError(f"untracked file {rel!r} would land outside the worktree; refusing it")
        source = run.untracked_file(rel)  # refused when it leads outside the run
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def _remove_holder(holder: Path | None) -> None:
    if holder is not None:
        shutil.rmtree(holder, ignore_errors=True)

