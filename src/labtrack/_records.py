"""Values, images, histograms, tables and figures turned into what is stored (pure: no disk).

Everything here is called at the call site (so misuse raises at once) or on the writer
thread (encoding); nothing here touches files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import numbers
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import LabtrackTypeError, LabtrackValueError

_SCALAR_HELP = "allowed: int, float, bool, a numpy scalar, a 0-d numpy array or a 0-d torch tensor"
_MAX_FLOAT = sys.float_info.max


def coerce_scalar(key: str, value: Any) -> float:
    """Return `value` as a float if it is a scalar labtrack records, else raise.

    Raises:
        LabtrackTypeError: not a number (a str, None, a list, an array with elements...).
        LabtrackValueError: an int too large for a float64.
    """
    t = type(value)
    if t is float:
        return value  # type: ignore[no-any-return]
    if t is int or t is bool:
        if t is int and abs(value) > _MAX_FLOAT:
            raise LabtrackValueError(
                f"value of {key!r} is an int with {len(str(abs(value)))} digits, too large for a "
                "float64 (at most about 1.8e308); log it as text instead"
            )
        return float(value)
    mod = t.__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.ndim != 0:
                raise LabtrackTypeError(
                    f"value of {key!r} is a numpy array of shape {value.shape}; {_SCALAR_HELP} "
                    "(use .item(), or log_histogram for many values)"
                )
            value = value[()]
        if isinstance(value, (np.floating, np.integer, np.bool_)):
            return float(value)
    elif mod.startswith("torch"):
        dim = getattr(value, "dim", None)
        if callable(dim):
            if dim() != 0:
                raise LabtrackTypeError(
                    f"value of {key!r} is a torch tensor of shape {tuple(value.shape)}; "
                    f"{_SCALAR_HELP} (use .item(), or log_histogram for many values)"
                )
            if value.is_complex():
                raise LabtrackTypeError(f"value of {key!r} is a complex tensor; {_SCALAR_HELP}")
            return float(value.item())
    elif isinstance(value, numbers.Real):  # Fraction, Decimal-like registered reals
        return float(value)
    elif getattr(t, "_labtrack_media_", False):
        raise MediaValue(key)  # Run.log catches it and logs the dict as a mixed one
    elif getattr(t, "_labtrack_scalar_", False):  # labtrack.Color: the plain number is recorded
        return coerce_scalar(key, value.value)
    raise LabtrackTypeError(f"value of {key!r} is a {t.__name__} ({_short_repr(value)}); {_SCALAR_HELP}")


class MediaValue(Exception):
    """Raised by :func:`coerce_scalar` for a labtrack media object (Image, Audio ...): the
    marker that takes a `run.log` dict off the scalar path (never seen by users)."""


def check_wall_time(value: Any) -> float:
    """`value` as a wall time in seconds since the epoch (finite, > 0), or raise.

    Raises:
        LabtrackTypeError: not a number.
        LabtrackValueError: not finite, or not after 1970.
    """
    if type(value) is float and 0.0 < value <= _MAX_FLOAT:  # the usual case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LabtrackTypeError(f"time must be a float of seconds since the epoch (time.time()), "
                                f"got {type(value).__name__} {_short_repr(value)}")
    t = float(value)
    if not math.isfinite(t) or t <= 0:
        raise LabtrackValueError(f"time must be a finite number of seconds since the epoch, > 0, got {t!r}")
    return t


def _short_repr(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def check_step(step: Any) -> int:
    """Return `step` as an int, or raise for anything that is not a non-negative whole number."""
    if type(step) is int and 0 <= step < 2**53:
        return int(step)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        mod = type(step).__module__
        as_int = None
        if mod == "numpy":
            import numpy as np

            if isinstance(step, np.ndarray) and step.ndim == 0:
                step = step[()]
            if isinstance(step, np.integer):
                as_int = int(step)
        elif mod.startswith("torch") and callable(getattr(step, "dim", None)):
            tensor: Any = step
            if tensor.dim() == 0 and not tensor.is_floating_point() and not tensor.is_complex() \
                    and str(tensor.dtype) != "torch.bool":
                as_int = int(tensor.item())
        if as_int is not None:
            return check_step(as_int)
        raise LabtrackTypeError(f"step must be a whole number, got {type(step).__name__} {_short_repr(step)}")
    whole = int(step)
    if whole < 0 or whole >= 2**53:
        raise LabtrackValueError(f"step must be a whole number from 0 to 2**53 - 1, got {whole}")
    return whole


# --- config -------------------------------------------------------------------------------

def config_to_dict(config: Any) -> dict[str, Any]:
    """The config given to init() as a JSON-ready dict (see docs/format.md, params.json).

    Raises:
        LabtrackTypeError: the config is not a mapping, namespace, dataclass or object.
    """
    if config is None:
        return {}
    if isinstance(config, Mapping):
        items = dict(config)
    elif isinstance(config, argparse.Namespace):
        items = vars(config)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        items = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif hasattr(config, "__dict__") and not isinstance(config, type):
        items = {k: v for k, v in vars(config).items() if not k.startswith("_")}
    else:
        raise LabtrackTypeError(
            f"config must be a dict, an argparse.Namespace, a dataclass or an object with "
            f"attributes; got {type(config).__name__}"
        )
    return {str(k): to_jsonable(v) for k, v in items.items()}


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Plain JSON values from config-like values; unknown objects become their repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value  # non-finite floats are written as strings by the store
    if _depth > 20:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v, _depth + 1) for v in seq]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), _depth + 1)
    if isinstance(value, argparse.Namespace):
        return to_jsonable(vars(value), _depth + 1)
    mod = type(value).__module__
    if mod == "numpy" or mod.startswith("torch"):
        try:
            return to_jsonable(value.tolist(), _depth + 1)
        except (AttributeError, TypeError, ValueError):
            pass
    if isinstance(value, numbers.Real):
        return float(value)
    import enum
    import pathlib

    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, _depth + 1)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return repr(value)


# --- images -------------------------------------------------------------------------------

_IMAGE_HELP = ("allowed: a numpy array or torch tensor of shape HxW, HxWxC or CxHxW with C in "
               "1, 3, 4 (uint8, or float in [0, 1]), or a PIL image")


def image_to_array(name: str, image: Any) -> Any:
    """Return the image as a C-contiguous uint8 numpy array HxW, HxWx3 or HxWx4 (a copy).

    Raises:
        LabtrackTypeError: not an image type.
        LabtrackValueError: wrong shape, empty, or float values outside [0, 1] or not finite.
    """
    import numpy as np

    mod = type(image).__module__
    if mod.startswith("PIL."):
        pil = image
        if pil.mode not in ("L", "RGB", "RGBA"):
            pil = pil.convert("RGBA" if "A" in pil.getbands() else "RGB")
        return np.array(pil, dtype=np.uint8)
    if mod.startswith("torch"):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise LabtrackTypeError(f"image {name!r} is a {type(image).__name__}; {_IMAGE_HELP}")
    arr = image
    if arr.ndim == 3:
        if arr.shape[-1] in (1, 3, 4):
            pass
        elif arr.shape[0] in (1, 3, 4):
            arr = np.transpose(arr, (1, 2, 0))
        else:
            raise LabtrackValueError(f"image {name!r} has shape {image.shape}; {_IMAGE_HELP}")
        if arr.shape[-1] == 1:
            arr = arr[:, :, 0]
    elif arr.ndim != 2:
        raise LabtrackValueError(f"image {name!r} has shape {image.shape}; {_IMAGE_HELP}")
    if arr.size == 0:
        raise LabtrackValueError(f"image {name!r} is empty (shape {image.shape})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr).copy()
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr.astype(np.uint8) * 255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise LabtrackValueError(f"image {name!r} has NaN or infinite values; {_IMAGE_HELP}")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise LabtrackValueError(
                f"image {name!r} is float with values in [{lo:g}, {hi:g}]; float images must be "
                "in [0, 1] (divide by 255, or pass uint8)"
            )
        return np.ascontiguousarray(np.round(arr * 255.0).astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise LabtrackValueError(
                f"image {name!r} is {arr.dtype} with values in [{lo}, {hi}]; integer images must be in [0, 255]"
            )
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise LabtrackTypeError(f"image {name!r} has dtype {arr.dtype}; {_IMAGE_HELP}")


def encode_png(arr: Any) -> bytes:
    """PNG bytes of a uint8 array from :func:`image_to_array`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def encode_gif(frames: list[Any], fps: float) -> bytes:
    """An animated, looping GIF of uint8 frames of one size."""
    from PIL import Image

    images = [Image.fromarray(f).convert("RGB") if f.ndim == 3 and f.shape[2] == 4
              else Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, int(1000 / fps)), loop=0)
    return buf.getvalue()


_BOX_KEYS = ("xStart", "yStart", "xEnd", "yEnd")


def check_boxes(name: str, boxes: Any, classes: Any, threshold: Any, width: int, height: int) -> dict[str, Any]:
    """Validated boxes/classes/threshold for the JSON beside an image (docs/format.md).

    Raises:
        LabtrackTypeError / LabtrackValueError: a box that is not a dict of finite numbers,
            a probability outside [0, 1], an unknown class name, a threshold outside [0, 1].
    """
    out_boxes = []
    if boxes is None:
        boxes = []
    if not isinstance(boxes, (list, tuple)):
        raise LabtrackTypeError(f"boxes of image {name!r} must be a list of dicts, got {type(boxes).__name__}")
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise LabtrackTypeError(f"classes of image {name!r} must be a list of str")
        classes = list(classes)
    for i, box in enumerate(boxes):
        if not isinstance(box, Mapping):
            raise LabtrackTypeError(f"box {i} of image {name!r} is a {type(box).__name__}; each box is a dict "
                                    "with xStart, yStart, xEnd, yEnd and optional className, probability")
        b: dict[str, Any] = {}
        for k in _BOX_KEYS:
            if k not in box:
                raise LabtrackValueError(f"box {i} of image {name!r} has no {k!r}; a box needs {', '.join(_BOX_KEYS)}")
            v = box[k]
            try:
                fv = coerce_scalar(f"box {i} {k}", v)
            except LabtrackTypeError:
                raise LabtrackTypeError(f"box {i} of image {name!r}: {k} is {v!r}, not a number") from None
            if not math.isfinite(fv):
                raise LabtrackValueError(f"box {i} of image {name!r}: {k} is {fv}, not a finite number")
            b[k] = int(fv) if fv == int(fv) else fv
        if b["xEnd"] < b["xStart"] or b["yEnd"] < b["yStart"]:
            raise LabtrackValueError(f"box {i} of image {name!r} ends before it starts: {b}")
        if "className" in box and box["className"] is not None:
            cn = box["className"]
            if not isinstance(cn, str):
                raise LabtrackTypeError(f"box {i} of image {name!r}: className must be a str, got {cn!r}")
            if classes is not None and cn not in classes:
                raise LabtrackValueError(f"box {i} of image {name!r}: className {cn!r} is not one of classes {classes}")
            b["className"] = cn
        if "probability" in box and box["probability"] is not None:
            p = coerce_scalar(f"box {i} probability", box["probability"])
            if not 0.0 <= p <= 1.0:
                raise LabtrackValueError(f"box {i} of image {name!r}: probability {p} is outside [0, 1]")
            b["probability"] = p
        out_boxes.append(b)
    out: dict[str, Any] = {"boxes": out_boxes}
    if classes is not None:
        out["classes"] = classes
    if threshold is not None:
        th = coerce_scalar("threshold", threshold)
        if not 0.0 <= th <= 1.0:
            raise LabtrackValueError(f"threshold of image {name!r} is {th}; it must be in [0, 1]")
        out["threshold"] = th
    return out


# --- histograms, figures, tables, objects ----------------------------------------------------

def histogram(name: str, values: Any, bins: int = 64) -> dict[str, Any]:
    """Bin edges and counts of `values` (array-like); non-finite values dropped and counted.

    Raises:
        LabtrackTypeError: values that are not numbers.
        LabtrackValueError: bins not a positive int.
    """
    import numpy as np

    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1 or bins > 10_000:
        raise LabtrackValueError(f"bins of histogram {name!r} must be an int in [1, 10000], got {bins!r}")
    if type(values).__module__.startswith("torch"):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as err:
        raise LabtrackTypeError(f"values of histogram {name!r} are not numbers: {err}") from None
    finite = arr[np.isfinite(arr)]
    nonfinite = int(arr.size - finite.size)
    if finite.size == 0:
        edges, counts = [0.0, 1.0], [0]
    else:
        lo, hi = float(finite.min()), float(finite.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        hist, bin_edges = np.histogram(finite, bins=bins, range=(lo, hi))
        edges, counts = [float(x) for x in bin_edges], [int(x) for x in hist]
    rec: dict[str, Any] = {"bins": edges, "counts": counts, "count": int(finite.size)}
    if finite.size:
        rec["min"], rec["max"] = float(finite.min()), float(finite.max())
    if nonfinite:
        rec["nonfinite"] = nonfinite
    return rec


def figure_to_png(name: str, figure: Any) -> bytes:
    """PNG bytes of a matplotlib figure (rendered at the call site; figures are not thread-safe)."""
    savefig = getattr(figure, "savefig", None)
    if not callable(savefig):
        raise LabtrackTypeError(f"figure {name!r} is a {type(figure).__name__}; allowed: a matplotlib Figure")
    buf = io.BytesIO()
    savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def table_to_csv(name: str, data: Any) -> bytes:
    """CSV bytes of a DataFrame, a list of dicts, or a dict of equal-length lists.

    Raises:
        LabtrackTypeError: another type, or rows that are not dicts.
        LabtrackValueError: columns of different lengths.
    """
    to_csv = getattr(data, "to_csv", None)
    if callable(to_csv) and type(data).__module__.startswith("pandas"):
        text = to_csv(index=False, lineterminator="\n")
        return str(text).encode("utf-8")
    rows: list[Mapping[str, Any]]
    if isinstance(data, Mapping):
        cols = list(data.keys())
        lengths = {len(data[c]) for c in cols}
        if len(lengths) > 1:
            raise LabtrackValueError(f"table {name!r}: columns have different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        rows = [{c: data[c][i] for c in cols} for i in range(n)]
    elif isinstance(data, (list, tuple)):
        if not all(isinstance(r, Mapping) for r in data):
            raise LabtrackTypeError(f"table {name!r}: every row must be a dict (column -> value)")
        rows = list(data)
        cols = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
    else:
        raise LabtrackTypeError(
            f"table {name!r} is a {type(data).__name__}; allowed: a pandas DataFrame, a list of dicts, "
            "or a dict of equal-length lists"
        )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([str(c) for c in cols])
    for r in rows:
        w.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in cols])
    return check_text(buf.getvalue(), f"table {name!r}")


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return v


def command_options(parser: Any, args: Any) -> list[dict[str, Any]]:
    """The options of an argparse parser with the values in `args` (Lavd's command options)."""
    if not isinstance(parser, argparse.ArgumentParser):
        raise LabtrackTypeError(f"parser must be an argparse.ArgumentParser, got {type(parser).__name__}")
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    out = []
    for action in parser._actions:  # argparse has no public list of actions
        if isinstance(action, argparse._HelpAction) or action.dest == argparse.SUPPRESS:
            continue
        out.append({
            "dest": action.dest,
            "options": list(action.option_strings),
            "value": to_jsonable(values.get(action.dest, action.default)),
            "default": to_jsonable(action.default),
            "help": action.help if isinstance(action.help, str) else None,
        })
    return out


def object_to_bytes(name: str, obj: Any) -> tuple[str, bytes]:
    """(suffix, bytes): numpy arrays -> .npy, torch objects -> .pt, anything else -> .pkl."""
    mod = type(obj).__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:  # object arrays: pickle
            buf = io.BytesIO()
            np.save(buf, obj, allow_pickle=False)
            return ".npy", buf.getvalue()
    if mod.startswith("torch") or _contains_torch(obj):
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        return ".pt", buf.getvalue()
    import pickle

    try:
        return ".pkl", pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise LabtrackTypeError(f"object {name!r} of type {type(obj).__name__} cannot be pickled: {e}") from None


def _contains_torch(obj: Any) -> bool:
    if "torch" not in sys.modules:
        return False
    if isinstance(obj, Mapping):
        return any(type(v).__module__.startswith("torch") for v in obj.values())
    return False


def check_text(value: str, field: str) -> bytes:
    """`value` as UTF-8, or a LabtrackValueError naming `field` (a lone surrogate such as
    "\\ud800" cannot be stored).

    Raises:
        LabtrackValueError: `value` cannot be encoded.
    """
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise LabtrackValueError(
            f"{field} contains {value[e.start]!r} at position {e.start}, a lone surrogate that UTF-8 "
            "cannot store; pass valid Unicode text (e.g. decode bytes with errors='replace')") from None


def check_tags(tags: Iterable[str] | None) -> list[str]:
    """The tags as a list, each a non-empty str without control characters.

    Raises:
        LabtrackTypeError: a single str instead of a list.
        LabtrackValueError: an empty tag or one with a control character.
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        raise LabtrackTypeError(f"tags must be a list of str, got the str {tags!r}; write tags=[{tags!r}]")
    out = []
    for t in tags:
        if not isinstance(t, str) or not t or any(ord(ch) < 32 for ch in t):
            raise LabtrackValueError(f"tag {t!r} must be a non-empty str without control characters")
        out.append(t)
    return out
