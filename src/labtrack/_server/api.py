"""The read API under /api/v1 (docs/api.md): runs, columns, one run, its files and series.

Every endpoint checks the `read` scope first, validates its parameters with a message naming
the value and what is allowed, and does its disk work in a worker thread so the event loop
(and the live streams on it) never waits for a parse.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import numpy.typing as npt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .._names import check_name, name_to_relpath, relpath_to_name
from ..errors import FormatError, LabtrackValueError
from .app import JSONResponse, error
from .downsample import downsample, select_range
from .state import ServerState, resolve_in_run

API = "/api/v1"
MAX_POINTS = 100_000
CONSOLE_CHUNK = 1 << 20
RECORDS_CHUNK = 8 << 20


def state_of(request: Request, scope: str | None = "read") -> ServerState:
    """The app's :class:`ServerState`, after checking `scope` with the app's auth hook."""
    state: ServerState = request.app.state.labtrack
    if scope is not None and state.auth is not None:
        state.auth(request, scope)
    return state


# -- parameters


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi], or LabtrackValueError naming it."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise LabtrackValueError(f"{name}={raw!r} is not allowed; use a whole number from {lo} to {hi}")
    return value


def float_param(params: Mapping[str, str], name: str) -> float | None:
    """An optional finite number query parameter."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise LabtrackValueError(f"{name}={raw!r} is not allowed; use a finite number such as 100 or 1.5e3")
    return value


def required(params: Mapping[str, str], name: str, example: str) -> str:
    """A required query parameter."""
    raw = params.get(name)
    if not raw:
        raise LabtrackValueError(f"the query parameter {name} is missing; for example ?{name}={example}")
    return raw


# -- JSON of number arrays


def floats(arr: npt.NDArray[np.float64]) -> list[Any]:
    """A float array as a JSON-ready list (non-finite values as "NaN"/"Infinity"/"-Infinity")."""
    out: list[Any] = arr.tolist()
    if not np.isfinite(arr).all():
        for i in np.flatnonzero(~np.isfinite(arr)).tolist():
            v = out[i]
            out[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return out


# -- endpoints


async def health(request: Request) -> Response:
    """`GET /api/v1/health`: who answers (no token needed)."""
    from .. import __version__

    return JSONResponse({"app": "labtrack", "version": __version__, "api": 1})


def public_row(row: dict[str, Any], columns: str | None) -> dict[str, Any]:
    """A run row as the API shows it: no server paths, params/metrics limited to `columns`."""
    row = {k: v for k, v in row.items() if k not in ("dir", "stats", "pid")}
    if columns is not None:
        wanted = {c.strip() for c in columns.split(",") if c.strip()}
        row["params"] = {k: v for k, v in row.get("params", {}).items() if f"params.{k}" in wanted}
        row["metrics"] = {k: v for k, v in row.get("metrics", {}).items() if f"metrics.{k}" in wanted}
    return row


async def runs(request: Request) -> Response:
    """`GET /api/v1/runs`: one page of the filtered, sorted runs."""
    state = state_of(request)
    p = request.query_params
    offset = int_param(p, "offset", 0, 0, 10**9)
    limit = int_param(p, "limit", 100, 0, 10_000)
    columns = p.get("columns")

    where, experiment = p.get("where") or None, p.get("experiment") or None
    status, q, sort = p.get("status") or None, p.get("q") or None, p.get("sort") or "-started"

    def work() -> tuple[int, list[dict[str, Any]]]:
        if not state.root.is_dir():
            return 0, []  # no runs yet; do not create the folder by opening an index in it
        index = state.index()
        # every match, sorted, cached for a moment (the next page is a slice); rows are
        # decoded only for the page asked for
        hits = state.cached_query(
            ("runs", where, experiment, status, q, sort),
            lambda: index.select(where=where, experiment=experiment, status=status, q=q,
                                 sort=sort, parts=False))
        return len(hits), [public_row(h.row(), columns) for h in hits[offset:offset + limit]]

    total, rows = await run_in_threadpool(work)
    return JSONResponse({"total": total, "offset": offset, "runs": rows},
                        headers={"Cache-Control": "no-store"})


async def columns(request: Request) -> Response:
    """`GET /api/v1/columns`: every param key, metric name and experiment."""
    state = state_of(request)
    experiment = request.query_params.get("experiment") or None

    def work() -> dict[str, list[str]]:
        if not state.root.is_dir():
            return {"params": [], "metrics": [], "experiments": []}
        index = state.index()
        cols: dict[str, list[str]] = state.cached_query(
            ("columns", experiment), lambda: index.columns(experiment=experiment))
        return cols

    cols = await run_in_threadpool(work)
    return JSONResponse(cols, headers={"Cache-Control": "no-store"})


def _names_under(base: Path, suffix: str) -> list[str]:
    names = []
    for dirpath, _dirs, files in os.walk(base):
        for fn in files:
            if fn.endswith(suffix) and not fn.startswith("."):
                rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
                names.append(relpath_to_name(rel, suffix))
    return sorted(names)


def run_detail(state: ServerState, run_dir: Path) -> dict[str, Any]:
    """run.json with the derived status, params (nested), summary, env, options and the
    names of the run's series, texts, histograms, tables and markdown documents."""
    from .._store.reader import read_json, read_run_meta

    meta = read_run_meta(run_dir)
    meta.pop("dir", None)
    meta["experiment_dir"] = run_dir.parent.name
    meta["params"] = read_json(run_dir / "params.json", {})
    meta["summary"] = read_json(run_dir / "summary.json", {})
    meta["env"] = read_json(run_dir / "env.json", None)
    meta["options"] = read_json(run_dir / "options.json", None)
    meta["duration"] = _duration(meta, run_dir, state.clock())
    meta["names"] = {
        "scalars": _names_under(run_dir / "scalars", ".csv"),
        "text": _names_under(run_dir / "text", ".jsonl"),
        "histograms": _names_under(run_dir / "histograms", ".jsonl"),
        "tables": _names_under(run_dir / "tables", ".csv"),
        "markdown": _names_under(run_dir / "markdown", ".md"),
    }
    return meta


def run_row_now(state: ServerState, run_dir: Path) -> dict[str, Any]:
    """The run row (docs/api.md) of one run, read from its files now (not the index)."""
    from .._index import run_row
    from .._store.reader import read_json, read_run_meta

    meta = read_run_meta(run_dir)
    row, _ = run_row(meta, read_json(run_dir / "params.json"), read_json(run_dir / "summary.json"))
    row["duration"] = _duration(meta, run_dir, state.clock())
    return public_row(row, None)


def _duration(meta: dict[str, Any], run_dir: Path, now: float) -> float | None:
    from datetime import datetime

    def unix(text: Any) -> float | None:
        try:
            return datetime.fromisoformat(text).timestamp() if isinstance(text, str) else None
        except ValueError:
            return None

    t0 = unix(meta.get("started"))
    if t0 is None:
        return None
    t1 = unix(meta.get("ended"))
    if t1 is None and meta.get("status") == "running":
        t1 = now
    if t1 is None:  # crashed: it ended at its last heartbeat
        try:
            t1 = os.stat(run_dir / "heartbeat").st_mtime
        except OSError:
            return None
    return max(0.0, t1 - t0)


async def run(request: Request) -> Response:
    """`GET /api/v1/runs/{id}`: everything about one run except its series data."""
    state = state_of(request)
    run_id = request.path_params["id"]

    def work() -> dict[str, Any]:
        return run_detail(state, state.run_dir(run_id))

    return JSONResponse(await run_in_threadpool(work), headers={"Cache-Control": "no-store"})


def list_files(run_dir: Path) -> list[dict[str, Any]]:
    """Every file of a run (symlinks included only when they stay inside the run)."""
    real_run = os.path.realpath(run_dir)
    out = []
    for dirpath, dirs, files in os.walk(run_dir):
        dirs.sort()
        for fn in sorted(files):
            if fn.startswith(".") and fn.endswith(".tmp"):
                continue  # an atomic replace in progress
            full = os.path.join(dirpath, fn)
            real = os.path.realpath(full)
            if not real.startswith(real_run + os.sep):
                continue
            try:
                st = os.stat(full)
            except OSError:
                continue
            rel = os.path.relpath(full, run_dir).replace(os.sep, "/")
            out.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
    return out


async def files(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/files`: path, size and mtime of every file of the run."""
    state = state_of(request)
    run_id = request.path_params["id"]
    listing = await run_in_threadpool(lambda: list_files(state.run_dir(run_id)))
    return JSONResponse({"files": listing}, headers={"Cache-Control": "no-store"})


_TEXT = {".txt", ".log", ".md", ".csv", ".jsonl", ".patch", ".diff", ".py", ".yaml", ".yml",
         ".toml", ".cfg", ".ini", ".tsv", ".sh"}
_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
          ".webp": "image/webp", ".json": "application/json"}
# Served files are never run as a page: no sniffing, and a sandbox without scripts.
_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
                 "Content-Security-Policy": "default-src 'none'; sandbox"}


def media_type(path: str) -> str:
    """The Content-Type a run file is served with: images, JSON and text as themselves,
    everything else (HTML and SVG included) as bytes to download."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    if suffix in _TEXT or os.path.basename(path) in ("heartbeat",):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


async def file(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/file?path=P[&offset=N][&download=1]`: one file's bytes."""
    state = state_of(request)
    p = request.query_params
    relpath = required(p, "path", "media/3/samples/bird.png")
    offset = int_param(p, "offset", -1, 0, 1 << 62) if "offset" in p else None

    def locate() -> tuple[Path, os.stat_result]:
        path = resolve_in_run(state.run_dir(request.path_params["id"]), relpath, "path")
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not os.path.isfile(path):
            raise FileNotFoundError(relpath)
        return path, st

    try:
        path, st = await run_in_threadpool(locate)
    except FileNotFoundError:
        return error(404, f"run {request.path_params['id']} has no file {relpath!r}; "
                          "GET /api/v1/runs/{id}/files lists them")
    headers = dict(_FILE_HEADERS)
    if p.get("download") in ("1", "true"):
        from urllib.parse import quote

        headers["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(path.name)}"
    kind = media_type(relpath)
    if offset is None:
        return FileResponse(path, media_type=kind, headers=headers, stat_result=st)
    if offset > st.st_size:
        return error(416, f"offset={offset} is past the end of {relpath!r} ({st.st_size} bytes)")
    headers["X-File-Size"] = str(st.st_size)

    def chunks() -> Any:
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                data = f.read(1 << 16)
                if not data:
                    return
                yield data

    return StreamingResponse(chunks(), media_type=kind, headers=headers)


def scalars_payload(state: ServerState, run_dir: Path, name: str, points: int, x: str,
                    xmin: float | None, xmax: float | None) -> dict[str, Any]:
    """The downsampled series `name` of a run (docs/api.md, /scalars)."""
    path = resolve_in_run(run_dir, "scalars/" + name_to_relpath(name, ".csv"), "name")
    cols = state.series.get(path)
    xs_all = cols.step if x == "step" else cols.time
    ordered = cols.step_ordered if x == "step" else cols.time_ordered
    step, time, value = cols.step, cols.time, cols.value
    if xmin is not None or xmax is not None:
        idx = select_range(xs_all, xmin, xmax, ordered=ordered)
        if ordered and len(idx):
            window = slice(int(idx[0]), int(idx[-1]) + 1)  # contiguous: views, no copies
            step, time, value = step[window], time[window], value[window]
        else:
            step, time, value = step[idx], time[idx], value[idx]
    d = downsample(step if x == "step" else time, value, points)
    return {
        "name": name, "x": x, "total": len(cols), "count": len(value),
        "downsampled": d.downsampled,
        "step": step[d.index].tolist(), "time": floats(time[d.index]),
        "value": floats(value[d.index]), "min": floats(d.low), "max": floats(d.high),
    }


async def scalars(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/scalars?name=N&points=2000&x=step&xmin=&xmax=`."""
    state = state_of(request)
    p = request.query_params
    name = check_name(required(p, "name", "train/loss"), "name")
    points = int_param(p, "points", 2000, 3, MAX_POINTS)
    x = p.get("x") or "step"
    if x not in ("step", "time"):
        raise LabtrackValueError(f"x={x!r} is not allowed; use step or time "
                                 "(relative time is time minus the run's start)")
    xmin, xmax = float_param(p, "xmin"), float_param(p, "xmax")
    run_id = request.path_params["id"]

    def work() -> dict[str, Any] | None:
        run_dir = state.run_dir(run_id)
        try:
            return scalars_payload(state, run_dir, name, points, x, xmin, xmax)
        except FileNotFoundError:
            return None

    payload = await run_in_threadpool(work)
    if payload is None:
        known = await run_in_threadpool(lambda: _names_under(state.run_dir(run_id) / "scalars", ".csv"))
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") if known else "none"
        return error(404, f"run {run_id} has no series {name!r}; its series: {shown}")
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


def read_records(path: Path, offset: int = 0, limit: int = RECORDS_CHUNK) -> tuple[list[Any], int]:
    """JSON records of an append-only JSONL file from byte `offset`, whole lines only.

    Returns:
        `(records, next_offset)`; a damaged line is skipped, a trailing partial line left.
    """
    from .._store.reader import decode_nonfinite

    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].split(b"\n"):
        if line.strip():
            try:
                out.append(decode_nonfinite(json.loads(line)))
            except ValueError:
                continue
    return out, offset + end


def _records_endpoint(folder: str | None, key: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        p = request.query_params
        offset = int_param(p, "offset", 0, 0, 1 << 62)
        if folder is None:
            name, relpath = None, "media.jsonl"
        else:
            name = check_name(required(p, "name", "samples"), "name")
            relpath = f"{folder}/" + name_to_relpath(name, ".jsonl")

        def work() -> tuple[list[Any], int]:
            path = resolve_in_run(state.run_dir(request.path_params["id"]), relpath, "name")
            return read_records(path, offset)

        records, nxt = await run_in_threadpool(work)
        body: dict[str, Any] = {key: records, "offset": nxt}
        if name is not None:
            body["name"] = name
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    endpoint.__doc__ = f"`GET /api/v1/runs/{{id}}/{key}`: records from byte ?offset= on."
    return endpoint


def read_console(path: Path, offset: int, limit: int = CONSOLE_CHUNK) -> dict[str, Any]:
    """Text of console.log from byte `offset`, cut at a character boundary."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise LabtrackValueError(
                    f"offset={offset} is past the end of console.log ({size} bytes); start at 0")
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        if offset:
            raise LabtrackValueError(f"offset={offset} is past the end of console.log (0 bytes)") from None
        return {"offset": 0, "size": 0, "text": ""}
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=False)
    pending = len(decoder.getstate()[0])  # bytes of a character cut in half: next time
    return {"offset": offset + len(data) - pending, "size": size, "text": text}


async def console(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/console?offset=0`: console.log from a byte offset."""
    state = state_of(request)
    offset = int_param(request.query_params, "offset", 0, 0, 1 << 62)
    run_id = request.path_params["id"]
    body = await run_in_threadpool(lambda: read_console(state.run_dir(run_id) / "console.log", offset))
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def not_found(request: Request) -> Response:
    """Any other /api path: a JSON 404, never the front end's page."""
    return error(404, f"no API endpoint {request.method} {request.url.path}; see docs/api.md")


async def _format_error(request: Request, exc: Exception) -> Response:
    return error(422, str(exc))


def routes() -> list[BaseRoute]:
    """The read API's routes."""
    return [
        Route(f"{API}/health", health),
        Route(f"{API}/runs", runs),
        Route(f"{API}/columns", columns),
        Route(f"{API}/runs/{{id}}", run),
        Route(f"{API}/runs/{{id}}/files", files),
        Route(f"{API}/runs/{{id}}/file", file),
        Route(f"{API}/runs/{{id}}/scalars", scalars),
        Route(f"{API}/runs/{{id}}/media", _records_endpoint(None, "media")),
        Route(f"{API}/runs/{{id}}/text", _records_endpoint("text", "records")),
        Route(f"{API}/runs/{{id}}/histograms", _records_endpoint("histograms", "records")),
        Route(f"{API}/runs/{{id}}/console", console),
    ]


def fallback_routes() -> list[BaseRoute]:
    """Routes matched after every other API route (and before the front end)."""
    # GET only: another method on a known path then answers 405, on an unknown one 405 too
    # (from the front end's GET-only route), both as JSON.
    return [Route("/api/{rest:path}", not_found, methods=["GET", "HEAD"])]


ERROR_HANDLERS = {FormatError: _format_error}
