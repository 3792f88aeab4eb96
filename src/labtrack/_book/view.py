"""RunView: one run directory, read for analysis (pandas, PIL), never written to by reading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._names import check_name, name_to_relpath
from .._store import layout, scalars
from .._store.contain import real
from .._store.rundir import RunDir
from ..errors import FormatError, LabtrackValueError
from .series import load_by_suffix

if TYPE_CHECKING:
    import pandas as pd

    from .._index import Hit
    from PIL.Image import Image as PILImage


@dataclass(frozen=True)
class MediaItem:
    """One logged image, figure, animation, audio clip or video (a line of media.jsonl).

    Attributes:
        name: the logged name, e.g. "samples/bird".
        step: the step it was logged at.
        path: the file inside the run directory.
        kind: "image", "animation", "figure", "audio", "video", "markdown" or "table".
        time: Unix time it was logged.
        width, height: pixel size (images, video).
        boxes: the bounding boxes, classes and threshold (docs/format.md), or None.
        caption: the caption it was logged with, or None.
        info: the entry's other fields (audio: sample_rate, duration, channels; video: fps,
            frames, format).
    """

    name: str
    step: int
    path: Path
    kind: str
    time: float | None = None
    width: int | None = None
    height: int | None = None
    boxes: dict[str, Any] | None = None
    caption: str | None = None
    info: dict[str, Any] | None = None

    def open(self) -> PILImage:
        """The image as a PIL image (the first frame of an animation)."""
        from PIL import Image

        with Image.open(self.path) as im:
            im.load()
            return im.copy()

    def _repr_png_(self) -> bytes | None:  # shown inline by Jupyter
        return self.path.read_bytes() if self.path.suffix == ".png" else None

    def _repr_html_(self) -> str | None:
        """A player for audio and video in Jupyter (the file inline, up to 20 MB)."""
        import base64
        import html

        kinds = {".wav": ("audio", "audio/wav"), ".mp4": ("video", "video/mp4"),
                 ".webm": ("video", "video/webm"), ".gif": ("img", "image/gif")}
        suffix = self.path.suffix.lower()
        if self.kind not in ("audio", "video") or suffix not in kinds:
            return None
        tag, mime = kinds[suffix]
        title = html.escape(f"{self.name} at step {self.step}" + (f": {self.caption}" if self.caption else ""))
        size = self.path.stat().st_size
        if size > _INLINE_MAX:
            return f"<div>{title} ({size} bytes, too large to show inline): {html.escape(str(self.path))}</div>"
        src = f"data:{mime};base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")
        player = (f'<img src="{src}">' if tag == "img" else f'<{tag} controls src="{src}"></{tag}>')
        return f"<figure>{player}<figcaption>{title}</figcaption></figure>"


_INLINE_MAX = 20 << 20


class RunView:
    """A run read back for analysis: metadata, params, series as pandas, media, artifacts.

    Everything is read from the run directory when asked for, so a view of a run that is
    still being written shows it as "running" with its data so far. Reading never writes.
    Every file is read through the run's :class:`~labtrack._store.rundir.RunDir`: a run or
    file that leads (through a symlink) outside the root raises `OutsideRootError`.

    Args:
        run_dir: the run directory (or its RunDir).
        row: the index row it was listed with.
        hit: the index hit it was listed with.
        root: the root it belongs to: the run directory must resolve inside it.

    Example:
        >>> run = labtrack.open("labtrack")["mnist/baseline"]
        >>> run.params["lr"], run.status
        >>> run.scalars("train/loss").value.min()
    """

    def __init__(self, run_dir: str | os.PathLike[str] | RunDir, row: dict[str, Any] | None = None, *,
                 hit: Hit | None = None, root: str | os.PathLike[str] | None = None) -> None:
        # Kept as text until needed: listing 10,000 runs should not build 10,000 Paths.
        self._run: RunDir | None = None
        if isinstance(run_dir, RunDir):
            self._run = run_dir
            root = run_dir.root if root is None else root
            run_dir = run_dir.path
        self._dir_text = os.fspath(run_dir)
        self._root = root
        self._dir: Path | None = None
        self._given_row = row
        self._hit = hit
        if hit is not None:
            self.id: str = hit.id
        elif row is not None:
            self.id = str(row["id"])
        else:
            try:
                meta_id = self.run.raw_meta().get("id")
            except (FileNotFoundError, FormatError):
                meta_id = None
            self.id = str(meta_id or self.dir.name)

    @property
    def run(self) -> RunDir:
        """The run directory's door (checked to resolve inside the root on first use).

        Raises:
            OutsideRootError: the run folder leads outside its root.
        """
        if self._run is None:
            self._run = RunDir(self._dir_text, self._root)
        return self._run

    @property
    def _row(self) -> dict[str, Any] | None:
        """The index row this view was listed with (None when opened by reference)."""
        if self._given_row is None and self._hit is not None:
            self._given_row = self._hit.row()
        return self._given_row

    @property
    def dir(self) -> Path:
        """The run directory."""
        if self._dir is None:
            self._dir = Path(self._dir_text)
        return self._dir

    # -- metadata

    @property
    def meta(self) -> dict[str, Any]:
        """run.json, with the derived status ("crashed" for a dead "running" run)."""
        return self.run.meta()

    def _get(self, key: str) -> Any:
        return self.meta.get(key)

    @property
    def experiment(self) -> str:
        """The experiment's name."""
        return str(self._get("experiment") or "")

    @property
    def name(self) -> str:
        """The run's readable name ("" when none was given)."""
        return str(self._get("name") or "")

    @property
    def comment(self) -> str:
        """The run's comment ("" when none)."""
        return str(self._get("comment") or "")

    @property
    def tags(self) -> list[str]:
        """The run's tags."""
        return list(self._get("tags") or [])

    @property
    def notes(self) -> str:
        """The run's notes (markdown, written from the dashboard or `Book.set_notes`; "" when none)."""
        return self.run.notes()

    @property
    def status(self) -> str:
        """running, finished, failed, killed, interrupted, or crashed (derived)."""
        return str(self._get("status"))

    @property
    def started(self) -> str | None:
        """ISO time the run started (UTC)."""
        v = self._get("started")
        return v if isinstance(v, str) else None

    @property
    def ended(self) -> str | None:
        """ISO time the run ended, None while running."""
        v = self._get("ended")
        return v if isinstance(v, str) else None

    @property
    def duration(self) -> float | None:
        """Seconds the run ran: to its end, to now while it runs, to its last sign of life
        (heartbeat or point) when it crashed; None without a start time."""
        return self.run.duration(self.meta)

    @property
    def git(self) -> dict[str, Any] | None:
        """commit, message, branch, dirty, remote, root; None outside git."""
        v = self._get("git")
        return v if isinstance(v, dict) else None

    @property
    def command(self) -> dict[str, Any]:
        """argv, script, cwd and python of the process that made the run."""
        v = self._get("command")
        return v if isinstance(v, dict) else {}

    @property
    def params(self) -> dict[str, Any]:
        """params.json: the config, nested as given."""
        return self.run.params()

    @property
    def flat_params(self) -> dict[str, Any]:
        """The params with nested keys joined by "." (`opt.lr`)."""
        from .._index import flatten_params

        return flatten_params(self.params)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        """summary.json: per series last, min, max, mean, sum, count, step, time."""
        return self.run.summary()

    @property
    def env(self) -> dict[str, Any]:
        """env.json: python, platform, packages, GPUs ({} when not recorded)."""
        return self.run.env() or {}

    @property
    def options(self) -> dict[str, Any]:
        """options.json: command-line options recorded by log_command ({} when none)."""
        return self.run.options() or {}

    @property
    def diff(self) -> str | None:
        """The recorded `git diff HEAD` (source/diff.patch); None when git was not captured."""
        return self.run.diff()

    @property
    def console(self) -> str:
        """What the script printed (console.log; "" when nothing was captured)."""
        return self.run.console()

    def console_of(self, rank: int) -> str:
        """What rank `rank` of a one-run distributed job printed (rank 0's is :attr:`console`;
        "" when nothing was captured; docs/distributed.md).

        Example:
            >>> book["20261121-141503-k3f9qz"].console_of(1)
        """
        return self.run.console(rank)

    def __repr__(self) -> str:
        try:
            # A listed view shows what the listing saw: printing 10,000 runs reads no files.
            meta = self._hit.light() if self._hit is not None else self._given_row or self.meta
            label = f"{meta.get('experiment')}/{meta.get('name') or self.id}"
            return f"<RunView {self.id} {label} {meta.get('status')}>"
        except (OSError, LabtrackValueError):
            return f"<RunView {self.id} (unreadable) {self.dir}>"

    def _repr_html_(self) -> str:
        """Its metadata, params, last metrics and series names as tables, in Jupyter."""
        from . import html

        meta = self.meta
        return html.run_view(meta, self.flat_params, self.summary, self.series(),
                             self.run.duration(meta))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunView) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self._dir_text)

    # -- series

    def series(self) -> list[str]:
        """Names of the run's scalar series, sorted."""
        return self.run.names("scalars")

    def scalars(self, name: str | None = None) -> pd.DataFrame:
        """A series as a DataFrame indexed by step (columns `value`, `time`), or, without
        a name, every series outer-joined on step (one column per series; a step logged
        twice keeps its last value).

        Args:
            name: the series, e.g. "train/loss".

        Returns:
            The DataFrame; points in file order (a resumed run may repeat a step).

        Raises:
            LabtrackValueError: the run has no series of that name (the message lists them).

        Example:
            >>> run.scalars("train/loss").value.idxmin()
        """
        if name is None:
            named = self.run.named("scalars")  # each file checked to stay inside the run
            try:
                return scalars.read_joined({n: self.dir / rel for n, rel in named})
            except FileNotFoundError:
                # A series removed while reading (a run directory being replaced).
                return scalars.join_frames({n: self.scalars(n) for n in self.series()})
        path = self.run.path_of("scalars", name)
        try:
            return scalars.read_frame(path)
        except FileNotFoundError:
            raise LabtrackValueError(
                f"run {self.id} has no series {name!r}; it has: {_listing(self.series())}"
            ) from None

    # -- media, text, histograms, tables

    def media(self) -> list[dict[str, Any]]:
        """Every entry of media.jsonl (images, figures, animations, stepped markdown, tables)."""
        return self.run.media()

    def images(self, name: str | None = None) -> list[MediaItem]:
        """Images, figures and animations, in logged order (of one name, or all).

        Raises:
            LabtrackValueError: `name` was never logged as an image (the message lists those that were).
        """
        return self._media_items(("image", "figure", "animation"), name, "image")

    def audio(self, name: str | None = None) -> list[MediaItem]:
        """Audio clips (WAV files), in logged order (of one name, or all); each shows a
        player in Jupyter, and `item.info` has sample_rate, duration and channels.

        Raises:
            LabtrackValueError: `name` was never logged as audio.
        """
        return self._media_items(("audio",), name, "audio")

    def videos(self, name: str | None = None) -> list[MediaItem]:
        """Videos (MP4, WebM or GIF files), in logged order (of one name, or all); each shows
        a player in Jupyter, and `item.info` has fps, frames and format.

        Raises:
            LabtrackValueError: `name` was never logged as a video.
        """
        return self._media_items(("video",), name, "video")

    def _media_items(self, kinds: tuple[str, ...], name: str | None, what: str) -> list[MediaItem]:
        items = []
        known = {"name", "step", "path", "kind", "time", "width", "height", "boxes", "caption"}
        for e in self.media():
            if e.get("kind") not in kinds:
                continue
            boxes = None
            if e.get("boxes"):
                boxes = self.run.read_json(self._relpath(e["boxes"]))
            caption = e.get("caption")
            items.append(MediaItem(
                name=str(e.get("name")), step=int(e.get("step", 0)),
                path=Path(real(self.run.file(self._relpath(e["path"])))),
                kind=str(e.get("kind")), time=e.get("time"), width=e.get("width"),
                height=e.get("height"), boxes=boxes, caption=caption if isinstance(caption, str) else None,
                info={k: v for k, v in e.items() if k not in known}))
        if name is None:
            return items
        chosen = [i for i in items if i.name == name]
        if not chosen:
            raise LabtrackValueError(f"run {self.id} has no {what} {name!r}; it has: "
                                     f"{_listing(sorted({i.name for i in items}))}")
        return chosen

    def _named_file(self, kind: str, name: str, what: str) -> Path:
        """The checked path of a named record, refused when it does not exist."""
        path = self.run.path_of(kind, name)
        if not path.is_file():
            raise LabtrackValueError(f"run {self.id} has no {what} {name!r}; it has: "
                                     f"{_listing(self.run.names(kind))}")
        return path

    def _records(self, kind: str, name: str, what: str) -> list[dict[str, Any]]:
        self._named_file(kind, name, what)
        return self.run.records(kind, name)

    def texts(self, name: str) -> pd.DataFrame:
        """Text records of `name` indexed by step: columns text, expected (None when not
        given) and time.

        Raises:
            LabtrackValueError: no text of that name.
        """
        import pandas as pd

        recs = self._records("text", name, "text")
        frame = pd.DataFrame({
            "step": pd.Series([r.get("step") for r in recs], dtype="int64"),
            "text": pd.Series([r.get("text") for r in recs], dtype="object"),
            "expected": pd.Series([r.get("expected") for r in recs], dtype="object"),
            "time": pd.Series([r.get("time") for r in recs], dtype="float64"),
        })
        return frame.set_index("step")

    def histograms(self, name: str) -> list[dict[str, Any]]:
        """Histogram records of `name`: step, bins (edges), counts, min, max, count, time.

        Raises:
            LabtrackValueError: no histogram of that name.
        """
        return self._records("histograms", name, "histogram")

    def markdown(self, name: str) -> str:
        """The latest markdown document logged without a step under `name`.

        Raises:
            LabtrackValueError: no such document.
        """
        self._named_file("markdown", name, "markdown")
        return self.run.read_text(self.run.relpath("markdown", name)) or ""

    def table(self, name: str) -> pd.DataFrame:
        """The latest version of a logged table.

        Raises:
            LabtrackValueError: no table of that name.
        """
        import pandas as pd

        return pd.read_csv(real(self._named_file("tables", name, "table")))

    # -- files

    def _relpath(self, rel: Any) -> str:
        """A path named by a record (media.jsonl is data, not trusted paths), as text."""
        if not isinstance(rel, str):
            raise LabtrackValueError(f"run {self.id} has a media entry whose path is {rel!r}, not a path")
        return rel

    def list_artifacts(self) -> list[str]:
        """Every file of the run, as sorted `/`-separated paths relative to its directory
        (temporary files of atomic writes, and anything leading outside the run, left out).

        Example:
            >>> run.list_artifacts()
            ['artifacts/model.pt', 'params.json', 'run.json', 'scalars/train/loss.csv', ...]
        """
        return [str(f["path"]) for f in self.run.files()]

    def path(self, key: str) -> Path:
        """The file or folder `run[key]` would load (see :meth:`__getitem__`).

        Raises:
            LabtrackValueError: nothing of that name (the message lists the artifacts).
            OutsideRootError: it leads (through a symlink) outside the run.
        """
        check_name(key, "file name")
        escaped = name_to_relpath(key)
        arts = layout.ARTIFACTS_DIR
        series = layout.SERIES_DIR
        for rel in (key, escaped, f"{arts}/{key}", f"{arts}/{escaped}", f"{series}/{escaped}"):
            if os.path.lexists(self.dir / rel):
                return Path(real(self.run.file(rel, "file name")))
        # A saved object's name without its suffix: "vocab" -> artifacts/vocab.pkl
        folder, _, stem = f"{arts}/{escaped}".rpartition("/")
        found = [rel for rel in self.run.listdir(folder)
                 if rel.rpartition("/")[2].startswith(stem + ".") and not rel.endswith(".tmp")
                 and "." not in rel.rpartition("/")[2][len(stem) + 1:]]
        if len(found) == 1:
            return Path(real(self.run.file(found[0], "file name")))
        if len(found) > 1:
            raise LabtrackValueError(
                f"run {self.id} has several files named {key!r}: "
                f"{', '.join(r.rpartition('/')[2] for r in found)}; give the full name")
        listed = [a for a in self.list_artifacts() if a.startswith(arts + "/")]
        raise LabtrackValueError(f"run {self.id} has no file or artifact {key!r}; its artifacts: "
                                 f"{_listing(listed)}")

    def __getitem__(self, key: str) -> Any:
        """Load a file of the run by its type: `run["params.json"]` -> dict,
        `run["predictions.csv"]` -> DataFrame, a `series_log` series (`run["Training loss.csv"]`)
        -> DataFrame indexed by its first field with `Date` parsed (UTC), `run["vocab"]` -> the object saved with
        `save_object("vocab", ...)`, an image -> PIL image, a folder -> its Path.

        `.pkl` and `.pt` files are unpickled: load only runs you trust.

        Raises:
            LabtrackValueError: nothing of that name.
            LabtrackNameError: a name with `..`, an absolute path or control characters.
        """
        p = self.path(key)
        if p.is_dir():
            return p
        if p.suffix == ".csv" and _is_series(p, self.dir):
            return _read_series(p)
        return load_by_suffix(p)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self.path(key)
        except LabtrackValueError:
            return False
        return True

    # -- checkpoints

    def save_checkpoint(self, obj: Any, step: int, *, metric: float | None = None,
                        mode: str = "min", keep_last: int | None = None) -> Path:
        """Save a checkpoint into this run (see `labtrack.Run.save_checkpoint`).

        Returns:
            The checkpoint file's path.
        """
        from .._checkpoints import save_checkpoint

        return save_checkpoint(self.dir, obj, step, metric=metric, mode=mode, keep_last=keep_last)

    def load_checkpoint(self, which: str | int = "last", **kwargs: Any) -> Any:
        """Load a checkpoint: "last", "best" or a step (see `labtrack.Run.load_checkpoint`)."""
        from .._checkpoints import load_checkpoint

        return load_checkpoint(self.dir, which, **kwargs)


def _listing(names: list[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _is_series(path: Path, run_dir: Path) -> bool:
    """Whether `path` is a `series_log` file (series/<name>.csv) of the run at `run_dir`."""
    try:
        rel = path.relative_to(Path(real(run_dir)))
    except ValueError:
        return False
    return rel.parts[:1] == (layout.SERIES_DIR,)


def _read_series(path: Path) -> pd.DataFrame:
    """A `series_log` CSV as a DataFrame: indexed by its first field, `Date` parsed (UTC);
    a trailing partial line (the run is still writing) is left out."""
    import io

    import pandas as pd

    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    frame = pd.read_csv(io.BytesIO(data))
    if layout.SERIES_DATE in frame.columns:
        frame[layout.SERIES_DATE] = pd.to_datetime(frame[layout.SERIES_DATE], utc=True, format="ISO8601")
    if len(frame.columns) > 1:
        frame = frame.set_index(frame.columns[0])
    return frame
