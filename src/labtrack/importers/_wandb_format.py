"""Reading W&B's run-<id>.wandb files: the record log and the protobuf Records in it.

A .wandb file is a LevelDB-style log (W&B's `datastore`): a 7-byte header (":W&B", the magic
0xBEE1 little-endian, version 0), then 32 KiB blocks of records, each with a 7-byte header
(CRC-32 of type byte + data, length, type) and a FULL, or FIRST, MIDDLE..., LAST fragments of
one serialized `wandb_internal.Record`; fewer than 7 bytes left in a block are zero padding.
wandb 0.31 keeps its reader of this framing in its Go core (no Python datastore any more), so
the framing is always read here; the Records are decoded with wandb's own protobuf classes
(`wandb.proto.wandb_internal_pb2`) when wandb is importable, else with the small wire decoder
below. Both give the same plain dicts (`SCHEMA` names the fields kept), so the importer never
sees which one ran; a test compares them on real files.

A run that was killed leaves a torn last record: it is ignored, like a torn last line of a
labtrack series. A bad header or a checksum that does not match before the end is an error
naming the file and the offset.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._sink import SourceError

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
_REC_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


def read_frames(path: Path) -> Iterator[bytes]:
    """The payload of each whole record in the file, in order (a torn last record is dropped).
    The file is read one 32 KiB block at a time (a record never crosses a block's end).

    Raises:
        SourceError: not a .wandb file, or a record whose checksum does not match.
    """
    try:
        with open(path, "rb") as f:
            yield from _frames(f, str(path))
    except OSError as e:
        raise SourceError(f"cannot read the W&B run file {str(path)!r}: {e.strerror or e}") from None


def _frames(f: Any, where: str) -> Iterator[bytes]:
    block = f.read(BLOCK)
    if block[:len(HEADER)] != HEADER:
        raise SourceError(f"{where!r} is not a W&B run file: it does not start with the .wandb header "
                          f"(':W&B', magic 0xBEE1, version 0)")
    i, base = len(HEADER), 0
    parts: list[bytes] | None = None
    while block:
        following = f.read(BLOCK)
        last = not following  # the file ends in this block: a torn record here is the writer's death
        n = len(block)
        while i + _REC_HEADER <= n:
            crc, length, kind = struct.unpack_from("<IHB", block, i)
            if crc == 0 and length == 0 and kind == 0:  # zeros to the block's end (a preallocated tail)
                break
            start = i + _REC_HEADER
            if start + length > n:
                if last:
                    return  # torn record at the end: the writer was killed mid-write
                raise SourceError(f"{where!r} is corrupt: the record at byte {base + i} claims {length} bytes, "
                                  "past the end of its 32 KiB block")
            payload = block[start:start + length]
            if kind not in _TYPE_CRC or zlib.crc32(payload, _TYPE_CRC[kind]) != crc:
                if last and start + length == n:
                    return  # the last record, half written
                raise SourceError(f"{where!r} is corrupt: the record at byte {base + i} fails its checksum "
                                  f"(type {kind}, {length} bytes); W&B's file cannot be read past it")
            if kind == FULL:
                parts = None
                yield payload
            elif kind == FIRST:
                parts = [payload]
            elif parts is not None and kind == MIDDLE:
                parts.append(payload)
            elif parts is not None and kind == LAST:
                parts.append(payload)
                yield b"".join(parts)
                parts = None
            else:
                raise SourceError(f"{where!r} is corrupt: a record fragment at byte {base + i} (type {kind}) "
                                  "has no first fragment before it")
            i = start + length
        if n < BLOCK:
            return  # fewer than 7 bytes left at the end: a torn header
        base += BLOCK
        block, i = following, 0


# --- the Record fields kept: field number -> (name, kind, repeated) ----------------------------
# kind: "s" string, "i" varint (int64/int32/uint), "b" bool, "d" double, or a nested schema.
Schema = dict[int, tuple[str, Any, bool]]
_TS: Schema = {1: ("seconds", "i", False), 2: ("nanos", "i", False)}
_ITEM: Schema = {1: ("key", "s", False), 2: ("nested_key", "s", True), 16: ("value_json", "s", False)}
_CHANGES: Schema = {1: ("update", _ITEM, True), 2: ("remove", _ITEM, True)}
_GIT: Schema = {1: ("remote_url", "s", False), 2: ("commit", "s", False)}
_OUTPUT: Schema = {1: ("output_type", "i", False), 2: ("timestamp", _TS, False), 3: ("line", "s", False)}
SCHEMA: Schema = {
    2: ("history", {1: ("item", _ITEM, True), 2: ("step", {1: ("num", "i", False)}, False)}, False),
    3: ("summary", _CHANGES, False),
    4: ("output", _OUTPUT, False),
    5: ("config", _CHANGES, False),
    6: ("files", {1: ("files", {1: ("path", "s", False), 3: ("type", "i", False)}, True)}, False),
    7: ("stats", {1: ("stats_type", "i", False), 2: ("timestamp", _TS, False),
                  3: ("item", {1: ("key", "s", False), 16: ("value_json", "s", False)}, True)}, False),
    13: ("output_raw", _OUTPUT, False),
    17: ("run", {1: ("run_id", "s", False), 2: ("entity", "s", False), 3: ("project", "s", False),
                 4: ("config", _CHANGES, False), 6: ("run_group", "s", False), 7: ("job_type", "s", False),
                 8: ("display_name", "s", False), 9: ("notes", "s", False), 10: ("tags", "s", True),
                 12: ("sweep_id", "s", False), 13: ("host", "s", False), 14: ("starting_step", "i", False),
                 17: ("start_time", _TS, False), 18: ("resumed", "b", False), 21: ("git", _GIT, False)}, False),
    21: ("header", {1: ("version_info", {1: ("producer", "s", False), 2: ("min_consumer", "s", False)},
                        False)}, False),
    18: ("exit", {1: ("exit_code", "i", False), 2: ("runtime", "i", False)}, False),
    26: ("environment", {
        1: ("os", "s", False), 2: ("python", "s", False), 3: ("started_at", _TS, False),
        4: ("docker", "s", False), 5: ("args", "s", True), 6: ("program", "s", False),
        7: ("code_path", "s", False), 9: ("git", _GIT, False), 11: ("root", "s", False),
        12: ("host", "s", False), 13: ("username", "s", False), 14: ("executable", "s", False),
        16: ("cpu_count", "i", False), 17: ("cpu_count_logical", "i", False), 18: ("gpu_type", "s", False),
        19: ("gpu_count", "i", False), 21: ("memory", {1: ("total", "i", False)}, False),
        24: ("gpu_nvidia", {1: ("name", "s", False), 2: ("memory_total", "i", False)}, True),
        25: ("cuda_version", "s", False)}, False),
}
_DEFAULTS = {"s": "", "i": 0, "b": False, "d": 0.0}
_SIGNED = {"exit_code", "nanos", "seconds", "starting_step", "runtime"}  # int32/int64: two's complement


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _decode_item(buf: bytes) -> dict[str, Any]:
    """A HistoryItem / SummaryItem / ConfigItem (key, nested_key, value_json): the bulk of a
    .wandb file, so decoded by hand (tags 0x0a, 0x12, 0x82 0x01); anything else goes the
    general way."""
    key, value_json = "", ""
    nested: list[str] = []
    i, n = 0, len(buf)
    while i < n:
        tag = buf[i]
        if tag == 0x82 and i + 1 < n and buf[i + 1] == 0x01:
            i += 2
        elif tag == 0x0A or tag == 0x12:
            i += 1
        else:
            return _decode(buf, _ITEM, generic=True)
        length = buf[i] if i < n else 0
        if length < 0x80:
            i += 1
        else:
            length, i = _varint(buf, i)
        text = buf[i:i + length].decode("utf-8", "replace")
        i += length
        if i > n:
            raise ValueError("message cut short")
        if tag == 0x0A:
            key = text
        elif tag == 0x12:
            nested.append(text)
        else:
            value_json = text
    return {"key": key, "nested_key": nested, "value_json": value_json}


def _decode(buf: bytes, schema: Schema, generic: bool = False) -> dict[str, Any]:
    """One message of `schema` from protobuf wire bytes; unknown fields are skipped."""
    if schema is _ITEM and not generic:
        return _decode_item(buf)
    out: dict[str, Any] = {}
    i, n = 0, len(buf)
    while i < n:
        tag = buf[i]
        if tag < 0x80:
            i += 1
        else:
            tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value: Any
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            length = buf[i] if i < n else 0
            if length < 0x80:
                i += 1
            else:
                length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire} of field {number}")
        if i > n:
            raise ValueError("message cut short")
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind, repeated = spec
        if isinstance(kind, dict):
            value = _decode(value, kind)
        elif kind == "s":
            value = value.decode("utf-8", "replace")
        elif kind == "b":
            value = bool(value)
        elif kind == "d":
            value = struct.unpack("<d", value)[0]
        elif kind == "i" and name in _SIGNED and value >= 1 << 63:
            value -= 1 << 64
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    for name, kind, repeated in schema.values():
        if name not in out:
            out[name] = [] if repeated else (None if isinstance(kind, dict) else _DEFAULTS[kind])
    return out


def _from_message(msg: Any, schema: Schema) -> dict[str, Any]:
    """The same plain dict as `_decode`, from wandb's own protobuf message."""
    if schema is _ITEM:  # the bulk of a file: the three fields read directly
        return {"key": msg.key, "nested_key": list(msg.nested_key), "value_json": msg.value_json}
    out: dict[str, Any] = {}
    for name, kind, repeated in schema.values():
        value = getattr(msg, name)
        if isinstance(kind, dict):
            if repeated:
                out[name] = [_from_message(m, kind) for m in value]
            else:
                out[name] = _from_message(value, kind) if msg.HasField(name) else None
        else:
            out[name] = list(value) if repeated else value
    return out


def wandb_decoder() -> Any:
    """wandb's Record class when wandb is importable here, else None."""
    try:
        from wandb.proto import wandb_internal_pb2  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except Exception:  # not installed, or a broken install: the own decoder reads the same bytes
        return None
    return wandb_internal_pb2.Record


def records(path: Path, decoder: str = "auto") -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, fields) of each Record of the kinds in SCHEMA ("history", "run", ...), in order.

    Args:
        decoder: "wandb" (wandb's protobuf classes; an error when wandb is not importable),
            "own" (the wire decoder here), or "auto" (wandb's when importable).
    """
    record_class = None
    if decoder in ("auto", "wandb"):
        record_class = wandb_decoder()
        if record_class is None and decoder == "wandb":
            raise SourceError("decoder='wandb' needs the wandb package, which is not importable here; "
                              "use decoder='own' or 'auto'")
    elif decoder != "own":
        raise SourceError(f"decoder must be 'auto', 'wandb' or 'own', got {decoder!r}")
    names = {number: (name, kind) for number, (name, kind, _) in SCHEMA.items()}
    for n, payload in enumerate(read_frames(path)):
        try:
            if record_class is not None:
                msg = record_class()
                msg.ParseFromString(payload)
                which = msg.WhichOneof("record_type")
                if which is None:
                    continue
                spec = SCHEMA_BY_NAME.get(which)
                if spec is not None:
                    yield which, _from_message(getattr(msg, which), spec)
                continue
            found = _decode_record(payload, names)
        except SourceError:
            raise
        except Exception as e:  # a frame whose checksum matched but whose bytes are no Record
            raise SourceError(f"{str(path)!r} is corrupt: record {n} is not a W&B Record ({e})") from None
        if found is not None:
            yield found


SCHEMA_BY_NAME: dict[str, Schema] = {name: kind for name, kind, _ in SCHEMA.values()}


def _decode_record(payload: bytes, names: dict[int, tuple[str, Schema]]) -> tuple[str, dict[str, Any]] | None:
    """The one record_type field of a Record (its oneof), decoded; None for kinds not kept."""
    i, n = 0, len(payload)
    found = None
    while i < n:
        tag, i = _varint(payload, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _varint(payload, i)
            continue
        if wire == 1 or wire == 5:
            i += 8 if wire == 1 else 4
            continue
        if wire != 2:
            raise ValueError(f"wire type {wire} of field {number}")
        length, i = _varint(payload, i)
        body, i = payload[i:i + length], i + length
        if i > n:
            raise ValueError("message cut short")
        if number in names:
            name, schema = names[number]
            found = (name, _decode(body, schema))  # a oneof: the last one set wins, as in protobuf
    return found
