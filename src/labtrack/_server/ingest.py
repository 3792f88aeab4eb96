"""The ingest API (docs/api.md, "Ingest API"): remote clients replicate run directories here.

Every request names the run as ``/api/v1/ingest/{experiment}/{id}/...`` and a file by its
path inside the run directory. Experiment and id must be plain folder names; a path is
checked like a logged name (no ``..``, no absolute path, no control characters), must not
name a temporary file, and must resolve inside the run directory (`_store.contain`: an
experiment folder, run folder or file that is a symlink out of the root is refused), else
the request answers 4xx and writes nothing: every part of a request is checked before the
first byte is written. Appends happen only at the file's current size (else 409 with the
size), under an exclusive lock, so concurrent or repeated requests never duplicate data.
Rewritten files are replaced atomically and keep the client's modification time.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, BinaryIO, Callable, Optional

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._remote.upload import is_temp_name, scan_files
from .._store.contain import real, relpath_in
from .._store.files import atomic_write_bytes, open_append
from .._store.rundir import run_folder
from ..errors import LabtrackNameError

API_VERSION = 1
DEFAULT_MAX_BATCH_BYTES = 16 << 20
DEFAULT_MAX_FILE_BYTES = 1 << 30
# The largest offset, length or modification time (ns) accepted: a signed 64-bit number,
# what the file system's calls take (os.utime overflows beyond it).
MAX_INT = (1 << 63) - 1
_FOLDER = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")

Auth = Callable[[Request, str], Any]


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.path = path


def _clean(text: str) -> str:
    # A lone surrogate sent in a path cannot be encoded into the answer: show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(message: str, status: int, **extra: Any) -> JSONResponse:
    fields = {k: _clean(v) if isinstance(v, str) else v for k, v in extra.items()}
    return JSONResponse({"error": _clean(message), **fields}, status_code=status)


def _version() -> str:
    """This labtrack's version (the package attribute: no metadata scan on a busy thread)."""
    from .. import __version__

    return __version__


def check_folder(value: str, what: str) -> str:
    """An experiment slug or run id: one plain folder name, else :class:`_BadRequest`."""
    if not _FOLDER.match(value):
        raise _BadRequest(
            f"{what} {value[:80]!r} is not allowed; use 1-128 characters from [A-Za-z0-9._-], "
            "not starting with '.'")
    return value


def resolve_path(run_dir: Path, path: str | None, *, planned: _Plan | None = None,
                 deleting: bool = False) -> Path:
    """The file `path` names inside `run_dir`, or :class:`_BadRequest` (nothing is written).

    Refused: a malformed path, a temporary file's name, a path that resolves (through a
    symlink) outside the run, a path under a file (``run.json/x``) and, except for a delete,
    a path that is a folder. `planned` holds what earlier ops of the same batch create.
    """
    if path is None:
        raise _BadRequest("the path parameter is missing; name a file such as scalars/loss.csv")
    try:
        target = relpath_in(run_dir, path, "path")
    except LabtrackNameError as e:
        raise _BadRequest(str(e), path=path) from None
    parts = path.split("/")
    if any(is_temp_name(p) for p in parts):
        raise _BadRequest(f"path {path!r} names a temporary file; send the run's real files only",
                          path=path)
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        on_disk = os.path.lexists(run_dir / prefix) and not os.path.isdir(run_dir / prefix)
        if (planned is not None and prefix in planned.files) or (
                on_disk and not (planned is not None and prefix in planned.deleted)):
            raise _BadRequest(f"path {path!r} cannot be a file: {prefix!r} is a file of this "
                              "run, not a folder", path=path)
    if not deleting and (os.path.isdir(target) or (planned is not None and path in planned.dirs)):
        raise _BadRequest(f"path {path!r} is a folder of this run; send its files", path=path)
    if planned is not None:
        if deleting:
            planned.deleted.add(path)
            planned.files.discard(path)
        else:
            planned.files.add(path)
            planned.dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return target


@dataclass
class _Plan:
    """What the ops of one batch checked so far will create or delete (paths in the run)."""

    files: set[str]
    dirs: set[str]
    deleted: set[str]


def _set_mtime(path: Path, mtime_ns: Optional[int]) -> None:
    # Checked against MAX_INT before anything was written (os.utime overflows beyond it).
    if mtime_ns is not None and mtime_ns > 0:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def append_at(path: Path, offset: int, data: bytes) -> tuple[int, int]:
    """Append `data` when the file's size is `offset`; returns (status, size afterwards).

    The size check and the write happen under an exclusive lock, so two requests for the
    same offset (a retry racing the original) append once.
    """
    fd = open_append(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size != offset:
            return 409, size
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        return 200, size + len(data)
    finally:
        os.close(fd)


def put_whole(path: Path, data: bytes, mtime_ns: Optional[int]) -> int:
    """Replace `path` atomically with `data`, keep the client's mtime; returns the size."""
    atomic_write_bytes(path, data)
    _set_mtime(path, mtime_ns)
    return len(data)


STALE_TEMP_SECONDS = 3600


def delete_file(run_dir: Path, path: Path) -> None:
    """Remove a file and the folders it leaves empty, up to the run directory."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise _BadRequest(f"{path.relative_to(run_dir)} is a folder; delete its files") from None
    except NotADirectoryError:
        return  # a file where a folder of the path would be: the file is not there either
    parent = path.parent
    while parent != run_dir and run_dir in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def run_sizes(run_dir: Path, *, now: float | None = None) -> dict[str, dict[str, int]]:
    """Every file of a run on this server: path -> {"size", "mtime_ns"}.

    Temporary files left by an upload that died with the server (older than an hour) are
    removed on the way; younger ones may belong to an upload in progress.
    """
    import time

    limit = (time.time() if now is None else now) - STALE_TEMP_SECONDS
    for dirpath, _dirs, names in os.walk(run_dir):
        for name in names:
            if is_temp_name(name):
                path = os.path.join(dirpath, name)
                try:
                    if os.stat(path).st_mtime < limit:
                        os.unlink(path)
                except OSError:
                    pass
    return {p: {"size": s, "mtime_ns": m} for p, (s, m) in scan_files(run_dir).items()}


class LocalStorage:
    """Where ingest writes: the run directories under the server's root, on this machine.

    The routes call only these methods after checking a request, so a server that shares
    its runs with other processes (`labtrack._server.shared.SharedStorage`: a bucket and a
    ledger in PostgreSQL) replaces this one object. `run_dir` is the checked, resolved run
    folder, `target` the checked, resolved file and `relpath` its '/'-separated path in the
    run.
    """

    def append(self, run_dir: Path, target: Path, relpath: str, offset: int,
               data: bytes) -> tuple[int, int]:
        """Append at `offset` when that is the file's size: (200 or 409, size afterwards)."""
        return append_at(target, offset, data)

    def put(self, run_dir: Path, target: Path, relpath: str, data: bytes,
            mtime_ns: Optional[int]) -> int:
        """Replace a whole file; returns its size."""
        return put_whole(target, data, mtime_ns)

    def put_from(self, run_dir: Path, target: Path, relpath: str, tmp: Path,
                 mtime_ns: Optional[int]) -> int:
        """Replace `target` with the finished temporary file `tmp` (beside it); its size."""
        size = os.stat(tmp).st_size
        os.replace(tmp, target)
        _set_mtime(target, mtime_ns)
        return size

    def delete(self, run_dir: Path, target: Path, relpath: str) -> None:
        """Remove a file of the run (and the folders it leaves empty)."""
        delete_file(run_dir, target)

    def sizes(self, run_dir: Path) -> dict[str, dict[str, int]]:
        """Every file of the run: path -> {"size", "mtime_ns"}."""
        return run_sizes(run_dir)

    def batch(self, run_dir: Path, ops: list[tuple[dict[str, Any], Path, bytes]]
              ) -> list[dict[str, Any]]:
        """Apply the checked ops of a batch (:func:`parse_batch`) in order; one result
        {"path", "size", "status"} per op. Appends lock their file, so concurrent batches
        stay correct."""
        results = []
        for op, target, data in ops:
            rel = op["path"]
            if op["op"] == "append":
                status, size = self.append(run_dir, Path(real(target)), rel,
                                           int(op.get("offset", 0)), data)
            elif op["op"] == "delete":
                self.delete(run_dir, target, rel)
                status, size = 200, 0
            else:
                status, size = 200, self.put(run_dir, Path(real(target)), rel, data,
                                             op.get("mtime_ns"))
            results.append({"path": rel, "size": size, "status": status})
        return results


@dataclass
class IngestConfig:
    """Limits, access control and storage of the ingest routes."""

    root: Path
    auth: Optional[Auth] = None
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    storage: Any = None  # a LocalStorage or one with its methods; None: LocalStorage()


def _int_param(request: Request, name: str, required: bool) -> Optional[int]:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise _BadRequest(f"the {name} parameter is missing; give a whole number >= 0")
        return None
    try:
        v = int(raw) if len(raw) <= 20 else -1
    except ValueError:
        v = -1
    if not 0 <= v <= MAX_INT:
        raise _BadRequest(f"{name}={raw[:40]!r} is not allowed; give a whole number from 0 "
                          f"to {MAX_INT}")
    return v


def _content_length(request: Request, limit: int) -> Optional[int]:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise _BadRequest(f"Content-Length {raw[:40]!r} is not a number") from None
    if n > limit:
        raise _BadRequest(f"the body has {n} bytes; this server accepts at most {limit} "
                          "bytes per request", status=413)
    return n


async def _read_body(request: Request, limit: int) -> bytes:
    _content_length(request, limit)
    parts: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _BadRequest(f"the body exceeds this server's limit of {limit} bytes",
                              status=413)
        parts.append(chunk)
    return b"".join(parts)


def ingest_routes(root: Path | str, *, auth: Optional[Auth] = None,
                  max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                  storage: Any = None) -> list[Route]:
    """The ingest API's routes, writing run directories under `root`.

    Args:
        root: the server's root of runs (the same the dashboard reads).
        auth: called as ``auth(request, "write")`` before every request; raises
            starlette's HTTPException(401/403) to refuse. None: no tokens (loopback only).
        max_batch_bytes: the largest append or batch request body.
        max_file_bytes: the largest whole file.
        storage: where the checked requests are written (:class:`LocalStorage`, the
            default, or `labtrack._server.shared.SharedStorage` for several servers).

    Example:
        >>> app = Starlette(routes=ingest_routes("/data/labtrack"))
    """
    cfg = IngestConfig(Path(root), auth, max_batch_bytes, max_file_bytes,
                       storage if storage is not None else LocalStorage())

    def handler(fn: Callable[[Request, IngestConfig], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if cfg.auth is not None:
                    cfg.auth(request, "write")
                return await fn(request, cfg)
            except _BadRequest as e:
                extra = {"path": e.path} if e.path is not None else {}
                return _error(str(e), e.status, **extra)
            except HTTPException as e:
                return _error(str(e.detail), e.status_code)
            except OSError as e:
                # A full disk is the server's trouble, not the request's: 507, which the
                # client retries later (like any 5xx); a path clash is the request's: 400.
                if isinstance(e, (IsADirectoryError, NotADirectoryError, FileExistsError)):
                    return _error(f"the server could not write: {e.strerror or e}", 400)
                full = e.errno in (errno.ENOSPC, errno.EDQUOT)
                return _error(f"the server could not write: {e.strerror or e}", 507 if full else 500)

        endpoint.__name__ = fn.__name__
        return endpoint

    return [
        Route("/api/v1/ingest/hello", handler(_hello), methods=["POST"]),
        Route("/api/v1/ingest/{experiment}/{run_id}/sizes", handler(_sizes), methods=["GET"]),
        Route("/api/v1/ingest/{experiment}/{run_id}/append", handler(_append), methods=["PUT"]),
        Route("/api/v1/ingest/{experiment}/{run_id}/file", handler(_file), methods=["PUT"]),
        Route("/api/v1/ingest/{experiment}/{run_id}/batch", handler(_batch), methods=["POST"]),
    ]


def _run_dir(request: Request, cfg: IngestConfig) -> Path:
    """The run folder the request names, resolved; refused (403) when it leads out of the root."""
    exp = check_folder(request.path_params["experiment"], "experiment")
    rid = check_folder(request.path_params["run_id"], "run id")
    try:
        folder = run_folder(cfg.root, exp, rid)
    except LabtrackNameError as e:
        raise _BadRequest(str(e), status=403) from None
    # The resolved folder from here on: what is written is where the check looked.
    return Path(real(folder))


async def _hello(request: Request, cfg: IngestConfig) -> Response:
    body = await _read_body(request, 64 << 10)
    try:
        hello = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise _BadRequest("the hello body is not JSON; send {\"client\", \"version\", \"api\"}") from None
    answer = {"api": API_VERSION, "server": _version(), "max_batch_bytes": cfg.max_batch_bytes,
              "max_file_bytes": cfg.max_file_bytes}
    if not isinstance(hello, dict) or hello.get("api") != API_VERSION:
        got = hello.get("api") if isinstance(hello, dict) else None
        return JSONResponse({**answer, "error": f"this server speaks ingest API {API_VERSION}; "
                             f"the client speaks {got!r}: install matching labtrack versions"},
                            status_code=409)
    return JSONResponse(answer)


async def _sizes(request: Request, cfg: IngestConfig) -> Response:
    run_dir = _run_dir(request, cfg)
    return JSONResponse({"files": await run_in_threadpool(cfg.storage.sizes, run_dir)})


async def _append(request: Request, cfg: IngestConfig) -> Response:
    run_dir = _run_dir(request, cfg)
    relpath = request.query_params.get("path")
    target = resolve_path(run_dir, relpath)
    assert relpath is not None  # resolve_path refuses a missing path
    offset = _int_param(request, "offset", True)
    assert offset is not None
    data = await _read_body(request, cfg.max_batch_bytes)
    status, size = await run_in_threadpool(cfg.storage.append, run_dir, Path(real(target)),
                                           relpath, offset, data)
    return JSONResponse({"size": size}, status_code=status)


async def _file(request: Request, cfg: IngestConfig) -> Response:
    run_dir = _run_dir(request, cfg)
    relpath = request.query_params.get("path")
    target = Path(real(resolve_path(run_dir, relpath)))
    assert relpath is not None  # resolve_path refuses a missing path
    mtime_ns = _int_param(request, "mtime_ns", False)
    _content_length(request, cfg.max_file_bytes)
    # Stream into a temporary file beside the target, then let the storage put it in place:
    # memory stays bounded whatever the file's size, and a reader never sees a half-written
    # file. Folders made for a file that then fails (too large, client gone) are removed.
    made = _first_missing(target.parent, run_dir)
    tmp = target.parent / f".{secrets.token_hex(6)}.tmp"
    total = 0
    try:
        try:
            with open_new(tmp) as f:
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > cfg.max_file_bytes:
                        raise _BadRequest(f"the file exceeds this server's limit of "
                                          f"{cfg.max_file_bytes} bytes", status=413, path=None)
                    f.write(chunk)
            total = await run_in_threadpool(cfg.storage.put_from, run_dir, target, relpath, tmp,
                                            mtime_ns)
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass
    except BaseException:
        if made is not None:
            _remove_empty(target.parent, made)
        raise
    return JSONResponse({"size": total})


def open_new(path: Path) -> BinaryIO:
    """`path` opened for writing, its folder made first when missing."""
    try:
        return open(path, "xb")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb")


def _first_missing(folder: Path, run_dir: Path) -> Path | None:
    """The outermost folder from `run_dir`'s parent down to `folder` that does not exist yet."""
    missing = None
    for p in (folder, *folder.parents):
        if p == run_dir.parent.parent or os.path.isdir(p):
            break
        missing = p
    return missing


def _remove_empty(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to `stop` (included) while they are empty."""
    for p in (folder, *folder.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == stop:
            return


def parse_batch(body: bytes, run_dir: Path) -> list[tuple[dict[str, Any], Path, bytes]]:
    """Split and check a batch body; every op is validated before anything is written."""
    nl = body.find(b"\n")
    if nl < 0:
        raise _BadRequest("a batch body starts with one JSON line {\"ops\": [...]} and a newline")
    try:
        head = json.loads(body[:nl])
    except (ValueError, RecursionError):
        raise _BadRequest("the first line of the batch body is not JSON") from None
    ops = head.get("ops") if isinstance(head, dict) else None
    if not isinstance(ops, list):
        raise _BadRequest("the batch header has no list \"ops\"")
    pos = nl + 1
    out = []
    plan = _Plan(set(), set(), set())
    for op in ops:
        kind = op.get("op") if isinstance(op, dict) else None
        if not isinstance(op, dict) or not isinstance(kind, str) or kind not in ("append", "put", "delete"):
            raise _BadRequest(f"batch op {json.dumps(op)[:80]} is not allowed; each op is "
                              "{\"op\": \"append\"|\"put\"|\"delete\", \"path\", \"length\", ...}")
        path = op.get("path")
        target = resolve_path(run_dir, path if isinstance(path, str) else None, planned=plan,
                              deleting=kind == "delete")
        length = op.get("length")
        offset = op.get("offset", 0)
        mtime = op.get("mtime_ns")
        for name, v in (("length", length), ("offset", offset), ("mtime_ns", mtime)):
            if name == "mtime_ns" and v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_INT:
                raise _BadRequest(f"batch op for {path!r}: {name} {str(v)[:40]} is not allowed; "
                                  f"give a whole number from 0 to {MAX_INT}",
                                  path=path if isinstance(path, str) else None)
        assert isinstance(length, int)  # checked just above
        if pos + length > len(body):
            raise _BadRequest("the batch body is shorter than its ops' lengths")
        out.append((op, target, body[pos: pos + length]))
        pos += length
    if pos != len(body):
        raise _BadRequest("the batch body is longer than its ops' lengths")
    return out


async def _batch(request: Request, cfg: IngestConfig) -> Response:
    run_dir = _run_dir(request, cfg)
    body = await _read_body(request, cfg.max_batch_bytes)
    ops = parse_batch(body, run_dir)

    # Off the event loop, so live streams and reads stay responsive during big batches.
    return JSONResponse({"results": await run_in_threadpool(cfg.storage.batch, run_dir, ops)})
