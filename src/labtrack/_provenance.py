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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CREDENTIALS = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^@/]*@")


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x.git` -> `https://host/x.git`; scp-like URLs are kept."""
    return _CREDENTIALS.sub(r"\g<scheme>", url)


def _git(args: list[str], cwd: Path, timeout: float = 20.0) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=timeout,
                           env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return p.stdout.decode("utf-8", errors="replace")


def _git_bytes(args: list[str], cwd: Path) -> bytes | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60,
                           env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def git_root(cwd: Path) -> Path | None:
    out = _git(["rev-parse", "--show-toplevel"], cwd)
    return Path(out.strip()) if out else None


def _outside(root: Path, rel: str, exclude: Path | None) -> bool:
    """False for a file inside `exclude` (labtrack's own root of runs, when it lies in the repo)."""
    if exclude is None:
        return True
    try:
        (root / rel).resolve().relative_to(exclude.resolve())
    except ValueError:
        return True
    return False


def is_ignored(path: Path) -> bool:
    """True when git ignores `path` (a script in a virtualenv inside a repository)."""
    try:
        p = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=path.parent,
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return True
    return p.returncode == 0


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


def collect_git(cwd: Path, exclude: Path | None = None) -> GitInfo | None:
    """Commit, message, branch, remote (no credentials), dirty flag, diff and untracked files.

    Untracked files inside `exclude` (labtrack's root of runs) are neither copied nor counted.
    """
    root = git_root(cwd)
    if root is None:
        return None
    commit = (_git(["rev-parse", "HEAD"], root) or "").strip() or None
    message = (_git(["log", "-1", "--format=%B"], root) or "").strip() if commit else ""
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], root) or "").strip() or None
    if branch == "HEAD":
        branch = None  # detached
    remote = None
    remotes = (_git(["remote"], root) or "").split()
    if remotes:
        name = "origin" if "origin" in remotes else remotes[0]
        url = (_git(["remote", "get-url", name], root) or "").strip()
        remote = strip_credentials(url) if url else None
    diff = (_git_bytes(["diff", "HEAD", "--binary"], root) or b"") if commit else b""
    untracked_out = _git(["ls-files", "--others", "--exclude-standard", "-z"], root) or ""
    untracked = [u for u in untracked_out.split("\0") if u and _outside(root, u, exclude)]
    dirty = bool(diff) or bool(untracked) or (not commit and bool(dirty_files(root, exclude)))
    meta = {"commit": commit, "message": message, "branch": branch, "dirty": dirty,
            "remote": remote, "root": str(root)}
    commit_txt = f"{commit}\n\n{message}\n" if commit else ""
    return GitInfo(meta, commit_txt, diff, untracked)


def command_info(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv if argv is None else argv)
    script = None
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file:
        script = str(Path(main_file).resolve())
    elif argv and argv[0] and os.path.isfile(argv[0]):
        script = str(Path(argv[0]).resolve())
    spec = getattr(main, "__spec__", None)
    module = getattr(spec, "name", None) if spec is not None else None  # `python -m pkg.mod`
    return {"argv": argv, "script": script, "module": module, "cwd": os.getcwd(),
            "python": sys.executable}


def user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def installed_packages() -> tuple[tuple[str, str], ...]:
    """(name, version) of every installed distribution, sorted by name; once per process.

    Only the `Name:` and `Version:` headers at the top of each METADATA file are read:
    `dist.metadata` runs the e-mail parser over the whole file (long descriptions included),
    ~25x slower, and that dominated creating a run (S4 of make bench).
    """
    from importlib import metadata

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        name = version = ""
        for line in text.split("\n", 64)[:64]:
            if not line.strip():
                break  # the headers end at the first blank line
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
            if name and version:
                break
        if name:
            packages[name] = version
    return tuple(sorted(packages.items(), key=lambda kv: kv[0].lower()))


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
            return out
        except (OSError, subprocess.SubprocessError):
            pass
    return []


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
