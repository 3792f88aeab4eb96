"""Import W&B run folders: `./wandb` (offline-run-*, run-*) or one run folder, or a .wandb file.

Each run folder's run-<id>.wandb (read by `_wandb_format`) holds the run's record, config,
every history row, summary, system stats, console output and exit code; its files/ folder
holds the media the history rows point at. What maps to what: docs/migrate.md ("W&B").
The source id is W&B's run id; the project is the experiment.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import LabtrackError
from ._sink import Import, ImportedRun, SourceError, check_source, fingerprint
from ._wandb_format import records

# wandb's system stats -> labtrack's system/ series (docs/system.md), with a scale factor.
_MIB = 2.0 ** 20
_STATS = {
    "memory_percent": ("memory/percent", 1.0),
    "proc.memory.rssMB": ("process/rss_bytes", _MIB),
    "network.sent": ("network/sent_bytes", 1.0),
    "network.recv": ("network/recv_bytes", 1.0),
    "disk.in": ("disk/read_bytes", _MIB),
    "disk.out": ("disk/write_bytes", _MIB),
}
_GPU_STATS = {"gpu": ("utilization", 1.0), "memoryAllocated": ("memory_percent", 1.0),
              "memoryAllocatedBytes": ("memory_used_bytes", 1.0), "temp": ("temperature_c", 1.0),
              "powerWatts": ("power_w", 1.0)}
_NUMBER_START = frozenset("-0123456789")
_MEDIA_TYPES = {"image-file", "table-file", "histogram", "html-file", "audio-file", "video-file",
                "joined-table", "partitioned-table", "object3D-file", "molecule-file", "plotly-file",
                "bokeh-file", "graph-file", "images/separated"}


def read_into(imp: Import, source: str | os.PathLike[str], experiment: str | None = None,
              decoder: str = "auto") -> None:
    """Import every W&B run under `source` through `imp` (see labtrack.importers.wandb).

    Args:
        decoder: how Records are decoded: "auto" (wandb's protobuf classes when wandb is
            importable, else labtrack's own decoder), "wandb" or "own".
    """
    for folder, file in find_runs(check_source(source, "W&B folder")):
        _import_run(imp, folder, file, experiment, decoder)


def find_runs(source: Path) -> list[tuple[Path, Path]]:
    """(run folder, its run-*.wandb) for a .wandb file, a run folder, or a folder of run folders
    (`./wandb`, or the folder holding it); the `latest-run` link is not counted twice."""
    if source.is_file():
        if source.suffix != ".wandb":
            raise SourceError(f"{str(source)!r} is not a W&B run file (run-<id>.wandb) or folder")
        return [(source.resolve().parent, source.resolve())]
    own = sorted(source.glob("*.wandb"))
    if own:
        return [(source.resolve(), own[0].resolve())]
    found: dict[Path, tuple[Path, Path]] = {}
    for pattern in ("*/*.wandb", "wandb/*/*.wandb"):
        for f in sorted(source.glob(pattern)):
            real = f.resolve()  # latest-run is a link to one of the others
            found.setdefault(real, (real.parent, real))
    if not found:
        raise SourceError(f"no W&B run files (run-<id>.wandb) in {str(source)!r}; give the wandb folder "
                          "(./wandb) or one of its run folders (offline-run-*, run-*)")
    return sorted(found.values(), key=lambda pair: pair[0].name)


def _path(item: dict[str, Any]) -> list[str]:
    return list(item["nested_key"]) if item["nested_key"] else [item["key"]]


def _loads(raw: str, where: str) -> Any:
    try:
        return json.loads(raw) if raw != "" else None
    except ValueError:
        raise SourceError(f"{where}: a value is not JSON: {raw[:80]!r}") from None


def _apply(target: dict[str, Any], changes: dict[str, Any] | None, where: str) -> None:
    """Apply a SummaryRecord / ConfigRecord's updates and removes to a nested dict."""
    if changes is None:
        return
    for item in changes["update"]:
        *parents, last = _path(item)
        d = target
        for k in parents:
            nxt = d.get(k)
            if not isinstance(nxt, dict):
                nxt = d[k] = {}
            d = nxt
        d[last] = _loads(item["value_json"], where)
    for item in changes["remove"]:
        *parents, last = _path(item)
        d = target
        for k in parents:
            nxt = d.get(k)
            d = nxt if isinstance(nxt, dict) else {}
        d.pop(last, None)


def _ts(t: dict[str, Any] | None) -> float | None:
    if not t or not t["seconds"]:
        return None
    return float(t["seconds"]) + float(t["nanos"]) / 1e9


class _Reader:
    """The records of one .wandb file, gathered for one labtrack run."""

    def __init__(self, file: Path, decoder: str) -> None:
        self.file = file
        self.where = str(file)
        self.run: dict[str, Any] | None = None
        self.config: dict[str, Any] = {}
        self._summary_raw: dict[tuple[str, ...], str] = {}
        self.rows: list[dict[str, Any]] = []  # history rows, nested by nested_key
        self.stats: list[tuple[float, dict[str, Any]]] = []
        self.console: list[str] = []
        self.env: dict[str, Any] = {}
        self.exit: dict[str, Any] | None = None
        self.version: str | None = None
        self.last_time: float | None = None
        for kind, rec in records(file, decoder):
            getattr(self, "_" + kind)(rec)
        if self.run is None:
            raise SourceError(f"{self.where} holds no run record (W&B stopped before the run began): "
                              "nothing to import")

    def _seen(self, t: float | None) -> None:
        if t is not None and (self.last_time is None or t > self.last_time):
            self.last_time = t

    def _header(self, rec: dict[str, Any]) -> None:
        info = rec["version_info"]
        if info and info["producer"]:
            self.version = info["producer"].split("+")[0]

    def _run(self, rec: dict[str, Any]) -> None:
        if self.run is None:
            self.run = rec
        else:  # a resumed run repeats its record: later fields win where set
            self.run.update({k: v for k, v in rec.items() if v not in ("", None, [], 0, False)})
        _apply(self.config, rec["config"], self.where)

    def _config(self, rec: dict[str, Any]) -> None:
        _apply(self.config, rec, self.where)

    def _summary(self, rec: dict[str, Any]) -> None:
        # W&B writes a summary update with every history row: only the last value of each key
        # matters, so the JSON is parsed once per key at the end (`final_summary`).
        for item in rec["update"]:
            path = tuple(_path(item))
            if item["value_json"][:1] == "{":  # a whole dict replaces what was under it
                self._drop_summary(path)
            self._summary_raw.pop(path, None)  # re-inserted last: the order of the latest updates
            self._summary_raw[path] = item["value_json"]
        for item in rec["remove"]:
            self._drop_summary(tuple(_path(item)))

    def _drop_summary(self, path: tuple[str, ...]) -> None:
        for k in [k for k in self._summary_raw if k[:len(path)] == path]:
            del self._summary_raw[k]

    def final_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _apply(out, {"update": [{"key": "", "nested_key": list(p), "value_json": raw}
                                for p, raw in self._summary_raw.items()], "remove": []}, self.where)
        return out

    def _history(self, rec: dict[str, Any]) -> None:
        row: dict[str, Any] = {}
        for item in rec["item"]:
            raw = item["value_json"]
            nested = item["nested_key"]
            if len(nested) <= 1 and raw[:1] in _NUMBER_START:
                try:  # the common case, a plain number: float() is several times faster than json
                    row[nested[0] if nested else item["key"]] = float(raw)
                    continue
                except ValueError:
                    pass
            _apply(row, {"update": [item], "remove": []}, self.where)
        if "_step" not in row and rec["step"] is not None:
            row["_step"] = rec["step"]["num"]
        self.rows.append(row)
        t = row.get("_timestamp")
        self._seen(float(t) if isinstance(t, (int, float)) else None)

    def _stats(self, rec: dict[str, Any]) -> None:
        t = _ts(rec["timestamp"])
        if t is None:
            return
        self.stats.append((t, {i["key"]: _loads(i["value_json"], self.where) for i in rec["item"]}))
        self._seen(t)

    def _output_raw(self, rec: dict[str, Any]) -> None:
        self.console.append(rec["line"])
        self._seen(_ts(rec["timestamp"]))

    def _output(self, rec: dict[str, Any]) -> None:  # older wandb: whole lines, without "\n"
        self.console.append(rec["line"] + ("" if rec["line"].endswith("\n") else "\n"))
        self._seen(_ts(rec["timestamp"]))

    def _environment(self, rec: dict[str, Any]) -> None:
        self.env.update({k: v for k, v in rec.items() if v not in ("", None, [], 0)})

    def _exit(self, rec: dict[str, Any]) -> None:
        self.exit = rec

    def _files(self, rec: dict[str, Any]) -> None:
        pass  # the files/ folder itself is read, with what these records listed and more


def _first_run_record(file: Path, decoder: str) -> dict[str, Any] | None:
    """The run record, decoding only the records before it (it comes second, after the header)."""
    for kind, rec in records(file, decoder):
        if kind == "run":
            return rec
    return None


def _import_run(imp: Import, folder: Path, file: Path, experiment: str | None, decoder: str) -> None:
    files_dir = folder / "files"
    all_files = [p for p in files_dir.rglob("*") if p.is_file()] if files_dir.is_dir() else []
    fp = fingerprint([file, *all_files])
    first = _first_run_record(file, decoder)
    source_id = (first["run_id"] if first else "") or file.stem.removeprefix("run-")
    if first is not None and first["resumed"]:
        # A resumed run writes a second folder with the same id (and W&B's first start time):
        # the folder's name tells the parts apart. (An offline resume has its own start time,
        # which already makes its labtrack id differ.)
        source_id = f"{source_id}@{folder.name}"
    if first is not None and _unchanged(imp, first, source_id, fp, experiment):
        return
    r = _Reader(file, decoder)
    assert r.run is not None
    meta = _metadata(files_dir)
    if imp.version is None:
        imp.version = r.version
    run_id = r.run["run_id"] or file.stem.removeprefix("run-")
    started = _ts(r.run["start_time"]) or _ts(r.env.get("started_at"))
    config = {k: v for k, v in r.config.items() if k != "_wandb"}
    out = imp.run(source_id, experiment=experiment or r.run["project"] or "wandb",
                  name=r.run["display_name"] or run_id, started=started, params=config,
                  tags=r.run["tags"], comment=r.run["notes"] or None, group=r.run["run_group"] or None,
                  job_type=r.run["job_type"] or None, fingerprint=fp,
                  extra={"path": str(folder.resolve()), "project": r.run["project"] or None,
                         "entity": r.run["entity"] or None, "sweep_id": r.run["sweep_id"] or None})
    if out is None:
        return
    used = _history(out, r, files_dir)
    _stats(out, r, started)
    _summary(out, r)
    output_log = files_dir / "output.log"  # the same text as the output records, when they exist
    if r.console:
        out.run._writer.write_console("".join(r.console))  # console.log, as W&B captured it
    elif output_log.is_file():
        out.run._writer.write_console(output_log.read_text("utf-8", "replace"))
    used.add(output_log)
    diff = files_dir / "diff.patch"  # W&B's `git diff HEAD` of a dirty checkout
    if diff.is_file():
        out.write_file("source/diff.patch", diff.read_bytes())
        used.add(diff)
    for p in all_files:  # the rest of files/ (requirements.txt, code/, media not mapped) as it was
        if p not in used:
            out.write_file("artifacts/wandb/" + p.relative_to(files_dir).as_posix(), p.read_bytes())
    if r.exit is None:
        status, error = "crashed", None  # W&B never recorded an exit: the process died
    elif r.exit["exit_code"] == 0:
        status, error = "finished", None
    else:
        status, error = "failed", f"exit code {r.exit['exit_code']}"
    fields, env = _provenance(r, meta)
    if fields.get("git") and diff.is_file():
        fields["git"]["dirty"] = diff.stat().st_size > 0
    if error:
        fields["error"] = error
    out.done(status=status, ended=r.last_time, fields=fields, env=env)


def _unchanged(imp: Import, rec: dict[str, Any], source_id: str, fp: str, experiment: str | None) -> bool:
    """True (and the run counted as skipped) when an earlier import of this run finished and
    its files have not changed since: then only the file's first records were decoded (the
    run record, for the start time that is part of the labtrack run id)."""
    from .._store import imported

    started = _ts(rec["start_time"])
    if started is None:
        return False
    found, origin = imported.previous(imp.root, imported.imported_run_id(imp.tool, source_id, started))
    if found is None or origin is None or not origin.get("complete") or origin.get("fingerprint") != fp:
        return False
    skipped = imp.run(source_id, experiment=experiment or rec["project"] or "wandb", started=started,
                      fingerprint=fp)
    assert skipped is None  # Import.run made the same check
    return True


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """A nested dict of a history row or summary as dotted names (W&B shows them so)."""
    if isinstance(value, dict) and value.get("_type") not in _MEDIA_TYPES:
        for k, v in value.items():
            if not str(k).startswith("_"):
                _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _history(out: ImportedRun, r: _Reader, files_dir: Path) -> set[Path]:
    """Log every history row at its own _step and _timestamp; the media files it used."""
    used: set[Path] = set()
    for n, row in enumerate(r.rows):
        raw_step = row.get("_step", n)
        step = int(raw_step) if isinstance(raw_step, (int, float)) and raw_step == raw_step else n
        t = row.get("_timestamp")
        values: dict[str, Any] = {}
        for k, v in row.items():
            if not k.startswith("_"):
                _flatten(k, v, values)
        logged: dict[str, Any] = {}
        for name, v in values.items():
            if isinstance(v, (bool, int, float)):
                logged[name] = v
            elif v is None:
                logged[name] = math.nan
            elif isinstance(v, str):
                out.run.log_text(name, v, step, time=t)
            elif isinstance(v, dict):
                media = _media(v, files_dir, used, r.where)
                if media is not None:
                    logged[name] = media
        if logged:
            out.scalars(logged, step, float(t) if isinstance(t, (int, float)) else None)
    return used


def _media(v: dict[str, Any], files_dir: Path, used: set[Path], where: str) -> Any:
    """The labtrack media object of a W&B media value, or None when labtrack has no place for it
    (its file stays under artifacts/wandb/)."""
    import labtrack

    kind = v.get("_type")
    if kind == "histogram":
        try:
            return labtrack.Histogram(np_histogram=(v["values"], v["bins"]))
        except (KeyError, LabtrackError) as e:
            raise SourceError(f"{where}: a histogram value cannot be read: {e}") from None
    path = v.get("path")
    if not isinstance(path, str):
        return None
    f = files_dir / path
    if not f.is_file():
        raise SourceError(f"{where}: the {kind} {path!r} a history row names is missing from {str(files_dir)!r}")
    try:
        if kind == "image-file":
            media: Any = _image(f, v, files_dir, used)
        elif kind == "table-file":
            table = json.loads(f.read_text("utf-8"))
            media = labtrack.Table(table.get("data") or [], columns=table.get("columns"))
        elif kind == "html-file":
            media = labtrack.Html(f.read_text("utf-8", "replace"))
        elif kind == "audio-file":
            media = labtrack.Audio(f, caption=v.get("caption"))
        elif kind == "video-file":
            media = labtrack.Video(f, caption=v.get("caption"))
        else:
            return None
    except (LabtrackError, ValueError, OSError):
        return None  # e.g. a table of images: kept as W&B's file under artifacts/wandb/
    used.add(f)
    return media


def _image(f: Path, v: dict[str, Any], files_dir: Path, used: set[Path]) -> Any:
    """A W&B image with its bounding boxes (each group's boxes2D JSON file, mapped the way
    labtrack.wandb maps wandb.Image(boxes=...)); boxes labtrack cannot read leave the image
    without them, and their file stays under artifacts/wandb/."""
    import labtrack
    from .._bridges.wandb_media import map_boxes

    image = labtrack.Image(f, caption=v.get("caption"))
    groups = v.get("boxes")
    if not isinstance(groups, dict) or not groups:
        return image
    specs: dict[str, Any] = {}
    files = []
    try:
        for group, ref in groups.items():
            box_file = files_dir / str(ref.get("path") if isinstance(ref, dict) else "")
            specs[group] = json.loads(box_file.read_text("utf-8"))
            files.append(box_file)
        boxes, classes = map_boxes(specs, image.width, image.height)
        with_boxes = labtrack.Image(image.array, caption=image.caption, boxes=boxes, classes=classes)
    except (LabtrackError, ValueError, OSError, TypeError, AttributeError):
        return image
    used.update(files)
    return with_boxes


def _stats(out: ImportedRun, r: _Reader, started: float | None) -> None:
    """System stats as system/ series: step = whole seconds since the start, like the sampler's."""
    cores = int(r.env.get("cpu_count_logical") or r.env.get("cpu_count") or 0)
    total = int((r.env.get("memory") or {}).get("total") or 0)
    t0 = started if started is not None else (r.stats[0][0] if r.stats else 0.0)
    for t, items in r.stats:
        values: dict[str, float] = {}
        per_core = []
        for k, v in items.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            mapped = _stat_name(k)
            if mapped is not None:
                values["system/" + mapped[0]] = float(v) * mapped[1]
            if k.startswith("cpu.") and k.endswith(".cpu_percent"):
                per_core.append(float(v))
            elif k == "cpu" and cores:  # W&B: the process's share of all cores; labtrack: 100% = one core
                values["system/process/cpu_percent"] = float(v) * cores
            elif k == "proc.memory.availableMB" and total:
                values["system/memory/used_bytes"] = total - float(v) * _MIB
            values["system/wandb/" + k.replace("/", "_")] = float(v)  # W&B's own name, as recorded
        if per_core:
            values["system/cpu/percent"] = sum(per_core) / len(per_core)
        if values:
            out.scalars(values, max(int(t - t0), 0), t)


def _stat_name(key: str) -> tuple[str, float] | None:
    if key in _STATS:
        return _STATS[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "gpu" and parts[1].isdigit() and parts[2] in _GPU_STATS:
        name, scale = _GPU_STATS[parts[2]]
        return f"gpu/{parts[1]}/{name}", scale
    return None


def _summary(out: ImportedRun, r: _Reader) -> None:
    """Summary values the script set (or that differ from the last logged point) go into
    summary.json as "value"; the rest W&B derived from the history, which labtrack does too."""
    last: dict[str, Any] = {}
    for row in r.rows:
        flat: dict[str, Any] = {}
        for k, v in row.items():
            if not k.startswith("_"):
                _flatten(k, v, flat)
        last.update(flat)
    flat_summary: dict[str, Any] = {}
    for k, v in r.final_summary().items():
        if not k.startswith("_"):
            _flatten(k, v, flat_summary)
    entries = {k: {"value": v} for k, v in flat_summary.items()
               if not (isinstance(v, dict) and v.get("_type") in _MEDIA_TYPES)
               and (k not in last or last[k] != v)}
    if entries:
        out.run._set_summary(entries)


def _metadata(files_dir: Path) -> dict[str, Any]:
    """files/wandb-metadata.json (synced runs, older wandb): the same facts as the environment
    record, under its own names."""
    p = files_dir / "wandb-metadata.json"
    try:
        raw = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    git: dict[str, Any] = raw["git"] if isinstance(raw.get("git"), dict) else {}
    mem: dict[str, Any] = raw["memory"] if isinstance(raw.get("memory"), dict) else {}
    return {k: v for k, v in {
        "os": raw.get("os"), "python": raw.get("python"), "program": raw.get("program"),
        "code_path": raw.get("codePath"), "args": raw.get("args"), "root": raw.get("root"),
        "host": raw.get("host"), "username": raw.get("username"), "executable": raw.get("executable"),
        "cpu_count": raw.get("cpu_count"), "cpu_count_logical": raw.get("cpu_count_logical"),
        "gpu_type": raw.get("gpu"), "gpu_count": raw.get("gpu_count"), "memory": {"total": mem.get("total")},
        "git": {"remote_url": git.get("remote") or "", "commit": git.get("commit") or ""} if git else None,
    }.items() if v not in (None, "", [])}


def _provenance(r: _Reader, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """run.json's host, user, command and git, and env.json, from what W&B recorded."""
    assert r.run is not None
    e = {**meta, **r.env}
    fields: dict[str, Any] = {"host": e.get("host") or r.run["host"] or None, "user": e.get("username") or None}
    if e.get("program") or e.get("args"):
        script = e.get("program")
        fields["command"] = {"argv": [e.get("code_path") or script or "", *(e.get("args") or [])],
                             "script": script, "module": None, "cwd": e.get("root"),
                             "python": e.get("executable")}
    git = e.get("git") or r.run["git"]
    if git and git.get("commit"):
        fields["git"] = {"commit": git["commit"], "message": None, "branch": None, "dirty": None,
                         "remote": git.get("remote_url") or None, "root": e.get("root")}
    if not any(k in e for k in ("os", "python", "cpu_count", "gpu_nvidia")):
        return fields, None
    impl, _, version = str(e.get("python") or "").rpartition(" ")
    env: dict[str, Any] = {"python": {"version": version or None, "implementation": impl or None,
                                      "executable": e.get("executable")},
                           "platform": {"system": str(e.get("os") or "").split("-")[0] or None,
                                        "description": e.get("os")},
                           "host": fields["host"], "user": fields["user"],
                           "cpus": e.get("cpu_count_logical") or e.get("cpu_count")}
    gpus = [{"name": g["name"], "memory": g["memory_total"] or None} for g in e.get("gpu_nvidia") or []]
    if gpus:
        env["gpus"] = gpus
    elif e.get("gpu_type"):
        env["gpus"] = [{"name": e["gpu_type"], "memory": None}] * int(e.get("gpu_count") or 1)
    if (e.get("memory") or {}).get("total"):
        env["memory"] = e["memory"]["total"]
    return fields, env
