"""Series envelopes (docs/format.md, `.lod/scalars/<name>.lod`): a derived summary of a long
series, so a chart of millions of points never parses the CSV.

An envelope file is a 16-byte header and fixed-size little-endian records, one per block of
consecutive points of `scalars/<name>.csv` (1,024 points, the last block of a finished run may
be shorter). A record holds where its block ends (points and CSV bytes), how many points it
has, and its first, last, least and greatest point (the least and greatest ignore NaN), the
sum and count of its finite values. It is only a cache: every byte of it follows from the
CSV, readers check it against the CSV before use and rebuild it when it is missing, damaged,
or describes another file.

Who writes it: the training process's writer thread appends a record after the CSV bytes of
a block are on disk (plain appends, no locks: safe on network file systems); it starts once
a series reaches :data:`START_POINTS` points (shorter series parse fast) and writes its last,
partial block at finish. A run killed mid-write leaves at most a torn last record (ignored)
and CSV lines no record covers yet (read from the CSV). A server keeps its own copy, built
from the CSV, for runs that came without one (older runs, imports, remote ingest: the
uploader never sends `.lod/`).

This module knows the format; :class:`EnvelopeBuilder` is the writer's side (no numpy: a
training process need not import it), :func:`load` and :func:`from_columns` the readers'.
"""

from __future__ import annotations

import math
import os
import struct
from array import array
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MAGIC = b"LTLOD\x00\x01\x00"  # name, format 1
BLOCK = 1024  # points per record
START_POINTS = 16_384  # a series gets an envelope file once it has this many points
# n_end, byte_end, n, lo_at, hi_at; first (step, value, time), last (...), lo (value, step,
# time), hi (value, step, time), sum and count of the finite values
RECORD = struct.Struct("<5q14d")
HEADER = struct.Struct("<8sII")  # MAGIC, RECORD.size, BLOCK
DIR = ".lod"
SUFFIX = ".lod"
FIELDS = ("n_end", "byte_end", "n", "lo_at", "hi_at", "first_step", "first_value", "first_time",
          "last_step", "last_value", "last_time", "lo", "lo_step", "lo_time", "hi", "hi_step",
          "hi_time", "sum", "finite")


def path_for(run_dir: Path, csv_relpath: str) -> Path:
    """The envelope of the series `csv_relpath` (`scalars/train/loss.csv`) of a run."""
    stem = csv_relpath[: -len(".csv")] if csv_relpath.endswith(".csv") else csv_relpath
    return run_dir / DIR / (stem + SUFFIX)


def header_bytes() -> bytes:
    return HEADER.pack(MAGIC, RECORD.size, BLOCK)


def _ms(t: float) -> float:
    """A time as the CSV stores it (rounded to the millisecond, as `format_time` writes)."""
    if not math.isfinite(t):
        return t
    return math.floor(t * 1000.0 + 0.5) / 1000.0


_PACK = struct.Struct("<d").pack


def _find(raw: bytes, v: float) -> int:
    """The position of the first float64 equal to `v` in `raw` (a byte search: about 6x
    faster than array.index, which makes a float object of each value)."""
    pat = _PACK(v)
    at = raw.find(pat)
    while at >= 0 and at % 8:
        at = raw.find(pat, at + 1)
    if at >= 0:
        return at // 8
    return array("d", raw).index(v)  # 0.0 == -0.0, written differently


class _Block:
    """The statistics of the block being filled."""

    __slots__ = ("n", "first", "lo", "lo_at", "lo_pt", "hi", "hi_at", "hi_pt", "sum", "finite")

    def __init__(self) -> None:
        self.n = 0
        self.first = (0.0, 0.0, 0.0)
        self.lo = math.nan
        self.lo_at = -1  # -1: no value but NaN yet
        self.lo_pt = (0.0, 0.0)
        self.hi = math.nan
        self.hi_at = -1
        self.hi_pt = (0.0, 0.0)
        self.sum = 0.0
        self.finite = 0


class EnvelopeBuilder:
    """The writer's side: the records of one series' points as they are appended.

    `add` takes a column of (step, value, time) triples, exactly as formatted, cut so that no
    piece crosses a block boundary (:meth:`cuts`), with the statistics `format_many` already
    computed for it; `take` returns the records completed so far as bytes.

    Args:
        n: points already in the CSV (covered by records).
        offset: the CSV's size: where the next point's line starts.
    """

    __slots__ = ("n", "offset", "block", "out", "records", "on_disk", "disabled", "last")

    def __init__(self, n: int = 0, offset: int = 0, *, on_disk: bool = False) -> None:
        self.n = n
        self.offset = offset
        self.block = _Block()
        self.out = bytearray()  # records not yet taken
        self.records = 0  # records built
        self.on_disk = on_disk  # the file exists (else records wait until START_POINTS)
        self.disabled = False
        self.last = (0.0, 0.0, 0.0)  # the last point added

    def cuts(self, points: int) -> list[int]:
        """Where to cut a part of `points` points so no piece crosses a block boundary."""
        first = BLOCK - self.block.n
        if points <= first:
            return [points]
        out = [first]
        left = points - first
        while left > BLOCK:
            out.append(BLOCK)
            left -= BLOCK
        out.append(left)
        return out

    def add(self, col: array[float], nbytes: int, total: float, finite: int, lo: float,
            hi: float) -> None:
        """One formatted piece: its triples, its CSV bytes and `format_many`'s statistics."""
        b = self.block
        m = len(col) // 3
        if not m:
            return
        if b.n == 0:
            b.first = (col[0], col[1], _ms(col[2]))
        if lo <= hi:  # else the piece is NaN only (value_stats gives inf, -inf)
            raw = col[1::3].tobytes()
            i = _find(raw, lo)
            j = _find(raw, hi)
            if b.lo_at < 0 or lo < b.lo:
                b.lo, b.lo_at, b.lo_pt = lo, b.n + i, (col[3 * i], _ms(col[3 * i + 2]))
            if b.hi_at < 0 or hi > b.hi:
                b.hi, b.hi_at, b.hi_pt = hi, b.n + j, (col[3 * j], _ms(col[3 * j + 2]))
        b.sum += total
        b.finite += finite
        self.last = (col[-3], col[-2], col[-1])
        b.n += m
        self.n += m
        self.offset += nbytes
        if b.n >= BLOCK:
            self._close_block(col)

    def finish(self) -> None:
        """Close the partial block (at finish): the records then cover the whole CSV."""
        if self.block.n:
            self._close_block(array("d", self.last))

    def _close_block(self, col: array[float]) -> None:
        b = self.block
        lo_at, lo_pt = (b.lo_at, b.lo_pt) if b.lo_at >= 0 else (0, b.first[::2])
        hi_at, hi_pt = (b.hi_at, b.hi_pt) if b.hi_at >= 0 else (0, b.first[::2])
        self.out += RECORD.pack(self.n, self.offset, b.n, lo_at, hi_at, *b.first,
                                col[-3], col[-2], _ms(col[-1]),
                                b.lo, lo_pt[0], lo_pt[1], b.hi, hi_pt[0], hi_pt[1],
                                b.sum, float(b.finite))
        self.records += 1
        self.block = _Block()

    @property
    def pending_points(self) -> int:
        return self.block.n

    def take(self) -> bytes:
        """The records completed since the last call (header first for a new file)."""
        data = bytes(self.out)
        self.out.clear()
        return data


def resume_state(csv: Path, envelope: Path) -> EnvelopeBuilder | None:
    """A builder that continues the envelope of an existing series (a resumed run), or None
    when there is none or it does not end exactly where the CSV ends (then this process
    writes none and readers build it from the CSV)."""
    try:
        size = os.stat(csv).st_size
        with open(envelope, "rb") as f:
            head = f.read(HEADER.size)
            end = f.seek(0, os.SEEK_END)
            count = (end - HEADER.size) // RECORD.size
            if head != header_bytes() or count < 1 or end != HEADER.size + count * RECORD.size:
                return None
            f.seek(HEADER.size + (count - 1) * RECORD.size)
            last = RECORD.unpack(f.read(RECORD.size))
    except (OSError, struct.error):
        return None
    if last[1] != size:
        return None
    return EnvelopeBuilder(last[0], size, on_disk=True)


# -- readers ------------------------------------------------------------------------------

def dtype() -> Any:
    import numpy as np

    return np.dtype([(f, "<i8") for f in FIELDS[:5]] + [(f, "<f8") for f in FIELDS[5:]])


def parse_records(data: bytes | memoryview) -> npt.NDArray[Any]:
    """Records of an envelope file's body (whole records only)."""
    import numpy as np

    k = len(data) // RECORD.size
    return np.frombuffer(data, dtype=dtype(), count=k).copy() if k else np.zeros(0, dtype=dtype())


def _line_before(f: IO[bytes], end: int) -> bytes | None:
    """The CSV line that ends at byte `end` (its newline at end-1), without the newline."""
    start = max(0, end - 128)
    f.seek(start)
    data = f.read(end - start)
    if len(data) != end - start or not data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n", 0, len(data) - 1)
    if cut < 0 and start > 0:
        return None
    return data[cut + 1: -1]


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def check(records: npt.NDArray[Any], csv: IO[bytes], csv_size: int, header_len: int,
          samples: int = 16) -> int:
    """How many leading records describe the CSV open as `csv`: their counts chain, their
    ends lie within the file, and the last line of up to `samples` records spread over the
    file (the last one always) holds their last point. 0 when the first does not."""
    import numpy as np

    n = len(records)
    if not n:
        return 0
    ends, counts, sizes = records["n_end"], records["byte_end"], records["n"]
    ok = np.ones(n, dtype=bool)
    ok[0] = counts[0] > header_len and ends[0] == sizes[0] and sizes[0] > 0
    ok[1:] = (ends[1:] - ends[:-1] == sizes[1:]) & (counts[1:] > counts[:-1]) & (sizes[1:] > 0)
    ok &= counts <= csv_size
    bad = np.flatnonzero(~ok)
    good = int(bad[0]) if len(bad) else n
    while good:
        picks = sorted({int(i) for i in np.linspace(0, good - 1, min(samples, good))})
        failed = next((i for i in picks if not _holds(records[i], csv)), None)
        if failed is None:
            return good
        good = failed
    return 0


def _holds(rec: Any, csv: IO[bytes]) -> bool:
    line = _line_before(csv, int(rec["byte_end"]))
    if line is None:
        return False
    parts = line.split(b",")
    if len(parts) != 3:
        return False
    try:
        s, v, t = int(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        return False
    return (s == rec["last_step"] and _same(v, float(rec["last_value"]))
            and abs(t - float(rec["last_time"])) <= 5e-4)


def load(envelope: Path, csv: IO[bytes], csv_size: int, header_len: int) -> npt.NDArray[Any] | None:
    """The checked records of an envelope file (None when it is missing or not this CSV's)."""
    import numpy as np

    try:
        with open(envelope, "rb") as f:
            if f.read(HEADER.size) != header_bytes():
                return None
            k = (os.fstat(f.fileno()).st_size - HEADER.size) // RECORD.size
            # read straight into the array: one copy of the records in memory, not two
            records = np.empty(max(k, 0), dtype=dtype())
            got = f.readinto(records.view(np.uint8).data) if k > 0 else 0
    except OSError:
        return None
    records = records[: (got or 0) // RECORD.size]
    good = check(records, csv, csv_size, header_len)
    return records[:good] if good else None


def from_columns(step: npt.NDArray[Any], value: npt.NDArray[np.float64], time: npt.NDArray[np.float64],
                 line_ends: npt.NDArray[np.int64], n0: int) -> npt.NDArray[Any]:
    """Records of whole blocks of parsed points (the server's build from a CSV).

    Args:
        step, value, time: the points, a multiple of BLOCK of them, or fewer at the end.
        line_ends: the CSV offset after each point's line.
        n0: points before these.
    """
    import numpy as np

    m = len(value)
    nb = -(-m // BLOCK)
    out = np.zeros(nb, dtype=dtype())
    if not m:
        return out
    full = m // BLOCK
    starts = np.arange(nb, dtype=np.int64) * BLOCK
    lasts = np.minimum(starts + BLOCK, m) - 1
    out["n"] = lasts - starts + 1
    out["n_end"] = n0 + lasts + 1
    out["byte_end"] = line_ends[lasts]
    stepf = step.astype(np.float64)
    timef = np.floor(time * 1000.0 + 0.5) / 1000.0
    with np.errstate(invalid="ignore"):
        timef = np.where(np.isfinite(time), timef, time)
    for name, col in (("step", stepf), ("value", value), ("time", timef)):
        out["first_" + name] = col[starts]
        out["last_" + name] = col[lasts]

    def fill(rows: slice, grid: npt.NDArray[np.float64], base: npt.NDArray[np.int64]) -> None:
        nan = np.isnan(grid)
        a_lo = np.where(nan, np.inf, grid).argmin(axis=1)
        a_hi = np.where(nan, -np.inf, grid).argmax(axis=1)
        r = np.arange(len(grid))
        allnan = nan.all(axis=1)
        lo, hi = grid[r, a_lo], grid[r, a_hi]
        a_lo = np.where(allnan, 0, a_lo)
        a_hi = np.where(allnan, 0, a_hi)
        out["lo"][rows], out["hi"][rows] = lo, hi
        out["lo_at"][rows], out["hi_at"][rows] = a_lo, a_hi
        out["lo_step"][rows], out["lo_time"][rows] = stepf[base + a_lo], timef[base + a_lo]
        out["hi_step"][rows], out["hi_time"][rows] = stepf[base + a_hi], timef[base + a_hi]
        finite = np.isfinite(grid)
        out["sum"][rows] = np.where(finite, grid, 0.0).sum(axis=1)
        out["finite"][rows] = finite.sum(axis=1)

    if full:
        fill(slice(0, full), value[: full * BLOCK].reshape(full, BLOCK), starts[:full])
    if full < nb:
        fill(slice(full, nb), value[full * BLOCK:].reshape(1, -1), starts[full:])
    return out
