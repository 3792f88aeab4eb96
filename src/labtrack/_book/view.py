"""RunView: one run directory, read for analysis (pandas, PIL), never written to by reading."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._names import check_name, name_to_relpath, relpath_to_name
from .._store import layout
from .._store.reader import read_json, read_jsonl, read_run_meta, series_names
from ..errors import LabtrackValueError
from .series import join_series, load_by_suffix, read_joined_values, read_scalar_frame

if TYPE_CHECKING:
    import pandas as pd

    from .._index import Hit
    from PIL.Image import Image as PILImage


@dataclass(frozen=True)
class MediaItem:
    """One logged image, figure or animation (a line of media.jsonl).

    Attributes:
        name: the logged name, e.g. "samples/bird".
        step: the step it was logged at.
        path: the file inside the run directory.
        kind: "image", "animation", "figure", "markdown" or "table".
        time: Unix time it was logged.
        width, height: pixel size (images).
        boxes: the bounding boxes, classes and threshold (docs/format.md), or None.
    """

    name: str
    step: int
    path: Path
    kind: str
    time: float | None = None
    width: int | None = None
    height: int | None = None
    boxes: dict[str, Any] | None = None

    def open(self) -> PILImage:
        """The image as a PIL image (the first frame of an animation)."""
        from PIL import Image

        with Image.open(self.path) as im:
            im.load()
            return im.copy()

    def _repr_png_(self) -> bytes | None:  # shown inline by Jupyter
        return self.path.read_bytes() if self.path.suffix == ".png" else None


class RunView:
    """A run read back for analysis: metadata, params, series as pandas, media, artifacts.

    Everything is read from the run directory when asked for, so a view of a run that is
    still being written shows it as "running" with its data so far. Reading never writes.

    Example:
        >>> run = labtrack.open("labtrack")["mnist/baseline"]
        >>> run.params["lr"], run.status
        >>> run.scalars("train/loss").value.min()
    """

    def __init__(self, run_dir: str | os.PathLike[str], row: dict[str, Any] | None = None, *,
                 hit: Hit | None = None) -> None:
        # Kept as text until needed: listing 10,000 runs should not build 10,000 Paths.
        self._dir_text = os.fspath(run_dir)
        self._dir: Path | None = None
        self._given_row = row
        self._hit = hit
        if hit is not None:
            self.id: str = hit.id
        elif row is not None:
            self.id = str(row["id"])
        else:
            meta = read_json(self.dir / layout.RUN_JSON) or {}
            self.id = str(meta.get("id") or self.dir.name)

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
        return read_run_meta(self.dir)

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
        v = read_json(self.dir / layout.PARAMS_JSON, {})
        return v if isinstance(v, dict) else {"value": v}

    @property
    def flat_params(self) -> dict[str, Any]:
        """The params with nested keys joined by "." (`opt.lr`)."""
        from .._index import flatten_params

        return flatten_params(self.params)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        """summary.json: per series last, min, max, mean, sum, count, step, time."""
        v = read_json(self.dir / layout.SUMMARY_JSON, {})
        return v if isinstance(v, dict) else {}

    @property
    def env(self) -> dict[str, Any]:
        """env.json: python, platform, packages, GPUs ({} when not recorded)."""
        v = read_json(self.dir / layout.ENV_JSON, {})
        return v if isinstance(v, dict) else {}

    @property
    def options(self) -> dict[str, Any]:
        """options.json: command-line options recorded by log_command ({} when none)."""
        v = read_json(self.dir / layout.OPTIONS_JSON, {})
        return v if isinstance(v, dict) else {}

    @property
    def diff(self) -> str | None:
        """The recorded `git diff HEAD` (source/diff.patch); None when git was not captured."""
        p = self.dir / "source" / "diff.patch"
        return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None

    @property
    def console(self) -> str:
        """What the script printed (console.log; "" when nothing was captured)."""
        p = self.dir / layout.CONSOLE_LOG
        return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else ""

    def __repr__(self) -> str:
        try:
            # A listed view shows what the listing saw: printing 10,000 runs reads no files.
            meta = self._hit.light() if self._hit is not None else self._given_row or self.meta
            label = f"{meta.get('experiment')}/{meta.get('name') or self.id}"
            return f"<RunView {self.id} {label} {meta.get('status')}>"
        except (OSError, LabtrackValueError):
            return f"<RunView {self.id} (unreadable) {self.dir}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunView) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self._dir_text)

    # -- series

    def series(self) -> list[str]:
        """Names of the run's scalar series, sorted."""
        return series_names(self.dir)

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
            names = self.series()
            for n in names:
                check_name(n, "series name")
            try:
                return read_joined_values({n: layout.scalar_path(self.dir, n) for n in names})
            except FileNotFoundError:
                # A series removed while reading (a run directory being replaced).
                return join_series({n: self.scalars(n) for n in self.series()})
        check_name(name, "series name")
        path = layout.scalar_path(self.dir, name)
        try:
            return read_scalar_frame(path)
        except FileNotFoundError:
            raise LabtrackValueError(
                f"run {self.id} has no series {name!r}; it has: {_listing(self.series())}"
            ) from None

    # -- media, text, histograms, tables

    def media(self) -> list[dict[str, Any]]:
        """Every entry of media.jsonl (images, figures, animations, stepped markdown, tables)."""
        return read_jsonl(self.dir / layout.MEDIA_JSONL)

    def images(self, name: str | None = None) -> list[MediaItem]:
        """Images, figures and animations, in logged order (of one name, or all).

        Raises:
            LabtrackValueError: `name` was never logged as an image (the message lists those that were).
        """
        items = []
        for e in self.media():
            if e.get("kind") not in ("image", "figure", "animation"):
                continue
            boxes = None
            if e.get("boxes"):
                boxes = read_json(self._inside(str(e["boxes"])))
            items.append(MediaItem(
                name=str(e.get("name")), step=int(e.get("step", 0)), path=self._inside(str(e["path"])),
                kind=str(e.get("kind")), time=e.get("time"), width=e.get("width"),
                height=e.get("height"), boxes=boxes))
        if name is None:
            return items
        chosen = [i for i in items if i.name == name]
        if not chosen:
            raise LabtrackValueError(f"run {self.id} has no image {name!r}; it has: "
                                     f"{_listing(sorted({i.name for i in items}))}")
        return chosen

    def _names_under(self, folder: str, suffix: str) -> list[str]:
        base = self.dir / folder
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for fn in files:
                if fn.endswith(suffix) and not fn.startswith("."):
                    rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
                    out.append(relpath_to_name(rel, suffix))
        return sorted(out)

    def _records(self, folder: str, suffix: str, name: str, what: str) -> list[dict[str, Any]]:
        check_name(name, f"{what} name")
        path = self.dir / folder / name_to_relpath(name, suffix)
        if not path.is_file():
            raise LabtrackValueError(f"run {self.id} has no {what} {name!r}; it has: "
                                     f"{_listing(self._names_under(folder, suffix))}")
        return read_jsonl(path)

    def texts(self, name: str) -> pd.DataFrame:
        """Text records of `name` indexed by step: columns text, expected (None when not
        given) and time.

        Raises:
            LabtrackValueError: no text of that name.
        """
        import pandas as pd

        recs = self._records("text", ".jsonl", name, "text")
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
        return self._records("histograms", ".jsonl", name, "histogram")

    def markdown(self, name: str) -> str:
        """The latest markdown document logged without a step under `name`.

        Raises:
            LabtrackValueError: no such document.
        """
        check_name(name, "markdown name")
        path = layout.markdown_path(self.dir, name)
        if not path.is_file():
            raise LabtrackValueError(f"run {self.id} has no markdown {name!r}; it has: "
                                     f"{_listing(self._names_under('markdown', '.md'))}")
        return path.read_text(encoding="utf-8")

    def table(self, name: str) -> pd.DataFrame:
        """The latest version of a logged table.

        Raises:
            LabtrackValueError: no table of that name.
        """
        import pandas as pd

        check_name(name, "table name")
        path = layout.table_path(self.dir, name)
        if not path.is_file():
            raise LabtrackValueError(f"run {self.id} has no table {name!r}; it has: "
                                     f"{_listing(self._names_under('tables', '.csv'))}")
        return pd.read_csv(path)

    # -- files

    def _inside(self, rel: str) -> Path:
        """A path from a record, refused when it would leave the run directory."""
        p = (self.dir / rel).resolve()
        if not p.is_relative_to(self.dir.resolve()):
            raise LabtrackValueError(f"run {self.id} refers to {rel!r}, outside its directory")
        return p

    def list_artifacts(self) -> list[str]:
        """Every file of the run, as sorted `/`-separated paths relative to its directory
        (temporary files of atomic writes left out).

        Example:
            >>> run.list_artifacts()
            ['artifacts/model.pt', 'params.json', 'run.json', 'scalars/train/loss.csv', ...]
        """
        out = []
        for dirpath, dirs, files in os.walk(self.dir):
            dirs[:] = [d for d in dirs if not (d.startswith(".") and ".tmp" in d)]
            rel_dir = os.path.relpath(dirpath, self.dir)
            for fn in files:
                if fn.startswith(".") and fn.endswith(".tmp"):
                    continue
                rel = fn if rel_dir == "." else os.path.join(rel_dir, fn)
                out.append(rel.replace(os.sep, "/"))
        return sorted(out)

    def path(self, key: str) -> Path:
        """The file or folder `run[key]` would load (see :meth:`__getitem__`).

        Raises:
            LabtrackValueError: nothing of that name (the message lists the artifacts).
        """
        check_name(key, "file name")
        escaped = name_to_relpath(key)
        candidates = [self.dir / key, self.dir / escaped,
                      self.dir / "artifacts" / key, self.dir / "artifacts" / escaped]
        for c in candidates:
            if c.exists():
                return self._inside(str(c.relative_to(self.dir)))
        # A saved object's name without its suffix: "vocab" -> artifacts/vocab.pkl
        parent = (self.dir / "artifacts" / escaped).parent
        stem = escaped.rsplit("/", 1)[-1]
        if parent.is_dir():
            found = sorted(p for p in parent.iterdir()
                           if p.is_file() and p.name.startswith(stem + ".") and not p.name.endswith(".tmp")
                           and "." not in p.name[len(stem) + 1:])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise LabtrackValueError(
                    f"run {self.id} has several files named {key!r}: "
                    f"{', '.join(p.name for p in found)}; give the full name")
        arts = [a for a in self.list_artifacts() if a.startswith("artifacts/")]
        raise LabtrackValueError(f"run {self.id} has no file or artifact {key!r}; its artifacts: "
                                 f"{_listing(arts)}")

    def __getitem__(self, key: str) -> Any:
        """Load a file of the run by its type: `run["params.json"]` -> dict,
        `run["predictions.csv"]` -> DataFrame, `run["vocab"]` -> the object saved with
        `save_object("vocab", ...)`, an image -> PIL image, a folder -> its Path.

        `.pkl` and `.pt` files are unpickled: load only runs you trust.

        Raises:
            LabtrackValueError: nothing of that name.
            LabtrackNameError: a name with `..`, an absolute path or control characters.
        """
        p = self.path(key)
        if p.is_dir():
            return p
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
