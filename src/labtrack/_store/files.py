"""Writing files the way docs/format.md promises: atomic replaces and whole-line appends."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator


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


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` when the block ends without an error.

    The data goes to a temporary file with a short name in the same folder (the final name
    may already use the whole 255 bytes), created with its folder if needed, and removed
    when the block raises; a reader sees the old file or the new one, never a mix.

    Example:
        >>> with atomic_writer(Path("run/media/0/cat.png")) as f:
        ...     f.write(b"...")
    """
    tmp = path.parent / f".{secrets.token_hex(6)}.tmp"
    try:
        try:
            f = open(tmp, "wb")
        except FileNotFoundError:  # the folder first (only then: a mkdir per write is a syscall)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "wb")
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a reader sees the old file or the new one, never a mix."""
    with atomic_writer(path) as f:
        f.write(data)


def replace_folder(final: Path, fill: Callable[[Path], object]) -> None:
    """Replace the folder `final` with one `fill(tmp)` builds: a reader sees the old folder, the
    new one or, between the two renames, none; never a half-filled one. The temporary folder
    beside it has a short name (the final one may use all 255 bytes) and is removed if `fill`
    fails; the parent is created.

    Raises:
        OSError: the folder cannot be made or renamed (nothing is left behind).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{secrets.token_hex(6)}.tmp"
    try:
        tmp.mkdir()
        fill(tmp)
        old = None
        if final.exists():
            old = final.parent / f".{secrets.token_hex(6)}.old"
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (non-finite floats as strings)."""
    atomic_write_bytes(path, (dumps(obj) + "\n").encode("utf-8"))


def open_append(path: Path) -> int:
    """A file descriptor appending to `path` (created, with its folders, when missing)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append_bytes(path: Path, data: bytes | list[bytes]) -> None:
    """Append whole lines to `path`, creating folders as needed: all of `data` or nothing.

    `data` may be a list of byte strings, written in order with `os.writev` (no joined copy).

    A write that fails part-way (a full disk) is cut back to the size before it, so the next
    append never lands on a torn line in the middle of the file.

    Raises:
        OSError: the file cannot be opened or written (nothing of `data` is left in it).
    """
    if not data:
        return
    fd = open_append(path)
    try:
        size = os.fstat(fd).st_size
        try:
            if isinstance(data, list):
                data = _writev(fd, data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            try:
                os.ftruncate(fd, size)
            except OSError:  # cannot happen on a local file system: shrinking needs no space
                pass
            raise
    finally:
        os.close(fd)


def _writev(fd: int, parts: list[bytes]) -> bytes:
    """Write `parts` with os.writev, 512 at a time; what a short write left, joined."""
    i = 0
    while i < len(parts):
        group = parts[i: i + 512]
        want = sum(len(p) for p in group)
        done = os.writev(fd, group)
        i += len(group)
        if done < want:  # rare: the rest the simple way
            return b"".join(group)[done:] + b"".join(parts[i:])
    return b""


# File systems whose locks SQLite cannot trust (and where WAL's shared memory does not work):
# network and cluster file systems, and FUSE mounts of remote storage.
_NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "coda", "lustre", "gpfs", "beegfs",
    "ceph", "glusterfs", "orangefs", "pvfs2", "ocfs2", "gfs2", "davfs",
})
_NETWORK_FUSE = frozenset({
    "sshfs", "s3fs", "gcsfuse", "rclone", "juicefs", "glusterfs", "ceph", "cephfs", "goofys",
    "blobfuse", "blobfuse2", "davfs2", "mountpoint-s3",
})


def _unescape_mount(field: str) -> str:
    """A mount point as /proc/self/mounts writes it (space, tab, newline, backslash octal)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def network_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """The type of the network file system `path` is on ("nfs4", "fuse.sshfs" ...), or None.

    None also when it cannot be told (no /proc/self/mounts: not Linux). `mounts` is the
    text of /proc/self/mounts (tests pass their own).

    Example:
        >>> network_filesystem("/mnt/cluster/labtrack")
        'nfs4'
    """
    if mounts is None:
        try:
            with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return None
    real = os.path.realpath(path)
    best, fstype = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the deepest mount; a later one shadows
            best, fstype = point, fields[2]
    kind = fstype.lower()
    if kind in _NETWORK_FS or (kind.startswith("fuse.") and kind[5:] in _NETWORK_FUSE):
        return fstype
    return None
