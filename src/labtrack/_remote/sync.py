"""`labtrack sync`: upload runs after the fact with the shipper's code.

The server is asked for its sizes first, so a run it already holds costs one request and
uploads nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import RemoteError, RunNotFoundError
from .backoff import Backoff
from .shipper import _version
from .upload import RunUploader, UploadClient
from .wire import ServerInfo, Transport, Unavailable, WireClient


@dataclass
class SyncReport:
    """What syncing one run did."""

    run_dir: Path
    files: int = 0
    bytes: int = 0
    refused: list[str] = field(default_factory=list)
    info: ServerInfo | None = None  # the server's handshake answer


def find_runs(root: Path, selectors: list[str]) -> list[Path]:
    """The run directories under `root` named by ids, id prefixes, ``experiment/id`` or
    run directory paths; every run when `selectors` is empty.

    Raises:
        RunNotFoundError: a selector matches no run, or more than one.
    """
    from .._store import layout
    from .._store.rundir import iter_runs

    # Only runs that stay inside the root (a symlinked experiment folder pointing out is not
    # part of it): the same runs the dashboard lists.
    runs = [rd.path for rd in iter_runs(Path(root))]
    if not selectors:
        return runs
    out: list[Path] = []
    for sel in selectors:
        as_dir = Path(sel)
        if (as_dir / layout.RUN_JSON).is_file():  # a run directory given as a path
            if as_dir not in out:
                out.append(as_dir)
            continue
        exp, _, rid = sel.rpartition("/")
        hits = [r for r in runs if r.name.startswith(rid) and (not exp or r.parent.name == exp)]
        exact = [r for r in hits if r.name == rid]
        hits = exact or hits
        if not hits:
            raise RunNotFoundError(f"no run under {root} matches {sel!r}; list runs with "
                                   "labtrack ls")
        if len(hits) > 1:
            raise RunNotFoundError(f"{sel!r} matches {len(hits)} runs under {root} "
                                   f"({', '.join(h.name for h in hits[:5])}); give more of the id")
        if hits[0] not in out:
            out.append(hits[0])
    return out


def sync_run(run_dir: Path, client: UploadClient, *, patience: float = 30.0,
             sleep: Callable[[float], None] = time.sleep,
             info: ServerInfo | None = None, budget: int = 8 << 20) -> SyncReport:
    """Upload what the server lacks of one run; retry an unreachable server for `patience` s.

    Raises:
        RemoteError: the server refused, or stayed unreachable.
    """
    run_dir = Path(run_dir)
    up = RunUploader(run_dir, client, experiment=run_dir.parent.name, run_id=run_dir.name,
                     version=_version())
    up.info = info  # the handshake of an earlier run of the same sync, if any
    report = SyncReport(run_dir)
    backoff = Backoff(base=0.5, cap=5.0)
    give_up = time.monotonic() + patience
    while True:
        try:
            r = up.round(budget, full=True)
        except Unavailable as e:
            up.invalidate()
            if time.monotonic() >= give_up:
                raise RemoteError(f"gave up syncing {run_dir.name}: {e}") from None
            sleep(backoff.next_delay())
            continue
        backoff.reset()
        report.refused.extend(r.refused)
        if not r.pending:
            break
    report.files = up.files_sent
    report.bytes = up.bytes_sent
    report.info = up.info
    return report


def sync_runs(run_dirs: list[Path], url: str, token: str | None, *,
              transport: Transport | None = None, patience: float = 30.0) -> list[SyncReport]:
    """Sync several runs to the server at `url` (see :func:`sync_run`).

    Example:
        >>> sync_runs(find_runs(Path("labtrack"), []), "http://logs.lab:8765", token)
    """
    client = WireClient(url, token, transport=transport)
    reports: list[SyncReport] = []
    try:
        for d in run_dirs:  # one handshake for all runs
            reports.append(sync_run(d, client, patience=patience,
                                    info=reports[-1].info if reports else None))
        return reports
    finally:
        client.close()
