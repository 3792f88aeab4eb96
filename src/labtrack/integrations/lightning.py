"""A PyTorch Lightning logger that records to labtrack.

One changed line in a Lightning script::

    from labtrack.integrations.lightning import LabtrackLogger
    trainer = Trainer(logger=LabtrackLogger("mnist", config={"lr": 0.1}),
                      callbacks=[ModelCheckpoint(monitor="val_loss", save_last=True)])

What lands in the run (docs/integrations.md, "Lightning"):

* `log_hyperparams` (the module's and datamodule's `save_hyperparameters()`) -> params.json,
  nested as given; values JSON cannot hold become readable text (a class as its dotted
  name, a tensor as its values or its shape);
* every `self.log(...)` value -> a series, at the trainer's global step (Lightning's `epoch`
  series included);
* each save of a `ModelCheckpoint` -> a labtrack checkpoint at the global step, with the
  monitored value as its metric and the callback's mode, so `run.load_checkpoint("best")`
  and `("last")` load Lightning's checkpoint dicts. Lightning's files are kept under the
  run (`artifacts/lightning/checkpoints/` unless the callback has a `dirpath`) and
  referenced there; a file outside the run is copied in. Checkpoints Lightning deletes
  (not in its top k any more) are dropped from the record too;
* `finalize` -> the run's status: "success" -> finished, "failed" -> failed (with the
  exception), a KeyboardInterrupt -> interrupted. A `trainer.test()` after `fit()` resumes
  the same run.

Only global rank 0 records (Lightning's `rank_zero_only`); other ranks create no run.
`log_graph` does nothing (Lightning calls it at every fit; labtrack stores no graphs).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar, cast

from ..errors import LabtrackTypeError, LabtrackValueError
from ._common import make_run, readable, require, scalar

if importlib.util.find_spec("lightning") is not None:
    _pl = require("lightning.pytorch", "lightning", "labtrack.integrations.lightning")
    _logger_mod = require("lightning.pytorch.loggers.logger", "lightning", "labtrack.integrations.lightning")
    _rank = require("lightning.pytorch.utilities.rank_zero", "lightning", "labtrack.integrations.lightning")
else:  # the older package name, same API
    _pl = require("pytorch_lightning", "lightning", "labtrack.integrations.lightning")
    _logger_mod = require("pytorch_lightning.loggers.logger", "lightning", "labtrack.integrations.lightning")
    _rank = require("pytorch_lightning.utilities.rank_zero", "lightning", "labtrack.integrations.lightning")

rank_zero_only = _rank.rank_zero_only
_F = TypeVar("_F", bound=Callable[..., Any])


def _rank_zero(fn: _F) -> _F:
    """Lightning's rank_zero_only, typed: the call does nothing on other ranks."""
    return cast(_F, rank_zero_only(fn))


def _rank_zero_experiment(fn: _F) -> _F:
    """Lightning's rank_zero_experiment, typed: other ranks get its dummy experiment."""
    return cast(_F, _logger_mod.rank_zero_experiment(fn))


if TYPE_CHECKING:
    _Logger = object
else:
    _Logger = _logger_mod.Logger

__all__ = ["LabtrackLogger"]

_STATUS = {"success": "finished", "finished": "finished", "failed": "failed", "interrupted": "interrupted",
           "killed": "killed"}
# Lightning's own files inside the run: an artifacts folder, so the dashboard lists them.
_FOLDER = ("artifacts", "lightning")


class LabtrackLogger(_Logger):
    """A `lightning.pytorch.loggers.Logger` that records to a labtrack run.

    Args:
        experiment: the labtrack experiment (default: the script's name).
        name: the run's name.
        root: the labtrack root (default LABTRACK_ROOT or ./labtrack).
        config: params recorded when the run starts (hyperparameters are added later).
        tags: the run's tags.
        comment: the run's comment.
        run: an existing labtrack run to log to instead of a new one; the logger never
            finishes it (its owner does), only flushes it when Lightning finalizes.
        log_checkpoints: how ModelCheckpoint saves are recorded: True (a reference to a
            file inside the run, a copy of one outside it), "copy", "reference", or False
            (not recorded).
        **run_options: more keywords for `labtrack.Run` (seed, capture_git, remote, ...).

    Raises:
        LabtrackValueError: a `log_checkpoints` other than those.
        LabtrackTypeError: `run=` together with options for a new run.

    Example:
        >>> logger = LabtrackLogger("mnist", name="baseline", tags=["cnn"])
        >>> Trainer(logger=logger, max_epochs=3).fit(model, data)
        >>> logger.experiment.load_checkpoint("best")["state_dict"]
    """

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        config: Any = None,
        tags: list[str] | None = None,
        comment: str | None = None,
        run: Any = None,
        log_checkpoints: bool | Literal["copy", "reference"] = True,
        **run_options: Any,
    ) -> None:
        super().__init__()
        if log_checkpoints not in (True, False, "copy", "reference"):
            raise LabtrackValueError(
                f"log_checkpoints={log_checkpoints!r} is not allowed; use True, False, 'copy' or 'reference'")
        if run is not None:
            make_run(run, experiment, name, root, config, tags, comment, run_options)  # checks the mix
        self._args = (experiment, name, root, config, tags, comment, dict(run_options))
        self._run: Any = run
        self._own = run is None
        self._finished = False
        self._log_checkpoints = log_checkpoints
        # step -> the Lightning files saved at that step (the top-k file and last.ckpt share one)
        self._saved: dict[int, set[str]] = {}
        self._latest: dict[str, tuple[int, float]] = {}  # series -> its last (step, value)

    # --- the run ------------------------------------------------------------------------------
    @property
    @_rank_zero_experiment
    def experiment(self) -> Any:
        """The labtrack Run (created on first use; on other ranks Lightning's dummy)."""
        return self._ensure_run()

    def _ensure_run(self) -> Any:
        if self._run is None:
            experiment, name, root, config, tags, comment, options = self._args
            self._run = make_run(None, experiment, name, root, config, tags, comment, options)
        elif self._finished:  # trainer.test() after fit(): the same run goes on
            from .. import Run

            self._run = Run(resume=self._run.id, root=self._run.root)
            self._finished = False
        return self._run

    @property
    def name(self) -> str:
        """The folder under `save_dir` that Lightning's checkpoints go into ("lightning").

        The labtrack experiment and run name are `logger.experiment.experiment` / `.name`.
        """
        return _FOLDER[1]

    @property
    def version(self) -> str:
        """Empty: the run directory already is per run (its id is `logger.experiment.id`)."""
        return ""

    @property
    def save_dir(self) -> str | None:
        """`<run dir>/artifacts`: ModelCheckpoint's default folder becomes
        `<run dir>/artifacts/lightning/checkpoints` (None on ranks other than 0)."""
        if rank_zero_only.rank > 0:
            return None
        return str(self._ensure_run().dir / _FOLDER[0])

    @property
    def log_dir(self) -> str | None:
        """`<run dir>/artifacts/lightning`, for files a module writes itself."""
        save_dir = self.save_dir
        return None if save_dir is None else os.path.join(save_dir, _FOLDER[1])

    @property
    def run_dir(self) -> Path | None:
        """The labtrack run directory (None before the run exists or on other ranks)."""
        return None if self._run is None or rank_zero_only.rank > 0 else Path(self._run.dir)

    # --- what Lightning calls -------------------------------------------------------------------
    @_rank_zero
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record hyperparameters (a dict or Namespace, nested) into params.json.

        Raises:
            LabtrackTypeError: `params` is neither a mapping nor a Namespace.
        """
        if isinstance(params, Namespace):
            params = vars(params)
        if not isinstance(params, Mapping):
            raise LabtrackTypeError(f"hyperparameters must be a dict or an argparse.Namespace, got {type(params).__name__}")
        values = readable(dict(params))
        if values:
            self._ensure_run().log_params(values)

    @_rank_zero
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics at `step` (Lightning passes the global step); non-numbers are skipped."""
        run = self._ensure_run()
        values: dict[str, float] = {}
        for key, value in metrics.items():
            number = scalar(value)
            if number is not None:
                values[str(key)] = number
        if not values:
            return
        at = run.current_step if step is None else int(step)
        run.log(values, step=at)
        for key, number in values.items():
            self._latest[key] = (at, number)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Does nothing: labtrack stores no model graphs (Lightning calls this at every fit).

        Record the architecture as text if you want it:
        `logger.experiment.log_text("model", str(model))`.
        """

    @_rank_zero
    def save(self) -> None:
        """Nothing to do: the run's writer thread writes in the background."""

    @_rank_zero
    def finalize(self, status: str) -> None:
        """End of fit/validate/test: finish the run with Lightning's status.

        "success" -> finished; "failed" -> failed with the exception being handled (a
        KeyboardInterrupt -> interrupted). A run passed as `run=` is only flushed.
        """
        if self._run is None or self._finished:
            return
        if not self._own:
            self._run.flush()
            return
        error = sys.exc_info()[1]
        state = _STATUS.get(status, "failed")
        if isinstance(error, KeyboardInterrupt):
            state = "interrupted"
        self._run.finish(state, error=error if state != "finished" else None)
        self._finished = True

    @_rank_zero
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Record the file a ModelCheckpoint just saved as the labtrack checkpoint of its step."""
        if self._log_checkpoints is False:
            return
        cb = checkpoint_callback
        path = getattr(cb, "_last_checkpoint_saved", "") or getattr(cb, "last_model_path", "") \
            or getattr(cb, "best_model_path", "")
        if not path or not os.path.exists(path):
            return
        path = os.path.abspath(path)
        step = getattr(cb, "_last_global_step_saved", None)
        if not isinstance(step, int):
            step = self._ensure_run().current_step or 0
        known = self._saved.get(step)
        self._saved.setdefault(step, set()).add(path)
        if known:  # last.ckpt right after the top-k file of the same step: one checkpoint
            return
        run = self._ensure_run()
        scores = {os.path.abspath(p): s for p, s in (getattr(cb, "best_k_models", None) or {}).items()}
        metric = scalar(scores[path]) if path in scores else None
        monitor = getattr(cb, "monitor", None)
        if metric is None and monitor and self._latest.get(monitor, (None,))[0] == step:
            metric = self._latest[monitor][1]
        mode = getattr(cb, "mode", "min") if metric is not None else "min"
        copy = self._log_checkpoints == "copy" or (
            self._log_checkpoints is True and not _inside(path, Path(run.dir)))
        run.add_checkpoint_file(path, step, metric=metric, mode=mode, copy=copy, origin="lightning",
                                keep=self._steps_kept(cb, step))

    def _steps_kept(self, cb: Any, step: int) -> set[int]:
        """The steps whose files Lightning still keeps: each kept file at its newest step."""
        live = {os.path.abspath(p) for p in (getattr(cb, "best_k_models", None) or {})}
        best = getattr(cb, "best_model_path", "")
        if best:
            live.add(os.path.abspath(best))
        # With save_last, last.ckpt is (re)written at this step right after the top-k file:
        # the step it was at before is not kept for it.
        last = getattr(cb, "last_model_path", "")
        if last and not getattr(cb, "save_last", None):
            live.add(os.path.abspath(last))
        newest: dict[str, int] = {}
        for s in sorted(self._saved):
            for p in self._saved[s]:
                if p in live:
                    newest[p] = s
        for s in [s for s in self._saved if s not in newest.values() and s != step]:
            del self._saved[s]
        return set(newest.values()) | {step}


def _inside(path: str, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
