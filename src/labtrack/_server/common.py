"""What the server's routes share: JSON answers, errors, the app's state, query parameters and
the run files a request may read.

Imports run one way: `app` builds the application from the routes (`api`, `stream`,
`ingest`, `static`, `auth`); the routes stand on this module; this module stands on `state`
and `_store`. No route imports `app` or another route.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from .._store.contain import OutsideRootError
from .._store.rundir import RunDir
from ..errors import LabtrackValueError
from .state import ServerState

if TYPE_CHECKING:  # numpy is imported where series are read: listing runs does without it
    import numpy as np
    import numpy.typing as npt

API = "/api/v1"
NO_STORE = {"Cache-Control": "no-store"}
T = TypeVar("T")


# -- JSON


def _safe(obj: Any) -> Any:
    """Replace non-finite floats by "NaN", "Infinity", "-Infinity" (JSON has no literal)."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {str(k): _safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_safe(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with non-finite floats as strings (never invalid JSON).

    Example:
        >>> dumps({"v": float("nan")})
        b'{"v":"NaN"}'
    """
    return json.dumps(_safe(obj), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"), default=str).encode("utf-8")


class JSONResponse(Response):
    """A JSON response that never emits NaN or Infinity literals."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error(status: int, message: str) -> JSONResponse:
    """The API's error answer: `{"error": message}` (never cached)."""
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def floats(arr: npt.NDArray[np.float64]) -> list[Any]:
    """A float array as a JSON-ready list (non-finite values as "NaN"/"Infinity"/"-Infinity")."""
    import numpy as np

    out: list[Any] = arr.tolist()
    if not np.isfinite(arr).all():
        for i in np.flatnonzero(~np.isfinite(arr)).tolist():
            v = out[i]
            out[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return out


# -- the request


def state_of(request: Request, scope: str | None = "read") -> ServerState:
    """The app's :class:`ServerState`, after checking `scope` with the app's auth hook.

    Raises:
        HTTPException: 401/403 from the auth hook.
    """
    state: ServerState = request.app.state.labtrack
    if scope is not None and state.auth is not None:
        state.auth(request, scope)
    return state


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi] (`default` when absent).

    Raises:
        LabtrackValueError: not a whole number in the range (the message names both).
    """
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
    """An optional finite number query parameter.

    Raises:
        LabtrackValueError: not a finite number.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise LabtrackValueError(f"{name}={raw!r} is not allowed; use a finite number such as 100 or 1.5e3")
    return value


def required(params: Mapping[str, str], name: str, example: str) -> str:
    """A required query parameter.

    Raises:
        LabtrackValueError: it is missing or empty.
    """
    raw = params.get(name)
    if not raw:
        raise LabtrackValueError(f"the query parameter {name} is missing; for example ?{name}={example}")
    return raw


# -- run files


def _outside(relpath: str, what: str) -> OutsideRootError:
    # The store's message names the server's folders; a client learns only the path it sent.
    return OutsideRootError(f"{what} {relpath!r} leads outside the run directory (through a symlink); "
                            "only files inside the run can be read")


def run_file(run: RunDir, relpath: str, what: str = "path") -> Path:
    """The checked path of a file the client named (see :meth:`RunDir.file`).

    Raises:
        LabtrackNameError: a malformed path.
        OutsideRootError: it resolves outside the run (the message names no server folder).
    """
    try:
        return run.file(relpath, what)
    except OutsideRootError:
        raise _outside(relpath, what) from None


def open_run_file(run: RunDir, relpath: str, what: str = "path") -> IO[bytes]:
    """Open a file of the run for reading (checked; the resolved path is opened).

    Raises:
        FileNotFoundError: no such file.
        OutsideRootError: it resolves outside the run (the message names no server folder).
    """
    try:
        return run.open(relpath)
    except OutsideRootError:
        raise _outside(relpath, what) from None


def empty() -> dict[str, Any]:
    """A new empty dict (the default of a JSON object file that is absent)."""
    return {}


def unless_outside(read: Callable[[], T], default: T) -> T:
    """`read()`, or `default` when the file it reads leads outside the run: such a file is
    not part of the run, so a whole-run view (detail, console, stream) shows it as absent."""
    try:
        return read()
    except OutsideRootError:
        return default


# -- run rows


def public_row(row: dict[str, Any], columns: str | None) -> dict[str, Any]:
    """A run row as the API shows it: no server paths, params/metrics limited to `columns`."""
    row = {k: v for k, v in row.items() if k not in ("dir", "stats", "pid")}
    if columns is not None:
        wanted = {c.strip() for c in columns.split(",") if c.strip()}
        row["params"] = {k: v for k, v in row.get("params", {}).items() if f"params.{k}" in wanted}
        row["metrics"] = {k: v for k, v in row.get("metrics", {}).items() if f"metrics.{k}" in wanted}
    return row


def run_row_now(state: ServerState, run: RunDir) -> dict[str, Any]:
    """The run row (docs/api.md) of one run, read from its files now (not the index), with
    its duration to now (running) or to its last sign of life (crashed).

    Raises:
        FileNotFoundError: no run.json (any more).
        FormatError: run.json cannot be read.
    """
    from .._index import run_row

    meta = run.meta()
    row, _ = run_row(meta, unless_outside(run.params, empty()), unless_outside(run.summary, empty()))
    row["duration"] = run.duration(meta, now=state.clock())
    return public_row(row, None)
