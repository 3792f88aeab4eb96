"""Charts of long series from their envelopes (`_store/lod.py`), never from all their points.

For a series file of :data:`MIN_BYTES` and more, the server answers /scalars from the
envelope's records: the whole series from at most about a hundred thousand records (a
100M-point series has 97,657: 15 MB), a zoomed window from the records it covers while they
are more than the chart's points, and from the CSV bytes of those blocks (found through the
records' byte offsets, so at most about `points` x 1,024 / 4 lines are parsed) once it is
zoomed in further: that answer is exactly the one the parsed series gives.

Where the records come from, best first: the envelope the training process wrote beside the
series (`<run>/.lod/`), or the one this server built before (`<root>/.labtrack/lod/`),
whichever covers more; both are checked against the CSV. The lines after the last record
(a live run's last block, a crash's tail, a run with no envelope at all) are parsed from the
CSV in :data:`READ_BLOCK` pieces, each reduced to records before the next is read, into one
array that grows in place (memory holds a piece and the records, never the series: a
100M-point build peaks near 200 MB of server RSS), one long build at a time; once they are
16 MB of CSV or more the whole is saved under `<root>/.labtrack/lod/`. A live run's next
request parses only the lines after the last complete block. Blank and damaged lines are
skipped as the parsed series skips them (the records' byte offsets then span them); a piece
the two parsers read differently makes the caller parse the file as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from .._store import lod
from .._store.files import atomic_writer
from .._store.scalars import HEADER_LINE, Unparsed, parse_lines

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger("labtrack.server")
MIN_BYTES = 8 << 20  # smaller series files are parsed whole (about 200,000 points, ~50 ms)
SAVE_BYTES = 16 << 20  # a server-built envelope covering this much CSV is kept on disk
READ_BLOCK = 4 << 20  # CSV bytes parsed at once (~100,000 lines): what memory holds
BUILD_ALONE = 16 << 20  # a build with more CSV bytes than this to read waits for the others
_BUILDS = threading.Lock()
Opener = Callable[[], IO[bytes]]


@dataclass
class Envelope:
    """Checked records of one series (the last may cover a block still filling)."""

    records: npt.NDArray[Any]
    step_ordered: bool  # the records' first and last steps never decrease
    time_ordered: bool

    @property
    def total(self) -> int:
        return int(self.records["n_end"][-1]) if len(self.records) else 0


def _ordered(first: npt.NDArray[Any], last: npt.NDArray[Any]) -> bool:
    import numpy as np

    return bool(np.all(last >= first) and np.all(first[1:] >= last[:-1]))


@dataclass
class _Entry:
    lock: threading.Lock
    key: tuple[int, int, int] = (-1, -1, -1)  # the CSV's ino, size, mtime_ns when built
    base: Any = None  # records of complete blocks (from disk or built here)
    env: Envelope | None = None
    saved_to: int = 0  # CSV bytes the saved server copy covers
    extra: dict[str, Any] = field(default_factory=dict)


class EnvelopeCache:
    """Envelopes of the series the server was asked for, kept per file (a few MB each).

    Args:
        folder: where this server keeps envelopes it built (None: nowhere; rebuilt after a
            restart).
    """

    def __init__(self, folder: Path | None, max_entries: int = 256) -> None:
        self.folder = folder
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._warned = False

    def _saved(self, csv: Path) -> Path | None:
        if self.folder is None:
            return None
        key = hashlib.sha1(os.path.realpath(csv).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        return self.folder / f"{key}{lod.SUFFIX}"

    def get(self, csv: Path, run_dir: Path, relpath: str, opener: Opener) -> Envelope | None:
        """The envelope of the series file `csv` (`relpath` in `run_dir`), or None when it
        is shorter than MIN_BYTES, not a series file, or has lines the fast parser refuses
        (then the caller parses it as before).

        Raises:
            FileNotFoundError: no such file.
            OutsideRootError: `opener` refused it.
        """
        with self._lock:
            entry = self._entries.get(str(csv))
            if entry is None:
                entry = self._entries[str(csv)] = _Entry(threading.Lock())
            self._entries.move_to_end(str(csv))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        with entry.lock, opener() as f:
            st = os.fstat(f.fileno())
            if st.st_size < MIN_BYTES:
                return None
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if key == entry.key:
                return entry.env
            if f.read(len(HEADER_LINE)) != HEADER_LINE:
                return None
            env = self._refresh(entry, csv, run_dir, relpath, f, st.st_ino, st.st_size)
            entry.key, entry.env = key, env
            return env

    def _refresh(self, entry: _Entry, csv: Path, run_dir: Path, relpath: str, f: IO[bytes],
                 ino: int, size: int) -> Envelope | None:
        import numpy as np

        hl = len(HEADER_LINE)
        base = entry.base if entry.key[0] == ino and entry.base is not None else None
        if base is not None and len(base) and int(base["byte_end"][-1]) > size:
            base = None  # the file shrank: start again
        best = base
        for candidate in (lod.path_for(run_dir, relpath), self._saved(csv)):
            if candidate is None:
                continue
            if best is not None and len(best) and _covers(candidate, best):
                continue
            recs = lod.load(candidate, f, size, hl)
            if recs is not None and (best is None or not len(best)
                                     or recs["byte_end"][-1] > best["byte_end"][-1]):
                best = recs
        if best is None:
            best = np.zeros(0, dtype=lod.dtype())
        covered = int(best["byte_end"][-1]) if len(best) else hl
        n0 = int(best["n_end"][-1]) if len(best) else 0
        try:
            # one long build at a time: a dashboard asks for several series at once, and each
            # build's memory is bounded, not their sum (the two cores are busy anyway)
            with _BUILDS if size - covered > BUILD_ALONE else contextlib.nullcontext():
                records, complete = _build(f, covered, size, n0, best)
        except Unparsed:
            return None
        # the complete blocks are the start of the records (a view: no second copy)
        entry.base = records[:complete]
        if complete and int(records["byte_end"][complete - 1]) - entry.saved_to >= SAVE_BYTES \
                and complete > len(best):
            self._save(csv, entry.base)
            entry.saved_to = int(records["byte_end"][complete - 1])
        if not len(records):
            return None
        return Envelope(records, _ordered(records["first_step"], records["last_step"]),
                        _ordered(records["first_time"], records["last_time"]))

    def _save(self, csv: Path, records: npt.NDArray[Any]) -> None:
        target = self._saved(csv)
        if target is None:
            return
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_writer(target) as out:
                out.write(lod.header_bytes())
                out.write(records.view("u1").data)  # no bytes copy of the records
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot keep series envelopes in %s (%s); they are rebuilt after a "
                            "restart", self.folder, e)


def _covers(path: Path, best: Any) -> bool:
    """True when the envelope file at `path` cannot reach past `best` (its size says so)."""
    try:
        count = (os.stat(path).st_size - lod.HEADER.size) // lod.RECORD.size
    except OSError:
        return True
    return count <= len(best)


class _Records:
    """Records appended in place: the array grows by a quarter when full (no list of parts
    joined at the end, which held every record twice)."""

    def __init__(self, head: Any, capacity: int) -> None:
        import numpy as np

        self.buf = np.empty(max(capacity, len(head), 16), dtype=lod.dtype())
        self.n = len(head)
        self.buf[: self.n] = head

    def reserve(self, k: int) -> None:
        import numpy as np

        if self.n + k > len(self.buf):
            grown = np.empty(max(self.n + k, len(self.buf) + len(self.buf) // 4), dtype=lod.dtype())
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown

    def extend(self, recs: Any) -> None:
        self.reserve(len(recs))
        self.buf[self.n: self.n + len(recs)] = recs
        self.n += len(recs)

    def result(self) -> Any:
        """The records, in an array of their own size when the spare room is more than a
        fifth (then copied once)."""
        if len(self.buf) - self.n > self.n // 5 + 16:
            return self.buf[: self.n].copy()
        return self.buf[: self.n]


def _build(f: IO[bytes], start: int, size: int, n0: int, head: Any = None) -> tuple[Any, int]:
    """`head` (records already checked, ending at byte `start`, point `n0`) followed by the
    records of the CSV's whole lines from `start`: those of complete blocks, then the
    partial last block's (at most one record); and how many of them are complete blocks.

    The file is read in READ_BLOCK pieces, each parsed and reduced to records before the
    next is read: memory holds one piece and the records, never the series. Blank and
    damaged lines are skipped, as `parse_lines` skips them.

    Raises:
        Unparsed: a piece whose lines `parse_lines` and the line-by-line reading keep
            differently (the caller parses the file as before).
    """
    import numpy as np

    head = np.zeros(0, dtype=lod.dtype()) if head is None else head
    if start >= size:  # nothing after the head: no copy of it
        return head, len(head)
    out: _Records | None = None
    carry: list[Any] = []  # step, value, time, line ends of points not yet in a block
    f.seek(start)
    pos = start
    rest = b""
    while pos < size:
        data = f.read(min(READ_BLOCK, size - pos))
        if not data:
            break
        pos += len(data)
        data = rest + data if rest else data
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if not cut:
            continue
        body = memoryview(data)[:cut]
        base = pos - len(data)  # file offset of data[0]
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10) + (base + 1)
        if out is None:  # room for the records of the whole file, from this piece's lines
            per_line = max(1.0, cut / max(len(ends), 1))
            out = _Records(head, len(head) + int((size - start) / per_line / lod.BLOCK * 1.05) + 2)
        chunks = parse_lines(body)
        kept = sum(len(c[0]) for c in chunks)
        cols: list[np.ndarray[Any, Any]]
        if kept != len(ends):  # blank or damaged lines, skipped: the points' own line ends
            cols, ends = _parse_piece_slowly(body, base, kept)
        else:
            cols = [np.concatenate([c[i] for c in chunks]) if len(chunks) != 1 else chunks[0][i]
                    for i in range(3)] if chunks else [np.zeros(0)] * 3
        if carry:
            cols = [np.concatenate([carry[i], cols[i]]) for i in range(3)]
            ends = np.concatenate([carry[3], ends])
        whole = len(ends) // lod.BLOCK * lod.BLOCK
        if whole:
            out.extend(lod.from_columns(cols[0][:whole], cols[1][:whole], cols[2][:whole],
                                        ends[:whole], n0))
            n0 += whole
        carry = [cols[0][whole:].copy(), cols[1][whole:].copy(), cols[2][whole:].copy(),
                 ends[whole:].copy()]
        del data, body, chunks, cols
    if out is None:
        out = _Records(head, len(head) + 1)
    complete = out.n
    if carry and len(carry[3]):
        out.extend(lod.from_columns(carry[0], carry[1], carry[2], carry[3], n0))
    if pos - start > 2 * READ_BLOCK:
        _release_parse_memory()
    return out.result(), complete


def _parse_piece_slowly(body: memoryview, base: int, kept: int) -> tuple[list[Any], Any]:
    """The points of a piece with lines `parse_lines` skipped (blank or damaged), line by
    line as its slow path reads them, with the end of each point's own line (`base`: the
    file offset of the piece).

    Raises:
        Unparsed: these are not the `kept` points `parse_lines` found (the piece has lines
            the two read differently): the caller parses the file as before.
    """
    import numpy as np

    steps: list[int] = []
    values: list[float] = []
    times: list[float] = []
    ends: list[int] = []
    pos = base
    for line in bytes(body).split(b"\n")[:-1]:  # the piece ends with a newline
        pos += len(line) + 1
        parts = line.split(b",")
        if len(parts) != 3:
            continue
        try:
            s, v, t = int(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            continue
        steps.append(s)
        values.append(v)
        times.append(t)
        ends.append(pos)
    if len(steps) != kept:
        raise Unparsed(f"{len(steps)} points read line by line where the parser found {kept}")
    try:
        cols = [np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64),
                np.asarray(times, dtype=np.float64)]
    except OverflowError:
        raise Unparsed("a step beyond 64 bits") from None
    return cols, np.asarray(ends, dtype=np.int64)


def _release_parse_memory() -> None:
    """Give pyarrow's freed parse buffers back to the system (its allocator keeps them)."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass


def window(env: Envelope, x: str, xmin: float | None, xmax: float | None) -> tuple[int, int]:
    """The records [a, b) whose points may lie in [xmin, xmax] (an ordered envelope)."""
    import numpy as np

    rec = env.records
    first, last = rec["first_" + x], rec["last_" + x]
    a = 0 if xmin is None else int(np.searchsorted(last, xmin, side="left"))
    b = len(rec) if xmax is None else int(np.searchsorted(first, xmax, side="right"))
    return a, b


def read_points(f: IO[bytes], rec: npt.NDArray[Any], a: int, b: int) -> tuple[Any, Any, Any] | None:
    """The points of records [a, b) parsed from the CSV open as `f` (None: a line the fast
    parser refuses, or the file no longer holds them)."""
    import numpy as np

    start = int(rec["byte_end"][a - 1]) if a else len(HEADER_LINE)
    end = int(rec["byte_end"][b - 1])
    f.seek(start)
    data = f.read(end - start)
    if len(data) != end - start:
        return None
    chunks = parse_lines(memoryview(data))
    want = int(rec["n_end"][b - 1]) - (int(rec["n_end"][a - 1]) if a else 0)
    if sum(len(c[0]) for c in chunks) != want:
        return None
    if len(chunks) == 1:
        return chunks[0]
    return tuple(np.concatenate([c[i] for c in chunks]) for i in range(3))  # type: ignore[return-value]
