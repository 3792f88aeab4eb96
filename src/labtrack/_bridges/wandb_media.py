"""wandb's value objects (`wandb.Image`, `Table`, `Histogram`, `Audio`, `Video`, `Html`,
`Classes`) for `labtrack.wandb`, and how each is recorded through a labtrack Run.

Each object checks and converts its data when it is made (as wandb does), so a bad image
raises at the line that built it; `record(run, name, value, step)` then hands it to the
run's method (`log_image`, `log_table`, `log_histogram`, `log_audio`, `log_video`,
`log_markdown`). Where labtrack's own value objects (`labtrack.Image`, `labtrack.Histogram`,
`labtrack.Table`) exist, captions, pre-binned histograms and images inside tables go
through them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _records
from ..errors import LabtrackError, LabtrackTypeError, LabtrackValueError

__all__ = ["Audio", "Classes", "Histogram", "Html", "Image", "Table", "UnsupportedError", "Video",
           "WandbMedia", "record", "unsupported"]

_SCORE_KEYS = ("score", "confidence", "probability", "prob", "conf")


class UnsupportedError(LabtrackValueError, AttributeError):
    """A wandb feature labtrack does not have. Also an AttributeError, so `hasattr` and
    `getattr(wandb, name, default)` see a missing name, not a crash."""


def unsupported(what: str, instead: str) -> LabtrackError:
    """The error for a wandb feature labtrack does not have: it names it and what to use."""
    return UnsupportedError(f"{what} is not supported by labtrack.wandb; {instead}")


def _labtrack_value(name: str) -> Any:
    """labtrack's own value object `name` (labtrack.Image ...), imported when first needed."""
    from .. import _media

    return getattr(_media, name)


def _numpy(data: Any, owner: str) -> Any:
    import numpy as np

    if type(data).__module__.startswith("torch"):
        data = data.detach().cpu().numpy()
    try:
        return np.asarray(data)
    except (TypeError, ValueError) as e:
        raise LabtrackTypeError(f"{owner}: cannot read {type(data).__name__} as an array: {e}") from None


def _to_uint8(arr: Any, normalize: bool) -> Any:
    """wandb's pixel rule: floats with negative values are stretched to [0, 1], floats up to
    1.0 are scaled by 255, then everything is clipped to [0, 255]."""
    import numpy as np

    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not np.issubdtype(arr.dtype, np.number):
        raise LabtrackTypeError(f"wandb.Image: pixels of dtype {arr.dtype} are not numbers")
    data = arr.astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise LabtrackValueError("wandb.Image: the image has NaN or infinite pixels")
    if normalize and np.issubdtype(arr.dtype, np.floating) and data.size:
        lo, hi = float(data.min()), float(data.max())
        if lo < 0:
            data = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
            hi = float(data.max())
        if hi <= 1.0:
            data = data * 255.0
    return np.clip(np.round(data), 0, 255).astype(np.uint8)


class WandbMedia:
    """The base of the value objects below (wandb's `wandb.data_types.WBValue`)."""

    caption: str | None = None


class Classes(WandbMedia):
    """`wandb.Classes([{"id": 1, "name": "cat"}, ...])`: the class names of boxes."""

    def __init__(self, class_set: Any) -> None:
        self.labels: dict[int, str] = {}
        for c in class_set:
            if not isinstance(c, Mapping) or "id" not in c or "name" not in c:
                raise LabtrackTypeError(f"wandb.Classes: each class is a dict with 'id' and 'name', got {c!r}")
            self.labels[int(c["id"])] = str(c["name"])


def _caption(owner: str, caption: Any) -> str | None:
    if caption is not None and not isinstance(caption, str):
        raise LabtrackTypeError(f"{owner}: caption must be a str, got {type(caption).__name__}")
    return caption


class Image(WandbMedia):
    """`wandb.Image(data_or_path, caption=, boxes=, classes=, normalize=)`.

    Args:
        data_or_path: numpy (HW, HWC; float in [0, 1] or [-1, 1], or 0..255), a torch tensor
            (CHW, as wandb reads it), a PIL image, a matplotlib figure or an image file path.
        caption: shown with the image.
        boxes: wandb's box groups, `{"predictions": {"box_data": [...], "class_labels": {...}}}`,
            mapped onto labtrack's boxes (xStart, yStart, xEnd, yEnd in pixels, className,
            probability) and classes.
        classes: a wandb.Classes or a list of {"id", "name"}: names for boxes' class_id.
        normalize: wandb's pixel scaling of float images (see `_to_uint8`).
        mode, grouping, file_type: accepted and not used (labtrack stores PNG as given).
        masks: not supported (raises): log the mask as its own image.
    """

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None,
                 grouping: int | None = None, classes: Any = None, boxes: Any = None,
                 masks: Any = None, file_type: str | None = None, normalize: bool = True) -> None:
        if masks is not None:
            raise unsupported("wandb.Image(masks=...)",
                              "log each mask as its own image: wandb.log({'mask': wandb.Image(mask)})")
        self.caption = _caption("wandb.Image", caption)
        self.figure: Any = None
        self.array: Any = None
        data = data_or_path
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if not path.is_file():
                raise LabtrackValueError(f"wandb.Image: no image file {str(path)!r}")
            from PIL import Image as PILImage

            with PILImage.open(path) as pil:
                self.array = _records.image_to_array(str(path), pil)
        elif hasattr(data, "savefig"):  # a matplotlib figure, rendered when logged
            if boxes is not None:
                raise unsupported("boxes on a matplotlib figure", "log the figure's pixels: wandb.Image(array, boxes=...)")
            self.figure = data
        elif type(data).__module__.startswith("PIL."):
            self.array = _records.image_to_array("wandb.Image", data)
        else:
            arr = _numpy(data, "wandb.Image")
            self.array = _records.image_to_array("wandb.Image", _to_uint8(arr, normalize))
        self.boxes: list[dict[str, Any]] | None = None
        self.classes: list[str] | None = None
        if boxes is not None:
            h, w = int(self.array.shape[0]), int(self.array.shape[1])
            self.boxes, self.classes = map_boxes(boxes, w, h, classes)


def _labels(classes: Any) -> dict[int, str]:
    if classes is None:
        return {}
    if isinstance(classes, Classes):
        return dict(classes.labels)
    return Classes(classes).labels


def _number(v: Any, what: str) -> float:
    try:
        f = _records.coerce_scalar(what, v)
    except LabtrackTypeError:
        raise LabtrackTypeError(f"wandb.Image boxes: {what} is {v!r}, not a number") from None
    if not math.isfinite(f):
        raise LabtrackValueError(f"wandb.Image boxes: {what} is {f}, not a finite number")
    return f


def map_boxes(boxes: Any, width: int, height: int, classes: Any = None) -> tuple[list[dict[str, Any]], list[str]]:
    """wandb's box groups as labtrack's boxes and class names.

    A position is `{minX, maxX, minY, maxY}` or `{middle: [x, y], width, height}`, in pixels
    with `"domain": "pixel"`, else as fractions of the image's width and height. A box's
    className is its group's `class_labels[class_id]` (else its box_caption, else the id);
    with several groups ("predictions", "ground_truth") it is prefixed "<group>/" so the
    dashboard's class filter tells them apart. The probability is the box's score named
    score/confidence/probability (or its only score) when that lies in [0, 1].

    Returns:
        `(boxes, classes)` for `Run.log_image(boxes=, classes=)`.

    Raises:
        LabtrackTypeError, LabtrackValueError: a group or box not in wandb's format.
    """
    if not isinstance(boxes, Mapping):
        raise LabtrackTypeError("wandb.Image boxes must be a dict of groups: "
                                "{'predictions': {'box_data': [...], 'class_labels': {0: 'cat'}}}")
    default_labels = _labels(classes)
    several = len(boxes) > 1
    out: list[dict[str, Any]] = []
    names: list[str] = []
    for group, spec in boxes.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("box_data"), (list, tuple)):
            raise LabtrackTypeError(f"wandb.Image boxes[{group!r}] must be a dict with a 'box_data' list")
        labels = dict(default_labels)
        labels.update({int(k): str(v) for k, v in (spec.get("class_labels") or {}).items()})
        prefix = f"{group}/" if several else ""
        for cid in sorted(labels):
            if prefix + labels[cid] not in names:
                names.append(prefix + labels[cid])
        for i, b in enumerate(spec["box_data"]):
            what = f"boxes[{group!r}] box {i}"
            pos = b.get("position") if isinstance(b, Mapping) else None
            if not isinstance(pos, Mapping):
                raise LabtrackTypeError(f"wandb.Image {what} needs a 'position' dict")
            if all(k in pos for k in ("minX", "maxX", "minY", "maxY")):
                x0, x1 = _number(pos["minX"], "minX"), _number(pos["maxX"], "maxX")
                y0, y1 = _number(pos["minY"], "minY"), _number(pos["maxY"], "maxY")
            elif "middle" in pos and "width" in pos and "height" in pos:
                mx, my = (_number(v, "middle") for v in pos["middle"])
                bw, bh = _number(pos["width"], "width"), _number(pos["height"], "height")
                x0, x1, y0, y1 = mx - bw / 2, mx + bw / 2, my - bh / 2, my + bh / 2
            else:
                raise LabtrackValueError(f"wandb.Image {what}: position needs minX, maxX, minY, maxY "
                                         f"or middle, width, height; got {sorted(pos)}")
            if b.get("domain") != "pixel":
                x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
            box: dict[str, Any] = {"xStart": round(x0, 3), "yStart": round(y0, 3),
                                   "xEnd": round(x1, 3), "yEnd": round(y1, 3)}
            cid = b.get("class_id")
            label = labels.get(int(cid)) if cid is not None else None
            if label is None:
                label = b.get("box_caption") or (str(cid) if cid is not None else None)
            if label is not None:
                box["className"] = prefix + str(label)
                if box["className"] not in names:
                    names.append(box["className"])
            p = _probability(b.get("scores"))
            if p is not None:
                box["probability"] = p
            out.append(box)
    return out, names


def _probability(scores: Any) -> float | None:
    if not isinstance(scores, Mapping) or not scores:
        return None
    key = next((k for k in _SCORE_KEYS if k in scores), None)
    if key is None:
        if len(scores) != 1:
            return None
        key = next(iter(scores))
    try:
        p = float(scores[key])
    except (TypeError, ValueError):
        return None
    return p if 0.0 <= p <= 1.0 else None


class Table(WandbMedia):
    """`wandb.Table(columns=, data=, dataframe=)` with `add_data`, `add_column`, `get_column`.

    Cells hold numbers, text, booleans or None; a wandb.Image cell is kept as an image where
    labtrack.Table exists (else it raises). Recorded as CSV (tables/<name>.csv, and per step).
    """

    def __init__(self, columns: list[Any] | None = None, data: Any = None, rows: Any = None,
                 dataframe: Any = None, dtype: Any = None, optional: Any = True,
                 allow_mixed_types: bool = False, log_mode: str | None = None) -> None:
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = [list(r) for r in dataframe.itertuples(index=False, name=None)]
        if data is None:
            data = rows
        if data is not None and hasattr(data, "tolist") and not isinstance(data, list):
            data = data.tolist()
        if columns is None:
            columns = ["Input", "Output", "Expected"]  # wandb's default columns
        self.columns: list[str] = [str(c) for c in columns]
        self.data: list[list[Any]] = []
        for row in data or []:
            self.add_data(*row)

    def add_data(self, *values: Any) -> None:
        """Append one row (one value per column)."""
        if len(values) != len(self.columns):
            raise LabtrackValueError(f"wandb.Table: a row has {len(values)} values for "
                                     f"{len(self.columns)} columns {self.columns}")
        self.data.append(list(values))

    def add_column(self, name: str, data: list[Any], optional: bool = False) -> None:
        """Append a column (one value per row)."""
        if self.data and len(data) != len(self.data):
            raise LabtrackValueError(f"wandb.Table: column {name!r} has {len(data)} values for {len(self.data)} rows")
        if name in self.columns:
            raise LabtrackValueError(f"wandb.Table: column {name!r} exists already")
        self.columns.append(str(name))
        if not self.data:
            self.data = [[v] for v in data]
        else:
            for row, v in zip(self.data, data):
                row.append(v)

    def get_column(self, name: str, convert_to: str | None = None) -> list[Any]:
        """The values of one column."""
        if name not in self.columns:
            raise LabtrackValueError(f"wandb.Table has no column {name!r}; columns: {self.columns}")
        i = self.columns.index(name)
        return [row[i] for row in self.data]

    def labtrack_data(self) -> Any:
        """What `Run.log_table` takes: a labtrack.Table when a cell holds an image, else a
        dict of columns."""
        has_media = False
        cols: dict[str, list[Any]] = {c: [] for c in self.columns}
        for row in self.data:
            for c, v in zip(self.columns, row):
                if isinstance(v, WandbMedia):
                    has_media = True
                elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
                    v = v.item()  # numpy or torch scalars
                cols[c].append(v)
        if not has_media:
            return cols
        lt_table, lt_image = _labtrack_value("Table"), _labtrack_value("Image")
        rows = []
        for row in self.data:
            cells = []
            for v in row:
                if isinstance(v, Image) and v.array is not None:
                    v = lt_image(v.array, caption=v.caption)
                elif isinstance(v, WandbMedia):
                    raise unsupported(f"a {type(v).__name__} inside a wandb.Table", "put only images, numbers and text in cells")
                cells.append(v)
            rows.append(cells)
        return lt_table(rows, columns=list(self.columns))


class Histogram(WandbMedia):
    """`wandb.Histogram(sequence, num_bins=64)` or `wandb.Histogram(np_histogram=(counts, edges))`."""

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        import numpy as np

        self.values: Any = None
        self.counts: Any = None
        self.edges: Any = None
        self.num_bins = num_bins
        if np_histogram is not None:
            if not isinstance(np_histogram, (tuple, list)) or len(np_histogram) != 2:
                raise LabtrackTypeError("wandb.Histogram: np_histogram must be (counts, bin_edges), as numpy.histogram returns")
            counts = np.asarray(_numpy(np_histogram[0], "wandb.Histogram"), dtype=np.float64).ravel()
            edges = np.asarray(_numpy(np_histogram[1], "wandb.Histogram"), dtype=np.float64).ravel()
            if (counts.size == 0 or edges.size != counts.size + 1 or not np.all(np.isfinite(edges))
                    or np.any(np.diff(edges) < 0) or not np.all(np.isfinite(counts)) or np.any(counts < 0)):
                raise LabtrackValueError(
                    f"wandb.Histogram: np_histogram needs n >= 1 counts >= 0 and n + 1 increasing finite "
                    f"edges, got {counts.size} counts and {edges.size} edges")
            self.counts, self.edges = counts, edges
        elif sequence is not None:
            self.values = np.asarray(_numpy(sequence, "wandb.Histogram"), dtype=np.float64).ravel()
        else:
            raise LabtrackValueError("wandb.Histogram needs a sequence or np_histogram=(counts, edges)")


class Audio(WandbMedia):
    """`wandb.Audio(data_or_path, sample_rate=, caption=)`: samples (1-d, or samples x
    channels) with their rate, or a WAV file."""

    def __init__(self, data_or_path: Any, sample_rate: int | None = None, caption: str | None = None) -> None:
        self.caption = _caption("wandb.Audio", caption)
        data = data_or_path
        if isinstance(data, (str, os.PathLike)):
            data, rate = _read_wav(Path(data))
            sample_rate = sample_rate or rate
        elif sample_rate is None:
            raise LabtrackValueError("wandb.Audio: sample_rate= is required with raw samples (as in wandb)")
        self.data = _numpy(data, "wandb.Audio")
        self.sample_rate = int(sample_rate)


def _read_wav(path: Path) -> tuple[Any, int]:
    import wave

    import numpy as np

    if path.suffix.lower() != ".wav":
        raise unsupported(f"wandb.Audio from a {path.suffix or 'suffix-less'} file",
                          "pass the samples as an array with sample_rate=, or a .wav file")
    try:
        with wave.open(str(path), "rb") as w:
            rate, n, width, channels = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(n)
    except (OSError, wave.Error, EOFError) as e:
        raise LabtrackValueError(f"wandb.Audio: cannot read {str(path)!r} as WAV: {e}") from None
    dtypes = {1: np.uint8, 2: np.int16, 4: np.int32}
    if width not in dtypes:
        raise LabtrackValueError(f"wandb.Audio: {str(path)!r} has {width * 8}-bit samples; use 8, 16 or 32")
    arr = np.frombuffer(raw, dtype=dtypes[width]).astype(np.float32)
    arr = (arr - 128.0) / 128.0 if width == 1 else arr / float(2 ** (8 * width - 1))
    return (arr.reshape(-1, channels) if channels > 1 else arr), rate


class Video(WandbMedia):
    """`wandb.Video(data_or_path, caption=, fps=4, format=)`: frames (T, C, H, W) or a batch
    (B, T, C, H, W) tiled into a grid, as wandb lays them out, or a video file."""

    def __init__(self, data_or_path: Any, caption: str | None = None, fps: float | None = None,
                 format: str | None = None) -> None:  # noqa: A002 - wandb's keyword
        import numpy as np

        self.caption = _caption("wandb.Video", caption)
        self.fps = 4.0 if fps is None else fps  # wandb's default
        self.path: str | None = None
        self.frames: Any = None
        if isinstance(data_or_path, (str, os.PathLike)):
            if not Path(data_or_path).is_file():
                raise LabtrackValueError(f"wandb.Video: no video file {str(data_or_path)!r}")
            self.path = os.fspath(data_or_path)
            return
        arr = _numpy(data_or_path, "wandb.Video")
        if arr.ndim == 5:
            arr = _tile(arr)
        if arr.ndim != 4 or arr.shape[1] not in (1, 3, 4):
            raise LabtrackValueError(f"wandb.Video: frames must be (time, channel, height, width) or "
                                     f"(batch, time, channel, height, width), got shape {arr.shape}")
        arr = np.transpose(arr, (0, 2, 3, 1))
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        self.frames = np.ascontiguousarray(_to_uint8(arr, True))


def _tile(arr: Any) -> Any:
    """(B, T, C, H, W) -> (T, C, rows*H, cols*W): the batch as a grid, empty cells black."""
    import numpy as np

    b, t, c, h, w = arr.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = np.zeros((t, c, rows * h, cols * w), dtype=arr.dtype)
    for i in range(b):
        r, k = divmod(i, cols)
        grid[:, :, r * h:(r + 1) * h, k * w:(k + 1) * w] = arr[i]
    return grid


class Html(WandbMedia):
    """`wandb.Html(data)`: an HTML string, an open file or the path of an .html file;
    recorded as a markdown document at the step (the dashboard renders it safely)."""

    def __init__(self, data: Any, inject: bool = True, data_is_not_path: bool = False) -> None:
        if hasattr(data, "read"):
            data = data.read()
        elif (isinstance(data, (str, os.PathLike)) and not data_is_not_path
              and str(data).lower().endswith((".html", ".htm")) and os.path.isfile(data)):
            data = Path(data).read_text(encoding="utf-8")
        if not isinstance(data, str):
            raise LabtrackTypeError(f"wandb.Html takes a str, a file or an .html path, got {type(data).__name__}")
        self.html = data


def record(run: Any, name: str, value: WandbMedia, step: int) -> None:
    """Record one value object through `run`'s methods at `step`.

    Raises:
        LabtrackError: what the run's method raises for bad data.
    """
    if isinstance(value, Image):
        if value.figure is not None:
            run.log_figure(name, value.figure, step)
            return
        run.log_image(name, _labtrack_value("Image")(value.array, caption=value.caption, boxes=value.boxes,
                                                     classes=value.classes), step)
    elif isinstance(value, Table):
        run.log_table(name, value.labtrack_data(), step)
    elif isinstance(value, Histogram):
        _record_histogram(run, name, value, step)
    elif isinstance(value, Audio):
        run.log_audio(name, value.data, sample_rate=value.sample_rate, step=step, caption=value.caption)
    elif isinstance(value, Video):
        run.log_video(name, value.path if value.path is not None else value.frames, fps=value.fps,
                      step=step, caption=value.caption)
    elif isinstance(value, Html):
        run.log({name: _labtrack_value("Html")(value.html)}, step)
    else:
        raise unsupported(f"logging a {type(value).__name__}", "log numbers, wandb.Image, Table, Histogram, "
                          "Audio, Video or Html")


def _record_histogram(run: Any, name: str, value: Histogram, step: int) -> None:
    if value.counts is None:
        run.log_histogram(name, value.values, step, bins=value.num_bins)
    else:
        run.log_histogram(name, _labtrack_value("Histogram")(np_histogram=(value.counts, value.edges)), step)
