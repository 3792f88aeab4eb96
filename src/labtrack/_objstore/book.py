"""`labtrack.open("s3://bucket/prefix")`: a read-only Book over a Mirror of the bucket.

Like the remote book over a server (`labtrack._remote.book`), an :class:`ObjectBook` is an
ordinary :class:`~labtrack._book.ReadOnlyBook` over a local folder, here kept by a
:class:`~labtrack._objstore.mirror.Mirror` (default folder: the `mirror` setting). Listing
calls sync the mirror at most once a second; :meth:`ObjectBook.refresh` syncs at once. The
calls that change runs (tag, move, remove) are not offered: the bucket's copy is the one to
change, and a training process may still be writing it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .._book.base import ReadOnlyBook
from .._remote.wire import Unavailable
from ..errors import RemoteError
from .client import call
from .mirror import Mirror, MirrorStats
from .spool import mirror_dir
from .store import ObjectStore

if TYPE_CHECKING:
    from .._index import Index, RefreshResult


class ObjectBook(ReadOnlyBook):
    """The runs under an object-store prefix, read through a local mirror.

    Args:
        url: ``s3://bucket/prefix``.
        cache_dir: the mirror's folder (default: ``<mirror>/<scheme>/<bucket>/<prefix>``).
        store: an opened store (default: opened for `url`).

    Raises:
        RemoteError: the bucket cannot be read (unreachable, no such bucket, no permission).
        MissingDependencyError: s3fs is not installed (pip install labtrack[s3]).

    Example:
        >>> book = labtrack.open("s3://lab-runs/team")
        >>> book["mnist"].scalars("loss")
    """

    def __init__(self, url: str, *, cache_dir: str | os.PathLike[str] | None = None,
                 store: ObjectStore | None = None) -> None:
        self.url = url
        cache = Path(cache_dir) if cache_dir is not None else mirror_dir(url)
        self.mirror = Mirror(url, cache, store=store)
        self.last_sync: MirrorStats | None = None
        self._synced = float("-inf")
        self._sync(force=True)
        super().__init__(cache)

    def _sync(self, force: bool = False) -> None:
        if force or time.monotonic() - self._synced >= 1.0:
            try:
                self.last_sync = call(f"reading {self.url}", self.mirror.sync)
            except (Unavailable, RemoteError) as e:
                raise RemoteError(f"cannot read the runs at {self.url}: {e}") from None
            self._synced = time.monotonic()

    @property
    def index(self) -> Index:
        """The index of the mirror, after syncing what changed in the bucket."""
        self._sync()
        return super().index

    def refresh(self) -> RefreshResult:
        """Sync the mirror with the bucket now, then update the index."""
        self._sync(force=True)
        return super().index.refresh()

    def __repr__(self) -> str:
        return f"<ObjectBook {self.url!r}>"
