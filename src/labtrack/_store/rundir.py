"""RunDir: the one door into a run directory for readers (docs/format.md).

Book, the server's read API and live stream, the TensorBoard export, rerun, annotate and the
CLI read a run through a :class:`RunDir`: its metadata, params, summary, env and options, the
names of its series and records (each with the path it is stored at), a series' or record
file's path, its duration and liveness. Nothing outside `_store` spells a run file's name.

Every path a RunDir hands out is checked to resolve inside the run directory, and a RunDir
found under a root is checked to resolve inside that root (`contain`): a symlink that leads
out is refused, on every side alike.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple

from .._names import check_name, name_to_relpath, relpath_to_name
from ..errors import FormatError, LabtrackValueError
from . import layout
from .contain import contained, inside, is_contained, real, relpath_in
from .ranks import rank_numbers
from .reader import checked_meta, iso_to_unix, read_json, read_jsonl, read_run_meta

# kind -> (folder, suffix): the named things of a run, each a file under its folder.
KINDS: dict[str, tuple[str, str]] = {
    "scalars": ("scalars", ".csv"),
    "text": ("text", ".jsonl"),
    "histograms": ("histograms", ".jsonl"),
    "tables": ("tables", ".csv"),
    "markdown": ("markdown", ".md"),
}


def _kind(kind: str) -> tuple[str, str]:
    try:
        return KINDS[kind]
    except KeyError:
        raise LabtrackValueError(f"{kind!r} is not a kind of record; kinds: {', '.join(KINDS)}") from None


class RunDir:
    """One run directory, read through checked paths.

    Args:
        path: the run directory, `<root>/<experiment>/<run-id>`.
        root: the root it belongs to; when given, the run directory itself must resolve
            inside it (a symlinked experiment or run folder pointing out is refused).

    Raises:
        OutsideRootError: `path` resolves outside `root`.

    Example:
        >>> rd = RunDir(Path("labtrack/mnist/20261121-141503-k3f9qz"))
        >>> rd.meta()["status"], rd.names("scalars")
    """

    __slots__ = ("path", "root", "_real")

    def __init__(self, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            contained(self.path, self.root, "run directory")
        self._real: str | None = None

    @classmethod
    def _found(cls, path: str | os.PathLike[str], root: Path) -> RunDir:
        """A RunDir that :func:`scan` found inside `root` (already checked: nothing resolved)."""
        rd = cls(path)
        rd.root = root
        return rd

    def __repr__(self) -> str:
        return f"RunDir({os.fspath(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def id(self) -> str:
        """The run id as its folder is named."""
        return self.path.name

    @property
    def experiment_dir(self) -> str:
        """The experiment folder's name (the experiment's slug)."""
        return self.path.parent.name

    @property
    def real_path(self) -> str:
        """The run directory with symlinks resolved (cached)."""
        if self._real is None:
            self._real = real(self.path)
        return self._real

    # -- paths

    def file(self, relpath: str, what: str = "path") -> Path:
        """The path of `relpath` inside the run, refused when it would leave it.

        Raises:
            LabtrackNameError: a malformed path (`..`, absolute, control characters).
            OutsideRootError: it resolves outside the run directory.
        """
        return relpath_in(self.path, relpath, what)

    def relpath(self, kind: str, name: str) -> str:
        """Where a named series or record is stored: ("scalars", "train/loss") -> "scalars/train/loss.csv"."""
        folder, suffix = _kind(kind)
        check_name(name, f"{kind} name")
        return f"{folder}/" + name_to_relpath(name, suffix)

    def path_of(self, kind: str, name: str) -> Path:
        """The checked path of a named series or record (it may not exist)."""
        return self.file(self.relpath(kind, name), f"{kind} name")

    def exists(self) -> bool:
        """True when the directory holds a run.json."""
        return (self.path / layout.RUN_JSON).is_file()

    # -- whole files

    def read_json(self, relpath: str, default: Any = None) -> Any:
        """A JSON file of the run (non-finite floats decoded); `default` when missing."""
        return read_json(self.file(relpath), default)

    def read_jsonl(self, relpath: str) -> list[dict[str, Any]]:
        """Every complete record of a JSONL file of the run ([] when missing)."""
        return read_jsonl(self.file(relpath))

    def read_text(self, relpath: str) -> str | None:
        """A text file of the run (undecodable bytes replaced), None when missing."""
        try:
            return self.file(relpath).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def notes(self) -> str:
        """The run's notes (markdown, notes.md; "" when none were written)."""
        return self.read_text(layout.NOTES_MD) or ""

    def open(self, relpath: str) -> IO[bytes]:
        """Open a file of the run for reading in binary (checked; the resolved path is opened).

        Raises:
            FileNotFoundError: no such file.
            OutsideRootError: it resolves outside the run directory.
        """
        return open(real(self.file(relpath)), "rb")

    def raw_meta(self) -> dict[str, Any]:
        """run.json as stored, upgraded to this format version (no derived status).

        Raises:
            FileNotFoundError: no run.json.
            FormatError: not a JSON object, or written by a newer labtrack.
        """
        return checked_meta(self.read_json(layout.RUN_JSON), self.path)

    def meta(self, *, now: float | None = None, stale_seconds: float | None = None) -> dict[str, Any]:
        """run.json with the derived status ("crashed" for a dead "running" run) and `dir`."""
        self.file(layout.RUN_JSON)
        return read_run_meta(self.path, now=now, stale_seconds=stale_seconds)

    def params(self) -> dict[str, Any]:
        """params.json: the config, nested as given ({} when none; a non-object as {"value": v})."""
        v = self.read_json(layout.PARAMS_JSON, {})
        return v if isinstance(v, dict) else {"value": v}

    def summary(self) -> dict[str, Any]:
        """summary.json: per series last, min, max, mean, count, step, time ({} when none);
        in a one-run distributed job with the other ranks' series (`rank<N>/<name>`) too."""
        v = self.read_json(layout.SUMMARY_JSON, {})
        out = v if isinstance(v, dict) else {}
        others = [r for r in self.ranks() if r]
        for r in others:
            try:
                part = self.read_json(layout.rank_relpath(r, layout.SUMMARY_JSON), {})
            except (FormatError, LabtrackValueError):  # torn, edited or leading out: left out
                continue
            if isinstance(part, dict):
                out.update(part)
        return dict(sorted(out.items())) if others else out

    def ranks(self) -> list[int]:
        """The ranks of a one-run distributed job that have files under ranks/ ([] for an
        ordinary run; see docs/distributed.md)."""
        base = self.path / layout.RANKS_DIR
        if not base.is_dir() or not is_contained(base, self.real_path):
            return []
        return rank_numbers(self.path)

    def console_relpath(self, rank: int = 0) -> str:
        """Where a rank's console is kept: console.log for rank 0, ranks/<N>/console.log else."""
        return layout.CONSOLE_LOG if rank == 0 else layout.rank_relpath(rank, layout.CONSOLE_LOG)

    def env(self) -> dict[str, Any] | None:
        """env.json, None when not recorded."""
        v = self.read_json(layout.ENV_JSON, None)
        return v if isinstance(v, dict) else None

    def options(self) -> dict[str, Any] | None:
        """options.json (command-line options from log_command), None when none."""
        v = self.read_json(layout.OPTIONS_JSON, None)
        return v if isinstance(v, dict) else None

    def console(self, rank: int = 0) -> str:
        """What the script printed ("" when nothing was captured); another rank's in a
        one-run distributed job."""
        return self.read_text(self.console_relpath(rank)) or ""

    def diff(self) -> str | None:
        """The recorded `git diff HEAD`, None when git was not captured."""
        return self.read_text(layout.DIFF_PATCH)

    def diff_file(self) -> Path | None:
        """The checked path of the recorded `git diff HEAD`, None when there is none or it is empty."""
        path = self.file(layout.DIFF_PATCH)
        try:
            return path if path.is_file() and path.stat().st_size > 0 else None
        except OSError:
            return None

    def untracked(self) -> tuple[list[str], list[str]]:
        """The untracked source files recorded (paths relative to `source/untracked`, sorted,
        anything leading outside the run left out) and those skipped as too large."""
        files: list[str] = []
        skipped: list[str] = []
        prefix = layout.UNTRACKED_DIR + "/"
        for f in self.files():
            rel = str(f["path"])
            if not rel.startswith(prefix):
                continue
            rel = rel[len(prefix):]
            if rel == "SKIPPED.txt":
                text = self.read_text(layout.UNTRACKED_DIR + "/" + rel) or ""
                skipped += [line.split("\t")[0] for line in text.splitlines() if line.strip()]
            else:
                files.append(rel)
        return files, skipped

    def untracked_file(self, rel: str) -> Path:
        """The checked path of one recorded untracked file (see :meth:`untracked`).

        Raises:
            OutsideRootError: it leads outside the run.
        """
        return Path(real(self.file(layout.UNTRACKED_DIR + "/" + rel, "untracked file")))

    def has_checkpoints(self) -> bool:
        """True when the run saved checkpoints (a checkpoints folder inside the run)."""
        path = self.path / layout.CHECKPOINTS_DIR
        return path.is_dir() and is_contained(path, self.real_path)

    def media(self) -> list[dict[str, Any]]:
        """Every entry of media.jsonl, in logged order."""
        return self.read_jsonl(layout.MEDIA_JSONL)

    def records(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Every record of a text or histogram stream ([] when it does not exist)."""
        return self.read_jsonl(self.relpath(kind, name))

    # -- listing

    def named(self, kind: str) -> list[tuple[str, str]]:
        """`(name, relpath)` of every series or record of a kind, sorted by name.

        Files that resolve outside the run (symlinks) and hidden files are left out. A
        symlinked folder is not entered (as os.walk does not). Only symlinks are resolved:
        a plain file in a plain folder under a folder inside the run is inside it too, so a
        run of many series costs one directory listing per folder, not a realpath per file.
        """
        folder, suffix = _kind(kind)
        base = self.path / folder
        if not os.path.isdir(base) or not is_contained(base, self.real_path):
            return []
        inside_run = self.real_path
        out = []
        todo = [(os.fspath(base), "")]
        while todo:
            dirpath, prefix = todo.pop()
            try:
                entries = list(os.scandir(dirpath))
            except OSError:  # removed or unreadable meanwhile: as os.walk, skip it
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not e.is_symlink():
                        todo.append((e.path, prefix + e.name + "/"))
                    continue
                if not e.name.endswith(suffix):
                    continue
                if e.is_symlink() and not is_contained(e.path, inside_run):
                    continue
                rel = prefix + e.name
                out.append((relpath_to_name(rel, suffix), f"{folder}/{rel}"))
        out.sort()
        return out

    def names(self, kind: str) -> list[str]:
        """The names of every series or record of a kind, sorted."""
        return [name for name, _ in self.named(kind)]

    def listdir(self, folder: str) -> list[str]:
        """The files directly in `folder` of the run (relative paths, sorted), leaving out
        anything that resolves outside the run; [] when there is no such folder.

        Raises:
            LabtrackNameError: a malformed folder path.
            OutsideRootError: the folder itself leads outside the run.
        """
        base = self.file(folder, "folder")
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for e in entries:
            try:
                if not e.is_file():
                    continue
                if e.is_symlink() and not is_contained(e.path, self.real_path):
                    continue
            except OSError:
                continue
            out.append(f"{folder}/{e.name}")
        return out

    def files(self) -> list[dict[str, Any]]:
        """Every file of the run: `{path, size, mtime}`, sorted by path.

        Temporary files of atomic writes and anything resolving outside the run are left out.
        """
        inside_run = self.real_path
        out: list[dict[str, Any]] = []
        for dirpath, dirs, fns in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not (d.startswith(".") and ".tmp" in d)
                             and is_contained(os.path.join(dirpath, d), inside_run))
            for fn in sorted(fns):
                if fn.startswith(".") and fn.endswith(".tmp"):
                    continue
                full = os.path.join(dirpath, fn)
                if not is_contained(full, inside_run):
                    continue
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                rel = os.path.relpath(full, self.path).replace(os.sep, "/")
                out.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
        out.sort(key=lambda f: str(f["path"]))
        return out

    # -- liveness and time

    def heartbeat(self) -> float | None:
        """When the heartbeat file was last touched (Unix time), None when there is none."""
        try:
            return os.stat(self.path / layout.HEARTBEAT).st_mtime
        except OSError:
            return None

    def last_activity(self) -> float | None:
        """The latest sign of life: the newest of the heartbeat, run.json, summary.json,
        console.log and the series files (Unix time), None when none exists."""
        latest: float | None = None
        paths = [self.path / n for n in (layout.HEARTBEAT, layout.SUMMARY_JSON, layout.CONSOLE_LOG,
                                         layout.MEDIA_JSONL)]
        for _, rel in self.named("scalars"):
            paths.append(self.path / rel)
        for p in paths:
            try:
                t = os.stat(p).st_mtime
            except OSError:
                continue
            latest = t if latest is None or t > latest else latest
        return latest

    def duration(self, meta: dict[str, Any], now: float | None = None) -> float | None:
        """How long the run ran, in seconds (see :func:`duration`)."""
        return duration(meta, self, time.time() if now is None else now)


def duration(meta: dict[str, Any], run: RunDir | None, now: float,
             last_seen: float | None = None) -> float | None:
    """A run's duration in seconds: ended - started; a running run's until `now`; a run that
    never wrote its end (crashed, killed) until its last sign of life.

    Args:
        meta: run.json with the derived status.
        run: its directory, read for the last sign of life of a run that has no end time
            (None: use `last_seen`).
        now: the current time, for a running run.
        last_seen: the last sign of life already known (e.g. the heartbeat's time).

    Returns:
        Seconds (>= 0), or None without a start time or any sign of life.
    """
    t0 = iso_to_unix(meta.get("started"))
    if t0 is None:
        return None
    t1 = iso_to_unix(meta.get("ended"))
    if t1 is None and meta.get("status") == "running":
        t1 = now
    if t1 is None:
        t1 = run.last_activity() if run is not None else last_seen
        if t1 is None:
            return None
    return max(0.0, t1 - t0)


class Found(NamedTuple):
    """One run directory found under a root by :func:`scan`."""

    experiment_dir: str  # the experiment folder's name
    id: str  # the run folder's name
    path: str  # `<root>/<experiment_dir>/<id>`, as reached (not resolved)
    meta_stat: os.stat_result  # run.json's stat (its target's, for a symlink inside the run)


def scan(root: str | os.PathLike[str], only: str | None = None) -> Iterator[Found]:
    """Every run directory under `root` that stays inside it, sorted by experiment then id.

    The one walk every listing uses (iter_runs, find_run, the index): dot-folders (`.trash`,
    `.labtrack`) are skipped; an experiment folder, run folder or run.json that resolves
    outside the root is left out; a run reached twice (an experiment folder symlinked to
    another inside the root) is listed once, under the first name. Written on plain strings
    and directory entries: nothing is resolved unless it is a symlink, so 10,000 runs cost
    one stat of run.json each, as before containment was checked.

    Args:
        root: the root folder.
        only: just the run folder of this name in each experiment (one stat per experiment).
    """
    root_s = os.fspath(root)
    real_root = real(root_s)
    seen: set[str] = set()
    try:
        experiments = sorted(os.scandir(root_s), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for exp in experiments:
        if exp.name.startswith("."):
            continue
        try:
            if not exp.is_dir():
                continue
            if exp.is_symlink():
                real_exp = real(exp.path)
                if not inside(real_exp, real_root) or real_exp == real_root:
                    continue
            else:
                real_exp = real_root.rstrip(os.sep) + os.sep + exp.name
        except OSError:
            continue
        if only is not None:
            entries: list[tuple[str, str, bool | None]] = [(only, exp.path + os.sep + only, None)]
        else:
            try:
                entries = [(r.name, r.path, r.is_symlink()) for r in sorted(os.scandir(exp.path),
                                                                          key=lambda e: e.name)]
            except OSError:
                continue
        for name, path, link in entries:
            if name.startswith("."):
                continue
            if link is None:
                link = os.path.islink(path)
            if link:
                real_run = real(path)
                if not inside(real_run, real_root) or real_run == real_root:
                    continue
            else:
                real_run = real_exp + os.sep + name
            if real_run in seen:
                continue
            meta_path = path + os.sep + layout.RUN_JSON
            try:
                st = os.lstat(meta_path)
                if stat.S_ISLNK(st.st_mode):
                    if not is_contained(meta_path, real_run):
                        continue
                    st = os.stat(meta_path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(real_run)
            yield Found(exp.name, name, path, st)


def iter_runs(root: str | os.PathLike[str]) -> Iterator[RunDir]:
    """Every run directory under `root` that stays inside it, sorted by experiment then id
    (see :func:`scan`)."""
    root_path = Path(root)
    for found in scan(root_path):
        yield RunDir._found(found.path, root_path)


def find_runs(root: str | os.PathLike[str], run_id: str) -> list[RunDir]:
    """Every run `<root>/<experiment>/<run_id>` that stays inside `root` (one per experiment
    that holds it); [] for anything that is not one folder name."""
    if not run_id or "/" in run_id or os.sep in run_id or run_id.startswith(".") or "\x00" in run_id:
        return []
    root_path = Path(root)
    return [RunDir._found(f.path, root_path) for f in scan(root_path, only=run_id)]


def find_run(root: str | os.PathLike[str], run_id: str) -> RunDir | None:
    """The run `<root>/<experiment>/<run_id>` that stays inside `root`, or None (the first
    experiment's when several hold it).

    `run_id` must be one folder name (no separator, no leading dot): one stat per experiment.
    """
    found = find_runs(root, run_id)
    return found[0] if found else None


def run_folder(root: str | os.PathLike[str], experiment_dir: str, run_id: str) -> Path:
    """`<root>/<experiment_dir>/<run_id>`, for a writer (ingest): both must be single folder
    names and the result must resolve inside the root (it need not exist yet).

    Raises:
        LabtrackNameError: a name that is not one folder name.
        OutsideRootError: the experiment or run folder is a symlink out of the root.
    """
    from ..errors import LabtrackNameError

    for what, part in (("experiment folder", experiment_dir), ("run id", run_id)):
        if (not isinstance(part, str) or not part or part in (".", "..") or "/" in part
                or "\\" in part or part.startswith(".") or "\x00" in part):
            raise LabtrackNameError(f"{what} {part!r} is not a single folder name")
    return contained(Path(root) / experiment_dir / run_id, root, "run folder")
