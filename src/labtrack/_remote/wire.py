"""The client side of the ingest API (docs/api.md, "Ingest API"), behind a transport seam.

`WireClient` speaks the protocol; a `Transport` moves bytes. The default transport is
httpx; tests may pass any object with the same `request` method (for example one that
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
from typing import Any, Iterable, Iterator, Mapping, Protocol, Union
from urllib.parse import quote

from ..errors import RemoteError

API_VERSION = 1
CLIENT_NAME = "labtrack"

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


class HttpxTransport:
    """The default transport: one pooled httpx client with bounded timeouts."""

    def __init__(self, base_url: str, *, timeout: float = 20.0, connect_timeout: float = 3.0) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout),
            follow_redirects=False,
            trust_env=False,
        )

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                content: Body = None, headers: Mapping[str, str] | None = None) -> WireResponse:
        """Send one request; network failures become :class:`Unavailable`."""
        try:
            r = self._client.request(method, path, params=dict(params or {}), content=content,
                                     headers=dict(headers or {}))
            return WireResponse(r.status_code, r.content)
        except self._httpx.HTTPError as e:
            raise Unavailable(f"{type(e).__name__}: {e or 'no answer'}") from None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


@dataclass
class Op:
    """One operation of a batch: append bytes at an offset, or put a whole (small) file."""

    op: str  # "append" or "put"
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
        transport: the seam; default :class:`HttpxTransport`.
    """

    def __init__(self, url: str, token: str | None = None, *, transport: Transport | None = None,
                 timeout: float = 20.0) -> None:
        self.url = url.rstrip("/")
        self._transport: Transport = transport or HttpxTransport(self.url, timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

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
                       params={"path": path, "offset": str(offset)}, content=data, ok=(200, 409))
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
