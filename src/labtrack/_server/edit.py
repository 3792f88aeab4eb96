"""The write API of the dashboard: `PATCH /api/v1/runs/{id}/meta` changes a run's comment,
tags and notes (docs/api.md).

The change itself is :func:`labtrack._book.manage.edit` (the one place that rewrites
run.json after the fact and writes notes.md); this module checks who may ask and what was
sent. A request needs the `write` scope (a `labtrack serve --tokens` server: a token with
that scope in `Authorization: Bearer`; the login cookie grants only reading), and, like
every request that may change state, passes the app's RequestGuard: no foreign Origin, the
X-Labtrack-Client header, a JSON body. So a page of another site cannot make a browser
send it. On a server over a bucket (`labtrack serve --root s3://...`) the rewritten files go
to the bucket through the shared storage, so every server and reader sees the edit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .._book import manage
from .._store import layout
from ..errors import LabtrackValueError, RunStateError
from .common import API, NO_STORE, JSONResponse, error, state_of

MAX_BODY = 4 << 20  # notes of 1,000,000 characters, each up to 4 bytes of UTF-8
FIELDS = ("comment", "tags", "notes")


def parse_body(body: bytes) -> dict[str, Any]:
    """The fields of an edit request: a JSON object with some of comment, tags, notes.

    Raises:
        LabtrackValueError: not a JSON object, an unknown field, or none of the fields.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise LabtrackValueError('the body is not JSON; send an object such as '
                                 '{"comment": "stride fix", "tags": ["cnn"], "notes": "# why"}') from None
    if not isinstance(data, dict):
        raise LabtrackValueError(f"the body must be a JSON object with {', '.join(FIELDS)}; "
                                 f"got {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise LabtrackValueError(f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
                                 f"a run's {', '.join(FIELDS)} can be changed")
    fields = {k: v for k, v in data.items() if v is not None}
    if not fields:
        raise LabtrackValueError(f"nothing to change; send at least one of {', '.join(FIELDS)}")
    return fields


async def edit_meta(request: Request) -> Response:
    """`PATCH /api/v1/runs/{id}/meta` with `{"comment"?, "tags"?, "notes"?}`: answers the
    run's comment, tags and notes afterwards; 400 for a bad value, 404 for an unknown run,
    409 for the comment or tags of a running run, 413 for a body over 4 MiB."""
    state = state_of(request, "write")
    run_id = request.path_params["id"]
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_BODY:
        return error(413, f"the body has {int(size):,} bytes; an edit may have at most {MAX_BODY:,}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return error(413, f"the body has more than {MAX_BODY:,} bytes; an edit may have at most that")
    fields = parse_body(body)

    def work() -> dict[str, Any]:
        run = state.run_dir(run_id)
        notes_file = run.path / layout.NOTES_MD
        had_notes = notes_file.exists()
        result = manage.edit(run.path, **fields)
        storage = state.storage
        if storage is not None:  # a server over a bucket: the bucket holds the edit too
            publish(storage, run.path, fields, had_notes)
        state.changed(run)
        return result

    try:
        result = await run_in_threadpool(work)
    except RunStateError as e:
        return error(409, str(e))
    return JSONResponse({"id": run_id, **result}, headers=NO_STORE)


def publish(storage: Any, run_dir: Path, fields: dict[str, Any], had_notes: bool) -> None:
    """Send the files an edit rewrote (run.json for comment and tags, notes.md) to shared
    storage (`labtrack._server.shared.SharedStorage`): the bucket, the ledger and, through
    its notification, every other server's copy."""
    changed = [layout.RUN_JSON] if "comment" in fields or "tags" in fields else []
    if "notes" in fields:
        changed.append(layout.NOTES_MD)
    for rel in changed:
        target = run_dir / rel
        try:
            data = target.read_bytes()
        except FileNotFoundError:  # notes cleared
            if had_notes:
                storage.delete(run_dir, target, rel)
            continue
        storage.put(run_dir, target, rel, data, os.stat(target).st_mtime_ns)


def routes() -> list[BaseRoute]:
    """The write API's routes."""
    return [Route(f"{API}/runs/{{id}}/meta", edit_meta, methods=["PATCH"])]
