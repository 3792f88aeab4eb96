"""The manifest of a run in object storage: which objects hold which bytes (pure code).

Keys, relative to a run's folder ``<experiment>/<run-id>/`` (docs/object-storage.md):

* ``<relpath>``: a whole file as itself (run.json, media, checkpoints), or an append-only
  file once compacted.
* ``.labtrack/segments/<relpath>/<offset:020d>``: the bytes of an append-only file from
  `offset` on, as uploaded between two flushes. The key is a function of (relpath, offset),
  so a retry rewrites the same object and a reader never trusts a key named in a manifest.
  A writer compresses a small segment with gzip when that saves a tenth or more: its key
  ends in ``.gz`` and its delta entry names that key (``[offset, length, key]``, `length`
  counting the file's bytes, not the object's); the key is still derived, never trusted.
* ``.labtrack/manifest/<time_ns:020d>-<writer>.json``: a delta, written after each batch:
  ``{"format": 1, "writer": w, "segments": {rel: [[offset, length, key], ...]},
  "files": {rel: [size, mtime_ns]}, "deleted": [rel, ...]}``.
* ``.labtrack/manifest/<time_ns:020d>-<writer>.pack``: a *packed* delta, what a server
  writes for a batch (one PUT for every file's appended bytes, instead of one object per
  file and a delta): the bytes of the batch's appends back to back, then the delta's JSON,
  then the JSON's length in 20 digits. Its segments are ``[offset, length, pack, position]``:
  the file's bytes from `offset` are the object's bytes from `position`, `pack` being the
  packed delta's name without ``.pack`` (checked like a delta's name; the key is derived
  from it, so a manifest can never point a reader elsewhere). Every attempt of a batch
  writes its own, so no object is ever overwritten with other bytes. A reader fetches only
  its tail (the JSON) to learn the manifest.
* ``.labtrack/manifest.json``: the compacted manifest: ``{"format": 1, "files": {rel:
  {"size": n, "mtime_ns": t, "append": bool[, "gz": true]}}, "consumed": [delta names]}``
  (``"gz"``: the append-only file was compacted as ``<rel>.gz``, one gzip stream of its
  first `size` bytes); the deltas it
  names are already folded in (they may still exist for a moment after a compaction).

:func:`merge` folds the compacted manifest and the deltas into a :class:`RunState`. Every
value read from a bucket is checked: a malformed or hostile entry (a path with ``..``, an
absolute path, control characters, a negative offset) is skipped and reported, never used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import LabtrackNameError
from .store import check_key_part, check_run_relpath

FORMAT = 1
META = ".labtrack"
SEGMENTS = f"{META}/segments"
DELTAS = f"{META}/manifest"
PACKED = ".pack"  # the suffix of a packed delta
TAIL = 20  # the digits of a packed delta's JSON length, at its end
MANIFEST = f"{META}/manifest.json"
_DELTA_NAME = re.compile(r"\A(\d{20})-([A-Za-z0-9._-]{1,128})\.(json|pack)\Z")
_PACK_NAME = re.compile(r"\A\d{20}-[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")
MAX_OFFSET = 1 << 50
MAX_NS = (1 << 63) - 1


GZ = ".gz"  # the suffix of a gzip-compressed segment's key


def segment_key(relpath: str, offset: int, gz: bool = False) -> str:
    """The key (relative to the run) of `relpath`'s segment that starts at `offset`
    (``.gz`` at the end when its bytes are gzip-compressed)."""
    return f"{SEGMENTS}/{relpath}/{offset:020d}{GZ if gz else ''}"


def delta_name(time_ns: int, writer: str) -> str:
    """The file name of a delta: sortable by time, unique per writer."""
    check_key_part(writer, "writer id")
    return f"{time_ns:020d}-{writer}.json"


def is_delta_name(name: str) -> bool:
    """True for a name :func:`delta_name` makes."""
    return _DELTA_NAME.match(name) is not None


def pack_name(time_ns: int, writer: str) -> str:
    """The name of a packed delta without its suffix (see the module docstring)."""
    check_key_part(writer, "writer id")
    return f"{time_ns:020d}-{writer}"


def is_pack_name(name: object) -> bool:
    """True for a name :func:`pack_name` makes (never a path: no '/', no '..')."""
    return isinstance(name, str) and _PACK_NAME.match(name) is not None and ".." not in name


def pack_key(name: str) -> str:
    """The key (relative to the run) of the pack `name`."""
    if not is_pack_name(name):
        raise LabtrackNameError(f"pack name {name[:80]!r} is not a name pack_name makes")
    return f"{DELTAS}/{name}{PACKED}"


def encode_packed(writer: str, segments: dict[str, list[list[Any]]], files: dict[str, list[int]],
                  deleted: list[str], data: bytes) -> bytes:
    """The bytes of a packed delta: `data`, the delta's JSON, the JSON's length."""
    head = encode_delta(writer, segments, files, deleted)
    return data + head + b"%0*d" % (TAIL, len(head))


def packed_head(tail: bytes, whole: bool) -> tuple[Any, int]:
    """The parsed JSON of a packed delta from the end of its bytes (`tail`; `whole`: the
    object's every byte): (doc, 0), or (None, n) when the last n bytes are needed, or
    (None, 0) when the object is malformed."""
    digits = tail[-TAIL:]
    if len(digits) != TAIL or not digits.isdigit():
        return None, 0
    n = int(digits)
    if n + TAIL > len(tail):
        return (None, 0) if whole else (None, n + TAIL)
    return parse(tail[len(tail) - TAIL - n: len(tail) - TAIL]), 0


#: A piece of a file (FileState.pieces): offset, length, source, shift.
Piece = tuple[int, int, str | None, int]


@dataclass
class FileState:
    """One file of a run as the bucket holds it."""

    append: bool
    size: int = 0  # whole file: its size; append-only: the bytes in the plain object (base)
    mtime_ns: int = 0
    segments: dict[int, int] = field(default_factory=dict)  # offset -> length, offset >= size
    packs: dict[int, tuple[str, int]] = field(default_factory=dict)  # offset -> (pack, position)
    gz: set[int] = field(default_factory=set)  # offsets of segments stored gzip-compressed
    gzbase: bool = False  # append-only, compacted as ``<relpath>.gz`` (the `compact_gzip` setting)

    def pieces(self) -> list[Piece]:
        """(offset, length, source, shift), contiguous from 0: the file's bytes [offset,
        offset + length) are bytes [offset - shift, offset + length - shift) of the source:
        None for the plain object (``gzbase`` for ``<relpath>.gz``), the segment's offset as
        a string (``gz:<offset>`` for a compressed one), or ``pack:<name>``
        (`ObjectRun.read_range` turns a source into its key). Segments after a gap are left
        out (their predecessor is still on its way); one that overlaps the bytes before it
        (an attempt killed after its delta, longer than the retry that was acknowledged:
        the bytes from one offset are the same in every attempt) is cut to what it adds."""
        out: list[Piece] = []
        end = 0
        if self.size:
            out.append((0, self.size, "gzbase" if self.gzbase else None, 0))
            end = self.size
        for off in sorted(self.segments):
            length = self.segments[off]
            if off + length <= end:
                continue  # folded into the plain object, or a shorter retry of the same bytes
            if off > end:
                break
            packed = self.packs.get(off)
            if packed is not None:
                source, shift = f"pack:{packed[0]}", off - packed[1]
            else:
                source, shift = (f"gz:{off}" if off in self.gz else str(off)), off
            out.append((end, off + length - end, source, shift))
            end = off + length
        return out

    @property
    def end(self) -> int:
        """The readable size: the plain object and the segments contiguous with it."""
        p = self.pieces()
        return p[-1][0] + p[-1][1] if p else 0


@dataclass
class RunState:
    """What a run's manifests say, merged."""

    files: dict[str, FileState] = field(default_factory=dict)
    deltas: list[str] = field(default_factory=list)  # the delta names folded in, in order
    consumed: list[str] = field(default_factory=list)  # named by manifest.json
    problems: list[str] = field(default_factory=list)  # entries skipped as malformed or hostile

    def sizes(self) -> dict[str, tuple[int, int]]:
        """relpath -> (size, mtime_ns): what the uploader compares the spool with."""
        return {rel: (f.end, 0) if f.append else (f.size, f.mtime_ns) for rel, f in self.files.items()}


def _int(v: Any, top: int = MAX_OFFSET) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top else None


def _ns(v: Any) -> int | None:
    return _int(v, MAX_NS)


def _rel(rel: Any, state: RunState, source: str) -> str | None:
    try:
        return check_run_relpath(rel, "file path")
    except LabtrackNameError as e:
        state.problems.append(f"{source}: {e}")
        return None


def apply_compacted(state: RunState, doc: Any, source: str = MANIFEST) -> None:
    """Fold a parsed manifest.json into `state`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        state.problems.append(f"{source}: not a format {FORMAT} manifest; ignored")
        return
    files = doc.get("files")
    for rel, v in (files.items() if isinstance(files, dict) else ()):
        r = _rel(rel, state, source)
        if r is None or not isinstance(v, dict):
            continue
        size, mtime = _int(v.get("size")), _ns(v.get("mtime_ns", 0))
        if size is None or mtime is None:
            state.problems.append(f"{source}: {r!r} has no valid size")
            continue
        append = bool(v.get("append"))
        state.files[r] = FileState(append=append, size=size, mtime_ns=mtime,
                                   gzbase=append and v.get("gz") is True)
    _apply_segments(state, doc.get("segments"), source)
    consumed = doc.get("consumed")
    state.consumed = [c for c in consumed if isinstance(c, str) and is_delta_name(c)] \
        if isinstance(consumed, list) else []


def apply_delta(state: RunState, name: str, doc: Any) -> None:
    """Fold one parsed delta into `state` (deltas are applied in name order)."""
    source = f"{DELTAS}/{name}"
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        state.problems.append(f"{source}: not a format {FORMAT} delta; ignored")
        return
    state.deltas.append(name)
    _apply_segments(state, doc.get("segments"), source)
    files = doc.get("files")
    for rel, v in (files.items() if isinstance(files, dict) else ()):
        r = _rel(rel, state, source)
        if r is None:
            continue
        if not (isinstance(v, list) and len(v) == 2 and _int(v[0]) is not None and _ns(v[1]) is not None):
            state.problems.append(f"{source}: {r!r} has no valid [size, mtime_ns]")
            continue
        state.files[r] = FileState(append=False, size=v[0], mtime_ns=v[1])
    deleted = doc.get("deleted")
    for rel in (deleted if isinstance(deleted, list) else ()):
        r = _rel(rel, state, source)
        if r is not None:
            state.files.pop(r, None)


def _apply_segments(state: RunState, segs: Any, source: str) -> None:
    for rel, lst in (segs.items() if isinstance(segs, dict) else ()):
        r = _rel(rel, state, source)
        if r is None or not isinstance(lst, list):
            continue
        f = state.files.get(r)
        if f is None or not f.append:
            f = state.files[r] = FileState(append=True)
        for item in lst:
            if not (isinstance(item, list) and len(item) >= 2):
                state.problems.append(f"{source}: a segment of {r!r} is not [offset, length]")
                continue
            off, length = _int(item[0]), _int(item[1])
            if off is None or length is None or length == 0:
                state.problems.append(f"{source}: a segment of {r!r} has a bad offset or length")
                continue
            packed: tuple[str, int] | None = None
            if len(item) == 4:  # [offset, length, pack, position]
                pos = _int(item[3])
                if not is_pack_name(item[2]) or pos is None:
                    state.problems.append(f"{source}: a segment of {r!r} names a bad pack")
                    continue
                packed = (item[2], pos)
            gz = packed is None and len(item) == 3 and isinstance(item[2], str) and item[2].endswith(GZ)
            if length > f.segments.get(off, 0):
                f.segments[off] = length
                if packed is not None:
                    f.packs[off] = packed
                else:
                    f.packs.pop(off, None)
                if gz:
                    f.gz.add(off)
                else:
                    f.gz.discard(off)


def parse(data: bytes) -> Any:
    """JSON from a manifest object, or None when it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_delta(name: str, data: bytes) -> Any:
    """A delta object's parsed JSON (a packed delta's from its end), or None."""
    return packed_head(data, True)[0] if name.endswith(PACKED) else parse(data)


def encode_delta(writer: str, segments: dict[str, list[list[Any]]], files: dict[str, list[int]],
                 deleted: list[str]) -> bytes:
    """The bytes of a delta object."""
    return json.dumps({"format": FORMAT, "writer": writer, "segments": segments, "files": files,
                       "deleted": deleted}, separators=(",", ":"), sort_keys=True).encode()


def encode_compacted(state: RunState, consumed: list[str]) -> bytes:
    """The bytes of manifest.json for `state` once every append-only file is compacted."""
    files = {rel: {"size": f.size, "mtime_ns": f.mtime_ns, "append": f.append,
                   **({"gz": True} if f.gzbase and f.append else {})}
             for rel, f in sorted(state.files.items())}
    left = {rel: [[o, n, *f.packs[o]] if o in f.packs
                  else [o, n, segment_key(rel, o, True)] if o in f.gz else [o, n]
                  for o, n in sorted(f.segments.items())]
            for rel, f in sorted(state.files.items()) if f.append and f.segments}
    return json.dumps({"format": FORMAT, "files": files, "segments": left, "consumed": consumed},
                      separators=(",", ":"), sort_keys=True).encode()
