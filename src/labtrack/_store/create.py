"""Creating, opening and resuming a run directory: the writer side of the store.

The reader side is `_store/reader.py`; paths are `_store/layout.py`'s.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from .._names import relpath_to_name
from ..errors import LabtrackValueError, RunNotFoundError, RunStateError
from . import layout
from .reader import derive_status, pid_alive
from .rundir import iter_runs

UNTRACKED_TOTAL_CAPS = 20  # untracked files copied in all: at most 20x the per-file cap
UNTRACKED_TOTAL_FILES = 1000
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def existing_names(run_dir: Path, folder: str) -> list[str]:
    """The files already under `run_dir/folder`, as unescaped paths ("a.csv", "train/loss.csv");
    under media/ without the step folder. Hidden files (temporary ones) are left out.

    Returns:
        The paths, in no particular order; [] when the folder does not exist.
    """
    base = run_dir / folder
    out = []
    for dirpath, _dirs, names in os.walk(base):
        for fn in names:
            if fn.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
            if folder == layout.MEDIA_DIR:
                rel = rel.partition("/")[2]
                if not rel:
                    continue
            out.append(relpath_to_name(rel))
    return out


def refuse_live(run_dir: Path, meta: dict[str, Any], now: float, stale_seconds: float) -> None:
    """Refuse to resume a run another live process (or this one) is still writing: two writers
    would interleave their points and overwrite each other's summary and status."""
    pid, host = meta.get("pid"), meta.get("host")
    this_host = socket.gethostname()
    alive = pid_alive(pid) if host == this_host and isinstance(pid, int) else None
    try:
        beat: float | None = (run_dir / layout.HEARTBEAT).stat().st_mtime
    except OSError:
        beat = None
    if derive_status(meta, beat, now, this_host, alive, stale_seconds) != "running":
        return
    since = f", heartbeat {now - beat:.0f} s ago" if beat is not None else ""
    raise RunStateError(
        f"run {meta.get('id', run_dir.name)} is still running (pid {pid} on {host}{since}); resuming "
        "it would mix two writers' points. Stop that process first (or finish the run in this "
        f"one); a run whose process died reads as crashed after {stale_seconds:g} s without a "
        "heartbeat (LABTRACK_STALE_SECONDS) and can then be resumed")


def cut_torn_lines(run_dir: Path) -> None:
    """Cut a partial last line (a crash mid-write) off every append-only file before resuming,
    so new lines are not glued onto it."""
    for dirpath, _dirs, names in os.walk(run_dir):
        for fn in names:
            if not (fn.endswith(".csv") or fn.endswith(".jsonl") or fn == layout.CONSOLE_LOG):
                continue
            if os.path.relpath(dirpath, run_dir).split(os.sep)[0] in ("tables", "media", "artifacts"):
                continue  # rewritten whole, never appended
            path = os.path.join(dirpath, fn)
            with open(path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    continue
                f.seek(max(0, size - 65536))
                tail = f.read()
                if tail.endswith(b"\n"):
                    continue
                cut = tail.rfind(b"\n")
                f.truncate(size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size))


def find_run_to_resume(root: Path, ref: str) -> Path:
    runs = [rd.path for rd in iter_runs(root)]
    matches = [d for d in runs if d.name == ref]
    if not matches:
        matches = [d for d in runs if d.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFoundError(f"no run {ref!r} under {root} to resume; give a run id from `labtrack ls`")
    raise RunNotFoundError(f"{ref!r} matches {len(matches)} runs under {root}: "
                           + ", ".join(d.name for d in matches[:10]))


def open_to_resume(root: Path, ref: str, now: float, stale_seconds: float) -> tuple[Path, dict[str, Any]]:
    """The run directory `ref` names under `root` and its run.json, to resume it.

    Raises:
        RunNotFoundError: no run, or several, match `ref`.
        RunStateError: a live process still writes it.
        FormatError: its run.json cannot be read.
    """
    from .reader import checked_meta, read_json

    run_dir = find_run_to_resume(root, ref)
    meta = checked_meta(read_json(run_dir / layout.RUN_JSON), run_dir)
    refuse_live(run_dir, meta, now, stale_seconds)
    return run_dir, meta


def new_run_dir(root: Path, experiment: str, now: float, run_id: str | None = None) -> tuple[str, Path]:
    """A fresh run id (or `run_id`, checked) and the directory it will have (not created yet).

    Raises:
        LabtrackValueError: `run_id` is not 1-64 letters, digits, '-' or '_' (leading letter
            or digit), or a run of that id already exists under `root`.
    """
    if run_id is not None:
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise LabtrackValueError(
                f"run id {run_id!r} is not allowed; use 1-64 letters, digits, '-' or '_', "
                "starting with a letter or digit")
        if any(rd.path.name == run_id for rd in iter_runs(root)):
            raise LabtrackValueError(f"a run {run_id!r} already exists under {root}; resume it "
                                     f"(resume={run_id!r}) or choose another id")
        return run_id, layout.run_dir(root, experiment, run_id)
    run_id = layout.new_run_id(now)
    run_dir = layout.run_dir(root, experiment, run_id)
    while run_dir.exists():  # same second, same random suffix: draw again
        run_id = layout.new_run_id(now)
        run_dir = layout.run_dir(root, experiment, run_id)
    return run_id, run_dir


def new_meta(*, run_id: str, experiment: str, name: str | None, comment: str | None, tags: list[str],
             started: str, seed: int | None, parent: str | None, user: str | None,
             command: dict[str, Any], group: str | None = None,
             job_type: str | None = None) -> dict[str, Any]:
    """run.json of a run that starts now (docs/format.md); "group" and "job_type" only when given."""
    meta = {
        "format_version": layout.FORMAT_VERSION,
        "id": run_id,
        "experiment": experiment,
        "name": name if name is not None else run_id,
        "comment": comment or "",
        "tags": tags,
        "status": "running",
        "started": started,
        "ended": None,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": user,
        "command": command,
        "git": None,
        "seed": seed,
        "parent": parent,
        "error": None,
        "checkpoints": {"last": None, "best": None, "mode": None, "metric": None},
    }
    meta.update({k: v for k, v in (("group", group), ("job_type", job_type)) if v is not None})
    return meta


def materialise(run_dir: Path, meta: dict[str, Any], params: Any, *, resumed: bool) -> None:
    """Create (or reopen) the run directory and write run.json, params.json and the heartbeat.

    A resumed run first has any torn last line cut off its append-only files. A directory
    this call created is removed again when a write fails, so a failed start leaves nothing.

    Raises:
        RunStateError: the folder or a file cannot be written (the message says how to fix it).
    """
    from .files import atomic_write_json

    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resumed:
            cut_torn_lines(run_dir)
        atomic_write_json(run_dir / layout.RUN_JSON, meta)
        atomic_write_json(run_dir / layout.PARAMS_JSON, params)
        (run_dir / layout.HEARTBEAT).touch()
    except OSError as e:
        if created:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise RunStateError(f"cannot create the run directory {run_dir}: {e.strerror or e} "
                            f"({e.filename or run_dir}); free some space or choose another root "
                            "(LABTRACK_ROOT)") from e


def copy_untracked(run_dir: Path, root: Path, git_root: Path, names: list[str], cap: int) -> None:
    """Copy the untracked files `names` of `git_root` into the run's source/untracked/, each
    at most `cap` bytes, listing what was left out in SKIPPED.txt (never the runs themselves)."""
    from .files import atomic_write_bytes

    base = run_dir / layout.UNTRACKED_DIR
    skipped = []
    root_resolved = root.resolve()
    # In all at most UNTRACKED_TOTAL_FILES files and UNTRACKED_TOTAL_CAPS times the per-file
    # cap: a forgotten data folder that is not ignored must not be copied into every run.
    budget, copied = cap * UNTRACKED_TOTAL_CAPS, 0
    for rel in names:
        src = git_root / rel
        try:
            if root_resolved in src.resolve().parents:  # our own run directories
                continue
            size = src.stat().st_size
            if size > cap or not src.is_file():
                skipped.append(f"{rel}\t{size} bytes")
                continue
            if size > budget or copied >= UNTRACKED_TOTAL_FILES:
                skipped.append(f"{rel}\t{size} bytes, over the total of {cap * UNTRACKED_TOTAL_CAPS} "
                               f"bytes or {UNTRACKED_TOTAL_FILES} files")
                continue
            atomic_write_bytes(base / rel, src.read_bytes())
            budget -= size
            copied += 1
        except OSError:
            skipped.append(f"{rel}\tunreadable")
    if skipped:
        atomic_write_bytes(base / layout.SKIPPED_TXT, ("\n".join(skipped) + "\n").encode())
