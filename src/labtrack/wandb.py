"""Run scripts written for Weights & Biases unchanged but for one import::

    import labtrack.wandb as wandb

    run = wandb.init(project="mnist", name="baseline", config={"lr": 0.1}, tags=["cnn"])
    wandb.log({"loss": 0.3, "samples": wandb.Image(batch[0], caption="first")})
    run.summary["best"] = 0.9
    wandb.finish()

What maps where (docs/integrations.md, "wandb"): project -> experiment, notes -> comment,
name, config, tags, group and job_type as they are, id -> the run's id, resume -> labtrack's
resume, dir -> the root `<dir>/labtrack`. Everything is recorded locally, whatever the mode;
mode "disabled" (or WANDB_MODE=disabled) records nothing. What labtrack does not have raises
an error that names it and says what to use instead; nothing is silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable, NoReturn

from . import _lifecycle, _records, _settings
from ._bridges.wandb_media import Audio, Classes, Histogram, Html, Image, Table, Video, unsupported
from ._bridges.wandb_run import Config, Metric, Summary, WandbRun
from ._disabled import DisabledRun
from ._run import Run
from .errors import LabtrackValueError, RunNotFoundError, RunStateError

__all__ = [
    "Audio",
    "Classes",
    "Histogram",
    "Html",
    "Image",
    "Config",
    "Metric",
    "Settings",
    "Summary",
    "Table",
    "Video",
    "WandbRun",
    "define_metric",
    "finish",
    "init",
    "log",
    "login",
    "save",
    "setup",
    "teardown",
    "unwatch",
    "watch",
]

_current: WandbRun | None = None

# Arguments of wandb.init that need nothing from labtrack (see docs/integrations.md).
_HARMLESS = ("entity", "settings", "save_code", "anonymous", "force", "allow_val_change")
_MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
          "shared": "online", "disabled": "disabled"}
_RESUMES = {None: None, False: None, "never": "never", True: "allow", "auto": "allow", "allow": "allow",
            "must": "must"}


class Settings:
    """`wandb.Settings(...)`: accepted, its fields kept and not used (console capture,
    start method, service settings have no labtrack counterpart to change)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def _flag(value: Any, name: str, instead: str) -> None:
    if value:
        raise unsupported(f"wandb.init({name}={value!r})", instead)


def _env_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _root(dir: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:  # noqa: A002
    """LABTRACK_ROOT when set; else `<dir>/labtrack` (a wandb dir holds wandb's own folder,
    so runs go beside it); else `<WANDB_DIR>/labtrack`; else labtrack's default (None)."""
    if env.get("LABTRACK_ROOT"):
        return None
    base = dir if dir is not None else env.get("WANDB_DIR") or None
    return None if base is None else Path(base) / "labtrack"


def _find(root: Path, run_id: str) -> bool:
    from ._store.rundir import iter_runs

    return root.is_dir() and any(rd.path.name == run_id for rd in iter_runs(root))


def init(
    *,
    project: str | None = None,
    name: str | None = None,
    config: Any = None,
    tags: Iterable[str] | None = None,
    notes: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    dir: str | os.PathLike[str] | None = None,  # noqa: A002 - wandb's keyword
    mode: str | None = None,
    id: str | None = None,  # noqa: A002 - wandb's keyword
    resume: bool | str | None = None,
    entity: str | None = None,
    reinit: bool | str | None = None,
    settings: Any = None,
    config_exclude_keys: list[str] | None = None,
    config_include_keys: list[str] | None = None,
    allow_val_change: bool | None = None,
    magic: Any = None,
    sync_tensorboard: bool | None = None,
    tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    fork_from: str | None = None,
    resume_from: str | None = None,
    _environ: Mapping[str, str] | None = None,
    **rest: Any,
) -> WandbRun:
    """Start a run, as `wandb.init` does, recorded by labtrack.

    Args:
        project: the experiment (default WANDB_PROJECT, else the script's name).
        name, config, tags, group, job_type: kept as they are (WANDB_NAME, WANDB_TAGS,
            WANDB_RUN_GROUP, WANDB_JOB_TYPE when not given).
        notes: the run's comment (WANDB_NOTES).
        dir: runs go to `<dir>/labtrack` (LABTRACK_ROOT, when set, wins; WANDB_DIR is the
            default of dir).
        mode: "online" and "offline" both record locally; "disabled" records nothing
            (WANDB_MODE, WANDB_DISABLED=true too).
        id: the run's id (WANDB_RUN_ID): 1-64 letters, digits, '-' or '_'.
        resume: with `id`: "allow" (or True, "auto") continues that run if it exists,
            "must" continues it or raises, "never" (or None) refuses an id that exists.
        reinit: True or "finish_previous" ends the current run first; "create_new" keeps it;
            otherwise (wandb's default) the current run is returned as it is.
        config_exclude_keys, config_include_keys: filter `config`.
        entity, settings, save_code, anonymous, force: accepted and not used.

    Returns:
        The run (`wandb.run` until it finishes).

    Raises:
        LabtrackValueError: an argument labtrack has no place for (named, with what to use),
            a bad mode or resume, resume="never" with an id that exists.
        RunNotFoundError: resume="must" and no run has that id.
    """
    global _current
    env = os.environ if _environ is None else _environ
    for key in rest:
        if key not in _HARMLESS:
            raise LabtrackValueError(
                f"wandb.init({key}=...) is not supported by labtrack.wandb; drop it (labtrack's own "
                "arguments are in labtrack.init: docs/integrations.md lists what maps where)")
    _flag(sync_tensorboard or tensorboard, "sync_tensorboard",
          "log through labtrack's SummaryWriter: from labtrack.tensorboard import SummaryWriter")
    _flag(monitor_gym, "monitor_gym", "log the frames yourself: wandb.log({'video': wandb.Video(frames)})")
    _flag(magic, "magic", "call wandb.log where the values are")
    _flag(fork_from, "fork_from", "re-run from the parent's record: labtrack rerun RUN_ID")
    _flag(resume_from, "resume_from", "resume the whole run: wandb.init(id=RUN_ID, resume='allow')")

    chosen = mode if mode is not None else env.get("WANDB_MODE") or "online"
    if chosen not in _MODES:
        raise LabtrackValueError(f"wandb.init(mode={chosen!r}): mode must be one of {', '.join(_MODES)}")
    disabled = (_MODES[chosen] == "disabled" or env.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes")
                or bool(_settings.get("disabled", None, environ=env)))

    if _current is not None and not _current._finished:
        if reinit in (None, False, "default", "return_previous"):
            return _current
        if reinit not in (True, "finish_previous", "create_new"):
            raise LabtrackValueError(f"wandb.init(reinit={reinit!r}): use True, 'finish_previous', "
                                     "'create_new', 'return_previous' or 'default'")
        if reinit != "create_new":
            _current.finish()

    project = project or env.get("WANDB_PROJECT") or None
    name = name if name is not None else env.get("WANDB_NAME")
    notes = notes if notes is not None else env.get("WANDB_NOTES")
    group = group if group is not None else env.get("WANDB_RUN_GROUP")
    job_type = job_type if job_type is not None else env.get("WANDB_JOB_TYPE")
    tag_list = list(tags) if tags is not None else (_env_list(env.get("WANDB_TAGS")) or [])
    id = id if id is not None else env.get("WANDB_RUN_ID")
    if resume is None and env.get("WANDB_RESUME"):
        resume = env["WANDB_RESUME"]
    if resume not in _RESUMES:
        raise LabtrackValueError(f"wandb.init(resume={resume!r}): use 'allow', 'must', 'never', 'auto', "
                                 "True or None")
    how = _RESUMES[resume]
    if how == "must" and id is None:
        raise LabtrackValueError("wandb.init(resume='must') needs id= (the run to continue)")

    params = _records.config_to_dict(config)
    if config_include_keys is not None:
        params = {k: v for k, v in params.items() if k in config_include_keys}
    if config_exclude_keys is not None:
        params = {k: v for k, v in params.items() if k not in config_exclude_keys}

    run: Run | DisabledRun
    if disabled:
        run = DisabledRun(config=params)
    else:
        root = _root(dir, env)
        resume_id = None
        if id is not None:
            where = Path(_settings.resolve_run({"root": None if root is None else os.fspath(root)}, environ=env).root)
            exists = _find(where, id)
            if exists and how in (None, "never"):
                raise LabtrackValueError(
                    f"a run {id!r} exists under {where}; continue it with wandb.init(id={id!r}, "
                    "resume='allow'), or choose another id")
            if not exists and how == "must":
                raise RunNotFoundError(f"wandb.init(id={id!r}, resume='must'): no run {id!r} under {where}")
            resume_id = id if exists else None
        run = Run(project, name, config=params, comment=notes, tags=tag_list, root=root, resume=resume_id,
                  group=group, job_type=job_type, run_id=None if resume_id else id, _environ=env)
    if reinit != "create_new":
        previous = _lifecycle.swap_default(run)
        if previous is not None and previous is not run and isinstance(previous, Run):
            previous.finish()
    items = dict(run.config) if not disabled else params
    _current = WandbRun(run, project=getattr(run, "experiment", project or "disabled"), group=group,
                        job_type=job_type, tags=tag_list, notes=notes, config=items,
                        allow_val_change=bool(allow_val_change), disabled=disabled)
    return _current


def _active(what: str) -> WandbRun:
    if _current is None or _current._finished:
        raise RunStateError(f"wandb.{what}: no run; call wandb.init() first")
    return _current


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
        sync: bool | None = None) -> None:
    """`log` on the current run (see :meth:`WandbRun.log`)."""
    _active("log").log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, step_sync: bool | None = None,
                  hidden: bool | None = None, summary: str | None = None, goal: str | None = None,
                  overwrite: bool | None = None) -> Metric:
    """`define_metric` on the current run (see :meth:`WandbRun.define_metric`)."""
    return _active("define_metric").define_metric(name, step_metric, step_sync, hidden, summary, goal, overwrite)


def watch(models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
          idx: int | None = None, log_graph: bool = False) -> None:
    """`watch` on the current run: gradient and/or parameter histograms every log_freq steps."""
    _active("watch").watch(models, criterion, log, log_freq, idx, log_graph)


def unwatch(models: Any = None) -> None:
    """`unwatch` on the current run."""
    _active("unwatch").unwatch(models)


def save(glob_str: str | os.PathLike[str], base_path: str | None = None, policy: str = "live") -> list[str]:
    """Copy files into the current run's artifacts/ (see :meth:`WandbRun.save`)."""
    return _active("save").save(glob_str, base_path, policy)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """End the current run (status "failed" for a non-zero exit_code); nothing without one."""
    if _current is not None:
        _current.finish(exit_code)


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to: labtrack records locally. Returns True."""
    return True


def setup(*args: Any, **kwargs: Any) -> None:
    """Nothing to set up (wandb's service process has no labtrack counterpart)."""


def teardown(exit_code: int | None = None) -> None:
    """`finish` of the current run, if any."""
    finish(exit_code)


class _NoRunYet:
    """`wandb.config` / `wandb.summary` before `init`: any use says to call init first."""

    _what: str

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "_what", what)

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RunStateError(f"wandb.{self._what} is used before wandb.init() (or after wandb.finish()); "
                            "call wandb.init() first")

    __getattr__ = __setattr__ = __getitem__ = __setitem__ = _fail


_UNSUPPORTED = {
    "Artifact": "copy files into the run: wandb.save(path) or wandb.run.labtrack_run.save_artifact(path)",
    "use_artifact": "open the file directly, or read another run's artifacts with labtrack.open(root)[run_id]",
    "log_artifact": "copy files into the run: wandb.save(path)",
    "log_model": "save the model with wandb.run.labtrack_run.save_checkpoint(model, step)",
    "link_model": "save the model with wandb.run.labtrack_run.save_checkpoint(model, step)",
    "use_model": "load a checkpoint with labtrack.open(root)[run_id] or run.load_checkpoint()",
    "alert": "print the message (it lands in the run's console.log)",
    "sweep": "run the configurations yourself, one labtrack run each (group them with group=)",
    "agent": "run the configurations yourself, one labtrack run each (group them with group=)",
    "controller": "run the configurations yourself, one labtrack run each",
    "plot": "log a matplotlib figure (wandb.log({'pr': fig})) or a wandb.Table",
    "plot_table": "log a matplotlib figure or a wandb.Table",
    "Object3D": "log a rendered image (wandb.Image) instead",
    "Molecule": "log a rendered image (wandb.Image) instead",
    "Plotly": "log a matplotlib figure (wandb.log({'chart': fig}))",
    "Bokeh": "log a matplotlib figure (wandb.log({'chart': fig}))",
    "Graph": "record the model's repr: wandb.run.summary['model'] = str(model)",
    "ImageMask": "log each mask as its own wandb.Image",
    "BoundingBoxes2D": "pass boxes= to wandb.Image",
    "Api": "read runs with labtrack.open(root) (a Book with pandas)",
    "restore": "open the file from the run's folder: labtrack.open(root)[run_id].dir / 'artifacts'",
    "mark_preempting": "nothing to mark: a killed run shows as killed",
    "require": "nothing to require",
    "tensorboard": "log through labtrack's SummaryWriter: from labtrack.tensorboard import SummaryWriter",
}


def __getattr__(name: str) -> Any:
    """`wandb.run`, `wandb.config`, `wandb.summary` follow the current run; a wandb name
    labtrack does not have raises with what to use instead."""
    live = _current if _current is not None and not _current._finished else None
    if name == "run":
        return live
    if name in ("config", "summary"):
        return getattr(live, name) if live is not None else _NoRunYet(name)
    if name in _UNSUPPORTED:
        raise unsupported(f"wandb.{name}", _UNSUPPORTED[name])
    raise AttributeError(f"labtrack.wandb has no {name!r} (wandb's {name} is not part of the bridge); "
                         "see docs/integrations.md for what is supported")

