"""Run: the object a training script holds, and the one default run behind `labtrack.init()`.

The hot path is :meth:`Run.log`: it validates each value by type, appends one
`(step, value, time)` triple to the series' column with a single `array.fromlist` call (atomic
under the GIL, so no lock and no half-written point even when a signal interrupts it) and
returns. The writer thread (`_writer.Writer`) formats the columns in bulk and appends them to
disk. Where the C module `_hot` is built (see `_hot.c`), `Run.log` is its C version of the
common call, which falls back to the Python one here (`Run._log_py`) for everything else.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
import traceback
import warnings
from array import array
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Callable, Iterable

from . import _directions, _lifecycle, _records, _settings, _system
from ._names import NameSpace, check_name, slug
from ._run_extras import ExtrasMethods
from ._run_media import MediaMethods
from ._run_progress import ProgressMethods, announce, begin, record_local_sources
from ._store import create, files, layout
from ._store.reader import read_json
from ._writer import EAGER_VALUES, Writer, load_summary
from .errors import (
    GitStateError,
    LabtrackTypeError,
    LabtrackValueError,
    RunStateError,
)

_time = time.time
_coerce = _records.coerce_scalar
_MediaValue = _records.MediaValue
_PROVENANCE_WAIT_SECONDS = 30.0

try:
    if _settings.no_c():  # read once, at import: the class is built here
        raise ImportError("LABTRACK_NO_C is set")
    from ._hot import HotBase as _LogBase  # the C fast path of Run.log; see _hot.c

    HOT = True
except ImportError:  # no compiler at install time, or LABTRACK_NO_C=1: the Python path alone

    class _LogBase:  # type: ignore[no-redef]
        __slots__ = ("_cols", "_next_step", "_pending", "_eager_at")

    HOT = False


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


class _FinishedColumns(dict):  # type: ignore[type-arg]
    """The columns of a finished run: any log() call into them raises RunStateError."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def refuse(self) -> None:
        raise RunStateError(f"run {self.run_id} is finished; start a new run with labtrack.init()")

    def __getitem__(self, key: Any) -> Any:
        self.refuse()

    def get(self, key: Any, default: Any = None) -> Any:
        self.refuse()


class Run(ProgressMethods, MediaMethods, ExtrasMethods, _LogBase):
    """One run: a directory under the root, a writer thread, and the logging calls.

    Use :func:`labtrack.init` for the default run of a script; `Run(...)` works on its own
    and as a context manager (status "failed" with the traceback if the block raises).

    Example:
        >>> with labtrack.Run(experiment="mnist", config={"lr": 0.1}) as run:
        ...     run.log({"train/loss": 0.5})
    """

    # Slots make the attribute reads on the hot path cheaper.
    # `_cols`, `_next_step`, `_pending` (values logged since the writer last swapped the
    # columns) and `_eager_at` (the count that wakes the writer early) live in the base class
    # (C or Python), where log() updates them.
    __slots__ = ("root", "dir", "id", "experiment", "_cfg", "_closed", "_finished", "_finish_lock",
                 "_meta_lock", "_known", "_spaces", "_busy", "_activity", "_indicators_obj", "_shipper",
                 "_provenance_thread", "_capture", "_sync_timeout", "_index_on_finish", "_meta",
                 "_params", "_writer", "_job", "_extras", "_sampler", "__weakref__")

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        config: Any = None,
        comment: str | None = None,
        tags: Iterable[str] | None = None,
        seed: int | None = None,
        root: str | os.PathLike[str] | None = None,
        resume: str | None = None,
        capture_git: bool | None = None,
        capture_console: bool | None = None,
        require_clean_git: bool = False,
        remote: str | None = None,
        token: str | None = None,
        flush_seconds: float | None = None,
        parent: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        run_id: str | None = None,
        system: bool | None = None,
        start_step: int | None = None,
        annotate: bool = False,
        metrics: Mapping[str, str] | None = None,  # directions, "min"/"max" (labtrack.init's doc)
        _environ: Mapping[str, str] | None = None,
        _job: Any = None,
        _announce: bool = True,
        _meta: Mapping[str, Any] | None = None,  # more run.json keys from the start (an import's origin)
    ) -> None:
        env = os.environ if _environ is None else _environ

        cfg = _settings.resolve_run(
            {"root": None if root is None else os.fspath(root), "resume": resume, "parent": parent,
             "capture_git": capture_git, "capture_console": capture_console,
             "flush_seconds": flush_seconds, "remote": remote, "token": token, "system": system},
            environ=env)
        self._cfg = cfg  # the settings, resolved once (frozen)
        from ._objstore.spool import resolve_root  # s3://bucket/prefix: spool here, upload (cheap)

        objects, self.root = resolve_root(cfg.root, cfg.remote, env)
        self._closed = False
        self._finished = False
        self._finish_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._cols: dict[str, Callable[[list[float]], None]] = {}
        self._known: set[str] = set()
        # One per folder of named files: a name whose file would be another's folder is refused.
        self._spaces = {f: NameSpace(f) for f in layout.NAMED_DIRS}
        # One entry per Python-path log() call in flight (the C path is atomic): while any is,
        # the writer keeps every swapped-out column generation it may still append to.
        self._busy: list[None] = []
        self._activity = 0  # bumped by flush() and every record call (_check_open; see _at_exit)
        self._next_step = 0
        self._pending = 0
        self._eager_at = EAGER_VALUES
        self._indicators_obj: Any = None
        self._shipper: Any = None
        self._sampler: Any = None
        self._capture: Any = None
        self._sync_timeout = cfg.sync_timeout
        self._index_on_finish = cfg.index_on_finish
        self._job = _job  # a _ranks.Job under a distributed launcher (docs/distributed.md)
        joins = _job is not None and _job.joins  # rank N > 0 of a one-run job

        if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
            raise LabtrackValueError(f"experiment must be a non-empty str, got {experiment!r}")
        for label, value in (("name", name), ("comment", comment), ("group", group), ("job_type", job_type)):
            if value is not None and not isinstance(value, str):
                raise LabtrackTypeError(f"{label} must be a str, got {type(value).__name__}")
        tag_list = _records.check_tags(tags)
        directions = _directions.check_directions(metrics)
        if seed is not None:
            seed = _records.check_step(seed)  # a non-negative whole number, same rules
        params = _records.config_to_dict(config)
        resume = cfg.resume
        parent = cfg.parent
        capture_git = bool(cfg.capture_git)
        capture_console = bool(cfg.capture_console)
        # Every setting is resolved (and refused if bad) before anything is created.
        flush_s = float(cfg.flush_seconds)
        heartbeat_s = cfg.heartbeat_seconds
        queue_n = cfg.queue_size
        untracked_cap = cfg.untracked_max_bytes
        remote = cfg.remote
        token = cfg.token
        if remote:
            from ._remote.wire import check_url

            check_url(remote)

        from . import _provenance

        if require_clean_git:
            groot = _provenance.git_root(Path.cwd())
            dirty = _provenance.dirty_files(groot, exclude=self.root) if groot else []
            if dirty:
                shown = "\n  ".join(dirty[:50]) + ("\n  ..." if len(dirty) > 50 else "")
                raise GitStateError(
                    f"require_clean_git=True but the repository {groot} has {len(dirty)} "
                    f"uncommitted or untracked file(s):\n  {shown}\ncommit or stash them, or drop "
                    "require_clean_git"
                )

        now = _time()
        if resume and not joins:
            self.dir, meta = create.open_to_resume(self.root, resume, now, cfg.stale_seconds)
            self.id = meta["id"]
            self.experiment = meta.get("experiment", self.dir.parent.name)
            summary = load_summary(self.dir)
            # The system series' steps are seconds, not the script's steps.
            self._next_step = max((int(s.get("step", -1)) for k, s in summary.items()
                                   if isinstance(s, dict) and not _system.is_system_series(k)), default=-1) + 1
            old_params = read_json(self.dir / layout.PARAMS_JSON, {}) or {}
            params = {**old_params, **params}
            meta.update(status="running", ended=None, pid=os.getpid(), host=socket.gethostname(),
                        error=None)
            meta.setdefault("resumed", []).append(_iso(now))
            if comment is not None:
                meta["comment"] = comment
            if tags is not None:
                meta["tags"] = tag_list
            meta.update({k: v for k, v in (("group", group), ("job_type", job_type)) if v is not None})
            self._meta = meta
        else:
            summary = {}
            self.experiment = experiment or _default_experiment()
            if joins:
                self.id, self.dir, self._meta = _job.join(self.root, self.experiment, resume)
            else:
                self.id, self.dir = create.new_run_dir(self.root, self.experiment, now, run_id)
                self._meta = create.new_meta(
                    run_id=self.id, experiment=self.experiment, name=name, comment=comment, tags=tag_list,
                    started=_iso(now), seed=seed, parent=parent, user=_provenance.user_name(),
                    command=_provenance.command_info(), group=group, job_type=job_type)
                self._meta.update(_meta or {})
                if _job is not None:
                    fields = _job.fields(name, self.experiment)
                    if group is not None:  # the user's group wins over the job's
                        fields.pop("group", None)
                    self._meta.update(fields)
        self._params = params
        begin(self._meta, start_step, annotate, self._next_step if resume else None)  # Lab's trial
        if directions:  # a resumed run keeps what it declared before, the new names win
            self._meta["metrics"] = {**(self._meta.get("metrics") or {}), **directions}
        # Everything is encoded before anything is created: a bad string leaves no folder behind.
        for label, value in (("experiment", self.experiment), ("name", name), ("comment", comment),
                             ("group", group), ("job_type", job_type)):
            if value is not None:
                _records.check_text(value, label)
        for t in tag_list:
            _records.check_text(t, f"tag {t!r}")
        _records.check_text(files.dumps(params), "config")
        _records.check_text(files.dumps(self._meta), "run.json (the command line or environment)")
        if joins:
            _job.begin(self.dir)
        else:
            create.materialise(self.dir, self._meta, params, resumed=bool(resume))
            if _job is not None and _job.mode == "one-run":
                _job.publish(self.root, self.experiment, self.id)
        if resume:
            for folder, space in self._spaces.items():
                for rel in create.existing_names(self.dir, folder):
                    space.add_existing(rel)
        if seed is not None:
            _provenance.seed_everything(seed)

        self._writer = Writer(
            self.dir, self._swap_columns, in_flight=self._busy.__len__, pending=self._pending_values,
            flush_seconds=flush_s, heartbeat_seconds=heartbeat_s,
            queue_size=queue_n, run_id=self.id, summary=summary, rank=_job.rank if joins else 0,
        )
        self._writer.start()
        # Provenance (git diff, untracked files, packages) on its own thread: it is mostly
        # Python and subprocesses, the writer's formatting mostly C without the GIL, so on a
        # short run finish() waits for the longer of the two, not their sum. flush() and
        # finish() join it; its files are its own (source/, env.json) plus run.json's "git".
        self._provenance_thread: threading.Thread | None = None
        if not resume and not joins:  # rank 0 records the job's provenance
            self._provenance_thread = threading.Thread(
                target=self._writer._run_record,
                args=(lambda: self._record_provenance(capture_git, untracked_cap), "file", layout.ENV_JSON),
                name=f"labtrack-provenance-{self.id}", daemon=True)
            self._provenance_thread.start()
        if not joins and _announce:  # before the capture: console.log keeps what the script printed
            announce(self)  # the run id, and the params table of a config
        if capture_console:
            from ._capture import ConsoleCapture

            self._capture = ConsoleCapture(self._writer.write_console)
            self._capture.start()
        if remote or objects:
            from ._remote.shipper import start_for_run

            self._shipper = start_for_run(self.dir, remote, token, objects, slug(self.experiment), self.id,
                                          _job.rank if _job is not None and _job.mode == "one-run" else None)
            self._writer.after_flush.append(self._shipper.notify)
        if cfg.system:  # docs/system.md; it appends through the columns, never moving the step
            self._sampler = _system.start_for(self, now, summary, cfg.system_seconds, env)
        _lifecycle.register(self)

    # --- read-only attributes ----------------------------------------------------------------
    @property
    def config(self) -> Mapping[str, Any]:
        """The params as recorded (read-only)."""
        return MappingProxyType(self._params)

    @property
    def name(self) -> str:
        return str(self._meta.get("name"))

    @property
    def status(self) -> str:
        return str(self._meta.get("status"))

    @property
    def rank(self) -> int:
        """This process's rank in its distributed job (0 for a single process)."""
        return self._job.rank if self._job is not None else 0

    @property
    def world_size(self) -> int:
        """How many processes its distributed job has (1 for a single process)."""
        return self._job.world_size if self._job is not None else 1

    @property
    def current_step(self) -> int | None:
        """The last step logged (None before any)."""
        return self._next_step - 1 if self._next_step else None

    def __repr__(self) -> str:
        return f"<labtrack.Run {self.experiment}/{self.id} {self.status} at {self.dir}>"

    # --- scalars: the hot path -----------------------------------------------------------------
    def log(self, values: Mapping[str, Any], step: int | None = None, *, time: float | None = None,
            _time: Callable[[], float] = _time) -> None:
        """Record values at a step (default: one past the last step): numbers, and media
        objects (labtrack.Image, Audio, Video, Table, Histogram, Html) at the same step.

        Args:
            values: name -> int, float, bool, numpy scalar, 0-d torch tensor or media object.
            step: a whole number >= 0; later calls without a step continue from it.
            time: the wall time of every point of this call, in seconds since the epoch
                (default: now), for importers and bridges that replay recorded times.

        Raises:
            LabtrackTypeError: a value or key of a type that cannot be recorded.
            LabtrackValueError: a bad time, step or media value (nothing of the call is logged).
            LabtrackNameError: a name with '..', a leading '/', or control characters.
            RunStateError: the run is finished.

        Example:
            >>> run.log({"train/loss": 0.25, "acc": 0.9}, step=10)
            >>> run.log({"loss": 0.2, "sample": labtrack.Image(img)}, step=11, time=1767225600.0)
        """
        t = _time() if time is None else _records.check_wall_time(time)
        if step is None:
            step = self._next_step
        elif type(step) is not int or step < 0 or step >= 9007199254740992:  # 2**53
            step = _records.check_step(step)
        busy = self._busy
        busy.append(None)  # before reading the columns: the writer must see this call in flight
        # name -> the bound `fromlist` of the series' array('d') of (step, value, time) triples;
        # a finished run's columns are _FinishedColumns, whose lookups raise RunStateError.
        cols = self._cols
        try:
            if cols.__class__ is _FinishedColumns and not values:
                cols.refuse()  # log({}) after finish() is the same mistake
            for k, v in values.items():
                if type(v) is not float:
                    v = _coerce(k, v)
                try:
                    append = cols[k]
                except KeyError:
                    append = self._new_series(cols, k)
                # One C call appends the whole point: a signal or another thread never sees
                # half of it (fromlist with a fresh list is cheaper than extend with a tuple).
                append([step, v, t])
        except _MediaValue:  # a media object: off the scalar path (this branch costs floats nothing)
            self._rollback(cols, values, step, t)
            return self._log_mixed(values, step, t)
        except BaseException:
            self._rollback(cols, values, step, t)
            if not isinstance(values, Mapping):
                raise LabtrackTypeError(
                    f"log() takes a dict of name -> number, got {type(values).__name__}; "
                    "example: run.log({'train/loss': 0.5})"
                ) from None
            raise
        finally:
            busy.pop()
        before = self._pending
        self._pending = after = before + len(values)
        self._next_step = step + 1
        if before < self._eager_at <= after:
            self._wake_writer()

    # The Python implementation, which the C `log` calls for anything but its common case.
    _log_py = log

    def _record(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Like log(), but never moves the automatic step (console timings, indicators)."""
        keep = self._next_step
        self.log(values, max(self._next_step - 1, 0) if step is None else step)
        self._next_step = keep

    def _new_series(self, cols: dict[str, Callable[[list[float]], None]], key: Any) -> Callable[[list[float]], None]:
        if isinstance(cols, _FinishedColumns):
            cols.refuse()
        if key not in self._known:
            check_name(key, "series name")
            self._claim(layout.SCALARS_DIR, key, (".csv",), "series name")
            self._known.add(key)
        append = cols[key] = array("d").fromlist
        return append

    def _rollback(self, cols: dict[str, Callable[[list[float]], None]], values: Any, step: int, t: float) -> None:
        """Undo the points a failed log() call already appended, so a call is all or nothing."""
        if not isinstance(values, Mapping) or isinstance(cols, _FinishedColumns):
            return
        for k in values:
            append = cols.get(k)
            c: array[float] | None = getattr(append, "__self__", None)
            if c is not None and len(c) >= 3 and c[-3] == step and c[-1] == t:
                del c[-3:]

    def _activity_mark(self) -> tuple[int, int]:
        return (self._next_step, self._activity)

    def _pending_values(self) -> int:
        return self._pending

    def _wake_writer(self) -> None:
        """Many values wait (`_eager_at`): have the writer format them now, in the background."""
        writer = getattr(self, "_writer", None)  # None while __init__ is still running
        if writer is not None:
            writer.flush_soon()

    def _swap_columns(self) -> dict[str, array[float]]:
        old, self._cols = self._cols, {}
        self._pending = 0  # a count for the writer's early flush; a value or two off is fine
        return {k: append.__self__ for k, append in old.items()}  # type: ignore[attr-defined]

    # --- records written by the writer thread --------------------------------------------------
    def _claim(self, folder: str, name: str, suffixes: tuple[str, ...], what: str) -> None:
        with self._meta_lock:  # log_* may be called from several threads
            self._spaces[folder].claim(name, suffixes, what)

    def _check_open(self) -> None:
        """Refuse a call on a finished run; else count it as activity (every log_*, save_*
        call passes here), which tells _at_exit that a sys.exit() before it was caught."""
        self._activity += 1
        if self._closed:
            raise RunStateError(f"run {self.id} is finished; start a new run with labtrack.init()")

    def _media_step(self, step: Any) -> int:
        return max(self._next_step - 1, 0) if step is None else _records.check_step(step)

    def _add_media(self, entry: dict[str, Any], data: bytes, extra: dict[str, Any] | None = None) -> None:
        """Write a media file (and its JSON beside it) and its media.jsonl line."""
        path = self.dir / entry["path"]
        files.atomic_write_bytes(path, data)
        if extra is not None:
            files.atomic_write_json(path.with_suffix(".json"), extra)
        self._writer.append(self.dir / layout.MEDIA_JSONL, files.dumps_line(entry).encode(),
                            "media record", entry["name"])

    def log_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Record a matplotlib figure as a PNG (rendered now; figures are not thread-safe)."""
        self._check_open()
        self._claim(layout.MEDIA_DIR, check_name(name, "figure name"), (".png",), "figure name")
        step = self._media_step(step)
        data = _records.figure_to_png(name, figure)
        entry = {"step": step, "name": name, "kind": "figure",
                 "path": layout.media_relpath(step, name, ".png"), "time": round(_time(), 3)}
        self._writer.submit(lambda: self._add_media(entry, data), "figure", name)

    def log_text(self, name: str, text: str, step: int | None = None, *, expected: str | None = None,
                 time: float | None = None) -> None:
        """Record a text (and the text it should have been, for a diff in the dashboard);
        `time`: its wall time (default now), for importers that replay recorded times."""
        self._check_open()
        self._claim(layout.TEXT_DIR, check_name(name, "text name"), (".jsonl",), "text name")
        for label, v in (("text", text), ("expected", expected)):
            if v is not None and not isinstance(v, str):
                raise LabtrackTypeError(f"{label} of {name!r} must be a str, got {type(v).__name__}")
        if text is None:
            raise LabtrackTypeError(f"text of {name!r} must be a str, got None")
        _records.check_text(text, f"text of {name!r}")
        if expected is not None:
            _records.check_text(expected, f"expected text of {name!r}")
        rec: dict[str, Any] = {"step": self._media_step(step), "text": text}
        if expected is not None:
            rec["expected"] = expected
        rec["time"] = round(_time() if time is None else _records.check_wall_time(time), 3)
        line = files.dumps_line(rec).encode()
        path = layout.text_path(self.dir, name)
        self._writer.submit(lambda: self._writer.append(path, line, "text record", name), "text record", name)

    def log_markdown(self, name: str, markdown: str, step: int | None = None) -> None:
        """Record a markdown document: global to the run without a step, else per step."""
        self._check_open()
        check_name(name, "markdown name")
        if not isinstance(markdown, str):
            raise LabtrackTypeError(f"markdown {name!r} must be a str, got {type(markdown).__name__}")
        data = _records.check_text(markdown, f"markdown {name!r}")
        if step is None:
            self._claim(layout.MARKDOWN_DIR, name, (".md",), "markdown name")
            path = layout.markdown_path(self.dir, name)
            self._writer.submit(lambda: files.atomic_write_bytes(path, data), "markdown document", name)
            return
        s = _records.check_step(step)
        self._claim(layout.MEDIA_DIR, name, (".md",), "markdown name")
        entry = {"step": s, "name": name, "kind": "markdown",
                 "path": layout.media_relpath(s, name, ".md"), "time": round(_time(), 3)}
        self._writer.submit(lambda: self._add_media(entry, data), "markdown document", name)

    def log_command(self, parser: Any, args: Any) -> None:
        """Record an argparse parser's options with their values (options.json)."""
        self._check_open()
        options = _records.command_options(parser, args)
        self._writer.submit(lambda: files.atomic_write_json(self.dir / layout.OPTIONS_JSON, options),
                            "file", layout.OPTIONS_JSON)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Merge `params` into params.json and print them as a table."""
        self._check_open()
        new = _records.config_to_dict(params)
        _records.check_text(files.dumps(new), "params")
        with self._meta_lock:
            self._params = {**self._params, **new}
            snapshot = dict(self._params)
        self._writer.submit(lambda: files.atomic_write_json(self.dir / layout.PARAMS_JSON, snapshot),
                            "file", layout.PARAMS_JSON)
        from ._console.tables import print_params

        print_params(new)

    def save_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> Path:
        """Copy a file or folder into the run's artifacts/ (now, so later edits do not leak in).

        Returns:
            The path of the copy inside the run directory.
        """
        self._check_open()
        src = Path(path)
        if not src.exists():
            raise LabtrackValueError(f"artifact {str(src)!r} does not exist")
        target_name = check_name(name if name is not None else src.name, "artifact name")
        dst = layout.artifact_path(self.dir, target_name)
        if src.is_dir():
            files.replace_folder(dst, lambda tmp: shutil.copytree(src, tmp, dirs_exist_ok=True))
        else:
            files.atomic_write_bytes(dst, src.read_bytes())
        return dst

    def save_object(self, name: str, obj: Any) -> Path:
        """Save an object: numpy -> .npy, torch -> torch.save (.pt), anything else -> pickle.

        Returns:
            The path of the file inside the run directory.
        """
        self._check_open()
        check_name(name, "object name")
        from ._checkpoints import _unwrap  # DataParallel/DDP -> .module, as save_checkpoint does

        suffix, data = _records.object_to_bytes(name, _unwrap(obj))
        dst = layout.artifact_path(self.dir, name + suffix)
        files.atomic_write_bytes(dst, data)
        return dst

    def println(self, fmt: str, *args: Any, **kwargs: Any) -> None:
        """`print(fmt.format(*args, **kwargs))`, also kept in the run's console.log."""
        self._print(sys.stdout, fmt, args, kwargs)

    def eprintln(self, fmt: str, *args: Any, **kwargs: Any) -> None:
        """Like println, to stderr."""
        self._print(sys.stderr, fmt, args, kwargs)

    def _print(self, stream: Any, fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        text = str(fmt).format(*args, **kwargs) if (args or kwargs) else str(fmt)
        print(text, file=stream, flush=True)
        if self._capture is None and not self._closed:  # captured streams copy it already
            self._writer.write_console(text + "\n")

    # --- checkpoints (see labtrack._checkpoints) ----------------------------------------------
    def save_checkpoint(self, obj: Any, step: int, *, metric: float | None = None, mode: str = "min",
                        keep_last: int | None = None) -> Path:
        """Save a checkpoint under checkpoints/<step>/, keeping the last and the best.

        Returns:
            The checkpoint file's path.
        """
        self._check_open()
        from ._checkpoints import save_checkpoint

        return save_checkpoint(self.dir, obj, _records.check_step(step), metric=metric, mode=mode,
                               keep_last=keep_last,
                               meta_writer=lambda ck: self._update_meta(checkpoints=ck))

    def load_checkpoint(self, which: str | int = "last", **kwargs: Any) -> Any:
        """Load a checkpoint: "last", "best" or a step (restores RNG states by default)."""
        from ._checkpoints import load_checkpoint

        return load_checkpoint(self.dir, which, **kwargs)

    def add_checkpoint_file(self, path: str | os.PathLike[str], step: int, *, metric: float | None = None,
                            mode: str = "min", copy: bool = True, **kwargs: Any) -> Path:
        """Record a checkpoint another tool wrote (a Lightning .ckpt, a transformers folder):
        copied into checkpoints/<step>/ or referenced where it is (`copy=False`), ranked for
        "best" by `metric`. More keywords (fmt, keep, origin): `_checkpoints.add_checkpoint_file`.

        Returns:
            The checkpoint's path (the copy, or `path`).
        """
        self._check_open()
        from ._checkpoints import add_checkpoint_file

        return add_checkpoint_file(self.dir, path, step, metric=metric, mode=mode, copy=copy,
                                   meta_writer=lambda ck: self._update_meta(checkpoints=ck), **kwargs)

    # --- indicators (see labtrack._console.indicators) ------------------------------------------
    def _indicators(self) -> Any:
        if self._indicators_obj is None:
            from ._console.indicators import Indicators

            self._indicators_obj = Indicators(self)
        return self._indicators_obj

    def store(self, **values: Any) -> None:
        """Accumulate indicator values for the current step; `write()` records their means."""
        self._indicators().store(values)

    def write(self, step: int | None = None) -> None:
        """Record the indicators stored since the last write and print them."""
        self._indicators().write(step)

    # --- metadata -------------------------------------------------------------------------------
    def _set_summary(self, entries: dict[str, dict[str, Any]]) -> None:
        """Merge script-set keys (`_writer.SUMMARY_EXTRA`) into summary.json's entries."""
        self._check_open()
        _records.check_text(files.dumps(entries), "summary")
        self._writer.submit(lambda: self._writer.set_summary(entries), "file", layout.SUMMARY_JSON)

    def _update_meta(self, **fields: Any) -> None:
        """Merge keys into run.json and rewrite it atomically."""
        with self._meta_lock:
            self._meta.update(fields)
            files.atomic_write_json(self.dir / layout.RUN_JSON, self._meta)

    def _record_provenance(self, capture_git: bool, untracked_cap: int) -> None:
        from . import _provenance

        self._record_notebook()
        if capture_git:
            info = _provenance.collect_git(Path.cwd(), exclude=self.root)
            script = self._meta.get("command", {}).get("script")
            if info is None and script and not _provenance.is_ignored(Path(script)):
                # started from outside the repository of its script
                info = _provenance.collect_git(Path(script).parent, exclude=self.root)
            if info is not None:
                files.atomic_write_bytes(self.dir / layout.COMMIT_TXT, info.commit_txt.encode())
                files.atomic_write_bytes(self.dir / layout.DIFF_PATCH, info.diff)
                create.copy_untracked(self.dir, self.root, Path(info.meta["root"]), info.untracked, untracked_cap)
                self._update_meta(git=info.meta)
            else:  # outside git: the script and its local modules (ML-Logger's log_file)
                record_local_sources(self.dir, self._meta, self.root, untracked_cap)
        files.atomic_write_json(self.dir / layout.ENV_JSON, _provenance.environment())

    def _record_notebook(self) -> None:
        """source/notebook.py: the cells executed so far, for a run started in a notebook
        (again at finish, so the cells run after init() are in it too)."""
        if "notebook" not in (self._meta.get("command") or {}) or self._meta.get("resumed"):
            return
        from . import _notebook

        nb = _notebook.current()
        if nb is not None:
            text = _notebook.cells_source(nb).encode("utf-8", errors="replace")
            files.atomic_write_bytes(self.dir / layout.NOTEBOOK_PY, text)

    def _join_provenance(self) -> None:
        t = self._provenance_thread
        if t is not None and t is not threading.current_thread():
            if t.is_alive():
                self._writer.flush_soon()  # the data is written while provenance finishes
            t.join(_PROVENANCE_WAIT_SECONDS)  # git on a slow disk must not hang finish()
            if not t.is_alive():
                self._provenance_thread = None

    # --- end of the run -------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Block until everything logged so far is on disk."""
        self._activity += 1
        self._join_provenance()
        if not self._finished:
            self._writer.flush(timeout)

    def finish(self, status: str = "finished", *, error: BaseException | None = None) -> None:
        """Write everything, the summary and the final status; stop the writer. Idempotent.

        Args:
            status: "finished", "failed", "killed" or "interrupted".
            error: the exception that ended the run (its traceback goes into run.json).
        """
        if status not in ("finished", "failed", "killed", "interrupted"):
            raise LabtrackValueError(
                f"status {status!r} is not one of finished, failed, killed, interrupted")
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
        self._closed = True
        cut: BaseException | None = None
        try:
            if self._sampler is not None:
                self._sampler.stop()  # its last sample goes in before the writer drains
            if self._capture is not None:
                self._capture.stop()
            self._join_provenance()
            self._writer.close()
        except BaseException as e:  # Ctrl-C while the data drains: the status is still written
            cut = e
            if status == "finished" and isinstance(e, KeyboardInterrupt):
                status, error = "interrupted", e
        self._cols = _FinishedColumns(self.id)
        try:
            self._record_notebook()
        except OSError as e:  # a full disk: the cells written at init() stay
            warnings.warn(f"labtrack: run {self.id} could not record the notebook's cells: {e}",
                          RuntimeWarning, stacklevel=2)
        fields: dict[str, Any] = {"status": status, "ended": _iso(_time())}
        if error is not None:
            fields["error"] = {
                "type": type(error).__name__,
                "message": str(error),
                "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            }
        status_lost = ""
        try:
            if self._job is not None and self._job.mode == "one-run":
                self._job.finish(self.dir, fields, self._update_meta)  # waits for the other ranks
            else:
                self._update_meta(**fields)
        except OSError as e:  # a full disk: warn, never raise from the script's last line
            status_lost = (f"; and the final status ({status}) could not be written to "
                           f"{self.dir / layout.RUN_JSON}: {e.strerror or e}, so it will read as crashed")
        else:  # the run's row for readers (.row.json; LABTRACK_INDEX_ON_FINISH: the index too)
            from ._index_rowfile import after_finish

            after_finish(self.root, self.dir, self._index_on_finish)
        _lifecycle.unregister(self)
        lost = self._writer.loss_report()
        if lost or status_lost:
            said = f"lost {lost}" if lost else "lost no data"
            warnings.warn(f"labtrack: run {self.id} {said}{status_lost}", RuntimeWarning, stacklevel=2)
        if self._shipper is not None:
            if not self._shipper.close(self._sync_timeout):
                print(self._shipper.left_behind(self.id, self.root), file=sys.stderr)
        _lifecycle.forget_default(self)
        if cut is not None:
            raise cut

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.finish()
        elif isinstance(exc, _lifecycle.Terminated):
            self.finish("killed")
        elif isinstance(exc, SystemExit):
            self.finish("finished" if exc.code in (0, None) else "failed", error=exc)
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("interrupted", error=exc)
        else:
            self.finish("failed", error=exc)


if HOT:
    # Run.log is the C method of the base class, which calls Run._log_py when it cannot help.
    delattr(Run, "log")


def _default_experiment() -> str:
    from . import _notebook

    shell = _notebook.kernel_shell()
    if shell is not None:  # the kernel's __main__ is not the notebook: its name, when known
        f = _notebook.notebook_path(shell)
    else:
        f = getattr(sys.modules.get("__main__"), "__file__", None)
    return Path(f).stem if f else "default"
