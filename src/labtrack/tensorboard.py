"""`SummaryWriter`: a drop-in for `torch.utils.tensorboard.SummaryWriter` (and tensorboardX's)
that records into labtrack runs instead of TensorBoard event files.

A script written for TensorBoard changes one line::

    from labtrack.tensorboard import SummaryWriter    # was: from torch.utils.tensorboard import ...

    writer = SummaryWriter("runs/exp1")               # a labtrack run: experiment "runs", name "exp1"
    for step in range(100):
        writer.add_scalar("Loss/train", loss, step)
    writer.close()                                    # finishes the run

Each writer is its own labtrack Run (never the default run of `labtrack.init`), under the
root labtrack uses (the `root=` argument, else LABTRACK_ROOT, else ./labtrack); `log_dir`
only names it: the experiment is its parent folder's name ("tensorboard" for a single
folder) and the run name its last part. Nothing is written into `log_dir` itself.

The mapping, what is accepted without meaning, and what is not supported are in
docs/integrations.md ("TensorBoard SummaryWriter").
"""

from __future__ import annotations

import math
import os
import socket
from datetime import datetime
from types import TracebackType
from typing import Any, Callable, Mapping, NoReturn

from . import _tb_convert as conv
from ._disabled import DisabledRun
from ._run import Run
from .errors import (
    LabtrackTypeError,
    LabtrackValueError,
    RunStateError,
    UnsupportedError,
)

__all__ = ["SummaryWriter"]

CUSTOM_SCALARS = "tensorboard/custom_scalars"  # the markdown document add_custom_scalars writes


def _log_at(run: Any, values: Mapping[str, Any], step: int, walltime: float | None) -> None:
    """`run.log` with the point's wall time set to `walltime` (None: now).

    The one place that passes a TensorBoard walltime to Run.log's `time=`.
    """
    if walltime is None:
        run.log(values, step)
    else:
        run.log(values, step, time=walltime)


class SummaryWriter:
    """Records TensorBoard-style calls (`add_scalar`, `add_image`, ...) into a labtrack run.

    Args:
        log_dir: names the run (not a folder labtrack writes to): experiment = the parent
            folder's name, run name = the last part. Default, as torch:
            `runs/<Mon><dd>_<HH>-<MM>-<SS>_<host><comment>`.
        comment: appended to the default log_dir, as torch does; also the run's comment.
        purge_step: accepted; every writer starts a new run, so there is nothing to purge.
        max_queue: accepted; labtrack's writer thread has its own queue.
        flush_secs: accepted; labtrack flushes every LABTRACK_FLUSH_SECONDS (1 s by default).
        filename_suffix: accepted; labtrack writes no event files.
        root: the folder of runs (default LABTRACK_ROOT, else ./labtrack).
        experiment: the experiment, instead of the one log_dir gives.
        logdir: tensorboardX's name of `log_dir`.
        write_to_disk: tensorboardX's switch: False records nothing (a DisabledRun).

    Raises:
        LabtrackTypeError, LabtrackValueError: an argument of the wrong type or value.

    Example:
        >>> with SummaryWriter("runs/exp1") as w:
        ...     w.add_scalar("loss", 0.5, 0)
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, comment: str = "",
                 purge_step: int | None = None, max_queue: int = 10, flush_secs: float = 120,
                 filename_suffix: str = "", *, root: str | os.PathLike[str] | None = None,
                 experiment: str | None = None, logdir: str | os.PathLike[str] | None = None,
                 write_to_disk: bool = True) -> None:
        if log_dir is not None and logdir is not None:
            raise LabtrackValueError(f"pass log_dir or logdir, not both (got {log_dir!r} and {logdir!r})")
        log_dir = log_dir if log_dir is not None else logdir
        if not isinstance(comment, str):
            raise LabtrackTypeError(f"comment must be a str, got {type(comment).__name__} {comment!r}")
        if not isinstance(filename_suffix, str):
            raise LabtrackTypeError(f"filename_suffix must be a str, got {type(filename_suffix).__name__}")
        if purge_step is not None:
            conv.check_step("purge_step", purge_step)
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise LabtrackValueError(f"max_queue must be an int >= 0, got {max_queue!r}")
        if isinstance(flush_secs, bool) or not isinstance(flush_secs, (int, float)) \
                or not (math.isfinite(flush_secs) and flush_secs > 0):
            raise LabtrackValueError(f"flush_secs must be a number of seconds > 0, got {flush_secs!r}")
        if not log_dir:
            log_dir = conv.default_log_dir(comment, datetime.now(), socket.gethostname())
        elif not isinstance(log_dir, (str, os.PathLike)):
            raise LabtrackTypeError(f"log_dir must be a str or a path, got {type(log_dir).__name__} {log_dir!r}")
        self.log_dir: str = os.fspath(log_dir)
        exp, name = conv.run_names(self.log_dir)
        self._steps: dict[tuple[str, str], int] = {}
        self._hparams: dict[str, Any] = {}
        self._layout: dict[str, dict[str, list[Any]]] = {}
        self._closed = False
        self._run: Run | DisabledRun
        if write_to_disk:
            self._run = Run(experiment if experiment is not None else exp, name,
                            comment=comment or None, root=root)
        else:
            self._run = DisabledRun()

    # --- the writer itself ------------------------------------------------------------------
    @property
    def run(self) -> Run | DisabledRun:
        """The labtrack run this writer records into (for `save_artifact`, `log_table`, ...)."""
        return self._run

    @property
    def logdir(self) -> str:  # tensorboardX's attribute
        return self.log_dir

    def get_logdir(self) -> str:
        """The log_dir as given (or the default one): the run's name, not a folder labtrack writes."""
        return self.log_dir

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<labtrack.tensorboard.SummaryWriter {self.log_dir!r} {state}, run {self._run.id}>"

    def _open(self, method: str) -> Any:
        if self._closed:
            raise RunStateError(
                f"SummaryWriter({self.log_dir!r}).{method}(): the writer is closed and its run "
                f"{self._run.id} finished; create a new SummaryWriter to record more")
        return self._run

    def _step(self, kind: str, tag: Any, global_step: Any, method: str) -> int:
        """The step of a call: global_step, or (None) one past this tag's last step (0 first)."""
        key = (kind, tag if isinstance(tag, str) else repr(tag))
        if global_step is None:
            step = self._steps.get(key, -1) + 1
        elif type(global_step) is int and 0 <= global_step < 9007199254740992:  # the common case
            step = global_step
        else:
            step = conv.check_step(f"{method}({tag!r})", global_step)
        self._steps[key] = step
        return step

    def flush(self) -> None:
        """Block until everything recorded so far is on disk (a no-op once closed)."""
        if not self._closed:
            self._run.flush()

    def close(self) -> None:
        """Finish the run (status "finished"). Later add_* calls raise RunStateError; a
        second close() does nothing."""
        if self._closed:
            return
        self._closed = True
        self._run.finish()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._run.__exit__(exc_type, exc, tb)  # a failing block marks the run failed, as Run does

    # --- scalars --------------------------------------------------------------------------------
    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None, walltime: Any = None,
                   new_style: bool = False, double_precision: bool = False, *, display_name: str = "",
                   summary_description: str = "") -> None:
        """Record one value of the series `tag` at `global_step`.

        Args:
            tag: the series name, e.g. "Loss/train".
            scalar_value: a number, or a torch tensor / numpy array of one element.
            global_step: a whole number; None: one past this tag's last step (0 at first).
            walltime: Unix seconds to record as the point's time (default: now).
            new_style, double_precision: accepted; labtrack keeps every value as float64.
            display_name, summary_description: tensorboardX's; accepted, not kept.

        Raises:
            LabtrackTypeError, LabtrackValueError, LabtrackNameError: a bad value, step,
                walltime or tag. RunStateError: the writer is closed.
        """
        run = self._open("add_scalar")
        # A float or int goes straight to Run.log, which checks it as it checks every value.
        value = scalar_value if type(scalar_value) in (float, int) else conv.one_value(tag, scalar_value)
        t = None if walltime is None else conv.check_walltime(f"add_scalar({tag!r})", walltime)
        _log_at(run, {tag: value}, self._step("scalar", tag, global_step, "add_scalar"), t)

    def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: Any = None,
                    walltime: Any = None) -> None:
        """Record several values at one step, as the series `main_tag/<tag>` of this run
        (TensorBoard makes one extra writer per tag; labtrack keeps them in one run).

        Raises:
            LabtrackTypeError: tag_scalar_dict is not a dict of str -> number.
        """
        run = self._open("add_scalars")
        if not isinstance(main_tag, str):
            raise LabtrackTypeError(f"main_tag of add_scalars must be a str, got {type(main_tag).__name__}")
        if not isinstance(tag_scalar_dict, Mapping):
            raise LabtrackTypeError(f"add_scalars({main_tag!r}, ...) takes a dict of tag -> value, "
                                    f"got {type(tag_scalar_dict).__name__}")
        values = {}
        for k, v in tag_scalar_dict.items():
            if not isinstance(k, str):
                raise LabtrackTypeError(f"add_scalars({main_tag!r}, ...): tag {k!r} must be a str")
            values[f"{main_tag}/{k}"] = conv.one_value(f"{main_tag}/{k}", v)
        t = conv.check_walltime(f"add_scalars({main_tag!r})", walltime)
        _log_at(run, values, self._step("scalars", main_tag, global_step, "add_scalars"), t)

    # --- images ---------------------------------------------------------------------------------
    def add_image(self, tag: str, img_tensor: Any, global_step: Any = None, walltime: Any = None,
                  dataformats: str = "CHW") -> None:
        """Record an image (PNG). Float values are scaled by 255 and uint8 kept, both clipped
        to [0, 255], as TensorBoard does; one channel stays grey; a batched layout ("NCHW")
        becomes one grid image. The image's time is when it is added (walltime is checked
        but not kept: labtrack's media records carry their own time).

        Args:
            dataformats: the layout of img_tensor: "CHW", "HWC", "HW", "WH", "NCHW", "NHWC", ...

        Raises:
            LabtrackTypeError, LabtrackValueError: not a tensor/array, a layout that does not
                fit its shape, channels other than 1, 3, 4, NaN values.
        """
        run = self._open("add_image")
        arr = conv.image_hwc(tag, img_tensor, dataformats)
        conv.check_walltime(f"add_image({tag!r})", walltime)
        run.log_image(tag, arr, self._step("media", tag, global_step, "add_image"))

    def add_images(self, tag: str, img_tensor: Any, global_step: Any = None, walltime: Any = None,
                   dataformats: str = "NCHW") -> None:
        """Record a batch of images as one grid image (up to 8 in a row, as TensorBoard lays
        them out); see add_image for values and channels."""
        run = self._open("add_images")
        arr = conv.image_hwc(tag, img_tensor, dataformats)
        conv.check_walltime(f"add_images({tag!r})", walltime)
        run.log_image(tag, arr, self._step("media", tag, global_step, "add_images"))

    def add_image_with_boxes(self, tag: str, img_tensor: Any, box_tensor: Any, global_step: Any = None,
                             walltime: Any = None, rescale: float = 1, dataformats: str = "CHW",
                             labels: list[str] | None = None) -> None:
        """Record an image with labtrack boxes (drawn by the dashboard, filterable by label).

        Args:
            box_tensor: (N, 4) rows of [x1, y1, x2, y2] in pixels.
            rescale: the image and its boxes scaled by this factor.
            labels: one label per box (each becomes the box's class).
        """
        run = self._open("add_image_with_boxes")
        arr = conv.image_hwc(tag, img_tensor, dataformats)
        if isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or not (0 < rescale <= 64):
            raise LabtrackValueError(f"rescale of image {tag!r} must be a number in (0, 64], got {rescale!r}")
        if rescale != 1:
            import numpy as np
            from PIL import Image

            h, w = arr.shape[:2]
            size = (max(1, int(w * rescale)), max(1, int(h * rescale)))
            arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
        found = conv.boxes(tag, box_tensor, labels, float(rescale))
        classes = sorted({b["className"] for b in found if "className" in b}) or None
        conv.check_walltime(f"add_image_with_boxes({tag!r})", walltime)
        run.log_image(tag, arr, self._step("media", tag, global_step, "add_image_with_boxes"),
                      boxes=found, classes=classes)

    def add_figure(self, tag: str, figure: Any, global_step: Any = None, close: bool = True,
                   walltime: Any = None) -> None:
        """Record a matplotlib figure (PNG), or a list of figures of one size as a grid image.

        Args:
            close: close the figure(s) afterwards (`plt.close`), as TensorBoard does.

        Raises:
            LabtrackTypeError: not a matplotlib figure. LabtrackValueError: figures of a
                list that differ in size.
        """
        run = self._open("add_figure")
        conv.check_walltime(f"add_figure({tag!r})", walltime)
        step = self._step("media", tag, global_step, "add_figure")
        figures = list(figure) if isinstance(figure, (list, tuple)) else [figure]
        if not figures:
            raise LabtrackValueError(f"add_figure({tag!r}, []) got no figures")
        for f in figures:
            if not callable(getattr(f, "savefig", None)) or not hasattr(f, "canvas"):
                raise LabtrackTypeError(f"add_figure({tag!r}, ...) got a {type(f).__name__}; "
                                        "allowed: a matplotlib Figure or a list of them")
        if not isinstance(figure, (list, tuple)):
            run.log_figure(tag, figure, step)
        else:
            run.log_image(tag, _figures_grid(tag, figures), step)
        if close:
            import matplotlib.pyplot as plt

            for f in figures:
                plt.close(f)

    # --- histograms, text, hparams --------------------------------------------------------------
    def add_histogram(self, tag: str, values: Any, global_step: Any = None, bins: Any = "tensorflow",
                      walltime: Any = None, max_bins: int | None = None) -> None:
        """Record a histogram of `values` (a tensor, array or list of numbers) in even bins.

        Args:
            bins: "tensorflow" (TensorBoard's default): 64 even bins; a numpy rule ("auto",
                "fd", ...): the number of bins it picks; an int: that many.
            max_bins: at most this many bins.

        Raises:
            LabtrackValueError: explicit bin edges (labtrack bins evenly), an unknown rule.
        """
        run = self._open("add_histogram")
        n = conv.histogram_bins(tag, values, bins, max_bins)
        conv.check_walltime(f"add_histogram({tag!r})", walltime)
        if isinstance(values, (int, float)):
            values = [values]  # one value, as torch allows
        elif not isinstance(values, (list, tuple)):
            values = conv.to_numpy(f"values of histogram {tag!r}", values)
        run.log_histogram(tag, values, self._step("histogram", tag, global_step, "add_histogram"), bins=n)

    def add_text(self, tag: str, text_string: str, global_step: Any = None, walltime: Any = None) -> None:
        """Record a text at a step (the dashboard's text view)."""
        run = self._open("add_text")
        if not isinstance(text_string, str):
            raise LabtrackTypeError(f"add_text({tag!r}, ...) takes a str, got {type(text_string).__name__}")
        conv.check_walltime(f"add_text({tag!r})", walltime)
        run.log_text(tag, text_string, self._step("text", tag, global_step, "add_text"))

    def add_hparams(self, hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, Any],
                    hparam_domain_discrete: Mapping[str, list[Any]] | None = None,
                    run_name: str | None = None, global_step: Any = None, *, name: str | None = None) -> None:
        """Record hyperparameters as the run's params and the metrics as its series (so they
        are in summary.json and the runs table). TensorBoard puts them in a sub-run named
        `run_name`; labtrack keeps them in this writer's run, so `run_name` is not used
        (nor tensorboardX's `name`, which it takes third, where torch takes the domains).

        Raises:
            LabtrackTypeError: not dicts, or a value that is not bool/int/float/str/None.
            RunStateError: a hyperparameter recorded before with another value (one run has
                one set of params: use one SummaryWriter per configuration).
        """
        run = self._open("add_hparams")
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise LabtrackTypeError("add_hparams takes two dicts (hparam_dict, metric_dict), got "
                                    f"{type(hparam_dict).__name__} and {type(metric_dict).__name__}")
        hp = {}
        for k, v in hparam_dict.items():
            if not isinstance(k, str) or not k:
                raise LabtrackTypeError(f"hparam names must be non-empty str, got {k!r}")
            hp[k] = conv.hparam_value(k, v)
        if isinstance(hparam_domain_discrete, str) and run_name is None:  # tensorboardX's order
            hparam_domain_discrete, run_name = None, hparam_domain_discrete
        run_name = run_name if name is None else name
        if hparam_domain_discrete is not None:
            if not isinstance(hparam_domain_discrete, Mapping) or not all(
                    k in hp and isinstance(v, list) for k, v in hparam_domain_discrete.items()):
                raise LabtrackValueError(
                    "hparam_domain_discrete must be a dict of hparam name -> list of its values, "
                    f"each name one of hparam_dict's ({sorted(hp)}), got {hparam_domain_discrete!r}")
        if run_name is not None and not isinstance(run_name, str):
            raise LabtrackTypeError(f"run_name must be a str, got {type(run_name).__name__}")
        metrics = {}
        for k, v in metric_dict.items():
            if not isinstance(k, str):
                raise LabtrackTypeError(f"metric names of add_hparams must be str, got {k!r}")
            metrics[k] = conv.one_value(k, v)
        clash = {k: (self._hparams[k], v) for k, v in hp.items() if k in self._hparams and self._hparams[k] != v}
        if clash:
            raise RunStateError(
                f"add_hparams: this run already has {', '.join(f'{k}={a!r}' for k, (a, _) in clash.items())} "
                f"and was given {', '.join(f'{k}={b!r}' for k, (_, b) in clash.items())}; a labtrack run "
                "has one set of params: use one SummaryWriter per configuration")
        self._hparams.update(hp)
        run.log_params(hp)
        if metrics:
            _log_at(run, metrics, self._step("hparams", "", global_step, "add_hparams"), None)

    # --- audio and video -------------------------------------------------------------------
    def add_video(self, tag: str, vid_tensor: Any, global_step: Any = None, fps: float = 4,
                  walltime: Any = None) -> None:
        """Record a video: (N, T, C, H, W), uint8 or float in [0, 1]; N videos tiled per frame.

        """
        run = self._open("add_video")
        frames = conv.video_frames(tag, vid_tensor)
        conv.check_walltime(f"add_video({tag!r})", walltime)
        run.log_video(tag, frames, fps=fps, step=self._step("media", tag, global_step, "add_video"))

    def add_audio(self, tag: str, snd_tensor: Any, global_step: Any = None, sample_rate: int = 44100,
                  walltime: Any = None) -> None:
        """Record a sound: (L,) or (1, L) samples in [-1, 1] (clipped, as TensorBoard does).

        """
        run = self._open("add_audio")
        wave = conv.audio_wave(tag, snd_tensor)
        conv.check_walltime(f"add_audio({tag!r})", walltime)
        run.log_audio(tag, wave, sample_rate=sample_rate,
                  step=self._step("media", tag, global_step, "add_audio"))

    # --- custom scalars: kept as a markdown document of the run --------------------------------
    def add_custom_scalars(self, layout: Mapping[str, Any]) -> None:
        """Keep a custom-scalars layout as the run's markdown document
        "tensorboard/custom_scalars" (the dashboard overlays series by selecting them)."""
        run = self._open("add_custom_scalars")
        for cat, charts in conv.check_layout(layout).items():
            self._layout.setdefault(cat, {}).update(charts)
        run.log_markdown(CUSTOM_SCALARS, conv.layout_markdown(self._layout))

    def add_custom_scalars_multilinechart(self, tags: list[str], category: str = "default",
                                          title: str = "untitled") -> None:
        """add_custom_scalars of one "Multiline" chart."""
        self.add_custom_scalars({category: {title: ["Multiline", tags]}})

    def add_custom_scalars_marginchart(self, tags: list[str], category: str = "default",
                                       title: str = "untitled") -> None:
        """add_custom_scalars of one "Margin" chart (three tags: value, lower, upper)."""
        self.add_custom_scalars({category: {title: ["Margin", tags]}})

    # --- not supported: each raises, naming what to use ----------------------------------------
    def add_graph(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_graph", "print(model) into the run's console log, or "
                     "run.save_artifact() of a torch.onnx / torch.jit export")

    def add_onnx_graph(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_onnx_graph", "run.save_artifact(path_of_the_onnx_file)")

    def add_embedding(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_embedding", "run.save_object(name, matrix) and run.log_table(name, metadata)")

    def add_pr_curve(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_pr_curve", "add_figure with a matplotlib plot of the curve, or "
                     "run.log_table(name, {'threshold': ..., 'precision': ..., 'recall': ...})")

    def add_pr_curve_raw(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_pr_curve_raw", "run.log_table(name, {'precision': ..., 'recall': ...})")

    def add_mesh(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_mesh", "run.save_object(name, vertices) or add_figure of a 3-D plot")

    def add_histogram_raw(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported (labtrack bins the values itself): raises UnsupportedError."""
        _unsupported("add_histogram_raw", "add_histogram(tag, values) with the values themselves")

    def add_tensor(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported: raises UnsupportedError."""
        _unsupported("add_tensor", "add_scalar for one value, add_histogram for many, "
                     "run.save_object(name, tensor) to keep the tensor")

    def add_event(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported (no protocol buffers): raises UnsupportedError."""
        _unsupported("add_event", "the add_* method of the kind of data")

    def add_summary(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not supported (no protocol buffers): raises UnsupportedError."""
        _unsupported("add_summary", "the add_* method of the kind of data")

    def export_scalars_to_json(self, *args: Any, **kwargs: Any) -> NoReturn:
        """tensorboardX's; not supported: raises UnsupportedError."""
        _unsupported("export_scalars_to_json", "labtrack.open(root)[run_id].scalars() (pandas), "
                     "or the run's scalars/*.csv files")

    def reopen(self) -> NoReturn:
        """Not supported (a closed writer's run is finished): raises UnsupportedError."""
        _unsupported("reopen", "a new SummaryWriter (a new run)")


def _unsupported(method: str, instead: str) -> NoReturn:
    raise UnsupportedError(f"SummaryWriter.{method}() is not supported by labtrack; use {instead} "
                           "(see docs/integrations.md, TensorBoard SummaryWriter)")


def _figures_grid(tag: str, figures: list[Any]) -> Any:
    """One grid image (H, W, 3) of several matplotlib figures of one size, rendered with Agg."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    images = []
    for f in figures:
        canvas: Any = FigureCanvasAgg(f)
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba())[:, :, :3].transpose(2, 0, 1))
    if len({i.shape for i in images}) != 1:
        raise LabtrackValueError(f"add_figure({tag!r}, [...]): the figures differ in size "
                                 f"({sorted({i.shape[1:] for i in images})}); give them one figsize and dpi")
    return conv.grid(np.stack(images)).transpose(1, 2, 0).copy()
