"""Containment: nothing under a root is read, written, listed or deleted outside it.

A root may hold symlinks (docs/format.md, "Symlinks"): one whose target lies inside the same
root is followed; an experiment folder, run folder or file that resolves outside the root is
not part of the root. Every reader and writer of run directories (Book, the server's read API
and ingest, the CLI) asks here before it touches a path, so the two sides of the server can
never disagree about which runs exist.

The check resolves the path (`os.path.realpath`) and compares it with the resolved root. A
symlink swapped in between the check and the open is not caught; the server's writers open
the resolved path, so what they write is where the check looked.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .._names import _CONTROL
from ..errors import LabtrackNameError


class OutsideRootError(LabtrackNameError):
    """A path that resolves (through a symlink) outside the root or run it belongs to."""


def inside(path: str, parent: str) -> bool:
    """True when the resolved `path` is `parent` or lies under it (both already resolved)."""
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def real(path: str | os.PathLike[str]) -> str:
    """`path` with every symlink resolved (it need not exist)."""
    return os.path.realpath(path)


def is_contained(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when `path`, with symlinks resolved, lies inside `root` (also resolved)."""
    return inside(real(path), real(root))


def contained(path: Path, root: str | os.PathLike[str], what: str = "path") -> Path:
    """`path` itself, after checking that it resolves inside `root`.

    Args:
        path: the path to check (it need not exist).
        root: the folder it must stay in (a root, or one run directory).
        what: how to name `path` in the error.

    Returns:
        `path`, unchanged.

    Raises:
        OutsideRootError: `path` resolves outside `root`.

    Example:
        >>> contained(Path("labtrack/mnist/20261121-141503-k3f9qz"), "labtrack", "run")
    """
    if not is_contained(path, root):
        raise OutsideRootError(
            f"{what} {os.fspath(path)!r} leads outside {os.fspath(root)!r} (through a symlink); "
            "labtrack reads and writes only inside the root")
    return path


def relpath_in(base: Path, relpath: str, what: str = "path") -> Path:
    """The path of `relpath` under `base`, refusing anything that would leave `base`.

    Args:
        base: a run directory (or a root).
        relpath: a `/`-separated relative path such as `scalars/train/loss.csv`.
        what: the parameter's name, for the error message.

    Returns:
        `base / relpath` (not resolved; it may not exist).

    Raises:
        LabtrackNameError: `relpath` is empty, absolute, has `..`, `.` or empty parts, a
            backslash or control characters.
        OutsideRootError: it resolves (through a symlink) outside `base`.

    Example:
        >>> relpath_in(Path("labtrack/mnist/20261121-141503-k3f9qz"), "scalars/loss.csv")
    """
    check_relpath(relpath, what)
    return contained(base / relpath, base, what)


MAX_RELPATH_LENGTH = 4000
MAX_PART_BYTES = 255


def check_relpath(relpath: object, what: str = "path") -> str:
    """`relpath` if it is a '/'-separated relative path of a file as stored, else raise.

    Unlike a logged name (`check_name`, at most 250 characters before escaping), a stored
    path holds folders and suffixes: `media/12/<a 248-character name>.png` is fine. Each part
    must fit a file name (255 bytes of UTF-8).

    Raises:
        LabtrackNameError: not a string, empty, absolute, longer than 4000 characters, with
            an empty, `.` or `..` part, a part over 255 bytes, a backslash, control
            characters or a lone surrogate.
    """
    if not isinstance(relpath, str):
        raise LabtrackNameError(f"{what} must be a string such as 'scalars/loss.csv', not {relpath!r}")
    if len(relpath) > MAX_RELPATH_LENGTH:
        raise LabtrackNameError(f"{what} {relpath[:40]!r}... is {len(relpath)} characters long; at most "
                                f"{MAX_RELPATH_LENGTH} are allowed")
    if "\\" in relpath:
        raise LabtrackNameError(f"{what} {relpath!r} contains a backslash; use '/' between parts")
    if _CONTROL.search(relpath):
        raise LabtrackNameError(f"{what} {relpath!r} contains a control character")
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        raise LabtrackNameError(f"{what} {relpath!r} is not valid Unicode (a lone surrogate)") from None
    for part in relpath.split("/"):
        if part in ("", ".", ".."):
            raise LabtrackNameError(f"{what} {relpath!r} has an empty, '.' or '..' part (or starts "
                                    "with '/'); use a relative path such as 'scalars/loss.csv'")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise LabtrackNameError(f"{what} {relpath[:40]!r}...: the part {part[:30]!r}... is longer "
                                    f"than a file name ({MAX_PART_BYTES} bytes)")
    return relpath


def read_inside(path: str, base: str) -> bytes:
    """The bytes of the file `path` (directly inside the folder `base`, itself checked), a
    symlink followed only when it resolves inside `base`.

    The common case costs no more than a plain read: the file is opened without following a
    symlink, and only a symlink is resolved and checked.

    Raises:
        FileNotFoundError: no such file.
        OutsideRootError: `path` is a symlink that leads outside `base`.
    """
    try:
        fd = os.open(path, _READ_NOFOLLOW)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        fd = os.open(real(contained(Path(path), base, "file")), _READ)
    # Plain reads on the descriptor: a buffered file object costs more than the read of a
    # small JSON file (the index reads 30,000 of them for 10,000 runs).
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_READ_NOFOLLOW = _READ | getattr(os, "O_NOFOLLOW", 0)
