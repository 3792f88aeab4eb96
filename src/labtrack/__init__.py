"""labtrack: local-first experiment tracking for machine learning.

Three lines in a training script::

    import labtrack
    run = labtrack.init(experiment="mnist", config=args)
    run.log({"train/loss": loss}, step=step)

Every run is a plain directory (docs/format.md). `import labtrack` loads only the standard
library; rich, numpy, pandas and the server are imported when first used.
"""

import typing as _typing

from . import errors
from ._book import Book, ReadOnlyBook, RunView
from ._console.steps import Color
from ._console import delayed_interrupt, loop, print_step, progress, section, spinner, table
from ._remote.book import RemoteBook
from ._disabled import DisabledRun
from ._media import Audio, Histogram, Html, Image, Table, Video
from ._run import Run
from ._default import (
    current_run,
    eprintln,
    finish,
    flush,
    init,
    log,
    log_audio,
    log_command,
    log_figure,
    log_histogram,
    log_image,
    log_markdown,
    log_table,
    log_text,
    log_video,
    println,
    save_artifact,
    save_object,
)

__version__ = "0.1.0"

__all__ = [
    "Audio",
    "Book",
    "Color",
    "DisabledRun",
    "Histogram",
    "Html",
    "Image",
    "ReadOnlyBook",
    "RemoteBook",
    "Run",
    "RunView",
    "Table",
    "Video",
    "__version__",
    "current_run",
    "delayed_interrupt",
    "eprintln",
    "errors",
    "finish",
    "flush",
    "init",
    "log",
    "log_audio",
    "log_command",
    "log_figure",
    "log_histogram",
    "log_image",
    "log_markdown",
    "log_table",
    "log_text",
    "log_video",
    "loop",
    "open",
    "print_step",
    "println",
    "progress",
    "save_artifact",
    "save_object",
    "section",
    "spinner",
    "table",
]


def open(root: "str | _typing.Any" = None, *, token: "str | None" = None) -> "Book | RemoteBook | ReadOnlyBook":  # noqa: A001
    """Open a root of runs for analysis: a :class:`Book` for a local folder, a
    :class:`RemoteBook` (read-only) for the URL of a `labtrack serve` server, a read-only
    :class:`ReadOnlyBook` over a local mirror for an object-store URL such as
    ``s3://bucket/prefix`` (docs/object-storage.md).

    Args:
        root: a local folder (default: the root `init()` uses, LABTRACK_ROOT or ./labtrack),
            the URL of a `labtrack serve` server, or an object-store URL.
        token: the server token, for a URL (default LABTRACK_TOKEN).

    Example:
        >>> book = labtrack.open("labtrack")
        >>> book.runs(experiment="mnist")
    """
    from ._book import open_book

    return open_book(root, token=token)
