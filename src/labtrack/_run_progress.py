"""Lab's trial record on a Run: start step, progress snapshots, the live results block, sources.

The methods here are mixed into :class:`labtrack.Run` (like `_run_media.MediaMethods`):

* `run.save_progress(values, step=...)` appends a snapshot `{"step", "time", "values"}` to
  run.json's `progress` list (Lab's trials.yaml `progress`); the current values of indicators
  declared with `progress=True` (Lab's `is_progress`) join it;
* with `labtrack.init(annotate=True)` every snapshot also rewrites the script's results block
  (`_annotate`), so the script shows its latest progress table while it trains;
* `run.save_source(path)` copies more source files into `source/files/` (a run started outside
  git copies its script and the local modules it imported there by itself: `record_local_sources`).

Nothing here is on the hot path; a snapshot rewrites run.json atomically under the run's
metadata lock, as checkpoints do.
"""

from __future__ import annotations

import os
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from . import _records
from ._store import files, layout
from .errors import LabtrackTypeError, LabtrackValueError

# Caps of the source copies a run makes outside git (docs/format.md, source/files/).
SOURCE_MAX_FILES = 100  # at most this many files per run
SOURCE_TOTAL_BYTES = 10_000_000  # and this many bytes in all; each file at most
# LABTRACK_UNTRACKED_MAX_BYTES (default 1 MB), the cap of untracked files under git


def begin(meta: dict[str, Any], start_step: Any, annotate: Any, resumed_at: int | None) -> None:
    """Put `start_step` (and the annotate wish) into a new or resumed run's run.json fields.

    Args:
        meta: run.json's fields, before they are first written.
        start_step: the step the trial starts from (None: 0, or the step a resumed run
            continues at).
        annotate: True to keep the script's results block updated at each snapshot.
        resumed_at: the step a resumed run continues at; None for a new run.

    Raises:
        LabtrackTypeError, LabtrackValueError: a start_step that is not a whole number >= 0,
            or annotate not a bool.
    """
    if not isinstance(annotate, bool):
        raise LabtrackTypeError(f"annotate must be True or False, got {annotate!r}")
    if start_step is not None:
        meta["start_step"] = _records.check_step(start_step)
    elif resumed_at is not None:
        meta["start_step"] = resumed_at
    else:
        meta.setdefault("start_step", 0)
    if annotate:
        meta["annotate"] = True
        script_path(meta)  # refused now, at init(), not at the first snapshot
    else:
        meta.pop("annotate", None)


def script_path(meta: Mapping[str, Any]) -> Path:
    """The script a live run annotates (run.json command.script).

    Raises:
        LabtrackValueError: the run has no script (a notebook, `python -c`) or it belongs to
            an installed package.
    """
    from ._annotate import _installed

    cmd = meta.get("command") if isinstance(meta.get("command"), Mapping) else {}
    script = cmd.get("script") if cmd else None
    if not script or not str(script).endswith(".py"):
        raise LabtrackValueError(
            "annotate=True needs a .py script to write into, but this run has none "
            f"(script: {script!r}); run it as `python train.py`, or drop annotate=True")
    path = Path(script)
    if _installed(path):
        raise LabtrackValueError(
            f"annotate=True: {path} belongs to an installed package, not to your experiment; "
            "drop annotate=True")
    return path


def announce(run: Any) -> None:
    """One console line with the run id (Lab Workbook asked users to note it), then the
    params table when the run has a config; nothing on a rank that joins another's run."""
    from rich.text import Text

    from ._console._display import DISPLAY
    from ._console.tables import print_params

    line = Text("labtrack: run ")
    line.append(str(run.id), style="bold")
    line.append(f"  {run.experiment}  {run.dir}")
    DISPLAY.keep(line, soft_wrap=True)
    if run._params:
        print_params(run._params)


def _snapshot_value(key: str, value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    return _records.coerce_scalar(key, value)  # non-finite: stored as "nan"/"inf" (format.md)


class ProgressMethods:
    """Lab's trial record; mixed into Run, whose attributes these methods use."""

    __slots__ = ()

    # Provided by Run (declared for type checkers only).
    if False:  # pragma: no cover
        _meta: dict[str, Any]
        _meta_lock: Any
        _params: dict[str, Any]
        dir: Path
        id: str

        def _check_open(self) -> None: ...
        def _indicators(self) -> Any: ...
        @property
        def current_step(self) -> int | None: ...

    @property
    def start_step(self) -> int:
        """The step this trial started from (`init(start_step=...)`; a resumed run: the step
        it resumed at)."""
        return int(self._meta.get("start_step") or 0)

    @property
    def progress(self) -> list[dict[str, Any]]:
        """The progress snapshots saved so far (copies), oldest first."""
        with self._meta_lock:
            return [dict(s) for s in self._meta.get("progress") or []]

    def indicator(self, name: str, window: int | None = None, histogram: bool = False,
                  print: bool = True, progress: bool = False) -> None:  # noqa: A002 - the public keyword
        """Declare how an indicator is summarised (moving average window, histogram, printed).

        Args:
            name, window, histogram, print: see `_console.indicators.Indicators.indicator`.
            progress: its latest written value joins every `save_progress` snapshot (Lab's
                `is_progress`).

        Example:
            >>> run.indicator("reward", window=10, progress=True)
        """
        self._indicators().indicator(name, window=window, histogram=histogram, print=print,
                                     progress=progress)

    def save_progress(self, values: Mapping[str, Any] | None = None, step: int | None = None) -> dict[str, Any]:
        """Append a progress snapshot to run.json's `progress` (Lab's `save_progress`).

        Args:
            values: name -> number; the latest values of `progress=True` indicators are
                added (a name given here wins).
            step: the global step (default: the run's current step, or its start step
                before anything was logged).

        Returns:
            The snapshot: `{"step", "time", "values"}`.

        Raises:
            LabtrackTypeError: values not a mapping, or a value that is not a number.
            LabtrackValueError: a bad step, or nothing to record.
            RunStateError: the run is finished.

        Example:
            >>> run.save_progress({"accuracy": 0.91, "test_loss": 0.3}, step=global_step)
        """
        self._check_open()
        if values is not None and not isinstance(values, Mapping):
            raise LabtrackTypeError(f"save_progress() takes a dict of name -> number, got {type(values).__name__}")
        merged: dict[str, Any] = {}
        indicators = getattr(self, "_indicators_obj", None)
        if indicators is not None:
            merged.update(indicators.progress_values())
        for key, value in (values or {}).items():
            if not isinstance(key, str):
                raise LabtrackTypeError(f"progress names must be str, got {type(key).__name__} {key!r}")
            merged[key] = _snapshot_value(key, value)
        if not merged:
            raise LabtrackValueError(
                "save_progress() has nothing to record: pass values, or declare an indicator "
                "with progress=True and write() it first")
        if step is None:
            current = self.current_step
            at = self.start_step if current is None else current
        else:
            at = _records.check_step(step)
        snap = {"step": at, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "values": merged}
        _records.check_text(files.dumps(snap), "progress snapshot")
        with self._meta_lock:  # also orders the script's rewrites when threads snapshot at once
            self._meta.setdefault("progress", []).append(snap)
            files.atomic_write_json(self.dir / layout.RUN_JSON, self._meta)
            if self._meta.get("annotate"):
                self._annotate_script(dict(self._meta))
        return snap

    def _annotate_script(self, meta: dict[str, Any]) -> None:
        """Rewrite the script's results block; a failure warns (training goes on)."""
        from . import _annotate

        try:
            path = script_path(meta)
            block = _annotate.render_block(meta, _annotate.flat(self._params), None)
            _annotate.annotate_file(path, block)
        except (LabtrackValueError, OSError) as e:
            warnings.warn(f"labtrack: run {self.id} could not update the results block of its "
                          f"script: {e}", RuntimeWarning, stacklevel=3)

    def save_source(self, path: str | os.PathLike[str]) -> list[Path]:
        """Copy a source file, or the files of a folder, into the run's source/files/
        (ML-Logger's `log_file(__file__)`): a path under the script's folder keeps its place
        relative to it, any other file goes by its name.

        Returns:
            The copies' paths inside the run directory.

        Raises:
            LabtrackValueError: the path does not exist.
            RunStateError: the run is finished.

        Example:
            >>> run.save_source("models/resnet.py")
        """
        self._check_open()
        src = Path(path).absolute()
        if not src.exists():
            raise LabtrackValueError(f"source {str(src)!r} does not exist; pass a file or folder to save")
        chosen = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        base = _script_dir(self._meta)
        pairs = [(_relname(p, base, src), p) for p in chosen]
        return copy_sources(self.dir, pairs, _settings_cap())


def _settings_cap() -> int:
    from . import _settings

    return int(_settings.get("untracked_max_bytes"))


def _script_dir(meta: Mapping[str, Any]) -> Path | None:
    cmd = meta.get("command") if isinstance(meta.get("command"), Mapping) else None
    script = cmd.get("script") if cmd else None
    return Path(script).resolve().parent if script else None


def _relname(p: Path, base: Path | None, given: Path) -> str:
    resolved = p.resolve()
    if base is not None and resolved.is_relative_to(base):
        return resolved.relative_to(base).as_posix()
    if given.is_dir():
        return (Path(given.name) / p.relative_to(given)).as_posix()
    return p.name


def local_modules(script: Path, exclude: Path) -> list[tuple[str, Path]]:
    """The script and the modules in sys.modules whose files lie under its folder (not in
    an installed environment, not under the runs' root `exclude`), as (relative name, path)."""
    from ._annotate import _installed

    base = script.resolve().parent
    found: dict[str, Path] = {}
    candidates = [script] + [Path(f) for m in list(sys.modules.values())
                             if isinstance(f := getattr(m, "__file__", None), str)]
    excluded = exclude.resolve()
    for f in candidates:
        try:
            p = f.resolve()
        except OSError:
            continue
        if (p.suffix != ".py" or not p.is_relative_to(base) or p.is_relative_to(excluded)
                or _installed(p) or not p.is_file()):
            continue
        found.setdefault(p.relative_to(base).as_posix(), p)
    return sorted(found.items())


def copy_sources(run_dir: Path, pairs: list[tuple[str, Path]], cap: int) -> list[Path]:
    """Copy `(relative name, file)` pairs into source/files/, each at most `cap` bytes and in
    all at most SOURCE_MAX_FILES files and SOURCE_TOTAL_BYTES bytes (with those already
    there); what is left out is listed in source/files/SKIPPED.txt."""
    base = run_dir / layout.SOURCE_FILES_DIR
    have = [p for p in base.rglob("*") if p.is_file() and p.name != layout.SKIPPED_TXT] if base.is_dir() else []
    count, total = len(have), sum(p.stat().st_size for p in have)
    out, skipped = [], []
    for rel, src in pairs:
        try:
            size = src.stat().st_size
            dst = base / rel
            if size > cap:
                skipped.append(f"{rel}\t{size} bytes, over the cap of {cap} bytes per file")
                continue
            if count >= SOURCE_MAX_FILES or total + size > SOURCE_TOTAL_BYTES:
                skipped.append(f"{rel}\t{size} bytes, over the total of {SOURCE_TOTAL_BYTES} bytes "
                               f"or {SOURCE_MAX_FILES} files")
                continue
            existed = dst.is_file()
            files.atomic_write_bytes(dst, src.read_bytes())
            if not existed:
                count, total = count + 1, total + size
            out.append(dst)
        except OSError as e:
            skipped.append(f"{rel}\tunreadable ({e.strerror or e})")
    if skipped:
        note = base / layout.SKIPPED_TXT
        old = note.read_text(encoding="utf-8") if note.is_file() else ""
        files.atomic_write_bytes(note, (old + "\n".join(skipped) + "\n").encode("utf-8"))
    return out


def record_local_sources(run_dir: Path, meta: Mapping[str, Any], root: Path, cap: int) -> None:
    """Outside git: copy the script and its local modules into source/files/."""
    cmd = meta.get("command") if isinstance(meta.get("command"), Mapping) else None
    script = cmd.get("script") if cmd else None
    if not script or not Path(script).is_file():
        return
    copy_sources(run_dir, local_modules(Path(script), root), cap)
