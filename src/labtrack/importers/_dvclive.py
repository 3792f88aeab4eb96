"""`labtrack import dvclive FOLDER`: DVCLive's output folders (what `dvclive.Live` writes).

A DVCLive folder (default `dvclive/`) holds, as DVCLive 3 writes them:

* `params.yaml` (log_param, log_params) -> the run's params;
* `plots/metrics/<name>.tsv` (log_metric): tab-separated `[timestamp,] step, <basename>` with
  the timestamp in milliseconds when the metric was logged with `timestamp=True` -> every
  point with its step, and that wall time (else the time the file was last written: DVCLive
  keeps no other); "nan"/"inf" as written; a value that is not a number -> a text record;
* `metrics.json` (the summary, with "step") -> kept as a file; values logged with
  `plot=False` (in the summary, with no .tsv) -> one point at the summary's step;
* `plots/images/**` (log_image) -> images: `name/<step>.png` (DVCLive's slider pattern) at
  that step, any other at the last step;
* `plots/custom/*.json`, `plots/sklearn/*.json` (log_plot, log_sklearn_plot) -> tables;
* `dvc.yaml`, `report.html`, `report.md`, `metrics.json`, `params.yaml` -> artifacts/dvclive/.

FOLDER may be one DVCLive folder or a folder holding several: each becomes a run named by its
path relative to FOLDER (its own name when FOLDER is the DVCLive folder). Its source id is its
absolute path, since every project's folder is called `dvclive`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from ._sink import Import, ImportedRun, SourceError, check_source, fingerprint, still_image

_MARKS = ("params.yaml", "metrics.json", "dvc.yaml", "plots")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
_KEPT = ("dvc.yaml", "report.html", "report.md", "metrics.json", "params.yaml")


def is_dvclive_dir(path: Path) -> bool:
    """A folder DVCLive wrote: metrics.json or params.yaml, or plots/metrics, images, custom."""
    if (path / "metrics.json").is_file() or (path / "params.yaml").is_file():
        return True
    plots = path / "plots"
    return plots.is_dir() and any((plots / sub).is_dir() for sub in ("metrics", "images", "custom", "sklearn"))


def discover(source: Path) -> dict[str, Path]:
    """Relative path ("." for the folder itself) -> each DVCLive folder in `source`."""
    if is_dvclive_dir(source):
        return {".": source}
    found: dict[str, Path] = {}
    for folder, dirs, _ in os.walk(source):
        dirs.sort()
        here = Path(folder)
        if here != source and is_dvclive_dir(here):
            found[here.relative_to(source).as_posix()] = here
            dirs[:] = []  # a DVCLive folder's own subfolders (plots/...) are not runs
    return found


def read_into(imp: Import, source: str | os.PathLike[str], experiment: str | None = None) -> None:
    """Import every DVCLive folder in `source` through `imp` (see the module's docstring).

    Raises:
        SourceError: `source` does not exist, holds no DVCLive folder, or a file is unreadable.
    """
    base = check_source(source, "DVCLive folder")
    if not base.is_dir():
        raise SourceError(f"DVCLive folder {str(source)!r} is a file; give the folder DVCLive wrote "
                          "(e.g. ./dvclive)")
    runs = discover(base)
    if not runs:
        raise SourceError(f"{str(source)!r} holds no DVCLive folder (one with params.yaml, metrics.json "
                          "or plots/metrics)")
    imp.version = imp.version or _dvclive_version()
    top = base.resolve()
    for rel, folder in runs.items():
        # one folder: the project it sits in names the experiment; several: the folder given
        default = (top.parent.name if rel == "." else top.name) or "dvclive"
        _one_run(imp, rel, folder, experiment or default, top)


def _dvclive_version() -> str | None:
    from importlib import metadata

    try:
        return f"dvclive {metadata.version('dvclive')}"
    except metadata.PackageNotFoundError:
        return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _one_run(imp: Import, rel: str, folder: Path, experiment: str, top: Path) -> None:
    files = _files(folder)
    fp = fingerprint(files)
    metrics = _metrics(folder)
    stamped = [t for m in metrics.values() for t in m["times"] if m["stamped"]]
    first = min(stamped) if stamped else None  # the id's time: stable while the run grows
    name = rel if rel != "." else folder.resolve().name
    # DVCLive's folders all look alike (./dvclive in every project, often with no timestamps):
    # the folder's own absolute path tells them apart (a moved folder imports as a new run)
    source_id = str(folder.resolve())
    if imp.is_current(source_id, first, fp):
        imp.run(source_id, experiment=experiment, name=name, started=first, fingerprint=fp)
        return
    params = _params(folder / "params.yaml")
    r = imp.run(source_id, experiment=experiment, name=name, started=first, params=params, fingerprint=fp,
                extra={"path": rel})
    if r is None:
        return
    mtimes = [p.stat().st_mtime for p in files]
    r.started = first if first is not None else (min(mtimes) if mtimes else None)
    summary = _json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    last_step = summary.get("step") if isinstance(summary.get("step"), int) else None
    steps_seen: list[int] = []
    for metric, m in metrics.items():
        if m["steps"]:
            r.series(metric, m["steps"], m["values"], m["times"])
            steps_seen.append(max(m["steps"]))
        for step, text, t in m["texts"]:
            r.run.log_text(metric, text, step, time=t)
    if last_step is None:
        last_step = max(steps_seen) if steps_seen else 0
    _summary_only(r, summary, set(metrics), last_step, folder)
    _images(r, folder / "plots" / "images", last_step)
    for kind in ("custom", "sklearn"):
        _tables(r, folder / "plots" / kind, kind, last_step)
    for kept in _KEPT:
        p = folder / kept
        if p.is_file():
            r.write_file(f"artifacts/dvclive/{kept}", p.read_bytes())
    outer = folder.parent / "dvc.yaml"  # DVCLive 3 writes dvc.yaml beside its folder, in the project
    if not (folder / "dvc.yaml").is_file() and outer.is_file() and folder.name in _read(outer):
        r.write_file("artifacts/dvclive/dvc.yaml", outer.read_bytes())
    ends = [t for m in metrics.values() for t in m["times"]] + mtimes
    r.done(ended=max(ends) if ends else None)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read {str(path)!r}: {getattr(e, 'strerror', None) or e}") from None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise SourceError(f"{str(path)!r} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{str(path)!r} does not hold a JSON object (DVCLive's summary is one)")
    return data


def _params(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        import yaml
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(f"reading {str(path)!r} needs PyYAML: pip install 'labtrack[dvclive]' "
                                     "(or pip install pyyaml)") from None
    try:
        data = yaml.safe_load(_read(path))
    except yaml.YAMLError as e:
        raise SourceError(f"{str(path)!r} is not YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(f"{str(path)!r} does not hold a mapping of params")
    return data


def _number(text: str) -> float | None:
    """A TSV cell as DVCLive wrote a number (ints, floats, "nan", "inf", "-inf"), else None."""
    try:
        return float(text)
    except ValueError:
        return None


def _metrics(folder: Path) -> dict[str, dict[str, Any]]:
    """name -> steps, values, times (and texts) of every plots/metrics/**/*.tsv (or .csv)."""
    base = folder / "plots" / "metrics"
    out: dict[str, dict[str, Any]] = {}
    if not base.is_dir():
        return out
    for path in sorted(p for p in base.rglob("*") if p.suffix in (".tsv", ".csv") and p.is_file()):
        name = path.relative_to(base).with_suffix("").as_posix()
        text = _read(path)
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if path.suffix == ".tsv" else ","))
        if not rows:
            continue
        header = rows[0]
        if "step" not in header or len(header) < 2:
            raise SourceError(f"{str(path)!r} is not a DVCLive metrics file: its header {header!r} has no "
                              "step column")
        i_step = header.index("step")
        col = os.path.basename(name)
        i_val = header.index(col) if col in header else next(i for i in range(len(header))
                                                            if header[i] not in ("step", "timestamp"))
        i_ts = header.index("timestamp") if "timestamp" in header else None
        mtime = path.stat().st_mtime
        m: dict[str, Any] = {"steps": [], "values": [], "times": [], "texts": [], "stamped": i_ts is not None}
        for n, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != len(header):
                if n == len(rows) and not text.endswith(("\n", "\r")):
                    break  # a last line still being written
                raise SourceError(f"{str(path)!r} line {n}: {len(row)} cells, the header has {len(header)}")
            try:
                step = int(row[i_step])
                t = int(row[i_ts]) / 1000.0 if i_ts is not None else mtime
            except ValueError:
                raise SourceError(f"{str(path)!r} line {n}: step {row[i_step]!r} or timestamp is not a "
                                  "whole number") from None
            if step < 0:
                raise SourceError(f"{str(path)!r} line {n}: step {step} is negative")
            v = _number(row[i_val])
            if v is None:
                m["texts"].append((step, row[i_val], t))
            else:
                m["steps"].append(step)
                m["values"].append(v)
                m["times"].append(t)
        out[name] = m
    return out


def _summary_only(r: ImportedRun, summary: dict[str, Any], plotted: set[str], step: int, folder: Path) -> None:
    """Numbers in metrics.json that no .tsv holds (log_metric(..., plot=False)): one point each."""
    t = (folder / "metrics.json").stat().st_mtime if (folder / "metrics.json").is_file() else None
    flat: dict[str, float] = {}

    def walk(prefix: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(key + "/", v)
            elif key != "step" and key not in plotted and isinstance(v, (int, float)) and not isinstance(v, bool):
                flat[key] = float(v)
            elif key != "step" and key not in plotted and isinstance(v, str) and _number(v) is not None:
                flat[key] = float(v)  # "nan", "inf" as DVCLive writes them

    walk("", summary)
    if flat:
        r.scalars(flat, step, t)


def _images(r: ImportedRun, base: Path, last_step: int) -> None:
    import labtrack

    if not base.is_dir():
        return
    for path in sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES):
        rel = path.relative_to(base)
        if rel.stem.isdigit() and len(rel.parts) > 1:  # DVCLive's slider: name/<step>.png
            name, step = rel.parent.as_posix(), int(rel.stem)
        else:
            name, step = rel.with_suffix("").as_posix(), last_step
        pic = still_image(path, repr(str(path)))
        r.run.log({name: labtrack.Image(pic)}, step=step, time=path.stat().st_mtime)


def _tables(r: ImportedRun, base: Path, kind: str, step: int) -> None:
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*.json")):
        try:
            data = json.loads(_read(path))
        except json.JSONDecodeError as e:
            raise SourceError(f"{str(path)!r} is not JSON: {e}") from None
        if isinstance(data, dict) and len(data) == 1:  # sklearn plots: {"roc": [rows]}
            data = next(iter(data.values()))
        if not (isinstance(data, list) and all(isinstance(row, dict) for row in data)) or not data:
            continue
        rows = [{k: _cell(v) for k, v in row.items()} for row in data]
        r.run.log_table(f"{kind}/{path.relative_to(base).with_suffix('').as_posix()}", rows, step)


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v)
