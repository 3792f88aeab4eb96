"""Reading run directories (docs/format.md). Shared by the Book, the index and the server."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import FormatError
from . import layout

_NONFINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def decode_nonfinite(obj: Any) -> Any:
    """Turn the strings "NaN", "Infinity", "-Infinity" back into floats, recursively."""
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: decode_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_nonfinite(v) for v in obj]
    return obj


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file written by labtrack; `default` when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return decode_nonfinite(json.load(f))
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as e:
        raise FormatError(f"{path} is not valid JSON ({e}); the file may have been edited by hand") from e


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of an append-only JSONL file (a trailing partial line is ignored)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n")
    out = []
    for line in data[: end + 1].splitlines():
        if line.strip():
            out.append(decode_nonfinite(json.loads(line)))
    return out


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    # A zombie (killed, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return True


def derive_status(meta: dict[str, Any], heartbeat_mtime: float | None, now: float,
                  this_host: str, pid_is_alive: bool | None, stale_seconds: float = 30.0) -> str:
    """The status a reader shows: run.json's, except a dead "running" run is "crashed".

    A run is crashed when it says running and either its pid is gone on this host
    (`pid_is_alive` is False) or its heartbeat is older than `stale_seconds`.
    """
    status = str(meta.get("status", "running"))
    if status != "running":
        return status
    if meta.get("host") == this_host and pid_is_alive is False:
        return "crashed"
    beat = heartbeat_mtime
    if beat is None:
        started = meta.get("started")
        beat = iso_to_unix(started)
    if beat is not None and now - beat > stale_seconds:
        return "crashed"
    return "running"


def iso_to_unix(text: Any) -> float | None:
    """Unix time of an ISO 8601 time as run.json stores it; None for anything else."""
    from datetime import datetime

    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def checked_meta(meta: Any, run_dir: Path | str) -> dict[str, Any]:
    """The object read from `run_dir`'s run.json, upgraded to this format version.

    Raises:
        FileNotFoundError: `meta` is None (no run.json).
        FormatError: not a JSON object, or written by a newer labtrack.
    """
    if meta is None:
        raise FileNotFoundError(f"{run_dir} has no run.json; it is not a labtrack run directory")
    if not isinstance(meta, dict):
        raise FormatError(f"{run_dir}/{layout.RUN_JSON} does not hold a JSON object")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > layout.FORMAT_VERSION:
        raise FormatError(
            f"{run_dir} is written in format_version {version!r}; this labtrack reads up to "
            f"{layout.FORMAT_VERSION}. Upgrade labtrack: pip install -U labtrack"
        )
    from .migrations import upgrade

    return upgrade(meta)


def read_run_meta(run_dir: Path, *, now: float | None = None,
                  stale_seconds: float | None = None) -> dict[str, Any]:
    """run.json with the derived status (see :func:`derive_status`) and `dir`.

    Raises:
        FileNotFoundError: no run.json in `run_dir`.
        FormatError: run.json is not valid or written by a newer labtrack.
    """
    meta = checked_meta(read_json(run_dir / layout.RUN_JSON), run_dir)
    if stale_seconds is None and (meta.get("status") == "running" or "distributed" in meta):
        from .._settings import get

        stale_seconds = float(get("stale_seconds"))
    if meta.get("status") == "running" and stale_seconds is not None:
        try:
            beat: float | None = os.stat(run_dir / layout.HEARTBEAT).st_mtime
        except OSError:
            beat = None
        pid = meta.get("pid")
        host = socket.gethostname()
        alive = pid_alive(pid) if isinstance(pid, int) and meta.get("host") == host else None
        meta["status"] = derive_status(meta, beat, time.time() if now is None else now, host,
                                       alive, stale_seconds)
    if "distributed" in meta and stale_seconds is not None:  # one-run job: every rank's state
        from .ranks import apply

        apply(meta, run_dir, now, stale_seconds)
    meta["dir"] = str(run_dir)
    return meta
