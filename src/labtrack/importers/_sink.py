"""What every importer writes through: one `Import` per call, one `ImportedRun` per source run.

An importer reads its tool's files and, for each run it finds, calls `Import.run(...)`: that
returns None when an earlier import of the same source run finished and the source has not
changed since (nothing is written, nothing duplicated), and otherwise an `ImportedRun` whose
methods take the source's points with their own steps and wall times. `ImportedRun.done()`
marks the run complete; a run left incomplete (the import was killed) is removed and written
again by the next import. See docs/import-export.md.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._store import imported
from ..errors import LabtrackError, LabtrackValueError


class SourceError(LabtrackError):
    """A source that cannot be read: the message names the file and what is wrong with it."""


def fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Size and modification time of the files a source run is made of: a re-import compares
    it to tell "unchanged, skip" from "grown since, import again"."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class Import:
    """One import call: the root it writes to, the tool, and its progress and counts.

    Args:
        tool: "tensorboard", "mlflow", "wandb", "trackio" or "dvclive".
        version: the tool's version that wrote the source, when known (else the reader's).
        source: the path or URI the user gave.
        root: the labtrack root (default: LABTRACK_ROOT or ./labtrack).
        progress: show a progress bar (default: when stderr is a terminal).
    """

    def __init__(self, tool: str, source: str | os.PathLike[str], *, root: str | os.PathLike[str] | None,
                 version: str | None = None, progress: bool | None = None) -> None:
        from .._settings import get

        self.tool = tool
        self.version = version
        self.source = str(source)
        self.root = Path(str(get("root", None if root is None else os.fspath(root)))).resolve()
        self.ids: list[str] = []       # every run of this source, imported now or before
        self.new: list[str] = []       # runs written by this call
        self.skipped: list[str] = []   # already imported and unchanged
        self.points = 0
        self.notes: list[str] = []     # things the user should know, each said once
        self.started = time.perf_counter()
        self._bar = _Bar(progress)

    def run(self, source_id: str, *, experiment: str, name: str | None = None,
            started: float | None = None, params: Mapping[str, Any] | None = None,
            tags: Iterable[str] = (), comment: str | None = None, group: str | None = None,
            job_type: str | None = None, fingerprint: str = "", extra: Mapping[str, Any] | None = None
            ) -> ImportedRun | None:
        """Begin one source run, or None when it was imported before and has not changed.

        Args:
            source_id: what identifies the run in its tool (MLflow's run id, a TensorBoard run
                folder's path relative to the logdir, ...): the same on every import.
            started: the source run's start time (seconds since the epoch).
            fingerprint: `fingerprint(files)` of the source run: a changed one re-imports.
            extra: more of "imported_from" (e.g. {"path": the run's own folder}).
        """
        from .. import Run

        run_id = imported.imported_run_id(self.tool, source_id, started)
        self.ids.append(run_id)
        found, current = self._previous(run_id, source_id, fingerprint)
        if current:
            self.skipped.append(run_id)
            self._bar.advance(skipped=True)
            return None
        if found is not None:
            imported.discard(found)  # cut off half way, or the source has grown: write it again
        origin = {"tool": self.tool, "version": self.version, "source": self.source,
                  "source_id": source_id, "fingerprint": fingerprint, **(extra or {})}
        run = Run(experiment, name, config=dict(params or {}), comment=comment, tags=list(tags),
                  root=self.root, run_id=run_id, capture_git=False, capture_console=False,
                  system=False, group=group, job_type=job_type, _announce=False,
                  _meta={"imported_from": {**origin, "complete": False}})  # ours from its first write
        return ImportedRun(self, run, origin, started)

    def _previous(self, run_id: str, source_id: str, fingerprint: str) -> tuple[Any, bool]:
        """The run an earlier import left under `run_id` (or None), and whether it is complete
        and of the same source files (then there is nothing to do)."""
        found, origin = imported.previous(self.root, run_id)
        if found is None:
            return None, False
        if origin is None:
            raise LabtrackValueError(
                f"run {run_id} in {self.root} was not imported from {self.tool}, but the import of "
                f"{source_id!r} would need its id; move that run (labtrack mv) and try again")
        return found, bool(origin.get("complete")) and origin.get("fingerprint") == fingerprint

    def is_current(self, source_id: str, started: float | None, fingerprint: str) -> bool:
        """Whether `run(source_id, started=started, fingerprint=fingerprint)` would find the run
        imported before and unchanged, so a reader can skip decoding the source run at all."""
        return self._previous(imported.imported_run_id(self.tool, source_id, started), source_id,
                              fingerprint)[1]

    def note(self, message: str) -> None:
        """Something about the source the user should know (a cut-off file, values skipped):
        kept once, shown after the summary."""
        if message not in self.notes:
            self.notes.append(message)

    def summary(self) -> str:
        """One line: how many runs were imported, skipped, and how many points, in how long."""
        seconds = time.perf_counter() - self.started
        skipped = f", {len(self.skipped)} already imported" if self.skipped else ""
        return (f"imported {len(self.new)} run{'s' if len(self.new) != 1 else ''} from {self.tool} "
                f"({self.points:,} points){skipped} in {seconds:.1f} s into {self.root}"
                + "".join(f"; note: {n}" for n in self.notes))

    def close(self) -> None:
        self._bar.close()


class ImportedRun:
    """One source run being written. Points keep their own step and wall time."""

    def __init__(self, owner: Import, run: Any, origin: dict[str, Any], started: float | None) -> None:
        self.owner, self.run, self.origin, self.started = owner, run, origin, started
        self.last_time: float | None = None

    @property
    def id(self) -> str:
        return str(self.run.id)

    @property
    def dir(self) -> Path:
        return Path(self.run.dir)

    def scalars(self, values: Mapping[str, Any], step: int, time: float | None = None) -> None:
        """Numbers (and labtrack media objects) at one step, with the source's wall time."""
        self.run.log(values, step=step, time=time)
        self.owner.points += len(values)
        if time is not None and (self.last_time is None or time > self.last_time):
            self.last_time = time
        self.owner._bar.points(len(values))

    def series(self, name: str, steps: Any, values: Any, times: Any) -> None:
        """Every point of one series at once, as numpy arrays in the source's order: the fast
        path for long series (a million points in a fraction of a second).

        Raises:
            SourceError: a step that is not a whole number in [0, 2**53), or a time that is not
                a finite number of seconds after 1970.
        """
        import numpy as np

        steps = np.asarray(steps)
        times = np.asarray(times, dtype=np.float64)
        if len(steps) and (steps.min() < 0 or steps.max() >= 2 ** 53):
            raise SourceError(f"series {name!r}: steps must be whole numbers in [0, 2**53), got "
                              f"{steps.min()}..{steps.max()}")
        if len(times) and not (np.isfinite(times).all() and (times > 0).all()):
            bad = times[~(np.isfinite(times) & (times > 0))][0]
            raise SourceError(f"series {name!r}: a wall time of {bad!r} is not a time after 1970")
        triples = np.empty((len(steps), 3), dtype=np.float64)
        triples[:, 0] = steps
        triples[:, 1] = values
        triples[:, 2] = times
        chunk = 1 << 16
        for i in range(0, len(triples), chunk):
            part = triples[i:i + chunk]
            self.run._log_points(name, part.tobytes())
            self.owner.points += len(part)
            self.owner._bar.points(len(part))
        if len(times):
            t = float(times.max())
            if self.last_time is None or t > self.last_time:
                self.last_time = t

    def done(self, *, status: str = "finished", ended: float | None = None,
             fields: Mapping[str, Any] | None = None, env: dict[str, Any] | None = None) -> str:
        """Finish the run and mark it complete: its own start and end times and status.

        Args:
            status: "finished", "failed", "crashed" or "killed" (what the source said).
            ended: the source's end time (default: its last point's wall time).
            fields: more run.json keys: "host", "user", "command", "git", "comment", ...
            env: the source machine's description (written as env.json), when it has one.
        """
        self.run.finish()
        imported.mark(self.dir, self.origin, complete=True, started=self.started,
                      ended=ended if ended is not None else self.last_time, status=status,
                      fields=dict(fields or {}), env=env)
        self.owner.new.append(self.id)
        self.owner._bar.advance()
        return self.id

    def write_file(self, relpath: str, data: bytes) -> Path:
        """A file kept as the source had it, e.g. "artifacts/model.pt" (inside the run only)."""
        return imported.write_file(self.dir, relpath, data)

    def copy_file(self, relpath: str, source: str | os.PathLike[str]) -> Path:
        """`write_file` of a file on disk, copied in chunks (a model of gigabytes is never read
        into memory at once)."""
        return imported.copy_file(self.dir, relpath, Path(source))


class _Bar:
    """A rich progress line on a terminal (runs and points so far); silent when piped."""

    def __init__(self, show: bool | None) -> None:
        if show is None:
            show = sys.stderr.isatty()
        self._progress: Any = None
        self._runs: Any = None
        self._n_points = self._n_runs = 0
        self._shown = 0.0
        if show:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._progress.start()
            self._runs = self._progress.add_task("runs: 0", total=None)

    def points(self, n: int) -> None:
        self._n_points += n
        if self._progress is not None and self._n_points & 0xFFF < n:  # every ~4096 points
            now = time.monotonic()
            if now - self._shown > 0.2:
                self._show(now)

    def advance(self, skipped: bool = False) -> None:
        self._n_runs += 1
        if self._progress is not None:
            self._show(time.monotonic())

    def _show(self, now: float) -> None:
        self._shown = now
        self._progress.update(self._runs, completed=self._n_runs,
                              description=f"importing: {self._n_runs} runs, {self._n_points:,} points")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def check_source(path: str | os.PathLike[str], what: str) -> Path:
    """The source path, or a clear error naming it when it does not exist."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceError(f"{what} {str(path)!r} does not exist")
    return p


def still_image(source: bytes | Path, what: str) -> Any:
    """`source` (an image file or its bytes) as a loaded PIL image in a mode labtrack stores
    (L, RGB or RGBA; a palette or other mode is converted).

    Raises:
        SourceError: PIL cannot read it; the message starts with `what` (the file, or the
            tag and step).
    """
    import io

    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()
            pic = im.copy()
    except (UnidentifiedImageError, OSError) as e:
        raise SourceError(f"{what} is not an image PIL can read: {e}") from None
    if pic.mode not in ("L", "RGB", "RGBA"):
        pic = pic.convert("RGBA" if "A" in pic.getbands() else "RGB")
    return pic
