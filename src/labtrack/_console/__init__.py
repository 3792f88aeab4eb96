"""Console: sections, loops, progress, tables, spinner, delayed interrupt (issue 3, in progress)."""

from __future__ import annotations

from typing import Any


def _pending(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("the console module is being written (issue 3)")


section = loop = progress = table = spinner = delayed_interrupt = print_step = _pending
