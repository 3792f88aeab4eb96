"""Downsampling long series for charts (pure: numpy arrays in, numpy arrays out).

A chart is a few thousand pixels wide, so a series of millions of points is cut into about
`points` consecutive buckets (by position in the file, because steps need not increase).
Each bucket contributes one representative point, chosen like LTTB (largest triangle with
the previous choice and the next bucket's mean) among the bucket's minimum and maximum, and
the bucket's minimum and maximum as an envelope, so no spike is ever hidden. The first and
last points of the series are always kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Downsampled:
    """The result of :func:`downsample`.

    Attributes:
        index: positions (into the input arrays) of the points to draw, increasing.
        low: per drawn point, the smallest value its bucket holds (NaN ignored; NaN when
            the bucket holds only NaN).
        high: per drawn point, the largest value its bucket holds.
        downsampled: False when every input point is drawn (then low == high == value).
    """

    index: IndexArray
    low: FloatArray
    high: FloatArray
    downsampled: bool


def select_range(x: npt.NDArray[Any], xmin: float | None, xmax: float | None,
                 *, ordered: bool) -> IndexArray:
    """Positions of the points whose x lies in [xmin, xmax], plus one neighbour each side.

    The neighbours let a zoomed chart draw its line up to both edges.

    Args:
        x: the x values (step or time) in file order.
        xmin, xmax: the range; None leaves that side open.
        ordered: x never decreases, so a binary search finds the range.

    Returns:
        Increasing positions into `x`.

    Example:
        >>> select_range(np.arange(10), 3, 5, ordered=True).tolist()
        [2, 3, 4, 5, 6]
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if ordered:
        lo = 0 if xmin is None else int(np.searchsorted(x, xmin, side="left"))
        hi = n if xmax is None else int(np.searchsorted(x, xmax, side="right"))
        if lo >= hi:  # nothing inside: keep the two points around the gap, if any
            return np.arange(max(lo - 1, 0), min(lo + 1, n), dtype=np.int64)
        return np.arange(max(lo - 1, 0), min(hi + 1, n), dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    if xmin is not None:
        mask &= x >= xmin
    if xmax is not None:
        mask &= x <= xmax
    inside = np.flatnonzero(mask).astype(np.int64)
    if len(inside) == 0:
        return inside
    before = inside[:1] - 1 if inside[0] > 0 else inside[:0]
    after = inside[-1:] + 1 if inside[-1] < n - 1 else inside[:0]
    return np.concatenate([before, inside, after])


def downsample(x: npt.NDArray[Any], y: FloatArray, points: int) -> Downsampled:
    """Choose at most `points` points of (x, y) to draw, with a min/max envelope.

    Args:
        x: x values (steps or times), any order; used only to weigh the shape.
        y: float values; NaN and infinities allowed.
        points: the most points to return; at least 3.

    Returns:
        A :class:`Downsampled`. With `len(y) <= points` every point is kept.

    Raises:
        ValueError: `points` below 3 or `x` and `y` of different lengths.

    Example:
        >>> d = downsample(np.arange(1_000_000), np.random.rand(1_000_000), 2000)
        >>> len(d.index) <= 2000 and d.downsampled
        True
    """
    if points < 3:
        raise ValueError(f"points must be at least 3, got {points}")
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} values but y has {n}")
    yf = np.asarray(y, dtype=np.float64)
    if n <= points:
        return Downsampled(np.arange(n, dtype=np.int64), yf.copy(), yf.copy(), False)

    # Interior points [1, n-1) go into buckets of k points; the last may be shorter.
    inner = n - 2
    k = -(-inner // (points - 2))
    full = inner // k
    parts = [_stats(x[1 : 1 + full * k].reshape(full, k), yf[1 : 1 + full * k].reshape(full, k))]
    if full * k < inner:
        parts.append(_stats(x[1 + full * k : n - 1].reshape(1, -1), yf[1 + full * k : n - 1].reshape(1, -1)))
    low, high, arg_low, arg_high, mean_x_a, mean_y_a = (
        np.concatenate([p[i] for p in parts]) for i in range(6)
    )
    buckets = len(low)
    starts = 1 + np.arange(buckets, dtype=np.int64) * k
    idx_low = starts + arg_low
    idx_high = starts + arg_high
    mean_x = mean_x_a.tolist() + [float(x[-1])]
    mean_y = mean_y_a.tolist() + [float(yf[-1])]

    lo_x, hi_x = x[idx_low].astype(np.float64).tolist(), x[idx_high].astype(np.float64).tolist()
    chosen = choose(float(x[0]), float(yf[0]), idx_low.tolist(), idx_high.tolist(), lo_x, hi_x,
                    yf[idx_low].tolist(), yf[idx_high].tolist(), mean_x, mean_y)
    chosen = [0] + chosen + [n - 1]

    index = np.asarray(chosen, dtype=np.int64)
    lows = np.concatenate([yf[:1], low, yf[-1:]])
    highs = np.concatenate([yf[:1], high, yf[-1:]])
    return Downsampled(index, lows, highs, True)


def choose(ax: float, ay: float, lo_i: list[int], hi_i: list[int], lo_x: list[float],
           hi_x: list[float], lo_y: list[float], hi_y: list[float], mean_x: list[float],
           mean_y: list[float]) -> list[int]:
    """Per bucket, the position of its minimum or its maximum, whichever makes the larger
    triangle with the previous choice (starting at (ax, ay)) and the next bucket's mean
    (`mean_x[b + 1]`, `mean_y[b + 1]`: one more than there are buckets, the last point's)."""
    chosen: list[int] = []
    for b in range(len(lo_i)):
        if lo_i[b] == hi_i[b]:
            chosen.append(lo_i[b])
            ax, ay = lo_x[b], lo_y[b]
            continue
        cx, cy = mean_x[b + 1], mean_y[b + 1]
        a_lo = abs((ax - cx) * (lo_y[b] - ay) - (ax - lo_x[b]) * (cy - ay))
        a_hi = abs((ax - cx) * (hi_y[b] - ay) - (ax - hi_x[b]) * (cy - ay))
        if a_lo != a_lo:  # NaN comes from an infinity: an infinite spike wins
            a_lo = float("inf")
        if a_hi != a_hi:
            a_hi = float("inf")
        if a_hi > a_lo or (a_hi == a_lo and hi_i[b] < lo_i[b]):
            chosen.append(hi_i[b])
            ax, ay = hi_x[b], hi_y[b]
        else:
            chosen.append(lo_i[b])
            ax, ay = lo_x[b], lo_y[b]
    return chosen


@dataclass(frozen=True)
class Drawn:
    """A chart's points chosen from an envelope (:func:`from_envelope`): each drawn point's
    step, time and value, its bucket's least and greatest value, and the points each bucket
    covers (`first`, `last`: positions in the series)."""

    step: FloatArray
    time: FloatArray
    value: FloatArray
    low: FloatArray
    high: FloatArray
    first: IndexArray
    last: IndexArray


def from_envelope(rec: npt.NDArray[Any], points: int, x: str = "step") -> Drawn:
    """:func:`downsample` from an envelope's records (`_store/lod.py`) instead of the points.

    Consecutive records are grouped into at most `points - 2` buckets; each bucket's
    envelope is exactly the least and greatest value of its points (NaN ignored), and its
    drawn point is its minimum or maximum, chosen as :func:`downsample` chooses. The first
    and last points are drawn as they are, each its own bucket, as there.

    Raises:
        ValueError: `points` below 3, or no records.
    """
    if points < 3:
        raise ValueError(f"points must be at least 3, got {points}")
    nrec = len(rec)
    if not nrec:
        raise ValueError("an envelope without records")
    g = max(1, -(-nrec // (points - 2)))
    starts = np.arange(0, nrec, g)
    ends = np.minimum(starts + g, nrec)  # [start, end) records per bucket
    lo_v, hi_v = rec["lo"], rec["hi"]
    nan_lo = np.isnan(lo_v)
    # the least per bucket, NaN only where every record is NaN; the first of equal ones
    key_lo = np.where(nan_lo, np.inf, lo_v)
    key_hi = np.where(np.isnan(hi_v), -np.inf, hi_v)
    buckets = len(starts)
    arg_lo = np.empty(buckets, dtype=np.int64)
    arg_hi = np.empty(buckets, dtype=np.int64)
    if nrec == buckets * g:
        arg_lo[:] = starts + key_lo.reshape(buckets, g).argmin(axis=1)
        arg_hi[:] = starts + key_hi.reshape(buckets, g).argmax(axis=1)
    else:
        full = buckets - 1
        arg_lo[:full] = starts[:full] + key_lo[: full * g].reshape(full, g).argmin(axis=1)
        arg_hi[:full] = starts[:full] + key_hi[: full * g].reshape(full, g).argmax(axis=1)
        arg_lo[full] = starts[full] + int(key_lo[starts[full]:].argmin())
        arg_hi[full] = starts[full] + int(key_hi[starts[full]:].argmax())
    low = np.fmin.reduceat(lo_v, starts)
    high = np.fmax.reduceat(hi_v, starts)
    sums = np.add.reduceat(rec["sum"], starts)
    counts = np.add.reduceat(rec["finite"], starts)
    mean_y = np.divide(sums, counts, out=np.full(buckets, np.nan), where=counts > 0)
    xs = "step" if x == "step" else "time"
    mean_x = (rec["first_" + xs][starts] + rec["last_" + xs][ends - 1]) / 2
    block_start = rec["n_end"] - rec["n"]
    pos_lo = block_start[arg_lo] + rec["lo_at"][arg_lo]
    pos_hi = block_start[arg_hi] + rec["hi_at"][arg_hi]
    lo_x = rec["lo_" + xs][arg_lo].tolist()
    hi_x = rec["hi_" + xs][arg_hi].tolist()
    first, last = rec[0], rec[-1]
    picked = choose(float(first["first_" + xs]), float(first["first_value"]), pos_lo.tolist(),
                    pos_hi.tolist(), lo_x, hi_x, rec["lo"][arg_lo].tolist(), rec["hi"][arg_hi].tolist(),
                    mean_x.tolist() + [float(last["last_" + xs])],
                    mean_y.tolist() + [float(last["last_value"])])
    take_hi = np.asarray(picked, dtype=np.int64) == pos_hi
    take_hi &= np.asarray(picked, dtype=np.int64) != pos_lo
    step = np.where(take_hi, rec["hi_step"][arg_hi], rec["lo_step"][arg_lo])
    time = np.where(take_hi, rec["hi_time"][arg_hi], rec["lo_time"][arg_lo])
    value = np.where(take_hi, rec["hi"][arg_hi], rec["lo"][arg_lo])
    total = int(last["n_end"])
    fv, lv = float(first["first_value"]), float(last["last_value"])
    return Drawn(
        step=np.concatenate([[first["first_step"]], step, [last["last_step"]]]),
        time=np.concatenate([[first["first_time"]], time, [last["last_time"]]]),
        value=np.concatenate([[fv], value, [lv]]),
        low=np.concatenate([[fv], low, [lv]]), high=np.concatenate([[fv], high, [lv]]),
        first=np.concatenate([[0], block_start[starts], [total - 1]]).astype(np.int64),
        last=np.concatenate([[0], rec["n_end"][ends - 1] - 1, [total - 1]]).astype(np.int64))


_BLOCK = 1 << 20  # values per block: temporaries stay small and reused, not 80 MB each


def _stats(gx: npt.NDArray[Any], gy: FloatArray) -> tuple[npt.NDArray[Any], ...]:
    """Per row of `gy`: min, max, argmin, argmax (NaN ignored), middle x, mean finite y."""
    rows, k = gy.shape
    step = max(1, _BLOCK // max(k, 1))
    low = np.empty(rows)
    high = np.empty(rows)
    arg_low = np.empty(rows, dtype=np.int64)
    arg_high = np.empty(rows, dtype=np.int64)
    mean_x = np.empty(rows)
    mean_y = np.empty(rows)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        sub = gy[r0:r1]
        # the middle of each bucket's x range stands for its mean (exact for even steps)
        mean_x[r0:r1] = (gx[r0:r1, 0] + gx[r0:r1, k - 1]) / 2
        total = sub.sum(axis=1)
        if np.isfinite(total).all():  # no NaN and no infinity: three passes over the values
            rows_here = np.arange(r1 - r0)
            a_lo = sub.argmin(axis=1)
            a_hi = sub.argmax(axis=1)
            arg_low[r0:r1] = a_lo
            arg_high[r0:r1] = a_hi
            low[r0:r1] = sub[rows_here, a_lo]
            high[r0:r1] = sub[rows_here, a_hi]
            mean_y[r0:r1] = total / k
            continue
        nan = np.isnan(sub)
        low[r0:r1] = np.fmin.reduce(sub, axis=1)
        high[r0:r1] = np.fmax.reduce(sub, axis=1)
        arg_low[r0:r1] = np.where(nan, np.inf, sub).argmin(axis=1)
        arg_high[r0:r1] = np.where(nan, -np.inf, sub).argmax(axis=1)
        finite = np.isfinite(sub)
        counts = finite.sum(axis=1)
        sums = np.where(finite, sub, 0.0).sum(axis=1)
        mean_y[r0:r1] = np.divide(sums, counts, out=np.full(r1 - r0, np.nan), where=counts > 0)
    return low, high, arg_low, arg_high, mean_x, mean_y
