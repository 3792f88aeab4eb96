"""What one server holds: its root, the run index, the series cache, and the run lookup.

Every file the server reads is found through :meth:`ServerState.run_dir`, which answers a
:class:`~labtrack._store.rundir.RunDir`: a run is looked up among the directories that exist
(a request never builds a path from an id), and every file is read through the RunDir, whose
paths are checked to resolve, symlinks followed, inside the run directory.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .._store import layout
from .._store.contain import is_contained
from .._store.rundir import RunDir, duration, find_run
from ..errors import RunNotFoundError
from .envelope import EnvelopeCache
from .series import SeriesCache
from .series_store import SeriesStore

log = logging.getLogger("labtrack.server")
#: How many of the newest runs a never-indexed root's first request waits for.
PREFILL = 100
#: Runs a never-indexed root's filling thread stores per transaction.
FILL_CHUNK = 2000
ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class ServerState:
    """The shared state of one app (kept in `app.state.labtrack`).

    Args:
        root: the folder of experiments; it may not exist yet.
        auth: `auth(request, scope)` refuses a request by raising HTTPException(401/403).
        clock: the current Unix time (tests may pass their own).
    """

    def __init__(self, root: str | os.PathLike[str], auth: Callable[[Any, str], None] | None = None,
                 clock: Callable[[], float] = time.time, index_url: str | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        #: where the run index lives: None (SQLite under the root) or postgresql://...
        self.index_url = index_url
        #: keyword arguments of the index (`mirrored=True` for servers sharing a bucket)
        self.index_options: dict[str, Any] = {}
        #: shared storage of a server over a bucket (`_server.shared.SharedStorage`), or None
        self.storage: Any = None
        self.auth = auth
        self.clock = clock
        self.series = SeriesCache(store=SeriesStore(self.root / layout.INDEX_DIR / "series"))
        self.envelopes = EnvelopeCache(self.root / layout.INDEX_DIR / "lod")
        self.shutdown = threading.Event()  # set when the server stops: live streams end
        self._index: Any = None
        self._index_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._filler: threading.Thread | None = None
        #: runs found but not yet in the index while a never-indexed root is read (the
        #: newest PREFILL are there at once; queries answer from what is there)
        self.pending = 0
        self._indexed_sig: tuple[Any, ...] | None = None
        self._live: dict[str, tuple[Any, ...]] = {}  # running run dir -> its files' stats
        self._refreshed_at = 0.0
        self._warned = False
        self.generation = 0  # counts index changes; cached answers of older ones are stale
        self._cache_lock = threading.Lock()
        self._query_cache: dict[tuple[Any, ...], tuple[int, float, Any]] = {}  # gen, expiry, value
        self._runs: dict[str, RunDir] = {}
        # run dir -> (signature of its files, duration): a crashed run's last sign of life
        # costs a listing of its series; it changes only when its files do
        self._ended: dict[str, tuple[tuple[Any, ...], float | None]] = {}
        self._runs_lock = threading.Lock()

    def index(self) -> Any:
        """The run index (labtrack._index.Index), kept current without slowing requests.

        The first call builds it; later calls refresh it first only when runs were added or
        removed (a few folder stats tell) or a running run's files changed (three stats per
        running run; at most once a second), so the list agrees with the live stream. A
        background thread re-reads other changes every few seconds: a request never waits
        for the files of 10,000 finished runs to be checked.
        """
        with self._index_lock:
            if self._index is None:
                from .._index_pg import open_index

                self._index = open_index(self.root, self.index_url, **self.index_options)
                # Never indexed: answer from the newest runs while the rest is read.
                self.pending = max(0, (self._index.prefill(PREFILL) or 0) - PREFILL)
                if self.pending and not self.shutdown.is_set():
                    self._filler = threading.Thread(target=self._fill, args=(self._index,),
                                                    name="labtrack-index-fill", daemon=True)
                    self._filler.start()
            index = self._index
            if self._refresher is None and not self.shutdown.is_set():
                self._refresher = threading.Thread(target=self._refresh_loop,
                                                   name="labtrack-index", daemon=True)
                self._refresher.start()
        if self.pending:
            return index  # the filling thread refreshes; a request does not wait for it
        sig = self._root_sig()
        if sig != self._indexed_sig:
            self._refresh(index, sig)
        elif (time.monotonic() - self._refreshed_at > 1.0
              and any(_run_sig(d) != old for d, old in list(self._live.items()))):
            self._refresh(index, sig)
        return index

    def _root_sig(self) -> tuple[Any, ...]:
        parts: list[Any] = []
        try:
            with os.scandir(self.root) as entries:
                for e in entries:
                    if not e.name.startswith(".") and e.is_dir():
                        st = e.stat()
                        parts.append((e.name, st.st_ino, st.st_mtime_ns))
        except OSError:
            return ()
        return tuple(sorted(parts))

    def _refresh(self, index: Any, sig: tuple[Any, ...] | None = None, **how: Any) -> None:
        sig = self._root_sig() if sig is None else sig
        result = index.refresh(**how)
        # the runs stored as running (shown running or crashed): their files change next
        live: dict[str, tuple[Any, ...]] = {}
        for status in ("running", "crashed"):
            for hit in index.select(status=status, sort=None, parts=False):
                live[hit.dir] = _run_sig(hit.dir)
        with self._index_lock:
            self._indexed_sig = sig
            self._live = live
            self._refreshed_at = time.monotonic()
            if result.get("added") or result.get("updated") or result.get("removed"):
                self.generation += 1

    def _fill(self, index: Any) -> None:
        """Build the rest of a prefilled index, newest runs first, a chunk per transaction:
        `pending` counts down, requests see the index grow and then all of it.

        The generation (which ends cached answers) moves only at the end: while the index
        fills, a cached answer is recomputed when it expires (`cached_query`), so requests
        asking again and again cannot take the filling thread's time.
        """
        def progress(left: int) -> None:
            self.pending = max(left, 1)  # 0 only once the refresh is complete (below)

        try:
            self._refresh(index, chunk=FILL_CHUNK, progress=progress)
        except Exception as e:  # a background thread: report, never die silently
            if not self.shutdown.is_set():
                log.warning("building the run index failed: %s: %s", type(e).__name__, e)
        finally:
            with self._index_lock:
                self.pending = 0
                self.generation += 1

    def _refresh_loop(self) -> None:
        interval = 2.0
        while not self.shutdown.wait(interval):
            index = self._index
            if index is None:
                return
            if self.pending:
                continue  # the filling thread is at it
            t0 = time.monotonic()
            try:
                self._refresh(index)
            except Exception as e:  # a background thread: report, never die silently
                if not self._warned and not self.shutdown.is_set():
                    self._warned = True
                    log.warning("refreshing the run index failed: %s: %s", type(e).__name__, e)
            # keep refreshing from taking more than about a fifth of one core
            interval = max(2.0, 4 * (time.monotonic() - t0))

    def cached_query(self, key: tuple[Any, ...], compute: Callable[[], Any], ttl: float = 2.0) -> Any:
        """`compute()`, or its result for the same `key` while the index has not changed and
        the result is young: `ttl` seconds, or five times what computing it took (so paging
        through 10,000 sorted runs sorts once, however slow the machine)."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._query_cache.get(key)
            if hit is not None and hit[0] == self.generation and now < hit[1]:
                return hit[2]
        generation = self.generation
        value = compute()
        took = time.monotonic() - now
        with self._cache_lock:
            self._query_cache[key] = (generation, time.monotonic() + max(ttl, min(30.0, 5 * took)), value)
            while len(self._query_cache) > 16:
                self._query_cache.pop(next(iter(self._query_cache)))
        return value

    def close(self) -> None:
        """Stop the background refresh and release the index's database connections."""
        self.shutdown.set()
        for thread in (self._refresher, self._filler):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=3)  # a refresh of many runs may be under way: do not hang
        with self._index_lock:
            if self._index is not None:
                self._index.close()
                self._index = None

    def run_dir(self, run_id: str) -> RunDir:
        """The run with this exact id (found by `_store.rundir.find_run`: the one rule for
        which runs exist, so a run whose folder or run.json leads out of the root is none).

        Raises:
            RunNotFoundError: no such run (or an id that cannot be one).
        """
        if not isinstance(run_id, str) or not ID_PATTERN.fullmatch(run_id):
            raise RunNotFoundError(
                f"{run_id!r} is not a run id; ids look like 20261121-141503-k3f9qz "
                "(letters, digits, '-', '_' and '.')"
            )
        with self._runs_lock:
            found = self._runs.get(run_id)
        # A remembered run is used while it is still where it was and still inside the root
        # (its folder may have been replaced by a symlink since).
        if found is not None and (found.path / layout.RUN_JSON).is_file() \
                and is_contained(found.path, self.root) \
                and is_contained(found.path / layout.RUN_JSON, found.path):
            return found
        found = find_run(self.root, run_id)
        if found is None:
            raise RunNotFoundError(f"no run with id {run_id!r} under {self.root}")
        with self._runs_lock:
            self._runs[run_id] = found
        return found

    def changed(self, run: RunDir) -> None:
        """Tell the index that the server has just rewritten a run's files (an edit from
        the browser), so the next listing shows the change instead of waiting for the
        background refresh. Only an optimisation: a failure leaves it to that refresh."""
        try:
            relpath = os.path.relpath(run.path, self.root)
            index = self.index()
            if index.store(relpath):
                with self._index_lock:
                    self.generation += 1
        except Exception as e:  # sqlite busy, a run that moved: the refresh will see it
            log.debug("could not store the edited run %s in the index: %s", run.id, e)

    def ended_duration(self, row: dict[str, Any], now: float) -> float | None:
        """The duration of a run that is over but never wrote its end (crashed, killed):
        until its last sign of life (`_store.rundir.duration`), remembered while its
        run.json, params.json, summary.json and heartbeat stay as they are.

        Raises:
            OutsideRootError: the run's folder leads outside the root.
        """
        folder = str(row["dir"])
        sig = _run_sig(folder) + (_stat_sig(os.path.join(folder, layout.HEARTBEAT)),)
        hit = self._ended.get(folder)
        if hit is not None and hit[0] == sig:
            return hit[1]
        value = duration(row, RunDir(folder, self.root), now)
        if len(self._ended) > 10_000:
            self._ended.clear()
        self._ended[folder] = (sig, value)
        return value


def _stat_sig(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _run_sig(run_dir: str) -> tuple[Any, ...]:
    """What changes when a run's run.json, params.json or summary.json is rewritten."""
    return tuple(_stat_sig(os.path.join(run_dir, name))
                 for name in (layout.RUN_JSON, layout.PARAMS_JSON, layout.SUMMARY_JSON))
