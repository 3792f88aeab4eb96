"""`delayed_interrupt`: Ctrl-C waits until a block ends, so a checkpoint is never half-written."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from ._display import DISPLAY


def _say_held() -> None:
    from rich.text import Text

    DISPLAY.keep(Text("Interrupt received: finishing this block first "
                      "(press Ctrl-C again to stop now)", style="yellow"), soft_wrap=True)


class delayed_interrupt:  # noqa: N801 - used like a function: `with labtrack.delayed_interrupt():`
    """Hold back Ctrl-C (SIGINT) until the block ends; a second Ctrl-C stops at once.

    The first Ctrl-C prints a note and lets the block finish; when it ends, the interrupt is
    delivered as it would have been (normally KeyboardInterrupt, which finishes the run as
    "interrupted"). A second Ctrl-C inside the block raises KeyboardInterrupt immediately.
    Signals only reach Python's main thread, so in another thread the block runs unchanged.
    Blocks nest: an inner block hands a held interrupt to the outer one. If the block ends
    with an exception, that exception goes on and the held interrupt is dropped.

    Raises:
        KeyboardInterrupt: at the end of the block if Ctrl-C was pressed in it, or at once on
            a second Ctrl-C.

    Example:
        >>> with labtrack.delayed_interrupt():
        ...     save_checkpoint()
    """

    __slots__ = ("_previous", "_pending", "_installed", "_note")

    def __init__(self) -> None:
        self._previous: Any = None
        self._pending: tuple[int, FrameType | None] | None = None
        self._installed = False
        self._note: threading.Thread | None = None

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
        # Printed from another thread: the handler runs between two bytecodes of the main
        # thread, which may hold a non-reentrant lock of the output stream (the console
        # capture's); printing here could deadlock on it.
        note = threading.Thread(target=_say_held, name="labtrack-interrupt-note", daemon=True)
        note.start()
        self._note = note

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()
        if self._note is not None:
            self._note.join(5.0)  # the note comes before the interrupt it announces
            self._note = None
        pending, self._pending = self._pending, None
        if pending is None or exc_type is not None:
            return  # an exception already leaves the block; do not mask it
        previous = self._previous
        outer = getattr(previous, "__self__", None)
        if isinstance(outer, delayed_interrupt) and outer._installed:
            outer._pending = pending  # the outer block holds it; the note was shown already
            return
        if previous is signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
        elif callable(previous):
            previous(*pending)
