"""Parsed scalar series, cached per file and extended by reading only appended bytes.

A series file (docs/format.md, scalars/<name>.csv) only grows, in whole lines. The first
read parses it with pyarrow's multi-threaded CSV reader; later reads stat the file and parse
only the bytes past the last complete line seen. A file that shrank or was replaced (another
inode) is parsed again from the start. A trailing line without its newline is left for later.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._store.scalars import BLOCK as _BLOCK
from .._store.scalars import HEADER_LINE as HEADER
from .._store.scalars import parse_lines
from .series_store import Opener, Saved, SeriesStore

if TYPE_CHECKING:  # numpy is imported when a series is first read: listing runs does without it
    import numpy as np
    import numpy.typing as npt


@dataclass
class Columns:
    """A read-only snapshot of one series: steps, values and times in file order."""

    step: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    time: npt.NDArray[np.float64]
    step_ordered: bool  # steps never decrease (a binary search can find a range)
    time_ordered: bool

    def __len__(self) -> int:
        return len(self.step)


class _Growing:
    """Columns with spare capacity, so appending a few points does not copy millions."""

    def __init__(self) -> None:
        import numpy as np

        self.n = 0
        self.step = np.empty(0, dtype=np.int64)
        self.value = np.empty(0, dtype=np.float64)
        self.time = np.empty(0, dtype=np.float64)
        self.step_ordered = True
        self.time_ordered = True

    def extend(self, step: npt.NDArray[np.int64], value: npt.NDArray[np.float64],
               time: npt.NDArray[np.float64]) -> None:
        import numpy as np

        m = len(step)
        if m == 0:
            return
        need = self.n + m
        if need > len(self.step):
            # grow by a quarter: copying 10M points is costly, but so is reserving 2x memory
            cap = max(need, len(self.step) + len(self.step) // 4, 1024) if self.n else need
            for attr in ("step", "value", "time"):
                old = getattr(self, attr)
                new = np.empty(cap, dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, attr, new)
        if self.n:
            self.step_ordered = self.step_ordered and bool(step[0] >= self.step[self.n - 1])
            self.time_ordered = self.time_ordered and bool(time[0] >= self.time[self.n - 1])
        self.step_ordered = self.step_ordered and bool(np.all(step[1:] >= step[:-1]))
        self.time_ordered = self.time_ordered and bool(np.all(time[1:] >= time[:-1]))
        self.step[self.n : need] = step
        self.value[self.n : need] = value
        self.time[self.n : need] = time
        self.n = need

    @classmethod
    def from_saved(cls, saved: Saved) -> _Growing:
        """Columns read back from a :class:`SeriesStore` (with room to grow)."""
        g = cls()
        g.n = saved.n
        g.step, g.value, g.time = saved.step, saved.value, saved.time
        g.step_ordered, g.time_ordered = saved.step_ordered, saved.time_ordered
        return g

    def reserve(self, extra: int) -> None:
        """Make room for `extra` more points at once (a first read knows its size)."""
        import numpy as np

        need = self.n + extra
        if need > len(self.step):
            for attr in ("step", "value", "time"):
                old = getattr(self, attr)
                new = np.empty(need, dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, attr, new)

    def snapshot(self) -> Columns:
        n = self.n
        return Columns(self.step[:n], self.value[:n], self.time[:n],
                       self.step_ordered, self.time_ordered)

    @property
    def nbytes(self) -> int:
        return int(self.step.nbytes + self.value.nbytes + self.time.nbytes)


#: bytes read and parsed at a time in a big read: memory holds the columns and one block,
#: never the whole file (a 10M-point CSV is 0.4 GB)
READ_BLOCK = 32 << 20


def _read_big(f: Any, start: int, length: int, cols: _Growing) -> int:
    """Parse the complete lines among the `length` bytes of `f` from `start` into `cols`,
    block by block through one buffer; the bytes parsed (up to the end of the last line).

    The columns are reserved once, from the first block's points per byte, so 10M points
    are not copied as they grow.
    """
    f.seek(start)
    buf = bytearray(READ_BLOCK)
    carry = done = 0  # bytes of a partial line at the front of buf; bytes parsed
    remaining = length
    first = True
    while remaining > 0:
        if carry == len(buf):  # one line longer than the buffer: a bigger one
            buf = buf + bytes(len(buf))
        view = memoryview(buf)
        got = f.readinto(view[carry:carry + min(len(buf) - carry, remaining)])
        if not got:
            break
        remaining -= got
        filled = carry + got
        cut = buf.rfind(b"\n", 0, filled) + 1
        if cut:
            chunks = parse_lines(view[:cut])
            if first:
                points = sum(len(c[0]) for c in chunks)
                cols.reserve(int(points * length / cut * 1.02) + 1024)
                first = False
            for chunk in chunks:
                cols.extend(*chunk)
            del chunks
            done += cut
            buf[:filled - cut] = buf[cut:filled]
            carry = filled - cut
        else:
            carry = filled
    return done


@dataclass
class _Entry:
    lock: threading.Lock
    cols: _Growing
    ino: int = -1
    offset: int = 0  # bytes parsed: the end of the last complete line
    size: int = -1
    mtime_ns: int = -1


class SeriesCache:
    """Parsed series kept in memory, least recently used dropped past `max_bytes`.

    Thread-safe: requests run in a thread pool; one file is parsed by one thread at a time.

    Example:
        >>> cache = SeriesCache()
        >>> cols = cache.get(Path("run/scalars/train/loss.csv"))
        >>> cols.value[-1]
    """

    def __init__(self, max_bytes: int = 1 << 30, store: SeriesStore | None = None) -> None:
        self.max_bytes = max_bytes
        self.store = store
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, path: Path, opener: Opener | None = None) -> Columns:
        """The series in `path` as it is on disk now (complete lines only).

        Args:
            path: the series file (also the cache's key).
            opener: opens it for reading; a reader of a run passes the run's checked open
                (`RunDir.open`), so a file that turned into a symlink out of the run since it
                was cached is refused, not read. Default: `open(path, "rb")`.

        Raises:
            FileNotFoundError: the file does not exist.
            OutsideRootError: `opener` refused the file.
        """
        key = str(path)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(threading.Lock(), _Growing())
                self._entries[key] = entry
            self._entries.move_to_end(key)
        with entry.lock:
            self._refresh(path, entry, opener or (lambda: open(path, "rb")))
            cols = entry.cols.snapshot()
        self._evict()
        return cols

    def _refresh(self, path: Path, entry: _Entry, opener: Opener) -> None:
        with opener() as f:
            st = os.fstat(f.fileno())
            if (st.st_size, st.st_mtime_ns, st.st_ino) == (entry.size, entry.mtime_ns, entry.ino):
                return
            if st.st_ino != entry.ino or st.st_size < entry.offset:
                entry.cols = _Growing()
                entry.offset = 0
                entry.ino = st.st_ino
            start = entry.offset
            from_scratch = False
            if start == 0:
                if f.read(len(HEADER)) != HEADER:
                    # no complete header yet, or not a series file: nothing to parse
                    entry.size = entry.mtime_ns = -1
                    return
                start = len(HEADER)
                from_scratch = True
                if self.store is not None and st.st_size >= self.store.min_bytes:
                    saved = self.store.load(path, f, st.st_ino, st.st_size)
                    if saved is not None:  # parsed by an earlier server: only the rest now
                        entry.cols = _Growing.from_saved(saved)
                        start = saved.offset
            parsed_from = start
            length = st.st_size - start
            if length > _BLOCK:
                end = _read_big(f, start, length, entry.cols)
            else:
                f.seek(start)
                data = f.read(length)
                end = data.rfind(b"\n") + 1  # whole lines only; the rest is being written
                for chunk in parse_lines(memoryview(data)[:end]):
                    entry.cols.extend(*chunk)
        entry.offset = start + end
        entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
        if (from_scratch and self.store is not None and st.st_size >= self.store.min_bytes
                and (parsed_from == len(HEADER) or entry.offset - parsed_from >= self.store.min_bytes)):
            c = entry.cols
            n = c.n
            self.store.save_later(path, st.st_ino, entry.offset, c.step[:n], c.value[:n], c.time[:n],
                                  c.step_ordered, c.time_ordered, opener=opener)

    def _evict(self) -> None:
        with self._lock:
            total = sum(e.cols.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                total -= old.cols.nbytes
