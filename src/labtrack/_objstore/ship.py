"""The training side: the shipper thread and `labtrack sync` pointed at a bucket.

Both reuse `labtrack._remote` whole: :class:`~labtrack._remote.shipper.Shipper` (its thread,
backoff with jitter, warn-once, bounded wait at finish) and
:class:`~labtrack._remote.upload.RunUploader` (offsets, whole lines, media, deletions),
talking to an :class:`~labtrack._objstore.client.ObjectClient` instead of a server. Once
everything is delivered at finish, the run is compacted (the `compact` setting).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .._remote.backoff import Backoff
from .._remote.shipper import Shipper, _version
from .._remote.upload import RunUploader
from .._remote.wire import Refused, Unavailable
from ..errors import RemoteError
from .client import ROUND_BYTES, ObjectClient
from .spool import BucketSyncReport
from .store import ObjectStore


def object_shipper(run_dir: Path, url: str, *, experiment_slug: str, run_id: str,
                   rank: int | None = None, compact: bool | None = None,
                   store: ObjectStore | None = None, poll_seconds: float = 2.0,
                   warn: Callable[[str], None] | None = None) -> Shipper:
    """A (not yet started) Shipper that uploads `run_dir` to the bucket at `url`.

    Args:
        run_dir: the spooled run directory.
        url: the object-store root, ``s3://bucket/prefix``.
        experiment_slug, run_id: where the run goes under the prefix.
        rank: a one-run job's rank (only rank 0, or a single process, compacts).
        compact: compact at finish (default: the `compact` setting).
        store: an opened store (default: opened on the shipper's thread, so s3fs is imported
            there and never on the training thread).
    """
    from .._settings import get

    do_compact = bool(get("compact", compact)) and not rank
    holder: list[ObjectClient] = []

    def make() -> ObjectClient:
        c = ObjectClient(store or ObjectStore(url))
        holder.append(c)
        return c

    def finalize(up: RunUploader) -> None:
        if do_compact and holder:
            holder[-1].compact(experiment_slug, run_id, run_dir)

    sync = f"labtrack sync {experiment_slug}/{run_id} --remote {url}"
    s = Shipper(run_dir, url, None, experiment_slug=experiment_slug, run_id=run_id,
                poll_seconds=poll_seconds, backoff=Backoff(base=0.5, cap=10.0), warn=warn,
                rank=rank, client=make, finalize=finalize, sync_hint=sync, round_bytes=ROUND_BYTES)
    s.object_client = holder  # type: ignore[attr-defined]  # for benchmarks: bytes_put
    return s


def sync_to_bucket(run_dirs: list[Path], url: str, *, patience: float = 30.0,
                   compact: bool | None = None, store: ObjectStore | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> list[BucketSyncReport]:
    """Upload what the bucket lacks of each spooled run, then compact it.

    Only what the manifest does not name is sent, so syncing again uploads nothing.

    Raises:
        RemoteError: object storage refused, or stayed unreachable for `patience` seconds.

    Example:
        >>> sync_to_bucket(find_runs(spool_dir("s3://lab/runs"), []), "s3://lab/runs")
    """
    from .._remote.sync import sync_run
    from .._settings import get

    do_compact = bool(get("compact", compact))
    client = ObjectClient(store or ObjectStore(url))
    reports: list[BucketSyncReport] = []
    for d in run_dirs:
        r = sync_run(d, client, patience=patience, sleep=sleep, budget=ROUND_BYTES)
        rep = BucketSyncReport(d, files=r.files, bytes=r.bytes, refused=r.refused)
        if do_compact and _ended(d):
            backoff = Backoff(base=0.5, cap=5.0)
            give_up = time.monotonic() + patience
            while True:
                try:
                    client.compact(d.parent.name, d.name, d)
                    break
                except Unavailable as e:
                    if time.monotonic() >= give_up:
                        raise RemoteError(f"gave up compacting {d.name}: {e}") from None
                    sleep(backoff.next_delay())
                except Refused as e:
                    raise RemoteError(str(e)) from None
            rep.compacted = True
        reports.append(rep)
    return reports


def _ended(run_dir: Path) -> bool:
    """True when the run's run.json says it is no longer running (a crashed run's says
    running: it is compacted only once resumed and finished, or its heartbeat is stale)."""
    from .._store.rundir import RunDir

    try:
        return RunDir(run_dir).meta().get("status") != "running"
    except Exception:  # noqa: BLE001 - an unreadable run.json: leave the segments
        return False
