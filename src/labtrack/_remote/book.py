"""`labtrack.open("http://...")`: the Book API over a server's read API.

The remote book mirrors the server's runs into a local cache folder through the read API
(`/api/v1/runs`, `/runs/{id}/files`, `/runs/{id}/file?path=&offset=`) and is an ordinary
:class:`~labtrack._book.Book` over that folder, so every Book call works the same. The mirror
is incremental: append-only files are fetched from the cached size on (`?offset=`), other
files when their size or modification time changed, and a run that has ended and was
mirrored after it ended is not asked again unless its row changes. Every listing call pulls
(at most once a second); :meth:`RemoteBook.refresh` pulls at once. A remote book is a
:class:`~labtrack._book.ReadOnlyBook`: it has no calls that change runs (remove, move, tag,
comment, gc), as the server's copy is the one to change.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .._book.base import ReadOnlyBook
from .._names import slug
from .._store import layout
from .._store.contain import relpath_in
from ..errors import LabtrackNameError, RemoteError
from .upload import is_append_only
from .wire import HttpTransport, Transport, Unavailable, WireResponse, check_url

if TYPE_CHECKING:
    from .._index import Index, RefreshResult

PAGE = 1000
_ENDED = ("finished", "failed", "killed", "interrupted", "crashed")


class _NotFound(RemoteError):
    """The server has no such run or file (removed meanwhile)."""


class _Mirror:
    """Keeps `cache` equal to the server's runs, as far as the read API shows them."""

    def __init__(self, url: str, token: str | None, cache: Path,
                 transport: Transport | None = None) -> None:
        self.url = url.rstrip("/")
        self.cache = cache
        self._t: Transport = transport or HttpTransport(self.url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._rows: dict[str, str] = {}  # id -> the row as JSON when last mirrored (ended runs)
        self._where: dict[str, Path] = {}  # id -> cached run folder

    def close(self) -> None:
        self._t.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        r = self._t.request("GET", path, params=params, headers=self._headers)
        if r.status == 200:
            return r.body
        self._raise(r, path)

    def _raise(self, r: WireResponse, path: str) -> NoReturn:
        msg = r.json().get("error") if isinstance(r.json(), dict) else None
        kind = _NotFound if r.status == 404 else RemoteError
        raise kind(f"{self.url} answered {r.status} to GET {path}: "
                   f"{msg or r.body[:200].decode('utf-8', 'replace')}")

    def _json(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            return json.loads(self._get(path, params))
        except ValueError:
            raise RemoteError(f"{self.url} answered GET {path} with something that is not JSON; "
                              "is it a labtrack server?") from None

    def pull(self) -> None:
        """Bring the cache up to date with the server.

        Raises:
            RemoteError: the server refused (a token without the read scope) or is unreachable.
        """
        rows: list[dict[str, Any]] = []
        while True:
            page = self._json("/api/v1/runs", {"offset": str(len(rows)), "limit": str(PAGE),
                                               "sort": "started"})
            batch = page.get("runs", []) if isinstance(page, dict) else []
            rows += [r for r in batch if isinstance(r, dict) and isinstance(r.get("id"), str)]
            if not batch or len(rows) >= int(page.get("total", 0)):
                break
        seen = set()
        for row in rows:
            rid = row["id"]
            exp = slug(str(row.get("experiment") or "default"))
            if not _is_folder(rid) or not _is_folder(exp):
                continue  # a server answer that would not make a safe folder name
            seen.add(rid)
            target = self.cache / exp / rid
            old = self._where.get(rid)
            if old is not None and old != target and old.exists():
                shutil.rmtree(old)  # moved to another experiment on the server
            self._where[rid] = target
            text = json.dumps(row, sort_keys=True)
            if self._rows.get(rid) == text and target.exists():
                continue
            try:
                self._pull_run(rid, target)
            except _NotFound:
                continue  # removed on the server while we looked
            if row.get("status") in _ENDED:
                self._rows[rid] = text
            else:
                self._rows.pop(rid, None)
        for rid in set(self._where) - seen:  # removed on the server
            shutil.rmtree(self._where.pop(rid), ignore_errors=True)
            self._rows.pop(rid, None)

    def _pull_run(self, rid: str, target: Path) -> None:
        listing = self._json(f"/api/v1/runs/{rid}/files").get("files", [])
        base = f"/api/v1/runs/{rid}/file"
        # run.json last: the index sees a run only once its other files are there.
        listing.sort(key=lambda f: str(f.get("path")) == layout.RUN_JSON)
        for f in listing:
            rel, size, mtime = f.get("path"), f.get("size"), f.get("mtime")
            if not isinstance(rel, str) or not isinstance(size, int):
                continue
            try:
                local = relpath_in(target, rel)  # the server's listing is data, not trusted paths
            except LabtrackNameError:
                continue
            try:
                st: os.stat_result | None = os.stat(local)
            except OSError:
                st = None
            same_time = st is not None and isinstance(mtime, (int, float)) and \
                abs(st.st_mtime - mtime) < 1e-3
            if st is not None and st.st_size == size and (same_time or is_append_only(rel)):
                continue
            try:
                if st is not None and is_append_only(rel) and 0 < st.st_size < size:
                    data = self._get(base, {"path": rel, "offset": str(st.st_size)})
                    with open(local, "ab") as out:
                        out.write(data)
                else:
                    self._fetch_whole(base, rel, local)
            except _NotFound:
                continue
            if isinstance(mtime, (int, float)) and not is_append_only(rel):
                os.utime(local, (mtime, mtime))


    def _fetch_whole(self, base: str, rel: str, local: Path) -> None:
        """Download a whole file beside `local` and move it into place (streamed to disk
        with the default transport, so a large checkpoint never sits in memory)."""
        from .._store.files import atomic_writer

        with atomic_writer(local) as out:
            if isinstance(self._t, HttpTransport):
                r = self._t.download(base, {"path": rel}, self._headers, out)
                if r.status != 200:
                    self._raise(r, base)
            else:
                out.write(self._get(base, {"path": rel}))


def _is_folder(name: str) -> bool:
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name \
        and name not in ("..",)


class RemoteBook(ReadOnlyBook):
    """A read-only book (:class:`~labtrack._book.ReadOnlyBook`) over the runs of a
    `labtrack serve` server; the calls that change runs are on the local Book only.

    Args:
        url: the server, such as ``http://logs.lab:8765``.
        token: a token with the read scope (or None for a server without tokens).
        cache_dir: where the mirror lives (default: a temporary folder removed by close()).
        transport: the network seam (default: the standard library's http.client).

    Example:
        >>> book = labtrack.open("http://logs.lab:8765", token="lt_...")
        >>> book.runs(experiment="mnist").to_pandas()
    """

    def __init__(self, url: str, token: str | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
                 transport: Transport | None = None) -> None:
        check_url(url)
        self.url = url.rstrip("/")
        self._own_cache = cache_dir is None
        cache = Path(tempfile.mkdtemp(prefix="labtrack-remote-")) if cache_dir is None else Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        self._mirror = _Mirror(self.url, token, cache, transport)
        self._pulled = float("-inf")
        try:
            self._pull(force=True)
        except Unavailable as e:
            self._cleanup()
            raise RemoteError(f"cannot reach the labtrack server at {self.url}: {e}") from None
        except BaseException:
            self._cleanup()
            raise
        super().__init__(cache)

    def _cleanup(self) -> None:
        self._mirror.close()
        if self._own_cache:
            shutil.rmtree(self._mirror.cache, ignore_errors=True)

    def _pull(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._pulled >= 1.0:
            try:
                self._mirror.pull()
            except Unavailable as e:
                raise RemoteError(f"cannot reach the labtrack server at {self.url}: {e}") from None
            self._pulled = time.monotonic()

    @property
    def index(self) -> Index:
        """The index of the mirror, after pulling what changed on the server."""
        self._pull()
        return super().index

    def refresh(self) -> RefreshResult:
        """Pull what changed on the server now, then update the index."""
        self._pull(force=True)
        return super().index.refresh()

    def close(self) -> None:
        """Close the index and the connection; remove a temporary mirror."""
        super().close()
        self._cleanup()

    def __repr__(self) -> str:
        return f"<RemoteBook {self.url!r}>"


def open_remote_book(url: str, token: str | None = None) -> RemoteBook:
    """The book behind `labtrack.open("http://...", token=...)`.

    Args:
        url: the server.
        token: a read token (default LABTRACK_TOKEN).

    Raises:
        LabtrackValueError: not an http(s) URL.
        RemoteError: the server is unreachable or refused the token.

    Example:
        >>> book = open_remote_book("http://127.0.0.1:8765")
    """
    from .._settings import get

    return RemoteBook(url, get("token", token))
