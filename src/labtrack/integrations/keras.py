"""A Keras 3 callback that records to labtrack.

One changed line in a Keras script (any backend; without TensorFlow installed set
`KERAS_BACKEND=torch` or `jax` before keras is imported)::

    from labtrack.integrations.keras import LabtrackCallback
    model.fit(x, y, epochs=5, validation_split=0.2, callbacks=[LabtrackCallback("digits")])

What lands in the run (docs/integrations.md, "Keras"):

* at `on_train_begin`: params "fit" (epochs, steps per epoch, as Keras passes them),
  "optimizer" (`optimizer.get_config()`: its class name, learning rate, ...) and "model"
  (name, class, parameter count, loss), beside the `config` you pass;
* every `log_every_n_batches`-th training batch: "batch/<metric>" ("batch/loss",
  "batch/accuracy", as Keras reports them: running means over the epoch so far) at the
  global batch count (1 after the first batch, counting on across epochs and `fit` calls);
* every epoch end: "epoch/<metric>" with the validation metrics Keras names `val_*`
  ("epoch/loss", "epoch/val_loss", "epoch/val_accuracy") and "epoch" (Keras' epoch index,
  from 0), at the same global batch count, so batch and epoch series share one x axis;
* at `on_train_end`: the run finished. Keras calls no callback when `fit` raises: use the
  callback as a context manager (`with cb: model.fit(...)`) to have the run marked failed,
  or let the exception end the script (labtrack's exit hook marks it failed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import LabtrackTypeError
from ._common import RunOwner, make_run, readable, require, scalar

_keras = require("keras", "keras", "labtrack.integrations.keras")

__all__ = ["LabtrackCallback"]


if TYPE_CHECKING:
    _Callback = object
else:
    _Callback = _keras.callbacks.Callback


class LabtrackCallback(RunOwner, _Callback):
    """A `keras.callbacks.Callback` that records a `fit` to labtrack.

    Args:
        experiment: the labtrack experiment (default: the script's name).
        name: the run's name.
        root: the labtrack root (default LABTRACK_ROOT or ./labtrack).
        config: more params for the run, beside "fit", "optimizer" and "model".
        tags: the run's tags.
        comment: the run's comment.
        run: an existing labtrack run to log to instead of a new one; it is not finished at
            the end of `fit` (its owner finishes it).
        log_every_n_batches: record the batch metrics of every n-th batch (0: none, epoch
            metrics only).
        **run_options: more keywords for `labtrack.Run` (seed, capture_git, remote, ...).

    Raises:
        LabtrackTypeError: `log_every_n_batches` not a whole number >= 0, or `run=`
            together with options for a new run.

    Example:
        >>> with LabtrackCallback("digits", name="mlp") as cb:
        ...     model.fit(x, y, epochs=3, validation_split=0.2, callbacks=[cb])
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
        log_every_n_batches: int = 1,
        **run_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int) \
                or log_every_n_batches < 0:
            raise LabtrackTypeError(
                f"log_every_n_batches must be a whole number >= 0 (0: epoch metrics only), "
                f"got {log_every_n_batches!r}")
        if run is not None:
            make_run(run, experiment, name, root, config, tags, comment, run_options)  # checks the mix
        self._args = (experiment, name, root, config, tags, comment, dict(run_options))
        self._run = run
        self._own = run is None
        self._finished = False
        self._every = log_every_n_batches
        self._batches = 0  # the global batch count: the step of every point

    @property
    def run(self) -> Any:
        """The labtrack Run (None until the first `fit` starts)."""
        return self._run

    # --- what Keras calls ------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Start the run (or go on with it) and record the fit, optimizer and model params."""
        params = self._describe()
        if self._run is not None and self._finished:  # fit() again: the same run goes on
            from .. import Run

            self._run = Run(resume=self._run.id, root=self._run.root)
            self._finished = False
        if self._run is not None:
            self._run.log_params(params)
            return
        experiment, name, root, config, tags, comment, options = self._args
        extra = readable(dict(config) if isinstance(config, Mapping) else vars(config)) if config is not None else {}
        self._run = make_run(None, experiment, name, root, {**extra, **params}, tags, comment, options)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Record the batch metrics at the global batch count (every n-th batch)."""
        self._batches += 1
        if self._run is None or not logs or not self._every or self._batches % self._every:
            return
        values = _numbers(logs, "batch/")
        if values:
            self._run.log(values, step=self._batches)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Record the epoch's metrics, validation included, at the global batch count."""
        if self._run is None:
            return
        values = _numbers(logs or {}, "epoch/")
        values["epoch"] = float(epoch)
        self._run.log(values, step=self._batches)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Finish the run (a `run=` passed in is flushed instead)."""
        if self._run is None or self._finished:
            return
        if self._own:
            self._run.finish()
            self._finished = True
        else:
            self._run.flush()

    def _describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fit = getattr(self, "params", None)
        if isinstance(fit, Mapping) and fit:
            out["fit"] = readable(dict(fit))
        model = getattr(self, "_model", None) or getattr(self, "model", None)
        if model is None:
            return out
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            config = dict(optimizer.get_config()) if hasattr(optimizer, "get_config") else {}
            config.setdefault("class", type(optimizer).__name__)
            lr = scalar(getattr(optimizer, "learning_rate", None))
            if lr is not None and not isinstance(config.get("learning_rate"), (int, float)):
                config["learning_rate_now"] = lr  # a schedule's config, plus its value at the start
            out["optimizer"] = readable(config)
        described: dict[str, Any] = {"name": getattr(model, "name", None), "class": type(model).__name__}
        try:
            described["params"] = int(model.count_params())
        except (ValueError, AttributeError, TypeError):  # a model not built yet
            pass
        loss = getattr(model, "loss", None)
        if loss is not None:
            described["loss"] = readable(loss if isinstance(loss, (str, list, dict)) else getattr(loss, "name", loss))
        out["model"] = described
        return out


def _numbers(logs: Mapping[str, Any], prefix: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in logs.items():
        number = scalar(value)
        if number is not None:
            values[prefix + str(key)] = number
    return values
