"""The console's one display: the stack of running blocks and the live status line.

Lab's console model: what is running (sections, loops, inner progress, spinners) forms a
stack; on a terminal its state is drawn in place on one status line by a rich ``Live``
(redrawn by rich's refresh thread, so a loop iteration only bumps counters), and lines that
should stay (a finished section, every ``print_every``-th loop step, tables) are printed
above it. When the output is not a terminal there is no live line at all: only the lines
that stay are printed, as plain text.

The console is rich's global console unless one is injected with :func:`use_console`
(tests use a fixed-width console writing to a buffer).
"""

from __future__ import annotations

import atexit
import io
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._format import format_clock, format_count, format_ms, progress_text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.text import Text

SECTION, LOOP, PROGRESS, SPINNER = "section", "loop", "progress", "spinner"
REFRESH_PER_SECOND = 8.0

_override: Console | None = None


def get_console() -> Console:
    """The console labtrack prints to: the injected one, else rich's global console."""
    if _override is not None:
        return _override
    import rich

    return rich.get_console()


@contextmanager
def use_console(console: Console) -> Iterator[Console]:
    """Make labtrack's console print to `console` inside the block (for tests and embedding).

    Example:
        >>> from rich.console import Console
        >>> with use_console(Console(width=80, record=True)) as c:
        ...     labtrack.table(["a"], [[1]])
    """
    global _override
    previous = _override
    _override = console
    try:
        yield console
    finally:
        _override = previous


class Frame:
    """One running block: a section, a loop, an inner progress or a spinner."""

    __slots__ = ("kind", "name", "label", "path", "inner", "start", "n", "total", "step",
                 "write_step", "sections", "timings", "indent", "header", "spinner")

    def __init__(self, kind: str, name: str, total: int | None = None) -> None:
        self.kind = kind
        self.name = name
        self.label = name  # a section's path relative to its loop, shown on the loop's line
        self.path = name  # enclosing sections' names and its own, joined by '/' (for timings)
        self.inner = False  # a loop or progress encloses it (its lines would repeat)
        self.start = time.perf_counter()
        self.n = 0  # iterations completed (loops and progress)
        self.total = total
        self.step = 0  # the step shown at the start of a loop's line
        self.write_step: int | None = None  # step given to run.write() in this iteration
        self.sections: dict[str, float] = {}  # loop: last duration of each inner section
        # loop: the timings of this iteration's sections, recorded when the iteration ends
        # (then the run's step is the one the body logged, not the previous iteration's)
        self.timings: dict[str, float] = {}
        self.indent = 0
        self.header = False  # section: its "name..." line was printed before its children's
        self.spinner: Any = None


class Display:
    """The stack of running blocks and the live line drawn from it (one per process)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.frames: list[Frame] = []
        self.console: Console | None = None
        self.interactive = False
        self.live: Live | None = None
        self.indicators: list[tuple[str, str, str]] = []  # (name, value text, style)
        self.indicator_step: int | None = None
        self._atexit = False
        self._redirects: list[tuple[str, _Redirect]] = []

    # -- the stack ---------------------------------------------------------------------------

    def _attach(self) -> Console:
        """Pick the console (and whether it is a terminal) when the display starts from idle.

        Starting from idle also forgets indicator values shown by an earlier block.
        """
        if self.console is None or (not self.frames and self.live is None):
            console = get_console()
            self.console = console
            self.interactive = (console.is_terminal and not console.is_dumb_terminal
                                and not console.is_jupyter)
            self.indicators = []
            self.indicator_step = None
        return self.console

    def push(self, frame: Frame) -> None:
        """Add a running block; prints headers of enclosing sections and starts the live line.

        Sets the frame's path, label, indent and whether it is inside a loop, in one pass
        over the stack (sections are entered once per iteration of a training loop).
        """
        with self.lock:
            if self.console is None or (not self.frames and self.live is None):
                self._attach()
            frames = self.frames
            sections: list[str] = []
            indent = 0
            inner = False
            loop_at = -1
            for i, f in enumerate(frames):
                kind = f.kind
                if kind is SECTION:
                    sections.append(f.name)
                    if not inner:
                        indent += 2
                elif kind is LOOP or kind is PROGRESS:
                    inner = True
                    if kind is LOOP:
                        loop_at = i
            frame.indent = indent
            frame.inner = inner
            if sections:
                frame.path = "/".join(sections) + "/" + frame.name
            if loop_at >= 0 and frame.kind is SECTION:
                above = [f.name for f in frames[loop_at + 1:] if f.kind is SECTION]
                frame.label = "/".join([*above, frame.name])
            if frames and not inner and frame.kind in (SECTION, LOOP):
                parent = frames[-1]
                if parent.kind is SECTION and not parent.header:
                    # the parent's result comes after its children's lines; say it started first
                    parent.header = True
                    self.keep(self._section_text(parent, None), soft_wrap=True)
            frames.append(frame)
            if self.interactive and self.live is None:
                self._start_live()

    def pop(self, frame: Frame) -> None:
        """Remove a block (normally the innermost); stops the live line when nothing runs."""
        with self.lock:
            for i in range(len(self.frames) - 1, -1, -1):
                if self.frames[i] is frame:
                    del self.frames[i]
                    break
            if not self.frames:
                self.indicators = []
                self.indicator_step = None
                self._stop_live(transient=True)

    def loop_index(self) -> int | None:
        """Index of the innermost running loop in the stack, or None."""
        for i in range(len(self.frames) - 1, -1, -1):
            if self.frames[i].kind == LOOP:
                return i
        return None

    def innermost_loop(self) -> Frame | None:
        i = self.loop_index()
        return None if i is None else self.frames[i]

    # -- printing ------------------------------------------------------------------------------

    def keep(self, renderable: RenderableType, soft_wrap: bool = False) -> None:
        """Print a line (or a table) that stays; on a terminal it appears above the live line."""
        from rich.text import Text

        with self.lock:
            console = self.console if (self.frames or self.live is not None) else get_console()
            assert console is not None
            if console.is_jupyter and not console.record:  # rich would put escape codes in text/plain
                from ._jupyter import show

                show(console, renderable, soft_wrap)
                return
            if (soft_wrap and self.live is None and isinstance(renderable, Text)
                    and console.color_system is None and not console.record
                    and not console.is_jupyter):
                # a plain line for a log file or pipe: what rich would write, without its
                # rendering pipeline (about 1000 times cheaper; loops keep lines often)
                file = console.file
                file.write(renderable.plain + "\n")
                file.flush()
                return
            # soft_wrap: a long log line is printed whole, never cut or folded by rich
            console.print(renderable, soft_wrap=soft_wrap, highlight=False)

    def keep_loop_line(self, frame: Frame, final: str = "") -> None:
        with self.lock:
            frames = list(self.frames)
            idx = next((i for i, f in enumerate(frames) if f is frame), None)
            if idx is None:
                return
            left, right = self._loop_parts(frames, idx, live=False)
            from rich.text import Text

            line = Text()
            line.append_text(left)
            line.append("  ")
            line.append(right, style="dim")
            if final:
                line.append(f"  {final}", style="yellow")
            self.keep(line, soft_wrap=True)

    def set_indicators(self, step: int, items: list[tuple[str, str, str]], every: int) -> None:
        """Show the values of a `run.write(step)`; keeps a line every `every` steps."""
        with self.lock:
            self._attach()
            self.indicators = items
            self.indicator_step = step
            loop = self.innermost_loop()
            if loop is not None:
                loop.write_step = step  # the loop decides when its line stays
                return
            if step % every == 0:
                self.keep(self._indicator_line(), soft_wrap=True)
            if self.interactive:
                self._start_live()
                if not self._atexit:
                    # a status line shown outside any block has no end of its own
                    atexit.register(self.close)
                    self._atexit = True

    def close(self) -> None:
        """Stop the live line at exit, leaving its last state on the screen."""
        with self.lock:
            self._stop_live(transient=not self.indicators)
            if not self.frames:
                self.indicators = []
                self.indicator_step = None

    # -- the live line -----------------------------------------------------------------------

    def _start_live(self) -> None:
        if self.live is not None:
            return
        from rich.live import Live

        assert self.console is not None
        # rich's own stdout redirect is off: it cannot cope with another wrapper (labtrack's
        # console capture) being installed on top of it while the line is live; ours can.
        self.live = Live(_LiveLine(self), console=self.console, transient=True,
                         auto_refresh=True, refresh_per_second=REFRESH_PER_SECOND,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start(refresh=True)
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _Redirect):
                redirect = _Redirect(self, stream)
                setattr(sys, name, redirect)
                self._redirects.append((name, redirect))

    def _stop_live(self, transient: bool) -> None:
        live = self.live
        if live is None:
            return
        self.live = None
        live.transient = transient
        live.stop()
        for name, redirect in reversed(self._redirects):
            redirect.close_redirect()
            if getattr(sys, name) is redirect:
                setattr(sys, name, redirect.original)
            # else something wrapped it meanwhile (labtrack.init() installing its capture
            # inside a section): it stays in that chain as a plain pass-through
        self._redirects.clear()

    def refresh(self) -> None:
        """Redraw the live line now (after a change a user should see at once)."""
        live = self.live
        if live is not None:
            live.refresh()

    def render_live(self) -> RenderableType:
        """The live line for the current stack; called by rich's refresh thread."""
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        # No display lock here: rich calls this holding its own lock, and the main thread
        # holds the display lock while printing (which takes rich's lock): a snapshot of
        # the stack is enough.
        frames = list(self.frames)
        idx = None
        for i in range(len(frames) - 1, -1, -1):
            if frames[i].kind == LOOP:
                idx = i
                break
        bar: tuple[int, int | None] | None = None
        spin: Any = None
        right = Text()
        if idx is not None:
            left, right_s = self._loop_parts(frames, idx, live=True)
            right = Text(right_s, style="dim")
            bar = (frames[idx].n, frames[idx].total)
        elif frames:
            top = frames[-1]
            left = Text(" " * top.indent if top.kind != SECTION else "")
            names = [f.name for f in frames if f.kind == SECTION]
            if top.kind == PROGRESS:
                if names:
                    left.append(" › ".join(names) + " › ", style="dim")
                left.append(top.name)
                bar = (top.n, top.total)
                right = Text(progress_text(top.n, top.total, time.perf_counter() - top.start),
                             style="dim")
            elif top.kind == SPINNER:
                spin = top.spinner
                left.append(top.name)
            else:
                spin = top.spinner
                left.append(" › ".join(names) + "...")
                right = Text(format_clock(time.perf_counter() - top.start), style="dim")
            if self.indicators:
                left.append_text(self._indicator_text())
        else:
            left = self._indicator_line()
        grid = Table.grid(padding=(0, 1), expand=True)
        row: list[RenderableType] = []
        if spin is not None:
            grid.add_column(no_wrap=True)
            row.append(spin if isinstance(spin, Spinner) else Text(""))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        row.append(left)
        # the bar goes first when the line is too narrow for the values
        room = (self.console.width if self.console is not None else 80) - right.cell_len - 4
        if bar is not None and bar[1] and left.cell_len + 21 <= room:
            grid.add_column(no_wrap=True, width=20)
            row.append(ProgressBar(total=float(bar[1]), completed=float(min(bar[0], bar[1])),
                                   width=20))
        grid.add_column(no_wrap=True)
        row.append(right)
        grid.add_row(*row)
        return grid

    # -- line parts --------------------------------------------------------------------------

    def _loop_parts(self, frames: list[Frame], idx: int, live: bool) -> tuple[Text, str]:
        from rich.text import Text

        loop = frames[idx]
        left = Text(" " * loop.indent)
        for f in frames[:idx]:
            if f.kind == LOOP:
                total = f"/{format_count(f.total)}" if f.total is not None else ""
                left.append(f"{f.name} {format_count(f.n + 1)}{total}  ", style="dim")
        step = loop.write_step if loop.write_step is not None else loop.step
        left.append(f"{step:>6,}:", style="bold")
        for label, seconds in list(loop.sections.items()):
            left.append(f"  {label} ")
            left.append(format_ms(seconds), style="yellow")
        if live:
            for f in frames[idx + 1:]:
                if f.kind == SECTION:
                    if f.label not in loop.sections:
                        left.append(f"  {f.label}...", style="dim")
                elif f.kind == PROGRESS:
                    total = f"/{format_count(f.total)}" if f.total is not None else ""
                    left.append(f"  {f.name} {format_count(f.n)}{total}", style="cyan")
                else:
                    left.append(f"  {f.name}", style="dim")
        if self.indicators:
            left.append_text(self._indicator_text())
        right = progress_text(loop.n, loop.total, time.perf_counter() - loop.start)
        return left, right

    def _indicator_text(self) -> Text:
        from rich.text import Text

        text = Text()
        for name, value, style in self.indicators:
            text.append(f"  {name} ")
            text.append(value, style=style)
        return text

    def _indicator_line(self) -> Text:
        from rich.text import Text

        text = Text()
        if self.indicator_step is not None:
            text.append(f"{self.indicator_step:>6,}:", style="bold")
        text.append_text(self._indicator_text())
        return text

    def _section_text(self, frame: Frame, outcome: tuple[str, float] | None) -> Text:
        from rich.text import Text

        text = Text(" " * frame.indent)
        text.append(f"{frame.name}...")
        if outcome is not None:
            word, seconds = outcome
            style = {"done": "green", "failed": "bold red", "interrupted": "yellow"}[word]
            text.append(f" {word}", style=style)
            text.append(f" {format_ms(seconds)}", style="yellow" if word == "done" else style)
        return text

    def section_done(self, frame: Frame, word: str, seconds: float) -> None:
        """Print the line of a section that ended outside any loop."""
        self.keep(self._section_text(frame, (word, seconds)), soft_wrap=True)


class _Redirect(io.TextIOBase):
    """sys.stdout/stderr while the live line shows: printed lines go above the live line.

    When the live line stops it turns into a plain pass-through to the stream it wrapped,
    so a wrapper installed on top of it meanwhile keeps working (never a loop, never lost).
    """

    def __init__(self, display: Display, original: Any) -> None:
        self._display = display
        self.original = original
        self._buffer: list[str] = []
        self._active = True

    @property
    def rich_proxied_file(self) -> Any:
        """Where rich writes (the wrapped stream) while live; absent once a pass-through."""
        if not self._active:
            raise AttributeError("rich_proxied_file")
        return self.original

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not self._active:
            n: int = self.original.write(text)
            return n
        lines = []
        rest = text
        while rest:
            line, newline, rest = rest.partition("\n")
            if newline:
                lines.append("".join(self._buffer) + line)
                self._buffer.clear()
            else:
                self._buffer.append(line)
                break
        if lines:
            self._emit(lines)
        return len(text)

    def _emit(self, lines: list[str]) -> None:
        from rich.text import Text

        self._display.keep(Text("\n").join(Text.from_ansi(line) for line in lines), soft_wrap=True)

    def flush(self) -> None:
        if self._active and self._buffer:
            text = "".join(self._buffer)
            self._buffer.clear()
            self._emit([text])
        elif not self._active:
            self.original.flush()

    def close_redirect(self) -> None:
        """Print any unfinished line and become a pass-through."""
        self.flush()
        self._active = False

    def isatty(self) -> bool:
        return bool(self.original.isatty())

    def fileno(self) -> int:
        return int(self.original.fileno())

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.original, "encoding", "utf-8"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _LiveLine:
    """What rich's Live holds: rebuilt from the stack each time it is drawn.

    Live keeps the renderable it last refreshed and redraws it under every printed line; a
    snapshot would show stale values after a kept line until the next refresh tick.
    """

    def __init__(self, display: Display) -> None:
        self._display = display

    def __rich_console__(self, console: Console, options: Any) -> Any:
        yield self._display.render_live()


DISPLAY = Display()
