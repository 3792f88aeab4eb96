"""What `labtrack.tensorboard.SummaryWriter` turns its arguments into (pure: no disk, no run).

TensorBoard's writer takes tensors in many layouts ("CHW", "NHWC", ...), one-element tensors
as scalars, integral floats as steps and (N, T, C, H, W) videos; these functions turn them
into what `labtrack.Run` records, and refuse what cannot be recorded with a message that
names the tag. numpy is imported by the calls that need it.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import PurePath
from typing import Any

from .errors import LabtrackTypeError, LabtrackValueError

DEFAULT_EXPERIMENT = "tensorboard"  # for a log_dir of a single folder ("my_experiment")
GRID_COLUMNS = 8  # images of one add_images call per grid row, as TensorBoard lays them out


# --- names --------------------------------------------------------------------------------

def default_log_dir(comment: str, now: Any, host: str) -> str:
    """torch's default log_dir: `runs/<Mon><dd>_<HH>-<MM>-<SS>_<host><comment>`."""
    return os.path.join("runs", now.strftime("%b%d_%H-%M-%S") + "_" + host + comment)


def run_names(log_dir: str) -> tuple[str, str | None]:
    """(experiment, run name) for a log_dir: its parent folder's name and its last part.

    "runs/exp1" -> ("runs", "exp1"); "logs/mnist/lr0.1" -> ("mnist", "lr0.1"); a single
    folder "exp1" -> ("tensorboard", "exp1"). `.` and `..` parts are left out.
    """
    parts = [p for p in PurePath(log_dir).parts if p not in (".", "..") and p.strip("/\\")]
    if not parts:
        return DEFAULT_EXPERIMENT, None
    if len(parts) == 1:
        return DEFAULT_EXPERIMENT, parts[0]
    return parts[-2], parts[-1]


# --- numbers --------------------------------------------------------------------------------

def to_numpy(what: str, value: Any) -> Any:
    """A numpy array of a numpy array or a torch tensor (detached, on the CPU).

    Raises:
        LabtrackTypeError: anything else.
    """
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and callable(getattr(value, "detach", None)):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            t = t.float()
        return t.numpy()
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except (TypeError, ValueError) as err:
            raise LabtrackTypeError(f"{what} is a {type(value).__name__} that is not an array: {err}") from None
    raise LabtrackTypeError(f"{what} is a {type(value).__name__}; allowed: a torch tensor or a numpy array")


def one_value(tag: str, value: Any) -> Any:
    """The value of add_scalar: a number, or a tensor or array of exactly one element.

    Returns:
        A Python float, int or bool, or the numpy/torch scalar itself (Run.log checks it).

    Raises:
        LabtrackTypeError: a str (TensorBoard's caffe2 blob names), None, or many elements.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise LabtrackTypeError(
            f"add_scalar({tag!r}, ...) got {type(value).__name__} {value!r}; the value must be a "
            "number or a tensor/array of one element (caffe2 blob names are not supported)")
    mod = type(value).__module__
    if mod.startswith("torch") and callable(getattr(value, "numel", None)):
        if value.numel() != 1:
            raise LabtrackTypeError(
                f"add_scalar({tag!r}, ...) got a tensor of shape {tuple(value.shape)}; a scalar is one "
                "element (use add_scalars for several named values, add_histogram for many)")
        if value.is_complex():
            raise LabtrackTypeError(f"add_scalar({tag!r}, ...) got a complex tensor; a scalar is a real number")
        return value.detach().reshape(()).item()
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.size != 1:
                raise LabtrackTypeError(
                    f"add_scalar({tag!r}, ...) got a numpy array of shape {value.shape}; a scalar is one "
                    "element (use add_scalars for several named values, add_histogram for many)")
            return value.reshape(())[()]
    return value


def check_step(what: str, step: Any) -> int:
    """A global_step as an int: a whole number >= 0, also as a float (3.0) or a 0-d tensor.

    Raises:
        LabtrackTypeError, LabtrackValueError: not a whole number, or negative.
    """
    from ._records import check_step as whole

    f: float | None = None
    mod = type(step).__module__
    if isinstance(step, float):
        f = float(step)
    elif mod == "numpy" and getattr(getattr(step, "dtype", None), "kind", "") == "f" and step.size == 1:
        f = float(step.reshape(()))
    elif mod.startswith("torch") and callable(getattr(step, "is_floating_point", None)) \
            and step.is_floating_point() and step.numel() == 1:
        f = float(step.item())
    if f is not None:
        if not (math.isfinite(f) and f.is_integer()):
            raise LabtrackValueError(
                f"global_step of {what} is {step!r}; it must be a whole number >= 0 "
                "(TensorBoard would truncate it; pass an int)")
        step = int(f)
    try:
        return whole(step)
    except (LabtrackTypeError, LabtrackValueError) as err:
        raise type(err)(f"global_step of {what}: {err}") from None


def check_walltime(what: str, walltime: Any) -> float | None:
    """The walltime argument: None, or Unix seconds as a finite real number.

    Raises:
        LabtrackTypeError, LabtrackValueError: not a number, or not finite.
    """
    if walltime is None:
        return None
    if isinstance(walltime, bool) or not (isinstance(walltime, numbers.Real)
                                          or type(walltime).__module__ in ("numpy", "torch")):
        raise LabtrackTypeError(f"walltime of {what} is a {type(walltime).__name__}; "
                                "it must be Unix seconds as a number, e.g. time.time()")
    try:
        t = float(walltime)
    except (TypeError, ValueError) as err:
        raise LabtrackTypeError(f"walltime of {what} is not a number: {err}") from None
    if not math.isfinite(t):
        raise LabtrackValueError(f"walltime of {what} is {t}; it must be finite Unix seconds")
    return t


# --- images and videos ------------------------------------------------------------------------

_FORMAT = re.compile(r"^(?:[NCHW]{2,4})$")


def _check_format(tag: str, dataformats: Any, ndim: int, shape: tuple[int, ...]) -> str:
    if not isinstance(dataformats, str) or not _FORMAT.match(dataformats.upper()):
        raise LabtrackValueError(
            f"dataformats of image {tag!r} is {dataformats!r}; use letters N, C, H, W, each once: "
            "CHW, HWC, HW, NCHW, NHWC, ...")
    fmt = dataformats.upper()
    if len(set(fmt)) != len(fmt) or "H" not in fmt or "W" not in fmt or (len(fmt) == 4 and "C" not in fmt) \
            or (len(fmt) == 3 and "N" in fmt) or (len(fmt) == 2 and fmt not in ("HW", "WH")):
        raise LabtrackValueError(
            f"dataformats of image {tag!r} is {dataformats!r}; use CHW, HWC, HW, WH, NCHW, NHWC or "
            "another order of those letters, each once")
    if len(fmt) != ndim:
        raise LabtrackValueError(
            f"image {tag!r} has shape {shape} ({ndim} dimensions) but dataformats {dataformats!r} "
            f"describes {len(fmt)}; pass the dataformats of the tensor, e.g. 'HWC'")
    return fmt


def grid(nchw: Any) -> Any:
    """Images (N, C, H, W) laid out left to right, top to bottom, up to 8 in a row (C, H', W')."""
    import numpy as np

    n, c, h, w = nchw.shape
    cols = min(n, GRID_COLUMNS)
    rows = -(-n // cols)
    canvas = np.zeros((c, rows * h, cols * w), dtype=nchw.dtype)
    for i in range(n):
        y, x = divmod(i, cols)
        canvas[:, y * h:(y + 1) * h, x * w:(x + 1) * w] = nchw[i]
    return canvas


def to_uint8(tag: str, arr: Any) -> Any:
    """TensorBoard's scaling: uint8 as it is; anything else times 255, clipped to [0, 255].

    Raises:
        LabtrackValueError: NaN or infinite values (they have no colour).
        LabtrackTypeError: not numbers.
    """
    import numpy as np

    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise LabtrackTypeError(f"image {tag!r} has dtype {arr.dtype}; allowed: uint8 in [0, 255], "
                                "or float in [0, 1]")
    f = arr.astype(np.float32)
    if not np.all(np.isfinite(f)):
        raise LabtrackValueError(f"image {tag!r} has NaN or infinite values; replace them before logging")
    return np.ascontiguousarray(np.clip(f * 255.0, 0, 255).astype(np.uint8))


def image_hwc(tag: str, image: Any, dataformats: str) -> Any:
    """A uint8 image for Run.log_image: (H, W) grey, or (H, W, 3|4); batches made a grid.

    Args:
        tag: the name, for messages.
        image: a torch tensor or a numpy array in the layout `dataformats` says.
        dataformats: "CHW", "HWC", "HW", "WH", "NCHW", "NHWC", ... (N: a batch, made a grid).

    Raises:
        LabtrackTypeError, LabtrackValueError: not an array, a layout that does not fit the
            shape, channels other than 1, 3 or 4, an empty image, or NaN values.
    """
    arr = to_numpy(f"image {tag!r}", image)
    shape = tuple(arr.shape)
    fmt = _check_format(tag, dataformats, arr.ndim, shape)
    if arr.size == 0:
        raise LabtrackValueError(f"image {tag!r} is empty (shape {arr.shape})")
    if len(fmt) == 2:
        return to_uint8(tag, arr.transpose([fmt.index(c) for c in "HW"]))
    if len(fmt) == 4:
        arr = grid(arr.transpose([fmt.index(c) for c in "NCHW"])).transpose(1, 2, 0)
    else:
        arr = arr.transpose([fmt.index(c) for c in "HWC"])
    channels = arr.shape[2]
    if channels not in (1, 3, 4):
        raise LabtrackValueError(
            f"image {tag!r} has {channels} channels (shape {shape}, dataformats "
            f"{dataformats!r}); allowed: 1 (grey), 3 (RGB) or 4 (RGBA); check dataformats")
    if channels == 1:
        arr = arr[:, :, 0]
    return to_uint8(tag, arr)


def video_frames(tag: str, video: Any) -> Any:
    """(T, H, W, C) uint8 frames of an (N, T, C, H, W) video tensor; N videos made a grid per frame.

    Raises:
        LabtrackTypeError, LabtrackValueError: not 5-D, channels other than 1, 3 or 4, empty.
    """
    import numpy as np

    arr = to_numpy(f"video {tag!r}", video)
    if arr.ndim != 5 or arr.size == 0:
        raise LabtrackValueError(f"video {tag!r} has shape {tuple(arr.shape)}; add_video takes "
                                 "(N, T, C, H, W): N videos of T frames")
    n, t, c, h, w = arr.shape
    if c not in (1, 3, 4):
        raise LabtrackValueError(f"video {tag!r} has {c} channels (shape {tuple(arr.shape)}); "
                                 "allowed: 1, 3 or 4 in (N, T, C, H, W)")
    frames = np.stack([grid(arr[:, i]).transpose(1, 2, 0) for i in range(t)])
    if c == 1:
        frames = np.repeat(frames, 3, axis=3)
    return to_uint8(tag, frames)


def audio_wave(tag: str, sound: Any) -> Any:
    """A 1-D float32 wave in [-1, 1] (clipped, as TensorBoard does) of (L,) or (1, L).

    Raises:
        LabtrackValueError: more than one channel, empty, or NaN values.
    """
    import numpy as np

    arr = to_numpy(f"audio {tag!r}", sound)
    wave = arr.squeeze()
    if wave.ndim != 1 or wave.size == 0:
        raise LabtrackValueError(f"audio {tag!r} has shape {tuple(arr.shape)}; add_audio takes one "
                                 "channel of samples, (L,) or (1, L), in [-1, 1]")
    wave = wave.astype(np.float32)
    if not np.all(np.isfinite(wave)):
        raise LabtrackValueError(f"audio {tag!r} has NaN or infinite samples")
    return np.clip(wave, -1.0, 1.0)


def boxes(tag: str, box_tensor: Any, labels: Any, rescale: float) -> list[dict[str, Any]]:
    """labtrack boxes (xStart, yStart, xEnd, yEnd, className) of an (N, 4) [x1, y1, x2, y2] tensor.

    Raises:
        LabtrackValueError: not (N, 4), or labels that are not one str per box.
    """
    arr = to_numpy(f"boxes of image {tag!r}", box_tensor)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr.reshape(1, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise LabtrackValueError(f"boxes of image {tag!r} have shape {tuple(arr.shape)}; "
                                 "add_image_with_boxes takes (N, 4) rows of [x1, y1, x2, y2]")
    if isinstance(labels, str):
        labels = [labels]
    if labels is not None and (len(labels) != arr.shape[0] or not all(isinstance(x, str) for x in labels)):
        labels = None  # TensorBoard draws no labels then, too
    out = []
    for i, (x1, y1, x2, y2) in enumerate(arr.tolist()):
        b: dict[str, Any] = {"xStart": x1 * rescale, "yStart": y1 * rescale,
                             "xEnd": x2 * rescale, "yEnd": y2 * rescale}
        if labels is not None:
            b["className"] = labels[i]
        out.append(b)
    return out


# --- histograms and hparams -------------------------------------------------------------------

_NUMPY_BINS = ("auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt")
DEFAULT_BINS = 64  # for bins="tensorflow": labtrack bins evenly between min and max


def histogram_bins(tag: str, values: Any, bins: Any, max_bins: Any) -> int:
    """The number of even bins for Run.log_histogram.

    "tensorflow" (TensorBoard's default) -> 64; numpy's rules ("auto", "fd", ...) -> the count
    numpy chooses; an int as given; `max_bins` caps it.

    Raises:
        LabtrackValueError: explicit bin edges (a sequence), an unknown rule, a bad max_bins.
    """
    import numpy as np

    if isinstance(bins, str):
        if bins == "tensorflow":
            n = DEFAULT_BINS
        elif bins in _NUMPY_BINS:
            arr = np.asarray(to_numpy(f"values of histogram {tag!r}", values)
                             if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
            arr = arr[np.isfinite(arr)]
            n = len(np.histogram_bin_edges(arr, bins=bins)) - 1 if arr.size else 1
        else:
            raise LabtrackValueError(f"bins of histogram {tag!r} is {bins!r}; allowed: 'tensorflow', "
                                     f"{', '.join(map(repr, _NUMPY_BINS))} or an int")
    elif isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        n = int(bins)
    else:
        raise LabtrackValueError(
            f"bins of histogram {tag!r} is a {type(bins).__name__}; labtrack bins evenly between the "
            "least and greatest value: pass a number of bins (int) or a rule such as 'auto'")
    if max_bins is not None:
        if isinstance(max_bins, bool) or not isinstance(max_bins, numbers.Integral) or max_bins < 1:
            raise LabtrackValueError(f"max_bins of histogram {tag!r} must be an int >= 1, got {max_bins!r}")
        n = min(n, int(max_bins))
    return max(1, min(n, 10_000))


def hparam_value(name: str, value: Any) -> Any:
    """A hyperparameter as JSON: bool, int, float, str or None (one-element tensors unwrapped).

    Raises:
        LabtrackTypeError: anything else (TensorBoard allows only these too).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    mod = type(value).__module__
    if mod == "numpy" or (mod.startswith("torch") and callable(getattr(value, "numel", None))):
        import numpy as np

        arr = np.asarray(value) if mod == "numpy" else to_numpy(f"hparam {name!r}", value)
        if arr.size == 1:
            v = arr.reshape(()).item()
            if isinstance(v, (bool, int, float)):
                return v
    raise LabtrackTypeError(f"hparam {name!r} is a {type(value).__name__} ({value!r:.60}); allowed: "
                            "bool, int, float, str, None or a one-element tensor")


# --- custom scalars ----------------------------------------------------------------------------

def check_layout(layout: Any) -> dict[str, dict[str, list[Any]]]:
    """A custom-scalars layout {category: {chart: ["Multiline" | "Margin", [tags]]}}, checked.

    Raises:
        LabtrackTypeError, LabtrackValueError: any other shape.
    """
    help_ = ("{category: {chart: ['Multiline', [tags]]}} or ['Margin', [value, lower, upper]]")
    if not isinstance(layout, dict):
        raise LabtrackTypeError(f"add_custom_scalars takes a dict {help_}, got {type(layout).__name__}")
    out: dict[str, dict[str, list[Any]]] = {}
    for cat, charts in layout.items():
        if not isinstance(cat, str) or not isinstance(charts, dict):
            raise LabtrackTypeError(f"custom scalars category {cat!r} must be a str mapping to a dict {help_}")
        out[cat] = {}
        for chart, spec in charts.items():
            ok = (isinstance(chart, str) and isinstance(spec, (list, tuple)) and len(spec) == 2
                  and spec[0] in ("Multiline", "Margin") and isinstance(spec[1], (list, tuple))
                  and all(isinstance(t, str) for t in spec[1]))
            if not ok or (spec[0] == "Margin" and len(spec[1]) != 3):
                raise LabtrackValueError(f"custom scalars chart {cat!r}/{chart!r} is {spec!r}; expected {help_}")
            out[cat][chart] = [spec[0], list(spec[1])]
    return out


def layout_markdown(layout: dict[str, dict[str, list[Any]]]) -> str:
    """The layout as a markdown document: one heading per category, one line per chart."""
    lines = ["# TensorBoard custom scalars", ""]
    for cat, charts in layout.items():
        lines += [f"## {cat}", ""]
        for chart, (kind, tags) in charts.items():
            lines.append(f"- **{chart}** ({kind}): " + ", ".join(f"`{t}`" for t in tags))
        lines.append("")
    return "\n".join(lines)
