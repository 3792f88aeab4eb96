"""The one writer thread of a run: formats buffered values in bulk and appends them to disk.

The hot path (Run.log) appends `(step, value, time)` triples to one `array('d')` per series
with a single `fromlist` call, which the GIL makes atomic, and never takes a lock. The writer
swaps the dict of columns for a fresh one and formats the old generation; a Python-path log
call that fetched the old dict just before the swap may still extend it, so the writer keeps
old generations, writing whatever grew in them, until a flush finds no such call in flight.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
import warnings
from array import array
from pathlib import Path
from typing import Any, Callable

from ._store import files, layout
from ._store import lod as envelopes
from ._store.reader import read_json
from ._store.scalars import HEADER_LINE as CSV_HEADER
from ._store.scalars import Formatted, format_many, value_stats

_STOP = object()
# Swapped-out column generations kept while a log() call is in flight (see _flush_scalars).
MAX_OLD_GENERATIONS = 10_000  # bounds memory if a log() call never returns
# When this many values wait, log() wakes the writer (flush_soon) to format them right away,
# in the background, instead of at its next interval or all at finish().
EAGER_VALUES = 20_000
# Bytes kept for a file whose append failed (full disk); past this, data is dropped and counted.
_MAX_PENDING = 64 * 1024 * 1024


class _Held:
    """Bytes of one file that the disk refused, kept in file order until it accepts them.

    `parts` labels each piece: (kind, name, count, done): what a loss would be reported as,
    and what to run once the bytes are on disk (a series' statistics are only counted then).
    """

    __slots__ = ("data", "parts")

    def __init__(self) -> None:
        self.data = bytearray()
        self.parts: list[tuple[str, str, int, Callable[[], None] | None]] = []


def _plural(n: int, kind: str) -> str:
    return f"{n} {kind}" if n == 1 else f"{n} {kind}s"


class _Barrier:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


#: Keys of a summary.json entry that the script sets, not the series' statistics
#: (docs/format.md): "value" (a summary value), and define_metric's "summary" and "goal".
SUMMARY_EXTRA = ("value", "summary", "goal")


class SeriesStats:
    """Running statistics of one series (the summary.json entry)."""

    __slots__ = ("last", "min", "max", "sum", "finite", "count", "step", "time")

    def __init__(self) -> None:
        self.last = math.nan
        self.min = math.inf
        self.max = -math.inf
        self.sum = 0.0
        self.finite = 0
        self.count = 0
        self.step = 0
        self.time = 0.0

    @classmethod
    def from_summary(cls, d: dict[str, Any]) -> SeriesStats:
        s = cls()
        try:
            s.last = float(d["last"])
            s.min = float(d.get("min", math.inf)) if d.get("min") is not None else math.inf
            s.max = float(d.get("max", -math.inf)) if d.get("max") is not None else -math.inf
            s.sum = float(d.get("sum", 0.0))
            s.count = int(d.get("count", 0))
            s.finite = int(d.get("finite", s.count))
            s.step = int(d.get("step", 0))
            s.time = float(d.get("time", 0.0))
        except (KeyError, TypeError, ValueError):
            return cls()
        return s

    def update(self, values: array[float], last_step: float, last_time: float) -> None:
        if len(values):
            self.add(len(values), *value_stats(values), values[-1], last_step, last_time)

    def add(self, n: int, total: float, finite: int, lo: float, hi: float, last: float,
            last_step: float, last_time: float) -> None:
        """Add `n` points: the sum and count of their finite values, the least and greatest
        of their non-NaN values, and the last point's value, step and time."""
        if not n:
            return
        self.sum += total
        self.finite += finite
        if lo < self.min:
            self.min = lo
        if hi > self.max:
            self.max = hi
        self.count += n
        self.last = last
        self.step = int(last_step)
        self.time = last_time

    def _seen_not_nan(self) -> bool:
        # min starts at +inf and max at -inf; both move once any non-NaN value was seen
        # (an all-infinite series has min == max == inf, which is a real value).
        return self.count > 0 and not (self.min == math.inf and self.max == -math.inf)

    def as_dict(self) -> dict[str, Any]:
        return {
            "last": self.last,
            "min": self.min if self._seen_not_nan() else None,
            "max": self.max if self._seen_not_nan() else None,
            "mean": self.sum / self.finite if self.finite else None,
            "sum": self.sum,
            "count": self.count,
            "finite": self.finite,
            "step": self.step,
            "time": round(self.time, 3),
        }




class Writer:
    """Owns every disk write of one run. Exactly one per run; daemon, named, joined by close()."""

    def __init__(self, run_dir: Path, swap_columns: Callable[[], dict[str, array[float]]], *,
                 in_flight: Callable[[], int] = lambda: 0, pending: Callable[[], int] = lambda: 0,
                 flush_seconds: float,
                 heartbeat_seconds: float, queue_size: int, run_id: str,
                 summary: dict[str, Any] | None = None, rank: int = 0) -> None:
        self.dir = run_dir
        # Rank N > 0 of a one-run job (docs/distributed.md) keeps its series as `rank<N>/<name>`
        # (mapped once per series, where its file is first named) and its console, summary and
        # heartbeat under ranks/<N>/.
        self._prefix = layout.rank_prefix(rank) if rank else ""
        mine = (lambda n: run_dir / layout.rank_relpath(rank, n)) if rank else (lambda n: run_dir / n)
        self._console_path, self._summary_path = mine(layout.CONSOLE_LOG), mine(layout.SUMMARY_JSON)
        self._heartbeat_path = mine(layout.HEARTBEAT)
        self._swap_columns = swap_columns
        self._in_flight = in_flight
        self._waiting_values = pending
        self._flush_seconds = flush_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        entries = {k: v for k, v in (summary or {}).items() if isinstance(v, dict)}
        self._stats: dict[str, SeriesStats] = {
            k: SeriesStats.from_summary(v) for k, v in entries.items() if "count" in v}
        # Keys set by the script (`set_summary`: a bridge's summary values), kept on resume.
        self._extra: dict[str, dict[str, Any]] = {
            k: {f: v[f] for f in SUMMARY_EXTRA if f in v} for k, v in entries.items()
            if any(f in v for f in SUMMARY_EXTRA)}
        self._paths: dict[str, Path] = {}
        self._new_series: dict[str, bool] = {}  # named, no file yet: the first append has the header
        # name -> the envelope of its series (`_store/lod.py`), or None: this process writes none
        self._envelopes: dict[str, tuple[envelopes.EnvelopeBuilder, Path] | None] = {}
        self._old: list[tuple[dict[str, array[float]], dict[str, int]]] = []
        self._held: dict[Path, _Held] = {}
        self._summary_dirty = False
        self._console: list[str] = []
        self._console_lock = threading.Lock()
        self._warned: set[str] = set()
        self._undelivered: list[str] = []
        # (kind, name) -> how many were lost: values of a series, records, media, files.
        self.lost: dict[tuple[str, str], int] = {}
        self.after_flush: list[Callable[[], None]] = []
        self._last_beat = 0.0
        self._thread = threading.Thread(target=self._main, name=f"labtrack-writer-{run_id}", daemon=True)

    # --- called from other threads -------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[], None], kind: str = "record", name: str = "") -> None:
        """Run `fn` on the writer thread, in order; waits when the queue is full.

        Args:
            fn: writes one record.
            kind, name: what is reported as lost if `fn` fails ("image", "samples/bird").
        """
        if not self._thread.is_alive():
            self._run_record(fn, kind, name)  # after close (or before start): in the caller's thread
            return
        self._q.put((fn, kind, name))

    def write_console(self, text: str) -> None:
        with self._console_lock:
            self._console.append(text)

    def flush(self, timeout: float | None = None) -> bool:
        """Barrier: everything logged before the call is on disk when it returns True."""
        if not self._thread.is_alive():
            self._flush_all()
            return True
        b = _Barrier()
        self._q.put(b)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not b.event.wait(0.5):
            if not self._thread.is_alive():  # should never happen; never hang the script
                self._flush_all()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def flush_soon(self) -> None:
        """Ask for a flush now without waiting for it (finish() starts the writing early, and
        log() when EAGER_VALUES values wait)."""
        try:
            self._q.put_nowait(_Barrier())
        except queue.Full:  # the writer is busy with the queue already
            pass

    def close(self, timeout: float | None = None) -> None:
        """Drain, write everything, and stop the thread."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._flush_all()
            self._finish_envelopes()
            self._drop_held()

    # --- the thread -----------------------------------------------------------------------
    def _main(self) -> None:
        next_flush = time.monotonic() + self._flush_seconds
        self._safe(self._beat)
        while True:
            try:
                item = self._q.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._safe(self._flush_all)
                self._safe(self._finish_envelopes)
                self._safe(self._drop_held)
                return
            if isinstance(item, _Barrier):
                try:
                    self._safe(self._flush_all)
                finally:
                    item.event.set()
                next_flush = time.monotonic() + self._flush_seconds
                continue
            if item is not None:
                self._safe(lambda: self._run_record(*item))
            now = time.monotonic()
            # Sooner than the interval when many values wait: a fast logger's data is then
            # formatted (without the GIL) while it runs, and finish() only writes the tail.
            if now >= next_flush or self._waiting_values() >= EAGER_VALUES:
                self._safe(self._flush_all)
                next_flush = now + self._flush_seconds

    def _safe(self, fn: Callable[[], None]) -> None:
        """Run one step of the writer; nothing, not even a warning turned into an error, stops it."""
        try:
            fn()
        except Exception as e:
            self.lost[("writer error", type(e).__name__)] = self.lost.get(("writer error", type(e).__name__), 0) + 1
            self._warn_once("internal", f"labtrack: the writer of run {self.dir.name} hit "
                            f"{type(e).__name__}: {e}; it keeps going")

    def _run_record(self, fn: Callable[[], None], kind: str = "record", name: str = "") -> None:
        try:
            fn()
        except OSError as e:
            self._lose(kind, name, 1, f"{e.strerror or e} ({e.filename or self.dir})")
        except Exception as e:  # a record that fails to encode must not kill the writer
            self._lose(kind, name, 1, f"it could not be encoded: {type(e).__name__}: {e}")

    def _lose(self, kind: str, name: str, n: int, why: str) -> None:
        """Count `n` lost items of (kind, name); warn the first time each (kind, name) is lost."""
        key = (kind, name)
        first = key not in self.lost
        self.lost[key] = self.lost.get(key, 0) + n
        if first:
            self._deliver(f"labtrack: run {self.dir.name} lost {_plural(n, kind)} of {name!r}: {why}; "
                          "logging continues, and finish() reports every loss")

    def loss_report(self) -> str:
        """What was lost, by kind and name ("3 values of 'loss', 1 image of 'img'"), or ""."""
        return ", ".join(_plural(n, kind) + f" of {name!r}" for (kind, name), n in self.lost.items())

    def _flush_all(self) -> None:
        if self._undelivered:
            pending, self._undelivered = self._undelivered, []
            for message in pending:
                self._deliver(message)
        self._flush_scalars()
        self._flush_console()
        self._retry_held()
        if self._summary_dirty:
            try:
                files.atomic_write_json(self._summary_path, self.summary())
                self._summary_dirty = False
            except OSError as e:  # kept dirty: written again at the next flush
                self._warn_once("disk", f"labtrack: could not write summary.json of run {self.dir.name}: {e}")
        self._beat()
        for fn in self.after_flush:
            try:
                fn()
            except Exception as e:  # a hook (the shipper) must never stop the writer
                self._warn_once("hook", f"labtrack: after-flush hook failed: {e}")

    def summary(self) -> dict[str, Any]:
        out = {k: s.as_dict() for k, s in self._stats.items()}
        for k, extra in self._extra.items():
            out[k] = {**out.get(k, {}), **extra}
        return dict(sorted(out.items()))

    def set_summary(self, entries: dict[str, dict[str, Any]]) -> None:
        """Merge keys of SUMMARY_EXTRA into summary.json's entries (writer thread only: submit it)."""
        for k, extra in entries.items():
            self._extra[k] = {**self._extra.get(k, {}), **extra}
        self._summary_dirty = True

    def _flush_scalars(self) -> None:
        # A Python-path log() call reads the columns dict, then appends: a thread descheduled
        # in between appends into a generation the writer has already swapped out. So old
        # generations are kept, and whatever grew in them written, until a flush that starts
        # with no such call in flight (the C path appends atomically and is never in flight).
        idle = not self._in_flight()
        kept = []
        # Always private copies: formatting must never hold a buffer export on a column that a
        # racing log() call may still extend (array raises BufferError on resize then).
        batch: list[tuple[str, array[float]]] = []
        for gen, done in self._old:
            for name, col in list(gen.items()):
                start = done.get(name, 0)
                if len(col) - start >= 3:
                    end = len(col) // 3 * 3
                    batch.append((name, col[start:end]))
                    done[name] = end
            if not idle:
                kept.append((gen, done))
        current = self._swap_columns()
        done_now: dict[str, int] = {}
        for name, col in list(current.items()):
            n = len(col) // 3 * 3
            if n:
                batch.append((name, col[0:n]))
            done_now[name] = n
        kept.append((current, done_now))
        if len(kept) > MAX_OLD_GENERATIONS:  # a log() call stuck in flight for thousands of flushes
            self._warn_once("generations", "labtrack: a log() call has been in flight for "
                            f"{len(kept)} flushes; points it appends later may be lost")
            del kept[:-MAX_OLD_GENERATIONS]
        self._old = kept
        self._write_batch(batch)

    def _write_batch(self, batch: list[tuple[str, array[float]]]) -> None:
        """Format every part at once (format_many: two threads, no GIL) and append each to its
        series file, in order; then update the series' statistics and envelopes.

        A part is cut at its series' envelope block boundaries before formatting, so each
        block's bytes and statistics come out of the one format_many call."""
        if not batch:
            return
        pieces: list[array[float]] = []
        spans: list[tuple[int, int]] = []  # per part: its pieces [start, end)
        for name, part in batch:
            env = self._envelope_of(name)
            start = len(pieces)
            if env is None:
                pieces.append(part)
            else:
                pos = 0
                for c in env[0].cuts(len(part) // 3):
                    pieces.append(part if c * 3 == len(part) else part[pos: pos + 3 * c])
                    pos += 3 * c
            spans.append((start, len(pieces)))
        formatted = format_many(pieces)
        for (name, part), (a, b) in zip(batch, spans):
            path = self._paths[name]
            if b - a == 1:
                data: bytes | list[bytes]
                data, total, finite, lo, hi = formatted[a]
            else:
                mine = formatted[a:b]
                data = [f[0] for f in mine]  # written with writev: no joined copy
                total = sum(f[1] for f in mine)
                finite = sum(f[2] for f in mine)
                lo, hi = min(f[3] for f in mine), max(f[4] for f in mine)
            if self._new_series.pop(name, False):
                data = [CSV_HEADER, *data] if isinstance(data, list) else CSV_HEADER + data
            self._append(path, data, "value", name, len(part) // 3,
                         self._count(name, len(part) // 3, total, finite, lo, hi, part[-2], part[-3], part[-1],
                                     pieces[a:b], formatted[a:b]))

    def _envelope_of(self, name: str) -> tuple[envelopes.EnvelopeBuilder, Path] | None:
        """The envelope of a series (made when its file is first named), or None."""
        if name in self._envelopes:
            return self._envelopes[name]
        path = self._paths.get(name)
        if path is None:
            path = layout.scalar_path(self.dir, self._prefix + name)
            self._paths[name] = path
        env_path = envelopes.path_for(self.dir, path.relative_to(self.dir).as_posix())
        env: tuple[envelopes.EnvelopeBuilder, Path] | None
        if not path.exists():
            self._new_series[name] = True
            try:  # an envelope left by a series file deleted since describes nothing now
                os.unlink(env_path)
            except OSError:
                pass
            env = (envelopes.EnvelopeBuilder(0, len(CSV_HEADER)), env_path)
        else:  # a resumed run: continue its envelope only if it ends where the CSV ends
            builder = envelopes.resume_state(path, env_path)
            env = None if builder is None else (builder, env_path)
        self._envelopes[name] = env
        return env

    def _envelope_write(self, env: envelopes.EnvelopeBuilder, path: Path) -> None:
        """Write the envelope records completed so far (once the series is long enough)."""
        if env.disabled or not env.out:
            return
        try:
            if not env.on_disk:
                if env.n < envelopes.START_POINTS:
                    return  # kept in memory (a few KB): short series get no file
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    f.write(envelopes.header_bytes() + env.take())
                env.on_disk = True
            else:
                files.append_bytes(path, env.take())
        except OSError:
            # a cache: without it readers build one from the CSV. A half file must not stay.
            env.disabled = True
            try:
                os.unlink(path)
            except OSError:
                pass

    def _finish_envelopes(self) -> None:
        """At close: each envelope's partial last block, so it covers the whole CSV."""
        for env in self._envelopes.values():
            if env is not None and not env[0].disabled and (env[0].on_disk or env[0].n >= envelopes.START_POINTS):
                env[0].finish()
                self._envelope_write(*env)

    def _count(self, name: str, n: int, total: float, finite: int, lo: float, hi: float, last: float,
               last_step: float, last_time: float, pieces: list[array[float]] | None = None,
               formatted: Formatted | None = None) -> Callable[[], None]:
        """The statistics update of a written part: summary.json and the envelope count only
        what is on disk."""
        key = self._prefix + name

        def done() -> None:
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = SeriesStats()
            stats.add(n, total, finite, lo, hi, last, last_step, last_time)
            self._summary_dirty = True
            env = self._envelopes.get(name)
            if env is not None and pieces is not None and formatted is not None and not env[0].disabled:
                builder = env[0]
                for col, (data, p_total, p_finite, p_lo, p_hi) in zip(pieces, formatted):
                    builder.add(col, len(data), p_total, p_finite, p_lo, p_hi)
                self._envelope_write(builder, env[1])

        return done

    def _flush_console(self) -> None:
        # Bounded for the same reason as the tee's drain (a signal in the middle of a print).
        if not self._console_lock.acquire(timeout=1.0):
            return
        try:
            if not self._console:
                return
            text = "".join(self._console)
            self._console.clear()
        finally:
            self._console_lock.release()
        self._append(self._console_path, text.encode("utf-8", errors="replace"),
                     "console line", layout.CONSOLE_LOG, text.count("\n") or 1)

    def append(self, path: Path, data: bytes, kind: str, name: str, count: int = 1,
               done: Callable[[], None] | None = None) -> None:
        """Append whole lines to `path` (on the writer thread), or hold them while the disk is full.

        Args:
            path: an append-only file of the run.
            data: whole lines.
            kind, name, count: what they are, as a loss is reported ("text record", "notes", 1).
            done: run once the lines are on disk.
        """
        self._append(path, data, kind, name, count, done)

    def _append(self, path: Path, data: bytes | list[bytes], kind: str, name: str, count: int,
                done: Callable[[], None] | None = None) -> None:
        held = self._held.get(path)
        fresh = held is None
        if held is None:
            try:
                files.append_bytes(path, data)  # all or nothing: a partial write is cut back off
            except OSError as e:
                self._disk_warning(path, e)
                held = self._held[path] = _Held()
            else:
                if done is not None:
                    done()
                return
        if isinstance(data, list):
            data = b"".join(data)
        if not fresh and len(held.data) + len(data) > _MAX_PENDING:  # keep file order behind earlier bytes
            self._lose(kind, name, count, f"the disk refused {path} and {_MAX_PENDING >> 20} MB of it "
                       "are held in memory already")
            return
        held.data.extend(data)
        held.parts.append((kind, name, count, done))

    def _retry_held(self) -> None:
        for path, held in list(self._held.items()):
            try:
                files.append_bytes(path, bytes(held.data))
            except OSError:
                continue
            del self._held[path]
            for _kind, _name, _n, done in held.parts:
                if done is not None:
                    done()

    def _drop_held(self) -> None:
        """At close: what the disk still refuses is lost; count it by kind and name."""
        held, self._held = self._held, {}
        for path, h in held.items():
            for kind, name, n, _done in h.parts:
                self._lose(kind, name, n, f"the disk still refused {path} at finish()")
        if self._summary_dirty:
            self._lose("file", layout.SUMMARY_JSON, 1, "the disk refused it at finish()")

    def _disk_warning(self, path: Path, e: OSError) -> None:
        self._warn_once("disk", f"labtrack: cannot write {path} ({e.strerror or e}); values are kept in "
                        "memory and written when the disk accepts them (up to 64 MB per file)")

    def _beat(self) -> None:
        now = time.time()
        if now - self._last_beat < self._heartbeat_seconds:
            return
        self._last_beat = now
        hb = self._heartbeat_path
        try:
            os.utime(hb)
        except FileNotFoundError:
            try:
                hb.write_bytes(b"")
            except OSError:
                pass
        except OSError:
            pass

    def _warn_once(self, kind: str, message: str) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        self._deliver(message)

    def _deliver(self, message: str) -> None:
        try:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        except Exception:
            # `-W error` turns it into an exception, which must not stop the writer: print it,
            # and warn again at the next flush (where the filter may allow it).
            self._undelivered.append(message)
            try:
                sys.stderr.write(message + "\n")
            except Exception:
                pass

    def warned(self) -> set[str]:
        return set(self._warned)


def load_summary(run_dir: Path) -> dict[str, Any]:
    data = read_json(run_dir / layout.SUMMARY_JSON, {})
    return data if isinstance(data, dict) else {}
