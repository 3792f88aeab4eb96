"""The one ASGI application: read API, live stream, (optionally) ingest, and the front end.

`create_app(root)` builds it; `bind(host, port)` opens the listening socket (a clear error
when the port is taken) and `serve(app, sock)` runs uvicorn on it so that live streams end
and the process exits cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import LabtrackError, LabtrackValueError, RunNotFoundError
from .state import ServerState

log = logging.getLogger("labtrack.server")


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
    """Compact UTF-8 JSON with non-finite floats as strings (never invalid JSON)."""
    import json

    return json.dumps(_safe(obj), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"), default=str).encode("utf-8")


class JSONResponse(Response):
    """A JSON response that never emits NaN or Infinity literals."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error(status: int, message: str) -> JSONResponse:
    """The API's error answer: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status,
                        headers={"Cache-Control": "no-store"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=headers)


async def _labtrack_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RunNotFoundError):
        return error(404, str(exc))
    if isinstance(exc, (LabtrackValueError, ValueError)):
        return error(400, str(exc))
    log.exception("error answering %s", request.url.path)
    return error(500, f"{type(exc).__name__}: {exc}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("error answering %s", request.url.path, exc_info=exc)
    return error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _preload(state: ServerState) -> None:
    """Work the first requests would otherwise wait for: build or refresh the run index
    (seconds for 10,000 runs) and import pyarrow (a second or more)."""
    try:
        if state.root.is_dir():
            state.index()
    except Exception as e:  # sqlite3, OSError, FormatError: the first /runs request says it too
        if not state.shutdown.is_set():  # (closing the index mid-build is no news)
            log.warning("could not read the run index at start: %s: %s", type(e).__name__, e)
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency; the first chart request will say so
        pass


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class HostCheck:
    """Refuse requests whose Host header is not one of `allowed` (any port).

    A server on 127.0.0.1 is still reachable from a web page through DNS rebinding (a
    hostile name that resolves to 127.0.0.1); such requests carry the hostile name in Host.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = ""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value.decode("latin-1").lower()
                    break
            name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
            if name not in self.allowed:
                response = JSONResponse(
                    {"error": f"Host {host!r} is not allowed; open the dashboard as "
                              f"http://127.0.0.1:<port>/ (allowed hosts: {', '.join(sorted(self.allowed))})"},
                    status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(root: str | Path, *, auth: Callable[[Request, str], None] | None = None,
               extra_routes: Sequence[BaseRoute] = (), static_dir: Path | None = None,
               allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """Build the dashboard application over the runs in `root`.

    Args:
        root: the folder of experiments (it may not exist yet; runs appear when written).
        auth: called as `auth(request, "read")` for every /api/v1 request except health;
            raises `starlette.exceptions.HTTPException(401 or 403)` to refuse it.
        extra_routes: more routes (the ingest API of `labtrack serve`), matched before the
            front end's catch-all route.
        static_dir: the built front end (default: the package's `_server/static`).
        allowed_hosts: answer only requests whose Host header names one of these (a server
            on 127.0.0.1 passes LOOPBACK_NAMES, which stops DNS-rebinding pages); None
            accepts any Host.

    Returns:
        A Starlette application; its state holds a :class:`ServerState` as `labtrack`.

    Example:
        >>> app = create_app("labtrack")
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8765)
    """
    from . import api, static, stream

    state = ServerState(root, auth=auth)
    routes: list[BaseRoute] = [*api.routes(), *stream.routes(), *extra_routes, *api.fallback_routes()]
    routes += static.routes(static_dir if static_dir is not None else static.DEFAULT_DIR)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=_preload, args=(state,), name="labtrack-preload", daemon=True).start()
        try:
            yield
        finally:
            state.shutdown.set()
            state.close()

    app = Starlette(
        routes=routes,
        exception_handlers={
            **api.ERROR_HANDLERS,
            HTTPException: _http_error,
            LabtrackError: _labtrack_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
        middleware=[Middleware(HostCheck, allowed=allowed_hosts)] if allowed_hosts else None,
    )
    app.state.labtrack = state
    return app


def bind(host: str = "127.0.0.1", port: int = 8765) -> socket.socket:
    """A listening TCP socket for :func:`serve` (port 0 picks a free port).

    Raises:
        LabtrackValueError: the address cannot be used (port taken, unknown host).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LabtrackValueError(f"cannot listen on host {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise LabtrackValueError(
            f"cannot listen on {host}:{port}: {e.strerror}; pick another --port "
            "(or 0 for any free one)"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(app: Starlette, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Run `app` under uvicorn on a socket from :func:`bind` until Ctrl-C or SIGTERM.

    Live streams are told to end as soon as the signal arrives (uvicorn alone would wait for
    them forever), and the signal ends the process normally, without a traceback.

    Args:
        app: an application from :func:`create_app`.
        sock: the listening socket.
        log_level: uvicorn's log level.
    """
    import uvicorn

    state: ServerState = app.state.labtrack

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.shutdown.set()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=3,
                            access_log=False, lifespan="on")
    server = _Server(config)
    # uvicorn re-raises a caught signal once it has stopped; a quiet handler makes that a
    # clean exit instead of a KeyboardInterrupt traceback or death by SIGTERM.
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
