"""Creating, opening and resuming a run directory: the writer side of the store.

The reader side is `_store/reader.py`; paths are `_store/layout.py`'s.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from .._names import relpath_to_name
from ..errors import RunNotFoundError, RunStateError
from . import layout
from .reader import derive_status, pid_alive
from .rundir import iter_runs

# The folders whose files are named after logged names (docs/format.md), and the folder
# a per-step file of each lives in.
SCALARS_DIR = "scalars"
TEXT_DIR = "text"
HISTOGRAMS_DIR = "histograms"
MARKDOWN_DIR = "markdown"
TABLES_DIR = "tables"
MEDIA_DIR = "media"
# The provenance files (docs/format.md, source/); layout.py does not name them yet.
SOURCE_DIR = "source"
COMMIT_TXT = "commit.txt"
DIFF_PATCH = "diff.patch"
UNTRACKED_DIR = "untracked"
SKIPPED_TXT = "SKIPPED.txt"
NAMED_DIRS = (SCALARS_DIR, TEXT_DIR, HISTOGRAMS_DIR, MARKDOWN_DIR, TABLES_DIR, MEDIA_DIR)


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
            if folder == MEDIA_DIR:
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
