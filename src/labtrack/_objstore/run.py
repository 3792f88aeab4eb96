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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import manifest as mf
from .store import ObjectStore, check_key_part, check_run_relpath, get_heads, get_many, get_whole

MULTIPART_MIN = 5 << 20  # S3's smallest part of a multipart upload (all but the last)
GZ_MIN = 512  # segments shorter than this are stored as they are
GZ_KEEP = 8 << 20  # the largest inflated object an ObjectRun keeps for the next range
GZ_LEVEL = 1  # zlib's fastest: ~150 MB/s on the uploader's thread, a third of the bytes on CSV


def compress_segment(data: bytes, offset: int) -> bytes | None:
    """`data` (a segment from `offset`) as one gzip member, when it is worth it: a segment
    whose bytes compaction will upload again anyway, being below S3's 5 MiB smallest copied
    part, and at least a tenth smaller. Never the first segment of a file: when it is the
    whole file (a run that went up in one catch-up round after an outage), compaction copies
    it server-side for free, which it cannot do with gzip bytes. None otherwise."""
    if offset == 0 or not GZ_MIN <= len(data) < MULTIPART_MIN:
        return None
    z = gzip_bytes(data, GZ_LEVEL)
    return z if len(z) * 10 <= len(data) * 9 else None


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """`data` as one gzip stream (what ``gunzip`` and pandas' ``read_csv`` read)."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip header, gunzip reads it
    return c.compress(data) + c.flush()


class CorruptObject(OSError):
    """An object in the bucket does not hold what its manifest says (a compressed segment
    that does not inflate)."""


def gunzip(data: bytes, what: str) -> bytes:
    """The bytes of a compressed segment; CorruptObject naming it when it is not gzip."""
    try:
        return zlib.decompress(data, 47)  # wbits 47: gzip or zlib, header detected
    except zlib.error as e:
        raise CorruptObject(f"{what} is not a gzip object: {e}") from None


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
        self._gz: tuple[str, bytes] = ("", b"")  # the last compressed segment read, inflated

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

    def put_segments(self, items: Iterable[tuple[str, int, bytes]], *,
                     compress: bool = False) -> list[tuple[int, int, bool]]:
        """Several segments at once (concurrent PUTs where the back end can); with
        `compress`, each one :func:`compress_segment` finds worth it is stored gzipped.
        Returns (offset, length, gzipped) per item, what :meth:`write_manifest_delta`'s
        `segments` takes."""
        paths: dict[str, bytes] = {}
        out = [entry for _rel, entry in self.segment_objects(items, compress, paths)]
        self.pipe(paths)
        return out

    def segment_objects(self, items: Iterable[tuple[str, int, bytes]], compress: bool,
                        into: dict[str, bytes]) -> list[tuple[str, tuple[int, int, bool]]]:
        """The objects of segments [(relpath, offset, bytes)], each gzipped where
        :func:`compress_segment` finds it worth it (with `compress`), put in `into` (fsspec
        path -> bytes, for one :meth:`pipe` with other objects); returns (relpath, (offset,
        length, gzipped)) per item."""
        out = []
        for rel, off, data in items:
            z = compress_segment(data, off) if compress else None
            into[self.path(mf.segment_key(check_run_relpath(rel), off, z is not None))] = \
                data if z is None else z
            out.append((rel, (off, len(data), z is not None)))
        return out

    def pack(self, chunks: list[tuple[str, int, bytes]]) -> tuple[str, bytes, dict[str, list[tuple[int, int, int]]]]:
        """The pack of a batch's appends [(relpath, offset, bytes)]: its name (new, unique),
        its bytes, and {relpath: [(offset, length, position)]}: what
        :meth:`write_manifest_delta`'s `packed` takes, as (name, positions, bytes)."""
        name = mf.pack_name(self._next_ns(), self.writer)
        where: dict[str, list[tuple[int, int, int]]] = {}
        pos = 0
        for rel, off, data in chunks:
            if data:
                where.setdefault(check_run_relpath(rel), []).append((off, len(data), pos))
                pos += len(data)
        return name, b"".join(d for _r, _o, d in chunks), where

    def _next_ns(self) -> int:
        ns = max(time.time_ns(), self._last_ns + 1)  # sortable even if the clock steps back
        self._last_ns = ns
        return ns

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

    def write_manifest_delta(self, segments: Mapping[str, Sequence[tuple[int, int] | tuple[int, int, bool]]] | None = None,
                             files: dict[str, tuple[int, int]] | None = None,
                             deleted: Iterable[str] = (),
                             packed: tuple[str, dict[str, list[tuple[int, int, int]]], bytes] | None = None
                             ) -> str:
        """Publish what a batch added: `segments` {relpath: [(offset, length[, gzipped])]}, whole
        `files` {relpath: (size, mtime_ns)}, `deleted` relpaths, and appends in one packed
        delta, `packed` (name, {relpath: [(offset, length, position)]}, bytes: :meth:`pack`),
        which then holds everything in one PUT. Returns the delta's name. Readers see a
        batch only once this returns."""
        segs: dict[str, list[list[Any]]] = {
            check_run_relpath(r): [[e[0], e[1], mf.segment_key(r, e[0], len(e) > 2 and bool(e[2]))]
                                   for e in lst]
            for r, lst in (segments or {}).items() if lst}
        if packed is not None:
            key = mf.pack_key(packed[0])  # checked
            for r, plst in packed[1].items():
                segs.setdefault(check_run_relpath(r), []).extend([o, n, packed[0], p] for o, n, p in plst)
            whole_ = {check_run_relpath(r): [s, m] for r, (s, m) in (files or {}).items()}
            gone_ = [check_run_relpath(r) for r in deleted]
            self.pipe({self.path(key): mf.encode_packed(self.writer, segs, whole_, gone_, packed[2])})
            packed_name = key.rsplit("/", 1)[-1]
            self._known[packed_name] = mf.parse(mf.encode_delta(self.writer, segs, whole_, gone_))
            self.deltas_written += 1
            return packed_name
        name = mf.delta_name(self._next_ns(), self.writer)
        whole = {check_run_relpath(r): [s, m] for r, (s, m) in (files or {}).items()}
        gone = [check_run_relpath(r) for r in deleted]
        body = mf.encode_delta(self.writer, segs, whole, gone)
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
        plain = [n for n in state.deltas if not n.endswith(mf.PACKED)]  # packed ones hold bytes
        try:
            if plain:
                self.fs.rm([self.path(f"{mf.DELTAS}/{n}") for n in plain])
        except FileNotFoundError:
            pass
        for n in plain:
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
            return get_whole(self.fs, self.path(mf.MANIFEST))
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
        plain = [n for n in missing if not n.endswith(mf.PACKED)]
        if plain:
            got = get_many(self.fs, [self.path(f"{mf.DELTAS}/{n}") for n in plain])
            for path, body in got.items():
                cache[path.rstrip("/").rsplit("/", 1)[-1]] = mf.parse(body)
        packed = [n for n in missing if n.endswith(mf.PACKED)]
        if packed:
            for n, doc in zip(packed, get_heads(self.fs, [self.path(f"{mf.DELTAS}/{n}") for n in packed])):
                if doc is not None:
                    cache[n] = doc
        for n in names:
            if n in cache:
                mf.apply_delta(state, n, cache[n])
        return state

    def piece_key(self, relpath: str, piece: mf.Piece) -> str:
        """The key (relative to the run) of the object that holds a piece of `relpath`:
        derived from the file's path, the segment's offset or the checked pack name."""
        source = piece[2]
        if source is None:
            return check_run_relpath(relpath)
        if source.startswith("pack:"):
            return mf.pack_key(source[5:])
        if source == "gzbase":
            return check_run_relpath(relpath) + mf.GZ
        if source.startswith("gz:"):
            return mf.segment_key(check_run_relpath(relpath), int(source[3:]), True)
        return mf.segment_key(check_run_relpath(relpath), int(source))

    def read_range(self, relpath: str, piece: mf.Piece, start: int, end: int) -> bytes:
        """Bytes [start, end) of `relpath` from one of its pieces (FileState.pieces); a
        compressed object (a segment, or a file compacted as ``<relpath>.gz``) is fetched
        whole and kept, inflated, for the next range."""
        shift = piece[3]
        key = self.piece_key(relpath, piece)
        if piece[2] is not None and piece[2].startswith("gz"):
            got = self._gz  # one read: another thread may replace it
            if got[0] != key:
                got = (key, gunzip(get_whole(self.fs, self.path(key)), f"{self.rel}/{key}"))
                if len(got[1]) <= GZ_KEEP:  # a server holds one ObjectRun per run: keep small ones
                    self._gz = got
            return got[1][start - shift:end - shift]
        data: bytes = self.fs.cat_file(self.path(key), start=start - shift, end=end - shift)
        return data

    def _can_copy_parts(self) -> bool:
        """True on S3 (s3fs), whose multipart upload can copy ranges of other objects."""
        return hasattr(self.fs, "call_s3") and hasattr(self.fs, "split_path")

    def _bytes_of(self, rel: str, pieces: list[mf.Piece],
                  local_dir: str | os.PathLike[str] | None, start: int, end: int) -> bytes:
        """Bytes [start, end) of append-only `rel`: from the spool if it holds them, else
        read back from the pieces."""
        data = _local_range(local_dir, rel, start, end)
        if data is not None:
            return data
        out = []
        for p in pieces:
            lo, hi = max(start, p[0]), min(end, p[0] + p[1])
            if lo < hi:
                out.append(self.read_range(rel, p, lo, hi))
        return b"".join(out)

    def _concat(self, rel: str, pieces: list[mf.Piece],
                local_dir: str | os.PathLike[str] | None) -> tuple[int, int]:
        """Write `rel`'s plain object as a multipart upload that copies its big pieces
        server-side; returns (bytes uploaded, bytes copied)."""
        bucket, key, _ = self.fs.split_path(self.path(rel))
        mpu = self.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
        uid = mpu["UploadId"]
        done: list[dict[str, Any]] = []
        sent = copied = 0
        try:
            for n, (kind, i, a, b) in enumerate(_plan_parts(pieces), start=1):
                if kind == "copy":
                    shift = pieces[i][3]
                    sb, sk, _ = self.fs.split_path(self.path(self.piece_key(rel, pieces[i])))
                    r = self.fs.call_s3("upload_part_copy", Bucket=bucket, Key=key, UploadId=uid,
                                        PartNumber=n, CopySource={"Bucket": sb, "Key": sk},
                                        CopySourceRange=f"bytes={a - shift}-{b - shift - 1}")
                    done.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
                    copied += b - a
                else:
                    body = self._bytes_of(rel, pieces, local_dir, a, b)
                    r = self.fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=uid,
                                        PartNumber=n, Body=body)
                    done.append({"PartNumber": n, "ETag": r["ETag"]})
                    sent += len(body)
            self.fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=uid,
                            MultipartUpload={"Parts": done})
        except BaseException:
            try:
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=uid)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise
        self.bytes_put += sent
        self.objects_put += 1
        return sent, copied

    def _consumed(self, state: mf.RunState) -> list[str]:
        """The deltas a new manifest.json folds in: those of `state`, and those an older one
        folded in that are still there (a delete that failed), so none is applied twice."""
        present = set(self.delta_names())
        return sorted(set(state.deltas) | (set(state.consumed) & present))

    # -- compaction

    def compact(self, local_dir: str | os.PathLike[str] | None = None, *,
                gzip: bool | None = None) -> CompactReport:
        """Write every append-only file as one object at its plain key, record that in
        manifest.json, then delete the segments and deltas folded in.

        The bytes come from `local_dir` (the spool's run directory) where it holds them, else
        from the segments (read back). A file that is one segment is copied server-side.

        Args:
            gzip: a file whose bytes must be uploaded again (not copied server-side) is
                written as ``<relpath>.gz`` instead, one gzip stream (default: the
                `compact_gzip` setting). A third of a CSV's bytes; not for a file whose
                ``.gz`` name the run already uses.

        Returns:
            What was uploaded, copied and deleted.
        """
        from .._settings import get

        use_gz = bool(get("compact_gzip", gzip))
        report = CompactReport()
        state = self.state()
        doomed: set[str] = set()
        for rel, f in sorted(state.files.items()):
            if not f.append or not f.segments:
                continue
            pieces = f.pieces()
            end = f.end
            report.files += 1
            was_gz = f.gzbase
            if len(pieces) == 1 and pieces[0][2] is not None and f.segments.get(0) == end \
                    and 0 not in f.packs and 0 not in f.gz:  # one whole segment object: copied as it is
                self.fs.copy(self.path(mf.segment_key(rel, 0)), self.path(rel))
                report.bytes_copied += end
                f.gzbase = False
            elif len(pieces) > 1 or pieces[0][2] not in (None, "gzbase"):
                if self._can_copy_parts() and any(_copyable(p) for p in pieces) \
                        and not (use_gz and f.gzbase):
                    up, copied = self._concat(rel, pieces, local_dir)
                    report.bytes_uploaded += up
                    report.bytes_copied += copied
                    f.gzbase = False
                else:
                    data = self._bytes_of(rel, pieces, local_dir, 0, end)
                    f.gzbase = use_gz and rel + mf.GZ not in state.files
                    if f.gzbase:
                        body = gzip_bytes(data)
                        self.pipe({self.path(rel + mf.GZ): body})
                        report.bytes_uploaded += len(body)
                    else:
                        self.pipe({self.path(rel): data})
                        report.bytes_uploaded += len(data)
            if was_gz != f.gzbase and f.size:  # the other form of the old base: stale now
                doomed.add(self.path(rel if f.gzbase else rel + mf.GZ))
            # Segments folded in go; one after a gap (another writer's, still on its way)
            # stays, named by manifest.json.
            doomed.update(self.path(mf.segment_key(rel, o, o in f.gz)) for o in f.segments
                          if o < end and o not in f.packs)
            f.size = end
            f.segments = {o: n for o, n in f.segments.items() if o >= end}
            f.packs = {o: p for o, p in f.packs.items() if o >= end}
            f.gz = {o for o in f.gz if o >= end}
        self.pipe({self.path(mf.MANIFEST): mf.encode_compacted(state, self._consumed(state))})
        # A packed delta holds bytes: it stays while a segment left (after a gap) names it.
        kept = {self.path(mf.pack_key(p[0])) for f in state.files.values() for p in f.packs.values()}
        doomed.update(p for p in (self.path(f"{mf.DELTAS}/{n}") for n in state.deltas) if p not in kept)
        if doomed:
            try:
                self.fs.rm(sorted(doomed))
            except FileNotFoundError:
                pass
        report.deleted = len(doomed)
        return report


def _plan_parts(pieces: Sequence[tuple[Any, ...]],
                minimum: int = MULTIPART_MIN) -> list[tuple[str, int, int, int]]:
    """The parts of a multipart upload that concatenates `pieces`: ("copy", piece index,
    start, end) for a range of a piece of at least `minimum` bytes copied server-side,
    ("send", -1, start, end) for bytes uploaded. Every part but the last is at least
    `minimum` bytes (S3's rule); a short run of small pieces before a big one is sent
    together with the start of the big one."""
    parts: list[tuple[str, int, int, int]] = []
    pending: tuple[int, int] | None = None  # bytes [a, b) still to send
    for i, piece in enumerate(pieces):
        off, length = int(piece[0]), int(piece[1])
        start, stop = off, off + length
        if _copyable(piece, minimum):
            if pending is not None:
                need = minimum - (pending[1] - pending[0])
                if need > 0:  # borrow the start of this piece to make the sent part big enough
                    take = min(need, length)
                    pending = (pending[0], start + take)
                    start += take
                if stop - start >= minimum or (i == len(pieces) - 1 and stop > start):
                    parts.append(("send", -1, *pending))
                    pending = None
                else:
                    pending = (pending[0], stop)
                    continue
            parts.append(("copy", i, start, stop))
        else:
            pending = (pending[0], stop) if pending is not None else (start, stop)
    if pending is not None:
        parts.append(("send", -1, *pending))
    return parts


def _copyable(piece: Sequence[Any], minimum: int = MULTIPART_MIN) -> bool:
    """True for a piece whose bytes S3 can copy as a part: big enough, stored plain."""
    return int(piece[1]) >= minimum and not str(piece[2]).startswith("gz")


def _local_range(local_dir: str | os.PathLike[str] | None, rel: str, start: int, end: int) -> bytes | None:
    """Bytes [start, end) of the spool's copy of `rel`, if it holds them."""
    if local_dir is None:
        return None
    try:
        with open(Path(local_dir) / rel, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
    except OSError:
        return None
    return data if len(data) == end - start else None
