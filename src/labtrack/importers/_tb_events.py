"""TensorBoard event files read without TensorBoard: TFRecord framing, CRC-32C, protobuf wire.

An event file (`events.out.tfevents.*`) is a sequence of records, each
`uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`, little
endian, where `data` is a serialized `tensorflow.Event` protobuf (tensorboard/compat/proto/
event.proto, summary.proto, tensor.proto). This module splits a file into records, checks
every CRC (vectorised with numpy over records of equal length: a Python loop per byte would
cost seconds per million records), and decodes the few messages an import needs with a
hand-written wire decoder. Pure code over bytes: no labtrack run is touched here.

Only a record cut off at the end of the file (a writer killed mid-write) is forgiven; any
other damage is a `SourceError` naming the file and the byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._sink import SourceError

_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q").unpack_from
_F32 = struct.Struct("<f").unpack_from
_F64 = struct.Struct("<d").unpack_from
_CRC_TABLE: Any = None


def _crc_table() -> Any:
    global _CRC_TABLE
    if _CRC_TABLE is None:
        import numpy as np

        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            t.append(c)
        _CRC_TABLE = np.array(t, dtype=np.uint32)
    return _CRC_TABLE


def masked_crc32c_many(buf: Any, starts: Any, length: int) -> Any:
    """The masked CRC-32C (TFRecord's checksum) of `length` bytes at each offset in `starts`
    of the uint8 array `buf`, all records at once (one numpy step per byte position)."""
    import numpy as np

    table = _crc_table()
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    if length:
        rows = buf[starts[:, None] + np.arange(length)]  # n x length bytes
        for j in range(length):
            crc = table[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)  # uint32 arithmetic wraps


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of one byte string (tests and small records)."""
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    return int(masked_crc32c_many(buf, np.zeros(1, dtype=np.int64), len(data))[0])


def split_records(data: bytes, path: str) -> tuple[list[int], list[int], bool]:
    """The (start, end) offsets of every record's data in `data`, checked, and whether the file
    ends in a record cut off by a writer that stopped mid-write (then the complete ones count).

    Raises:
        SourceError: a damaged length or checksum anywhere but a cut-off tail.
    """
    import numpy as np

    starts: list[int] = []
    ends: list[int] = []
    pos, n = 0, len(data)
    truncated = False
    append_s, append_e = starts.append, ends.append
    while pos < n:
        if pos + 12 > n:
            truncated = True
            break
        length = _U64(data, pos)[0]
        end = pos + 12 + length
        if end + 4 > n:
            truncated = True
            break
        append_s(end - length)
        append_e(end)
        pos = end + 4
    buf = np.frombuffer(data, dtype=np.uint8)
    if truncated:  # the cut-off record's own length must be sound, or the file is damaged
        if pos + 12 <= n:
            head = np.array([pos], dtype=np.int64)
            want = int(np.frombuffer(data, dtype="<u4", count=1, offset=pos + 8)[0])
            if int(masked_crc32c_many(buf, head, 8)[0]) != want:
                raise SourceError(f"{path}: the record at byte {pos} has a damaged length "
                                  "(its checksum does not match); the file is not a readable event file")
        elif not starts and data[:1] and n < 12:
            raise SourceError(f"{path}: {n} bytes are too short to be an event file")
    if starts:
        s = np.asarray(starts, dtype=np.int64)
        e = np.asarray(ends, dtype=np.int64)
        heads = s - 12
        want_len = _u32_at(data, s - 4)
        bad = np.nonzero(masked_crc32c_many(buf, heads, 8) != want_len)[0]
        if len(bad):
            at = int(heads[bad[0]])
            raise SourceError(f"{path}: the record at byte {at} has a damaged length (its checksum "
                              "does not match); the file is not a readable event file")
        want_data = _u32_at(data, e)
        lengths = e - s
        for length in np.unique(lengths).tolist():
            idx = np.nonzero(lengths == length)[0]
            got = masked_crc32c_many(buf, s[idx], int(length))
            bad = np.nonzero(got != want_data[idx])[0]
            if len(bad):
                at = int(heads[idx[bad[0]]])
                raise SourceError(f"{path}: the record at byte {at} is damaged (its checksum does not "
                                  "match its data)")
    return starts, ends, truncated


def _u32_at(data: bytes, offsets: Any) -> Any:
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    b = buf[offsets[:, None] + np.arange(4)].astype(np.uint32)
    return b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)


# --- protobuf wire -----------------------------------------------------------------------------

class WireError(Exception):
    """Bytes that are not the protobuf message they should be (turned into a SourceError)."""


def varint(b: bytes, i: int) -> tuple[int, int]:
    """The varint at `i` and the offset after it."""
    r = b[i]
    i += 1
    if r < 0x80:
        return r, i
    r &= 0x7F
    shift = 7
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << shift
        if x < 0x80:
            return r, i
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(b: bytes, i: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message in b[i:end]: varints as int, fixed64 and
    fixed32 as their 8 or 4 raw bytes, length-delimited as a (start, end) pair."""
    while i < end:
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            ln, i = varint(b, i)
            v = (i, i + ln)
            i += ln
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        else:
            raise WireError(f"wire type {wt} of field {num}")
        if i > end:
            raise WireError("a field runs past the end of its message")
        yield num, wt, v


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def packed(b: bytes, span: tuple[int, int], kind: str) -> list[Any]:
    """A packed repeated field: kind "d" (double), "f" (float) or "v" (varint)."""
    s, e = span
    if kind == "v":
        out = []
        while s < e:
            v, s = varint(b, s)
            out.append(_signed(v))
        return out
    size = 8 if kind == "d" else 4
    return list(struct.unpack_from(f"<{(e - s) // size}{kind}", b, s))


@dataclass
class Tensor:
    """The parts of a TensorProto an import reads."""

    dtype: int = 0
    shape: list[int] = field(default_factory=list)
    content: bytes = b""
    values: list[Any] = field(default_factory=list)
    strings: list[bytes] = field(default_factory=list)


# TensorProto's typed value fields: field number -> (packed kind, wire type when not packed)
_TENSOR_VALUES = {5: "f", 6: "d", 7: "v", 10: "v", 11: "v", 13: "v", 16: "v", 17: "v"}
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_HALF, DT_BFLOAT16 = 9, 10, 19, 14
_CONTENT = {DT_FLOAT: "f", DT_DOUBLE: "d", DT_INT32: "i", DT_UINT8: "B", DT_INT16: "h", DT_INT8: "b",
            DT_INT64: "q", DT_BOOL: "?", DT_HALF: "e", 17: "H", 22: "I", 23: "Q"}


def tensor(b: bytes, span: tuple[int, int]) -> Tensor:
    t = Tensor()
    for num, wt, v in fields(b, *span):
        if num == 1:
            t.dtype = v
        elif num == 2:
            for n2, _, v2 in fields(b, *v):
                if n2 == 2:  # dim
                    size = 0
                    for n3, _, v3 in fields(b, *v2):
                        if n3 == 1:
                            size = _signed(v3)
                    t.shape.append(size)
        elif num == 4:
            t.content = b[v[0]:v[1]]
        elif num == 8:
            t.strings.append(b[v[0]:v[1]])
        elif num in _TENSOR_VALUES:
            kind = _TENSOR_VALUES[num]
            if wt == 2:
                t.values.extend(packed(b, v, kind))
            elif wt == 5:
                t.values.append(_F32(v)[0])
            elif wt == 1:
                t.values.append(_F64(v)[0])
            else:
                t.values.append(_signed(v))
    return t


def tensor_numbers(t: Tensor) -> list[float]:
    """The numbers of a numeric tensor, each as the Python float of its stored value (a float32
    stays the exact float32 it was, a half becomes its exact value). bfloat16 is widened."""
    if t.content:
        if t.dtype == DT_BFLOAT16:
            n = len(t.content) // 2
            raw = struct.unpack_from(f"<{n}H", t.content)
            return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in raw]
        code = _CONTENT.get(t.dtype)
        if code is None:
            raise WireError(f"tensor of dtype {t.dtype}")
        n = len(t.content) // struct.calcsize(code)
        return [float(x) for x in struct.unpack_from(f"<{n}{code}", t.content)]
    if t.dtype == DT_HALF:  # half_val holds the 16 bits in an int32
        return [struct.unpack("<e", struct.pack("<H", h & 0xFFFF))[0] for h in t.values]
    if t.dtype == DT_BFLOAT16:
        return [struct.unpack("<f", struct.pack("<I", (h & 0xFFFF) << 16))[0] for h in t.values]
    vals = [float(x) for x in t.values]
    size = 1
    for d in t.shape:
        size *= max(d, 0)
    if len(vals) == 1 and size > 1:  # a tensor of one repeated value is stored once
        vals *= size
    return vals


# --- Event and Summary ------------------------------------------------------------------------

@dataclass
class Value:
    """One Summary.Value that is not a plain simple_value: its kind and the spans it needs."""

    tag: str
    kind: str  # "tensor", "image", "histo", "audio", "simple"
    plugin: str | None
    plugin_content: bytes
    span: tuple[int, int]
    simple: float = 0.0


def summary_metadata(b: bytes, span: tuple[int, int]) -> tuple[str | None, bytes]:
    plugin, content = None, b""
    for num, _, v in fields(b, *span):
        if num == 1:
            for n2, _, v2 in fields(b, *v):
                if n2 == 1:
                    plugin = b[v2[0]:v2[1]].decode("utf-8", "replace")
                elif n2 == 2:
                    content = b[v2[0]:v2[1]]
    return plugin, content


def image(b: bytes, span: tuple[int, int]) -> bytes:
    """Summary.Image's encoded_image_string (PNG, or GIF for tensorboardX's add_video)."""
    for num, _, v in fields(b, *span):
        if num == 4:
            return b[v[0]:v[1]]
    return b""


def histogram(b: bytes, span: tuple[int, int]) -> dict[str, Any]:
    """HistogramProto as a dict: min, max, num, sum, bucket_limit, bucket."""
    h: dict[str, Any] = {"min": 0.0, "max": 0.0, "num": 0.0, "sum": 0.0, "bucket_limit": [], "bucket": []}
    names = {1: "min", 2: "max", 3: "num", 4: "sum", 5: "sum_squares"}
    for num, wt, v in fields(b, *span):
        if num in names and wt == 1:
            h[names[num]] = _F64(v)[0]
        elif num in (6, 7):
            key = "bucket_limit" if num == 6 else "bucket"
            h[key].extend(packed(b, v, "d") if wt == 2 else [_F64(v)[0]])
    return h


def audio(b: bytes, span: tuple[int, int]) -> tuple[bytes, float, str]:
    """Summary.Audio: the encoded bytes (WAV), the sample rate and the content type."""
    data, rate, ctype = b"", 0.0, ""
    for num, _, v in fields(b, *span):
        if num == 1:
            rate = _F32(v)[0]
        elif num == 4:
            data = b[v[0]:v[1]]
        elif num == 5:
            ctype = b[v[0]:v[1]].decode("utf-8", "replace")
    return data, rate, ctype


@dataclass
class Decoded:
    """What one run's event files hold, in file order.

    batches: (step, wall time, {tag: value}) of the scalars, points sharing a step and a wall
        time in one dict (one run.log call each).
    values: (step, wall time, Value, raw bytes of the Summary.Value) of everything else.
    """

    batches: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    values: list[tuple[int, float, Value, bytes]] = field(default_factory=list)
    plugins: dict[str, tuple[str | None, bytes]] = field(default_factory=dict)  # tag -> first metadata
    first: float | None = None
    last: float | None = None
    points: int = 0
    negative_steps: int = 0
    truncated: list[str] = field(default_factory=list)
    file_versions: set[str] = field(default_factory=set)


def decode(data: bytes, path: str, out: Decoded) -> None:
    """Add the events of one file (its bytes) to `out`.

    Raises:
        SourceError: damaged framing, a checksum that does not match, or a record that is not
            an Event message.
    """
    starts, ends, truncated = split_records(data, path)
    if truncated:
        out.truncated.append(path)
    try:
        _decode(data, starts, ends, out)
    except (WireError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: a record is not a TensorBoard event ({e or type(e).__name__}); "
                          "the file is damaged or not an event file") from None


def _decode(b: bytes, starts: list[int], ends: list[int], out: Decoded) -> None:
    batches = out.batches
    plugins = out.plugins
    tags: dict[bytes, str] = {}
    cur: dict[str, float] | None = None
    cur_step, cur_wall = -1, -1.0
    first, last = out.first, out.last
    points = 0
    f32, f64 = _F32, _F64
    for s, e in zip(starts, ends):
        wall = 0.0
        step = 0
        summ_s = summ_e = -1
        i = s
        while i < e:  # Event: wall_time 1 (double), step 2 (int64), summary 5; others skipped
            key = b[i]
            if key == 0x09:
                wall = f64(b, i + 1)[0]
                i += 9
            elif key == 0x10:
                step = b[i + 1]
                i += 2
                if step >= 0x80:
                    step, i = varint(b, i - 1)
                    if step >= 1 << 63:
                        step -= 1 << 64
            elif key == 0x2A:
                summ_s = i + 2
                ln = b[i + 1]
                if ln >= 0x80:
                    ln, summ_s = varint(b, i + 1)
                summ_e = summ_s + ln
                i = summ_e
            else:
                k, i = varint(b, i)
                wt = k & 7
                if wt == 0:
                    _, i = varint(b, i)
                elif wt == 2:
                    ln, i = varint(b, i)
                    if (k >> 3) == 3:  # file_version, e.g. "brain.Event:2"
                        out.file_versions.add(b[i:i + ln].decode("utf-8", "replace"))
                    i += ln
                elif wt == 1:
                    i += 8
                elif wt == 5:
                    i += 4
                else:
                    raise WireError(f"wire type {wt} in an Event")
        if i != e:
            raise WireError("an Event's fields run past its record")
        if first is None or wall < first:
            first = wall
        if last is None or wall > last:
            last = wall
        if summ_s < 0:
            continue
        if step < 0:
            out.negative_steps += 1
            continue
        i = summ_s
        while i < summ_e:  # Summary: value 1 (repeated)
            key = b[i]
            ln = b[i + 1]
            i += 2
            if ln >= 0x80:
                ln, i = varint(b, i - 1)
            vs, ve = i, i + ln
            i = ve
            if key != 0x0A:
                continue
            tag_b = b""
            simple = None
            meta = tensor_span = other = None
            j = vs
            while j < ve:  # Value: tag 1, simple_value 2, image 4, histo 5, audio 6, tensor 8, metadata 9
                k = b[j]
                if k == 0x15:
                    simple = f32(b, j + 1)[0]
                    j += 5
                    continue
                if k & 7 == 2:
                    ln = b[j + 1]
                    j += 2
                    if ln >= 0x80:
                        ln, j = varint(b, j - 1)
                    span = (j, j + ln)
                    j += ln
                    if k == 0x0A:
                        tag_b = b[span[0]:span[1]]
                    elif k == 0x4A:
                        meta = span
                    elif k == 0x42:
                        tensor_span = span
                    elif k in (0x22, 0x2A, 0x32):
                        other = ("image" if k == 0x22 else "histo" if k == 0x2A else "audio", span)
                    continue
                k, j = varint(b, j)
                wt = k & 7
                if wt == 0:
                    _, j = varint(b, j)
                elif wt == 1:
                    j += 8
                elif wt == 5:
                    j += 4
                else:
                    raise WireError(f"wire type {wt} in a Summary.Value")
            if j != ve:
                raise WireError("a Summary.Value's fields run past its end")
            tag = tags.get(tag_b)
            if tag is None:
                tag = tags[tag_b] = tag_b.decode("utf-8")
            if meta is not None and tag not in plugins:
                plugins[tag] = summary_metadata(b, meta)
            if simple is not None:
                if cur is None or step != cur_step or wall != cur_wall or tag in cur:
                    cur = {}
                    batches.append((step, wall, cur))
                    cur_step, cur_wall = step, wall
                cur[tag] = simple
                points += 1
                continue
            raw = b[vs:ve]
            if tensor_span is not None:
                plugin = plugins.get(tag, (None, b""))[0]
                if plugin == "scalars":
                    nums = tensor_numbers(tensor(b, tensor_span))
                    if len(nums) != 1:
                        raise WireError(f"the scalar {tag!r} holds {len(nums)} numbers")
                    if cur is None or step != cur_step or wall != cur_wall or tag in cur:
                        cur = {}
                        batches.append((step, wall, cur))
                        cur_step, cur_wall = step, wall
                    cur[tag] = nums[0]
                    points += 1
                    continue
                out.values.append((step, wall, Value(tag, "tensor", plugin, plugins.get(tag, (None, b""))[1],
                                                     (tensor_span[0] - vs, tensor_span[1] - vs)), raw))
            elif other is not None:
                kind, span = other
                out.values.append((step, wall, Value(tag, kind, plugins.get(tag, (None, b""))[0], b"",
                                                     (span[0] - vs, span[1] - vs)), raw))
            elif meta is not None:  # metadata alone (the hparams plugin's summaries)
                plugin, content = summary_metadata(b, meta)
                out.values.append((step, wall, Value(tag, "meta", plugin, content, (0, 0)), raw))
    out.first, out.last = first, last
    out.points += points
