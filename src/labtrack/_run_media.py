"""The media half of Run: images, audio, video, tables and histograms, one call each or
mixed with numbers in one `run.log({...})`.

Each record is built in two halves: the checks, name claims and copies at the call (so
misuse raises in the script, and a buffer reused afterwards changes nothing), and a
closure that encodes and writes on the writer thread. A mixed `log` builds every media
record's first half, then logs the numbers, then hands the closures to the writer: a bad
value anywhere in the dict leaves nothing logged.
"""

from __future__ import annotations

import time as _clock
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import _media, _records
from ._media import Audio, Histogram, Html, Image, Media, Table, Video
from ._names import check_name
from ._store import files, layout
from .errors import LabtrackTypeError, LabtrackValueError

if TYPE_CHECKING:
    from ._writer import Writer

# (write on the writer thread, kind, name): what Writer.submit takes.
Job = tuple[Callable[[], None], str, str]


def _stamp(entry: dict[str, Any], caption: str | None) -> dict[str, Any]:
    if caption is not None:
        entry["caption"] = caption
    return entry


class MediaMethods:
    """Run's media records (mixed into Run; see _run.py for the state they use)."""

    __slots__ = ()

    if TYPE_CHECKING:
        dir: Path
        _writer: Writer

        def _check_open(self) -> None: ...
        def _claim(self, folder: str, name: str, suffixes: tuple[str, ...], what: str) -> None: ...
        def _media_step(self, step: Any) -> int: ...
        def _add_media(self, entry: dict[str, Any], data: bytes, extra: dict[str, Any] | None = None) -> None: ...
        def _log_py(self, values: Mapping[str, Any], step: int | None = None, *,
                    time: float | None = None) -> None: ...

    # --- a log() dict with media objects in it ---------------------------------------------------
    def _log_mixed(self, values: Mapping[str, Any], step: int, t: float) -> None:
        """Log a dict of numbers and media objects at one step and one time (all or nothing).

        Called by Run.log when its scalar path meets a media object (the marker
        `_records.MediaValue`), after it undid the points it had appended.
        """
        try:
            self._check_open()
            scalars: dict[Any, Any] = {}
            jobs: list[Job] = []
            for k, v in values.items():
                if isinstance(v, Media):
                    jobs.append(self._media_job(k, v, step, t))
                else:
                    scalars[k] = v
            self._log_py(scalars, step, time=t)  # also with none: the step moves on as for any log()
            for job in jobs:
                self._writer.submit(*job)
        except BaseException as e:
            e.__suppress_context__ = True  # the marker that led here is no part of the error
            raise

    def _media_job(self, name: Any, value: Media, step: int, t: float) -> Job:
        if isinstance(value, Image):
            return self._image_job(check_name(name, "image name"), value.array, step, t, value.caption,
                                   value._extra)
        if isinstance(value, Audio):
            return self._audio_job(check_name(name, "audio name"), value, step, t)
        if isinstance(value, Video):
            return self._video_job(check_name(name, "video name"), value, step, t)
        if isinstance(value, Table):
            return self._table_job(check_name(name, "table name"), value, step, t)
        if isinstance(value, Histogram):
            return self._histogram_job(check_name(name, "histogram name"), value, step, t)
        if isinstance(value, Html):
            return self._html_job(check_name(name, "html name"), value, step, t)
        raise LabtrackTypeError(f"value of {name!r} is a {type(value).__name__}, a media type log() "
                                "does not know; use labtrack.Image, Audio, Video, Table, Histogram or Html")

    # --- images ------------------------------------------------------------------------------------
    def log_image(self, name: str, image: Any, step: int | None = None, *,
                  boxes: list[dict[str, Any]] | None = None, classes: list[str] | None = None,
                  threshold: float | None = None, fps: float = 4.0) -> None:
        """Record an image (PNG), or a list of frames as an animated GIF, with optional boxes.

        Args:
            name: e.g. "samples/bird".
            image: numpy HW/HWC/CHW (uint8, or float in [0, 1]), a PIL image, a torch
                tensor or a labtrack.Image; or a list of those (frames of one size) for an
                animation.
            step: default: the current step.
            boxes: dicts with xStart, yStart, xEnd, yEnd (pixels) and optional className,
                probability.
            classes: the class names the boxes may use (for filtering in the dashboard).
            threshold: the default probability threshold for showing boxes.
            fps: frames per second of an animation.

        Raises:
            LabtrackTypeError, LabtrackValueError: a bad image, box, class or threshold.
        """
        self._check_open()
        check_name(name, "image name")
        s = self._media_step(step)
        if isinstance(image, (list, tuple)):
            if not image:
                raise LabtrackValueError(f"animation {name!r} has no frames")
            frames = [_records.image_to_array(name, f.array if isinstance(f, Image) else f) for f in image]
            if len({f.shape for f in frames}) != 1:
                raise LabtrackValueError(f"frames of animation {name!r} differ in shape: "
                                                  f"{sorted({f.shape for f in frames})}")
            if not (isinstance(fps, (int, float)) and 0 < fps <= 100):
                raise LabtrackValueError(f"fps of animation {name!r} must be in (0, 100], got {fps!r}")
            self._claim(layout.MEDIA_DIR, name, (".gif", ".json"), "image name")
            entry = {"step": s, "name": name, "kind": "animation", "path": layout.media_relpath(s, name, ".gif"),
                     "time": round(_clock.time(), 3), "width": int(frames[0].shape[1]),
                     "height": int(frames[0].shape[0])}
            extra = self._boxes(name, s, entry, boxes, classes, threshold)
            self._writer.submit(lambda: self._add_media(entry, _records.encode_gif(frames, fps), extra),
                                "animation", name)
            return
        if isinstance(image, Image):
            arr, caption, extra = image.array, image.caption, image._extra
        else:
            arr, caption, extra = _records.image_to_array(name, image), None, None
        self._writer.submit(*self._image_job(name, arr, s, _clock.time(), caption, extra,
                                             (boxes, classes, threshold)))

    def _boxes(self, name: str, step: int, entry: dict[str, Any], boxes: Any, classes: Any,
               threshold: Any) -> dict[str, Any] | None:
        if boxes is None and classes is None and threshold is None:
            return None
        extra = _records.check_boxes(name, boxes, classes, threshold, entry["width"], entry["height"])
        entry["boxes"] = layout.media_relpath(step, name, ".json")
        return extra

    def _image_job(self, name: str, arr: Any, step: int, t: float, caption: str | None = None,
                   extra: dict[str, Any] | None = None, boxes: tuple[Any, Any, Any] | None = None) -> Job:
        """`arr` from image_to_array; `extra` the checked boxes of a labtrack.Image, or
        `boxes` (boxes, classes, threshold) to check (log_image's keywords win)."""
        self._claim(layout.MEDIA_DIR, name, (".png", ".json"), "image name")
        entry = _stamp({"step": step, "name": name, "kind": "image", "path": layout.media_relpath(step, name, ".png"),
                        "time": round(t, 3), "width": int(arr.shape[1]), "height": int(arr.shape[0])}, caption)
        if boxes is not None and any(b is not None for b in boxes):
            extra = self._boxes(name, step, entry, *boxes)
        elif extra is not None:
            entry["boxes"] = layout.media_relpath(step, name, ".json")
        return (lambda: self._add_media(entry, _records.encode_png(arr), extra)), "image", name

    # --- audio and video -----------------------------------------------------------------------------
    def log_audio(self, name: str, wave: Any, sample_rate: int = 16000, step: int | None = None,
                  caption: str | None = None) -> None:
        """Record audio as a WAV file (16-bit PCM), played in the dashboard's run page.

        Args:
            name: e.g. "speech".
            wave: numpy or torch samples, (samples,) for mono or (samples, channels), float
                in [-1, 1] or int16; the path of a .wav file; or a labtrack.Audio.
            sample_rate: samples per second (a .wav file keeps its own).
            step: default: the current step.
            caption: a line shown with the player.

        Raises:
            LabtrackTypeError, LabtrackValueError: bad samples, rate, file, caption or name.

        Example:
            >>> run.log_audio("speech", np.sin(np.arange(16000) / 8), sample_rate=16000, step=3)
        """
        self._check_open()
        check_name(name, "audio name")
        s = self._media_step(step)
        audio = wave if isinstance(wave, Audio) else Audio(wave, sample_rate, caption)
        if caption is not None and isinstance(wave, Audio):
            audio = Audio.__new__(Audio)
            audio.wav, audio.sample_rate, audio.channels, audio.duration = (
                wave.wav, wave.sample_rate, wave.channels, wave.duration)
            audio.caption = _media._caption("labtrack.Audio", caption)
        self._writer.submit(*self._audio_job(name, audio, s, _clock.time()))

    def _audio_job(self, name: str, audio: Audio, step: int, t: float) -> Job:
        self._claim(layout.MEDIA_DIR, name, (layout.AUDIO_SUFFIX,), "audio name")
        entry = _stamp({"step": step, "name": name, "kind": "audio",
                        "path": layout.media_relpath(step, name, layout.AUDIO_SUFFIX), "time": round(t, 3),
                        "sample_rate": audio.sample_rate, "duration": audio.duration,
                        "channels": audio.channels}, audio.caption)
        data = audio.wav
        return (lambda: self._add_media(entry, data)), "audio", name

    def log_video(self, name: str, frames: Any, fps: float = 8, step: int | None = None,
                  caption: str | None = None) -> None:
        """Record a video: MP4 (H.264) where PyAV is installed, else an animated GIF; or a
        .mp4, .webm or .gif file copied in. Played in the dashboard's run page.

        Args:
            name: e.g. "rollout".
            frames: (T, H, W, C) uint8 (or float in [0, 1]), (T, C, H, W) as torch code
                has it, a list of images, the path of a video file, or a labtrack.Video.
            fps: frames per second (a file keeps its own).
            step: default: the current step.
            caption: a line shown with the player.

        Raises:
            LabtrackTypeError, LabtrackValueError: bad frames, fps, file, caption or name.

        Example:
            >>> run.log_video("rollout", np.zeros((16, 64, 64, 3), np.uint8), fps=8, step=100)
        """
        self._check_open()
        check_name(name, "video name")
        s = self._media_step(step)
        video = frames if isinstance(frames, Video) else Video(frames, fps, caption)
        if caption is not None and isinstance(frames, Video):
            video = Video.__new__(Video)
            video.frames, video.path, video.fps = frames.frames, frames.path, frames.fps
            video.caption = _media._caption("labtrack.Video", caption)
        self._writer.submit(*self._video_job(name, video, s, _clock.time()))

    def _video_job(self, name: str, video: Video, step: int, t: float) -> Job:
        entry: dict[str, Any] = {"step": step, "name": name, "kind": "video", "time": round(t, 3)}
        if video.path is not None:
            suffix = video.path.suffix.lower()
            data = video.path.read_bytes()  # now: later edits of the file do not leak in
            info = _media.video_file_info(video.path)
            self._claim(layout.MEDIA_DIR, name, (suffix,), "video name")
            entry.update(path=layout.media_relpath(step, name, suffix), **info)
            _stamp(entry, video.caption)
            return (lambda: self._add_media(entry, data)), "video", name
        frames, fps = video.frames, video.fps
        fmt = "mp4" if _media._h264_available() else "gif"
        self._claim(layout.MEDIA_DIR, name, ("." + fmt,), "video name")
        entry.update(path=layout.media_relpath(step, name, "." + fmt), fps=fps, frames=int(frames.shape[0]),
                     width=int(frames.shape[2]), height=int(frames.shape[1]), format=fmt)
        _stamp(entry, video.caption)

        def write() -> None:
            data, _ = _media.encode_video(frames, fps) if fmt == "mp4" else (
                _records.encode_gif(list(frames), fps), "gif")
            self._add_media(entry, data)

        return write, "video", name

    # --- tables, histograms, html ---------------------------------------------------------------
    def log_table(self, name: str, data: Any, step: int | None = None) -> None:
        """Record a table as CSV: a DataFrame, a list of dicts, a dict of lists or a
        labtrack.Table (whose labtrack.Image cells are stored as PNG files beside it).

        Raises:
            LabtrackTypeError, LabtrackValueError: another type, rows of the wrong shape.
        """
        self._check_open()
        check_name(name, "table name")
        s = None if step is None else _records.check_step(step)
        self._writer.submit(*self._table_job(name, data, s, _clock.time()))

    def _table_job(self, name: str, data: Any, step: int | None, t: float) -> Job:
        table = data if isinstance(data, Table) else _table_with_images(data)
        cells: list[tuple[str, Any]] = []
        if table is not None and table.has_images:
            suffixes: tuple[str, ...] = (".csv", layout.TABLE_CELLS_SUFFIX)

            def cell(i: int, j: int) -> str:
                rel = layout.table_cell_relpath(step, name, i, j)
                cells.append((rel, table.rows[i][j].array))
                return rel

            csv_bytes = _media.table_csv(f"table {name!r}", table, cell)
        else:
            suffixes = (".csv",)
            csv_bytes = (_media.table_csv(f"table {name!r}", table) if table is not None
                         else _records.table_to_csv(name, data))
        self._claim(layout.TABLES_DIR, name, suffixes, "table name")
        if step is not None:
            self._claim(layout.MEDIA_DIR, name, suffixes, "table name")
        path = layout.table_path(self.dir, name)
        entry = None
        if step is not None:
            entry = {"step": step, "name": name, "kind": "table",
                     "path": layout.media_relpath(step, name, ".csv"), "time": round(t, 3)}
            if cells:
                entry["images"] = len(cells)

        def write() -> None:
            for rel, arr in cells:  # the images first: a table on disk finds its cells
                files.atomic_write_bytes(self.dir / rel, _records.encode_png(arr))
            files.atomic_write_bytes(path, csv_bytes)
            if entry is not None:
                self._add_media(entry, csv_bytes)

        return write, "table", name

    def log_histogram(self, name: str, values: Any, step: int | None = None, *, bins: int = 64) -> None:
        """Record a histogram of many values (bin edges and counts) at a step (values may
        be a labtrack.Histogram, also one made from precomputed counts and edges)."""
        self._check_open()
        check_name(name, "histogram name")
        s = self._media_step(step)
        hist = values if isinstance(values, Histogram) else None
        if hist is None:
            hist = Histogram.__new__(Histogram)
            hist.record = _records.histogram(name, values, bins)
        self._writer.submit(*self._histogram_job(name, hist, s, _clock.time()))

    def _histogram_job(self, name: str, hist: Histogram, step: int, t: float) -> Job:
        self._claim(layout.HISTOGRAMS_DIR, name, (".jsonl",), "histogram name")
        rec = {"step": step, **hist.record, "time": round(t, 3)}
        line = files.dumps_line(rec).encode()
        path = layout.histogram_path(self.dir, name)
        return (lambda: self._writer.append(path, line, "histogram record", name)), "histogram record", name

    def _html_job(self, name: str, html: Html, step: int, t: float) -> Job:
        self._claim(layout.MEDIA_DIR, name, (layout.HTML_SUFFIX,), "html name")
        entry = {"step": step, "name": name, "kind": "html",
                 "path": layout.media_relpath(step, name, layout.HTML_SUFFIX), "time": round(t, 3)}
        data = html.text.encode("utf-8")
        return (lambda: self._add_media(entry, data)), "html", name


def _table_with_images(data: Any) -> Table | None:
    """A Table of `data` (a list of dicts, a dict of lists, a DataFrame) when a cell holds an Image;
    None for everything else, which is written as before (_records.table_to_csv)."""
    if isinstance(data, Mapping):
        found = any(isinstance(v, Image) for col in data.values() if isinstance(col, (list, tuple)) for v in col)
    elif isinstance(data, (list, tuple)):
        found = any(isinstance(v, Image) for r in data if isinstance(r, Mapping) for v in r.values())
    elif type(data).__module__.startswith("pandas") and hasattr(data, "dtypes"):
        found = any(isinstance(v, Image) for c in data.columns if data[c].dtype == object for v in data[c])
    else:
        found = False
    return Table(data) if found else None
