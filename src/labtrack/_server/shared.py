"""Several `labtrack serve` processes over one bucket and one PostgreSQL database.

``labtrack serve --root s3://bucket/prefix --index postgresql://...`` runs any number of
processes, on one or many machines, behind an HTTP load balancer. Each process serves the
dashboard and the live stream from its own local *mirror* of the bucket (run directories in
the usual format, under ``--mirror``) and ingests through :class:`SharedStorage`, which
takes the place of the ingest routes' :class:`~labtrack._server.ingest.LocalStorage`.

One batch (or single append, put, delete) is one PostgreSQL transaction:

1. the rows of the batch's files in the ingest ledger (`labtrack._pg.IngestLedger`) are
   locked, in path order, in one query, and give each append-only file's committed size;
   an append whose offset is not that size answers 409 with it, so a retry that reaches
   another process resumes from the shared size, never from a stale local one;
2. whole files go to the bucket as objects (concurrent PUTs), then the accepted appends of
   every file and the manifest delta that names them as one *packed delta* of this
   attempt's own (`labtrack._objstore.manifest`): one PUT for a batch of appends,
   whatever the number of files;
3. the ledger advances (one query) and a NOTIFY on :data:`CHANNEL` is queued; COMMIT;
4. only then the bytes go into this process's mirror and the request is acknowledged.

A process killed before the commit leaves the ledger where it was: the retry, on any
process, writes its own packed delta. Killed after it, the retry gets 409 with the new
size. So nothing acknowledged is lost and nothing is stored twice. (A delta of a killed
attempt may name more bytes from an offset than the retry that was acknowledged: the
bytes from one offset are the same in every attempt, the client's file being append-only,
so readers take the longer one and cut what overlaps it; `FileState.pieces`.)

Every process LISTENs on :data:`CHANNEL`; a notification of another process makes it copy
the run's new bytes from the bucket into its mirror, so its live stream (which tails the
mirror's files) pushes them to its browsers, and it tells its index the run changed. When
the listening connection was lost (notifications missed) the whole mirror is synced again.
A mirror is only a cache: deleted, it is filled from the bucket at the next start.

A load balancer sends a run's successive batches to any process, so a process often
commits an append before the notification of the previous one (from another process) has
reached its mirror. Those bytes are *held* in memory, not fetched from the bucket on the
request's thread: the notification, a moment later, fills the gap and writes them; a gap
still open after :data:`HOLD_SECONDS` is filled from the bucket by the mirror's worker.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import queue
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

from .._objstore.store import get_whole
from .._remote.upload import is_append_only, is_temp_name
from .._store import layout
from .._store.files import atomic_write_bytes, open_append
from ..errors import LabtrackValueError
from .ingest import _set_mtime, delete_file, run_sizes

log = logging.getLogger("labtrack.server")

#: The PostgreSQL notification channel of committed ingest (payload: see :func:`_payload`).
CHANNEL = "labtrack_ingest"
#: Payloads stay under PostgreSQL's 8000 bytes; a longer one names only the run.
MAX_PAYLOAD = 7000
#: The first key of the advisory locks compactions take (the second: the run's hash).
COMPACT_LOCK = 0x6C74
#: Threads that bring other processes' commits into the mirror (each run always on one).
MIRROR_WORKERS = 4
#: How often, at most, a run the mirror keeps changing is refreshed in the index.
REFRESH_SECONDS = 1.0
#: Whole files up to this size ride along in a notification (run.json, summary.json).
WHOLE_IN_NOTE = 4096
#: Connections of a process's pool to the ledger's database.
POOL_SIZE = 16
#: Appended bytes wait this long in memory for the bytes before them (see the docstring).
HOLD_SECONDS = 2.0
#: Compactions of ended runs running at once in one process (the rest wait their turn):
#: a burst of runs ending together must not crowd the bucket out for the runs still going.
COMPACTIONS = 1
#: A compaction waits until the process has ingested nothing for this long ...
COMPACT_IDLE = 1.0
#: ... but no longer than this.
COMPACT_PATIENCE = 30.0
Op = tuple[dict[str, Any], Path, bytes]  # a checked batch op, its resolved file, its bytes


def _payload(run: str, files: dict[str, list[Any]] | None, origin: str,
             data: dict[str, tuple[int, bytes]] | None = None,
             pack: tuple[str, dict[str, list[tuple[int, int, int]]]] | None = None,
             whole: dict[str, bytes] | None = None) -> str:
    """The notification of a commit: the run, and per file [op, size] (None: re-read all;
    a put also names its mtime).

    Appended bytes ride along ({file: [offset, base64]}) while the payload stays small (the
    usual round of a few scalars), so the other processes copy them without reading the
    bucket; otherwise the batch's pack is named ([name, {file: [[offset, length,
    position]]}]), so they read all of its files' bytes in one GET; otherwise they read
    them from the bucket's manifest. Small whole files (run.json, summary.json) ride along
    too ({file: base64}) when they fit."""
    def text(d: dict[str, tuple[int, bytes]] | None, p: Any, w: dict[str, bytes] | None,
             f: dict[str, list[Any]] | None) -> str:
        body: dict[str, Any] = {"run": run, "files": f, "from": origin}
        if d:
            body["data"] = {rel: [off, base64.b64encode(b).decode()] for rel, (off, b) in d.items()}
        elif p:
            body["pack"] = [p[0], {rel: [list(t) for t in lst] for rel, lst in p[1].items()}]
        if w:
            body["whole"] = {rel: base64.b64encode(b).decode() for rel, b in w.items()}
        return json.dumps(body, separators=(",", ":"))

    small = sorted((whole or {}).items(), key=lambda kv: len(kv[1]))  # the smallest ride first
    for d, p in ((data, pack), (None, pack), (None, None)):
        for k in range(len(small), -1, -1):
            out = text(d, p, dict(small[:k]), files)
            if len(out.encode()) <= MAX_PAYLOAD:
                return out
    return text(None, None, None, None)


class SharedStorage:
    """Ingest storage shared by several server processes (see the module docstring).

    Args:
        mirror: this process's local copy of the bucket (the root it serves).
        store: the bucket (`labtrack._objstore.store.ObjectStore`).
        db: a `labtrack._pg.Database` holding the ingest ledger (migrated).
        on_change: called with a run's folder under `mirror` after another process changed
            it and the mirror caught up (the server refreshes that run in its index).

    Example:
        >>> storage = SharedStorage(mirror, ObjectStore("s3://lab/runs"), Database(url))
        >>> routes = ingest_routes(storage.mirror, storage=storage)
        >>> storage.start(url)  # follow the other processes
    """

    def __init__(self, mirror: Path, store: Any, db: Any, *,
                 on_change: Callable[[Path], None] | None = None) -> None:
        from .._objstore.run import new_writer_id
        from .._pg import IngestLedger

        self.mirror = Path(mirror).absolute()
        self.store = store
        self.db = db
        self.ledger = IngestLedger()
        self.on_change = on_change
        self.origin = "srv-" + new_writer_id()  # names its deltas; tells its notifications apart
        self._runs: dict[str, Any] = {}
        self._deltas: dict[str, dict[str, Any]] = {}  # run -> parsed deltas (never change)
        self._runs_lock = threading.Lock()
        # One queue per mirror worker; a run's notifications always go to the same one, in
        # order. Worker 0 also does the full syncs.
        self._queues: list[queue.Queue[Optional[dict[str, Any]]]] = [
            queue.Queue() for _ in range(MIRROR_WORKERS)]
        self._queue = self._queues[0]
        self._workers: list[threading.Thread] = []
        self._listener: Any = None
        self.applied = 0  # notifications of other processes brought into the mirror
        # (run, file) -> (since, {offset: bytes}, mirror file): committed bytes after a gap
        self._held: dict[tuple[str, str], tuple[float, dict[int, bytes], Path]] = {}
        self._held_lock = threading.Lock()
        self._compactions = threading.BoundedSemaphore(COMPACTIONS)
        self._dirty: set[Path] = set()  # runs whose index rows are to be refreshed
        self._flushed = 0.0
        self._last_batch = 0.0  # when the last batch was committed (monotonic)
        self.seeded_files = 0  # ledger rows filled in from the bucket's manifests

    def _run_key(self, run_dir: Path) -> str:
        rel = os.path.relpath(run_dir, self.mirror).replace(os.sep, "/")
        if rel.startswith("..") or rel.count("/") != 1:
            raise LabtrackValueError(f"run folder {run_dir} is not EXPERIMENT/ID under the "
                                     f"mirror {self.mirror}")
        return rel

    def _object_run(self, run: str) -> Any:
        from .._objstore.run import ObjectRun

        with self._runs_lock:
            found = self._runs.get(run)
            if found is None:
                exp, _, rid = run.partition("/")
                found = self._runs[run] = ObjectRun(self.store, exp, rid, writer=self.origin)
                if len(self._runs) > 4096:  # a long-lived server: forget the oldest runs
                    self._runs.pop(next(iter(self._runs)))
            return found

    # -- ingest (called by the routes on worker threads)

    def batch(self, run_dir: Path, ops: list[Op]) -> list[dict[str, Any]]:
        """Apply a checked batch in one transaction (see the module docstring); one result
        {"path", "size", "status"} per op, in order."""
        from .._pg import notify

        from .._objstore.store import check_run_relpath

        run = self._run_key(run_dir)
        for op, _t, _d in ops:  # every key checked before the first byte is stored
            check_run_relpath(op["path"])
        orun = self._object_run(run)
        results: list[dict[str, Any]] = []
        after: list[tuple[str, Path, str, int, bytes, Optional[int]]] = []  # mirror work
        with self.db.connection() as conn:
            committed = self.ledger.lock_many(conn, run, (op["path"] for op, _t, _d in ops))
            lost = sorted({op["path"] for op, _t, _d in ops if op["op"] == "append"
                           and int(op.get("offset", 0)) > 0 and committed[op["path"]] == 0})
            if lost:  # appends past what the ledger knows: is the ledger behind the bucket?
                committed.update(self._seed_files(conn, run, orun, lost))
            sizes = dict(committed)
            chunks: list[tuple[str, int, bytes]] = []  # accepted appends: one pack
            files: dict[str, tuple[int, int]] = {}
            deleted: list[str] = []
            objects: dict[str, bytes] = {}
            for op, target, data in ops:
                rel, kind = op["path"], op["op"]
                if kind == "append":
                    offset = int(op.get("offset", 0))
                    if offset != sizes[rel]:
                        results.append({"path": rel, "size": sizes[rel], "status": 409})
                        continue
                    if data:
                        chunks.append((rel, offset, data))
                        sizes[rel] = offset + len(data)
                    after.append(("append", target, rel, offset, data, None))
                    results.append({"path": rel, "size": sizes[rel], "status": 200})
                elif kind == "put":
                    mtime = op.get("mtime_ns")
                    objects[orun.path(rel)] = data
                    files[rel] = (len(data), int(mtime or 0))
                    if rel in deleted:
                        deleted.remove(rel)
                    if is_append_only(rel):
                        sizes[rel] = len(data)
                    after.append(("put", target, rel, 0, data, mtime))
                    results.append({"path": rel, "size": len(data), "status": 200})
                else:
                    files.pop(rel, None)
                    deleted.append(rel)
                    sizes[rel] = 0
                    after.append(("delete", target, rel, 0, b"", None))
                    results.append({"path": rel, "size": 0, "status": 200})
            packed = None
            if chunks:
                # Every file's new bytes and the delta in one object of this attempt's own
                # (never a key another attempt wrote): one PUT for the batch, and no need to
                # look for what a killed attempt left (FileState.pieces cuts overlaps).
                name, body, where = orun.pack(chunks)
                packed = (name, where, body)
            orun.pipe(objects)
            for rel in deleted:
                orun.delete(rel)
            if packed or files or deleted:
                orun.write_manifest_delta(None, files, deleted, packed=packed)
            note: dict[str, list[Any]] = {}
            advances: dict[str, tuple[int, int]] = {}
            gone = [rel for rel in sizes if rel in deleted]
            if gone:
                conn.execute("DELETE FROM ingest_ledger WHERE run = %s AND relpath = ANY(%s)",
                             (run, gone))
            for rel, size in sizes.items():
                if rel in deleted:
                    note[rel] = ["delete", 0]
                elif rel in files:
                    _set_size(conn, run, rel, size if is_append_only(rel) else 0)
                    note[rel] = ["put", files[rel][0], files[rel][1]]
                elif size != committed[rel]:
                    advances[rel] = (committed[rel], size)
                    note[rel] = ["append", size]
            self.ledger.advance_many(conn, run, advances)
            if note:
                carried = {a[2]: (a[3], a[4]) for a in after if a[0] == "append" and a[4]
                           and sum(1 for b in after if b[2] == a[2]) == 1}
                small = {a[2]: a[4] for a in after if a[0] == "put" and len(a[4]) <= WHOLE_IN_NOTE}
                notify(conn, CHANNEL, _payload(run, note, self.origin, carried,
                                               packed[:2] if packed else None, small))
        self._last_batch = time.monotonic()
        # Committed: now (and only now) this process's mirror gets the bytes.
        for kind, target, rel, offset, data, mtime in after:
            if kind == "append":
                self._mirror_append(run, rel, target, offset, data)
            elif kind == "put":
                atomic_write_bytes(target, data)
                _set_mtime(target, mtime)
            else:
                delete_file(run_dir, target)
        if layout.RUN_JSON in files:
            self._maybe_compact(run, run_dir)
        return results

    def append(self, run_dir: Path, target: Path, relpath: str, offset: int,
               data: bytes) -> tuple[int, int]:
        """One append: (200, size afterwards) or (409, the committed size)."""
        r = self.batch(run_dir, [({"op": "append", "path": relpath, "offset": offset,
                                   "length": len(data)}, target, data)])[0]
        return int(r["status"]), int(r["size"])

    def put(self, run_dir: Path, target: Path, relpath: str, data: bytes,
            mtime_ns: Optional[int]) -> int:
        """Replace a whole file in the bucket, then in the mirror; its size."""
        op = {"op": "put", "path": relpath, "length": len(data), "mtime_ns": mtime_ns}
        return int(self.batch(run_dir, [(op, target, data)])[0]["size"])

    def delete(self, run_dir: Path, target: Path, relpath: str) -> None:
        """Remove a file from the bucket and the ledger, then from the mirror."""
        self.batch(run_dir, [({"op": "delete", "path": relpath, "length": 0}, target, b"")])

    def put_from(self, run_dir: Path, target: Path, relpath: str, tmp: Path,
                 mtime_ns: Optional[int]) -> int:
        """Stream the finished temporary file `tmp` to the bucket as `relpath` (a large
        media file or checkpoint), then move it into the mirror; its size."""
        from .._pg import notify

        from .._objstore.store import check_run_relpath

        run = self._run_key(run_dir)
        check_run_relpath(relpath)
        orun = self._object_run(run)
        with self.db.connection() as conn:
            self.ledger.lock_and_get(conn, run, relpath)  # one writer of this file at a time
            with open(tmp, "rb") as f:
                size = orun.put_whole_stream(relpath, iter(lambda: f.read(1 << 20), b""))
            orun.write_manifest_delta(files={relpath: (size, int(mtime_ns or 0))})
            notify(conn, CHANNEL, _payload(run, {relpath: ["put", size]}, self.origin))
        os.replace(tmp, target)
        _set_mtime(target, mtime_ns)
        return int(size)

    def sizes(self, run_dir: Path) -> dict[str, dict[str, int]]:
        """What the shared state holds of a run: append-only files at their committed size
        (the ledger), whole files as this mirror has them (a mirror that lags only makes
        the client send a whole file again)."""
        run = self._run_key(run_dir)
        with self.db.connection() as conn:
            self._seed(conn, run, self._object_run(run))
            rows = conn.execute("SELECT relpath, size FROM ingest_ledger WHERE run = %s",
                                (run,)).fetchall()
        out = {p: v for p, v in run_sizes(run_dir).items() if not is_append_only(p)} \
            if run_dir.is_dir() else {}
        for relpath, size in rows:
            if is_append_only(relpath) and size > 0:
                out[relpath] = {"size": int(size), "mtime_ns": 0}
        return out

    def _bucket_ends(self, run: str, orun: Any) -> dict[str, int]:
        """The committed size of each append-only file of `run` as the bucket's manifest has it."""
        state = orun.state(known=self._deltas.setdefault(run, {}))
        return {rel: f.end for rel, f in state.files.items() if f.append and f.end}

    def _seed_files(self, conn: Any, run: str, orun: Any, relpaths: list[str]) -> dict[str, int]:
        """The ledger rows of `relpaths` (locked by the caller, at size 0) raised to the
        size the bucket holds: a ledger that lost its rows (a new, restored or emptied
        database) takes the bucket's word, so a run logging through the switch resumes
        where the bucket is, not at 0. Size 0 with bytes in the bucket happens only then:
        every commit raises a row, a put sets it, a delete removes both."""
        ends = self._bucket_ends(run, orun)
        found = {rel: ends[rel] for rel in relpaths if ends.get(rel)}
        for rel, size in found.items():
            conn.execute("UPDATE ingest_ledger SET size = %s WHERE run = %s AND relpath = %s AND size = 0",
                         (size, run, rel))
        self.seeded_files += len(found)
        return found

    def _seed(self, conn: Any, run: str, orun: Any) -> None:
        """A run the ledger has no row of (new, or the database lost them) gets a row per
        append-only file the bucket's manifest names, at its size; rows another process
        made meanwhile win."""
        if conn.execute("SELECT 1 FROM ingest_ledger WHERE run = %s LIMIT 1", (run,)).fetchone() is not None:
            return
        rows = [(run, rel, n) for rel, n in sorted(self._bucket_ends(run, orun).items())]
        if rows:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO ingest_ledger (run, relpath, size) VALUES (%s, %s, %s) "
                                "ON CONFLICT (run, relpath) DO NOTHING", rows)
            self.seeded_files += len(rows)

    def _maybe_compact(self, run: str, run_dir: Path) -> None:
        """A run that has ended: its segments become one object per file, in the background."""
        try:
            status = json.loads((run_dir / layout.RUN_JSON).read_bytes()).get("status")
        except (OSError, ValueError, AttributeError):
            return
        if status in (None, "running"):
            return

        def compact() -> None:
            try:
                with self._compactions:
                    self._wait_idle()
                    self._compact_now(run, run_dir)
            except Exception as e:  # the segments stay readable; the next end tries again
                log.warning("could not compact %s in the bucket: %s: %s", run, type(e).__name__, e)

        threading.Thread(target=compact, name="labtrack-compact", daemon=True).start()

    def _wait_idle(self) -> None:
        """Wait (at most :data:`COMPACT_PATIENCE` seconds) until this process has ingested
        nothing for :data:`COMPACT_IDLE` seconds: live runs' batches go to the bucket
        before the ended runs' compaction, which is not urgent (segments read as well)."""
        deadline = time.monotonic() + COMPACT_PATIENCE
        while time.monotonic() < deadline and time.monotonic() - self._last_batch < COMPACT_IDLE:
            time.sleep(COMPACT_IDLE / 4)

    def _compact_now(self, run: str, run_dir: Path) -> None:
        with self.db.connection() as conn:
            # One compaction of a run at a time, across every process: two at once could
            # each delete deltas the other is still folding in.
            got = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                               (COMPACT_LOCK, run)).fetchone()
            if got and got[0]:
                self._object_run(run).compact(local_dir=run_dir)

    # -- the mirror

    def _mirror_append(self, run: str, relpath: str, target: Path, offset: int,
                       data: bytes, upto: int = 0, state: Any = None) -> None:
        """Write committed bytes at `offset` into the mirror's file, with the bytes held
        for it that follow on. Bytes after a gap are held (see the module docstring); with
        `upto`, the gap up to that size (committed, so in the bucket) is read from the
        bucket first."""
        key = (run, relpath)
        fd = open_append(target)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            local = os.fstat(fd).st_size
            with self._held_lock:
                since, chunks, _t = self._held.pop(key, (time.monotonic(), {}, target))
            if data and len(data) > len(chunks.get(offset, b"")):
                chunks[offset] = data
            while True:
                for off in sorted(chunks):
                    if off > local:
                        break
                    piece = chunks.pop(off)
                    if off + len(piece) > local:
                        _write_all(fd, piece[local - off:])
                        local = off + len(piece)
                stop = min([upto, *chunks])
                if stop <= local:
                    break
                _write_all(fd, self._read_span(run, relpath, local, stop, state))
                state = None  # used once: a second gap needs a newer manifest
                local = stop
            if chunks:
                with self._held_lock:
                    self._held[key] = (since, chunks, target)
        finally:
            os.close(fd)

    def _fill_held(self, older_than: float = HOLD_SECONDS) -> int:
        """Fill from the bucket the gaps before bytes held longer than `older_than`
        seconds; returns how many files."""
        now = time.monotonic()
        with self._held_lock:
            due = [(k, min(c), t) for k, (since, c, t) in self._held.items()
                   if c and now - since >= older_than]
        for (run, rel), first, target in due:
            try:
                self._mirror_append(run, rel, target, first, b"", upto=first)
            except (OSError, ValueError) as e:
                log.warning("could not fill %s/%s in the mirror from the bucket: %s", run, rel, e)
        return len(due)

    def _read_span(self, run: str, relpath: str, start: int, end: int,
                   state: Any = None) -> bytes:
        """Committed bytes [start, end) of an append-only file, from the bucket's pieces
        (as the manifest `state` names them, when it is recent enough, else read anew)."""
        for attempt in (0, 1):
            orun = self._object_run(run)
            if state is None or attempt or state.files.get(relpath) is None \
                    or state.files[relpath].end < end:
                state = orun.state(known=self._deltas.setdefault(run, {}))
            f = state.files.get(relpath)
            if f is None:
                raise FileNotFoundError(f"{run}/{relpath} is not in the bucket's manifest")
            out = []
            try:
                for piece in f.pieces():
                    lo, hi = max(start, piece[0]), min(end, piece[0] + piece[1])
                    if lo < hi:
                        out.append(orun.read_range(relpath, piece, lo, hi))
            except FileNotFoundError:
                if attempt:
                    raise
                continue  # compacted meanwhile: the new manifest names the plain object
            data = b"".join(out)
            if len(data) != end - start:
                raise FileNotFoundError(f"{run}/{relpath}: the bucket holds {f.end} bytes, "
                                        f"the ledger {end}")
            return data
        raise AssertionError("unreachable")

    def sync_run(self, run: str, files: dict[str, list[Any]] | None,
                 carried: dict[str, tuple[int, bytes]] | None = None,
                 wholes: dict[str, bytes] | None = None) -> None:
        """Bring the mirror's copy of `run` up to the bucket: the files named (op, size),
        or every file of its manifest. Appends whose bytes the notification `carried`
        (file -> (offset, bytes)) are written from them when the mirror's file ends at
        that offset; anything else is read from the bucket."""
        from .._store.contain import relpath_in

        exp, _, rid = run.partition("/")
        run_dir = self.mirror / exp / rid
        if files is not None and carried:
            files = dict(files)
            for rel, (offset, chunk) in carried.items():
                op = files.get(rel)
                if not op or op[0] != "append" or int(op[1]) != offset + len(chunk):
                    continue
                target = relpath_in(run_dir, rel, "path")
                if offset > 0 or target.exists() or run_dir.is_dir():
                    # At the mirror's end, or after a gap (held until its bytes arrive).
                    self._mirror_append(run, rel, target, offset, chunk)
                    files.pop(rel)
            if not files:
                self.applied += 1
                self._changed(run_dir)
                return
        orun = self._object_run(run)
        if files is not None:
            files = dict(files)
            for rel, op in sorted(files.items(), key=lambda kv: kv[0] != layout.RUN_JSON):
                # A whole file whose notification names its size and mtime: one GET.
                if isinstance(op, list) and len(op) == 3 and op[0] == "put" \
                        and not is_temp_name(rel.rsplit("/", 1)[-1]) and not is_append_only(rel):
                    target = relpath_in(run_dir, rel, "path")
                    want = (int(op[1]), int(op[2]))
                    if _stat(target) != want:
                        try:
                            data = wholes[rel] if wholes and rel in wholes \
                                else get_whole(orun.fs, orun.path(rel))  # (heartbeat: b"")
                        except FileNotFoundError:
                            continue  # replaced or deleted meanwhile: the manifest says
                        if len(data) != want[0]:
                            continue
                        atomic_write_bytes(target, data)
                        _set_mtime(target, want[1])
                    files.pop(rel)
            if not files:
                self.applied += 1
                self._changed(run_dir)
                return
        state = orun.state(known=self._deltas.setdefault(run, {}))
        if files is None:
            files = {rel: ["append" if f.append else "put", f.end if f.append else f.size]
                     for rel, f in state.files.items()}
        for rel, op_size in sorted(files.items(), key=lambda kv: kv[0] != layout.RUN_JSON):
            op, size = op_size[0], op_size[1]
            if is_temp_name(rel.rsplit("/", 1)[-1]):
                continue
            target = relpath_in(run_dir, rel, "path")  # checked: never outside the mirror
            if op == "delete":
                delete_file(run_dir, target)
                continue
            f = state.files.get(rel)
            if f is None:
                continue
            if f.append:
                if _size(target) < size:
                    self._mirror_append(run, rel, target, int(size), b"", upto=int(size), state=state)
            elif _stat(target) != (f.size, f.mtime_ns):
                whole = get_whole(orun.fs, orun.path(rel))
                atomic_write_bytes(target, whole)
                _set_mtime(target, f.mtime_ns)
        self.applied += 1
        self._changed(run_dir)

    def _changed(self, run_dir: Path) -> None:
        """Note a run the mirror changed; its index row is refreshed by :meth:`_flush_changed`
        (a run that changes ten times a second is refreshed about once per
        :data:`REFRESH_SECONDS`, not ten times)."""
        if self.on_change is not None:
            with self._held_lock:
                self._dirty.add(run_dir)

    def _flush_changed(self) -> None:
        with self._held_lock:
            dirty, self._dirty = self._dirty, set()
            self._flushed = time.monotonic()
        for run_dir in sorted(dirty):
            try:
                assert self.on_change is not None
                self.on_change(run_dir)
            except Exception as e:  # only an optimisation: the index's refresh sees it too
                log.debug("could not refresh %s in the index: %s", run_dir, e)

    def sync_all(self) -> int:
        """Bring every run of the bucket into the mirror (at start, and when notifications
        may have been missed); returns how many runs."""
        from .._objstore.store import check_key_part

        fs = self.store.fs
        n = 0
        try:
            experiments = fs.ls(self.store.path(""), detail=False)
        except FileNotFoundError:
            return 0  # nothing under the prefix yet
        for exp_path in experiments:
            exp = exp_path.rstrip("/").rsplit("/", 1)[-1]
            try:
                check_key_part(exp, "experiment folder")
                run_paths = fs.ls(exp_path, detail=False)
            except (ValueError, OSError):
                continue  # not an experiment (labtrack's own .labtrack, a stray object)
            for run_path in run_paths:
                rid = run_path.rstrip("/").rsplit("/", 1)[-1]
                try:
                    check_key_part(rid, "run id")
                    self.sync_run(f"{exp}/{rid}", None)
                    n += 1
                except (ValueError, OSError) as e:
                    log.warning("could not mirror %s/%s: %s", exp, rid, e)
        return n

    def _on_notify(self, payload: str) -> None:
        try:
            note = json.loads(payload)
        except ValueError:
            return
        if isinstance(note, dict) and note.get("from") != self.origin \
                and isinstance(note.get("run"), str):
            self._queues[zlib.crc32(note["run"].encode()) % len(self._queues)].put(note)

    def _work(self, q: queue.Queue[Optional[dict[str, Any]]]) -> None:
        while True:
            try:
                note = q.get(timeout=HOLD_SECONDS / 4)
            except queue.Empty:
                note = {}
            if self._held and q is self._queue and all(x.empty() for x in self._queues):
                # No notification is waiting that would fill a gap: fill old ones from the
                # bucket (a notification can only be missed with the connection, which
                # syncs everything again; this is the safety net).
                self._fill_held()
            if self._dirty and (q.empty() or time.monotonic() - self._flushed >= REFRESH_SECONDS):
                self._flush_changed()
            if note is None:
                return
            if not note:
                continue
            try:
                if note.get("resync"):
                    self.sync_all()
                else:
                    files = note.get("files")
                    run = str(note["run"])
                    carried = _carried(note.get("data"))
                    if not carried and isinstance(files, dict) and note.get("pack") is not None:
                        carried = self._unpack(run, note.get("pack"))
                    self.sync_run(run, files if isinstance(files, dict) else None, carried,
                                  _wholes(note.get("whole")))
            except Exception as e:  # a background thread: report, keep going
                log.warning("could not bring %s into the mirror: %s: %s",
                            note.get("run", "the bucket"), type(e).__name__, e)

    def _unpack(self, run: str, raw: Any) -> dict[str, tuple[int, bytes]]:
        """The appended bytes a notification's pack reference names, read from the bucket
        in one GET: {file: (offset, bytes)}; {} when the reference is malformed or the pack
        is gone (compacted meanwhile: the caller then reads from the manifest)."""
        from .._objstore.manifest import is_pack_name, pack_key

        if not (isinstance(raw, list) and len(raw) == 2 and is_pack_name(raw[0])
                and isinstance(raw[1], dict)):
            return {}
        spans: dict[str, tuple[int, int, int]] = {}
        for rel, lst in raw[1].items():
            ok = isinstance(rel, str) and isinstance(lst, list) and len(lst) == 1 \
                and isinstance(lst[0], list) and len(lst[0]) == 3 \
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in lst[0])
            if ok:
                spans[rel] = (lst[0][0], lst[0][1], lst[0][2])
        if not spans:
            return {}
        orun = self._object_run(run)
        try:
            body = get_whole(orun.fs, orun.path(pack_key(raw[0])))
        except (OSError, ValueError):
            return {}
        return {rel: (off, body[pos:pos + n]) for rel, (off, n, pos) in spans.items()
                if pos + n <= len(body)}

    def start(self, url: str) -> None:
        """Follow the other processes' commits (LISTEN on `url`'s database) and sync the
        whole mirror from the bucket once, in the background."""
        from .._pg import Listener

        self._workers = [threading.Thread(target=self._work, args=(q,), name=f"labtrack-mirror-{i}",
                                          daemon=True) for i, q in enumerate(self._queues)]
        for w in self._workers:
            w.start()
        self._listener = Listener(url, CHANNEL, self._on_notify,
                                  on_reconnect=lambda: self._queue.put({"resync": True}))
        self._listener.start()
        self._queue.put({"resync": True})

    @property
    def listening(self) -> bool:
        """True once the listener is connected."""
        return bool(self._listener is not None and self._listener.ready.is_set())

    def close(self) -> None:
        """Stop listening and the mirror's worker."""
        if self._listener is not None:
            self._listener.stop()
        for q in self._queues:
            q.put(None)
        for w in self._workers:
            w.join(5)


def _carried(raw: Any) -> dict[str, tuple[int, bytes]]:
    """The appended bytes a notification carries, checked (anything malformed is dropped)."""
    out: dict[str, tuple[int, bytes]] = {}
    if not isinstance(raw, dict):
        return out
    for rel, v in raw.items():
        if isinstance(rel, str) and isinstance(v, list) and len(v) == 2 \
                and isinstance(v[0], int) and v[0] >= 0 and isinstance(v[1], str):
            try:
                out[rel] = (v[0], base64.b64decode(v[1], validate=True))
            except ValueError:
                continue
    return out


def _wholes(raw: Any) -> dict[str, bytes]:
    """The whole files a notification carries, checked (anything malformed is dropped)."""
    out: dict[str, bytes] = {}
    for rel, v in (raw.items() if isinstance(raw, dict) else ()):
        if isinstance(rel, str) and isinstance(v, str):
            try:
                out[rel] = base64.b64decode(v, validate=True)
            except ValueError:
                continue
    return out


def _set_size(conn: Any, run: str, relpath: str, size: int) -> None:
    """Set a file's committed size outright (a whole put of the file; its row is locked)."""
    conn.execute("UPDATE ingest_ledger SET size = %s, updated = now() WHERE run = %s AND "
                 "relpath = %s", (size, run, relpath))


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def open_shared(root_url: str, index_url: str | None, mirror: str | None,
                environ: Optional[dict[str, str]] = None) -> SharedStorage:
    """The :class:`SharedStorage` of `labtrack serve --root s3://... --index postgresql://...`:
    the bucket opened, the database reached and migrated, the mirror folder chosen.

    Raises:
        LabtrackValueError: no --index, or one that is not a postgresql:// URL; a bad bucket URL.
        MissingDependencyError: s3fs or psycopg is not installed.
        DatabaseError: the database cannot be reached.
    """
    from .._objstore.spool import mirror_dir
    from .._objstore.store import ObjectStore, parse_url
    from .._pg import Database, is_postgres_url

    url = parse_url(root_url)
    if index_url is None or not is_postgres_url(index_url):
        raise LabtrackValueError(
            f"--root {url} is a bucket; serving it needs --index postgresql://USER@HOST/DB, "
            "where the processes that share it keep the sizes they have committed"
            + (f" (got --index {index_url.split('@')[-1]!r})" if index_url else ""))
    env = dict(os.environ) if environ is None else environ
    store = ObjectStore(str(url), environ=env)
    # A batch holds its connection (the ledger's row locks) while its pack and delta go to
    # the bucket: more connections than the default, so slow PUTs do not queue the rest.
    db = Database(index_url, max_size=POOL_SIZE)
    db.migrate()
    folder = Path(mirror).expanduser() if mirror else mirror_dir(url, env)
    folder.mkdir(parents=True, exist_ok=True)
    return SharedStorage(folder, store, db)
