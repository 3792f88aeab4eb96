"""Writing files the way docs/format.md promises: atomic replaces and whole-line appends."""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any


def _nonfinite_to_str(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, dict):
        return {str(k): _nonfinite_to_str(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nonfinite_to_str(v) for v in obj]
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """JSON text with non-finite floats as the strings "NaN", "Infinity", "-Infinity"."""
    return json.dumps(_nonfinite_to_str(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def dumps_line(obj: Any) -> str:
    """One JSONL line (with its newline)."""
    return json.dumps(_nonfinite_to_str(obj), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")) + "\n"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a reader sees the old file or the new one, never a mix."""
    # A short temporary name: the final name may already use the whole 255 bytes.
    tmp = path.parent / f".{secrets.token_hex(6)}.tmp"
    try:
        try:
            f = open(tmp, "wb")
        except FileNotFoundError:  # the folder first (only then: a mkdir per write is a syscall)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "wb")
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (non-finite floats as strings)."""
    atomic_write_bytes(path, (dumps(obj) + "\n").encode("utf-8"))


def append_bytes(path: Path, data: bytes) -> None:
    """Append whole lines to `path` in one write call, creating folders as needed."""
    if not data:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)
