"""The read API under /api/v1 (docs/api.md): runs, columns, one run, its files and series.

Every endpoint checks the `read` scope first, validates its parameters with a message naming
the value and what is allowed, and does its disk work in a worker thread so the event loop
(and the live streams on it) never waits for a parse. Every file is read through the run's
:class:`~labtrack._store.rundir.RunDir`, so nothing a symlink leads to outside the run or the
root is read or listed.
"""

from __future__ import annotations

import codecs
import json
import os
from typing import Any, Callable, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .._directions import resolve as resolve_directions
from .._names import check_name, relpath_to_name
from .._store import layout
from .._store.contain import real
from .._store.rundir import KINDS, RunDir
from ..errors import FormatError, LabtrackValueError
from .common import (API, NO_STORE, JSONResponse, empty, error, float_param, floats, int_param,
                     open_run_file, public_row, required, run_file, state_of, unless_outside)
from .state import ServerState

MAX_POINTS = 100_000
MAX_BATCH_RUNS = 200  # runs in one /scalars?runs= request
MAX_BATCH_POINTS = 10_000  # points per run there
CONSOLE_CHUNK = 1 << 20
RECORDS_CHUNK = 8 << 20


# -- endpoints


async def health(request: Request) -> Response:
    """`GET /api/v1/health`: who answers (no token needed)."""
    from .. import __version__

    return JSONResponse({"app": "labtrack", "version": __version__, "api": 1})


async def runs(request: Request) -> Response:
    """`GET /api/v1/runs`: one page of the filtered, sorted runs."""
    state = state_of(request)
    p = request.query_params
    offset = int_param(p, "offset", 0, 0, 10**9)
    limit = int_param(p, "limit", 100, 0, 10_000)
    columns = p.get("columns")

    where, experiment = p.get("where") or None, p.get("experiment") or None
    status, q, sort = p.get("status") or None, p.get("q") or None, p.get("sort") or "-started"

    def work() -> tuple[int, list[dict[str, Any]], int]:
        if not state.root.is_dir():
            return 0, [], 0  # no runs yet; do not create the folder by opening an index in it
        index = state.index()
        # read before the query: a fill that ends during it must not pass for complete
        pending = state.pending
        # one page, filtered, sorted and paged by the index's database (only its rows are
        # decoded), cached for a moment
        total, page = runs_page(index, where, experiment, status, q, sort, offset, limit,
                                cache=state.cached_query)
        now = state.clock()
        return total, [public_row(_with_duration(state, h.row(), now), columns) for h in page], pending

    total, rows, pending = await run_in_threadpool(work)
    body: dict[str, Any] = {"total": total, "offset": offset, "runs": rows}
    if pending:
        # A never-indexed root is being read: the newest runs are in, these are still to come.
        body["pending"] = pending
    return JSONResponse(body, headers=NO_STORE)


def runs_page(index: Any, where: str | None, experiment: str | None, status: str | None,
              q: str | None, sort: str | None, offset: int, limit: int,
              cache: Callable[[tuple[Any, ...], Callable[[], Any]], Any] | None = None) -> tuple[int, list[Any]]:
    """`(total, hits)` of one page of `GET /api/v1/runs` (benchmarks/pg_index.py times this).

    An index that pages in the database (SQLite and PostgreSQL, `Index.pages_in_database`)
    is asked for the page itself, kept a moment by `cache` (ServerState.cached_query); one
    that cannot has every match sorted once, kept, and sliced. Rows are decoded only for
    the page.
    """
    def keep(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        return compute() if cache is None else cache(key, compute)

    if index.pages_in_database:
        got: tuple[int, list[Any]] = keep(
            ("page", where, experiment, status, q, sort, offset, limit),
            lambda: index.page(where=where, experiment=experiment, status=status, q=q, sort=sort,
                               offset=offset, limit=limit))
        return got
    hits = keep(("runs", where, experiment, status, q, sort),
                lambda: index.select(where=where, experiment=experiment, status=status, q=q,
                                     sort=sort, parts=False))
    return len(hits), hits[offset:offset + limit]


def _with_duration(state: ServerState, row: dict[str, Any], now: float) -> dict[str, Any]:
    """An index row with the duration of a run that ended without saying so (crashed,
    killed): the index knows ended - started, or the heartbeat's age; the run's files know
    its last sign of life (`_store.rundir.duration`). Only for such rows of the page asked
    for, and remembered while their files stay as they are."""
    if row.get("status") != "running" and not row.get("ended") and isinstance(row.get("dir"), str):
        try:
            row["duration"] = state.ended_duration(row, now)
        except (OSError, ValueError):  # gone or moved out of the root meanwhile: no duration
            pass
    return row


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
    return JSONResponse(cols, headers=NO_STORE)


def run_detail(state: ServerState, run: RunDir) -> dict[str, Any]:
    """run.json with the derived status, params (nested), summary, its series' directions
    ("min"/"max", where declared), env, options, notes, duration,
    and the names of the run's series, texts, histograms, tables and markdown documents,
    each also with the path it is stored at (`named`), so a client never escapes a name.

    A params, summary, env or options file that leads outside the run shows as absent.
    """
    meta = run.meta()
    meta.pop("dir", None)
    meta["experiment_dir"] = run.experiment_dir
    meta["params"] = unless_outside(run.params, empty())
    meta["summary"] = unless_outside(run.summary, empty())
    # each series' declared direction (run.json `metrics`, or define_metric's goal)
    meta["directions"] = resolve_directions(meta, meta["summary"])
    meta["env"] = unless_outside(run.env, None)
    meta["options"] = unless_outside(run.options, None)
    meta["notes"] = unless_outside(run.notes, "")
    meta["duration"] = run.duration(meta, now=state.clock())
    meta["consoles"] = [{"rank": r, "path": run.console_relpath(r)} for r in sorted({0, *run.ranks()})]
    named = {kind: run.named(kind) for kind in KINDS}
    meta["names"] = {kind: [name for name, _ in pairs] for kind, pairs in named.items()}
    meta["named"] = {kind: [{"name": name, "path": path} for name, path in pairs]
                     for kind, pairs in named.items()}
    return meta


async def run(request: Request) -> Response:
    """`GET /api/v1/runs/{id}`: everything about one run except its series data."""
    state = state_of(request)
    run_id = request.path_params["id"]

    def work() -> dict[str, Any]:
        return run_detail(state, state.run_dir(run_id))

    return JSONResponse(await run_in_threadpool(work), headers=NO_STORE)


async def files(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/files`: path, size and mtime of every file of the run
    (symlinks only when they stay inside the run)."""
    state = state_of(request)
    run_id = request.path_params["id"]
    listing = await run_in_threadpool(lambda: state.run_dir(run_id).files())
    return JSONResponse({"files": listing}, headers=NO_STORE)


_TEXT = {".txt", ".log", ".md", ".csv", ".jsonl", ".patch", ".diff", ".py", ".yaml", ".yml",
         ".toml", ".cfg", ".ini", ".tsv", ".sh"}
_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
          ".webp": "image/webp", ".json": "application/json", ".wav": "audio/wav",
          ".mp4": "video/mp4", ".webm": "video/webm"}
# Served files are never run as a page: no sniffing, and a sandbox without scripts.
_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
                 "Content-Security-Policy": "default-src 'none'; sandbox"}


def media_type(path: str) -> str:
    """The Content-Type a run file is served with: images, JSON and text as themselves,
    everything else (HTML and SVG included) as bytes to download."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    if suffix in _TEXT or path == layout.HEARTBEAT:
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


async def file(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/file?path=P[&offset=N][&download=1]`: one file's bytes."""
    state = state_of(request)
    p = request.query_params
    relpath = required(p, "path", "media/3/samples/bird.png")
    offset = int_param(p, "offset", -1, 0, 1 << 62) if "offset" in p else None

    def locate() -> tuple[str, os.stat_result]:
        # the resolved path is served: what was checked is what is read
        path = real(run_file(state.run_dir(request.path_params["id"]), relpath, "path"))
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

        headers["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(relpath.rsplit('/', 1)[-1])}"
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


def named_param(params: Mapping[str, str], kind: str, example: str) -> tuple[str, str | None]:
    """The series or record a request names: `(name, relpath)` from `?name=` (the name as
    logged; relpath None: the run knows where it is stored), or from `?path=` (a path the
    run detail's `named` listing gave, such as `scalars/train/loss.csv`).

    Raises:
        LabtrackValueError: neither is given, or `path` is not a file of this kind.
        LabtrackNameError: a name or path that is not allowed.
    """
    path = params.get("path")
    if path:
        folder, suffix = KINDS[kind]
        check_name(path, "path")
        if not (path.startswith(folder + "/") and path.endswith(suffix) and len(path) > len(folder) + 1 + len(suffix)):
            raise LabtrackValueError(
                f"path={path!r} is not a {kind} file; use a path from the run's `named` listing "
                f"such as {folder}/{example}{suffix}, or name={example}")
        return relpath_to_name(path[len(folder) + 1:], suffix), path
    return check_name(required(params, "name", example), "name"), None


def locate(run: RunDir, kind: str, name: str, relpath: str | None) -> str:
    """Where a named series or record of the run is stored: `relpath` when the client sent
    one, else the name's path; a file whose name is spelled otherwise on disk (copied in by
    hand: `A%41.csv` reads as `AA`) is found by its name among the run's files."""
    if relpath is not None:
        return relpath
    rel = run.relpath(kind, name)
    if not os.path.lexists(run.path / rel):
        for other, other_rel in run.named(kind):
            if other == name:
                return other_rel
    return rel


def scalars_payload(state: ServerState, run: RunDir, name: str, points: int, x: str,
                    xmin: float | None, xmax: float | None, relpath: str | None = None) -> dict[str, Any]:
    """The downsampled series `name` of a run (docs/api.md, /scalars).

    Raises:
        FileNotFoundError: the run has no such series.
        OutsideRootError: its file leads outside the run.
    """
    from .downsample import downsample, select_range  # numpy: not needed to list runs

    rel = locate(run, "scalars", name, relpath)
    path = run_file(run, rel, "name")
    answer = envelope_payload(state, run, rel, path, name, points, x, xmin, xmax)
    if answer is not None:
        return answer
    cols = state.series.get(path, opener=lambda: open_run_file(run, rel, "name"))
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


def envelope_payload(state: ServerState, run: RunDir, rel: str, path: Any, name: str, points: int,
                     x: str, xmin: float | None, xmax: float | None) -> dict[str, Any] | None:
    """The /scalars answer of a long series from its envelope (`_server/envelope.py`), or
    None: a short series, or one this cannot answer (steps out of order in a zoomed window,
    lines the fast parser refuses): the caller parses it whole, as for short series.

    The same shape as the parsed answer: a zoomed-in window is read from the CSV bytes of
    its blocks and downsampled exactly as the parsed series is; a wider view draws each
    bucket's minimum or maximum with its exact envelope (the buckets then are whole blocks of
    1,024 points, so a window's edges are a block wide).
    """
    from .downsample import downsample, from_envelope, select_range
    from .envelope import read_points, window

    def opener() -> Any:
        return open_run_file(run, rel, "name")

    env = state.envelopes.get(path, run.path, rel, opener)
    if env is None or env.total <= points:
        return None
    rec = env.records
    ordered = env.step_ordered if x == "step" else env.time_ordered
    a, b = 0, len(rec)
    zoomed = xmin is not None or xmax is not None
    if zoomed:
        if not ordered:
            return None
        a, b = window(env, x, xmin, xmax)
    if b - a <= max(2, points // 4):  # a few blocks: the points themselves, from the CSV
        if zoomed:
            a, b = max(a - 1, 0), min(max(b, a) + 1, len(rec))
        with opener() as f:
            cols = read_points(f, rec, a, b)
        if cols is None:
            return None
        step, value, time = cols
        if zoomed:
            xs = step if x == "step" else time
            if len(xs) > 1 and not bool((xs[1:] >= xs[:-1]).all()):
                return None
            idx = select_range(xs, xmin, xmax, ordered=True)
            sl = slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)
            step, time, value = step[sl], time[sl], value[sl]
        d = downsample(step if x == "step" else time, value, points)
        return {
            "name": name, "x": x, "total": env.total, "count": len(value),
            "downsampled": d.downsampled,
            "step": step[d.index].tolist(), "time": floats(time[d.index]),
            "value": floats(value[d.index]), "min": floats(d.low), "max": floats(d.high),
        }
    part = rec[a:b]
    drawn = from_envelope(part, points, x)
    count = int(part["n_end"][-1] - part["n_end"][0] + part["n"][0])
    return {
        "name": name, "x": x, "total": env.total, "count": count, "downsampled": True,
        "step": drawn.step.astype("int64").tolist(), "time": floats(drawn.time),
        "value": floats(drawn.value), "min": floats(drawn.low), "max": floats(drawn.high),
    }


async def scalars(request: Request) -> Response:
    """`GET /api/v1/runs/{id}/scalars?name=N&points=2000&x=step&xmin=&xmax=` (or `path=P`
    instead of `name=N`)."""
    state = state_of(request)
    p = request.query_params
    name, relpath = named_param(p, "scalars", "train/loss")
    points = int_param(p, "points", 2000, 3, MAX_POINTS)
    x = _x_param(p)
    xmin, xmax = float_param(p, "xmin"), float_param(p, "xmax")
    run_id = request.path_params["id"]

    def work() -> dict[str, Any] | None:
        run = state.run_dir(run_id)
        try:
            return scalars_payload(state, run, name, points, x, xmin, xmax, relpath)
        except FileNotFoundError:
            return None

    payload = await run_in_threadpool(work)
    if payload is None:
        known = await run_in_threadpool(lambda: state.run_dir(run_id).names("scalars"))
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") if known else "none"
        return error(404, f"run {run_id} has no series {name!r}; its series: {shown}")
    return JSONResponse(payload, headers=NO_STORE)


def _x_param(p: Mapping[str, str]) -> str:
    x = p.get("x") or "step"
    if x not in ("step", "time"):
        raise LabtrackValueError(f"x={x!r} is not allowed; use step or time "
                                 "(relative time is time minus the run's start)")
    return x


async def scalars_many(request: Request) -> Response:
    """`GET /api/v1/scalars?runs=ID,ID&name=N&points=500&x=step`: one series of many runs in
    one answer (the dashboard's group lines need every run of a group). A run without the
    series answers null; an unknown run id makes the whole request 404."""
    state = state_of(request)
    p = request.query_params
    name = check_name(required(p, "name", "train/loss"), "name")
    raw = required(p, "runs", "20261121-141503-k3f9qz,20261121-141504-a1b2c3")
    ids = list(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))
    if not ids:
        raise LabtrackValueError(f"runs={raw!r} names no run; give run ids separated by commas")
    if len(ids) > MAX_BATCH_RUNS:
        raise LabtrackValueError(f"runs= names {len(ids)} runs; at most {MAX_BATCH_RUNS} in one request "
                                 "(ask for the rest in another)")
    points = int_param(p, "points", 500, 3, MAX_BATCH_POINTS)
    x = _x_param(p)

    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for run_id in ids:
            run = state.run_dir(run_id)
            try:
                out[run_id] = scalars_payload(state, run, name, points, x, None, None)
            except FileNotFoundError:
                out[run_id] = None
        return out

    runs_out = await run_in_threadpool(work)
    return JSONResponse({"name": name, "x": x, "runs": runs_out}, headers=NO_STORE)


def read_records(run: RunDir, relpath: str, offset: int = 0,
                 limit: int = RECORDS_CHUNK) -> tuple[list[Any], int]:
    """JSON records of an append-only JSONL file of the run from byte `offset`, whole lines only.

    Returns:
        `(records, next_offset)`; a damaged line is skipped, a trailing partial line left.

    Raises:
        OutsideRootError: the file leads outside the run.
    """
    from .._store.reader import decode_nonfinite

    try:
        with open_run_file(run, relpath, "name") as f:
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


def _records_endpoint(kind: str | None, key: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        p = request.query_params
        offset = int_param(p, "offset", 0, 0, 1 << 62)
        name: str | None = None
        where: Callable[[RunDir], str]
        if kind is None:
            where = lambda run: layout.MEDIA_JSONL  # noqa: E731
        else:
            logged, rel, of_kind = *named_param(p, kind, "samples"), kind
            name = logged
            where = lambda run: locate(run, of_kind, logged, rel)  # noqa: E731

        def work() -> tuple[list[Any], int]:
            run = state.run_dir(request.path_params["id"])
            if kind is None:  # the run's own media list: one leading outside is none
                return unless_outside(lambda: read_records(run, where(run), offset), ([], 0))
            return read_records(run, where(run), offset)

        records, nxt = await run_in_threadpool(work)
        body: dict[str, Any] = {key: records, "offset": nxt}
        if name is not None:
            body["name"] = name
        return JSONResponse(body, headers=NO_STORE)

    endpoint.__doc__ = f"`GET /api/v1/runs/{{id}}/{key}`: records from byte ?offset= on."
    return endpoint


def read_console(run: RunDir, offset: int, limit: int = CONSOLE_CHUNK, rank: int = 0) -> dict[str, Any]:
    """Text of the run's console.log (or, in a one-run distributed job, another rank's) from
    byte `offset`, cut at a character boundary (a console.log leading outside the run reads
    as none).

    Raises:
        LabtrackValueError: `offset` is past the end.
    """
    try:
        f = unless_outside(lambda: run.open(run.console_relpath(rank)), None)
        if f is None:
            raise FileNotFoundError(layout.CONSOLE_LOG)
        with f:
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
    """`GET /api/v1/runs/{id}/console?offset=0&rank=0`: console.log from a byte offset (a
    one-run distributed job's rank N: ranks/<N>/console.log)."""
    state = state_of(request)
    offset = int_param(request.query_params, "offset", 0, 0, 1 << 62)
    rank = int_param(request.query_params, "rank", 0, 0, 1 << 20)
    run_id = request.path_params["id"]
    body = await run_in_threadpool(lambda: read_console(state.run_dir(run_id), offset, rank=rank))
    return JSONResponse(body, headers=NO_STORE)


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
        Route(f"{API}/scalars", scalars_many),
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
