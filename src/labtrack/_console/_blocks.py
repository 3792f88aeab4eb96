"""Timed sections, loops with ETA, inner progress and the spinner.

Sections and loops write their durations to the default run as `timings/<path>` series
(seconds per call, or per iteration for a loop), where `<path>` is the names of the enclosing
sections and the block's own name joined by `/`. Nothing is written without a run or with a
disabled one. None of these blocks catches an exception: Ctrl-C and errors go through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar, overload

from .._names import check_name
from ..errors import LabtrackError, LabtrackTypeError, LabtrackValueError
from ._display import DISPLAY, LOOP, PROGRESS, SECTION, SPINNER, Frame

T = TypeVar("T")
Recorder = Callable[..., Any]

_checked: set[str] = set()  # names already validated (sections run once per iteration)


def _check(name: object, what: str) -> str:
    if isinstance(name, str) and name in _checked:
        return name
    checked = check_name(name, what)  # raises for anything but an allowed str
    if len(_checked) > 10_000:  # names made per epoch ("epoch 12") must not grow it forever
        _checked.clear()
    _checked.add(checked)
    return checked


def _recorder() -> Recorder | None:
    """`_record` of the default run, or None without a run or with a disabled one.

    The slot lives in `_lifecycle`, so the console never imports the run module itself (and
    works on its own, without labtrack.init()); a disabled run records nothing.
    """
    from .._lifecycle import default_run

    run = default_run()
    if run is None or getattr(run, "disabled", False):
        return None
    record: Recorder | None = getattr(run, "_record", None)
    return record


def _safe_record(record: Recorder | None, key: str, seconds: float,
                 more: dict[str, float] | None = None) -> Recorder | None:
    """Record one timing (and `more`); a run that finished meanwhile just stops receiving them."""
    if record is None:
        return None
    try:
        record({key: seconds, **more} if more else {key: seconds})
    except LabtrackError:
        return None
    return record


class section:  # noqa: N801 - used like a function: `with labtrack.section("Load"):`
    """Time a block: prints `name... done 1,234ms` and records `timings/<path>` seconds.

    Outside a loop the result is printed as a line (nested sections are indented under a
    `name...` header). Inside `labtrack.loop` the section's time of the current iteration is
    shown on the loop's status line instead, so nothing floods the screen.

    Args:
        name: what is being done, such as "Load data"; a '/'-separated name like any series.

    Raises:
        LabtrackNameError: the name is empty, not a str, or not a valid series name.

    Example:
        >>> with labtrack.section("Load data"):
        ...     data = load()
        Load data... done 1,234ms
    """

    __slots__ = ("_name", "_frame", "_record")

    def __init__(self, name: str) -> None:
        self._name = _check(name, "section name")
        self._frame: Frame | None = None
        self._record: Recorder | None = None

    def __enter__(self) -> section:
        frame = Frame(SECTION, self._name)
        DISPLAY.push(frame)
        if DISPLAY.interactive and not frame.inner:
            from rich.spinner import Spinner

            frame.spinner = Spinner("dots")
        self._record = _recorder()
        self._frame = frame
        frame.start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        frame = self._frame
        if frame is None:
            return
        seconds = time.perf_counter() - frame.start
        self._frame = None
        loop = DISPLAY.innermost_loop() if frame.inner else None
        if exc_type is None:
            word = "done"
            if loop is not None and self._record is not None:
                loop.timings["timings/" + frame.path] = seconds  # recorded with the iteration
            else:
                _safe_record(self._record, "timings/" + frame.path, seconds)
        elif issubclass(exc_type, KeyboardInterrupt):
            word = "interrupted"
        else:
            word = "failed"
        with DISPLAY.lock:
            if frame.inner:
                if loop is not None:
                    loop.sections[frame.label] = seconds
            else:
                DISPLAY.section_done(frame, word, seconds)
            DISPLAY.pop(frame)


def _prepare(iterable: Iterable[Any] | int, total: int | None, name: object,
             what: str) -> tuple[Iterator[Any], int | None, str]:
    if isinstance(iterable, bool):
        raise LabtrackTypeError(f"{what}() needs an iterable or an int count, got bool {iterable!r}")
    if isinstance(iterable, int):
        if iterable < 0:
            raise LabtrackValueError(f"{what}({iterable}): a count must be >= 0")
        iterable = range(iterable)
    assert not isinstance(iterable, int)
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise LabtrackValueError(
            f"{what}(total={total!r}): total must be a whole number >= 0 or None (unknown length)"
        )
    label = _check(name, f"{what} name")
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except (TypeError, AttributeError):
            total = None
    try:
        it = iter(iterable)
    except TypeError:
        raise LabtrackTypeError(
            f"{what}() needs an iterable (a list, range, generator, data loader...) or an int "
            f"count, got {type(iterable).__name__} {iterable!r:.60}"
        ) from None
    return it, total, label


def _print_every(value: int | None) -> int:
    if value is None:
        from .. import _settings

        every: int = _settings.get("print_every")
        return every
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LabtrackValueError(f"print_every={value!r}: must be a whole number >= 1")
    return value


@overload
def loop(iterable: int, *, total: int | None = None, name: str = "loop",
         print_every: int | None = None) -> Iterator[int]: ...
@overload
def loop(iterable: Iterable[T], *, total: int | None = None, name: str = "loop",
         print_every: int | None = None) -> Iterator[T]: ...
def loop(iterable: Iterable[T] | int, *, total: int | None = None, name: str = "loop",
         print_every: int | None = None) -> Iterator[T] | Iterator[int]:
    """Iterate with a live status line: step, section times, indicators, progress and ETA.

    On a terminal the line is redrawn in place; a line stays every `print_every` steps and at
    the end. Without a terminal only those lines are printed, as plain text. Each iteration's
    duration is recorded as `timings/<name>` on the default run.

    Args:
        iterable: any iterable (with or without `len`), or an int n for `range(n)`.
        total: the number of items, when `len(iterable)` does not tell (for the ETA).
        name: the name of the timing series and of the loop on nested lines.
        print_every: keep a line every this many steps (default: the print_every setting,
            LABTRACK_PRINT_EVERY). The step is the one given to `run.write(step)` in the
            iteration, else the item when it is an int, else the iteration number.

    Returns:
        An iterator over the items of `iterable`.

    Raises:
        LabtrackTypeError: `iterable` cannot be iterated.
        LabtrackValueError: a negative count or total, or print_every < 1.

    Example:
        >>> for step in labtrack.loop(range(1000)):
        ...     run.store(loss=train_step())
        ...     run.write(step)
    """
    it, n_total, label = _prepare(iterable, total, name, "loop")
    every = _print_every(print_every)
    return _iterate_loop(it, n_total, label, every)


def _iterate_loop(it: Iterator[T], total: int | None, name: str, every: int) -> Iterator[T]:
    perf = time.perf_counter
    display = DISPLAY
    frame = Frame(LOOP, name, total)
    display.push(frame)
    key = "timings/" + frame.path
    record = _recorder()
    n = 0
    kept = -1
    finished = False
    last = frame.start = perf()
    try:
        for item in it:
            frame.step = item if type(item) is int else n  # type: ignore[assignment]
            frame.write_step = None
            yield item
            # the iteration's body has run: from fetching the item to asking for the next
            now = perf()
            if record is not None:
                # with this iteration's section timings, at the step its body logged
                record = _safe_record(record, key, now - last, frame.timings)
            frame.timings.clear()
            last = now
            n += 1
            frame.n = n
            step = frame.write_step
            if step is None:
                step = frame.step
            if step % every == 0:
                display.keep_loop_line(frame)
                kept = n
        finished = True
        if n and kept != n:
            display.keep_loop_line(frame)
    finally:
        if frame.timings:  # the iteration that broke out of the loop or raised
            key_, seconds_ = frame.timings.popitem()
            _safe_record(record, key_, seconds_, frame.timings)
        if not finished and n:
            display.keep_loop_line(frame, final="stopped")
        display.pop(frame)


class ManualProgress:
    """A progress display moved by hand (Lavd's manual progress bar): `update(n)` after each
    piece of work. Made by `labtrack.progress(total=..., name=...)` without an iterable; a
    context manager, or `start()` / `close()`.

    Example:
        >>> with labtrack.progress(total=100, name="Manual") as bar:
        ...     bar.update(4)
    """

    __slots__ = ("_frame", "name", "total", "n")

    def __init__(self, total: int | None, name: str) -> None:
        self._frame: Frame | None = None
        self.name = name
        self.total = total
        self.n = 0  # the count so far

    def start(self) -> ManualProgress:
        """Show the bar (once)."""
        if self._frame is None:
            frame = Frame(PROGRESS, self.name, self.total)
            frame.n = self.n
            DISPLAY.push(frame)
            self._frame = frame
        return self

    def update(self, n: int = 1) -> None:
        """Advance by `n` items (starting the bar if it is not shown yet).

        Raises:
            LabtrackValueError: `n` is not a whole number >= 0.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise LabtrackValueError(f"progress update({n!r}): n must be a whole number >= 0")
        if self._frame is None:
            self.start()
        self.n += n
        if self._frame is not None:
            self._frame.n = self.n

    def close(self) -> None:
        """Clear the bar (idempotent)."""
        if self._frame is not None:
            DISPLAY.pop(self._frame)
            self._frame = None

    def __enter__(self) -> ManualProgress:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<labtrack.progress {self.name!r} {self.n}/{self.total if self.total is not None else '?'}>"


@overload
def progress(iterable: None = None, *, total: int | None = None,
             name: str = "progress") -> ManualProgress: ...
@overload
def progress(iterable: int, *, total: int | None = None,
             name: str = "progress") -> Iterator[int]: ...
@overload
def progress(iterable: Iterable[T], *, total: int | None = None,
             name: str = "progress") -> Iterator[T]: ...
def progress(iterable: Iterable[T] | int | None = None, *, total: int | None = None,
             name: str = "progress") -> Iterator[T] | Iterator[int] | ManualProgress:
    """Iterate with an inner progress display that is cleared when done; without an
    iterable, a bar moved by hand (`bar.update(n)`; Lavd's manual progress bar).

    Inside `labtrack.loop` it shows as `name 45/100` on the loop's line; on its own it shows a
    bar with ETA on a terminal. Nothing is printed when the output is not a terminal, and
    nothing is recorded.

    Args:
        iterable: any iterable, or an int n for `range(n)`; None for a manual bar.
        total: the number of items when `len(iterable)` does not tell (a manual bar's end).
        name: the label shown before the count.

    Returns:
        An iterator over the items of `iterable`, or a :class:`ManualProgress`.

    Raises:
        LabtrackTypeError: `iterable` cannot be iterated.
        LabtrackValueError: a negative count or total.

    Example:
        >>> for batch in labtrack.progress(loader, name="valid"):
        ...     evaluate(batch)
        >>> with labtrack.progress(total=100, name="Manual") as bar:
        ...     bar.update(4)
    """
    if iterable is None:
        _, n_total, label = _prepare((), total, name, "progress")
        return ManualProgress(total, label)
    it, n_total, label = _prepare(iterable, total, name, "progress")
    return _iterate_progress(it, n_total, label)


def _iterate_progress(it: Iterator[T], total: int | None, name: str) -> Iterator[T]:
    frame = Frame(PROGRESS, name, total)
    DISPLAY.push(frame)
    n: int = 0
    try:
        for item in it:
            yield item
            n += 1
            frame.n = n
    finally:
        DISPLAY.pop(frame)


class spinner:  # noqa: N801 - used like a function: `with labtrack.spinner("Loading..."):`
    """Show an animated spinner with `text` while the block runs (cleared when done).

    Without a terminal the text is printed once, as a plain line, when the block starts.
    Also an object with `start()` and `stop()` (Lavd's spinner).

    Args:
        text: what is happening, such as "Loading...".

    Raises:
        LabtrackTypeError: `text` is not a str.

    Example:
        >>> with labtrack.spinner("Downloading weights..."):
        ...     fetch()
        >>> sp = labtrack.spinner("Loading"); sp.start(); load(); sp.stop()
    """

    __slots__ = ("_text", "_frame")

    def __init__(self, text: str = "Working...") -> None:
        if not isinstance(text, str):
            raise LabtrackTypeError(f"spinner text must be a str, got {type(text).__name__} {text!r}")
        self._text = text
        self._frame: Frame | None = None

    def __enter__(self) -> spinner:
        frame = Frame(SPINNER, self._text)
        with DISPLAY.lock:
            DISPLAY.push(frame)
            if DISPLAY.interactive:
                from rich.spinner import Spinner

                frame.spinner = Spinner("dots")
                DISPLAY.refresh()
            else:
                from rich.text import Text

                DISPLAY.keep(Text(" " * frame.indent + self._text), soft_wrap=True)
        self._frame = frame
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._frame is not None:
            DISPLAY.pop(self._frame)
            self._frame = None

    def start(self) -> spinner:
        """Show the spinner until :meth:`stop` (the same as entering the `with` block)."""
        if self._frame is None:
            self.__enter__()
        return self

    def stop(self) -> None:
        """Clear the spinner (idempotent)."""
        self.__exit__(None, None, None)
