"""ObjectClient: the ingest protocol's client calls, answered by object storage.

:class:`labtrack._remote.upload.RunUploader` (the offset tracking the shipper and `labtrack
sync` share) talks to a :class:`~labtrack._remote.wire.WireClient`: hello, sizes, batch,
put_file. This class answers the same calls by writing one run's objects
(:class:`~labtrack._objstore.run.ObjectRun`), so replicating a spool to a bucket reuses the
whole of the uploader (whole lines only, one share per series, media learned from
media.jsonl, pruned checkpoints deleted) and the shipper's thread, backoff and deadline.

What the bucket holds is the truth: `sizes` reads the run's manifest, so an uploader that
starts again after a SIGKILL resumes at the offsets the last published delta names and
re-sends at most the one batch whose delta it never wrote (to the same keys).

Errors are sorted like the wire client's: a connection failure, a timeout or a 5xx is
:class:`~labtrack._remote.wire.Unavailable` (retry with backoff); a missing bucket or a
denied permission is :class:`~labtrack._remote.wire.Refused`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .._remote.wire import Op, OpResult, Refused, ServerInfo, Unavailable
from .run import CompactReport, ObjectRun
from .store import ObjectStore

MAX_BATCH = 64 << 20
ROUND_BYTES = 48 << 20  # per upload round (memory held: about this much)
FOLD_EVERY = 256  # deltas a writer leaves before folding them into manifest.json
_T = TypeVar("_T")


def call(what: str, fn: Callable[[], _T]) -> _T:
    """Run one object-store call, turning its failure into Unavailable or Refused."""
    try:
        return fn()
    except PermissionError as e:
        raise Refused(f"object storage refused {what}: {e}", 403) from None
    except FileNotFoundError as e:
        raise Refused(f"object storage has no such bucket or key for {what}: {e}", 404) from None
    except Exception as e:  # noqa: BLE001 - botocore's many errors: all worth a retry
        raise Unavailable(f"object storage failed {what}: {type(e).__name__}: {e}") from None


class ObjectClient:
    """The WireClient calls RunUploader makes, for one run in a bucket.

    Args:
        store: the bucket and prefix.
        writer: the writer id in delta names (default: host-pid-random).
        compress: store segments below 5 MiB gzip-compressed where that saves a tenth
            (they are uploaded again at compaction: this keeps the total near 1.3x of the
            data instead of 2x); default: the `compress_segments` setting.
    """

    def __init__(self, store: ObjectStore, *, writer: str | None = None,
                 compress: bool | None = None) -> None:
        from .._settings import get

        self.store = store
        self.compress = bool(get("compress_segments", compress))
        self._writer = writer
        self._runs: dict[tuple[str, str], ObjectRun] = {}
        self._sizes: dict[tuple[str, str], dict[str, int]] = {}  # append-only sizes we published

    def run(self, experiment: str, run_id: str) -> ObjectRun:
        """The ObjectRun for a run (one writer id per client)."""
        key = (experiment, run_id)
        if key not in self._runs:
            self._runs[key] = ObjectRun(self.store, experiment, run_id, writer=self._writer)
        return self._runs[key]

    def hello(self, version: str) -> ServerInfo:
        return ServerInfo(api=1, server=f"object storage {self.store.url}", max_batch_bytes=MAX_BATCH,
                          max_file_bytes=5 << 40)

    def sizes(self, experiment: str, run_id: str) -> dict[str, tuple[int, int]]:
        state = call(f"reading the manifest of {experiment}/{run_id}", self.run(experiment, run_id).state)
        sizes = state.sizes()
        self._sizes[(experiment, run_id)] = {r: f.end for r, f in state.files.items() if f.append}
        return sizes

    def batch(self, experiment: str, run_id: str, ops: list[Op]) -> list[OpResult]:
        run = self.run(experiment, run_id)
        known = self._sizes.setdefault((experiment, run_id), {})
        results: list[OpResult] = []
        segments: list[tuple[str, int, bytes]] = []
        wholes: dict[str, tuple[int, int]] = {}
        deleted: list[str] = []
        for o in ops:
            if o.op == "append":
                at = known.get(o.path, 0)
                if o.offset != at:
                    results.append(OpResult(o.path, at, 409))
                    continue
                segments.append((o.path, o.offset, o.data))
                results.append(OpResult(o.path, o.offset + len(o.data), 200))
            elif o.op == "put":
                wholes[o.path] = (len(o.data), o.mtime_ns or 0)
                results.append(OpResult(o.path, len(o.data), 200))
            else:
                deleted.append(o.path)
                results.append(OpResult(o.path, 0, 200))
        puts: dict[str, bytes] = {}
        segs: dict[str, list[tuple[int, int, bool]]] = {}
        for r, entry in run.segment_objects(segments, self.compress, puts):
            segs.setdefault(r, []).append(entry)
        puts.update({run.path(o.path): o.data for o in ops if o.op == "put" and o.path in wholes})
        if puts:
            call(f"uploading {len(puts)} objects of {run.rel}", lambda: run.pipe(puts))
        for rel in deleted:
            call(f"deleting {run.rel}/{rel}", lambda rel=rel: run.delete(rel))  # type: ignore[misc]
        if segs or wholes or deleted:
            call(f"writing a manifest delta of {run.rel}",
                 lambda: run.write_manifest_delta(segs, wholes, deleted))
        for r, off, d in segments:  # published: later appends go on from here
            known[r] = off + len(d)
        if run.deltas_written >= FOLD_EVERY:
            run.deltas_written = 0
            call(f"folding the manifest deltas of {run.rel}", run.fold_deltas)
        return results

    def put_file(self, experiment: str, run_id: str, path: str, chunks: Iterator[bytes] | bytes,
                 size: int, mtime_ns: int | None = None) -> int:
        run = self.run(experiment, run_id)
        parts = iter([chunks]) if isinstance(chunks, bytes) else chunks
        sent = call(f"uploading {run.rel}/{path}", lambda: run.put_whole_stream(path, parts))
        call(f"writing a manifest delta of {run.rel}",
             lambda: run.write_manifest_delta(files={path: (sent, mtime_ns or 0)}))
        return sent

    def compact(self, experiment: str, run_id: str, local_dir: Any = None) -> CompactReport:
        """Compact the run (see :meth:`ObjectRun.compact`); failures as Unavailable/Refused."""
        run = self.run(experiment, run_id)
        report = call(f"compacting {run.rel}", lambda: run.compact(local_dir))
        self._sizes.pop((experiment, run_id), None)
        return report

    @property
    def bytes_put(self) -> int:
        """Every byte this client PUT: segments, files, manifests, retries and compaction."""
        return sum(r.bytes_put for r in self._runs.values())

    def close(self) -> None:
        """Nothing to release (fsspec keeps its own connection pool)."""
