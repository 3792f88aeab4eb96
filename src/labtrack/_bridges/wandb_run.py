"""The run object of `labtrack.wandb`: wandb's config, summary, step rules, define_metric
and watch, on top of a labtrack Run (or a DisabledRun, which records nothing).

Steps follow wandb: without `step`, each committed `log` is one step, and the step then
moves on; `commit=False` (or an explicit `step`) gathers values into the current step until
the next commit or a larger step; a step below the current one is dropped with a warning,
so a series never gets points out of order. A committed step's numbers go to the Run in
one `Run.log` call, its media objects to the Run's media methods.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import _records
from .._directions import from_definition
from ..errors import LabtrackTypeError, LabtrackValueError, RunStateError
from .wandb_media import Image, WandbMedia, record, unsupported

__all__ = ["Config", "Metric", "Summary", "WandbRun"]

SUMMARY_CHOICES = ("min", "max", "mean", "last", "best", "first", "none", "copy")
GOALS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


class Config:
    """`wandb.config`: attribute and item access; every change is merged into params.json.

    As in wandb, changing a key that already has another value raises unless
    `allow_val_change=True` (in `update`, or in `init`).
    """

    def __init__(self, owner: WandbRun, items: dict[str, Any], allow_val_change: bool) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_allow", allow_val_change)

    def update(self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any) -> None:
        """Merge keys (a dict, argparse.Namespace, dataclass or object) into the config.

        Raises:
            LabtrackValueError: a key already set to another value, without allow_val_change.
        """
        new = {**(_records.config_to_dict(d) if d is not None else {}), **kwargs}
        allow = self._allow if allow_val_change is None else allow_val_change
        for k, v in new.items():
            old = self._items.get(k, v)
            if not allow and k in self._items and old != v:
                raise LabtrackValueError(
                    f"config key {k!r} is already {old!r}; changing it to {v!r} needs "
                    "config.update({...}, allow_val_change=True) (wandb refuses it too)")
        self._items.update(new)
        self._owner._record_params(new)

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        """Set the keys of `d` that are not set yet."""
        missing = {k: v for k, v in d.items() if k not in self._items}
        if missing:
            self.update(missing)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"wandb.config has no key {key!r}; keys: {sorted(self._items)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self) -> Any:
        return self._items.keys()

    def items(self) -> Any:
        return self._items.items()

    def values(self) -> Any:
        return self._items.values()

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def __repr__(self) -> str:
        return f"<labtrack.wandb config {self._items!r}>"


def _summary_value(key: str, value: Any) -> Any:
    """A summary value as JSON: numbers (numpy, 0-d torch too), text, bools, None, lists, dicts."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, numbers.Number) or getattr(value, "ndim", None) == 0 or getattr(value, "shape", None) == (1,):
        return _records.coerce_scalar(key, value.item() if hasattr(value, "item") else value)
    if isinstance(value, Mapping):
        return {str(k): _summary_value(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_summary_value(key, v) for v in value]
    raise LabtrackTypeError(f"summary[{key!r}] is a {type(value).__name__}; summary values are numbers, "
                            "text, booleans, lists or dicts")


class Summary:
    """`run.summary`: the last logged value of each key, overridden by what the script sets.

    A set value goes into summary.json as the entry's "value" (the runs table shows it).
    """

    def __init__(self, owner: WandbRun) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_set", {})
        object.__setattr__(self, "_last", {})

    def __getitem__(self, key: str) -> Any:
        if key in self._set:
            return self._set[key]
        return self._last[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise unsupported("deleting a summary key", "set another value: run.summary[key] = value")

    def update(self, d: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Set several summary values at once (written to summary.json).

        Raises:
            LabtrackTypeError: a value that is not a number, text, bool, list or dict.
        """
        new = {str(k): _summary_value(str(k), v) for k, v in {**(d or {}), **kwargs}.items()}
        self._set.update(new)
        self._owner._write_summary({k: {"value": v} for k, v in new.items()})

    def __contains__(self, key: object) -> bool:
        return key in self._set or key in self._last

    def keys(self) -> list[str]:
        return list({**self._last, **self._set})

    def items(self) -> list[tuple[str, Any]]:
        return list({**self._last, **self._set}.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __repr__(self) -> str:
        return f"<labtrack.wandb summary {dict(self.items())!r}>"


class Metric:
    """What `define_metric` returns: the definition, matched against logged names."""

    def __init__(self, name: str, step_metric: str | None, summary: list[str], goal: str | None) -> None:
        self.name, self.step_metric, self.summary, self.goal = name, step_metric, summary, goal

    def matches(self, key: str) -> bool:
        return key == self.name or ("*" in self.name and fnmatch.fnmatchcase(key, self.name))

    def __repr__(self) -> str:
        return f"<labtrack.wandb metric {self.name!r} step_metric={self.step_metric!r} summary={self.summary}>"


class _Track:
    """What a defined metric's summaries need: first, last, min, max, sum, count."""

    __slots__ = ("first", "last", "lo", "hi", "total", "n")

    def __init__(self, v: float) -> None:
        self.first = self.last = self.lo = self.hi = v
        self.total, self.n = (v, 1) if math.isfinite(v) else (0.0, 0)

    def add(self, v: float) -> None:
        self.last = v
        if not math.isnan(v):
            self.lo = v if math.isnan(self.lo) else min(self.lo, v)
            self.hi = v if math.isnan(self.hi) else max(self.hi, v)
        if math.isfinite(v):
            self.total += v
            self.n += 1

    def value(self, stat: str, goal: str | None) -> float | None:
        if stat == "min":
            return self.lo
        if stat == "max":
            return self.hi
        if stat == "mean":
            return self.total / self.n if self.n else None
        if stat == "first":
            return self.first
        if stat == "best":
            return self.hi if goal == "maximize" else self.lo
        return self.last  # last, copy


def _scalar(v: Any) -> bool:
    t = type(v)
    if t is float or t is int or t is bool:
        return True
    if isinstance(v, numbers.Number):
        return True
    return getattr(v, "ndim", None) == 0 and hasattr(v, "item")


def _array_like(v: Any) -> bool:
    mod = type(v).__module__
    if mod.startswith(("numpy", "torch")) and hasattr(v, "ndim"):
        return True
    return isinstance(v, (list, tuple)) and bool(v) and all(_scalar(x) for x in v)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened with "/": {"val": {"acc": 1}} -> {"val/acc": 1}."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if not isinstance(k, str):
            raise LabtrackTypeError(f"log() keys must be str, got {type(k).__name__} {k!r}")
        key = prefix + k
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


class WandbRun:
    """What `labtrack.wandb.init` returns (wandb's `Run`): `config`, `summary`, `log`,
    `define_metric`, `watch`, `finish`, and `name`, `id`, `dir`, `project`, `url` (None),
    `group`, `job_type`, `tags`, `notes`, `step`; `labtrack_run` is the labtrack Run."""

    def __init__(self, run: Any, *, project: str, group: str | None, job_type: str | None,
                 tags: list[str], notes: str | None, config: dict[str, Any], allow_val_change: bool,
                 disabled: bool) -> None:
        self.labtrack_run = run
        self.disabled = disabled
        self.project = project
        self.group = group
        self.job_type = job_type
        self.tags = tuple(tags)
        self.notes = notes
        self.entity: str | None = None
        self.url: str | None = None  # no server page: `labtrack ui` shows the run
        self.config = Config(self, config, allow_val_change)
        self.summary = Summary(self)
        self.step = 0 if disabled else int(getattr(run, "_next_step", 0))
        self._pending: dict[str, Any] = {}
        self._metrics: list[Metric] = []
        self._tracks: dict[str, _Track] = {}
        self._step_values: dict[str, int] = {}
        self._watched: list[Any] = []
        self._finished = False

    # --- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self.labtrack_run.id)

    @property
    def name(self) -> str:
        return str(self.labtrack_run.name)

    @property
    def dir(self) -> str | None:
        d = self.labtrack_run.dir
        return None if d is None else os.fspath(d)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def __repr__(self) -> str:
        return f"<labtrack.wandb run {self.project}/{self.id} ({self.name})>"

    def _check_live(self, what: str) -> None:
        if self._finished:
            raise RunStateError(f"{what}: run {self.id} is finished; start another with wandb.init()")

    # --- config and summary -------------------------------------------------------------------
    def _record_params(self, params: dict[str, Any]) -> None:
        if not self.disabled:
            self._check_live("config")
            self.labtrack_run.log_params(params)

    def _write_summary(self, entries: dict[str, dict[str, Any]]) -> None:
        if not self.disabled:
            self._check_live("summary")
            self.labtrack_run._set_summary(entries)

    # --- log ---------------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None,
            sync: bool | None = None) -> None:
        """wandb's `log`: numbers, media objects, nested dicts (flattened with "/").

        Raises:
            LabtrackTypeError: a value of a type labtrack cannot record.
            RunStateError: the run is finished.
        """
        self._check_live("log")
        if not isinstance(data, Mapping):
            raise LabtrackTypeError(f"log() takes a dict of name -> value, got {type(data).__name__}; "
                                    "example: wandb.log({'loss': 0.5})")
        flat = flatten(data)
        for k, v in flat.items():
            _check_value(k, v)
        if step is not None:
            step = _records.check_step(step)
            if step < self.step:
                warnings.warn(
                    f"labtrack.wandb: step {step} is lower than the current step {self.step}; as in "
                    f"wandb, these values are dropped: {sorted(flat)}", UserWarning, stacklevel=3)
                return
            if step > self.step:
                self._commit()
                self.step = step
        self._pending.update(flat)
        if commit or (commit is None and step is None):
            self._commit()
            self.step += 1

    def _commit(self) -> None:
        """Record the values gathered for the current step."""
        pending, self._pending = self._pending, {}
        if not pending or self.disabled:
            return
        run, step = self.labtrack_run, self.step
        by_step: dict[int, dict[str, Any]] = {}
        for k, v in pending.items():
            if v is None:
                continue
            if _scalar(v):
                at = self._step_for(k, pending)
                by_step.setdefault(at, {})[k] = v
            elif isinstance(v, str):
                run.log_text(k, v, step)
            elif isinstance(v, WandbMedia):
                record(run, k, v, step)
            elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Image) for x in v):
                for i, img in enumerate(v):
                    record(run, f"{k}/{i}", img, step)
            elif hasattr(v, "savefig"):
                run.log_figure(k, v, step)
            else:  # arrays and lists of numbers: a histogram, as wandb makes of them
                run.log_histogram(k, v, step)
        for at, values in sorted(by_step.items()):
            run.log(values, at)
            self._note(values)

    def _step_for(self, key: str, pending: Mapping[str, Any]) -> int:
        """The step of a number: the value of its define_metric step_metric when it has one."""
        for m in self._metrics:
            if m.step_metric and m.step_metric != key and m.matches(key):
                v = pending.get(m.step_metric)
                if v is not None:
                    f = float(_records.coerce_scalar(m.step_metric, v))
                    if f != int(f) or f < 0:
                        raise LabtrackValueError(
                            f"step metric {m.step_metric!r} is {f}; labtrack's steps are whole numbers >= 0")
                    self._step_values[m.step_metric] = int(f)
                return self._step_values.get(m.step_metric, self.step)
        return self.step

    def _note(self, values: Mapping[str, Any]) -> None:
        last = self.summary._last
        for k, v in values.items():
            f = _records.coerce_scalar(k, v)
            last[k] = f
            if self._metrics and any(m.summary and m.matches(k) for m in self._metrics):
                t = self._tracks.get(k)
                if t is None:
                    self._tracks[k] = _Track(f)
                else:
                    t.add(f)

    # --- define_metric ----------------------------------------------------------------------
    def define_metric(self, name: str, step_metric: str | None = None, step_sync: bool | None = None,
                      hidden: bool | None = None, summary: str | None = None, goal: str | None = None,
                      overwrite: bool | None = None) -> Metric:
        """wandb's `define_metric`: the step a metric is plotted against and its summaries.

        Args:
            name: a logged name, or a glob ("val/*").
            step_metric: a logged name whose value is the step of this metric's points.
            summary: comma-separated min, max, mean, last, best, first (none, copy accepted);
                computed from what was logged and written to summary.json at finish.
            goal: "minimize" or "maximize" (what "best" means).
            step_sync, hidden, overwrite: accepted; labtrack hides no metric.

        Raises:
            LabtrackValueError: an unknown summary or goal, "best" without a goal.
        """
        if not isinstance(name, str) or not name:
            raise LabtrackValueError(f"define_metric: name must be a non-empty str, got {name!r}")
        stats = [s.strip() for s in (summary or "").split(",") if s.strip()]
        bad = [s for s in stats if s not in SUMMARY_CHOICES]
        if bad:
            raise LabtrackValueError(f"define_metric({name!r}): summary {bad[0]!r} is not one of "
                                     f"{', '.join(SUMMARY_CHOICES)}")
        g = None
        if goal is not None:
            if goal not in GOALS:
                raise LabtrackValueError(f"define_metric({name!r}): goal {goal!r} is not 'minimize' or 'maximize'")
            g = GOALS[goal]
        if "best" in stats and g is None:
            raise LabtrackValueError(f"define_metric({name!r}, summary='best') needs goal='minimize' or 'maximize'")
        m = Metric(name, step_metric, [s for s in stats if s != "none"], g)
        self._metrics.append(m)
        direction = from_definition(m.summary, g)
        if direction is not None and not self.disabled:
            # run.json `metrics`, as init(metrics=...) declares it: the dashboard's "best"
            self._check_live("define_metric")
            run = self.labtrack_run
            run._update_meta(metrics={**(run._meta.get("metrics") or {}), name: direction})
        return m

    def _metric_summaries(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, track in self._tracks.items():
            for m in self._metrics:
                if m.summary and m.matches(key):
                    entry = out.setdefault(key, {"summary": {}})
                    for stat in m.summary:
                        entry["summary"][stat] = track.value(stat, m.goal)
                    if m.goal:
                        entry["goal"] = m.goal
        return out

    # --- watch -------------------------------------------------------------------------------
    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
              idx: int | None = None, log_graph: bool = False) -> None:
        """Histograms of a torch model's gradients and/or parameters every `log_freq` forward
        passes, named "gradients/<param>" and "parameters/<param>", at the current step.

        Raises:
            LabtrackValueError: `log` not one of "gradients", "parameters", "all", None;
                log_graph=True; log_freq not a positive int.
        """
        from .wandb_watch import Watcher

        if log_graph:
            raise unsupported("watch(log_graph=True)", "record the model's repr: run.summary['model'] = str(model)")
        if log not in ("gradients", "parameters", "all", None):
            raise LabtrackValueError(f"watch: log={log!r} is not 'gradients', 'parameters', 'all' or None")
        if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
            raise LabtrackValueError(f"watch: log_freq must be a positive int, got {log_freq!r}")
        if self.disabled or log is None:
            return
        for model in models if isinstance(models, (list, tuple)) else [models]:
            self._watched.append(Watcher(self, model, log, log_freq))

    def unwatch(self, models: Any = None) -> None:
        """Remove the hooks of `watch` (of every watched model without an argument)."""
        targets = None if models is None else (models if isinstance(models, (list, tuple)) else [models])
        keep = []
        for w in self._watched:
            if targets is None or any(w.model is m for m in targets):
                w.remove()
            else:
                keep.append(w)
        self._watched = keep

    # --- files -------------------------------------------------------------------------------
    def save(self, glob_str: str | os.PathLike[str], base_path: str | None = None, policy: str = "live") -> list[str]:
        """Copy the matching files into the run's artifacts/ now (wandb's `save`; labtrack
        copies once, also for policy "live")."""
        import glob

        self._check_live("save")
        if policy not in ("live", "now", "end"):
            raise LabtrackValueError(f"save: policy {policy!r} is not 'live', 'now' or 'end'")
        paths = sorted(glob.glob(os.fspath(glob_str), recursive=True))
        if not paths:
            raise LabtrackValueError(f"save: nothing matches {os.fspath(glob_str)!r}")
        out = []
        for p in paths:
            rel = os.path.relpath(p, base_path) if base_path else Path(p).name
            if not self.disabled:
                out.append(os.fspath(self.labtrack_run.save_artifact(p, rel.replace(os.sep, "/"))))
        return out

    def log_code(self, root: str | None = ".", name: str | None = None, **kwargs: Any) -> None:
        """Nothing to do: labtrack records the source (git commit, diff, untracked files) itself."""

    def __getattr__(self, name: str) -> Any:
        if name in _UNSUPPORTED_RUN:
            raise unsupported(f"run.{name}", _UNSUPPORTED_RUN[name])
        raise AttributeError(f"labtrack.wandb's run has no {name!r}; see docs/integrations.md")

    # --- end ---------------------------------------------------------------------------------
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Record what is still gathered, the metric summaries, and end the run: status
        "failed" for a non-zero exit_code, else "finished". Idempotent."""
        if self._finished:
            return
        try:
            self._commit()
            self.unwatch()
            if not self.disabled:
                summaries = self._metric_summaries()
                if summaries:
                    self.labtrack_run._set_summary(summaries)
        finally:
            self._finished = True
            self.labtrack_run.finish("failed" if exit_code else "finished")

    def __enter__(self) -> WandbRun:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.finish()
            return
        try:
            self._commit()
        finally:
            self._finished = True
            self.labtrack_run.__exit__(exc_type, exc, tb)


_UNSUPPORTED_RUN = {
    "log_artifact": "copy files into the run with run.save(path) or run.labtrack_run.save_artifact(path)",
    "use_artifact": "open the file directly, or read another run's artifacts with labtrack.open(root)[run_id]",
    "log_model": "use run.labtrack_run.save_checkpoint(model, step)",
    "link_model": "use run.labtrack_run.save_checkpoint(model, step)",
    "alert": "print the message (it lands in the run's console.log)",
    "mark_preempting": "nothing to mark: a killed run shows as killed",
}


def _check_value(key: str, v: Any) -> None:
    if v is None or _scalar(v) or isinstance(v, (str, WandbMedia)) or hasattr(v, "savefig"):
        return
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, Image) for x in v):
        return
    if isinstance(v, (list, tuple)) and any(isinstance(x, WandbMedia) for x in v):
        raise LabtrackTypeError(f"log(): {key!r} mixes media objects; a list may hold only wandb.Image")
    if _array_like(v):
        return
    raise LabtrackTypeError(
        f"log(): {key!r} is a {type(v).__name__}; labtrack.wandb records numbers, text, numpy arrays "
        "and tensors (as histograms), matplotlib figures, wandb.Image (or a list of them), Table, "
        "Histogram, Audio, Video and Html")
