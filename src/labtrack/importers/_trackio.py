"""Import a trackio project: its SQLite database (PROJECT.db) and the media files beside it.

trackio (0.4x) keeps one database per project in its folder (TRACKIO_DIR, else
$HF_HOME/trackio, i.e. ~/.cache/huggingface/trackio): table `configs` (one row per run: its
config as JSON, with trackio's own `_Created`, `_Group`, `_Username`), `metrics` (one row per
log call: run_id, step, ISO timestamp, the values as JSON; media are dicts with a `_type`
"trackio.image" ... and a `file_path` relative to <folder>/media), `system_metrics` (rows
with a timestamp and no step) and `alerts`. The database is opened read-only
(`file:...?mode=ro`) with the standard library's sqlite3; trackio itself is never imported.
The source id is trackio's run id; the project is the experiment. What maps to what:
docs/migrate.md ("trackio").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import LabtrackError
from ._sink import Import, ImportedRun, SourceError

_GIB = 2.0 ** 30
# trackio's system metrics -> labtrack's system/ series (docs/system.md), with a scale factor.
_SYSTEM = {"cpu/utilization": ("cpu/percent", 1.0), "memory/percent": ("memory/percent", 1.0)}
_GPU = {"utilization": ("utilization", 1.0), "temp": ("temperature_c", 1.0), "power": ("power_w", 1.0),
        "allocated_memory": ("memory_used_bytes", _GIB), "memory_usage": ("memory_percent", 100.0)}
_SPECIAL = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}  # trackio's serialize_values


def trackio_dir(environ: dict[str, str] | None = None) -> Path:
    """trackio's folder: TRACKIO_DIR, else $HF_HOME/trackio (default ~/.cache/huggingface/trackio)."""
    env = os.environ if environ is None else environ
    if env.get("TRACKIO_DIR"):
        return Path(env["TRACKIO_DIR"]).expanduser()
    hf_home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(hf_home).expanduser() / "trackio"


def find_db(source: str | os.PathLike[str]) -> Path:
    """The database of `source`: a path to PROJECT.db, or a project name in trackio's folder."""
    p = Path(source).expanduser()
    if p.is_file():
        return p
    text = os.fspath(source)
    if p.exists():
        raise SourceError(f"{text!r} is a folder; give trackio's database (PROJECT.db) or a project name")
    if text.endswith(".db") or os.sep in text:
        raise SourceError(f"trackio database {text!r} does not exist")
    folder = trackio_dir()
    safe = "".join(c for c in text if c.isalnum() or c in "-_").rstrip() or "default"  # trackio's own rule
    db = folder / f"{safe}.db"
    if not db.is_file():
        have = sorted(f.stem for f in folder.glob("*.db")) if folder.is_dir() else []
        raise SourceError(f"no trackio project {text!r}: {str(db)!r} does not exist"
                          + (f"; projects there: {', '.join(have)}" if have else
                             " (set TRACKIO_DIR to trackio's folder, or give the .db file)"))
    return db


def _connect(db: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise SourceError(f"{str(db)!r} is not a trackio database: {e}") from None
    if "metrics" not in tables:
        con.close()
        raise SourceError(f"{str(db)!r} is not a trackio database: it has no metrics table "
                          f"(tables: {', '.join(sorted(tables)) or 'none'})")
    return con


def _time(iso: str, where: str) -> float:
    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: {iso!r} is not an ISO timestamp") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)  # trackio writes UTC
    return t.timestamp()


def _json(raw: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: not JSON: {str(raw)[:80]!r}") from None


def read_into(imp: Import, source: str | os.PathLike[str], experiment: str | None = None) -> None:
    """Import every run of a trackio project through `imp` (see labtrack.importers.trackio)."""
    db = find_db(source)
    con = _connect(db)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in ("metrics", "configs", "system_metrics", "alerts"):
            # trackio before 0.24 named a run only by its name: a temporary view (the file is
            # not touched) gives such a table the run_id column, the name
            if table in tables and "run_id" not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
                con.execute(f"CREATE TEMP VIEW {table} AS SELECT *, run_name AS run_id FROM main.{table}")
        _read(imp, con, tables, db, experiment)
    except sqlite3.DatabaseError as e:
        raise SourceError(f"{str(db)!r} cannot be read: {e}") from None
    finally:
        con.close()


def _read(imp: Import, con: sqlite3.Connection, tables: set[str], db: Path, experiment: str | None) -> None:
    where = str(db)
    has = {t: t in tables for t in ("configs", "system_metrics", "alerts")}
    runs: dict[str, str] = {}  # run_id -> name, in the order the runs began
    for q in ("SELECT run_id, run_name FROM configs ORDER BY id" if has["configs"] else None,
              "SELECT run_id, run_name FROM metrics GROUP BY run_id ORDER BY MIN(id)",
              "SELECT run_id, run_name FROM system_metrics GROUP BY run_id ORDER BY MIN(id)"
              if has["system_metrics"] else None):
        if q is not None:
            for run_id, name in con.execute(q):
                runs.setdefault(run_id, name)
    media_root = db.parent / "media"
    for run_id, name in runs.items():
        config: dict[str, Any] = {}
        created = None
        if has["configs"]:
            row = con.execute("SELECT config, created_at FROM configs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                config = _json(row[0], f"{where}, config of run {name!r}") or {}
                created = row[1]
        first = con.execute("SELECT MIN(timestamp) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
        stamp = config.get("_Created") or created or first
        started = _time(stamp, where) if stamp else None
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for table in ("metrics", "system_metrics", "alerts"):
            if table == "metrics" or has[table]:
                h.update(repr(con.execute(f"SELECT COUNT(*), MAX(id) FROM {table} WHERE run_id = ?",  # noqa: S608
                                          (run_id,)).fetchone()).encode())
        params = {k: v for k, v in config.items() if not k.startswith("_")}
        out = imp.run(run_id, experiment=experiment or db.stem, name=name, started=started, params=params,
                      group=config.get("_Group") or None, fingerprint=h.hexdigest()[:16],
                      extra={"path": str(db.resolve()), "project": db.stem})
        if out is None:
            continue
        _metrics(out, con, run_id, media_root, f"{where}, run {name!r}")
        if has["system_metrics"]:
            _system(out, con, run_id, started, f"{where}, run {name!r}")
        if has["alerts"]:
            for title, text, level, step in con.execute(
                    "SELECT title, text, level, step FROM alerts WHERE run_id = ? ORDER BY id", (run_id,)):
                out.run.log_text("trackio/alerts", f"[{level}] {title}" + (f"\n{text}" if text else ""),
                                 step if step is not None else None)
        user = config.get("_Username")
        out.done(status="finished", fields={"user": user} if user else None)


def _value(v: Any) -> Any:
    if isinstance(v, str) and v in _SPECIAL:
        return _SPECIAL[v]
    return v


def _metrics(out: ImportedRun, con: sqlite3.Connection, run_id: str, media_root: Path, where: str) -> None:
    """Every metrics row at its own step and wall time; media through labtrack's objects."""
    for step, stamp, raw in con.execute(
            "SELECT step, timestamp, metrics FROM metrics WHERE run_id = ? ORDER BY id", (run_id,)):
        values = _json(raw, where)
        if not isinstance(values, dict):
            raise SourceError(f"{where}: a metrics row at step {step} is not a JSON object")
        t = _time(stamp, where)
        logged: dict[str, Any] = {}
        for name, v in values.items():
            v = _value(v)
            if isinstance(v, (bool, int, float)):
                logged[name] = v
            elif isinstance(v, str):
                out.run.log_text(name, v, step, time=t)
            elif isinstance(v, dict) and v.get("_type") == "trackio.markdown":
                out.run.log_markdown(name, str(v.get("_value") or ""), step)
            elif isinstance(v, dict):
                media = _media(v, media_root, where)
                if media is not None:
                    logged[name] = media
        if logged:
            out.scalars(logged, int(step), t)


def _media(v: dict[str, Any], media_root: Path, where: str) -> Any:
    import labtrack

    kind = v.get("_type")
    try:
        if kind == "trackio.histogram":
            return labtrack.Histogram(np_histogram=(v["values"], v["bins"])) if v.get("values") else None
        if kind == "trackio.table":
            rows = v.get("_value") or []
            columns = list(dict.fromkeys(k for r in rows for k in r))
            return labtrack.Table([[r.get(c) for c in columns] for r in rows], columns=columns)
        path = v.get("file_path")
        if not isinstance(path, str):
            return None
        f = media_root / path
        if not f.is_file():
            raise SourceError(f"{where}: the {kind} {path!r} a metrics row names is missing from "
                              f"{str(media_root)!r}")
        caption = v.get("caption")
        if kind == "trackio.image":
            return labtrack.Image(f, caption=caption)
        if kind == "trackio.audio":
            return labtrack.Audio(f, caption=caption)
        if kind == "trackio.video":
            return labtrack.Video(f, caption=caption)
        if kind == "trackio.html":
            return labtrack.Html(f.read_text("utf-8", "replace"))
    except SourceError:
        raise
    except (KeyError, LabtrackError, OSError) as e:
        raise SourceError(f"{where}: a {kind} value cannot be read: {e}") from None
    return None


def _system(out: ImportedRun, con: sqlite3.Connection, run_id: str, started: float | None, where: str) -> None:
    """System metrics as system/ series: step = whole seconds since the start, like the sampler's;
    every value also under system/trackio/ with trackio's own name."""
    t0 = started
    for stamp, raw in con.execute(
            "SELECT timestamp, metrics FROM system_metrics WHERE run_id = ? ORDER BY id", (run_id,)):
        t = _time(stamp, where)
        if t0 is None:
            t0 = t
        items = _json(raw, where)
        values: dict[str, float] = {}
        for k, v in (items.items() if isinstance(items, dict) else ()):
            v = _value(v)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            mapped = _SYSTEM.get(k)
            parts = k.split("/")
            if mapped is None and len(parts) == 3 and parts[0] == "gpu" and parts[1].isdigit() and parts[2] in _GPU:
                name, scale = _GPU[parts[2]]
                mapped = (f"gpu/{parts[1]}/{name}", scale)
            if mapped is not None:
                values["system/" + mapped[0]] = float(v) * mapped[1]
            values["system/trackio/" + k] = float(v)
        if values:
            out.scalars(values, max(int(t - t0), 0), t)
