"""The one ASGI application: read API, live stream, (optionally) ingest, and the front end.

`create_app(root)` builds it; `bind(host, port)` opens the listening socket (a clear error
when the port is taken) and `serve(app, sock)` runs uvicorn on it so that live streams end
and the process exits cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
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

from .._remote.wire import CLIENT_HEADER
from ..errors import LabtrackError, LabtrackValueError, RunNotFoundError
from .common import JSONResponse, error
from .state import ServerState

log = logging.getLogger("labtrack.server")


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


def _is_ip_literal(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_header(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            return str(value.decode("latin-1").lower())
    return ""


def _host_name(host: str) -> str:
    """The name part of a Host header: `[::1]:8765` -> `::1`, `a.lab:80` -> `a.lab`."""
    return host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]


class HostCheck:
    """Refuse requests whose Host header is not one of `allowed` (any port).

    A server on 127.0.0.1 is still reachable from a web page through DNS rebinding (a
    hostile name that resolves to 127.0.0.1); such requests carry the hostile name in Host.
    An IP address in Host cannot come from rebinding (the page's origin is then that
    address), so a server bound to every interface may pass `allow_ip_literals`.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str], allow_ip_literals: bool = False) -> None:
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed}
        self.allow_ip_literals = allow_ip_literals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _host_header(scope)
            name = _host_name(host)
            if name not in self.allowed and not (self.allow_ip_literals and _is_ip_literal(name)):
                response = JSONResponse(
                    {"error": f"Host {host[:100]!r} is not allowed; open the dashboard as "
                              f"http://127.0.0.1:<port>/ (allowed hosts: {', '.join(sorted(self.allowed))}"
                              f"{', any IP address' if self.allow_ip_literals else ''}; "
                              "`labtrack serve --allowed-host NAME` adds a name)"},
                    status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_loopback_address(host: str) -> bool:
    import ipaddress

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def local_writes_only(request: Request, scope: str) -> None:
    """The `auth` of `labtrack ui` (no tokens): anyone who reaches it may read, but changes
    (a run's comment, tags, notes) are taken only from this machine. A dashboard started
    with `--host 0.0.0.0` so colleagues can look is thus not one they can edit.

    Raises:
        HTTPException: 403 for a write from another machine.
    """
    if scope == "read":
        return
    client = request.client.host if request.client is not None else ""
    if not _is_loopback_address(client):
        raise HTTPException(403, f"labtrack ui takes changes only from this machine, not from "
                                 f"{client or 'an unknown address'}; it has no login (to let others "
                                 "change runs use `labtrack serve --tokens` and a token with the "
                                 "write scope)")


WRITE_TYPES = ("application/json", "application/octet-stream")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin_key(scheme: str, host: str) -> str:
    """`scheme://host[:port]` lower-cased, without the scheme's default port."""
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme).lower()
    host = host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(":" + default) and not host.endswith("]"):
        host = host[: -len(default) - 1]
    return f"{scheme}://{host}"


class RequestGuard:
    """Refuse what a page of another web site could make a browser send here.

    * An `Origin` header, when present, must be this server's own origin (the scheme and
      the Host the request came to); anything else (another site, `null`) is answered 403.
    * A request that may change state (any method but GET, HEAD, OPTIONS) must carry the
      `X-Labtrack-Client` header, and a body's Content-Type, when given, must be
      application/json or application/octet-stream. A browser sends neither to another
      origin without a CORS preflight, which this server never grants (it sends no
      Access-Control-* header), so no form, `text/plain` or `no-cors` fetch of a page
      elsewhere can write, log in or out. Python clients (labtrack's shipper, curl) send the
      header and are not affected by CORS.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            message = self._refusal(scope)
            if message is not None:
                status, text = message
                await JSONResponse({"error": text}, status_code=status,
                                   headers={"Cache-Control": "no-store"})(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> tuple[int, str] | None:
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key, value)
        origin = headers.get(b"origin")
        own = _origin_key(str(scope.get("scheme", "http")), _host_header(scope))
        if origin is not None:
            given = origin.decode("latin-1")
            scheme, sep, rest = given.partition("://")
            if not sep or _origin_key(scheme, rest.rstrip("/")) != own:
                return 403, (f"requests from origin {given[:100]!r} are refused: this server "
                             f"answers only pages of its own origin {own!r}")
        method = str(scope.get("method", "GET")).upper()
        if scope["type"] != "http" or method in _SAFE_METHODS:
            return None
        if not headers.get(CLIENT_HEADER.lower().encode()):
            return 403, (f"{method} needs the {CLIENT_HEADER} header (any value, e.g. "
                         f"'{CLIENT_HEADER}: curl'): it keeps other web sites' pages from "
                         "writing here")
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
        if ctype and ctype not in WRITE_TYPES:
            return 415, (f"Content-Type {ctype[:80]!r} is not accepted for {method}; send "
                         f"{' or '.join(WRITE_TYPES)}")
        return None


def create_app(root: str | Path, *, auth: Callable[[Request, str], None] | None = None,
               extra_routes: Sequence[BaseRoute] = (), static_dir: Path | None = None,
               allowed_hosts: Sequence[str] | None = None,
               allow_ip_hosts: bool = False, index: str | None = None) -> Starlette:
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
        allow_ip_hosts: also accept any IP address as Host (a server bound to every
            interface: no rebinding page can send one).
        index: the run index: None (SQLite under the root), a SQLite file, or
            postgresql://user@host/db (`_index_pg`).

    Every request also passes :class:`RequestGuard`: a foreign Origin is refused, and a
    request that may change state needs the X-Labtrack-Client header and a JSON or
    octet-stream body.

    Returns:
        A Starlette application; its state holds a :class:`ServerState` as `labtrack`.

    Example:
        >>> app = create_app("labtrack")
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8765)
    """
    from . import api, edit, static, stream

    state = ServerState(root, auth=auth, index_url=index)
    routes: list[BaseRoute] = [*api.routes(), *edit.routes(), *stream.routes(), *extra_routes,
                               *api.fallback_routes()]
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
        middleware=[
            *([Middleware(HostCheck, allowed=allowed_hosts, allow_ip_literals=allow_ip_hosts)]
              if allowed_hosts else []),
            Middleware(RequestGuard),
        ],
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
