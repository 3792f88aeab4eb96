"""Mirror: a local copy of the runs under an object-store prefix, brought up to date cheaply.

`labtrack.open("s3://bucket/prefix")` and a server reading a bucket (`labtrack serve --root
s3://...`) read runs through an ordinary local folder that a :class:`Mirror` keeps equal to
the bucket. A sync costs, per run: one listing of the run's ``.labtrack/`` folder (its
manifest.json's ETag) and one of its deltas; then only the deltas not seen before are
fetched, and of each file only what is new: a whole file whose size or mtime changed, the
bytes of an append-only file past the local size (ranged GETs of its segments or its
compacted object). Segment objects are never listed.

The bucket is not trusted: every experiment and run name is checked to be one safe folder
name, every relpath from a manifest is checked (`check_run_relpath`) and resolved inside the
run's cache folder, and a segment's key is derived from (relpath, offset), never taken from
a manifest. A malformed or hostile entry is skipped and counted in `MirrorStats.refused`;
nothing is written outside `cache_dir`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._store import layout
from .._store.contain import relpath_in
from .._store.files import atomic_write_bytes, atomic_writer
from ..errors import LabtrackNameError
from . import manifest as mf
from .run import CorruptObject, ObjectRun
from .store import ObjectStore, check_key_part

STATE_DIR = ".labtrack/mirror"  # under cache_dir: what each run's sync saw (deltas, ETags)
CHUNK = 8 << 20


@dataclass
class MirrorStats:
    """What one :meth:`Mirror.sync` did."""

    runs: int = 0  # runs in the bucket
    runs_changed: int = 0  # runs whose manifest changed since the last sync
    objects_fetched: int = 0  # GETs of data and manifests (listings not counted)
    bytes_fetched: int = 0
    listings: int = 0
    removed: int = 0  # runs gone from the bucket, removed from the cache
    refused: list[str] = field(default_factory=list)  # hostile or malformed entries skipped


class Mirror:
    """Keeps `cache_dir` equal to the runs under an object-store prefix.

    Args:
        url: ``s3://bucket/prefix`` (or another fsspec URL).
        cache_dir: the local folder (a labtrack root: ``<experiment>/<run-id>/``).
        store: an opened store to use (default: opened for `url`).

    Example:
        >>> m = Mirror("s3://lab/runs", Path("~/.cache/labtrack/mirror/s3/lab/runs").expanduser())
        >>> m.sync().bytes_fetched
    """

    def __init__(self, url: str, cache_dir: str | os.PathLike[str], *, store: ObjectStore | None = None) -> None:
        self.store = store or ObjectStore(url)
        self.cache = Path(cache_dir).absolute()
        self.cache.mkdir(parents=True, exist_ok=True)

    # -- listing

    def _ls_dirs(self, path: str, stats: MirrorStats) -> list[str]:
        stats.listings += 1
        try:
            entries = self.store.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]

    def runs(self, stats: MirrorStats | None = None) -> list[tuple[str, str]]:
        """(experiment, run id) of every run folder under the prefix (names checked)."""
        st = stats or MirrorStats()
        out = []
        for exp in self._ls_dirs(self.store.path(""), st):
            if not _safe(exp, "experiment folder", st):
                continue
            for rid in self._ls_dirs(self.store.path(exp), st):
                if _safe(rid, "run folder", st):
                    out.append((exp, rid))
        return out

    # -- syncing

    def sync(self) -> MirrorStats:
        """Bring the cache up to date with the bucket; returns what it cost.

        Raises:
            OSError and the back end's errors: the bucket cannot be read.
        """
        stats = MirrorStats()
        found = self.runs(stats)
        stats.runs = len(found)
        for exp, rid in found:
            self._sync_run(exp, rid, stats)
        self._remove_gone({f"{e}/{r}" for e, r in found}, stats)
        return stats

    def _state_path(self, exp: str, rid: str) -> Path:
        return self.cache / STATE_DIR / exp / f"{rid}.json"

    def _load(self, exp: str, rid: str) -> dict[str, Any]:
        try:
            doc = json.loads(self._state_path(exp, rid).read_bytes())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _sync_run(self, exp: str, rid: str, stats: MirrorStats, retry: bool = True) -> None:
        run = ObjectRun(self.store, exp, rid, writer="mirror")
        saved = self._load(exp, rid)
        stats.listings += 1
        try:
            meta_entries = run.fs.ls(run.path(mf.META), detail=True)
        except FileNotFoundError:
            meta_entries = []
        etag = next((str(e.get("ETag") or e.get("etag") or e.get("size")) for e in meta_entries
                     if e["name"].rstrip("/").endswith("/" + mf.MANIFEST)), None)
        stats.listings += 1
        names = run.delta_names()
        if etag == saved.get("etag") and names == saved.get("deltas") and \
                (self.cache / exp / rid / layout.RUN_JSON).exists():
            return  # nothing changed since the last sync
        stats.runs_changed += 1
        state = mf.RunState()
        if etag is not None:
            data = run.read_compacted()
            if data is not None:
                stats.objects_fetched += 1
                stats.bytes_fetched += len(data)
                mf.apply_compacted(state, mf.parse(data))
        consumed = set(state.consumed)
        known: dict[str, Any] = saved.get("parsed") if isinstance(saved.get("parsed"), dict) else {}  # type: ignore[assignment]
        known = {k: v for k, v in known.items() if k in names}
        todo = [n for n in names if n not in consumed and n not in known]
        if todo:
            got = run.fs.cat([run.path(f"{mf.DELTAS}/{n}") for n in todo], on_error="omit")
            for p, body in got.items():
                stats.objects_fetched += 1
                stats.bytes_fetched += len(body)
                name = p.rstrip("/").rsplit("/", 1)[-1]
                known[name] = mf.parse_delta(name, body)
        for n in names:
            if n not in consumed and n in known:
                mf.apply_delta(state, n, known[n])
        stats.refused += [f"{exp}/{rid}: {p}" for p in state.problems]
        target = self.cache / exp / rid
        try:
            self._fetch(run, state, target, stats)
        except FileNotFoundError:
            if retry:  # compacted while we read: the plain objects hold everything now
                self._sync_run(exp, rid, stats, retry=False)
            return
        keep = {n: known[n] for n in names if n in known and n not in consumed}
        sp = self._state_path(exp, rid)
        sp.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(sp, json.dumps({"etag": etag, "deltas": names, "parsed": keep}).encode())

    def _fetch(self, run: ObjectRun, state: mf.RunState, target: Path, stats: MirrorStats) -> None:
        target.mkdir(parents=True, exist_ok=True)
        # run.json last: a reader that sees the run sees its other files too.
        for rel in sorted(state.files, key=lambda r: r == layout.RUN_JSON):
            f = state.files[rel]
            try:
                local = relpath_in(target, rel, "file path")
            except LabtrackNameError as e:
                stats.refused.append(f"{run.rel}: {e}")
                continue
            try:
                st: os.stat_result | None = os.stat(local)
            except OSError:
                st = None
            if f.append:
                self._fetch_append(run, rel, f, local, st, stats)
            elif st is None or st.st_size != f.size or (f.mtime_ns and st.st_mtime_ns != f.mtime_ns):
                self._fetch_whole(run, rel, f, local, stats)

    def _fetch_append(self, run: ObjectRun, rel: str, f: mf.FileState, local: Path,
                      st: os.stat_result | None, stats: MirrorStats) -> None:
        have = st.st_size if st is not None else 0
        end = f.end
        if have == end:
            return
        if have > end:  # the bucket holds less than we do (rewritten): start over
            local.unlink()
            have = 0
        local.parent.mkdir(parents=True, exist_ok=True)
        with open(local, "ab") as out:
            for piece in f.pieces():
                off, length = piece[0], piece[1]
                lo, hi = max(off, have), off + length
                if lo >= hi:
                    continue
                try:
                    data = run.read_range(rel, piece, lo, hi)
                except CorruptObject as e:  # keep what is contiguous, say so
                    stats.refused.append(str(e))
                    return
                stats.objects_fetched += 1
                stats.bytes_fetched += len(data)
                if len(data) != hi - lo:  # a short object: keep what is contiguous, stop
                    out.write(data)
                    return
                out.write(data)
                have = hi

    def _fetch_whole(self, run: ObjectRun, rel: str, f: mf.FileState, local: Path,
                     stats: MirrorStats) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with atomic_writer(local) as out, run.fs.open(run.path(rel), "rb") as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                n += len(chunk)
        stats.objects_fetched += 1
        stats.bytes_fetched += n
        if f.mtime_ns:
            os.utime(local, ns=(f.mtime_ns, f.mtime_ns))

    def _remove_gone(self, present: set[str], stats: MirrorStats) -> None:
        """Remove cached runs the bucket no longer has (only folders this mirror made: each
        has a state file)."""
        base = self.cache / STATE_DIR
        if not base.is_dir():
            return
        for sf in base.glob("*/*.json"):
            exp, rid = sf.parent.name, sf.stem
            if f"{exp}/{rid}" in present:
                continue
            shutil.rmtree(self.cache / exp / rid, ignore_errors=True)
            sf.unlink(missing_ok=True)
            stats.removed += 1


def _safe(name: str, what: str, stats: MirrorStats) -> bool:
    if name.startswith("."):
        return False  # labtrack's own folders (.labtrack, .jobs, .trash): not runs
    try:
        check_key_part(name, what)
        return True
    except LabtrackNameError as e:
        stats.refused.append(str(e))
        return False
