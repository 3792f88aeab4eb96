"""The client side of the ingest API (docs/api.md, "Ingest API"), behind a transport seam.

`WireClient` speaks the protocol; a `Transport` moves bytes. The default transport is
the standard library's http.client; tests may pass any object with the same `request` method (for example one that
calls an ASGI app in-process). Failures are sorted into three kinds the callers act on:

* :class:`Unavailable`: the server could not be reached, timed out or answered 5xx;
  retry later with backoff.
* :class:`Refused`: the server understood and said no (401, 403, 400, 413...); retrying
  the same request will not help until something changes.
* :class:`VersionMismatch`: the server speaks another API version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Protocol, Union
from urllib.parse import SplitResult, quote, urlsplit

from ..errors import LabtrackValueError, RemoteError

API_VERSION = 1
CLIENT_NAME = "labtrack"
# Sent with every request: the server refuses state-changing requests without it, because a
# web page of another site cannot send a custom header without a CORS preflight (which the
# server never grants). See docs/api.md, "What the server accepts".
CLIENT_HEADER = "X-Labtrack-Client"

Body = Union[bytes, Iterable[bytes], None]


class Unavailable(RemoteError):
    """The server could not be reached, timed out, or failed (5xx); worth retrying."""


class Refused(RemoteError):
    """The server refused the request (4xx other than a 409 offset conflict)."""

    def __init__(self, message: str, status: int, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.path = path


class VersionMismatch(RemoteError):
    """The server speaks a different version of the API."""


@dataclass
class WireResponse:
    """What a transport hands back: the status and the raw body."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (an empty dict when it is not JSON)."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return {}


class Transport(Protocol):
    """The seam between the protocol and the network."""

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                content: Body = None, headers: Mapping[str, str] | None = None) -> WireResponse:
        """Send one request to `path` (which starts with /api/v1/) and return the answer.

        Raises:
            Unavailable: the server could not be reached or timed out.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def check_url(url: str) -> SplitResult:
    """The parts of a server URL, or a clear error for one that is not http(s)://HOST[:PORT].

    Raises:
        LabtrackValueError: not an http or https URL with a host and a valid port.
    """
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        u = None
    if u is None or u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
        raise LabtrackValueError(f"server URL {url!r} is not allowed; use http://HOST:PORT or "
                                 "https://HOST, such as http://logs.lab:8765")
    return u


class HttpTransport:
    """The default transport: the standard library's http.client, one kept-alive connection.

    Not httpx: importing it and building its TLS context costs close to a second of CPU on
    a loaded machine, on the shipper thread, while the training loop wants the GIL. An
    https:// URL gets the default TLS context, built only then.
    """

    def __init__(self, base_url: str, *, timeout: float = 20.0) -> None:
        u = check_url(base_url)
        self._https = u.scheme == "https"
        self._host = u.hostname or ""
        self._port = u.port
        self._prefix = u.path.rstrip("/")
        self._timeout = timeout
        self._conn: Any = None

    def _connection(self) -> Any:
        import http.client

        if self._conn is None:
            if self._https:
                import ssl

                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout,
                    context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self._timeout)
        return self._conn

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                content: Body = None, headers: Mapping[str, str] | None = None) -> WireResponse:
        """Send one request; network failures become :class:`Unavailable`.

        A kept-alive connection the server has closed meanwhile is retried once on a fresh
        one; that is safe because every ingest request is idempotent (appends are checked
        against the offset).
        """
        import http.client
        from urllib.parse import urlencode

        url = self._prefix + path + ("?" + urlencode(dict(params)) if params else "")
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, url, body=content, headers=dict(headers or {}))
                r = conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return WireResponse(r.status, data)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                replayable = content is None or isinstance(content, bytes)
                if attempt == 0 and reused and replayable and not isinstance(e, TimeoutError):
                    continue
                raise Unavailable(f"{type(e).__name__}: {e or 'no answer'}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, path: str, params: Mapping[str, str], headers: Mapping[str, str],
                 out: BinaryIO) -> WireResponse:
        """GET `path` and write a 200 answer's body to `out` in chunks (memory stays flat).

        Returns:
            The status, and the body only when it is not 200 (an error message).

        Raises:
            Unavailable: the server could not be reached, or the answer broke off.
        """
        import http.client
        from urllib.parse import urlencode

        url = self._prefix + path + ("?" + urlencode(dict(params)) if params else "")
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._connection()
            wrote = False
            try:
                conn.request("GET", url, headers=dict(headers))
                r = conn.getresponse()
                if r.status != 200:
                    return WireResponse(r.status, r.read())
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    wrote = True
                return WireResponse(200, b"")
            except (OSError, http.client.HTTPException) as e:
                self.close()
                # A kept-alive connection the server closed meanwhile: retried once on a fresh
                # one, as request() does, when nothing of the answer was written yet.
                if attempt == 0 and reused and not wrote and not isinstance(e, TimeoutError):
                    continue
                raise Unavailable(f"{type(e).__name__}: {e or 'no answer'}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@dataclass
class Op:
    """One operation of a batch: append bytes at an offset, put a whole (small) file, or
    delete a file."""

    op: str  # "append", "put" or "delete"
    path: str
    data: bytes
    offset: int = 0
    mtime_ns: int | None = None


@dataclass
class OpResult:
    """The server's answer to one operation: its size of the file afterwards, and status."""

    path: str
    size: int
    status: int  # 200 applied, 409 offset conflict (size is the server's size)


@dataclass
class ServerInfo:
    """What the hello handshake returns."""

    api: int
    server: str
    max_batch_bytes: int
    max_file_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


def encode_batch(ops: list[Op]) -> bytes:
    """The batch body: one JSON header line, then the ops' bytes back to back."""
    header = []
    for o in ops:
        h: dict[str, Any] = {"op": o.op, "path": o.path, "length": len(o.data)}
        if o.op == "append":
            h["offset"] = o.offset
        if o.mtime_ns is not None:
            h["mtime_ns"] = o.mtime_ns
        header.append(h)
    head = json.dumps({"ops": header}, separators=(",", ":")).encode("utf-8") + b"\n"
    return head + b"".join(o.data for o in ops)


class WireClient:
    """The ingest protocol for one server.

    Args:
        url: the server, such as ``http://logs.lab:8765``.
        token: sent as ``Authorization: Bearer <token>`` when given.
        transport: the seam; default :class:`HttpTransport`.

    Raises:
        LabtrackValueError: `url` is not an http(s) URL.
    """

    def __init__(self, url: str, token: str | None = None, *, transport: Transport | None = None,
                 timeout: float = 20.0) -> None:
        self.url = url.rstrip("/")
        self._transport: Transport = transport or HttpTransport(self.url, timeout=timeout)
        self._headers = {CLIENT_HEADER: CLIENT_NAME}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Release the transport's connections."""
        self._transport.close()

    def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
              content: Body = None, headers: Mapping[str, str] | None = None,
              ok: tuple[int, ...] = (200,)) -> WireResponse:
        h = dict(self._headers)
        if headers:
            h.update(headers)
        r = self._transport.request(method, path, params=params, content=content, headers=h)
        if r.status in ok:
            return r
        body = r.json()
        msg = body.get("error") if isinstance(body, dict) else None
        text = msg or r.body[:200].decode("utf-8", "replace") or "no message"
        if r.status >= 500 or r.status in (408, 429):
            raise Unavailable(f"{self.url} answered {r.status} to {method} {path}: {text}")
        bad = body.get("path") if isinstance(body, dict) else None
        raise Refused(f"{self.url} refused {method} {path} ({r.status}): {text}", r.status,
                      bad if isinstance(bad, str) else None)

    @staticmethod
    def _run_path(experiment: str, run_id: str, tail: str) -> str:
        return f"/api/v1/ingest/{quote(experiment, safe='')}/{quote(run_id, safe='')}/{tail}"

    def hello(self, version: str) -> ServerInfo:
        """The version handshake.

        Raises:
            VersionMismatch: the server speaks another API version.
            Refused, Unavailable: see the module docstring.
        """
        body = json.dumps({"client": CLIENT_NAME, "version": version, "api": API_VERSION}).encode()
        r = self._call("POST", "/api/v1/ingest/hello", content=body,
                       headers={"Content-Type": "application/json"}, ok=(200, 409))
        data = r.json()
        if not isinstance(data, dict):
            raise Unavailable(f"{self.url} answered the handshake with something that is not JSON")
        if r.status == 409 or data.get("api") != API_VERSION:
            raise VersionMismatch(
                f"the server at {self.url} speaks ingest API {data.get('api')!r} (labtrack "
                f"{data.get('server')!r}); this client speaks {API_VERSION}: install matching versions"
            )
        return ServerInfo(
            api=int(data["api"]), server=str(data.get("server", "?")),
            max_batch_bytes=int(data.get("max_batch_bytes", 4 << 20)),
            max_file_bytes=int(data.get("max_file_bytes", 256 << 20)),
            extra=data,
        )

    def sizes(self, experiment: str, run_id: str) -> dict[str, tuple[int, int]]:
        """The server's files of a run: path -> (size, mtime_ns)."""
        r = self._call("GET", self._run_path(experiment, run_id, "sizes"))
        files = r.json().get("files", {})
        out: dict[str, tuple[int, int]] = {}
        if isinstance(files, dict):
            for p, v in files.items():
                if isinstance(v, dict):
                    out[str(p)] = (int(v.get("size", 0)), int(v.get("mtime_ns", 0)))
        return out

    def batch(self, experiment: str, run_id: str, ops: list[Op]) -> list[OpResult]:
        """Apply several appends and small puts in one request; per-op results."""
        r = self._call("POST", self._run_path(experiment, run_id, "batch"),
                       content=encode_batch(ops),
                       headers={"Content-Type": "application/octet-stream"})
        results = r.json().get("results")
        if not isinstance(results, list) or len(results) != len(ops):
            raise Unavailable(f"{self.url} answered a batch of {len(ops)} with a malformed result")
        return [OpResult(str(x["path"]), int(x["size"]), int(x["status"])) for x in results]

    def append(self, experiment: str, run_id: str, path: str, offset: int, data: bytes) -> OpResult:
        """Append `data` at `offset`; status 409 means the server has another size."""
        r = self._call("PUT", self._run_path(experiment, run_id, "append"),
                       params={"path": path, "offset": str(offset)}, content=data,
                       headers={"Content-Type": "application/octet-stream"}, ok=(200, 409))
        return OpResult(path, int(r.json().get("size", 0)), r.status)

    def put_file(self, experiment: str, run_id: str, path: str, chunks: Iterator[bytes] | bytes,
                 size: int, mtime_ns: int | None = None) -> int:
        """Replace a whole file (streamed); returns the server's size afterwards."""
        params = {"path": path}
        if mtime_ns is not None:
            params["mtime_ns"] = str(mtime_ns)
        r = self._call("PUT", self._run_path(experiment, run_id, "file"), params=params,
                       content=chunks, headers={"Content-Length": str(size),
                                                "Content-Type": "application/octet-stream"})
        return int(r.json().get("size", 0))
