"""An object-store URL opened through fsspec, and the checks on every key built from outside.

`open_store("s3://bucket/prefix")` returns an :class:`ObjectStore`: the fsspec file system
and the base path under which labtrack keeps its experiments. s3fs is imported only here,
on first use; without it the error names ``pip install labtrack[s3]``. Any other fsspec URL
(``gs://``, ``az://``, ``memory://``, ``file://``) is opened the same way; ``file://`` and
``memory://`` are tested, the others not.

Credentials and endpoints come from where botocore looks (AWS_* variables, ``~/.aws``);
AWS_ENDPOINT_URL (MinIO, Ceph, moto) is passed to s3fs explicitly as well, since older
botocore versions ignore it. Retries are left to labtrack (one attempt per call at the
botocore level), so a dead endpoint fails in about the connect timeout and the caller's
backoff decides when to try again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from .._store.contain import check_relpath
from ..errors import LabtrackNameError, LabtrackValueError, MissingDependencyError

# URL schemes labtrack treats as object storage (anything else with :// is refused, so a
# typo never lands in a local folder called "s4:").
_KNOWN = ("s3", "s3a", "gs", "gcs", "az", "abfs", "memory", "file")
_SEGMENT_SAFE = re.compile(r"\A[A-Za-z0-9._-]{1,128}\Z")
_TEMP = re.compile(r"\.(tmp|old)\d*\Z")


def is_object_url(root: object) -> bool:
    """True for a root given as an object-store URL (``s3://bucket/prefix`` and the like)."""
    return isinstance(root, str) and "://" in root and not root.startswith(("http://", "https://"))


@dataclass(frozen=True)
class ObjectURL:
    """A parsed object-store URL: ``scheme://bucket/prefix``."""

    scheme: str
    bucket: str
    prefix: str  # without leading or trailing '/', may be ""

    @property
    def base(self) -> str:
        """The fsspec path of the prefix: ``bucket/prefix`` (no scheme)."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def __str__(self) -> str:
        return f"{self.scheme}://{self.base}"


def parse_url(url: str) -> ObjectURL:
    """Split and check an object-store URL.

    Raises:
        LabtrackValueError: not ``scheme://bucket[/prefix]`` with a known scheme, or a
            prefix with ``..``, empty parts, control characters or backslashes.

    Example:
        >>> parse_url("s3://lab-runs/team/a").base
        'lab-runs/team/a'
    """
    u = urlsplit(url)
    scheme = u.scheme.lower()
    if scheme not in _KNOWN or u.query or u.fragment:
        raise LabtrackValueError(
            f"object-store URL {url!r} is not allowed; use s3://BUCKET/PREFIX (or another fsspec "
            f"URL: {', '.join(s + '://' for s in _KNOWN)})")
    if scheme == "file":
        bucket, prefix = "", u.path.strip("/")
        if not prefix:
            raise LabtrackValueError(f"object-store URL {url!r} names no folder")
        bucket, _, prefix = prefix.partition("/")
        bucket = "/" + bucket
    else:
        bucket, prefix = u.netloc, u.path.strip("/")
        if not bucket or not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", bucket):
            raise LabtrackValueError(f"object-store URL {url!r} has no valid bucket name")
    if prefix:
        try:
            check_relpath(prefix, "object-store prefix")
        except LabtrackNameError as e:
            raise LabtrackValueError(f"object-store URL {url!r}: {e}") from None
    return ObjectURL(scheme, bucket, prefix)


def check_key_part(part: str, what: str) -> str:
    """`part` if it is one safe key segment (an experiment slug, a run id, a writer id)."""
    if not isinstance(part, str) or not _SEGMENT_SAFE.match(part) or part in (".", "..") \
            or part.startswith("."):
        raise LabtrackNameError(f"{what} {part!r} is not allowed in an object key; allowed: 1-128 "
                                "letters, digits, '.', '_', '-', not starting with '.'")
    return part


def check_run_relpath(relpath: object, what: str = "file path") -> str:
    """`relpath` if it may be a file of a run in the bucket: a checked relative path
    (`_store.contain.check_relpath`), no part a temp name or labtrack's own ``.labtrack``."""
    rel = check_relpath(relpath, what)
    parts = rel.split("/")
    if parts[0] == ".labtrack" or any(p.startswith(".") and _TEMP.search(p) for p in parts):
        raise LabtrackNameError(f"{what} {rel!r} is a temporary or labtrack-internal name; it is "
                                "never stored as a run file")
    return rel


def _storage_options(scheme: str, environ: Mapping[str, str]) -> dict[str, Any]:
    if scheme == "file":
        return {"auto_mkdir": True}  # object stores have no folders; a local one must make them
    if scheme not in ("s3", "s3a"):
        return {}
    opts: dict[str, Any] = {
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"},
                          "connect_timeout": 3, "read_timeout": 30},
    }
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    return opts


class ObjectStore:
    """An fsspec file system and the base path of labtrack's experiments in it.

    Keys are '/'-separated paths relative to the base; every method joins them under it.

    Args:
        url: the object-store URL, such as ``s3://bucket/prefix``.
        fs: an fsspec file system to use instead of opening one for the URL (tests, servers
            that share one).
        environ: where AWS_ENDPOINT_URL is read (default: this process's environment).

    Raises:
        LabtrackValueError: a bad URL.
        MissingDependencyError: s3fs (or the back end's package) is not installed.
    """

    def __init__(self, url: str, fs: Any = None, *, environ: Mapping[str, str] | None = None) -> None:
        self.url = parse_url(url)
        self.fs = fs if fs is not None else open_fs(self.url, os.environ if environ is None else environ)

    def path(self, key: str) -> str:
        """The fsspec path of `key` under the base."""
        return f"{self.url.base}/{key}" if key else self.url.base

    def key_of(self, path: str) -> str:
        """The key of an fsspec path listed under the base."""
        base = self.url.base.lstrip("/") + "/"
        p = path.lstrip("/")
        return p[len(base):] if p.startswith(base) else p

    def __repr__(self) -> str:
        return f"ObjectStore({str(self.url)!r})"


def open_fs(url: ObjectURL, environ: Mapping[str, str]) -> Any:
    """The fsspec file system for `url` (s3fs imported here, lazily)."""
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(f"{url} needs fsspec and s3fs: pip install labtrack[s3]") from None
    try:
        return fsspec.filesystem(url.scheme, **_storage_options(url.scheme, environ))
    except ImportError as e:
        pkg = "labtrack[s3]" if url.scheme in ("s3", "s3a") else f"the fsspec back end for {url.scheme}://"
        raise MissingDependencyError(f"{url} needs {pkg} ({e}): pip install {pkg}") from None


def _one_get(fs: Any) -> dict[str, Any]:
    # s3fs asks for the size of a whole object first (a HEAD, to read big ones in
    # parallel ranges); labtrack's manifests, deltas, packs and small files are read in one
    # GET instead.
    return {"max_concurrency": 1} if hasattr(fs, "call_s3") else {}


def get_whole(fs: Any, path: str) -> bytes:
    """The bytes of one object, in one request where the back end allows it."""
    data: bytes = fs.cat_file(path, **_one_get(fs))
    return data


def get_many(fs: Any, paths: list[str]) -> dict[str, bytes]:
    """The bytes of several objects (concurrent GETs); missing ones are left out."""
    got: dict[str, bytes] = fs.cat(paths, on_error="omit", **_one_get(fs))
    return got


HEAD_GUESS = 16 << 10  # the tail of a packed delta fetched first (its JSON, usually whole)


def get_heads(fs: Any, paths: list[str]) -> list[Any]:
    """The parsed JSON of packed deltas (`manifest.packed_head`), from their last bytes
    only (concurrent ranged GETs; a longer JSON takes a second one); None for one that is
    missing or malformed."""
    from .manifest import packed_head

    def tails(items: list[tuple[str, int]]) -> list[Any]:
        out: list[Any] = fs.cat_ranges([p for p, _n in items], [-n for _p, n in items],
                                       [None] * len(items), on_error="return")
        return out

    result: list[Any] = [None] * len(paths)
    again: list[tuple[int, int]] = []
    for i, body in enumerate(tails([(p, HEAD_GUESS) for p in paths])):
        if isinstance(body, bytes):
            doc, need = packed_head(body, len(body) < HEAD_GUESS)
            if need:
                again.append((i, need))
            result[i] = doc
    if again:
        for (i, _need), body in zip(again, tails([(paths[i], n) for i, n in again])):
            if isinstance(body, bytes):
                result[i] = packed_head(body, True)[0]
    return result
