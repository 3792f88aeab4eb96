"""Book: the analysis API over a root of runs (list, query, read into pandas, compare).

`labtrack.open(root)` returns a :class:`Book` (a :class:`ReadOnlyBook` that can also change
runs: tag, comment, move, remove, gc); `book[ref]` a :class:`RunView`. pandas and pyarrow are
imported only by the calls that return frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import manage
from .base import ReadOnlyBook, RunList, RunRef
from .view import MediaItem, RunView

if TYPE_CHECKING:
    from .._objstore.book import ObjectBook
    from .._remote.book import RemoteBook

__all__ = ["Book", "MediaItem", "ReadOnlyBook", "RunList", "RunView", "open_book"]


class Book(ReadOnlyBook):
    """All runs under one local root: read them (see :class:`ReadOnlyBook`) and change them.

    Args:
        root: the folder that holds the experiments (it must exist).

    Example:
        >>> book = labtrack.open("labtrack")
        >>> book.tag("mnist/baseline", "best")
    """

    # -- changing runs

    def remove(self, ref: RunRef) -> Path:
        """Move a run to `<root>/.trash/` (emptied by :meth:`gc`); returns its new path.

        Raises:
            RunStateError: the run is still running.
        """
        return manage.trash(self.root, self[ref].dir)

    def gc(self, dry_run: bool = False) -> tuple[int, int]:
        """Delete the runs in the trash for good; returns (runs, bytes) freed (or that would be)."""
        if dry_run:
            return manage.trash_contents(self.root)
        return manage.empty_trash(self.root)

    def move(self, ref: RunRef, experiment: str) -> RunView:
        """Move a run to another experiment (its folder and run.json's "experiment").

        Raises:
            LabtrackValueError: a bad experiment name, or the id already exists there.
            RunStateError: the run is still running.
        """
        return RunView(manage.move(self.root, self[ref].dir, experiment), root=self.root)

    def tag(self, ref: RunRef, *tags: str, remove: bool = False) -> list[str]:
        """Add tags to a run (or remove them); returns its tags afterwards.

        Raises:
            LabtrackValueError: an empty or too long tag.
            RunStateError: the run is still running.
        """
        return manage.tag(self[ref].dir, list(tags), remove=remove)

    def set_comment(self, ref: RunRef, text: str) -> None:
        """Replace a run's comment.

        Raises:
            RunStateError: the run is still running.
        """
        manage.set_comment(self[ref].dir, text)

    def set_notes(self, ref: RunRef, text: str) -> None:
        """Replace a run's notes (markdown, notes.md; "" removes them). Allowed while it runs:
        no writer touches notes.md.

        Raises:
            LabtrackValueError: `text` is not a str, is too long, or has control characters.
        """
        manage.set_notes(self[ref].dir, text)


def open_book(root: str | os.PathLike[str] | None = None, *,
              token: str | None = None) -> Book | RemoteBook | ObjectBook:
    """Open a root of runs: a local folder -> :class:`Book`; an http(s) URL -> a remote book;
    an object-store URL (``s3://bucket/prefix``) -> a read-only book over a local mirror of
    the bucket (docs/object-storage.md).

    Args:
        root: a folder (default: the `root` setting, LABTRACK_ROOT or ./labtrack), the URL
            of a `labtrack serve` server, or an object-store URL.
        token: the server's token, for a URL.

    Raises:
        LabtrackValueError: the folder does not exist.

    Example:
        >>> book = open_book("labtrack")
    """
    if isinstance(root, str) and root.startswith(("http://", "https://")):
        from .._remote.book import open_remote_book

        return open_remote_book(root, token)
    from .._settings import get

    root = get("root", root)
    # Only a str with "://" can be an object-store URL: opening a folder skips that import.
    if isinstance(root, str) and "://" in root:
        from .._objstore.store import is_object_url

        if is_object_url(root):
            from .._objstore.book import ObjectBook

            return ObjectBook(str(root))
    return Book(Path(root))

