"""labtrack -> MLflow: runs written into any tracking URI through mlflow's own client.

`labtrack export RUN... --to mlflow --out URI`, where URI is what `mlflow.set_tracking_uri`
takes: `sqlite:///mlflow.db`, `http://host:5000`, `databricks`, ... Each run becomes one
MLflow run in the experiment of the same name (created when missing):

- every point of every series, with its step and its wall time (ms), in batches of 1000;
  labtrack's system series under MLflow's names where MLflow has one (bytes -> megabytes);
- params (nested ones flattened as `a.b`, values as text), tags (`key=value` -> key: value,
  a tag without "=" -> key: ""), the comment as `mlflow.note.content`, user, script, git commit,
  branch and remote as MLflow's `mlflow.*` tags, the parent as `mlflow.parentRunId`;
- status (crashed -> FAILED, interrupted -> KILLED, each kept as the tag `labtrack.status`), start and end times;
- images as `mlflow.log_image(key=, step=)` images (the UI's image slider), the files of
  artifacts/ as artifacts, the other records (text, histograms, tables, markdown, media other
  than images, console.log) as files under the artifact folder `labtrack/`.

Re-exporting is safe: the MLflow run carries the tags `labtrack.run_id` and
`labtrack.fingerprint` (the run's files' sizes and times) and `labtrack.complete`, which is set
last. A run exported before and unchanged is skipped; one that changed, or whose export was cut
off, is deleted in MLflow and written again.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._store import layout
from .._store.reader import iso_to_unix
from .._store.rundir import RunDir
from .._store.scalars import read_columns
from ..errors import LabtrackError

_BATCH = 1000  # MLflow's most metrics per log_batch
_PARAM_BATCH = 100  # ... and most params or tags
_PARAM_MAX = 6000  # MLflow's longest param value
_TAG_MAX = 8000
_BAD = re.compile(r"[^/\w.\- :]")
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "crashed": "FAILED",
           "interrupted": "KILLED", "running": "RUNNING"}
_OWN_STATUS = ("crashed", "interrupted")  # MLflow has none: kept as the tag labtrack.status
_RECORD_DIRS = (layout.TEXT_DIR, layout.HISTOGRAMS_DIR, layout.TABLES_DIR, layout.MARKDOWN_DIR)


def _require() -> Any:
    try:
        import mlflow
    except ImportError:
        raise LabtrackError("exporting to MLflow needs mlflow: pip install mlflow") from None
    return mlflow


def mlflow_key(name: str) -> str:
    """A labtrack name as an MLflow metric, param or tag key: characters MLflow refuses become
    "_", and a name MLflow would read as another path ("a//b", "./a") is made plain.

    Example:
        >>> mlflow_key("loss (train)")
        'loss _train_'
    """
    key = _BAD.sub("_", name)
    parts = [p if p not in (".", "..") else p.replace(".", "_") for p in key.split("/")]
    key = "/".join(p for p in parts if p) or "_"
    return key[:250]


def system_key(name: str) -> tuple[str, float]:
    """MLflow's name of a labtrack series and the factor its values take (the inverse of the
    importer's mapping: system/memory/used_bytes -> system/system_memory_usage_megabytes, 1e-6)."""
    from ..importers._mlflow import GPU, SYSTEM

    if not name.startswith("system/"):
        return name, 1.0
    rest = name[len("system/"):]
    for mlflow_name, (ours, factor) in SYSTEM.items():
        if rest == ours:
            return "system/" + mlflow_name, 1.0 / factor
    m = re.match(r"^gpu/(\d+)/(.+)$", rest)
    if m:
        for mlflow_name, (ours, factor) in GPU.items():
            if m.group(2) == ours:
                return f"system/gpu_{m.group(1)}_{mlflow_name}", 1.0 / factor
    return name, 1.0


def flat_params(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested params as (dotted key, leaf value) pairs."""
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            yield from flat_params(v, key + ".")
        else:
            yield key, v


def fingerprint(run: RunDir) -> str:
    """Sizes and times of a run's files: a re-export compares it to tell "unchanged"."""
    h = hashlib.sha256()
    for f in run.files():
        if f["path"] != layout.HEARTBEAT:
            h.update(f"{f['path']}\0{f['size']}\0{f['mtime']}\n".encode())
    return h.hexdigest()[:16]


def _ms(t: float | None) -> int | None:
    return None if t is None else int(round(t * 1000))


class _Progress:
    """Runs and points so far, on a terminal (rich, transient); silent when piped."""

    def __init__(self, show: bool | None, total: int) -> None:
        self._p: Any = None
        if show if show is not None else sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                               console=Console(stderr=True), transient=True)
            self._p.start()
            self._task = self._p.add_task("exporting to MLflow", total=total)

    def update(self, runs: int, points: int) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=runs,
                           description=f"exporting to MLflow: {runs} runs, {points:,} points")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


class _Exporter:
    def __init__(self, mlflow: Any, uri: str) -> None:
        from mlflow.entities import Metric, Param, RunTag, ViewType
        from mlflow.tracking import MlflowClient

        self.Metric, self.Param, self.RunTag, self.ViewType = Metric, Param, RunTag, ViewType
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.experiments: dict[str, str] = {}
        self.exported: dict[str, str] = {}  # labtrack id -> MLflow run id
        self.points = 0
        self.orphans: list[tuple[str, str]] = []  # (MLflow run, labtrack parent id) to link

    def link_parents(self) -> None:
        """`mlflow.parentRunId` of each exported child, once its parent is exported too (in
        this call or an earlier one)."""
        for mid, parent in self.orphans:
            target = self.exported.get(parent) or next((r.info.run_id for r in self.find(parent)), None)
            if target:
                self.client.set_tag(mid, "mlflow.parentRunId", target)

    def experiment_id(self, name: str) -> str:
        if name not in self.experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                self.experiments[name] = self.client.create_experiment(name)
            else:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                self.experiments[name] = exp.experiment_id
        return self.experiments[name]

    def find(self, run_id: str, experiment_ids: list[str] | None = None) -> list[Any]:
        """The active MLflow runs tagged with this labtrack run id."""
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in self.client.search_experiments()]
        if not experiment_ids:
            return []
        return list(self.client.search_runs(experiment_ids, f"tags.`labtrack.run_id` = '{run_id}'",
                                            run_view_type=self.ViewType.ACTIVE_ONLY, max_results=100))

    def export(self, run: RunDir, progress: _Progress, done: int) -> bool:
        """One run; False when an earlier export of it is complete and unchanged."""
        meta = run.meta()
        run_id = str(meta.get("id") or run.id)
        exp_id = self.experiment_id(str(meta.get("experiment") or run.experiment_dir))
        fp = fingerprint(run)
        for old in self.find(run_id, [exp_id]):
            tags = old.data.tags
            if tags.get("labtrack.complete") == "true" and tags.get("labtrack.fingerprint") == fp:
                self.exported[run_id] = old.info.run_id
                return False
            self.client.delete_run(old.info.run_id)  # changed since, or cut off: write it again
        started = iso_to_unix(meta.get("started"))
        tags = self._tags(meta, run_id, fp)
        created = self.client.create_run(exp_id, start_time=_ms(started), tags=tags,
                                         run_name=meta.get("name") or None)
        mid = created.info.run_id
        self.exported[run_id] = mid
        self._params(run, mid)
        self._metrics(run, mid, progress, done)
        self._files(run, mid)
        if meta.get("parent"):
            self.orphans.append((mid, str(meta["parent"])))
        status = str(meta.get("status") or "running")
        if status != "running":
            self.client.set_terminated(mid, _STATUS.get(status, "FAILED"),
                                       end_time=_ms(iso_to_unix(meta.get("ended"))))
        self.client.set_tag(mid, "labtrack.complete", "true")  # last: the export is whole
        return True

    def _tags(self, meta: Mapping[str, Any], run_id: str, fp: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        for t in meta.get("tags") or ():
            key, _, value = str(t).partition("=")
            tags[mlflow_key(key)] = value
        git: Mapping[str, Any] = meta["git"] if isinstance(meta.get("git"), dict) else {}
        command: Mapping[str, Any] = meta["command"] if isinstance(meta.get("command"), dict) else {}
        script = command.get("script") or command.get("module") or command.get("notebook")
        status = meta.get("status")
        pairs: tuple[tuple[str, Any], ...] = (
            ("mlflow.note.content", meta.get("comment")), ("mlflow.user", meta.get("user")),
            ("mlflow.source.name", script),
            ("mlflow.source.type", "NOTEBOOK" if "notebook" in command else "LOCAL" if script else None),
            ("mlflow.source.git.commit", git.get("commit")), ("mlflow.source.git.branch", git.get("branch")),
            ("mlflow.source.git.repoURL", git.get("remote")),
            ("labtrack.group", meta.get("group")), ("labtrack.job_type", meta.get("job_type")),
            ("labtrack.status", status if status in _OWN_STATUS else None))
        for key, value in pairs:
            if value:
                tags[key] = str(value)
        tags.update({"labtrack.run_id": run_id, "labtrack.fingerprint": fp})
        return {k: v[:_TAG_MAX] for k, v in tags.items()}

    def _params(self, run: RunDir, mid: str) -> None:
        params = run.params()
        out: dict[str, str] = {}
        whole = True
        for key, value in flat_params(params):
            text = str(value)
            k = mlflow_key(key)
            if len(text) > _PARAM_MAX or k in out or k != key:
                whole = False
            if len(text) <= _PARAM_MAX and k not in out:
                out[k] = text
        items = [self.Param(k, v) for k, v in out.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(mid, params=items[i:i + _PARAM_BATCH])
        if not whole:  # a key renamed or a value too long: the exact params as a file beside them
            self.client.log_artifact(mid, str(run.file(layout.PARAMS_JSON)), "labtrack")

    def _metrics(self, run: RunDir, mid: str, progress: _Progress, done: int) -> None:
        batch: list[Any] = []
        for name, rel in run.named("scalars"):
            key, factor = system_key(name)
            key = mlflow_key(key)
            steps, values, times = read_columns(run.file(rel))
            for s, v, t in zip(steps, values, times):
                if factor != 1.0 and math.isfinite(v):
                    v = v * factor
                batch.append(self.Metric(key, v, int(round(t * 1000)), s))
                if len(batch) == _BATCH:
                    self.client.log_batch(mid, metrics=batch)
                    self.points += len(batch)
                    batch = []
                    progress.update(done, self.points)
        if batch:
            self.client.log_batch(mid, metrics=batch)
            self.points += len(batch)

    def _files(self, run: RunDir, mid: str) -> None:
        art = run.path / layout.ARTIFACTS_DIR
        if art.is_dir() and any(art.iterdir()):
            self.client.log_artifacts(mid, str(art))
        images = False
        with tempfile.TemporaryDirectory(prefix="labtrack-mlflow-") as tmp:
            extra = Path(tmp) / "labtrack"
            for entry in run.media():
                path = run.file(str(entry.get("path")))
                if entry.get("kind") == "image" and path.suffix == ".png" and path.exists():
                    images = self._image(mid, entry, path) or images
                    continue
                _copy(path, extra / str(entry.get("path")))
                if isinstance(entry.get("boxes"), str):
                    _copy(run.file(entry["boxes"]), extra / entry["boxes"])
            for folder in _RECORD_DIRS:
                base = run.path / folder
                if base.is_dir():
                    for p in base.rglob("*"):
                        if p.is_file():
                            _copy(p, extra / p.relative_to(run.path))
            for rel in (layout.CONSOLE_LOG, layout.DIFF_PATCH):
                if (run.path / rel).is_file():
                    _copy(run.path / rel, extra / rel)
            if extra.is_dir():
                self.client.log_artifacts(mid, str(extra), "labtrack")
        if images:
            self.client.set_tag(mid, "mlflow.loggedImages", "True")

    def _image(self, mid: str, entry: Mapping[str, Any], path: Path) -> bool:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            self.client.log_image(mid, im.copy(), key=_image_key(str(entry.get("name"))),
                                  step=int(entry.get("step") or 0),
                                  timestamp=_ms(entry.get("time")) or int(time.time() * 1000), synchronous=True)
        return True


def _image_key(name: str) -> str:
    """MLflow's image keys take only alphanumerics, "_", "-", ".", " " and "/"."""
    return re.sub(r"[^/\w.\- ]", "_", name) or "_"


def _copy(src: Path, dst: Path) -> None:
    import shutil

    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def export(run_dirs: Sequence[Path], uri: str, *, progress: bool | None = None) -> str:
    """Export `run_dirs` into the MLflow tracking URI `uri`; returns the one-line summary.

    Raises:
        LabtrackError: mlflow is not installed, or MLflow refused the URI or a write.

    Example:
        >>> export([run.dir], "sqlite:///mlflow.db")
        'exported 1 run to MLflow (1,000 points) in 0.8 s: sqlite:///mlflow.db'
    """
    mlflow = _require()
    from mlflow.exceptions import MlflowException

    began = time.perf_counter()
    bar = _Progress(progress, len(run_dirs))
    new = skipped = 0
    # mlflow's client prints "View run ... at: URL" to stdout for a server's runs: that goes to
    # stderr, so stdout holds the summary line alone.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            ex = _Exporter(mlflow, uri)
            for i, d in enumerate(run_dirs):
                if ex.export(d if isinstance(d, RunDir) else RunDir(d), bar, i):
                    new += 1
                else:
                    skipped += 1
                bar.update(i + 1, ex.points)
            ex.link_parents()
    except MlflowException as e:
        raise LabtrackError(f"MLflow at {uri!r} refused the export: {e.message}") from None
    finally:
        bar.close()
    seconds = time.perf_counter() - began
    more = f", {skipped} already exported" if skipped else ""
    return (f"exported {new} run{'s' if new != 1 else ''} to MLflow ({ex.points:,} points){more} "
            f"in {seconds:.1f} s: {uri}")
