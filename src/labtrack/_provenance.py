"""What a run records about where it came from: git, command, environment, seeds.

Everything here runs once per run; git and the package list are collected on the writer
thread so init() returns fast. Nothing fails the run: outside a git repository, or without
git installed, the run records `git: null`.
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CREDENTIALS = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^@/]*@")


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x.git` -> `https://host/x.git`; scp-like URLs are kept."""
    return _CREDENTIALS.sub(r"\g<scheme>", url)


_GIT_ENV_OVERRIDES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


def _git(args: list[str], cwd: Path, timeout: float = 20.0) -> str | None:
    out = _git_bytes(args, cwd, timeout)
    return None if out is None else out.decode("utf-8", errors="replace")


def _git_bytes(args: list[str], cwd: Path, timeout: float = 60.0) -> bytes | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=timeout,
                           env=_git_env())
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def _git_parallel(commands: list[list[str]], cwd: Path, timeout: float = 60.0) -> list[bytes | None]:
    """Run several read-only git commands at once; each one's stdout, or None if it failed.

    Starting a git process costs a few milliseconds; a run records provenance with several,
    so running them side by side is most of what creating a run costs inside a repository.
    """
    procs: list[subprocess.Popen[bytes] | None] = []
    env = _git_env()
    for args in commands:
        try:
            procs.append(subprocess.Popen(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        except OSError:
            procs.append(None)
    out: list[bytes | None] = []
    for p in procs:
        if p is None:
            out.append(None)
            continue
        try:
            data, _ = p.communicate(timeout=timeout)
        except subprocess.SubprocessError:
            p.kill()
            p.communicate()
            out.append(None)
            continue
        out.append(data if p.returncode == 0 else None)
    return out


def _dot_git(path: Path) -> Path | None | bool:
    """The nearest `.git` (folder or file) at or above `path`, where git itself looks.

    Returns:
        Its path; None when there is none, so git would find no repository either and
        needs not be asked (a process creating many runs outside a repository then starts
        no git process at all); True when git must be asked (GIT_DIR and the like are set,
        or the folder cannot be resolved).
    """
    if any(k in os.environ for k in _GIT_ENV_OVERRIDES):
        return True
    try:
        here = path.resolve()
    except (OSError, RuntimeError):
        return True
    for d in (here, *here.parents):
        candidate = d / ".git"
        if os.path.lexists(candidate):
            return candidate
    return None


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# Per-process caches of git facts, each keyed by what would change when the fact changes
# (a process creating 500 runs asks git once, not 500 times). Bounded: cleared when large.
_ROOTS: dict[tuple[Any, ...], Path | None] = {}
_MESSAGES: dict[tuple[str, str], str] = {}
_REMOTES: dict[tuple[Any, ...], str | None] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) > 256:
        cache.clear()
    cache[key] = value
    return value


def git_root(cwd: Path) -> Path | None:
    """The top folder of the repository `cwd` is in, or None outside any repository."""
    dot = _dot_git(cwd)
    if dot is None:
        return None
    key: tuple[Any, ...] | None = None
    if isinstance(dot, Path):
        # The folder and the .git entry (and its config, which may move the work tree)
        # decide the answer; a new or removed repository changes them.
        key = (str(cwd), str(dot), _stat_key(dot), _stat_key(dot / "config"))
        if key in _ROOTS:
            return _ROOTS[key]
    out = _git(["rev-parse", "--show-toplevel"], cwd)
    root = Path(out.strip()) if out else None
    if key is not None:
        _remember(_ROOTS, key, root)
    return root


def _outside(root: Path, rel: str, exclude: Path | None) -> bool:
    """False for a file inside `exclude` (labtrack's own root of runs, when it lies in the repo)."""
    if exclude is None:
        return True
    try:
        (root / rel).resolve().relative_to(exclude.resolve())
    except ValueError:
        return True
    return False


_IGNORED: dict[tuple[Any, ...], bool] = {}


def _ignore_key(path: Path, dot: Path) -> tuple[Any, ...] | None:
    """What `git check-ignore path` depends on: every .gitignore from the repository's top
    down to the file's folder, info/exclude, the index (tracked files are never ignored),
    and the repository's and the user's git config and ignore files. None: do not cache
    (a worktree or submodule, whose .git is a file, or a path outside the folder)."""
    if not dot.is_dir():
        return None
    top = dot.parent
    try:
        rel = path.parent.resolve().relative_to(top)
    except (OSError, RuntimeError, ValueError):
        return None
    folders = [top]
    for part in rel.parts:
        folders.append(folders[-1] / part)
    home = Path(os.environ.get("HOME") or "~").expanduser()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "git"
    watched = [f / ".gitignore" for f in folders] + [
        dot / "info" / "exclude", dot / "index", dot / "config",
        home / ".gitconfig", xdg / "config", xdg / "ignore"]
    return (str(path), *(_stat_key(w) for w in watched))


def is_ignored(path: Path) -> bool:
    """True when git ignores `path` (a script in a virtualenv inside a repository).

    The answer is remembered while the ignore files, the index and the git config are
    unchanged (not a file named by core.excludesFile elsewhere).
    """
    dot = _dot_git(path.parent)
    if dot is None:
        return False  # in no repository, so ignored by none
    key = _ignore_key(path, dot) if isinstance(dot, Path) else None
    if key is not None and key in _IGNORED:
        return _IGNORED[key]
    try:
        p = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=path.parent,
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return True
    if p.returncode not in (0, 1):
        return False  # git refuses the repository (128): as before, not ignored; not cached
    ignored = p.returncode == 0
    if key is not None:
        _remember(_IGNORED, key, ignored)
    return ignored


def dirty_files(root: Path, exclude: Path | None = None) -> list[str]:
    """Changed and untracked (not ignored) files, as `git status --porcelain` names them.

    Files inside `exclude` (labtrack's root of runs) are not counted: the runs themselves
    must not make the next run dirty.
    """
    out = _git(["status", "--porcelain", "--untracked-files=all"], root) or ""
    names = [line[3:] for line in out.splitlines() if line.strip()]
    return [n for n in names if _outside(root, n.strip('"'), exclude)]


@dataclass
class GitInfo:
    meta: dict[str, Any]
    commit_txt: str
    diff: bytes
    untracked: list[str] = field(default_factory=list)


@dataclass
class _Status:
    commit: str | None
    branch: str | None
    changed: list[str]     # tracked paths that differ from HEAD (index or work tree)
    untracked: list[str]


def _parse_status(out: bytes) -> _Status:
    """`git status --porcelain=v2 --branch -z --untracked-files=all` -> its parts."""
    commit = branch = None
    changed: list[str] = []
    untracked: list[str] = []
    fields = out.decode("utf-8", errors="replace").split("\0")
    i = 0
    while i < len(fields):
        rec = fields[i]
        i += 1
        if not rec:
            continue
        if rec.startswith("# branch.oid "):
            oid = rec[len("# branch.oid "):]
            commit = None if oid == "(initial)" else oid
        elif rec.startswith("# branch.head "):
            head = rec[len("# branch.head "):]
            branch = None if head == "(detached)" else head
        elif rec.startswith("? "):
            untracked.append(rec[2:])
        elif rec.startswith("1 "):
            changed.append(rec.split(" ", 8)[8])
        elif rec.startswith("2 "):
            changed.append(rec.split(" ", 9)[9])
            i += 1  # the original path of a rename follows in its own field
        elif rec.startswith("u "):
            changed.append(rec.split(" ", 10)[10])
    return _Status(commit, branch, changed, untracked)


def _message(root: Path, commit: str) -> str:
    key = (str(root), commit)
    if key not in _MESSAGES:  # a commit's message never changes
        _remember(_MESSAGES, key, (_git(["log", "-1", "--format=%B", commit], root) or "").strip())
    return _MESSAGES[key]


def _remote(root: Path) -> str | None:
    config = root / ".git" / "config"
    key = (str(root), _stat_key(config)) if config.is_file() else None
    if key is not None and key in _REMOTES:
        return _REMOTES[key]
    remote = None
    remotes = (_git(["remote"], root) or "").split()
    if remotes:
        name = "origin" if "origin" in remotes else remotes[0]
        url = (_git(["remote", "get-url", name], root) or "").strip()
        remote = strip_credentials(url) if url else None
    if key is not None:
        _remember(_REMOTES, key, remote)
    return remote


def _collect_git_slow(root: Path, exclude: Path | None) -> GitInfo:
    """One git command per fact: for a git too old for `status --porcelain=v2`."""
    commit = (_git(["rev-parse", "HEAD"], root) or "").strip() or None
    message = _message(root, commit) if commit else ""
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], root) or "").strip() or None
    if branch == "HEAD":
        branch = None  # detached
    diff = (_git_bytes(["diff", "HEAD", "--binary"], root) or b"") if commit else b""
    untracked_out = _git(["ls-files", "--others", "--exclude-standard", "-z"], root) or ""
    untracked = [u for u in untracked_out.split("\0") if u and _outside(root, u, exclude)]
    dirty = bool(diff) or bool(untracked) or (not commit and bool(dirty_files(root, exclude)))
    meta = {"commit": commit, "message": message, "branch": branch, "dirty": dirty,
            "remote": _remote(root), "root": str(root)}
    commit_txt = f"{commit}\n\n{message}\n" if commit else ""
    return GitInfo(meta, commit_txt, diff, untracked)


def collect_git(cwd: Path, exclude: Path | None = None) -> GitInfo | None:
    """Commit, message, branch, remote (no credentials), dirty flag, diff and untracked files.

    Untracked files inside `exclude` (labtrack's root of runs) are neither copied nor counted.
    Two git processes, run side by side: `status` (commit, branch, changed and untracked
    files) and `diff HEAD`; the root, the commit message and the remote are remembered while
    what they depend on is unchanged. A process that creates many runs from one unchanged
    work tree asks git once: see :class:`_Snapshot`.
    """
    root = git_root(cwd)
    if root is None:
        return None
    key = (str(root), None if exclude is None else str(exclude), _env_key())
    snap = _SNAPSHOTS.get(key)
    if snap is not None:
        if snap.unchanged():
            return snap.copy()
        _SNAPSHOTS.pop(key, None)  # another thread may have dropped it already
    since = time.time()
    watch = (key not in _UNWATCHABLE and since >= _RETRY.get(key, 0.0)
             and (root / ".git").is_dir() and not (root / ".gitmodules").exists())
    commands = [["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"],
                ["diff", "HEAD", "--binary"]]
    if watch:
        commands += [["ls-files", "-z"],
                     ["ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z"]]
    outs = _git_parallel(commands, root)
    status_out, diff_out = outs[0], outs[1]
    if status_out is None:
        return _collect_git_slow(root, exclude)
    st = _parse_status(status_out)
    commit = st.commit
    untracked = [u for u in st.untracked if _outside(root, u, exclude)]
    if commit:
        message = _message(root, commit)
        diff = diff_out or b""
        dirty = bool(diff) or bool(untracked)
    else:  # no commit yet: every staged file is a change, and there is nothing to diff
        message, diff, st.branch = "", b"", None
        dirty = bool(untracked) or any(_outside(root, n, exclude) for n in st.changed)
    meta = {"commit": commit, "message": message, "branch": st.branch, "dirty": dirty,
            "remote": _remote(root), "root": str(root)}
    commit_txt = f"{commit}\n\n{message}\n" if commit else ""
    info = GitInfo(meta, commit_txt, diff, untracked)
    if watch and outs[2] is not None and outs[3] is not None:
        snap = _Snapshot.take(root, exclude, info, st, outs[2], outs[3], since)
        if snap is _TOO_BIG:
            _remember(_UNWATCHABLE, key, True)
        elif isinstance(snap, _Snapshot):
            _remember(_SNAPSHOTS, key, snap)
            _RETRY.pop(key, None)
        elif isinstance(snap, float):  # changed a moment ago: no use trying before then
            _remember(_RETRY, key, snap)
    return info


def _env_key() -> tuple[Any, ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items()
                        if k.startswith("GIT_") or k in ("HOME", "XDG_CONFIG_HOME")))


def _full_stat(path: str) -> tuple[int, int, int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)


#: Most paths a snapshot watches; a larger work tree is left to git (it is faster there).
WATCH_MAX = 3000
#: A path changed this recently (ns) when git ran may have changed unseen within one
#: mtime tick: such a snapshot is not kept (git's "racy clean" problem).
_RACY_NS = 2_000_000_000
_TOO_BIG = object()


@dataclass
class _Snapshot:
    """What git said about a work tree, and the stat of every path that could change it.

    Watched: every tracked and untracked file, every folder git walks (where a new file would
    appear; folders git ignores are not walked, nor the runs' own root), and HEAD, the
    branch's ref, packed-refs, the index, info/exclude and the repository's and the user's
    git config and ignore files. If all stat the same (inode, mtime, ctime, size, mode),
    git would answer the same. Not kept when something changed within `_RACY_NS` of asking
    git, for a repository with submodules or a linked worktree, nor past `WATCH_MAX` paths.
    """

    info: GitInfo
    paths: list[str]
    stats: list[tuple[int, int, int, int, int] | None]

    def unchanged(self) -> bool:
        return all(_full_stat(p) == s for p, s in zip(self.paths, self.stats))

    def copy(self) -> GitInfo:
        i = self.info
        return GitInfo(dict(i.meta), i.commit_txt, i.diff, list(i.untracked))

    @staticmethod
    def take(root: Path, exclude: Path | None, info: GitInfo, st: _Status, tracked: bytes,
             ignored: bytes, since: float) -> Any:
        """A snapshot; None (cannot be kept); `_TOO_BIG`; or, when a path changed a moment
        ago, the time at which a snapshot could be kept."""
        top = str(root)
        dot = top + "/.git"
        pruned = {top + "/" + d.rstrip("/") for d in ignored.decode("utf-8", "surrogateescape").split("\0")
                  if d.endswith("/")}
        # A folder listed as ignored only because everything in it is ignored is still
        # walked by git: keep only those an ignore pattern names.
        named = _pattern_ignored(root, pruned)
        if named is None:
            return None
        skip = {dot, *named}
        if exclude is not None:
            try:
                skip.add(str(exclude.resolve()))
            except (OSError, RuntimeError):
                return None
        files = [top + "/" + f for f in tracked.decode("utf-8", "surrogateescape").split("\0") if f]
        files += [top + "/" + f for f in info.untracked]  # not the runs' own files
        folders: list[str] = []
        stack = [top]
        while stack:
            d = stack.pop()
            folders.append(d)
            if len(folders) + len(files) > WATCH_MAX:
                return _TOO_BIG
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.name != ".git" and e.is_dir(follow_symlinks=False) and e.path not in skip:
                            stack.append(e.path)
            except OSError:
                return None
        home = os.environ.get("HOME") or os.path.expanduser("~")
        xdg = os.environ.get("XDG_CONFIG_HOME") or home + "/.config"
        # Not .git itself: every git command's lock file touches it; what git rewrites
        # (HEAD, refs, index) is replaced by a rename, so its own stat changes.
        meta = [dot + "/HEAD", dot + "/index", dot + "/packed-refs", dot + "/config",
                dot + "/info/exclude", home + "/.gitconfig", xdg + "/git/config", xdg + "/git/ignore"]
        if st.branch:
            meta.append(dot + "/refs/heads/" + st.branch)
        paths = meta + folders + files
        stats = [_full_stat(p) for p in paths]
        newest = max((max(s[1], s[2]) for s in stats if s is not None), default=0)
        if newest >= int(since * 1e9) - _RACY_NS:
            return (newest + _RACY_NS) / 1e9
        return _Snapshot(info, paths, stats)


def _pattern_ignored(root: Path, folders: set[str]) -> set[str] | None:
    """The folders among `folders` that an ignore pattern matches (`git check-ignore`)."""
    if not folders:
        return set()
    rels = sorted(f[len(str(root)) + 1:] + "/" for f in folders)
    try:
        p = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=root, env=_git_env(),
                           input="\0".join(rels).encode("utf-8", "surrogateescape") + b"\0",
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode not in (0, 1):
        return None
    out = p.stdout.decode("utf-8", "surrogateescape").split("\0")
    return {str(root) + "/" + r.rstrip("/") for r in out if r}


_SNAPSHOTS: dict[tuple[Any, ...], _Snapshot] = {}
_UNWATCHABLE: dict[tuple[Any, ...], bool] = {}
_RETRY: dict[tuple[Any, ...], float] = {}


def command_info(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line, script or module, folder and interpreter of this process (run.json).

    In a Jupyter kernel there is no script (argv[0] is the kernel's launcher, which must not
    be re-run or annotated): `script` and `module` are None and `notebook` is the notebook's
    path (None when the kernel was not told it); the key is present only in a kernel.
    """
    from . import _notebook

    argv = list(sys.argv if argv is None else argv)
    script = None
    module = None
    shell = _notebook.kernel_shell()
    if shell is None:
        main = sys.modules.get("__main__")
        main_file = getattr(main, "__file__", None)
        if main_file:
            script = str(Path(main_file).resolve())
        elif argv and argv[0] and os.path.isfile(argv[0]):
            script = str(Path(argv[0]).resolve())
        spec = getattr(main, "__spec__", None)
        module = getattr(spec, "name", None) if spec is not None else None  # `python -m pkg.mod`
    info: dict[str, Any] = {"argv": argv, "script": script, "module": module, "cwd": os.getcwd(),
                            "python": sys.executable}
    if shell is not None:
        info["notebook"] = _notebook.notebook_path(shell)
    return info


def user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def installed_packages() -> tuple[tuple[str, str], ...]:
    """(name, version) of every installed distribution, sorted by name; once per process.

    Each `*.dist-info` / `*.egg-info` on sys.path gives the `Name:` and `Version:` headers at
    the top of its METADATA (PKG-INFO): the first 4 KiB are read with one os.read, no
    importlib.metadata (its import and e-mail parser cost ~25 ms, most of a short run's finish).
    The first distribution of a name on sys.path wins, as for imports.
    """
    packages: dict[str, str] = {}
    for entry in sys.path:
        try:
            children = os.scandir(entry or ".")
        except OSError:
            continue  # a zip file, or a folder that is gone
        with children:
            for child in children:
                n = child.name
                if n.endswith(".dist-info"):
                    files = ("METADATA",)
                elif n.endswith(".egg-info"):
                    files = ("PKG-INFO",) if child.is_dir() else ("",)
                else:
                    continue
                name, version = _read_name_version(child.path, files)
                if name and name not in packages:
                    packages[name] = version
    return tuple(sorted(packages.items(), key=lambda kv: kv[0].lower()))


def _read_name_version(path: str, files: tuple[str, ...]) -> tuple[str, str]:
    for fn in files:
        try:
            fd = os.open(os.path.join(path, fn) if fn else path, os.O_RDONLY)
        except OSError:
            continue
        try:
            head = os.read(fd, 4096).decode("utf-8", "replace")
        except OSError:
            continue
        finally:
            os.close(fd)
        name = version = ""
        for line in head.split("\n", 64)[:64]:
            if not line.strip():
                break  # the headers end at the first blank line
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
            if name and version:
                break
        return name, version
    return "", ""


def environment() -> dict[str, Any]:
    """Python, platform, host, CPUs, installed packages, GPUs (env.json)."""
    return {
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine()},
        "host": socket.gethostname(),
        "user": user_name(),
        "cpus": os.cpu_count(),
        "packages": dict(installed_packages()),
        "gpus": gpus(),
    }


def gpus() -> list[dict[str, Any]]:
    """GPU names (and memory) from torch if the script imported it, else nvidia-smi."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                out = []
                for i in range(torch.cuda.device_count()):
                    props = torch.cuda.get_device_properties(i)
                    out.append({"name": props.name, "memory": int(props.total_memory)})
                return out
        except Exception:  # a broken CUDA set-up must not break the run
            pass
    return [dict(g) for g in _smi_gpus()]


@functools.lru_cache(maxsize=1)
def _smi_gpus() -> tuple[dict[str, Any], ...]:
    """GPUs as nvidia-smi lists them; once per process (a process keeps its machine)."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            p = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=10)
            out = []
            for line in p.stdout.splitlines():
                name, _, mem = line.partition(",")
                if name.strip():
                    rec: dict[str, Any] = {"name": name.strip()}
                    if mem.strip().isdigit():
                        rec["memory"] = int(mem.strip()) * 1024 * 1024
                    out.append(rec)
            return tuple(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return ()


def seed_everything(seed: int) -> None:
    """Seed random, and numpy and torch where importable."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    if "torch" in sys.modules or _importable("torch"):
        try:
            import torch

            torch.manual_seed(seed)
        except ImportError:
            pass


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
