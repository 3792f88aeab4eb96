"""Events of TensorBoard files into per-tag scalar columns and a list of everything else.

Two decoders read the same records (`_tb_events` has split and checked them):

* the fast one takes records of equal length that share one layout - a scalar event, as
  every writer emits one per `add_scalar` - and decodes all of them at once with numpy: it
  parses the first record in Python, notes where the wall time, step, tag and value sit, and
  keeps the records whose other bytes equal the first's (the layout is then the same);
* the exact one walks any record's protobuf fields in Python: the first events, media,
  text, histograms, hparams, and whatever the fast one did not take.

Both give the same numbers (tests/test_import_tensorboard.py compares them with
TensorBoard's own reader); the fast one is what makes a million points take a second.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from . import _tb_events as ev
from ._sink import SourceError

_FAST_MIN = 16  # groups of fewer records than this go to the exact decoder
_FAST_TRIES = 8  # layouts tried per group of equal-length records


@dataclass
class Decoded:
    """What one run's event files hold.

    series: tag -> chunks of (keys, steps, values, walls) numpy arrays; a key orders points
        as the files do (file number << 32 | record number). `columns()` joins them.
    values: (key, step, wall time, Value, raw bytes of the Summary.Value) of everything else.
    """

    series: dict[str, list[tuple[Any, Any, Any, Any]]] = field(default_factory=dict)
    values: list[tuple[int, int, float, ev.Value, bytes]] = field(default_factory=list)
    plugins: dict[str, tuple[str | None, bytes]] = field(default_factory=dict)  # tag -> first metadata
    first: float | None = None
    last: float | None = None
    points: int = 0
    negative_steps: int = 0
    truncated: list[str] = field(default_factory=list)
    file_versions: set[str] = field(default_factory=set)
    files: int = 0

    def _walls(self, lo: float, hi: float) -> None:
        if self.first is None or lo < self.first:
            self.first = lo
        if self.last is None or hi > self.last:
            self.last = hi

    def columns(self) -> dict[str, tuple[Any, Any, Any]]:
        """tag -> (steps int64, values float64, walls float64) in the files' order."""
        import numpy as np

        out = {}
        for tag, chunks in self.series.items():
            if len(chunks) == 1:
                _, steps, values, walls = chunks[0]
            else:
                keys = np.concatenate([c[0] for c in chunks])
                order = np.argsort(keys, kind="stable")
                steps, values, walls = (np.concatenate([c[i] for c in chunks])[order] for i in (1, 2, 3))
            out[tag] = (steps, values, walls)
        return out


def decode(data: bytes, path: str, out: Decoded) -> None:
    """Add the events of one file (its bytes) to `out`.

    Raises:
        SourceError: damaged framing, a checksum that does not match, or a record that is not
            an Event message; the message names the file.
    """
    import numpy as np

    s, e, truncated = ev.split_records(data, path)
    if truncated:
        out.truncated.append(path)
    buf = np.frombuffer(data, dtype=np.uint8)
    groups = ev.check_records(buf, s, e, path)
    base = out.files << 32
    out.files += 1
    later: list[tuple[Any, Any, Any]] = []  # fast tensor scalars whose plugin the slow pass tells
    exact = np.ones(len(s), dtype=bool)  # the long records and the ones no layout took
    try:
        for idx, rows in groups.values():
            if len(idx) >= _FAST_MIN:
                exact[idx] = False
                exact[_fast(data, rows, idx, s, base, out, later)] = True
        _exact(data, s, e, np.flatnonzero(exact), base, out)
        redo = []
        for tag, chunk, idx in later:  # a scalar tensor counts when its tag's plugin is "scalars"
            if out.plugins.get(tag, (None, b""))[0] == "scalars":
                _add(out, tag, chunk)
            else:
                redo.append(idx)
        if redo:
            _exact(data, s, e, np.sort(np.concatenate(redo)), base, out)
    except (ev.WireError, IndexError, struct.error, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: a record is not a TensorBoard event ({err or type(err).__name__}); "
                          "the file is damaged or not an event file") from None
    out.values.sort(key=lambda v: v[0])


def _add(out: Decoded, tag: str, chunk: tuple[Any, Any, Any, Any]) -> None:
    out.series.setdefault(tag, []).append(chunk)
    out.points += len(chunk[0])


# --- the fast decoder ------------------------------------------------------------------------

@dataclass
class _Layout:
    wall: int
    step: int
    step_len: int
    tag: tuple[int, int]
    value: int
    kind: str  # "<f4" or "<f8"
    tensor: bool  # the tensor form: its tag's plugin must be "scalars"
    plugin: str | None


def _spans(r: bytes, i: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field, wire type, start, end) of a message's fields, with the value's own bytes."""
    out = []
    while i < end:
        key, i = ev.varint(r, i)
        wt = key & 7
        if wt == 0:
            _, j = ev.varint(r, i)
        elif wt == 2:
            ln, i = ev.varint(r, i)
            j = i + ln
        elif wt == 1:
            j = i + 8
        elif wt == 5:
            j = i + 4
        else:
            raise ev.WireError(f"wire type {wt}")
        if j > end:
            raise ev.WireError("a field runs past its message")
        out.append((key >> 3, wt, i, j))
        i = j
    return out


def _layout(r: bytes) -> _Layout | None:
    """Where a one-scalar event keeps its parts, or None for any other event."""
    wall = summ = None
    step, step_len = 0, 0
    for num, wt, a, b in _spans(r, 0, len(r)):
        if num == 1 and wt == 1:
            wall = a
        elif num == 2 and wt == 0 and b - a < 10:  # 10 bytes: a negative step, left to _exact
            step, step_len = a, b - a
        elif num == 5 and wt == 2:
            summ = (a, b)
        else:
            return None
    if wall is None or summ is None:
        return None
    values = _spans(r, *summ)
    if len(values) != 1 or values[0][:2] != (1, 2):
        return None
    tag = value = None
    kind = "<f4"
    tensor = False
    plugin = None
    for num, wt, a, b in _spans(r, values[0][2], values[0][3]):
        if num == 1 and wt == 2:
            tag = (a, b)
        elif num == 2 and wt == 5:
            value = a
        elif num == 9 and wt == 2:
            plugin = ev.summary_metadata(r, (a, b))[0]
        elif num == 8 and wt == 2:
            found = _tensor_value(r, a, b)
            if found is None:
                return None
            value, kind = found
            tensor = True
        elif num != 7:  # node_name is harmless; images, histograms, audio are not scalars
            return None
    if tag is None or value is None or (tensor and plugin not in (None, "scalars")):
        return None
    return _Layout(wall, step, step_len, tag, value, kind, tensor, plugin)


def _tensor_value(r: bytes, a: int, b: int) -> tuple[int, str] | None:
    """Where a 0-d float or double tensor keeps its number, and its dtype."""
    dtype = None
    at = None
    size = 0
    for num, wt, x, y in _spans(r, a, b):
        if num == 1 and wt == 0:
            dtype = ev.varint(r, x)[0]
        elif num == 2 and wt == 2:
            if y != x:  # dims: not a 0-d tensor
                return None
        elif num == 3:
            continue
        elif num in (4, 5, 6) and wt == 2 and at is None:  # tensor_content, packed float_val / double_val
            at, size = x, y - x
        elif num == 5 and wt == 5 and at is None:
            at, size = x, 4
        elif num == 6 and wt == 1 and at is None:
            at, size = x, 8
        else:
            return None
    if at is None or (dtype, size) not in ((ev.DT_FLOAT, 4), (ev.DT_DOUBLE, 8)):
        return None
    return at, "<f4" if size == 4 else "<f8"


def _fast(data: bytes, rows: Any, idx: Any, s: Any, base: int, out: Decoded,
          later: list[tuple[str, Any, Any]]) -> Any:
    """Decode the records of one length (`rows`, record numbers `idx`) that share a scalar
    layout; returns the record numbers left for the exact decoder."""
    import numpy as np

    left = np.arange(len(idx))
    refused: list[Any] = []
    for _ in range(_FAST_TRIES):
        if not len(left):
            break
        first = bytes(rows[left[0]])
        lay = _layout(first)
        if lay is None:
            refused.append(left[:1])
            left = left[1:]
            continue
        width = rows.shape[1]
        fixed = np.ones(width, dtype=bool)
        fixed[lay.wall:lay.wall + 8] = False
        fixed[lay.step:lay.step + lay.step_len] = False
        fixed[lay.tag[0]:lay.tag[1]] = False
        size = 4 if lay.kind == "<f4" else 8
        fixed[lay.value:lay.value + size] = False
        sub = rows[left]
        tmpl = np.frombuffer(first, dtype=np.uint8)
        match = (sub[:, fixed] == tmpl[fixed]).all(axis=1)
        if lay.step_len > 1:
            match &= (sub[:, lay.step:lay.step + lay.step_len - 1] >= 0x80).all(axis=1)
        if lay.step_len:
            match &= sub[:, lay.step + lay.step_len - 1] < 0x80
        m = sub[match]
        walls = np.ascontiguousarray(m[:, lay.wall:lay.wall + 8]).view("<f8")[:, 0].astype(np.float64)
        steps = np.zeros(len(m), dtype=np.int64)
        for j in range(lay.step_len):
            steps |= (m[:, lay.step + j] & 0x7F).astype(np.int64) << (7 * j)
        values = np.ascontiguousarray(m[:, lay.value:lay.value + size]).view(lay.kind)[:, 0].astype(np.float64)
        keys = base + idx[left[match]].astype(np.int64)
        if len(walls):
            out._walls(float(walls.min()), float(walls.max()))
        for tag, sel in _tags(m, *lay.tag):
            chunk = (keys[sel], steps[sel], values[sel], walls[sel])
            if lay.tensor and lay.plugin is None:
                later.append((tag, chunk, idx[left[match]][sel]))
            else:
                if lay.plugin is not None:
                    out.plugins.setdefault(tag, (lay.plugin, b""))
                _add(out, tag, chunk)
        left = left[~match]
    return idx[np.concatenate([left, *refused])] if refused else idx[left]


def _tags(m: Any, t0: int, t1: int) -> list[tuple[str, Any]]:
    """The distinct tags in columns t0:t1 of the rows `m`, each with the mask of its rows.
    A tag's bytes are folded into one number per row (8 bytes at a time); the numbers a
    sample of rows holds are looked up for all (usually all are in it), the rest sorted;
    each group is then checked byte for byte."""
    import numpy as np

    n = len(m)
    if t1 == t0:
        return [("", np.ones(n, dtype=bool))]
    width = t1 - t0
    padded = np.zeros((n, (width + 7) // 8 * 8), dtype=np.uint8)
    padded[:, :width] = m[:, t0:t1]
    words = padded.view("<u8")
    h = words[:, 0].copy()
    for j in range(1, words.shape[1]):
        h = h * np.uint64(1099511628211) ^ words[:, j]  # wraps
    known = np.unique(h[:: max(1, n // 4096)])
    at = np.minimum(np.searchsorted(known, h), len(known) - 1)
    if not (known[at] == h).all():
        known, at = np.unique(h, return_inverse=True)
    tags = []
    for u in range(len(known)):
        sel = at == u
        group = m[sel, t0:t1]
        if not len(group):
            continue
        rep = group[0]
        if not (group == rep).all():  # a hash collision: split the group exactly
            tags.extend(_tags_exact(m, np.flatnonzero(sel), t0, t1))
            continue
        tags.append((bytes(rep).decode("utf-8"), sel))
    return tags


def _tags_exact(m: Any, rows: Any, t0: int, t1: int) -> list[tuple[str, Any]]:
    import numpy as np

    groups: dict[bytes, list[int]] = {}
    for r in rows.tolist():
        groups.setdefault(bytes(m[r, t0:t1]), []).append(r)
    out = []
    for raw, members in groups.items():
        sel = np.zeros(len(m), dtype=bool)
        sel[members] = True
        out.append((raw.decode("utf-8"), sel))
    return out


# --- the exact decoder -----------------------------------------------------------------------

def _exact(b: bytes, s: Any, e: Any, which: Any, base: int, out: Decoded) -> None:
    """Decode records `which` field by field (any event)."""
    import numpy as np

    f32, f64 = ev._F32, ev._F64
    plugins = out.plugins
    keys: dict[str, list[int]] = {}
    cols: dict[str, tuple[list[int], list[float], list[float]]] = {}
    lo = hi = None
    for k in which.tolist():
        i, end = int(s[k]), int(e[k])
        wall, step = 0.0, 0
        summ = None
        for num, wt, v in ev.fields(b, i, end):
            if num == 1 and wt == 1:
                wall = f64(v)[0]
            elif num == 2 and wt == 0:
                step = v - (1 << 64) if v >= 1 << 63 else v
            elif num == 3 and wt == 2:
                out.file_versions.add(b[v[0]:v[1]].decode("utf-8", "replace"))
            elif num == 5 and wt == 2:
                summ = v
        lo = wall if lo is None or wall < lo else lo
        hi = wall if hi is None or wall > hi else hi
        if summ is None:
            continue
        if step < 0:
            out.negative_steps += 1
            continue
        for num, _, (vs, ve) in ev.fields(b, *summ):
            if num != 1:
                continue
            tag_b = b""
            simple = meta = tensor_span = other = None
            for n2, wt2, v2 in ev.fields(b, vs, ve):
                if n2 == 1:
                    tag_b = b[v2[0]:v2[1]]
                elif n2 == 2 and wt2 == 5:
                    simple = f32(v2)[0]
                elif n2 == 9:
                    meta = v2
                elif n2 == 8:
                    tensor_span = v2
                elif n2 in (4, 5, 6):
                    other = ("image" if n2 == 4 else "histo" if n2 == 5 else "audio", v2)
            tag = tag_b.decode("utf-8")
            if meta is not None and tag not in plugins:
                plugins[tag] = ev.summary_metadata(b, meta)
            plugin, content = plugins.get(tag, (None, b""))
            number = simple
            if simple is None and tensor_span is not None and plugin == "scalars":
                nums = ev.tensor_numbers(ev.tensor(b, tensor_span))
                if len(nums) != 1:
                    raise ev.WireError(f"the scalar {tag!r} holds {len(nums)} numbers")
                number = nums[0]
            if number is not None:
                col = cols.get(tag)
                if col is None:
                    col = cols[tag] = ([], [], [])
                    keys[tag] = []
                keys[tag].append(base + k)
                col[0].append(step)
                col[1].append(number)
                col[2].append(wall)
                continue
            raw = b[vs:ve]
            if tensor_span is not None:
                span = (tensor_span[0] - vs, tensor_span[1] - vs)
                out.values.append((base + k, step, wall, ev.Value(tag, "tensor", plugin, content, span), raw))
            elif other is not None:
                span = (other[1][0] - vs, other[1][1] - vs)
                out.values.append((base + k, step, wall, ev.Value(tag, other[0], plugin, b"", span), raw))
            elif meta is not None:  # metadata alone (the hparams plugin's summaries)
                p2, c2 = ev.summary_metadata(b, meta)
                out.values.append((base + k, step, wall, ev.Value(tag, "meta", p2, c2, (0, 0)), raw))
    if lo is not None and hi is not None:
        out._walls(lo, hi)
    for tag, (steps, values, walls) in cols.items():
        _add(out, tag, (np.asarray(keys[tag], dtype=np.int64), np.asarray(steps, dtype=np.int64),
                        np.asarray(values, dtype=np.float64), np.asarray(walls, dtype=np.float64)))
