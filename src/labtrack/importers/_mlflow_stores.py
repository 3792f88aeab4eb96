"""Reading MLflow's two local stores without mlflow: the SQLite database and the file store.

Both give the same `SourceRun`s (plain data, MLflow's units: milliseconds, strings) and stream
a run's metric points in the order they were logged, so `_mlflow.py` maps them to labtrack once.

- SQLite (`sqlite:///mlflow.db`, or the .db file's path): read with the standard library's
  sqlite3, opened read-only, from the tables MLflow's schema has had since 1.x and still has
  in 3.x: experiments, runs, metrics, params, tags, and (2.4+) datasets, inputs, input_tags.
- The file store (`./mlruns`, or `file:./mlruns`): `<experiment id>/meta.yaml`,
  `<experiment id>/<run id>/{meta.yaml, metrics/<key>, params/<key>, tags/<key>, artifacts/}`
  where a metric file has one "timestamp value step" line per point and a key with "/" is a
  sub-folder. meta.yaml is read by `parse_meta_yaml`, a reader of the flat YAML that MLflow's
  `yaml.safe_dump` writes (so PyYAML is not a dependency).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ._sink import SourceError

#: The file store writes a run's status as RunStatus's number; SQLite as its name.
STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_REQUIRED_TABLES = ("experiments", "runs", "metrics", "params", "tags")


@dataclass
class SourceRun:
    """One MLflow run as the store holds it (times in ms since the epoch, values as stored)."""

    run_id: str
    experiment_id: str
    experiment: str
    name: str | None
    status: str
    start_ms: int | None
    end_ms: int | None
    deleted: bool
    user_id: str | None
    artifact_uri: str | None
    artifact_dir: Path | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    folder: Path | None = None  # the file store's run folder


# --- meta.yaml ------------------------------------------------------------------------------------
_KEY = re.compile(r"^('(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|[^\s:'\"#][^:#]*?):(?:[ \t]+(.*))?$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
            "_": "\xa0", "L": "\u2028", "P": "\u2029"}


def _fold(parts: list[str]) -> str:
    """YAML's line folding of a flow scalar's lines: one newline is a space, n blank lines are
    n newlines."""
    out = parts[0]
    blanks = 0
    for p in parts[1:]:
        if not p:
            blanks += 1
            continue
        out += ("\n" * blanks if blanks else " ") + p
        blanks = 0
    return out + "\n" * blanks


def _double(body: str, where: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[nxt]
            try:
                out.append(chr(int(body[i + 2:i + 2 + n], 16)))
            except ValueError:
                raise SourceError(f"{where}: bad escape {body[i:i + 2 + n]!r} in a quoted value") from None
            i += 2 + n
        elif nxt == "\n":  # an escaped line break joins the lines without a space
            i += 2
        else:
            raise SourceError(f"{where}: bad escape {body[i:i + 2]!r} in a quoted value")
    return "".join(out)


def _scalar(lines: list[str], where: str) -> Any:
    """One YAML flow scalar (plain, 'single' or "double" quoted) spread over `lines`."""
    parts = [ln.strip() for ln in lines]
    first = parts[0]
    if first.startswith("'"):
        text = _fold(parts)
        if not text.endswith("'") or len(text) < 2:
            raise SourceError(f"{where}: a quoted value without its closing quote")
        return text[1:-1].replace("''", "'")
    if first.startswith('"'):
        # Folding first (a trailing backslash keeps its line break for _double to drop).
        joined = parts[0]
        for p in parts[1:]:
            joined += "\n" + p if joined.endswith("\\") else (" " + p if p else "\n")
        if not joined.endswith('"') or len(joined) < 2:
            raise SourceError(f"{where}: a quoted value without its closing quote")
        return _double(joined[1:-1], where)
    text = _fold(parts)
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if text == "[]":
        return []
    if text == "{}":
        return {}
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def parse_meta_yaml(text: str, where: str) -> dict[str, Any]:
    """The mapping of one of MLflow's meta.yaml files.

    It reads what `yaml.safe_dump` writes for a flat dict: `key: value` lines whose values
    are plain, single- or double-quoted scalars (folded over several lines when long), `[]`,
    `{}`, and nested mappings by indentation (an input's `tags:`). Anything else (block
    scalars, anchors, flow collections with items) is refused with the file's name.

    Raises:
        SourceError: text that is not such YAML (`where` names the file).
    """
    out: dict[str, Any] = {}
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if not ln.lstrip().startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.strip() == "---":
            i += 1
            continue
        if line[0] in " \t":
            raise SourceError(f"{where}: line {i + 1} is indented where a key was expected: {line!r}")
        m = _KEY.match(line.rstrip())
        if m is None:
            raise SourceError(f"{where}: line {i + 1} is not `key: value`: {line!r}")
        key_text, value = m.group(1), m.group(2)
        key = _scalar([key_text], where) if key_text[0] in "'\"" else key_text.strip()
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j][0] in " \t"):
            j += 1
        block = lines[i + 1:j]
        if value is None or not value.strip():
            if any(b.strip() for b in block):
                width = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                out[str(key)] = parse_meta_yaml("\n".join(b[width:] for b in block), where)
            else:
                out[str(key)] = None
        else:
            if value.strip()[:1] in ("|", ">", "&", "*", "!") or (value.strip()[:1] in "[{" and
                                                                  value.strip() not in ("[]", "{}")):
                raise SourceError(f"{where}: line {i + 1} holds YAML this reader does not take: {line!r}")
            out[str(key)] = _scalar([value, *block], where)
        i = j
    return out


def read_meta_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read {path}: {e}") from None
    return parse_meta_yaml(text, str(path))


# --- where a run's artifacts are ------------------------------------------------------------------
def local_artifacts(uri: str | None, *, store_dir: Path, experiment_id: str, run_id: str) -> Path | None:
    """The local folder of a run's artifacts: its artifact URI when that is a local path that
    exists, else where MLflow puts them beside the store (`mlruns/<exp>/<run>/artifacts`, or a
    tracking server's `mlartifacts/`), so a store copied elsewhere still finds them."""
    tries: list[Path] = []
    if uri:
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            p = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
            tries.append(p if p.is_absolute() else store_dir / p)
        elif parsed.scheme == "mlflow-artifacts":
            tries.append(store_dir / "mlartifacts" / unquote(parsed.path).lstrip("/"))
    tries += [store_dir / "mlruns" / experiment_id / run_id / "artifacts",
              store_dir / "mlartifacts" / experiment_id / run_id / "artifacts",
              store_dir / experiment_id / run_id / "artifacts"]
    for p in tries:
        if p.is_dir():
            return p
    return None


def artifact_files(folder: Path | None) -> list[Path]:
    """Every file under a run's artifact folder, sorted (symlinks out of it are left out)."""
    if folder is None:
        return []
    out = []
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        for fn in sorted(files):
            out.append(Path(dirpath) / fn)
    return out


def _stat_digest(h: Any, base: Path, files: list[Path]) -> None:
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


# --- the SQLite store -----------------------------------------------------------------------------
def sqlite_path(source: str) -> Path | None:
    """The database file of a `sqlite:///...` URI or of a path to a file; None for a folder."""
    if source.startswith("sqlite:"):
        rest = source[len("sqlite:"):]
        if not rest.startswith("///"):
            raise SourceError(f"{source!r} is not a SQLite URI of a file: write sqlite:///relative/path.db "
                              "or sqlite:////absolute/path.db")
        return Path(unquote(rest[3:].split("?", 1)[0]))
    p = Path(source).expanduser()
    return p if p.is_file() else None


class SqliteStore:
    """MLflow's SQLite tracking store, read-only."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise SourceError(f"MLflow database {str(path)!r} does not exist")
        try:
            self.db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise SourceError(f"{str(path)!r} is not a SQLite database ({e}); give MLflow's "
                              "sqlite:///mlflow.db or its file store folder (./mlruns)") from None
        missing = [t for t in _REQUIRED_TABLES if t not in tables]
        if missing:
            raise SourceError(f"{str(path)!r} is a SQLite database but not MLflow's tracking store: "
                              f"it has no table {', '.join(missing)}")
        self.tables = tables
        self.schema: str | None = None
        if "alembic_version" in tables:
            row = self.db.execute("SELECT version_num FROM alembic_version").fetchone()
            self.schema = row[0] if row else None

    def close(self) -> None:
        self.db.close()

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}

    def runs(self) -> Iterator[SourceRun]:
        """Every run of every experiment, oldest first (deleted ones too, marked)."""
        try:
            yield from self._runs()
        except sqlite3.DatabaseError as e:
            raise SourceError(f"cannot read MLflow database {str(self.path)!r}: {e}") from None

    def _runs(self) -> Iterator[SourceRun]:
        ecols = self._columns("experiments")
        exps = {str(r[0]): (r[1], r[2]) for r in self.db.execute(
            "SELECT experiment_id, name, " + ("lifecycle_stage" if "lifecycle_stage" in ecols else "'active'")
            + " FROM experiments")}
        rcols = self._columns("runs")
        name_col = "name" if "name" in rcols else "NULL"
        rows = self.db.execute(
            f"SELECT run_uuid, experiment_id, {name_col}, status, start_time, end_time, lifecycle_stage, "
            "user_id, artifact_uri FROM runs ORDER BY start_time, run_uuid").fetchall()
        store_dir = self.path.resolve().parent
        for run_id, exp_id, name, status, start, end, stage, user, art_uri in rows:
            exp_name, exp_stage = exps.get(str(exp_id), (str(exp_id), "active"))
            run = SourceRun(
                run_id=run_id, experiment_id=str(exp_id), experiment=exp_name, name=name,
                status=str(status or "RUNNING"), start_ms=start, end_ms=end,
                deleted=stage == "deleted" or exp_stage == "deleted", user_id=user, artifact_uri=art_uri,
                artifact_dir=local_artifacts(art_uri, store_dir=store_dir, experiment_id=str(exp_id),
                                             run_id=run_id))
            run.params = dict(self.db.execute("SELECT key, value FROM params WHERE run_uuid=?", (run_id,)))
            run.tags = {k: v if v is not None else "" for k, v in
                        self.db.execute("SELECT key, value FROM tags WHERE run_uuid=?", (run_id,))}
            run.datasets = self._datasets(run_id)
            count, last, total, steps = self.db.execute(
                "SELECT count(*), max(timestamp), total(value), total(step) FROM metrics WHERE run_uuid=?",
                (run_id,)).fetchone()
            h = hashlib.sha256(json.dumps(
                [run_id, name, status, start, end, stage, exp_name, sorted(run.params.items()),
                 sorted(run.tags.items()), run.datasets, count, last, total, steps]).encode())
            if run.artifact_dir is not None:
                _stat_digest(h, run.artifact_dir, artifact_files(run.artifact_dir))
            run.fingerprint = h.hexdigest()[:16]
            yield run

    def _datasets(self, run_id: str) -> list[dict[str, Any]]:
        if not {"datasets", "inputs", "input_tags"} <= self.tables:
            return []
        out = []
        for uuid, name, digest, stype, source, schema, profile, input_uuid in self.db.execute(
                "SELECT d.dataset_uuid, d.name, d.digest, d.dataset_source_type, d.dataset_source, "
                "d.dataset_schema, d.dataset_profile, i.input_uuid FROM inputs i JOIN datasets d "
                "ON i.source_id = d.dataset_uuid WHERE i.source_type='DATASET' AND i.destination_type='RUN' "
                "AND i.destination_id=? ORDER BY d.name, d.digest", (run_id,)):
            tags = dict(self.db.execute("SELECT name, value FROM input_tags WHERE input_uuid=?", (input_uuid,)))
            out.append({"name": name, "digest": digest, "source_type": stype, "source": source,
                        "schema": schema, "profile": profile, "tags": tags})
        return out

    def metrics(self, run: SourceRun) -> Iterator[tuple[str, float, int, int]]:
        """(key, value, timestamp ms, step) of every point, in the order they were logged."""
        cols = self._columns("metrics")
        nan = "is_nan" if "is_nan" in cols else "0"
        step = "step" if "step" in cols else "0"
        try:
            for key, value, ts, st, is_nan in self.db.execute(
                    f"SELECT key, value, timestamp, {step}, {nan} FROM metrics WHERE run_uuid=? ORDER BY rowid",
                    (run.run_id,)):
                yield key, float("nan") if is_nan else float(value), int(ts), int(st)
        except sqlite3.DatabaseError as e:
            raise SourceError(f"cannot read the metrics of run {run.run_id} in {str(self.path)!r}: {e}") from None


# --- the file store -------------------------------------------------------------------------------
def file_store_path(source: str) -> Path:
    """The mlruns folder of a `file:` URI or a path (a folder holding mlruns/ is taken too)."""
    if source.startswith("file:"):
        parsed = urlparse(source)
        if parsed.netloc not in ("", "localhost"):
            raise SourceError(f"{source!r} names a folder on another host ({parsed.netloc}); give a local path")
        p = Path(unquote(parsed.path))
    else:
        p = Path(source).expanduser()
    if not p.exists():
        raise SourceError(f"MLflow store {source!r} does not exist")
    if not p.is_dir():
        raise SourceError(f"{source!r} is neither MLflow's SQLite database nor its file store folder")
    if not any(p.glob("*/meta.yaml")) and (p / "mlruns").is_dir():
        p = p / "mlruns"
    if not any(p.glob("*/meta.yaml")):
        raise SourceError(f"{source!r} is not an MLflow file store: no <experiment id>/meta.yaml in it "
                          "(give the mlruns folder, or sqlite:///mlflow.db for a database)")
    return p


def _keyed_files(folder: Path) -> list[tuple[str, Path]]:
    """(key, file) of a run's metrics/, params/ or tags/ folder: a key with "/" is a sub-folder."""
    if not folder.is_dir():
        return []
    out = []
    for dirpath, dirs, files in os.walk(folder):
        dirs.sort()
        for fn in sorted(files):
            p = Path(dirpath) / fn
            out.append((p.relative_to(folder).as_posix(), p))
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read {path}: {e}") from None


class FileStore:
    """MLflow's file store (./mlruns)."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema: str | None = None
        self.bad_lines = 0  # metric lines that are not "timestamp value [step]" (a torn last write)

    def close(self) -> None:
        pass

    def runs(self) -> Iterator[SourceRun]:
        found = []
        for exp_dir in sorted(p for p in self.path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (exp_dir / "meta.yaml").is_file():
                continue
            emeta = read_meta_yaml(exp_dir / "meta.yaml")
            exp_id = str(emeta.get("experiment_id", exp_dir.name))
            exp_name = str(emeta.get("name") or exp_id)
            exp_deleted = emeta.get("lifecycle_stage") == "deleted"
            for run_dir in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
                if not (run_dir / "meta.yaml").is_file() or run_dir.name in ("datasets", "models", "traces"):
                    continue
                found.append(self._run(run_dir, exp_dir, exp_id, exp_name, exp_deleted))
        found.sort(key=lambda r: (r.start_ms or 0, r.run_id))
        yield from found

    def _run(self, run_dir: Path, exp_dir: Path, exp_id: str, exp_name: str, exp_deleted: bool) -> SourceRun:
        meta = read_meta_yaml(run_dir / "meta.yaml")
        status = meta.get("status")
        status_name = STATUS_NUMBERS.get(status, "RUNNING") if isinstance(status, int) else str(status or "RUNNING")
        run_id = str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name)
        art_uri = meta.get("artifact_uri")
        run = SourceRun(
            run_id=run_id, experiment_id=exp_id, experiment=exp_name, name=meta.get("run_name") or None,
            status=status_name, start_ms=_int_or_none(meta.get("start_time")),
            end_ms=_int_or_none(meta.get("end_time")),
            deleted=meta.get("lifecycle_stage") == "deleted" or exp_deleted,
            user_id=meta.get("user_id"), artifact_uri=art_uri if isinstance(art_uri, str) else None,
            artifact_dir=None, folder=run_dir)
        run.artifact_dir = (run_dir / "artifacts") if (run_dir / "artifacts").is_dir() else local_artifacts(
            run.artifact_uri, store_dir=self.path.parent, experiment_id=exp_id, run_id=run_id)
        run.params = {k: _read_text(p) for k, p in _keyed_files(run_dir / "params")}
        run.tags = {k: _read_text(p) for k, p in _keyed_files(run_dir / "tags")}
        run.datasets = self._datasets(run_dir, exp_dir)
        h = hashlib.sha256(json.dumps([exp_name, exp_deleted]).encode())
        _stat_digest(h, run_dir, artifact_files(run_dir))  # meta.yaml, metrics, params, tags, artifacts
        if run.artifact_dir is not None and run.artifact_dir != run_dir / "artifacts":
            _stat_digest(h, run.artifact_dir, artifact_files(run.artifact_dir))
        run.fingerprint = h.hexdigest()[:16]
        return run

    def _datasets(self, run_dir: Path, exp_dir: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        inputs = run_dir / "inputs"
        if not inputs.is_dir():
            return out
        for meta_path in sorted(inputs.glob("*/meta.yaml")):
            inp = read_meta_yaml(meta_path)
            if inp.get("source_type") != "DATASET":
                continue
            ds_path = exp_dir / "datasets" / str(inp.get("source_id")) / "meta.yaml"
            ds = read_meta_yaml(ds_path) if ds_path.is_file() else {}
            tags = inp.get("tags") if isinstance(inp.get("tags"), dict) else {}
            out.append({"name": ds.get("name"), "digest": ds.get("digest"), "source_type": ds.get("source_type"),
                        "source": ds.get("source"), "schema": ds.get("schema"), "profile": ds.get("profile"),
                        "tags": {str(k): str(v) for k, v in (tags or {}).items()}})
        out.sort(key=lambda d: (str(d["name"]), str(d["digest"])))
        return out

    def metrics(self, run: SourceRun) -> Iterator[tuple[str, float, int, int]]:
        """(key, value, timestamp ms, step) of every point, metric by metric, in file order."""
        run_dir = run.folder if run.folder is not None else self.path / run.experiment_id / run.run_id
        for key, path in _keyed_files(run_dir / "metrics"):
            try:
                data = path.read_bytes()
            except OSError as e:
                raise SourceError(f"cannot read {path}: {e}") from None
            end = data.rfind(b"\n") + 1
            if data[end:].strip():  # a last line without its newline: a write cut off, not a point
                self.bad_lines += 1
            for line in data[:end].split(b"\n"):
                parts = line.split()
                if not parts:
                    continue
                try:
                    ts, value = int(parts[0]), float(parts[1])
                    step = int(parts[2]) if len(parts) > 2 else 0
                except (ValueError, IndexError):
                    self.bad_lines += 1
                    continue
                yield key, value, ts, step


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def open_store(source: str) -> SqliteStore | FileStore:
    """The store `source` names: `sqlite:///x.db` or a .db file -> SqliteStore; `file:...` or a
    folder -> FileStore.

    Raises:
        SourceError: it does not exist, or is neither (a server URI, a database of other tables).
    """
    if re.match(r"^(https?|postgres(ql)?|mysql|mssql|databricks)[+:]", source):
        raise SourceError(f"{source!r} is a tracking server or database labtrack does not read: it imports "
                          "MLflow's SQLite store (sqlite:///mlflow.db) and its file store (./mlruns)")
    db = sqlite_path(source)
    if db is not None:
        return SqliteStore(db)
    return FileStore(file_store_path(source))
