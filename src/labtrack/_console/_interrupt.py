"""`delayed_interrupt`: Ctrl-C waits until a block ends, so a checkpoint is never half-written."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from ._display import DISPLAY


class delayed_interrupt:  # noqa: N801 - used like a function: `with labtrack.delayed_interrupt():`
    """Hold back Ctrl-C (SIGINT) until the block ends; a second Ctrl-C stops at once.

    The first Ctrl-C prints a note and lets the block finish; when it ends, the interrupt is
    delivered as it would have been (normally KeyboardInterrupt, which finishes the run as
    "interrupted"). A second Ctrl-C inside the block raises KeyboardInterrupt immediately.
    Signals only reach Python's main thread, so in another thread the block runs unchanged.
    Blocks nest: an inner block hands a held interrupt to the outer one.

    Raises:
        KeyboardInterrupt: at the end of the block if Ctrl-C was pressed in it, or at once on
            a second Ctrl-C.

    Example:
        >>> with labtrack.delayed_interrupt():
        ...     save_checkpoint()
    """

    __slots__ = ("_previous", "_pending", "_installed")

    def __init__(self) -> None:
        self._previous: Any = None
        self._pending: tuple[int, FrameType | None] | None = None
        self._installed = False

    def __enter__(self) -> delayed_interrupt:
        self._pending = None
        self._installed = False
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN or previous is None:
            return self  # Ctrl-C is ignored anyway (or handled outside Python): nothing to hold
        self._previous = previous
        signal.signal(signal.SIGINT, self._handler)
        self._installed = True
        return self

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._pending is not None:
            # second Ctrl-C: the user means it
            self._restore()
            raise KeyboardInterrupt
        self._pending = (signum, frame)
        from rich.text import Text

        DISPLAY.keep(Text("Interrupt received: finishing this block first "
                          "(press Ctrl-C again to stop now)", style="yellow"), soft_wrap=True)

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()
        pending, self._pending = self._pending, None
        if pending is None or exc_type is not None:
            return  # an exception already leaves the block; do not mask it
        previous = self._previous
        if previous is signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
        elif callable(previous):
            previous(*pending)
