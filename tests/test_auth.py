"""Tokens: the hashed tokens file, scopes, and refusals that write nothing (in-process).
A real `labtrack serve --tokens` process is tested in test_remote_e2e.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from labtrack._server.auth import TokenAuth, TokenFileError, create_token, hash_token, load_tokens, revoke_token
from labtrack._server.ingest import ingest_routes
from labtrack.cli import main

RUN = "/api/v1/ingest/mnist/20261121-141503-k3f9qz"


def call(app: Any, method: str, url: str, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, url, headers=headers, **kw)

    return asyncio.run(go())


def test_tokens_are_stored_hashed_with_scopes(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    tok = create_token(f, "alice", ["write"])
    assert tok.startswith("lt_") and len(tok) > 40
    text = f.read_text()
    assert tok not in text
    assert hash_token(tok) in text
    assert os.stat(f).st_mode & 0o777 == 0o600
    entries = load_tokens(f)
    assert [(e["name"], e["scopes"]) for e in entries] == [("alice", ["write"])]
    with pytest.raises(TokenFileError, match="already exists"):
        create_token(f, "alice", ["read"])
    with pytest.raises(TokenFileError, match="not allowed"):
        create_token(f, "bob", ["superuser"])
    assert create_token(f, "bob", ["read"]) != tok
    revoke_token(f, "alice")
    assert [e["name"] for e in load_tokens(f)] == ["bob"]
    with pytest.raises(TokenFileError, match="no token named"):
        revoke_token(f, "alice")


def test_a_broken_tokens_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    f.write_text('{"tokens": [{"name": 3}]}')
    with pytest.raises(TokenFileError, match="not a labtrack tokens file"):
        load_tokens(f)
    f.write_text("{")
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenAuth(f)


def test_scopes_and_refusals_write_nothing(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    root = tmp_path / "root"
    root.mkdir()
    writer = create_token(f, "ci", ["write"])
    reader = create_token(f, "dash", ["read"])
    admin = create_token(f, "boss", ["admin"])
    app = Starlette(routes=ingest_routes(root, auth=TokenAuth(f)))
    params = {"path": "console.log", "offset": "0"}
    for tok, status in ((None, 401), ("lt_wrong", 401), (writer + "x", 401), (reader, 403)):
        r = call(app, "PUT", f"{RUN}/append", tok, params=params, content=b"x\n")
        assert r.status_code == status, (tok, r.text)
        assert r.json()["error"]
        r = call(app, "PUT", f"{RUN}/file", tok, params={"path": "run.json"}, content=b"{}")
        assert r.status_code == status
        r = call(app, "GET", f"{RUN}/sizes", tok)
        assert r.status_code == status
    assert list(root.rglob("*")) == []
    r = call(app, "PUT", f"{RUN}/append", writer, params=params, content=b"x\n")
    assert r.status_code == 200
    r = call(app, "PUT", f"{RUN}/append", admin, params={**params, "offset": "2"}, content=b"y\n")
    assert r.status_code == 200
    assert (root / "mnist/20261121-141503-k3f9qz/console.log").read_bytes() == b"x\ny\n"
    # Scheme must be Bearer.
    async def basic() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get(f"{RUN}/sizes", headers={"Authorization": f"Basic {writer}"})
    assert asyncio.run(basic()).status_code == 401


def test_tokens_created_or_revoked_while_serving_take_effect(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    create_token(f, "first", ["write"])
    now = [0.0]
    auth = TokenAuth(f, clock=lambda: now[0])
    late = create_token(f, "late", ["write"])
    assert auth.scopes_of(late) is None  # checked at most once a second
    now[0] = 2.0
    assert auth.scopes_of(late) == {"read", "write"}
    revoke_token(f, "late")
    now[0] = 4.0
    assert auth.scopes_of(late) is None


def test_token_cli_prints_the_token_once(tmp_path: Path) -> None:
    f = tmp_path / "tokens.json"
    r = CliRunner().invoke(main, ["token", "create", "alice", "--write", "--tokens", str(f)])
    assert r.exit_code == 0, r.output
    tok = r.stdout.strip()
    assert tok.startswith("lt_")
    assert TokenAuth(f).scopes_of(tok) == {"read", "write"}
    r = CliRunner().invoke(main, ["token", "list", "--tokens", str(f)])
    assert r.exit_code == 0 and "alice\twrite" in r.stdout and tok not in r.stdout
    r = CliRunner().invoke(main, ["token", "create", "alice", "--read", "--tokens", str(f)])
    assert r.exit_code == 1 and "already exists" in r.output
    r = CliRunner().invoke(main, ["token", "revoke", "alice", "--tokens", str(f)])
    assert r.exit_code == 0
    assert json.loads(f.read_text())["tokens"] == []


def test_the_login_cookie_reads_but_never_writes(tmp_path: Path) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from labtrack._server.auth import COOKIE, login_routes

    f = tmp_path / "tokens.json"
    admin = create_token(f, "boss", ["admin"])
    auth = TokenAuth(f)

    async def read(request: Request) -> JSONResponse:
        auth(request, "read")
        return JSONResponse({"ok": True})

    root = tmp_path / "root"
    app = Starlette(routes=[*login_routes(auth), Route("/api/v1/runs", read),
                            *ingest_routes(root, auth=auth)])

    async def go() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     cookies={COOKIE: admin}) as c:
            return [(await c.get("/api/v1/runs")).status_code,
                    (await c.put(f"{RUN}/append", params={"path": "x.log", "offset": "0"},
                                 content=b"x\n")).status_code,
                    (await c.post("/login", content=b"token=" + b"x" * 5000)).status_code]

    assert asyncio.run(go()) == [200, 401, 400]
    assert not root.exists()
