"""The process around the runs: live runs, the default run's slot, and the hooks that finish
runs when the process ends (atexit, an uncaught exception, SIGTERM, `sys.exit`, fork).

A Run registers itself here when it starts and leaves when it finishes; nothing here knows
the Run class beyond the few methods it calls (`finish`, `_activity_mark`, `_capture`).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ._disabled import DisabledRun
    from ._run import Run

_default_run: Run | DisabledRun | None = None
_default_lock = threading.Lock()
_live_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_hooks_installed = False
_previous_excepthook: Any = None
_previous_sigterm: Any = None
_original_exit = sys.exit
_exit_code: Any = None
# Each live run's activity when sys.exit() was last called: a run that logged, flushed or
# wrote after it shows the SystemExit was caught and the script went on.
_exit_marks: weakref.WeakKeyDictionary[Run, tuple[int, int]] = weakref.WeakKeyDictionary()


def register(run: Run) -> None:
    """A run has started: finish it when the process ends (the hooks go in once)."""
    _live_runs.add(run)
    _install_hooks()


def unregister(run: Run) -> None:
    """A run has finished: the hooks leave it alone."""
    _live_runs.discard(run)


def default_run() -> Run | DisabledRun | None:
    """The default run made by `labtrack.init()`, or None."""
    return _default_run


def swap_default(run: Run | DisabledRun) -> Run | DisabledRun | None:
    """Make `run` the default run; returns the one it replaces."""
    global _default_run
    with _default_lock:
        previous, _default_run = _default_run, run
    return previous


def forget_default(run: Run | DisabledRun) -> None:
    """`run` is no longer the default run (when it was)."""
    global _default_run
    with _default_lock:
        if _default_run is run:
            _default_run = None


def _finish_all(status: str, error: BaseException | None = None) -> None:
    """Finish every live run (from the excepthook, atexit or SIGTERM), holding one Ctrl-C.

    A user often presses Ctrl-C twice: the second press, landing while the runs write their
    last data, is held with a note; a third stops the writing, and the status is still set.
    """
    with _HoldInterrupt():
        for run in list(_live_runs):
            try:
                run.finish(status, error=error)
            except Exception as e:  # finishing one run must not stop the others
                print(f"labtrack: could not finish run {run.id}: {e}", file=sys.stderr)


class _HoldInterrupt:
    """In the main thread: the first SIGINT prints a note, the next raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._held = False

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread() or not _live_runs:
            return
        try:
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.SIG_IGN or previous is None:
                return
            signal.signal(signal.SIGINT, self._handler)
        except (ValueError, OSError):  # interpreter shutting down; nothing to hold
            return
        self._previous = previous

    def _handler(self, signum: int, frame: Any) -> None:
        if self._held:
            raise KeyboardInterrupt
        self._held = True
        # os.write: the handler may run inside a write to sys.stderr, which must not re-enter
        try:
            os.write(2, b"labtrack: writing the runs' last data; press Ctrl-C again to stop now\n")
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            try:
                signal.signal(signal.SIGINT, self._previous)
            except (ValueError, OSError):
                pass


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so it unwinds (releasing every lock it held)."""


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, Terminated):
        _finish_all("killed")
        _die_by_sigterm()
        return
    status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
    try:
        # First the traceback, so the captured console.log shows it as the terminal did.
        (_previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)
    finally:
        _finish_all(status, exc)


def _die_by_sigterm() -> None:
    """End the process the way the default SIGTERM action would (status -15 / 143)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


_SIGTERM_GRACE_SECONDS = 3.0  # unwinding and finishing take well under a second


_dying = False


def _finish_and_die() -> None:
    """The script swallowed SIGTERM: finish the runs, then have the main thread die by it."""
    global _dying
    finisher = threading.Thread(target=_finish_all, args=("killed",), name="labtrack-sigterm",
                                daemon=True)
    finisher.start()
    finisher.join(10.0)
    _dying = True
    os.kill(os.getpid(), signal.SIGTERM)  # handled on the main thread: it sees _dying
    time.sleep(5.0)
    os.kill(os.getpid(), signal.SIGKILL)  # the main thread is stuck in C code


def _on_sigterm(signum: int, frame: Any) -> None:
    prev = _previous_sigterm
    if _dying:
        _die_by_sigterm()
    if not callable(prev):
        # The default action: unwind the main thread (finally blocks and `with` exits run,
        # every lock is released), then the excepthook finishes the runs as "killed" and
        # re-raises SIGTERM with the default action. Finishing right here instead could
        # wait forever on a lock the interrupted code holds (the console tee's, a queue's).
        # If the script swallows it (a bare `except:`), still end the way SIGTERM would.
        fallback = threading.Timer(_SIGTERM_GRACE_SECONDS, _finish_and_die)
        fallback.daemon = True
        fallback.start()
        raise Terminated()
    # The script has its own handler: finish first (bounded, on another thread, for the same
    # reason), then hand over to it.
    finisher = threading.Thread(target=_finish_all, args=("killed",), name="labtrack-sigterm",
                                daemon=True)
    finisher.start()
    finisher.join(10.0)
    prev(signum, frame)


def _at_exit() -> None:
    code = _exit_code
    if code in (0, None):
        _finish_all("finished")
        return
    # A run with activity after the sys.exit() call saw the SystemExit caught (argparse's
    # error exit inside a fallback, a library's exit) and the script end normally.
    for run in list(_live_runs):
        mark = _exit_marks.get(run)
        if mark is not None and mark != run._activity_mark():
            try:
                run.finish("finished")
            except Exception as e:  # finishing one run must not stop the others
                print(f"labtrack: could not finish run {run.id}: {e}", file=sys.stderr)
    _finish_all("failed", SystemExit(code))


def _exit(code: Any = None) -> NoReturn:
    """sys.exit, remembering the code: atexit has no other way to know a script failed."""
    global _exit_code
    _exit_code = code
    _exit_marks.clear()
    for run in list(_live_runs):
        _exit_marks[run] = run._activity_mark()
    _original_exit(code)


def _disown_after_fork() -> None:
    """In a forked child: the runs belong to the parent (its writer thread did not fork)."""
    global _default_run
    for run in list(_live_runs):
        if run._capture is not None:
            run._capture.abandon()
    _live_runs.clear()
    _default_run = None


def _install_hooks() -> None:
    global _hooks_installed, _previous_excepthook, _previous_sigterm
    if _hooks_installed:
        return
    _hooks_installed = True
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_disown_after_fork)
    atexit.register(_at_exit)
    # `sys.exit(1)` (or argparse's exit(2)) must leave the run "failed", not "finished"; a bare
    # `raise SystemExit(1)` cannot be seen and leaves it "finished" (docs/format.md).
    sys.exit = _exit
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        prev = signal.getsignal(signal.SIGTERM)
        if prev != signal.SIG_IGN:
            _previous_sigterm = prev
            signal.signal(signal.SIGTERM, _on_sigterm)
