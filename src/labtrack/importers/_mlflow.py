"""MLflow -> labtrack: every run of a SQLite store or a file store, read without mlflow.

What maps to what is docs/migrate.md's "MLflow" section; in short:

- experiment name -> experiment (or `experiment=`); `mlflow.runName` / the run's name -> name;
- params -> params.json (a value MLflow stored as the text of a number, bool, None, list or
  dict comes back as that value when writing it again gives the same text; else a string);
- every metric point -> a series point with its step and its wall time (ms -> s); MLflow's
  system metrics (`system/cpu_utilization_percentage`, ...) -> labtrack's names
  (`system/cpu/percent`, ..., megabytes -> bytes), the others keep their MLflow name;
- `mlflow.note.content` -> comment; `mlflow.user` -> user; `mlflow.source.name` -> command;
  `mlflow.source.git.*` -> git; `mlflow.parentRunId` -> parent (the parent's labtrack id);
  user tags -> labtrack tags `key=value`; every tag verbatim in run.json's imported_from.tags;
- status (FINISHED, FAILED, KILLED, RUNNING), start and end times;
- images of `mlflow.log_image(..., key=, step=)` -> labtrack images at their step and time;
  every other artifact file -> artifacts/ as it was (`mlflow.log_table` files also as tables);
- datasets a run used (`mlflow.log_input`) -> imported_from.datasets.

Deleted runs (and runs of deleted experiments) are skipped and counted.
"""

from __future__ import annotations

import ast
import math
import os
import re
from pathlib import Path
from typing import Any

from .._store.imported import imported_run_id
from ..errors import LabtrackError
from ._mlflow_stores import FileStore, SourceRun, SqliteStore, artifact_files, open_store
from ._sink import Import, ImportedRun

_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed", "RUNNING": "running",
           "SCHEDULED": "running"}
#: MLflow's image files (mlflow.log_image with a key): `images/<key, "/" as "~">+step+<step>
#: +timestamp+<ms>+<uuid>.png`, each with a `+compressed.webp` copy for the UI.
_IMAGE = re.compile(r"^images/(?P<key>.+)\+step\+(?P<step>\d+)\+timestamp\+(?P<ts>\d+)\+"
                    r"(?P<uuid>[0-9a-fA-F-]{8,36})(?P<compressed>\+compressed)?\.(?:png|webp)$")
#: MLflow's system metric -> (labtrack's series, factor to labtrack's unit); gpu_<i>_ apart.
SYSTEM = {
    "cpu_utilization_percentage": ("cpu/percent", 1.0),
    "system_memory_usage_megabytes": ("memory/used_bytes", 1e6),
    "system_memory_usage_percentage": ("memory/percent", 1.0),
    "network_receive_megabytes": ("network/recv_bytes", 1e6),
    "network_transmit_megabytes": ("network/sent_bytes", 1e6),
}
GPU = {
    "utilization_percentage": ("utilization", 1.0),
    "memory_usage_megabytes": ("memory_used_bytes", 1e6),
    "memory_usage_percentage": ("memory_percent", 1.0),
    "power_usage_watts": ("power_w", 1.0),
}
_GPU_KEY = re.compile(r"^gpu_(\d+)_(.+)$")
_TAG_MAX = 250  # a longer tag value stays in imported_from.tags only


def system_name(key: str) -> tuple[str, float]:
    """labtrack's name of an MLflow metric and the factor its values take (1.0: unchanged).

    Example:
        >>> system_name("system/system_memory_usage_megabytes")
        ('system/memory/used_bytes', 1000000.0)
    """
    if not key.startswith("system/"):
        return key, 1.0
    rest = key[len("system/"):]
    if rest in SYSTEM:
        name, factor = SYSTEM[rest]
        return "system/" + name, factor
    m = _GPU_KEY.match(rest)
    if m and m.group(2) in GPU:
        name, factor = GPU[m.group(2)]
        return f"system/gpu/{m.group(1)}/{name}", factor
    return key, 1.0


def param_value(text: str) -> Any:
    """An MLflow param (always text) as the value it was written from, when that is certain:
    "0.1" -> 0.1, "3" -> 3, "True" -> True, "None" -> None, "[1, 2]" -> [1, 2]; "0.10" stays
    "0.10" (writing 0.1 again gives "0.1", so the text was not that number)."""
    if not text or len(text) > 10_000 or text[0] not in "-+0123456789.[{TFNi":
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if not _plain(value) or isinstance(value, str) or str(value) != text:
        return text
    return value


def _plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def labtrack_tags(tags: dict[str, str]) -> list[str]:
    """The user's MLflow tags as labtrack tags: `key=value` (`key` when the value is empty).
    MLflow's own (`mlflow.*`) and labtrack's export marks (`labtrack.*`) are left out, and so
    are values over 250 characters or with a line break (all stay in imported_from.tags)."""
    out = []
    for k, v in sorted(tags.items()):
        if k.startswith(("mlflow.", "labtrack.")) or len(v) > _TAG_MAX:
            continue
        tag = f"{k}={v}" if v != "" else k
        if tag and not any(ord(ch) < 32 for ch in tag):
            out.append(tag)
    return out


def provenance(run: SourceRun, parent: str | None) -> dict[str, Any]:
    """run.json's user, command, git and parent from MLflow's tags."""
    tags = run.tags
    fields: dict[str, Any] = {"user": tags.get("mlflow.user") or run.user_id or None}
    script = tags.get("mlflow.source.name")
    if script:
        fields["command"] = {"argv": [script], "script": script, "module": None, "cwd": None, "python": None,
                             "source_type": tags.get("mlflow.source.type")}
    commit = tags.get("mlflow.source.git.commit")
    if commit:
        fields["git"] = {"commit": commit, "branch": tags.get("mlflow.source.git.branch"), "dirty": None,
                         "remote": tags.get("mlflow.source.git.repoURL") or tags.get("mlflow.gitRepoURL")}
    if parent:
        fields["parent"] = parent
    return fields


def read_into(imp: Import, source: str | os.PathLike[str], experiment: str | None = None) -> None:
    """Import every run of the MLflow store `source` into `imp` (see the module's docstring).

    Raises:
        SourceError: `source` is not an MLflow SQLite store or file store (named in the message).
    """
    store = open_store(os.fspath(source))
    try:
        runs = list(store.runs())
        starts = {r.run_id: r.start_ms for r in runs}
        deleted = 0
        for run in runs:
            if run.deleted:
                deleted += 1
                continue
            _import_run(imp, store, run, experiment, starts)
        if deleted:
            imp.note(f"{deleted} deleted run{'s' if deleted != 1 else ''} skipped")
        if isinstance(store, FileStore) and store.bad_lines:
            imp.note(f"{store.bad_lines} unreadable metric line{'s' if store.bad_lines != 1 else ''} "
                             "skipped")
    finally:
        store.close()


def _seconds(ms: int | None) -> float | None:
    return ms / 1000.0 if ms is not None and ms > 0 else None


def _import_run(imp: Import, store: SqliteStore | FileStore, run: SourceRun, experiment: str | None,
                starts: dict[str, int | None]) -> None:
    tags = run.tags
    parent_id = tags.get("mlflow.parentRunId")
    parent = (imported_run_id(imp.tool, parent_id, _seconds(starts[parent_id]))
              if parent_id and parent_id in starts else None)
    extra: dict[str, Any] = {"store": store.kind, "experiment_id": run.experiment_id, "tags": tags}
    if store.schema:
        extra["schema"] = store.schema
    if run.artifact_uri:
        extra["artifact_uri"] = run.artifact_uri
    if run.datasets:
        extra["datasets"] = run.datasets
    if parent_id and parent is None:
        extra["parent_run_id"] = parent_id  # a parent outside this store
    ir = imp.run(run.run_id, experiment=experiment or run.experiment, name=tags.get("mlflow.runName") or run.name,
                 started=_seconds(run.start_ms), params={k: param_value(v) for k, v in run.params.items()},
                 tags=labtrack_tags(tags), comment=tags.get("mlflow.note.content") or None,
                 group=tags.get("labtrack.group") or None, job_type=tags.get("labtrack.job_type") or None,
                 fingerprint=run.fingerprint, extra=extra)
    if ir is None:
        return
    first = _seconds(run.start_ms) or 0.001
    names: dict[str, tuple[str, float]] = {}
    refused: set[str] = set()

    def log(values: dict[str, float], step: int, ts: int) -> None:
        try:
            ir.scalars(values, step, ts / 1000.0 if ts > 0 else first)
        except LabtrackError as e:  # a name labtrack cannot store: that series only is left out
            if len(values) > 1:  # find which: log the others one by one
                for k, v in values.items():
                    log({k: v}, step, ts)
                return
            (bad,) = values
            if bad not in refused:
                refused.add(bad)
                imp.note(f"metric {bad!r} of run {run.run_id} skipped ({e})")

    # Points of several metrics at one step and time (mlflow.log_metrics) go in one log call.
    group: dict[str, float] = {}
    at = (-1, -1)
    for key, value, ts, step in store.metrics(run):
        try:
            name, factor = names[key]
        except KeyError:
            name, factor = names[key] = system_name(key)
        if name in refused:
            continue
        if factor != 1.0 and math.isfinite(value):
            value = float(round(value * factor))  # MLflow's MB are 1e6 bytes: whole bytes again
        if (step, ts) != at or name in group:
            if group:
                log(group, *at)
            group, at = {}, (step, ts)
        group[name] = value
    if group:
        log(group, *at)
    _artifacts(ir, run.artifact_dir)
    _tables(ir, run)
    status = _STATUS.get(run.status.upper(), "running")
    own = tags.get("labtrack.status")  # a status MLflow has not, of a run labtrack exported
    if own is not None and (status, own) in (("failed", "crashed"), ("killed", "interrupted")):
        status = own
    ir.done(status=status, ended=_seconds(run.end_ms),
            fields=provenance(run, parent))


def _artifacts(ir: ImportedRun, folder: Path | None) -> None:
    """The run's artifact files: keyed images as labtrack images, the rest under artifacts/."""
    if folder is None:
        return
    images: set[tuple[str, int]] = set()
    for path in artifact_files(folder):
        rel = path.relative_to(folder).as_posix()
        m = _IMAGE.match(rel)
        if m is not None:
            if m.group("compressed"):
                continue  # MLflow's smaller copy of the PNG beside it
            key, step = m.group("key").replace("~", "/"), int(m.group("step"))
            if (key, step) not in images and _image(ir, path, key, step, int(m.group("ts"))):
                images.add((key, step))
                continue
        ir.copy_file("artifacts/" + rel, path)


def _tables(ir: ImportedRun, run: SourceRun) -> None:
    """`mlflow.log_table` files (listed in the tag mlflow.loggedArtifacts) also as labtrack
    tables, named by their path without ".json"; the JSON file stays an artifact. A table whose
    cells are not plain values (MLflow's image cells) stays only the artifact."""
    import json

    try:
        listed = json.loads(run.tags.get("mlflow.loggedArtifacts") or "[]")
    except ValueError:
        return
    if run.artifact_dir is None or not isinstance(listed, list):
        return
    for item in listed:
        if not isinstance(item, dict) or item.get("type") != "table" or not isinstance(item.get("path"), str):
            continue
        path = run.artifact_dir / item["path"]
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
            columns, data = table["columns"], table["data"]
            rows = [dict(zip(columns, row)) for row in data]
            if not all(isinstance(c, str) for c in columns) or any(
                    isinstance(v, (dict, list)) for r in rows for v in r.values()):
                continue
            ir.run.log_table(item["path"].removesuffix(".json"), rows)
        except (OSError, ValueError, KeyError, TypeError, LabtrackError):
            continue


def _image(ir: ImportedRun, path: Path, key: str, step: int, ts: int) -> bool:
    """Log one of MLflow's image files as a labtrack image; False when it cannot be (then it is
    kept as an artifact)."""
    import numpy as np
    from PIL import Image as PILImage

    from .._media import Image

    try:
        with PILImage.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGBA") if im.mode in ("P", "LA", "PA") else
                             im.convert("RGB") if im.mode not in ("L", "RGB", "RGBA") else im)
        ir.run.log({key: Image(arr)}, step=step, time=ts / 1000.0 if ts > 0 else None)
    except (OSError, ValueError, LabtrackError):
        return False
    return True
