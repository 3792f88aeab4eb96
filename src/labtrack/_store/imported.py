"""Runs brought in from another tool: their ids, their state, and run.json's last touches.

An imported run's id is derived from its source (tool + source id) and its start time, so a
second import of the same source finds the run the first one made: `YYYYMMDD-HHMMSS-xxxxxx`
like any run id (sorting by start time still works), with the six characters from a hash of
the source instead of random ones. run.json's "imported_from" says where it came from; its
"complete" is false until the importer has written everything, so an import cut off half way
is recognised and redone on the next try (docs/import-export.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import layout
from .files import atomic_write_json
from .rundir import RunDir, find_run

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def source_key(tool: str, source_id: str) -> str:
    """The stable key of one source run: what makes a re-import find the earlier one."""
    return f"{tool}:{source_id}"


def imported_run_id(tool: str, source_id: str, started: float | None) -> str:
    """The run id an import of (`tool`, `source_id`) gets: the same on every import."""
    digest = hashlib.sha256(source_key(tool, source_id).encode()).digest()
    suffix = "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:6])
    t = time.gmtime(started if started is not None and started > 0 else 0)
    return time.strftime("%Y%m%d-%H%M%S", t) + "-" + suffix


def previous(root: Path, run_id: str) -> tuple[RunDir | None, dict[str, Any] | None]:
    """The run an earlier import with this id left, and its "imported_from" (None when absent,
    or when the folder holds a run that was not imported: that is an id clash, not ours)."""
    found = find_run(root, run_id)
    if found is None:
        return None, None
    meta = found.raw_meta()
    origin = meta.get("imported_from") if isinstance(meta, dict) else None
    return found, origin if isinstance(origin, dict) else None


def discard(run: RunDir) -> None:
    """Remove the folder of an import that was cut off, so it can be written again."""
    path = Path(run.real_path)
    meta = run.raw_meta()
    origin = meta.get("imported_from") if isinstance(meta, dict) else None
    if not isinstance(origin, dict):  # never delete a run this module did not make
        raise ValueError(f"{path} is not an imported run")
    shutil.rmtree(path)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def mark(run_dir: Path, origin: dict[str, Any], *, complete: bool, started: float | None = None,
         ended: float | None = None, status: str | None = None, fields: dict[str, Any] | None = None,
         env: dict[str, Any] | None = None) -> None:
    """Rewrite run.json of an imported run: where it came from, its own start and end times and
    status (not the importing process's), with pid/host cleared unless the source knew them.

    Args:
        origin: {"tool", "version", "source", "source_id", "key", ...}; "complete" is set here.
        fields: more run.json keys the source has (host, user, command, git, comment, tags...).
        env: the source machine's description, when it has one: written as env.json in place
            of the importing machine's (which would mislead, and is removed).
    """
    path = RunDir(run_dir).file(layout.RUN_JSON)
    if complete:  # env.json first: run.json saying "complete" is the last write
        env_path = Path(run_dir) / layout.ENV_JSON
        if env is not None:
            atomic_write_json(env_path, env)
        elif env_path.exists():
            env_path.unlink()
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    raw["imported_from"] = {**origin, "complete": complete}
    if complete:
        raw.update({"pid": None, "host": None, "command": None, "user": None})
        if started is not None:
            raw["started"] = _iso(started)
        if ended is not None:
            raw["ended"] = _iso(ended)
        if status is not None:
            raw["status"] = status
        raw.update(fields or {})
    atomic_write_json(path, raw)


def write_file(run_dir: Path, relpath: str, data: bytes) -> Path:
    """A file the source had that labtrack keeps as it was (under artifacts/ or files/)."""
    from .files import atomic_write_bytes

    target = RunDir(run_dir).file(relpath)  # refused when it leads outside the run
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target


def copy_file(run_dir: Path, relpath: str, source: Path) -> Path:
    """`write_file` of the file at `source`, copied in chunks into its place atomically."""
    from .files import atomic_writer

    target = RunDir(run_dir).file(relpath)  # refused when it leads outside the run
    with open(source, "rb") as src, atomic_writer(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target
