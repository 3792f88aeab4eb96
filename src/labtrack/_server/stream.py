"""The live stream: `GET /api/v1/stream?runs=id1,id2` as Server-Sent Events.

The server tails files by byte offset, twice a second: new whole lines of every scalars CSV
(`scalars` events), new console output (`console`), a changed run.json or summary.json or a
status that turned crashed (`run`), and runs added to or removed from the root (`runs`).
A stream starts at the files' current ends; a client opens it before fetching the current
state so that nothing falls between the two. It ends when the client disconnects or the
server shuts down.
"""

from __future__ import annotations

import asyncio
import codecs
import os
from typing import IO, Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from .._store import layout
from .._store.contain import OutsideRootError, is_contained
from .._store.rundir import RunDir, iter_runs
from .._store.scalars import HEADER_LINE as HEADER
from .._store.scalars import parse_lines
from ..errors import LabtrackError, LabtrackValueError
from .common import API, dumps, floats, run_row_now, state_of
from .state import ServerState

POLL_SECONDS = 0.5
PING_SECONDS = 15.0
STATUS_EVERY = 4  # ticks between re-deriving a running run's status (heartbeat age)
ROOT_EVERY = 4  # ticks between looking for added or removed runs
SERIES_EVERY = 4  # ticks between listing a run's series again (a new series shows within 2 s)
MAX_RUNS = 200
MAX_READ = 4 << 20  # bytes read from one file per tick; the rest comes next tick
_WATCHED = (layout.RUN_JSON, layout.SUMMARY_JSON, layout.PARAMS_JSON)


def _sig(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _file_sig(run: RunDir, relpath: str) -> tuple[int, int, int] | None:
    """The signature of a file of the run; None when missing or leading outside the run."""
    try:
        return _sig(run.file(relpath))
    except OutsideRootError:
        return None


def _open(run: RunDir, relpath: str) -> IO[bytes] | None:
    """A file of the run opened through its checked door; None when missing or outside."""
    try:
        return run.open(relpath)
    except (OSError, OutsideRootError):
        return None


def event(kind: str, data: Any) -> bytes:
    """One SSE event: `event: <kind>` and a one-line JSON `data:`."""
    return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class RunWatch:
    """What one stream knows about one run: byte offsets and file signatures.

    Every file is opened through the run's :class:`RunDir`, so a series, console.log or
    run.json that leads outside the run is never tailed.
    """

    def __init__(self, state: ServerState, run: RunDir) -> None:
        self.state = state
        self.run = run
        self.run_id = run.id
        self.offsets: dict[str, int] = {}  # a series' path in the run -> bytes sent
        self.series = run.named("scalars")
        for _name, rel in self.series:
            self.offsets[rel] = _after_last_line(run, rel)
        self.console_offset = _size(run, layout.CONSOLE_LOG)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.meta_sig: tuple[Any, ...] = ()
        self.status: str | None = None
        self.ticks = 0

    def poll(self) -> list[bytes]:
        """Events for everything that changed since the last poll."""
        self.ticks += 1
        out = self._poll_meta()
        if self.ticks % SERIES_EVERY == 0:
            # Listing checks every file against the run (a realpath each): not every tick.
            self.series = self.run.named("scalars")
        for name, rel in self.series:
            ev = self._poll_series(name, rel)
            if ev is not None:
                out.append(ev)
        ev = self._poll_console()
        if ev is not None:
            out.append(ev)
        return out

    def _poll_meta(self) -> list[bytes]:
        sig = tuple(_file_sig(self.run, n) for n in _WATCHED)
        changed = sig != self.meta_sig
        if not changed and not (self.status == "running" and self.ticks % STATUS_EVERY == 0):
            return []
        self.meta_sig = sig
        try:
            row = run_row_now(self.state, self.run)
        except (OSError, ValueError, LabtrackError):
            # run.json removed or damaged: keep the stream alive and try again next tick
            self.meta_sig = ()
            return []
        if not changed and row.get("status") == self.status:
            return []
        self.status = row.get("status")
        return [event("run", row)]

    def _poll_series(self, name: str, rel: str) -> bytes | None:
        sig = _sig(self.run.path / rel)  # unchanged (the usual case): one stat, no open
        if sig is None or sig[2] == self.offsets.get(rel, 0):
            return None
        f = _open(self.run, rel)
        if f is None:
            return None
        try:
            with f:
                size = os.fstat(f.fileno()).st_size
                offset = self.offsets.get(rel, 0)
                if size < offset:  # replaced by a shorter file: start again
                    offset = 0
                if size == offset:
                    return None
                f.seek(offset)
                data = f.read(min(size - offset, MAX_READ))
        except OSError:
            return None
        start = 0
        if offset == 0:
            if not data.startswith(HEADER):
                return None  # the header is not complete yet
            start = len(HEADER)
        end = data.rfind(b"\n") + 1
        if end <= start:
            self.offsets[rel] = offset + start if start else offset
            return None
        self.offsets[rel] = offset + end
        chunks = parse_lines(memoryview(data)[start:end])
        if not chunks:
            return None
        import numpy as np

        step = np.concatenate([c[0] for c in chunks])
        value = np.concatenate([c[1] for c in chunks])
        time = np.concatenate([c[2] for c in chunks])
        return event("scalars", {
            "run": self.run_id, "name": name, "path": rel,
            "step": step.tolist(), "time": floats(time), "value": floats(value),
        })

    def _poll_console(self) -> bytes | None:
        sig = _sig(self.run.path / layout.CONSOLE_LOG)
        if sig is None or sig[2] == self.console_offset:
            return None
        f = _open(self.run, layout.CONSOLE_LOG)
        if f is None:
            return None
        try:
            with f:
                size = os.fstat(f.fileno()).st_size
                if size < self.console_offset:  # a new console.log: from its start
                    self.console_offset = 0
                    self.decoder.reset()
                if size == self.console_offset:
                    return None
                f.seek(self.console_offset)
                data = f.read(min(size - self.console_offset, MAX_READ))
        except OSError:
            return None
        start = self.console_offset
        self.console_offset += len(data)
        text = self.decoder.decode(data)
        if not text:
            return None
        nxt = self.console_offset - len(self.decoder.getstate()[0])
        return event("console", {"run": self.run_id, "start": start, "offset": nxt, "text": text})


def _after_last_line(run: RunDir, relpath: str) -> int:
    """The offset just past the file's last complete line (0 when it has none yet), so a
    stream never starts in the middle of a line that is being written."""
    f = _open(run, relpath)
    if f is None:
        return 0
    try:
        with f:
            size = os.fstat(f.fileno()).st_size
            tail = min(size, 1 << 16)
            f.seek(size - tail)
            data = f.read(tail)
    except OSError:
        return 0
    cut = data.rfind(b"\n")
    return size - tail + cut + 1 if cut >= 0 else 0


def _size(run: RunDir, relpath: str) -> int:
    sig = _file_sig(run, relpath)
    return sig[2] if sig is not None else 0


class RootWatch:
    """Notices runs added to or removed from the root (cheaply: folder mtimes first)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.sig = self._sig()
        self.runs = self._runs()
        self.pending = 0

    def _sig(self) -> tuple[Any, ...]:
        root = self.state.root
        parts: list[Any] = [_sig(root)]
        try:
            for e in os.scandir(root):
                if e.name.startswith(".") or (e.is_symlink() and not is_contained(e.path, root)):
                    continue  # an experiment folder leading out of the root is not one
                if e.is_dir():
                    parts.append((e.name, _sig(e.path)))
        except OSError:
            pass
        return tuple(sorted(parts, key=repr))

    def _runs(self) -> frozenset[str]:
        return frozenset(f"{r.experiment_dir}/{r.id}" for r in iter_runs(self.state.root))

    def poll(self) -> list[bytes]:
        """A `runs` event when the set of runs changed."""
        sig = self._sig()
        if sig != self.sig:
            # A new run's folder appears before its run.json: look again for a few polls.
            self.sig = sig
            self.pending = 3
        if self.pending <= 0:
            return []
        self.pending -= 1
        runs = self._runs()
        if runs == self.runs:
            return []
        self.runs = runs
        return [event("runs", {"total": len(runs)})]


class EventStream(Response):
    """The response of one stream; it watches for the client leaving by itself."""

    def __init__(self, state: ServerState, watches: list[RunWatch], root: RootWatch,
                 poll_seconds: float | None = None, ping_seconds: float | None = None) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.state = state
        self.watches = watches
        self.root = root
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.ping_seconds = PING_SECONDS if ping_seconds is None else ping_seconds
        self.ticks = 0

    def _tick(self) -> list[bytes]:
        self.ticks += 1
        out: list[bytes] = []
        for w in self.watches:
            out.extend(w.poll())
        if (self.ticks - 1) % ROOT_EVERY == 0:
            out.extend(self.root.poll())
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def listen() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),
            ]})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            loop = asyncio.get_running_loop()
            last_sent = loop.time()
            while not gone.is_set() and not self.state.shutdown.is_set():
                events = await anyio.to_thread.run_sync(self._tick)
                if events:
                    await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
                    last_sent = loop.time()
                elif loop.time() - last_sent >= self.ping_seconds:
                    await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                    last_sent = loop.time()
                try:
                    await asyncio.wait_for(gone.wait(), timeout=self.poll_seconds)
                except asyncio.TimeoutError:
                    pass
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away while we were writing
        finally:
            listener.cancel()


async def stream(request: Request) -> EventStream:
    """`GET /api/v1/stream?runs=id1,id2`: live events for these runs and the root."""
    state = state_of(request)
    raw = request.query_params.get("runs", "")
    ids = list(dict.fromkeys(i.strip() for i in raw.split(",") if i.strip()))
    if len(ids) > MAX_RUNS:
        raise LabtrackValueError(f"runs= names {len(ids)} runs; one stream follows at most {MAX_RUNS}")

    def setup() -> tuple[list[RunWatch], RootWatch]:
        watches = [RunWatch(state, state.run_dir(i)) for i in ids]
        return watches, RootWatch(state)

    watches, root = await anyio.to_thread.run_sync(setup)
    return EventStream(state, watches, root)


def routes() -> list[BaseRoute]:
    """The stream's route."""
    return [Route(f"{API}/stream", stream)]
