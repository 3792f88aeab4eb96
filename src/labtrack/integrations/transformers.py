"""A transformers TrainerCallback that records to labtrack.

Two changed lines in a Trainer script::

    from labtrack.integrations.transformers import LabtrackCallback
    args = TrainingArguments(..., report_to="none")      # no other tracker
    trainer = Trainer(model, args, ..., callbacks=[LabtrackCallback("glue", name="bert-tiny")])

What lands in the run (docs/integrations.md, "transformers"):

* at `on_train_begin`: the TrainingArguments (`args.to_dict()`) under "args" and the model
  config (`model.config.to_dict()`) under "model" in params.json (`args.learning_rate`,
  `model.hidden_size` in the runs table);
* every `on_log` at `state.global_step`, named as transformers' own W&B and TensorBoard
  callbacks do: `eval_loss` -> "eval/loss", `test_*` -> "test/*", everything else under
  "train/" ("train/loss", "train/learning_rate", "train/grad_norm", "train/epoch");
  evaluation metrics that reach `on_evaluate` without a log are recorded there;
* every `on_save`: the `checkpoint-<step>` folder as a labtrack checkpoint at that step,
  referenced where transformers wrote it (or copied, `log_checkpoints="copy"`), ranked by
  `metric_for_best_model` (mode from `greater_is_better`), so the run's "best" checkpoint
  is `state.best_model_checkpoint`; folders `save_total_limit` deletes leave the record;
* at `on_train_end`: the trainer's state as `artifacts/trainer_state.json` and the run
  finished. An exception out of `train()` ends the run through labtrack's exit hooks
  (failed when it ends the script) or the `run=` you passed.

Only the world process zero records (`state.is_world_process_zero`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import LabtrackValueError
from ._common import RunOwner, make_run, readable, require, scalar

_tf = require("transformers", "transformers", "labtrack.integrations.transformers")

__all__ = ["LabtrackCallback"]

_CHECKPOINT_PREFIX = "checkpoint"  # transformers' PREFIX_CHECKPOINT_DIR


def metric_name(key: str) -> str:
    """The series name of a key in transformers' logs ("eval_loss" -> "eval/loss")."""
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}"


if TYPE_CHECKING:
    _Callback = object
else:
    _Callback = _tf.TrainerCallback


class LabtrackCallback(RunOwner, _Callback):
    """A `transformers.TrainerCallback` that records a Trainer's run to labtrack.

    Args:
        experiment: the labtrack experiment (default: the script's name).
        name: the run's name (default: `args.run_name` when set).
        root: the labtrack root (default LABTRACK_ROOT or ./labtrack).
        config: more params for the run, beside "args" and "model".
        tags: the run's tags.
        comment: the run's comment.
        run: an existing labtrack run to log to instead of a new one; it is not finished at
            the end of training (its owner finishes it).

    Used as a context manager (`with cb: trainer.train()`), an exception out of training
    leaves the run failed (transformers calls no callback when training raises).
        log_checkpoints: how saved checkpoint folders are recorded: "reference" (default;
            the path, not the bytes), "copy" (into the run) or False (not recorded).
        **run_options: more keywords for `labtrack.Run` (seed, capture_git, remote, ...).

    Raises:
        LabtrackValueError: a `log_checkpoints` other than those.
        LabtrackTypeError: `run=` together with options for a new run.

    Example:
        >>> trainer = Trainer(model, TrainingArguments("out", report_to="none"),
        ...                   train_dataset=ds, callbacks=[LabtrackCallback("sst2")])
        >>> trainer.train()
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
        log_checkpoints: bool | Literal["copy", "reference"] = "reference",
        **run_options: Any,
    ) -> None:
        if log_checkpoints not in (True, False, "copy", "reference"):
            raise LabtrackValueError(
                f"log_checkpoints={log_checkpoints!r} is not allowed; use 'reference', 'copy' or False")
        if run is not None:
            make_run(run, experiment, name, root, config, tags, comment, run_options)  # checks the mix
        self._args = (experiment, name, root, config, tags, comment, dict(run_options))
        self._run = run
        self._own = run is None
        self._copy = log_checkpoints == "copy"
        self._log_checkpoints = log_checkpoints is not False
        self._logged: tuple[int, frozenset[str]] = (-1, frozenset())  # what on_evaluate may skip
        self._eval: dict[str, tuple[int, float]] = {}  # eval key -> its last (step, value)
        self._saved: dict[int, str] = {}  # step -> the checkpoint folder recorded
        self._finished = False

    # --- the run ------------------------------------------------------------------------------
    @property
    def run(self) -> Any:
        """The labtrack Run (None until training starts, and on other processes)."""
        return self._run

    def _start(self, args: Any, model: Any) -> Any:
        params: dict[str, Any] = {}
        if args is not None and hasattr(args, "to_dict"):
            params["args"] = readable(args.to_dict())
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            params["model"] = readable(model_config.to_dict())
            params["model"].setdefault("class", type(model).__name__)
        if self._run is not None and self._finished:  # train() again: the same run goes on
            from .. import Run

            self._run = Run(resume=self._run.id, root=self._run.root)
            self._finished = False
        if self._run is not None:
            if params:
                self._run.log_params(params)
            return self._run
        experiment, name, root, config, tags, comment, options = self._args
        if name is None:
            run_name = getattr(args, "run_name", None)
            # transformers defaults run_name to output_dir: a path is no name
            name = run_name if isinstance(run_name, str) and run_name != getattr(args, "output_dir", None) else None
        extra = readable(dict(config) if isinstance(config, Mapping) else vars(config)) if config is not None else {}
        # Given as the config (not log_params): no 150-line table printed when training starts.
        self._run = make_run(None, experiment, name, root, {**extra, **params}, tags, comment, options)
        return self._run

    # --- what the Trainer calls -----------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Start the run (if needed) and record the arguments and the model config."""
        if state.is_world_process_zero:
            self._start(args, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Record the numbers in `logs` at `state.global_step`."""
        if not state.is_world_process_zero or not logs:
            return
        run = self._run if self._run is not None else self._start(args, kwargs.get("model"))
        step = int(state.global_step)
        values = self._values(logs, step)
        if values:
            run.log(values, step=step)
        self._logged = (step, frozenset(logs))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> None:
        """Record evaluation metrics that no `on_log` of this step carried."""
        if not state.is_world_process_zero or not metrics:
            return
        step = int(state.global_step)
        seen = self._logged[1] if self._logged[0] == step else frozenset()
        rest = {k: v for k, v in metrics.items() if k not in seen}
        if rest:
            run = self._run if self._run is not None else self._start(args, kwargs.get("model"))
            values = self._values(rest, step)
            if values:
                run.log(values, step=step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the checkpoint folder the Trainer just wrote."""
        if not state.is_world_process_zero or not self._log_checkpoints or self._run is None:
            return
        step = int(state.global_step)
        folder = Path(args.output_dir) / f"{_CHECKPOINT_PREFIX}-{step}"
        if not folder.is_dir():
            return  # a hyperparameter-search trial folder, or saved elsewhere: nothing to point at
        metric, mode = None, "min"
        key = getattr(args, "metric_for_best_model", None)
        if key:
            key = key if key.startswith("eval_") else f"eval_{key}"
            at, value = self._eval.get(key, (None, None))
            if at == step:
                metric, mode = value, ("max" if getattr(args, "greater_is_better", False) else "min")
        self._saved[step] = str(folder.absolute())
        keep = {s for s, p in self._saved.items() if os.path.isdir(p)}
        self._saved = {s: p for s, p in self._saved.items() if s in keep}
        self._run.add_checkpoint_file(folder, step, metric=metric, mode=mode, copy=self._copy, fmt="folder",
                                     origin="transformers", keep=keep)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Keep the trainer's final state and finish the run (a `run=` passed in is flushed)."""
        if not state.is_world_process_zero or self._run is None:
            return
        if hasattr(state, "save_to_json"):
            with tempfile.TemporaryDirectory(prefix="labtrack-") as tmp:
                path = os.path.join(tmp, "trainer_state.json")
                state.save_to_json(path)
                self._run.save_artifact(path, "trainer_state.json")
        if self._own:
            self._run.finish()
            self._finished = True
        else:
            self._run.flush()

    def _values(self, logs: Mapping[str, Any], step: int) -> dict[str, float]:
        values: dict[str, float] = {}
        for key, value in logs.items():
            number = scalar(value)
            if number is None:
                continue  # strings and lists transformers logs (e.g. a report) are not series
            values[metric_name(str(key))] = number
            if str(key).startswith("eval_"):
                self._eval[str(key)] = (step, number)
        return values
