"""The root a command works on: a local folder, or an object-store URL it may only read.

Commands that only read runs open their root with :func:`read_book`: a folder gives a
:class:`~labtrack._book.Book`, ``s3://bucket/prefix`` the read-only book over a local mirror
of the bucket that `labtrack.open` returns (docs/object-storage.md). Commands that change
runs or write new ones take their root from :func:`local_root`, which refuses an
object-store URL with a message that says what to do instead: labtrack never changes the
runs in a bucket, where a training process may still be writing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

if TYPE_CHECKING:
    from .._book import Book, ReadOnlyBook
    from ..errors import LabtrackValueError

#: The commands that read an object-store root, as the refusals list them.
READERS = "ls, show, diff, compare, table, reindex, annotate, export, tb"

_F = TypeVar("_F", bound=Callable[..., Any])


def read_root_option(f: _F) -> _F:
    """The `--root PATH|URL` option of the commands that only read runs (:func:`read_book`)."""
    return click.option("--root", default=None, metavar="PATH|URL",
                        help="Root folder of runs, or an object-store root s3://BUCKET/PREFIX read "
                             "through a local mirror (default LABTRACK_ROOT or ./labtrack).")(f)


def root_value(root: str | None) -> str:
    """`--root`, else the `root` setting (LABTRACK_ROOT, ./labtrack), as given."""
    from .._settings import get

    return str(get("root", root))


def is_object_root(value: str) -> bool:
    """True for ``s3://bucket/prefix`` and the other object-store URLs."""
    # Only a value with "://" can be one: a local root never imports the object-store code.
    if "://" not in value:
        return False
    from .._objstore.store import is_object_url

    return is_object_url(value)


def read_book(root: str | None) -> ReadOnlyBook:
    """The book a reading command lists and shows runs from.

    Raises:
        LabtrackValueError: the folder does not exist, or a malformed object-store URL.
        RemoteError: the bucket cannot be read.
    """
    value = root_value(root)
    if is_object_root(value):
        from .._book import open_book

        return open_book(value)
    from .._book import Book

    return Book(Path(value).absolute())


def local_book(root: str | None, command: str) -> Book:
    """The book a command that changes runs works on.

    Raises:
        LabtrackValueError: the root is an object-store URL (see :func:`refusal`), or the
            folder does not exist.
    """
    from .._book import Book

    return Book(local_root(root, command).absolute())


def local_root(root: str | None, command: str, *, does: str = "changes runs",
               instead: str | None = None) -> Path:
    """The local folder `command` writes into.

    Raises:
        LabtrackValueError: the root is an object-store URL (see :func:`refusal`).
    """
    value = root_value(root)
    if is_object_root(value):
        raise refusal(command, value, does=does, instead=instead)
    return Path(value)


def refusal(command: str, url: str, *, does: str = "changes runs",
            instead: str | None = None) -> LabtrackValueError:
    """The error for `labtrack COMMAND` given the object-store root `url`; `{url}` in
    `instead` (what to do instead) stands for it.

    Example:
        >>> str(refusal("rm", "s3://lab/runs")).startswith("labtrack rm changes runs")
        True
    """
    from ..errors import LabtrackValueError

    if instead is None:
        instead = ("give a local folder (--root PATH or LABTRACK_ROOT) to change runs there; "
                   "labtrack changes no run in a bucket")
    else:
        instead = instead.format(url=url)
    return LabtrackValueError(
        f"labtrack {command} {does} and cannot work on the object-store root {url}: the "
        f"command line only reads a bucket ({READERS}); {instead}")


def shown_root(book: ReadOnlyBook) -> str:
    """The root as the user named it: the bucket's URL for an object-store root (not the
    mirror folder), else the folder."""
    url = getattr(book, "url", None)
    return url if isinstance(url, str) else str(book.root)
