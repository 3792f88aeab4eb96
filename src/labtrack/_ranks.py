"""A process's part in a distributed job: which run it opens and how it ends it.

`labtrack.init` asks :func:`plan` (the launcher's environment, read by the pure
`_distributed`); the Run it makes holds the :class:`Job`. In "one-run" mode rank 0 creates
the run and notes its id in `<root>/<experiment>/.jobs/<job key>.json`; the other ranks wait
for that note (bounded by LABTRACK_DISTRIBUTED_WAIT) and open the same directory, so ranks on
several nodes agree through a shared file system alone, without a network round trip. At the
end each rank writes its state under ranks/<N>/ and the last one to finish writes the
combined status into run.json (docs/distributed.md, `_store/ranks.py`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import _distributed, _settings
from ._names import slug
from ._run import Run
from ._store import layout, ranks
from ._store.reader import read_json
from .errors import RunStateError

# Rank 0's note is taken as this launch's when the two processes started within this many
# seconds (a note an earlier job with the same id left is older).
SAME_LAUNCH_SECONDS = 120.0
_POLL_SECONDS = 0.05
# At finish, how long rank 0 waits for a rank that never joined the run.
NEVER_JOINED_SECONDS = 10.0
# job id -> how many one-run runs this process started for it (see Job.key).
_INITS: dict[str, int] = {}
_INITS_LOCK = threading.Lock()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def process_start_time() -> float | None:
    """When this process started (Unix time, from /proc on Linux), None where unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Job:
    """This process's rank in a job and the mode labtrack records it in.

    Args:
        launch: what the environment said (`_distributed.detect`).
        mode: "one-run", "per-rank" or "rank0".
        wait_seconds: how long rank 0 waits for the others at finish, and the others for
            rank 0's run at start (LABTRACK_DISTRIBUTED_WAIT).
        stale_seconds: a rank whose heartbeat is older is dead (LABTRACK_STALE_SECONDS).
    """

    def __init__(self, launch: _distributed.Launch, mode: str, *, wait_seconds: float,
                 stale_seconds: float, seq: int = 0) -> None:
        self.launch = launch
        # The n-th run of this job in this process: every rank calls init() as often, so a
        # second init() on each rank meets in a second run, never the first one's note.
        self.key = _distributed.job_key(str(launch.job_id)) + (f"-{seq}" if seq else "")
        self.mode = mode
        self.wait_seconds = wait_seconds
        self.stale_seconds = stale_seconds
        self.started = time.time()
        self._warned: set[str] = set()

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def joins(self) -> bool:
        """Rank N > 0 of a one-run job: it opens rank 0's run."""
        return self.mode == "one-run" and self.rank > 0

    def fields(self, name: str | None, experiment: str) -> dict[str, Any]:
        """What the run's run.json records of the job (docs/format.md): `distributed`, and in
        "per-rank" mode the rank's name and the `group` its runs share."""
        out: dict[str, Any] = {"distributed": self.launch.record(self.mode)}
        if self.mode == "per-rank":
            out["name"] = _distributed.rank_name(name, experiment, self.rank)
            out["group"] = self.launch.job_id or name or experiment
        return out

    def warn_once(self, kind: str, message: str, stacklevel: int = 3) -> None:
        """One warning per kind (params or checkpoints on a rank other than 0)."""
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)

    # --- start ----------------------------------------------------------------------------
    def publish(self, root: Path, experiment: str, run_id: str) -> None:
        """Rank 0: note the run's id where the other ranks look for it.

        Raises:
            RunStateError: the note cannot be written.
        """
        path = layout.job_path(root, experiment, self.key)
        record = {"job_id": self.launch.job_id, "run_id": run_id, "experiment_dir": slug(experiment),
                  "started": process_start_time(), "created": time.time(),
                  "host": socket.gethostname(), "pid": os.getpid()}
        try:
            ranks.publish_job(path, record)
        except OSError as e:
            raise RunStateError(f"cannot write {path} ({e.strerror or e}), which the other ranks of "
                                f"job {self.launch.job_id} read to find the run") from e

    def join(self, root: Path, experiment: str, resume: str | None) -> tuple[str, Path, dict[str, Any]]:
        """Rank N > 0: wait for the run rank 0 created (or resumes) and return its id,
        directory and run.json.

        Raises:
            RunStateError: rank 0's run did not appear within LABTRACK_DISTRIBUTED_WAIT.
        """
        from ._store.create import find_run_to_resume
        from ._store.rundir import run_folder

        if resume:  # every rank is given the run rank 0 resumes
            run_dir = find_run_to_resume(root, resume)
            meta = read_json(run_dir / layout.RUN_JSON, None)
            if isinstance(meta, dict):
                return str(meta.get("id", run_dir.name)), run_dir, meta
        path = layout.job_path(root, experiment, self.key)
        mine = process_start_time()
        deadline = time.monotonic() + self.wait_seconds
        while True:
            rec = ranks.read_job(path)
            if (rec is not None and rec.get("job_id") == self.launch.job_id
                    and _distributed.same_launch(mine, rec.get("started"), SAME_LAUNCH_SECONDS)):
                try:
                    run_dir = run_folder(root, str(rec.get("experiment_dir")), str(rec.get("run_id")))
                    meta = read_json(run_dir / layout.RUN_JSON, None)
                except (OSError, ValueError):
                    meta = None
                if isinstance(meta, dict):
                    return str(meta.get("id", run_dir.name)), run_dir, meta
            if time.monotonic() >= deadline:
                raise RunStateError(
                    f"rank {self.rank} of job {self.launch.job_id} waited {self.wait_seconds:g} s for "
                    f"rank 0 to create the run and note it in {path}. Rank 0 must call "
                    "labtrack.init() with the same experiment and root (a folder every node "
                    "shares); raise LABTRACK_DISTRIBUTED_WAIT if rank 0 starts later, or pass "
                    "distributed='per-rank' for a run per rank")
            time.sleep(_POLL_SECONDS)

    def begin(self, run_dir: Path) -> None:
        """Rank N > 0: say this rank runs (ranks/<N>/status.json).

        Raises:
            RunStateError: the file cannot be written.
        """
        try:
            ranks.write_status(run_dir, self.rank, self._state("running", None, None))
        except OSError as e:
            raise RunStateError(f"cannot write rank {self.rank}'s status in {run_dir}: "
                                f"{e.strerror or e}") from e

    def _state(self, status: str, ended: str | None, error: Any) -> dict[str, Any]:
        return {"rank": self.rank, "status": status, "pid": os.getpid(), "host": socket.gethostname(),
                "local_rank": self.launch.local_rank, "node_rank": self.launch.node_rank,
                "started": _iso(self.started), "ended": ended, "error": error}

    # --- end ------------------------------------------------------------------------------
    def finish(self, run_dir: Path, fields: dict[str, Any],
               write_meta: Callable[..., None]) -> None:
        """End this rank: write its state; rank 0 first waits (bounded) for the others. The
        rank that finds every rank done writes the combined status into run.json.

        Args:
            run_dir: the run directory.
            fields: the run.json fields this rank's end sets (status, ended, error).
            write_meta: rank 0's run.json writer (Run._update_meta).

        Raises:
            OSError: the disk refused a file.
        """
        own = self._state(fields["status"], fields.get("ended"), fields.get("error"))
        if self.rank == 0:
            others = self._wait_for_others(run_dir)
            if all(s.get("status") != "running" for s in others.values()):
                write_meta(**self._combined(fields, others))
            ranks.write_status(run_dir, 0, own)  # after run.json: see _close_if_last
            return
        ranks.write_status(run_dir, self.rank, own)
        self._close_if_last(run_dir, fields)
        write_meta(**fields)  # RankRun's: its own view only, run.json is rank 0's

    def _combined(self, fields: dict[str, Any], others: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """The run.json end fields of the whole job: the worst status; the error of the
        first rank that failed when this one did not."""
        out = dict(fields)
        states = [fields["status"]] + [str(s.get("status")) for _, s in sorted(others.items())]
        out["status"] = ranks.combine(states)
        if out.get("error") is None:
            for r, s in sorted(others.items()):
                if isinstance(s.get("error"), dict):
                    out["error"] = {**s["error"], "rank": r}
                    break
        return out

    def _close_if_last(self, run_dir: Path, fields: dict[str, Any]) -> None:
        # Rank 0 writes its state only after it decided about run.json, so a rank that sees
        # rank 0 done and every other rank done is the last, and run.json is its to close.
        now = time.time()
        found = ranks.states(run_dir, now, self.stale_seconds)
        if any(found.get(r) is None or found[r].get("status") == "running"
               for r in range(self.world_size)):
            return
        meta = read_json(run_dir / layout.RUN_JSON, None)
        if not isinstance(meta, dict) or meta.get("status") != "running":
            return  # rank 0 closed it already
        others = {r: s for r, s in found.items() if r != self.rank}
        ranks.close_run(run_dir, self._combined(fields, others))

    def _wait_for_others(self, run_dir: Path) -> dict[int, dict[str, Any]]:
        """The other ranks' states once none runs, or at LABTRACK_DISTRIBUTED_WAIT. A rank
        that never joined (no state yet: it was given disabled=True, or died before init) is
        waited for at most NEVER_JOINED_SECONDS, and left out. Rank 0's heartbeat is kept
        fresh meanwhile: a reader must not take the waiting run for a crashed one."""
        start = time.monotonic()
        deadline = start + self.wait_seconds
        absent_deadline = start + min(self.wait_seconds, NEVER_JOINED_SECONDS)
        beat = 0.0
        while True:
            now = time.time()
            found = ranks.states(run_dir, now, self.stale_seconds)
            others = {r: s for r, s in found.items() if 0 < r < self.world_size}
            absent_over = time.monotonic() >= absent_deadline
            done = all(others[r].get("status") != "running" if r in others else absent_over
                       for r in range(1, self.world_size))
            if done or time.monotonic() >= deadline:
                return others
            if now - beat >= 1.0:
                beat = now
                try:
                    os.utime(run_dir / layout.HEARTBEAT)
                except OSError:
                    pass
            try:
                time.sleep(_POLL_SECONDS * 2)
            except KeyboardInterrupt:  # Ctrl-C while waiting: end now; the last rank closes the run
                return others


def plan(distributed: str | None, job_id: str | None, *,
         environ: Any = None) -> Job | None:
    """The job this process is part of, None for a single process.

    Args:
        distributed: "one-run", "per-rank", "rank0", or None for LABTRACK_DISTRIBUTED
            (default "one-run").
        job_id: the id every rank shares (else LABTRACK_JOB_ID, else the launcher's).
        environ: the environment (default: this process's).

    Raises:
        LabtrackValueError: a mode that is not one of them, or an empty job id.
        SettingError: a bad LABTRACK_DISTRIBUTED or LABTRACK_DISTRIBUTED_WAIT.
    """
    env = os.environ if environ is None else environ
    requested = _settings.get("distributed", distributed, environ=env)
    launch = _distributed.detect(env, job_id=_settings.get("job_id", job_id, environ=env),
                                 host=socket.gethostname(), ppid=os.getppid())
    mode = _distributed.resolve_mode(requested, launch)
    if mode is None:
        return None
    if mode == "one-run" and launch.job_id is None:
        warnings.warn(_distributed.no_job_id_warning(launch), RuntimeWarning, stacklevel=3)
        mode = "per-rank"
    seq = 0
    if mode == "one-run":
        with _INITS_LOCK:
            seq = _INITS.get(str(launch.job_id), 0)
            _INITS[str(launch.job_id)] = seq + 1
    return Job(launch, mode, wait_seconds=float(_settings.get("distributed_wait", environ=env)),
               stale_seconds=float(_settings.get("stale_seconds", environ=env)), seq=seq)


class RankRun(Run):
    """Rank N > 0 of a one-run job: its series, text, histograms, tables, markdown and
    artifacts are kept under `rank<N>/`; params, options, checkpoints and media are rank
    0's to write, so they are ignored here with one warning each (docs/distributed.md)."""

    __slots__ = ()

    def _mine(self, name: str) -> str:
        return layout.rank_prefix(self.rank) + name

    def _rank0_only(self, what: str) -> None:
        self._check_open()
        self._job.warn_once(what, f"labtrack: {what} on rank {self.rank} are ignored: in a "
                            "one-run job rank 0 records them (guard the call with "
                            "`if run.rank == 0`, or use distributed='per-rank')", stacklevel=4)

    def log_text(self, name: str, text: str, step: int | None = None, **kw: Any) -> None:
        super().log_text(self._mine(name), text, step, **kw)

    def log_histogram(self, name: str, values: Any, step: int | None = None, **kw: Any) -> None:
        super().log_histogram(self._mine(name), values, step, **kw)

    def log_table(self, name: str, data: Any, step: int | None = None) -> None:
        if step is not None:
            return self._rank0_only("tables with a step")
        super().log_table(self._mine(name), data)

    def log_markdown(self, name: str, markdown: str, step: int | None = None) -> None:
        if step is not None:
            return self._rank0_only("markdown with a step")
        super().log_markdown(self._mine(name), markdown)

    def log_image(self, name: str, image: Any, step: int | None = None, **kw: Any) -> None:
        self._rank0_only("images")

    def log_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        self._rank0_only("figures")

    def log_params(self, params: Any) -> None:
        self._rank0_only("params")

    def log_command(self, parser: Any, args: Any) -> None:
        self._rank0_only("command-line options")

    def save_artifact(self, path: Any, name: str | None = None) -> Path:
        return super().save_artifact(path, self._mine(name if name is not None else Path(path).name))

    def save_object(self, name: str, obj: Any) -> Path:
        return super().save_object(self._mine(name), obj)

    def save_checkpoint(self, obj: Any, step: int, **kw: Any) -> Path:
        self._rank0_only("checkpoints")
        return self.dir / layout.CHECKPOINTS_DIR

    def save_progress(self, values: Any = None, step: int | None = None) -> dict[str, Any]:
        self._rank0_only("progress snapshots")  # they live in run.json, rank 0's
        return {}

    def save_source(self, path: Any) -> list[Path]:
        self._rank0_only("source files")
        return []

    def _update_meta(self, **fields: Any) -> None:
        with self._meta_lock:  # run.json is rank 0's: this rank only keeps its view
            self._meta.update(fields)


def run_class(job: Job | None) -> type[Run]:
    """The class of run this process makes: RankRun for rank N > 0 of a one-run job."""
    return RankRun if job is not None and job.joins else Run
