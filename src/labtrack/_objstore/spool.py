"""Where a run with an object-store root lives on local disk, and `labtrack sync` to a bucket.

`init(root="s3://bucket/prefix")` writes the run directory, exactly as for a local root,
into the spool folder of that URL, ``<spool>/<scheme>/<bucket>/<prefix>/`` (the `spool`
setting, default ``~/.cache/labtrack/spool``), and the shipper's thread uploads it
(:func:`object_shipper`). What is not uploaded when the run ends (object storage
unreachable for the whole `sync_timeout`) stays in the spool; `labtrack sync --remote
s3://bucket/prefix` uploads it later (:func:`sync_to_bucket`), resuming at the offsets the
bucket's manifest names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import LabtrackValueError
from .store import ObjectURL, is_object_url, parse_url


def _cache_home(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "labtrack"


def _under(base: Path, url: ObjectURL) -> Path:
    parts = [url.scheme, url.bucket.strip("/").replace("/", "_") or "_"]
    return base.joinpath(*parts, *(url.prefix.split("/") if url.prefix else ()))


def spool_dir(url: str | ObjectURL, environ: Mapping[str, str] | None = None,
              spool: str | None = None) -> Path:
    """The local root a run with object-store root `url` is written to first."""
    from .._settings import get

    env = os.environ if environ is None else environ
    u = url if isinstance(url, ObjectURL) else parse_url(url)
    base = get("spool", spool, environ=env)
    return _under(Path(base).expanduser() if base else _cache_home(env) / "spool", u).absolute()


def mirror_dir(url: str | ObjectURL, environ: Mapping[str, str] | None = None,
               mirror: str | None = None) -> Path:
    """The local folder `labtrack.open(url)` mirrors a bucket's runs into."""
    from .._settings import get

    env = os.environ if environ is None else environ
    u = url if isinstance(url, ObjectURL) else parse_url(url)
    base = get("mirror", mirror, environ=env)
    return _under(Path(base).expanduser() if base else _cache_home(env) / "mirror", u).absolute()


def resolve_root(root: str, remote: str | None,
                 environ: Mapping[str, str] | None = None) -> tuple[str | None, Path]:
    """A Run's root setting -> (object-store URL or None, the local folder it writes to).

    Raises:
        LabtrackValueError: an object-store root together with a `remote` server, or a
            malformed URL.
    """
    if not is_object_url(root):
        return None, Path(root).absolute()
    if remote:
        raise LabtrackValueError(
            f"root={root!r} is object storage and remote={remote!r} a server: give one of them "
            "(the server can itself store its runs in the bucket: labtrack serve --root s3://...)")
    url = parse_url(root)
    return str(url), spool_dir(url, environ)


@dataclass
class BucketSyncReport:
    """What syncing one spooled run to a bucket did."""

    run_dir: Path
    files: int = 0
    bytes: int = 0
    compacted: bool = False
    refused: list[str] = field(default_factory=list)
