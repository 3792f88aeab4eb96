"""The per-rank files of a one-run distributed job, and the run's status they combine to.

Every rank of a "one-run" job shares one run directory (docs/distributed.md). Rank 0 owns
run.json; each rank N writes `ranks/<N>/status.json` (`{rank, status, pid, host, started,
ended, error}`: "running" while it lives for N > 0, its end state when it finishes, for
rank 0 too), and rank N > 0 touches `ranks/<N>/heartbeat`. A reader combines them: the run
is running while any rank runs, crashed if any rank died, failed if any failed, finished
when every rank finished. The last rank to finish writes the combined end into run.json.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import FormatError
from . import layout
from .reader import derive_status, pid_alive, read_json

# Worst first: a combined status is the first of these that any rank has.
_ORDER = ("crashed", "running", "failed", "killed", "interrupted")


def combine(statuses: list[str]) -> str:
    """The run's status from its ranks' (derived) statuses.

    Example:
        >>> combine(["finished", "crashed"]), combine(["finished", "running"])
        ('crashed', 'running')
    """
    for s in _ORDER:
        if s in statuses:
            return s
    return "finished" if statuses else "running"


def is_distributed(meta: dict[str, Any]) -> bool:
    """Whether run.json belongs to a one-run job of several ranks."""
    d = meta.get("distributed")
    return (isinstance(d, dict) and d.get("mode") == "one-run"
            and isinstance(d.get("world_size"), int) and d["world_size"] > 1)


def write_status(run_dir: Path, rank: int, record: dict[str, Any]) -> None:
    """Write rank `rank`'s status.json (atomically).

    Raises:
        OSError: the disk refused it.
    """
    from .files import atomic_write_json

    atomic_write_json(run_dir / layout.rank_relpath(rank, layout.RANK_STATUS), record)


def rank_state(run_dir: str | os.PathLike[str], rank: int, now: float, stale_seconds: float,
               host: str) -> dict[str, Any] | None:
    """Rank `rank`'s status.json with its derived status (a dead "running" rank is
    "crashed"), None when the rank wrote none."""
    base = os.path.join(os.fspath(run_dir), layout.RANKS_DIR, str(rank))
    try:
        rec = read_json(Path(base, layout.RANK_STATUS), None)
    except (OSError, FormatError):  # an edited file reads as no state, never breaks a listing
        return None
    if not isinstance(rec, dict):
        return None
    rec = dict(rec)
    if rec.get("status") == "running":
        try:
            beat: float | None = os.stat(os.path.join(base, layout.HEARTBEAT)).st_mtime
        except OSError:
            beat = None
        pid = rec.get("pid")
        alive = pid_alive(pid) if isinstance(pid, int) and rec.get("host") == host else None
        rec["status"] = derive_status(rec, beat, now, host, alive, stale_seconds)
    rec["rank"] = rank
    return rec


def rank_numbers(run_dir: str | os.PathLike[str]) -> list[int]:
    """The ranks that have a folder under ranks/, sorted ([] for an ordinary run)."""
    try:
        names = os.listdir(os.path.join(os.fspath(run_dir), layout.RANKS_DIR))
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isascii() and n.isdigit())


def states(run_dir: str | os.PathLike[str], now: float, stale_seconds: float,
           host: str | None = None) -> dict[int, dict[str, Any]]:
    """rank -> its state (see :func:`rank_state`), for every rank that wrote one."""
    h = socket.gethostname() if host is None else host
    out = {}
    for r in rank_numbers(run_dir):
        st = rank_state(run_dir, r, now, stale_seconds, h)
        if st is not None:
            out[r] = st
    return out


def combined_status(run_dir: str | os.PathLike[str], rank0_status: str, now: float,
                    stale_seconds: float, host: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The status of a one-run job's run and the state of each rank.

    Args:
        run_dir: the run directory.
        rank0_status: run.json's status, derived (rank 0's liveness), used for rank 0
            unless rank 0 wrote its own end into ranks/0/status.json.

    Returns:
        `(status, ranks)`: the combined status, and `[{rank, status, host, pid, ...}]`.
    """
    found = states(run_dir, now, stale_seconds, host)
    zero = found.get(0)
    if zero is None or zero.get("status") == "running":
        found[0] = {**(zero or {}), "rank": 0, "status": rank0_status}
    ranks = [found[r] for r in sorted(found)]
    return combine([str(r.get("status")) for r in ranks]), ranks


def apply(meta: dict[str, Any], run_dir: str | os.PathLike[str], now: float | None,
          stale_seconds: float) -> dict[str, Any]:
    """Put the combined status and `ranks` into a one-run job's derived run.json (in place)."""
    if is_distributed(meta):
        meta["status"], meta["ranks"] = combined_status(
            run_dir, str(meta.get("status")), time.time() if now is None else now, stale_seconds)
        zero = meta["ranks"][0]
        for k in ("host", "pid"):
            zero.setdefault(k, meta.get(k))
    return meta


def live_status(run_dir: str, status: str, now: float, stale_seconds: float, host: str) -> str:
    """For a listing (the index): a run stored as running, combined with its ranks' states
    when it has any (one failed stat for an ordinary run)."""
    if not os.path.isdir(os.path.join(run_dir, layout.RANKS_DIR)):
        return status
    return combined_status(run_dir, status, now, stale_seconds, host)[0]


def merged_summary(run_dir: str | os.PathLike[str], summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json with the other ranks' summaries (their names carry `rank<N>/`)."""
    ranks = rank_numbers(run_dir)
    if not ranks:
        return summary
    out = dict(summary)
    for r in ranks:
        if r == 0:
            continue
        try:
            part = read_json(Path(os.fspath(run_dir), layout.rank_relpath(r, layout.SUMMARY_JSON)), {})
        except (OSError, FormatError):  # unreadable: left out, never breaks a reader
            continue
        if isinstance(part, dict):
            out.update(part)
    return dict(sorted(out.items()))


def close_run(run_dir: Path, fields: dict[str, Any]) -> None:
    """Write the combined end of a job into run.json (the last rank to finish does it).

    Raises:
        OSError: the disk refused it.
    """
    from .files import atomic_write_json

    meta = read_json(run_dir / layout.RUN_JSON, None)
    if isinstance(meta, dict):
        meta.update(fields)
        atomic_write_json(run_dir / layout.RUN_JSON, meta)


def publish_job(path: Path, record: dict[str, Any]) -> None:
    """Rank 0's note of the run its job shares (replacing one an earlier job left).

    Raises:
        OSError: the disk refused it.
    """
    from .files import atomic_write_json

    atomic_write_json(path, record)


def read_job(path: Path) -> dict[str, Any] | None:
    """The note rank 0 wrote, None while there is none (or it is being replaced)."""
    try:
        rec = read_json(path, None)
    except (OSError, FormatError):
        return None
    return rec if isinstance(rec, dict) else None
