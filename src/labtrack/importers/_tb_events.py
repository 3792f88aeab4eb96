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
_CRC_TABLES: Any = None
_LONG = 1024  # records longer than this are checked in 256-byte chunks (see _crc_long)
_CHUNK = 256


def _tables() -> Any:
    """CRC-32C tables: one byte, two bytes at once, and the operator "append 256 zero bytes"
    as four byte tables (for combining the CRCs of a long record's chunks)."""
    global _CRC_TABLES
    if _CRC_TABLES is None:
        import numpy as np

        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            t.append(c)
        t8 = np.array(t, dtype=np.uint32)
        c16 = np.arange(65536, dtype=np.uint32)
        c16 = t8[c16 & 0xFF] ^ (c16 >> 8)
        t16 = t8[c16 & 0xFF] ^ (c16 >> 8)
        basis = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]).ravel()
        state = basis.copy()
        for _ in range(_CHUNK // 2):  # state through 256 zero bytes
            state = t16[state & 0xFFFF] ^ (state >> 16)
        _CRC_TABLES = (t8, t16, [int(x) for x in state])
    return _CRC_TABLES


def _raw_crc(rows16: Any, tail: Any, crc: Any) -> Any:
    """CRC-32C state `crc` carried through many equal-length byte strings at once, given as
    their 16-bit words (words x strings, contiguous per word) and an odd last byte (or None)."""
    t8, t16, _ = _tables()
    for j in range(rows16.shape[0]):
        crc = t16[(crc ^ rows16[j]) & 0xFFFF] ^ (crc >> 16)
    if tail is not None:
        crc = t8[(crc ^ tail) & 0xFF] ^ (crc >> 8)
    return crc


def _mask(crc: Any) -> Any:
    import numpy as np

    crc = crc ^ np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)  # uint32 arithmetic wraps


def rows_of(buf: Any, starts: Any, length: int) -> Any:
    """The `length` bytes at each offset in `starts` as an (n x length) uint8 matrix."""
    import numpy as np

    if length == 0 or not len(starts):
        return np.zeros((len(starts), length), dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(buf, length)  # a view: no copy
    return windows[starts]


def masked_crc_rows(rows: Any) -> Any:
    """TFRecord's masked CRC-32C of each row of an (n x length) uint8 matrix, all at once."""
    import numpy as np

    n, length = rows.shape
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    even = length // 2 * 2
    words = np.ascontiguousarray(rows[:, :even]).view("<u2").T.astype(np.uint32)
    tail = rows[:, -1].astype(np.uint32) if length % 2 else None
    return _mask(_raw_crc(words, tail, crc))


def _crc_long(buf: Any, start: int, length: int) -> int:
    """The masked CRC-32C of one long record: its 256-byte chunks all at once (from a zero
    state), then combined in order with the "append 256 zeros" operator, then the tail."""
    import numpy as np

    _, _, op = _tables()
    n = length // _CHUNK
    chunks = buf[start:start + n * _CHUNK].reshape(n, _CHUNK)
    words = np.ascontiguousarray(chunks).view("<u2").T.astype(np.uint32)
    raw = _raw_crc(words, None, np.zeros(n, dtype=np.uint32)).tolist()
    state = 0xFFFFFFFF
    for r in raw:
        state = (op[state & 0xFF] ^ op[256 + ((state >> 8) & 0xFF)] ^ op[512 + ((state >> 16) & 0xFF)]
                 ^ op[768 + (state >> 24)] ^ r)
    rest = buf[start + n * _CHUNK:start + length]
    crc = np.array([state], dtype=np.uint32)
    if len(rest):
        even = len(rest) // 2 * 2
        words = np.ascontiguousarray(rest[:even]).view("<u2").astype(np.uint32)[:, None]
        tail = rest[-1:].astype(np.uint32) if len(rest) % 2 else None
        crc = _raw_crc(words, tail, crc)
    return int(_mask(crc)[0])


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of one byte string (TFRecord's checksum)."""
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    if len(data) > _LONG:
        return _crc_long(buf, 0, len(data))
    return int(masked_crc_rows(buf[None, :])[0])


def split_records(data: bytes, path: str) -> tuple[Any, Any, bool]:
    """The start and end offsets (numpy arrays) of every record's data in `data`, and whether
    the file ends in a record cut off by a writer that stopped mid-write (then the complete
    ones before it count). Lengths are checked here, data checksums by `check_records`.

    Raises:
        SourceError: a damaged length anywhere but a cut-off tail.
    """
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    starts, pos, truncated = _walk(data, buf)
    n = len(data)
    if truncated and pos + 12 <= n:  # the cut-off record's own length must be sound
        want = int.from_bytes(data[pos + 8:pos + 12], "little")
        if int(masked_crc_rows(buf[None, pos:pos + 8])[0]) != want:
            raise SourceError(f"{path}: the record at byte {pos} has a damaged length (its checksum "
                              "does not match); the file is not a readable event file")
    if truncated and not starts and n < 12:
        raise SourceError(f"{path}: {n} bytes are too short to be an event file")
    s = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    if len(s):
        heads = rows_of(buf, s - 12, 12)
        want_len = np.ascontiguousarray(heads[:, 8:]).view("<u4")[:, 0]
        bad = np.nonzero(masked_crc_rows(heads[:, :8]) != want_len)[0]
        if len(bad):
            raise SourceError(f"{path}: the record at byte {int(s[bad[0]]) - 12} has a damaged length "
                              "(its checksum does not match); the file is not a readable event file")
        e = s + np.ascontiguousarray(heads[:, :8]).view("<u8")[:, 0].astype(np.int64)
    else:
        e = s.copy()
    return s, e, truncated


def _period(lengths: list[int]) -> int:
    """The smallest p <= 32 with which the last lengths repeat (at least 3 times), else 0."""
    n = len(lengths)
    for p in range(1, min(32, n // 3) + 1):
        if lengths[-3 * p:-p] == lengths[-2 * p:]:
            return p
    return 0


def _walk(data: bytes, buf: Any) -> tuple[list[Any], int, bool]:
    """The records' data offsets (numpy chunks), where the walk stopped, and whether it stopped
    at a cut-off record. Each record's length says where the next starts, so this is a loop;
    but a writer logging the same tags step after step writes the same sequence of lengths
    over and over, so when the last lengths repeat with a short period the walk guesses the
    next thousands of records at once and keeps the guesses the file confirms."""
    import numpy as np

    u64 = _U64
    n = len(data)
    out: list[Any] = []
    chunk: list[int] = []
    recent: list[int] = []
    pos = 0
    wait = 16  # records to walk one by one before the next guess
    block = 256
    while pos < n:
        if pos + 12 > n:
            out.append(np.asarray(chunk, dtype=np.int64))
            return out, pos, True
        length = u64(data, pos)[0]
        end = pos + 12 + length
        if end + 4 > n:
            out.append(np.asarray(chunk, dtype=np.int64))
            return out, pos, True
        chunk.append(pos + 12)
        recent.append(length)
        pos = end + 4
        wait -= 1
        if wait > 0:
            continue
        wait = 16
        del recent[:-96]
        p = _period(recent)
        if not p:
            continue
        guess = np.tile(np.asarray(recent[-p:], dtype=np.int64), -(-block // p))[:block]  # the pattern, repeated
        ends = pos + np.cumsum(guess + 16)
        k = int(np.searchsorted(ends, n, side="right"))  # guesses that fit in the file
        if k < 2:
            continue
        at = np.concatenate(([pos], ends[:k - 1]))
        got = rows_of(buf, at, 8).view("<u8")[:, 0].astype(np.int64)
        same = got == guess[:k]
        ok = k if same.all() else int(np.argmin(same))
        if ok:
            out.append(np.asarray(chunk, dtype=np.int64))
            out.append(at[:ok] + 12)
            chunk = []
            recent.extend(guess[max(0, ok - 96):ok].tolist())
            pos = int(ends[ok - 1])
        block = min(block * 4, 1 << 16) if ok == k else 256
        wait = 1 if ok == k else 16
    out.append(np.asarray(chunk, dtype=np.int64))
    return out, pos, False


def check_records(buf: Any, s: Any, e: Any, path: str) -> dict[int, tuple[Any, Any]]:
    """Check every record's data checksum; returns length -> (record indices, their rows)
    for the short records (the fast decoder reads those rows).

    Raises:
        SourceError: a record whose data does not match its checksum.
    """
    import numpy as np

    out: dict[int, tuple[Any, Any]] = {}
    if not len(s):
        return out
    want = rows_of(buf, e, 4).view("<u4")[:, 0]
    lengths = e - s
    distinct = np.unique(lengths[:: max(1, len(lengths) // 4096)])  # a sample: usually all of them
    if len(distinct) <= 16 and np.isin(lengths, distinct).all():
        split = [np.flatnonzero(lengths == length) for length in distinct.tolist()]
    else:
        order = np.argsort(lengths, kind="stable")
        split = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
    for idx in split:
        if not len(idx):
            continue
        length = int(lengths[idx[0]])
        if length > _LONG:
            for k in idx.tolist():
                if _crc_long(buf, int(s[k]), length) != int(want[k]):
                    _damaged(path, int(s[k]))
            continue
        rows = rows_of(buf, s[idx], length)
        bad = np.nonzero(masked_crc_rows(rows) != want[idx])[0]
        if len(bad):
            _damaged(path, int(s[idx[bad[0]]]))
        out[length] = (idx, rows)
    return out


def _damaged(path: str, start: int) -> None:
    raise SourceError(f"{path}: the record at byte {start - 12} is damaged (its checksum does not "
                      "match its data)")


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
    v: Any
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
