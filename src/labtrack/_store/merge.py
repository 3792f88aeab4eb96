"""Copying run directories from one root into another (`labtrack merge`, docs/import-export.md).

A run is copied whole or not at all: its files go into a hidden folder beside the final one,
`<experiment>/.merge-<pid>-<run id>.tmp` (dot-folders are no part of a root: no listing sees
it), which is renamed to `<experiment>/<run id>` when every file is in. A merge killed half way
leaves only such a folder; the next merge into the same root removes the ones whose process
is gone and copies the run again.

Only what the run's RunDir lists is copied: a file or folder that resolves (through a
symlink) outside the run is left behind, so a merge never reads outside its source root. A
symlink that stays inside the run arrives as an ordinary file with its target's bytes.
Modification times are kept (a crashed run's stale heartbeat must stay stale).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from . import layout
from .contain import is_contained
from .files import atomic_write_json
from .reader import pid_alive
from .rundir import RunDir

_PARTIAL = re.compile(r"\.merge-(\d+)-(.+)\.(?:tmp|old)")
_STANDARD_ID = re.compile(r"\d{8}-\d{6}-[0-9a-z]{6}")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_CHUNK = 1 << 20


def clean_partial(root: Path, experiment_dir: str) -> int:
    """Remove the half-copied runs that killed merges left in `<root>/<experiment_dir>`; how
    many. Nothing is removed through an experiment folder that leads out of the root."""
    removed = 0
    experiment_path = root / experiment_dir
    if not is_contained(experiment_path, root):
        return 0
    try:
        entries = list(os.scandir(experiment_path))
    except OSError:
        return 0
    for e in entries:
        m = _PARTIAL.fullmatch(e.name)
        if m is None or pid_alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            continue
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
            removed += 1
    return removed


def _chunks(run: RunDir, relpath: str) -> Any:
    with run.open(relpath) as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                return
            yield block


def same_files(a: RunDir, b: RunDir) -> bool:
    """True when two runs hold the same files with the same bytes (modification times aside)."""
    fa, fb = a.files(), b.files()
    if [(f["path"], f["size"]) for f in fa] != [(f["path"], f["size"]) for f in fb]:
        return False
    for f in fa:
        rel = str(f["path"])
        with a.open(rel) as x, b.open(rel) as y:  # block by block: artifacts may be large
            while True:
                bx, by = x.read(_CHUNK), y.read(_CHUNK)
                if bx != by:
                    return False
                if not bx:
                    break
    return True


def digest(run: RunDir) -> str:
    """A hash of every file of the run (paths and bytes): what names a clash's new id."""
    h = hashlib.sha256()
    for f in run.files():
        rel = str(f["path"])
        h.update(f"{rel}\0{f['size']}\0".encode())
        for block in _chunks(run, rel):
            h.update(block)
    return h.hexdigest()[:16]


def clash_id(run_id: str, content: str, attempt: int = 0) -> str:
    """The id a newcomer gets when its id is taken by a different run: the same start time,
    six characters from the original id and its content; the same on every merge."""
    raw = hashlib.sha256(f"{run_id}\0{content}\0{attempt}".encode()).digest()
    suffix = "".join(_ALPHABET[b % len(_ALPHABET)] for b in raw[:6])
    return (run_id[:16] + suffix) if _STANDARD_ID.fullmatch(run_id) else f"{run_id}-{suffix}"


# Files a run rewrites while it lives; every other file is written once or only appended to.
_REWRITTEN = {layout.RUN_JSON, layout.SUMMARY_JSON, layout.HEARTBEAT}
_RANK_REWRITTEN = {layout.RANK_STATUS, layout.SUMMARY_JSON, layout.HEARTBEAT}


def _rewritten(relpath: str) -> bool:
    # derived caches (docs/format.md) are rewritten as their run changes: the row file at
    # each finish, an envelope's last partial block as points arrive
    if relpath in _REWRITTEN or relpath == layout.ROW_JSON or relpath.startswith(".lod/"):
        return True
    parts = relpath.split("/")
    return len(parts) == 3 and parts[0] == layout.RANKS_DIR and parts[2] in _RANK_REWRITTEN


def identity(run: RunDir) -> tuple[Any, ...] | None:
    """What run.json says once at a run's start and never changes: (id, experiment, started
    to the microsecond, host); None when it cannot be read. Two copies with the same identity
    are the same run, perhaps at different moments of its life (a resume in a new process
    changes the pid, so the pid is not part of it)."""
    try:
        meta = run.raw_meta()
    except (OSError, ValueError):
        return None
    return (meta.get("id"), meta.get("experiment"), meta.get("started"), meta.get("host"))


def grown(newer: RunDir, older: RunDir) -> bool:
    """True when `newer` is `older` later in its life: every file of `older` is in `newer`,
    each one written once or appended to is the same or longer with `older`'s bytes first
    (the rewritten ones, run.json, summary.json, heartbeat, may differ)."""
    sizes = {str(f["path"]): int(f["size"]) for f in newer.files()}
    for f in older.files():
        rel, size = str(f["path"]), int(f["size"])
        if rel not in sizes:
            return False
        if _rewritten(rel):
            continue
        if sizes[rel] < size:
            return False
        with newer.open(rel) as x, older.open(rel) as y:
            left = size
            while left > 0:
                by = y.read(min(_CHUNK, left))
                if not by or x.read(len(by)) != by:
                    return False
                left -= len(by)
    return True


def merged_from(run: RunDir) -> dict[str, Any] | None:
    """run.json's "merged_from" of a run that arrived under a new id, else None."""
    try:
        v = run.raw_meta().get("merged_from")
    except (OSError, ValueError):
        return None
    return v if isinstance(v, dict) else None


def renamed_copies(root: Path, experiment_dir: str, run_id: str) -> list[RunDir]:
    """The runs of `<root>/<experiment_dir>` that an earlier merge brought in as a newcomer
    with `run_id`: a clash id keeps the id's start time, so only those folders are read."""
    prefix = run_id[:16] if _STANDARD_ID.fullmatch(run_id) else run_id + "-"
    base = root / experiment_dir
    try:
        names = sorted(e.name for e in os.scandir(base) if e.name.startswith(prefix) and e.name != run_id)
    except OSError:
        return []
    out = []
    for n in names:
        try:
            rd = RunDir(base / n, root)
        except ValueError:  # leads out of the root
            continue
        origin = merged_from(rd) if rd.exists() else None
        if origin is not None and origin.get("id") == run_id:
            out.append(rd)
    return out


def copy_run(src: RunDir, dest: Path, meta: dict[str, Any] | None = None, *, replace: bool = False) -> int:
    """Copy the run `src` to `dest` (which must not exist), all or nothing; returns the bytes.

    Args:
        src: the run to copy (its RunDir lists what is copied).
        dest: `<target root>/<experiment>/<run id>`, already checked to lie inside the root.
        meta: keys to set in the copy's run.json (a new "id" and "merged_from").
        replace: `dest` holds an earlier state of the same run: it is swapped for the copy
            (moved aside, the copy renamed in, the old one removed; killed in between, the run
            is missing until the next merge copies it again, never half there).

    Raises:
        FileExistsError: `dest` appeared meanwhile (another merge copied a run there).
        OSError: a file could not be read or written (nothing is left at `dest`).
    """
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".merge-{os.getpid()}-{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    total = 0
    try:
        tmp.mkdir()
        for f in src.files():
            rel = str(f["path"])
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with src.open(rel) as r, open(target, "wb") as w:
                shutil.copyfileobj(r, w, _CHUNK)
                st = os.fstat(r.fileno())
            os.chmod(target, st.st_mode & 0o777)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            total += st.st_size
        if meta:
            path = tmp / layout.RUN_JSON
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
            raw.update(meta)
            st = os.stat(path)
            atomic_write_json(path, raw)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if replace:
            old = parent / f".merge-{os.getpid()}-{dest.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
            return total
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise FileExistsError(errno.EEXIST, f"{dest} exists already") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return total
