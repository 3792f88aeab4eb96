"""ObjectRun: one run's folder in object storage, written and read synchronously.

The training side's uploader, `labtrack sync` and the server's ingest (several servers
over one bucket) all write a run through this class; the mirror reads through it. See
:mod:`labtrack._objstore.manifest` for the keys and the manifest format.

Writes are idempotent: a segment's key is a function of (relpath, offset), a whole file
is one PUT (atomic in S3), and a delta lists only what its batch added. A writer that dies
between its PUTs and its delta leaves objects no manifest names; the next writer puts the
same keys again.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import manifest as mf
from .store import ObjectStore, check_key_part, check_run_relpath

MULTIPART_MIN = 5 << 20  # S3's smallest part of a multipart upload (all but the last)


def new_writer_id() -> str:
    """A writer id for delta names: host, pid and a random suffix, in key-safe characters."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class CompactReport:
    """What one compaction did."""

    files: int = 0  # append-only files written as one object
    bytes_uploaded: int = 0  # bytes sent from this process (local spool or re-read segments)
    bytes_copied: int = 0  # bytes copied server-side (no upload)
    deleted: int = 0  # segment and delta objects removed


class ObjectRun:
    """The folder ``<experiment>/<run-id>/`` of one run under an :class:`ObjectStore`.

    Args:
        store: the bucket and prefix.
        experiment: the experiment's folder name (slug).
        run_id: the run's id.
        writer: this writer's id in delta names (default: host-pid-random).

    Raises:
        LabtrackNameError: `experiment`, `run_id` or `writer` is not a safe key part.

    Example:
        >>> r = ObjectRun(ObjectStore("s3://lab/runs"), "mnist", "20261121-141503-k3f9qz")
        >>> r.put_segment("scalars/loss.csv", 0, b"step,value,time\\n")
        >>> r.write_manifest_delta({"scalars/loss.csv": [(0, 16)]})
        >>> r.state().files["scalars/loss.csv"].end
        16
    """

    def __init__(self, store: ObjectStore, experiment: str, run_id: str, *, writer: str | None = None) -> None:
        self.store = store
        self.experiment = check_key_part(experiment, "experiment folder")
        self.run_id = check_key_part(run_id, "run id")
        self.writer = check_key_part(writer or new_writer_id(), "writer id")
        self.rel = f"{self.experiment}/{self.run_id}"
        self._last_ns = 0
        self.bytes_put = 0  # every byte this object sent in PUTs (segments, files, manifests)
        self.objects_put = 0
        self.deltas_written = 0
        self._known: dict[str, Any] = {}  # parsed deltas by name (a delta never changes)

    def pipe(self, paths: dict[str, bytes]) -> None:
        """PUT several objects (fsspec paths -> bytes), concurrently where the back end can."""
        if not paths:
            return
        if len(paths) == 1:
            [(p, d)] = paths.items()
            self.fs.pipe_file(p, d)
        else:
            self.fs.pipe(paths)
        self.bytes_put += sum(len(d) for d in paths.values())
        self.objects_put += len(paths)

    @property
    def fs(self) -> Any:
        return self.store.fs

    def path(self, key: str) -> str:
        """The fsspec path of a key relative to this run."""
        return self.store.path(f"{self.rel}/{key}")

    # -- writing

    def put_segment(self, relpath: str, offset: int, data: bytes) -> str:
        """Store `data` as the segment of append-only `relpath` starting at `offset`;
        returns its key (relative to the run). Not visible to readers until a delta names it."""
        key = mf.segment_key(check_run_relpath(relpath), offset)
        self.pipe({self.path(key): data})
        return key

    def put_segments(self, items: Iterable[tuple[str, int, bytes]]) -> list[str]:
        """Several segments at once (concurrent PUTs where the back end can)."""
        paths = {self.path(mf.segment_key(check_run_relpath(rel), off)): data for rel, off, data in items}
        self.pipe(paths)
        return [self.store.key_of(p)[len(self.rel) + 1:] for p in paths]

    def put_whole(self, relpath: str, data: bytes) -> None:
        """Replace the whole file `relpath` with `data` (one PUT; readers see the old or the
        new bytes, never a mix). Record it with :meth:`write_manifest_delta`."""
        self.pipe({self.path(check_run_relpath(relpath)): data})

    def put_whole_stream(self, relpath: str, chunks: Iterable[bytes]) -> int:
        """Like :meth:`put_whole` for a large file, streamed (multipart); returns its size."""
        size = 0
        with self.fs.open(self.path(check_run_relpath(relpath)), "wb", block_size=MULTIPART_MIN * 2) as f:
            for c in chunks:
                f.write(c)
                size += len(c)
        self.bytes_put += size
        self.objects_put += 1
        return size

    def delete(self, relpath: str) -> None:
        """Remove the whole file `relpath` (a pruned checkpoint); record it in a delta."""
        try:
            self.fs.rm_file(self.path(check_run_relpath(relpath)))
        except FileNotFoundError:
            pass

    def write_manifest_delta(self, segments: dict[str, list[tuple[int, int]]] | None = None,
                             files: dict[str, tuple[int, int]] | None = None,
                             deleted: Iterable[str] = ()) -> str:
        """Publish what a batch added: `segments` {relpath: [(offset, length)]}, whole
        `files` {relpath: (size, mtime_ns)} and `deleted` relpaths. Returns the delta's name.
        Readers see a batch only once this returns."""
        ns = max(time.time_ns(), self._last_ns + 1)  # sortable even if the clock steps back
        self._last_ns = ns
        name = mf.delta_name(ns, self.writer)
        segs = {check_run_relpath(r): [[o, n, mf.segment_key(r, o)] for o, n in lst]
                for r, lst in (segments or {}).items() if lst}
        whole = {check_run_relpath(r): [s, m] for r, (s, m) in (files or {}).items()}
        gone = [check_run_relpath(r) for r in deleted]
        body = mf.encode_delta(self.writer, segs, whole, gone)  # type: ignore[arg-type]
        self.pipe({self.path(f"{mf.DELTAS}/{name}"): body})
        self._known[name] = mf.parse(body)
        self.deltas_written += 1
        return name

    def fold_deltas(self) -> int:
        """Fold every delta into manifest.json (segments stay where they are) and delete the
        deltas; returns how many. A long run's writer does this every few hundred deltas, so
        a reader or a resuming writer reads one manifest and a short list, not thousands."""
        state = self.state()
        if not state.deltas:
            return 0
        self.pipe({self.path(mf.MANIFEST): mf.encode_compacted(state, self._consumed(state))})
        try:
            self.fs.rm([self.path(f"{mf.DELTAS}/{n}") for n in state.deltas])
        except FileNotFoundError:
            pass
        for n in state.deltas:
            self._known.pop(n, None)
        return len(state.deltas)

    # -- reading

    def delta_names(self) -> list[str]:
        """The names of the deltas present, in order (one listing of the manifest folder)."""
        try:
            listed = self.fs.ls(self.path(mf.DELTAS), detail=False)
        except FileNotFoundError:
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in listed]
        return sorted(n for n in names if mf.is_delta_name(n))

    def read_compacted(self) -> bytes | None:
        """The bytes of manifest.json, or None when there is none."""
        try:
            data: bytes = self.fs.cat_file(self.path(mf.MANIFEST))
            return data
        except FileNotFoundError:
            return None

    def state(self, known: dict[str, Any] | None = None) -> mf.RunState:
        """The merged manifest: manifest.json and every delta it has not consumed.

        Args:
            known: a cache of parsed deltas by name (filled in; a delta never changes), so a
                caller that asks again fetches only the new ones.
        """
        state = mf.RunState()
        data = self.read_compacted()
        if data is not None:
            mf.apply_compacted(state, mf.parse(data))
        consumed = set(state.consumed)
        names = [n for n in self.delta_names() if n not in consumed]
        cache = known if known is not None else self._known
        missing = [n for n in names if n not in cache]
        if missing:
            got = self.fs.cat([self.path(f"{mf.DELTAS}/{n}") for n in missing], on_error="omit")
            for path, body in got.items():
                cache[path.rstrip("/").rsplit("/", 1)[-1]] = mf.parse(body)
        for n in names:
            if n in cache:
                mf.apply_delta(state, n, cache[n])
        return state

    def read_range(self, relpath: str, piece: tuple[int, int, str | None], start: int, end: int) -> bytes:
        """Bytes [start, end) of `relpath` from one of its pieces (FileState.pieces)."""
        off, _length, seg = piece
        key = check_run_relpath(relpath) if seg is None else mf.segment_key(relpath, off)
        data: bytes = self.fs.cat_file(self.path(key), start=start - off, end=end - off)
        return data

    def _consumed(self, state: mf.RunState) -> list[str]:
        """The deltas a new manifest.json folds in: those of `state`, and those an older one
        folded in that are still there (a delete that failed), so none is applied twice."""
        present = set(self.delta_names())
        return sorted(set(state.deltas) | (set(state.consumed) & present))

    # -- compaction

    def compact(self, local_dir: str | os.PathLike[str] | None = None) -> CompactReport:
        """Write every append-only file as one object at its plain key, record that in
        manifest.json, then delete the segments and deltas folded in.

        The bytes come from `local_dir` (the spool's run directory) where it holds them, else
        from the segments (read back). A file that is one segment is copied server-side.

        Returns:
            What was uploaded, copied and deleted.
        """
        report = CompactReport()
        state = self.state()
        doomed: set[str] = set()
        for rel, f in sorted(state.files.items()):
            if not f.append or not f.segments:
                continue
            pieces = f.pieces()
            end = f.end
            report.files += 1
            if len(pieces) == 1 and pieces[0][2] is not None:
                self.fs.copy(self.path(mf.segment_key(rel, pieces[0][0])), self.path(rel))
                report.bytes_copied += end
            elif len(pieces) > 1 or pieces[0][2] is not None:
                data = _local_prefix(local_dir, rel, end)
                if data is None:
                    data = b"".join(self.read_range(rel, p, p[0], p[0] + p[1]) for p in pieces)
                self.pipe({self.path(rel): data})
                report.bytes_uploaded += len(data)
            # Segments folded in go; one after a gap (another writer's, still on its way)
            # stays, named by manifest.json.
            doomed.update(self.path(mf.segment_key(rel, o)) for o in f.segments if o < end)
            f.size = end
            f.segments = {o: n for o, n in f.segments.items() if o >= end}
        self.pipe({self.path(mf.MANIFEST): mf.encode_compacted(state, self._consumed(state))})
        doomed.update(self.path(f"{mf.DELTAS}/{n}") for n in state.deltas)
        if doomed:
            try:
                self.fs.rm(sorted(doomed))
            except FileNotFoundError:
                pass
        report.deleted = len(doomed)
        return report


def _local_prefix(local_dir: str | os.PathLike[str] | None, rel: str, end: int) -> bytes | None:
    """The first `end` bytes of the spool's copy of `rel`, if it holds that many."""
    if local_dir is None:
        return None
    try:
        with open(Path(local_dir) / rel, "rb") as fh:
            data = fh.read(end)
    except OSError:
        return None
    return data if len(data) == end else None
