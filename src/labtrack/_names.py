"""Name validation and reversible file-name escaping (pure; see docs/format.md, Names)."""

from __future__ import annotations

import re

from .errors import LabtrackNameError

MAX_NAME_LENGTH = 250
# A file name holds 255 bytes; keep room for the longest suffix (.jsonl).
MAX_PART_BYTES = 255 - len(".jsonl")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def check_name(name: object, what: str = "name") -> str:
    """Return `name` if it is an allowed series/media/artifact name, else raise.

    Raises:
        LabtrackNameError: empty, too long, absolute, control characters, or a part that
            is empty, `.` or `..`.
    """
    if not isinstance(name, str):
        raise LabtrackNameError(
            f"{what} must be a str, got {type(name).__name__} {name!r}; "
            "use a '/'-separated path such as 'train/loss'"
        )
    if not name:
        raise LabtrackNameError(f"{what} is empty; use a non-empty path such as 'train/loss'")
    if len(name) > MAX_NAME_LENGTH:
        raise LabtrackNameError(
            f"{what} {name[:40]!r}... is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise LabtrackNameError(
            f"{what} {name!r} contains {name[e.start]!r} at position {e.start}, a lone surrogate "
            "that UTF-8 cannot store; names must be valid Unicode text") from None
    if _CONTROL.search(name):
        raise LabtrackNameError(
            f"{what} {name!r} contains a control character; names may not contain "
            "newlines, tabs or other control characters"
        )
    if name.startswith("/"):
        raise LabtrackNameError(
            f"{what} {name!r} starts with '/'; names are relative paths such as 'train/loss'"
        )
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise LabtrackNameError(
                f"{what} {name!r} has an empty, '.' or '..' part; "
                "each '/'-separated part must be a real name (no 'a//b', no '../x')"
            )
        stored = len(escape_part(part))
        if stored > MAX_PART_BYTES:
            raise LabtrackNameError(
                f"{what} {name[:40]!r}... is too long: the part {part[:30]!r}... becomes a {stored}-byte "
                f"file name once escaped; at most {MAX_PART_BYTES} bytes fit (non-ASCII and unusual characters "
                "take 3 bytes per byte); shorten it or split it with '/'"
            )
    return name


def escape_part(part: str) -> str:
    """Escape one name part into a file-name-safe, reversible form."""
    raw = part.encode("utf-8")
    if all(b in _SAFE for b in raw) and not part.startswith("."):
        return part
    out = []
    for i, b in enumerate(raw):
        if b in _SAFE and not (i == 0 and b == 0x2E):
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def unescape_part(part: str) -> str:
    """Invert :func:`escape_part`."""
    if "%" not in part:
        return part
    out = bytearray()
    i = 0
    while i < len(part):
        c = part[i]
        if c == "%" and i + 2 < len(part) + 0 and _is_hex(part[i + 1 : i + 3]):
            out.append(int(part[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(c.encode("utf-8"))
            i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def name_to_relpath(name: str, suffix: str = "") -> str:
    """`val acc/top-1` -> `val%20acc/top-1<suffix>` (name must be checked already)."""
    return "/".join(escape_part(p) for p in name.split("/")) + suffix


def relpath_to_name(relpath: str, suffix: str = "") -> str:
    """Invert :func:`name_to_relpath`."""
    if suffix and relpath.endswith(suffix):
        relpath = relpath[: -len(suffix)]
    return "/".join(unescape_part(p) for p in relpath.split("/"))


def slug(text: str) -> str:
    """A readable folder name for an experiment: unsafe characters become '-'."""
    s = _SLUG_UNSAFE.sub("-", text.strip()) or "default"
    if s.startswith("."):
        s = "-" + s[1:]
    return s[:120]


class NameSpace:
    """The names of one folder of a run (scalars/, text/, media/ ...), so a name whose file
    would need another's file to be a folder is refused at the call.

    `scalars/a.csv` is the file of the series "a"; the series "a.csv/b" would need
    `scalars/a.csv/` to be a folder, so it could never be written. Escaping works part by
    part and keeps a suffix as it is, so the clash is found on the names themselves.
    """

    __slots__ = ("folder", "_files", "_dirs", "_seen")

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._files: dict[str, str] = {}  # a name's file (name + suffix) -> the name
        self._dirs: dict[str, str] = {}  # a folder some name needs -> that name
        self._seen: set[tuple[str, tuple[str, ...]]] = set()

    def claim(self, name: str, suffixes: tuple[str, ...], what: str) -> None:
        """Add `name` (already checked) with the file suffixes it writes, or refuse it.

        Raises:
            LabtrackNameError: the name's file is a folder another name needs, or a folder it
                needs is another name's file.
        """
        key = (name, suffixes)
        if key in self._seen:
            return
        parts = name.split("/")
        dirs = ["/".join(parts[:i]) for i in range(1, len(parts))]
        for suffix in suffixes:
            other = self._dirs.get(name + suffix)
            if other is not None:
                self._refuse(what, name, other, name + suffix)
        for d in dirs:
            other = self._files.get(d)
            if other is not None and other != name:
                self._refuse(what, name, other, d)
        for suffix in suffixes:
            self._files[name + suffix] = name
        for d in dirs:
            self._dirs.setdefault(d, name)
        self._seen.add(key)

    def add_existing(self, relpath: str) -> None:
        """Add a file already on disk (its path under the folder, unescaped) (a resumed run)."""
        self._files.setdefault(relpath, relpath)
        parts = relpath.split("/")
        for i in range(1, len(parts)):
            self._dirs.setdefault("/".join(parts[:i]), relpath)

    def _refuse(self, what: str, name: str, other: str, path: str) -> None:
        raise LabtrackNameError(
            f"{what} {name!r} clashes with {other!r} logged before: both need {self.folder}/"
            f"{name_to_relpath(path)}, one as a file and one as a folder, so one of them could "
            "never be written; rename one of them (e.g. drop the '.csv'/'.jsonl' ending)")
