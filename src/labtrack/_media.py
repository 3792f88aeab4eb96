"""Media value objects (`labtrack.Image`, `Audio`, `Video`, `Table`, `Histogram`, `Html`) and
the pure encoders behind them: WAV with the standard library's `wave`, MP4 (H.264) with PyAV
when it is installed, else an animated GIF.

A value object checks and copies what it is given when it is made, so a bad value raises at
the line that made it and a buffer the script reuses afterwards does not change what is
logged. `run.log({...})` routes each object to the record it stands for (see
`_run_media.MediaMethods`). numpy, PIL and av are imported when first needed, never on
`import labtrack`.
"""

from __future__ import annotations

import functools
import io
import math
import os
import wave as _wave
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import _records
from .errors import LabtrackTypeError, LabtrackValueError

VIDEO_FILE_SUFFIXES = (".mp4", ".webm", ".gif")
_MAX_CHANNELS = 8
_MAX_RATE = 768_000
_MAX_FPS = 240.0
_AUDIO_HELP = ("allowed: a numpy array or torch tensor of shape (samples,) or (samples, channels), "
               "float in [-1, 1] or int16, or the path of a .wav file")
_VIDEO_HELP = ("allowed: frames as a numpy array or torch tensor (T, H, W, C) or (T, C, H, W) with C in "
               "1, 3, 4 (uint8, or float in [0, 1]), a list of images, or the path of a "
               ".mp4, .webm or .gif file")


class Media:
    """The base of labtrack's value objects: what `run.log` accepts besides numbers."""

    __slots__ = ()
    # Read by _records.coerce_scalar on its slow path: a media object in a log() dict
    # leaves the scalar path there, so the plain-float path pays nothing for media.
    _labtrack_media_ = True


def _caption(owner: str, caption: Any) -> str | None:
    if caption is None:
        return None
    if not isinstance(caption, str):
        raise LabtrackTypeError(f"caption of {owner} must be a str or None, got {type(caption).__name__}")
    _records.check_text(caption, f"caption of {owner}")
    return caption


def _numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (detached, on the CPU); anything else unchanged."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _existing_file(owner: str, path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> Path:
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise LabtrackValueError(f"{owner}: {str(p)!r} is not a {', '.join(suffixes)} file")
    if not p.is_file():
        raise LabtrackValueError(f"{owner}: the file {str(p)!r} does not exist")
    return p


# --- Image -------------------------------------------------------------------------------------

class Image(Media):
    """An image to log inside `run.log({...})` (stored as a PNG, like :meth:`Run.log_image`).

    Args:
        data: a numpy array or torch tensor HxW, HxWxC or CxHxW (uint8, or float in [0, 1]),
            a PIL image, or the path of an image file.
        caption: a line shown under the image.
        boxes: dicts with xStart, yStart, xEnd, yEnd (pixels) and optional className, probability.
        classes: the class names the boxes may use.
        threshold: the default probability threshold for showing boxes.

    Raises:
        LabtrackTypeError, LabtrackValueError: a bad image, box, class, threshold or caption.

    Example:
        >>> run.log({"sample": labtrack.Image(arr, caption="epoch 3", boxes=[{"xStart": 1,
        ...          "yStart": 2, "xEnd": 8, "yEnd": 9, "className": "cat"}])}, step=3)
    """

    __slots__ = ("array", "caption", "boxes", "classes", "threshold", "_extra")

    def __init__(self, data: Any, caption: str | None = None, boxes: list[dict[str, Any]] | None = None,
                 classes: list[str] | None = None, *, threshold: float | None = None) -> None:
        if isinstance(data, (str, os.PathLike)):
            data = _open_image(data)
        self.array = _records.image_to_array("labtrack.Image", data)
        self.caption = _caption("labtrack.Image", caption)
        h, w = int(self.array.shape[0]), int(self.array.shape[1])
        self._extra: dict[str, Any] | None = None
        if boxes is not None or classes is not None or threshold is not None:
            self._extra = _records.check_boxes("labtrack.Image", boxes, classes, threshold, w, h)
        self.boxes = None if boxes is None else list(boxes)
        self.classes = None if classes is None else list(classes)
        self.threshold = threshold

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    def __repr__(self) -> str:
        return f"labtrack.Image({self.width}x{self.height}{'' if self._extra is None else ', boxes'})"


def _open_image(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise LabtrackValueError(f"labtrack.Image: the file {str(p)!r} does not exist")
    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(p) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError) as e:
        raise LabtrackValueError(f"labtrack.Image: {str(p)!r} is not an image PIL can read: {e}") from None


# --- Audio -------------------------------------------------------------------------------------

def check_sample_rate(owner: str, sample_rate: Any) -> int:
    """`sample_rate` as an int in [1, 768000], or raise.

    Raises:
        LabtrackValueError: not a whole number in that range.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 1 <= sample_rate <= _MAX_RATE:
        raise LabtrackValueError(
            f"sample_rate of {owner} must be an int from 1 to {_MAX_RATE} (samples per second), "
            f"got {sample_rate!r}")
    return int(sample_rate)


def audio_to_pcm(owner: str, wave: Any) -> Any:
    """16-bit PCM samples of shape (samples, channels) (a C-contiguous int16 copy).

    A 2-D array is (samples, channels); one whose first axis has at most 8 entries and whose
    second is longer is taken as (channels, samples), torchaudio's order.

    Raises:
        LabtrackTypeError: not an array of numbers.
        LabtrackValueError: empty, too many channels, or float samples outside [-1, 1] or not finite.
    """
    import numpy as np

    arr = _numpy(wave)
    if not isinstance(arr, np.ndarray):
        if isinstance(arr, (list, tuple)):
            try:
                arr = np.asarray(arr, dtype=np.float64)
            except (TypeError, ValueError):
                raise LabtrackTypeError(f"{owner} is a list that is not numbers; {_AUDIO_HELP}") from None
        else:
            raise LabtrackTypeError(f"{owner} is a {type(wave).__name__}; {_AUDIO_HELP}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2:
        if arr.shape[0] <= _MAX_CHANNELS < arr.shape[1]:
            arr = arr.T
    else:
        raise LabtrackValueError(f"{owner} has shape {arr.shape}; {_AUDIO_HELP}")
    if arr.size == 0:
        raise LabtrackValueError(f"{owner} has no samples (shape {arr.shape})")
    if arr.shape[1] > _MAX_CHANNELS:
        raise LabtrackValueError(f"{owner} has {arr.shape[1]} channels (shape {arr.shape}); at most "
                                 f"{_MAX_CHANNELS} are allowed; {_AUDIO_HELP}")
    if arr.dtype == np.int16:
        return np.ascontiguousarray(arr).copy()
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise LabtrackValueError(f"{owner} has NaN or infinite samples; {_AUDIO_HELP}")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1.0 or hi > 1.0:
            raise LabtrackValueError(f"{owner} is float with samples in [{lo:g}, {hi:g}]; float audio must "
                                     "be in [-1, 1] (divide by the peak, or pass int16)")
        return np.ascontiguousarray(np.round(arr * 32767.0).astype(np.int16))
    raise LabtrackTypeError(f"{owner} has dtype {arr.dtype}; {_AUDIO_HELP}")


def encode_wav(pcm: Any, sample_rate: int) -> bytes:
    """WAV bytes (16-bit PCM) of samples from :func:`audio_to_pcm`."""
    buf = io.BytesIO()
    with _wave.open(buf, "wb") as w:
        w.setnchannels(int(pcm.shape[1]))
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def wav_info(owner: str, data: bytes) -> dict[str, Any]:
    """sample_rate, channels, duration (seconds) and frames of WAV bytes.

    Raises:
        LabtrackValueError: not a WAV file the standard library can read.
    """
    try:
        with _wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, frames = w.getframerate(), w.getnchannels(), w.getnframes()
    except (_wave.Error, EOFError) as e:
        raise LabtrackValueError(f"{owner} is not a WAV file Python's wave module can read ({e}); "
                                 "convert it to 16-bit PCM WAV") from None
    if rate <= 0:
        raise LabtrackValueError(f"{owner} has a sample rate of {rate}")
    return {"sample_rate": rate, "channels": channels, "duration": round(frames / rate, 6), "frames": frames}


class Audio(Media):
    """Audio to log inside `run.log({...})`, stored as a WAV file (like :meth:`Run.log_audio`).

    Args:
        wave: samples as a numpy array or torch tensor, (samples,) for mono or
            (samples, channels), float in [-1, 1] or int16; or the path of a .wav file.
        sample_rate: samples per second (ignored for a .wav file, which has its own).
        caption: a line shown with the player.

    Raises:
        LabtrackTypeError, LabtrackValueError: bad samples, sample rate, file or caption.

    Example:
        >>> run.log({"clip": labtrack.Audio(np.sin(np.arange(16000) / 10), sample_rate=16000)})
    """

    __slots__ = ("wav", "sample_rate", "channels", "duration", "caption")

    def __init__(self, wave: Any, sample_rate: int = 16000, caption: str | None = None) -> None:
        self.caption = _caption("labtrack.Audio", caption)
        if isinstance(wave, (str, os.PathLike)):
            p = _existing_file("labtrack.Audio", wave, (".wav",))
            self.wav = p.read_bytes()
            info = wav_info(f"labtrack.Audio {str(p)!r}", self.wav)
        else:
            rate = check_sample_rate("labtrack.Audio", sample_rate)
            self.wav = encode_wav(audio_to_pcm("labtrack.Audio", wave), rate)
            info = wav_info("labtrack.Audio", self.wav)
        self.sample_rate: int = info["sample_rate"]
        self.channels: int = info["channels"]
        self.duration: float = info["duration"]

    def __repr__(self) -> str:
        return f"labtrack.Audio({self.duration:g} s, {self.sample_rate} Hz, {self.channels} ch)"


# --- Video -------------------------------------------------------------------------------------

def check_fps(owner: str, fps: Any) -> float:
    """`fps` as a float in (0, 240], or raise.

    Raises:
        LabtrackValueError: not a number in that range.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (0 < fps <= _MAX_FPS):
        raise LabtrackValueError(f"fps of {owner} must be a number in (0, {_MAX_FPS:g}], got {fps!r}")
    return float(fps)


def video_frames(owner: str, frames: Any) -> Any:
    """The frames as a C-contiguous uint8 array (T, H, W, 3) (a copy; gray and RGBA become RGB).

    Raises:
        LabtrackTypeError, LabtrackValueError: not frames, a bad shape, no frames, or float
            values outside [0, 1].
    """
    import numpy as np

    if isinstance(frames, (list, tuple)):
        if not frames:
            raise LabtrackValueError(f"{owner} has no frames")
        imgs = [_records.image_to_array(f"{owner} frame {i}", f) for i, f in enumerate(frames)]
        if len({f.shape for f in imgs}) != 1:
            raise LabtrackValueError(f"frames of {owner} differ in shape: {sorted({f.shape for f in imgs})}")
        arr = np.stack(imgs)
    else:
        arr = _numpy(frames)
        if not isinstance(arr, np.ndarray):
            raise LabtrackTypeError(f"{owner} is a {type(frames).__name__}; {_VIDEO_HELP}")
        if arr.ndim == 4:
            if arr.shape[-1] not in (1, 3, 4):
                if arr.shape[1] not in (1, 3, 4):
                    raise LabtrackValueError(f"{owner} has shape {arr.shape}; {_VIDEO_HELP}")
                arr = np.transpose(arr, (0, 2, 3, 1))
        elif arr.ndim == 3:
            arr = arr[..., None]  # (T, H, W): gray
        else:
            raise LabtrackValueError(f"{owner} has shape {arr.shape}; {_VIDEO_HELP}")
        if arr.size == 0:
            raise LabtrackValueError(f"{owner} has no frames or no pixels (shape {arr.shape})")
        # One check over the whole clip (image_to_array's rules), not one per frame.
        flat = arr.reshape(arr.shape[0] * arr.shape[1], arr.shape[2], arr.shape[3])
        arr = _records.image_to_array(owner, flat).reshape(arr.shape[:3] + (-1,))
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


@functools.lru_cache(maxsize=1)
def _h264_available() -> bool:
    """PyAV with its libx264 encoder importable (asked once per process: a failed import
    would search sys.path again on every call)."""
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # noqa: BLE001 - av raises its own error types for a missing codec
        return False
    return True


def encode_video(frames: Any, fps: float) -> tuple[bytes, str]:
    """(bytes, format) of uint8 frames (T, H, W, 3): "mp4" (H.264, yuv420p) where PyAV and
    libx264 are installed, else "gif"."""
    if not _h264_available():
        return _records.encode_gif(list(frames), fps), "gif"
    import av
    import numpy as np

    t, h, w = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    if h % 2 or w % 2:  # yuv420p needs even sides: repeat the last row or column
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "fast"}
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue(), "mp4"


def video_file_info(path: Path) -> dict[str, Any]:
    """fps, frames, width and height of a video file, where they can be read (PIL for a GIF,
    PyAV for the others); the keys it cannot read are left out."""
    fmt = path.suffix.lower().lstrip(".")
    info: dict[str, Any] = {"format": fmt}
    try:
        if fmt == "gif":
            from PIL import Image as PILImage

            with PILImage.open(path) as im:
                info.update(width=im.width, height=im.height, frames=getattr(im, "n_frames", 1))
                ms = im.info.get("duration")
                if ms:
                    info["fps"] = round(1000.0 / float(ms), 3)
            return info
        import av

        with av.open(str(path)) as c:
            s = c.streams.video[0]
            info.update(width=s.width, height=s.height)
            if s.frames:
                info["frames"] = int(s.frames)
            if s.average_rate:
                info["fps"] = round(float(s.average_rate), 3)
    except Exception:  # noqa: BLE001 - an unreadable header only leaves the details out
        pass
    return info


class Video(Media):
    """A video to log inside `run.log({...})` (like :meth:`Run.log_video`): MP4 (H.264) where
    PyAV is installed, else an animated GIF; or a .mp4, .webm or .gif file copied in.

    Args:
        frames_or_path: frames (T, H, W, C) (numpy, uint8 or float in [0, 1]) or
            (T, C, H, W) (torch, as wandb and TensorBoard take them), a list of images, or a path.
        fps: frames per second.
        caption: a line shown with the player.

    Raises:
        LabtrackTypeError, LabtrackValueError: bad frames, fps, file or caption.

    Example:
        >>> run.log({"rollout": labtrack.Video(frames, fps=8)}, step=100)
    """

    __slots__ = ("frames", "path", "fps", "caption")

    def __init__(self, frames_or_path: Any, fps: float = 8, caption: str | None = None) -> None:
        self.caption = _caption("labtrack.Video", caption)
        self.fps = check_fps("labtrack.Video", fps)
        self.frames: Any = None
        self.path: Path | None = None
        if isinstance(frames_or_path, (str, os.PathLike)):
            self.path = _existing_file("labtrack.Video", frames_or_path, VIDEO_FILE_SUFFIXES)
        else:
            self.frames = video_frames("labtrack.Video", frames_or_path)

    def __repr__(self) -> str:
        if self.path is not None:
            return f"labtrack.Video({str(self.path)!r})"
        t, h, w = self.frames.shape[:3]
        return f"labtrack.Video({t} frames {w}x{h}, {self.fps:g} fps)"


# --- Table -------------------------------------------------------------------------------------

_TABLE_HELP = ("allowed: a pandas DataFrame, a list of dicts, a dict of equal-length lists, or "
               "columns=[...] with a list of rows (lists)")


def _plain_cell(owner: str, v: Any) -> Any:
    """A cell as a plain value: numbers, str, None, bool, or a labtrack.Image."""
    if v is None or isinstance(v, (str, bool, int, float, Image)):
        return v
    if isinstance(v, Media):
        raise LabtrackTypeError(f"{owner}: a cell holds a {type(v).__name__}; table cells may hold "
                                "labtrack.Image, numbers and text (log the others under their own name)")
    mod = type(v).__module__
    if mod == "numpy" or mod.startswith("torch"):
        item = getattr(v, "item", None)
        if callable(item) and getattr(v, "ndim", 0) == 0:
            return item()
    return v  # written as str(v), as csv does


class Table(Media):
    """A table to log inside `run.log({...})` (like :meth:`Run.log_table`); cells may hold
    labtrack.Image, stored as PNG files beside the table and shown as thumbnails.

    Args:
        data_or_df: a pandas DataFrame, a list of dicts, a dict of equal-length lists, or a
            list of rows (lists) with `columns`.
        columns: the column names, for a list of rows.

    Raises:
        LabtrackTypeError, LabtrackValueError: another type, rows of the wrong length,
            columns of different lengths, a cell holding another media object.

    Example:
        >>> labtrack.Table([[1, "cat", labtrack.Image(img)]], columns=["id", "label", "input"])
    """

    __slots__ = ("columns", "rows")

    def __init__(self, data_or_df: Any = None, columns: list[str] | None = None) -> None:
        owner = "labtrack.Table"
        data = data_or_df
        if type(data).__module__.startswith("pandas") and hasattr(data, "to_dict"):
            if columns is not None:
                raise LabtrackValueError(f"{owner}: columns= is for a list of rows, not a DataFrame")
            cols = [str(c) for c in data.columns]
            rows = [list(r) for r in data.itertuples(index=False, name=None)]
        elif isinstance(data, Mapping):
            if columns is not None:
                raise LabtrackValueError(f"{owner}: columns= is for a list of rows, not a dict of columns")
            cols = [str(c) for c in data]
            lists = []
            for c, v in data.items():
                if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
                    raise LabtrackTypeError(f"{owner}: column {c!r} is a {type(v).__name__}; each value of a "
                                            f"dict of columns must be a list; {_TABLE_HELP}")
                lists.append(list(v))
            lengths = {len(v) for v in lists}
            if len(lengths) > 1:
                raise LabtrackValueError(f"{owner}: columns have different lengths {sorted(lengths)}")
            rows = [list(r) for r in zip(*lists)]
        elif isinstance(data, (list, tuple)) or (data is None and columns is not None):
            data = [] if data is None else list(data)
            if columns is not None:
                if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
                    raise LabtrackTypeError(f"{owner}: columns must be a list of str, got {columns!r}")
                cols = list(columns)
                rows = []
                for i, r in enumerate(data):
                    if not isinstance(r, (list, tuple)) or len(r) != len(cols):
                        raise LabtrackValueError(f"{owner}: row {i} is {_records._short_repr(r)}; each row must be "
                                                 f"a list of {len(cols)} values (one per column)")
                    rows.append(list(r))
            else:
                if not all(isinstance(r, Mapping) for r in data):
                    raise LabtrackTypeError(f"{owner}: a list of rows needs columns=[...]; or give a list of "
                                            f"dicts; {_TABLE_HELP}")
                cols = []
                for r in data:
                    for k in r:
                        if str(k) not in cols:
                            cols.append(str(k))
                rows = [[r.get(c) for c in cols] for r in data]
        else:
            raise LabtrackTypeError(f"{owner} got a {type(data).__name__}; {_TABLE_HELP}")
        for c in cols:
            _records.check_text(c, f"{owner} column name {c!r}")
        self.columns: list[str] = cols
        self.rows: list[list[Any]] = [[_plain_cell(owner, v) for v in r] for r in rows]

    @property
    def has_images(self) -> bool:
        return any(isinstance(v, Image) for r in self.rows for v in r)

    def __repr__(self) -> str:
        return f"labtrack.Table({len(self.rows)} rows x {len(self.columns)} columns)"


def table_csv(owner: str, table: Table, image_path: Any = None) -> bytes:
    """CSV bytes of a Table; a cell holding an Image is written as `image_path(row, col)`.

    Raises:
        LabtrackValueError: text that UTF-8 cannot store.
    """
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.columns)
    for i, r in enumerate(table.rows):
        # NaN as an empty cell, as pandas writes a missing value
        w.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else image_path(i, j)
                    if isinstance(v, Image) else repr(v) if isinstance(v, float) else v for j, v in enumerate(r)])
    return _records.check_text(buf.getvalue(), owner)


# --- Histogram, Html -----------------------------------------------------------------------------

class Histogram(Media):
    """A histogram to log inside `run.log({...})` (like :meth:`Run.log_histogram`).

    Args:
        values: the values to bin (array-like, numpy or torch).
        bins: the number of bins.
        np_histogram: instead of values, `(counts, edges)` as numpy.histogram returns them.

    Raises:
        LabtrackTypeError, LabtrackValueError: values that are not numbers, bad bins, or
            counts and edges that do not fit together.

    Example:
        >>> labtrack.Histogram(weights, bins=32); labtrack.Histogram(np_histogram=np.histogram(x))
    """

    __slots__ = ("record",)

    def __init__(self, values: Any = None, bins: int = 64, *, np_histogram: Any = None) -> None:
        if np_histogram is not None:
            if values is not None:
                raise LabtrackValueError("labtrack.Histogram takes values or np_histogram=(counts, edges), not both")
            self.record = _precomputed(np_histogram)
        elif values is None:
            raise LabtrackValueError("labtrack.Histogram needs values, or np_histogram=(counts, edges)")
        else:
            self.record = _records.histogram("labtrack.Histogram", values, bins)

    def __repr__(self) -> str:
        return f"labtrack.Histogram({len(self.record['counts'])} bins, {self.record['count']} values)"


def _precomputed(pair: Any) -> dict[str, Any]:
    owner = "labtrack.Histogram np_histogram"
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise LabtrackTypeError(f"{owner} must be a pair (counts, edges), got {_records._short_repr(pair)}")
    try:
        counts = [float(c) for c in _numpy(pair[0])]
        edges = [float(e) for e in _numpy(pair[1])]
    except (TypeError, ValueError):
        raise LabtrackTypeError(f"{owner}: counts and edges must be sequences of numbers") from None
    if len(edges) != len(counts) + 1 or not counts:
        raise LabtrackValueError(f"{owner}: {len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}")
    if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise LabtrackValueError(f"{owner}: edges must be finite and increasing")
    if not all(math.isfinite(c) and c >= 0 and c == int(c) for c in counts):
        raise LabtrackValueError(f"{owner}: counts must be whole numbers >= 0")
    ints = [int(c) for c in counts]
    return {"bins": edges, "counts": ints, "count": sum(ints), "min": edges[0], "max": edges[-1]}


class Html(Media):
    """An HTML document to log inside `run.log({...})`: stored as media/<step>/<name>.html and
    shown in the dashboard in a sandboxed frame (no scripts run).

    Args:
        text: the HTML.

    Raises:
        LabtrackTypeError: not a str.

    Example:
        >>> run.log({"report": labtrack.Html("<b>best</b> so far")})
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise LabtrackTypeError(f"labtrack.Html takes a str of HTML, got {type(text).__name__}")
        _records.check_text(text, "labtrack.Html")
        self.text = text

    def __repr__(self) -> str:
        return f"labtrack.Html({len(self.text)} characters)"
