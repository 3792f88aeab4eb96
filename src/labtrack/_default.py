"""The default run behind `labtrack.init()` and the module-level forwards (`labtrack.log` ...).

One default run, held by `_lifecycle` behind a lock (like rich's `get_console()`); a thread
started after `init()` sees it too. Everything else is passed explicitly.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Iterable

from . import _lifecycle, _ranks, _settings
from ._directions import check_directions
from ._disabled import DisabledRun
from ._run import Run
from .errors import RunStateError


def init(
    experiment: str | None = None,
    name: str | None = None,
    *,
    config: Any = None,
    comment: str | None = None,
    tags: Iterable[str] | None = None,
    seed: int | None = None,
    root: str | os.PathLike[str] | None = None,
    resume: str | None = None,
    disabled: bool | None = None,
    capture_git: bool | None = None,
    capture_console: bool | None = None,
    require_clean_git: bool = False,
    remote: str | None = None,
    token: str | None = None,
    flush_seconds: float | None = None,
    distributed: str | None = None,
    job_id: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    print_steps: bool | None = None,
    print_skip: Iterable[str] | None = None,
    system: bool | None = None,
    start_step: int | None = None,
    annotate: bool = False,
    metrics: Mapping[str, str] | None = None,
) -> Run | DisabledRun:
    """Start (or resume) the script's run and make it the default for `labtrack.log` & co.

    Args:
        experiment: the experiment's name (default: the script's file name).
        name: a readable name for this run (default: its id).
        config: the hyperparameters: a dict, argparse.Namespace, dataclass or object.
        comment, tags: free text and labels shown in the runs table.
        seed: recorded, and used to seed random, numpy and torch.
        root: where runs live (default LABTRACK_ROOT or ./labtrack).
        resume: a run id (or unique prefix) to reopen and append to.
        disabled: return a run that records nothing (default LABTRACK_DISABLED).
        capture_git, capture_console: turn those captures off with False.
        require_clean_git: refuse to start when the git repository has changes.
        remote, token: a `labtrack serve` URL to replicate the run to (LABTRACK_REMOTE).
        flush_seconds: how often values are written (LABTRACK_FLUSH_SECONDS, default 1).
        distributed: under torchrun, SLURM, MPI or accelerate: "one-run" (default: every
            rank logs into one run), "per-rank" (a run per rank, sharing a group) or "rank0"
            (other ranks get a DisabledRun); LABTRACK_DISTRIBUTED. See docs/distributed.md.
        job_id: the id every rank of the job shares, where the launcher gives none
            (LABTRACK_JOB_ID).
        group, job_type: runs that belong together (the ranks of one job, the folds of a
            sweep) and what this one does ("train", "eval"); columns of the runs table.
        print_steps: print a box table of each step's values when the step changes
            (ML-Logger; LABTRACK_PRINT_STEPS); `labtrack.Color` values style their cell.
        print_skip: glob patterns of keys left out of that table ("*/hist", "lr").
        system: sample CPU, memory, disk, network and GPUs into series under system/
            (LABTRACK_SYSTEM, default True; every LABTRACK_SYSTEM_SECONDS, default 10).
        start_step: the step this trial starts from (Lab's; default 0, a resumed run: the
            step it resumes at); run.json `start_step`.
        annotate: rewrite the script's results block at each `run.save_progress` (Lab's
            results in the source file; docs/older-tools.md).
        metrics: which way is better for a metric, ``{"val/acc": "max", "loss": "min"}``
            (a name may be a glob, ``"val/*"``); run.json `metrics`. The dashboard marks
            the best run by it, and guesses from the name only where nothing is declared.

    Returns:
        The run (a :class:`DisabledRun` when disabled).

    Raises:
        GitStateError: require_clean_git and the repository is dirty.
        LabtrackTypeError, LabtrackValueError: a bad argument.

    Example:
        >>> run = labtrack.init(experiment="mnist", config={"lr": 0.01}, seed=1)
    """
    run: Run | DisabledRun
    check_directions(metrics)  # refused even when the run records nothing
    job = _ranks.plan(distributed, job_id)  # None for a single process
    if _settings.get("disabled", disabled) or (job is not None and job.mode == "rank0" and job.rank):
        run = DisabledRun(config=config, rank=job.rank if job else 0, world_size=job.world_size if job else 1)
    else:
        run = _ranks.run_class(job)(
            experiment, name, config=config, comment=comment, tags=tags, seed=seed, root=root,
            resume=resume, capture_git=capture_git, capture_console=capture_console,
            require_clean_git=require_clean_git, remote=remote, token=token,
            flush_seconds=flush_seconds, group=group, job_type=job_type, system=system,
            start_step=start_step, annotate=annotate, metrics=metrics, _job=job)
        if _settings.get("print_steps", print_steps):
            run._print_steps(print_skip or ())
    global _made_default
    _made_default = True
    previous = _lifecycle.swap_default(run)
    if previous is not None and previous is not run and isinstance(previous, Run):
        previous.finish()
    return run


def current_run() -> Run | DisabledRun | None:
    """The default run made by :func:`init`, or None."""
    return _lifecycle.default_run()


# ML-Logger's zero config: the first `labtrack.log` & co. of a process that never called
# init() starts a default run itself, once (a run finished later is not replaced silently).
_made_default = False
_zero_config_lock = threading.Lock()


def _default() -> Run | DisabledRun:
    run = _lifecycle.default_run()
    if run is None:
        with _zero_config_lock:  # two threads logging first: one run
            run = _lifecycle.default_run()
            if run is None and not _made_default:
                run = init()
                if isinstance(run, Run):
                    print(f"labtrack: no init() call, so logging to a new run {run.experiment}/{run.id} "
                          f"in {run.dir}", file=sys.stderr)
        if run is None:
            raise RunStateError("no run: the default run is finished; call labtrack.init() for a new "
                                "one (or use the run object it returns)")
    return run


def log(values: Mapping[str, Any], step: int | None = None, *, time: float | None = None) -> None:
    """`log` on the default run (see :meth:`Run.log`)."""
    if time is None:
        _default().log(values, step)  # the C fast path takes no time=
    else:
        _default().log(values, step, time=time)


def log_audio(name: str, wave: Any, sample_rate: int = 16000, step: int | None = None,
              caption: str | None = None) -> None:
    """`log_audio` on the default run (see :meth:`Run.log_audio`)."""
    _default().log_audio(name, wave, sample_rate, step, caption)


def log_video(name: str, frames: Any, fps: float = 8, step: int | None = None,
              caption: str | None = None) -> None:
    """`log_video` on the default run (see :meth:`Run.log_video`)."""
    _default().log_video(name, frames, fps, step, caption)


def log_image(name: str, image: Any, step: int | None = None, **kwargs: Any) -> None:
    """`log_image` on the default run."""
    _default().log_image(name, image, step, **kwargs)


def log_figure(name: str, figure: Any, step: int | None = None) -> None:
    """`log_figure` on the default run."""
    _default().log_figure(name, figure, step)


def log_text(name: str, text: str, step: int | None = None, **kwargs: Any) -> None:
    """`log_text` on the default run."""
    _default().log_text(name, text, step, **kwargs)


def log_markdown(name: str, markdown: str, step: int | None = None) -> None:
    """`log_markdown` on the default run."""
    _default().log_markdown(name, markdown, step)


def log_histogram(name: str, values: Any, step: int | None = None, **kwargs: Any) -> None:
    """`log_histogram` on the default run."""
    _default().log_histogram(name, values, step, **kwargs)


def log_table(name: str, data: Any, step: int | None = None) -> None:
    """`log_table` on the default run."""
    _default().log_table(name, data, step)


def log_command(parser: Any, args: Any) -> None:
    """`log_command` on the default run."""
    _default().log_command(parser, args)


def save_artifact(path: str | os.PathLike[str], name: str | None = None) -> Any:
    """`save_artifact` on the default run."""
    return _default().save_artifact(path, name)


def save_object(name: str, obj: Any) -> Any:
    """`save_object` on the default run."""
    return _default().save_object(name, obj)


def println(fmt: str, *args: Any, **kwargs: Any) -> None:
    """`println` on the default run, or a plain print without one."""
    run = _lifecycle.default_run()
    if run is None:
        print(str(fmt).format(*args, **kwargs) if (args or kwargs) else str(fmt))
    else:
        run.println(fmt, *args, **kwargs)


def eprintln(fmt: str, *args: Any, **kwargs: Any) -> None:
    """`eprintln` on the default run, or a plain print to stderr without one."""
    run = _lifecycle.default_run()
    if run is None:
        print(str(fmt).format(*args, **kwargs) if (args or kwargs) else str(fmt), file=sys.stderr)
    else:
        run.eprintln(fmt, *args, **kwargs)


def flush() -> None:
    """`flush` on the default run (nothing without one)."""
    run = _lifecycle.default_run()
    if run is not None:
        run.flush()


def finish(status: str = "finished") -> None:
    """`finish` on the default run (nothing without one)."""
    run = _lifecycle.default_run()
    if run is not None:
        run.finish(status)
