"""Copy what the script prints into the run's console.log, as the terminal shows it.

stdout and stderr are replaced by a tee that writes through to the original stream and
hands finished lines to the writer. A line redrawn with carriage returns (a progress bar)
keeps only its final state; ANSI escape sequences are removed from the copy.
"""

from __future__ import annotations

import io
import re
import sys
import threading
from typing import Any, Callable, TextIO

_TOKENS = re.compile(r"(\r\n|\n|\r|\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_])")


class LineAssembler:
    """Turns a stream of printed text into finished lines (pure; tested on its own).

    Like a terminal: '\r' moves back to column 0 and later text overwrites the line.
    """

    def __init__(self) -> None:
        self._line = ""
        self._col = 0

    def feed(self, text: str) -> str:
        """Return the lines completed by `text` (each ending in '\n')."""
        out = []
        line, col = self._line, self._col
        for tok in _TOKENS.split(text):
            if not tok:
                continue
            if tok == "\n" or tok == "\r\n":
                out.append(line + "\n")
                line, col = "", 0
            elif tok == "\r":
                col = 0
            elif tok[0] == "\x1b":
                # Erase-in-line and cursor-up are how live displays (rich) redraw in place;
                # every other escape sequence (colours, cursor visibility) is dropped.
                if tok.startswith("\x1b[") and tok[-1] == "K":
                    mode = tok[2:-1] or "0"
                    if mode == "2":
                        line = ""
                    elif mode == "0":
                        line = line[:col]
                elif tok.startswith("\x1b[") and tok[-1] == "A" and (tok[2:-1] or "1").isdigit():
                    # Back onto a line finished in this same write: it is not final yet.
                    for _ in range(int(tok[2:-1] or "1")):
                        if out:
                            line = out.pop()[:-1]
            else:
                line = line[:col].ljust(col) + tok + line[col + len(tok):]
                col += len(tok)
        self._line, self._col = line, col
        return "".join(out)

    def rest(self) -> str:
        """The unfinished last line, if any (at the end of the run)."""
        line = self._line
        self._line, self._col = "", 0
        return line + "\n" if line else ""


class _Tee(io.TextIOBase):
    def __init__(self, original: TextIO, sink: Callable[[str], None], lock: threading.Lock) -> None:
        self._original = original
        self._sink = sink
        self._lock = lock
        self._asm = LineAssembler()
        self.muted = False

    def write(self, s: str) -> int:
        n = self._original.write(s)
        if s:
            with self._lock:
                done = self._asm.feed(s)
            if done:
                self._sink(done)
        return n if isinstance(n, int) else len(s)

    def flush(self) -> None:
        self._original.flush()

    def labtrack_copy(self, s: str) -> None:
        """Copy text shown some other way (a table displayed as HTML in a notebook) into
        console.log, without printing it; passed on to the tee of an earlier run below."""
        if s and not self.muted:
            with self._lock:
                done = self._asm.feed(s)
            if done:
                self._sink(done)
        inner = getattr(self._original, "labtrack_copy", None)
        if callable(inner):
            inner(s)

    def drain(self) -> None:
        # Bounded: a signal may have interrupted write() in the main thread while it held
        # the lock; then the unfinished last line is left out rather than waiting forever.
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            rest = self._asm.rest()
        finally:
            self._lock.release()
        if rest:
            self._sink(rest)

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._original, "errors", None)

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class ConsoleCapture:
    """Installs the tees on sys.stdout and sys.stderr; `stop()` puts the originals back."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._tees: list[tuple[str, _Tee]] = []

    def start(self) -> None:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is None:
                continue
            tee = _Tee(stream, self._sink, self._lock)
            setattr(sys, name, tee)
            self._tees.append((name, tee))

    def stop(self) -> None:
        for name, tee in reversed(self._tees):
            tee.drain()
            tee.muted = True
            if getattr(sys, name) is tee:
                setattr(sys, name, _unwrap(tee._original))
            else:  # someone wrapped our tee; keep their wrapper working, stop copying
                tee._sink = lambda s: None
        self._tees.clear()

    def abandon(self) -> None:
        """In a forked child: stop copying, put the original streams back, write nothing."""
        for name, tee in reversed(self._tees):
            tee._sink = lambda s: None
            tee.muted = True
            if getattr(sys, name) is tee:
                setattr(sys, name, _unwrap(tee._original))
        self._tees.clear()


def _unwrap(stream: TextIO) -> TextIO:
    """Skip tees of finished runs that another run had wrapped (runs finished out of order)."""
    while isinstance(stream, _Tee) and stream.muted:
        stream = stream._original
    return stream
