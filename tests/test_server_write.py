"""The write API (`PATCH /api/v1/runs/{id}/meta`): a run's comment, tags and notes changed
from the browser. In process through httpx's ASGI transport for what `labtrack ui` answers,
and a real `labtrack serve --tokens` on a free port for tokens and cross-site requests; the
run directories are real and compared byte for byte where nothing may change."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_remote_e2e import Server, free_port
from test_server_security import snapshot

import labtrack
from labtrack._remote.wire import CLIENT_HEADER
from labtrack._server.app import LOOPBACK_NAMES, create_app, local_writes_only
from labtrack._server.auth import create_token

JSON = {"Content-Type": "application/json", CLIENT_HEADER: "test"}


def make_run(root: Path, name: str = "base", finish: bool = True) -> Any:
    run = labtrack.init("exp", name=name, root=root, comment="first", tags=["cnn"],
                        capture_git=False, capture_console=False)
    run.log({"loss": 1.0})
    if finish:
        run.finish()
    return run


def patch(app: Any, run_id: str, body: Any, headers: dict[str, str] | None = None,
          raw: bytes | None = None, client: str = "127.0.0.1") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as c:
            return await c.patch(f"/api/v1/runs/{run_id}/meta", headers=headers if headers is not None else JSON,
                                 content=raw if raw is not None else json.dumps(body).encode())

    return asyncio.run(go())


def get(app: Any, url: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as c:
            return await c.get(url)

    return asyncio.run(go())


@pytest.fixture
def ui_app(tmp_path: Path) -> Any:
    app = create_app(tmp_path / "root", auth=local_writes_only, allowed_hosts=LOOPBACK_NAMES)
    yield app
    app.state.labtrack.close()


def test_comment_tags_and_notes_are_written_and_read_back(tmp_path: Path, ui_app: Any) -> None:
    run = make_run(tmp_path / "root")
    r = patch(ui_app, run.id, {"comment": "stride fix\nsecond line", "tags": ["cnn", "best", "cnn"],
                               "notes": "# Why\n\n* lr **0.1**\n"})
    assert r.status_code == 200, r.text
    assert r.json() == {"id": run.id, "comment": "stride fix\nsecond line", "tags": ["cnn", "best"],
                        "notes": "# Why\n\n* lr **0.1**\n"}
    meta = json.loads((run.dir / "run.json").read_text())
    assert meta["comment"] == "stride fix\nsecond line" and meta["tags"] == ["cnn", "best"]
    assert meta["status"] == "finished" and meta["name"] == "base"  # every other key kept
    assert (run.dir / "notes.md").read_text() == "# Why\n\n* lr **0.1**\n"
    detail = get(ui_app, f"/api/v1/runs/{run.id}").json()
    assert (detail["comment"], detail["tags"], detail["notes"]) == (
        "stride fix\nsecond line", ["cnn", "best"], "# Why\n\n* lr **0.1**\n")
    # The listing shows the new tags at once (no wait for the index's background refresh).
    rows = get(ui_app, "/api/v1/runs").json()["runs"]
    assert rows[0]["tags"] == ["cnn", "best"] and rows[0]["comment"] == "stride fix\nsecond line"
    assert get(ui_app, "/api/v1/runs?q=best").json()["total"] == 1
    # One field alone leaves the others; empty notes remove notes.md.
    r = patch(ui_app, run.id, {"notes": ""})
    assert r.status_code == 200 and r.json()["tags"] == ["cnn", "best"]
    assert not (run.dir / "notes.md").exists()
    r = patch(ui_app, run.id, {"tags": []})
    assert r.json()["tags"] == [] and r.json()["comment"] == "stride fix\nsecond line"


def test_bad_input_is_a_4xx_that_names_the_problem_and_changes_nothing(tmp_path: Path, ui_app: Any) -> None:
    run = make_run(tmp_path / "root")
    live = make_run(tmp_path / "root", "live", finish=False)
    try:
        # the live run's writer keeps writing its own files (env, heartbeat): compare what an
        # edit would touch
        before = snapshot(run.dir), (live.dir / "run.json").read_bytes()
        cases: list[tuple[Any, int, str]] = [
            ({"tags": ["ok", "bad\x07tag"]}, 400, "control characters"),
            ({"tags": ["x" * 101]}, 400, "1 to 100 characters"),
            ({"tags": [""]}, 400, "1 to 100 characters"),
            ({"tags": "cnn"}, 400, "must be a list"),
            ({"tags": [str(i) for i in range(101)]}, 400, "too many"),
            ({"comment": "x" * 10_001}, 400, "at most 10,000 characters"),
            ({"comment": 5}, 400, "comment 5 is not allowed"),
            ({"comment": "ok", "notes": "a\x00b"}, 400, "notes"),  # nothing written, comment neither
            ({"notes": "n" * 1_000_001}, 400, "at most 1,000,000"),
            ({"colour": "red"}, 400, "unknown field"),
            ({}, 400, "nothing to change"),
            ([1, 2], 400, "JSON object"),
        ]
        for body, status, words in cases:
            r = patch(ui_app, run.id, body)
            assert r.status_code == status and words in r.json()["error"], (body, r.status_code, r.text[:300])
        r = patch(ui_app, run.id, None, raw=b'{"comment": ')
        assert r.status_code == 400 and "not JSON" in r.json()["error"]
        r = patch(ui_app, run.id, None, raw=b"[" * 100_000)
        assert r.status_code == 400
        r = patch(ui_app, run.id, None, raw=b'{"notes": "' + b"x" * (5 << 20) + b'"}')
        assert r.status_code == 413 and "at most" in r.json()["error"]
        r = patch(ui_app, "20990101-000000-nosuch", {"comment": "x"})
        assert r.status_code == 404 and "no run with id" in r.json()["error"]
        r = patch(ui_app, "../../etc", {"comment": "x"})
        assert r.status_code in (404, 405), r.text
        r = patch(ui_app, live.id, {"tags": ["late"]})
        assert r.status_code == 409 and "still running" in r.json()["error"], r.text
        assert (snapshot(run.dir), (live.dir / "run.json").read_bytes()) == before
        assert not (live.dir / "notes.md").exists()
        # A live run's notes are no writer's: they may be written.
        r = patch(ui_app, live.id, {"notes": "looks good so far"})
        assert r.status_code == 200 and (live.dir / "notes.md").read_text() == "looks good so far"
    finally:
        live.finish()


def test_what_another_site_could_send_is_refused_by_labtrack_ui(tmp_path: Path, ui_app: Any) -> None:
    run = make_run(tmp_path / "root")
    before = snapshot(tmp_path / "root")
    body = {"comment": "planted"}
    for headers, status, words in (
        ({"Content-Type": "application/json"}, 403, CLIENT_HEADER),  # a no-cors fetch: no custom header
        ({"Content-Type": "text/plain", CLIENT_HEADER: "x"}, 415, "text/plain"),
        ({"Content-Type": "application/x-www-form-urlencoded", CLIENT_HEADER: "x"}, 415, "form"),
        ({"Content-Type": "multipart/form-data; boundary=b", CLIENT_HEADER: "x"}, 415, "multipart"),
        ({**JSON, "Origin": "http://evil.example"}, 403, "evil.example"),
        ({**JSON, "Origin": "null"}, 403, "'null'"),
        ({**JSON, "Origin": "http://127.0.0.1:8766"}, 403, "origin"),
        ({**JSON, "Host": "rebind.evil.example:8765"}, 400, "not allowed"),
    ):
        r = patch(ui_app, run.id, body, headers=headers)
        assert r.status_code == status and words in r.text, (headers, r.status_code, r.text)
    assert snapshot(tmp_path / "root") == before
    # `labtrack ui --host 0.0.0.0` lets others read, not change (the Host is an IP literal then).
    r = patch(ui_app, run.id, body, headers={**JSON, "Host": "127.0.0.1:8765"}, client="10.1.2.3")
    assert r.status_code == 403 and "only from this machine" in r.json()["error"], r.text
    assert get(ui_app, f"/api/v1/runs/{run.id}").status_code == 200
    assert patch(ui_app, run.id, body, client="::ffff:10.1.2.3").status_code == 403
    assert snapshot(tmp_path / "root") == before
    # The dashboard's own page (same origin) may write, from this machine.
    assert patch(ui_app, run.id, {"tags": ["v6"]}, client="::1").status_code == 200
    r = patch(ui_app, run.id, body, headers={**JSON, "Origin": "http://127.0.0.1:8765"})
    assert r.status_code == 200 and r.json()["comment"] == "planted"


@pytest.fixture
def token_server(tmp_path: Path) -> Any:
    root = tmp_path / "root"
    run = make_run(root)
    tokens = tmp_path / "tokens.json"
    write = create_token(tokens, "writer", ["write"])
    read = create_token(tokens, "viewer", ["read"])
    srv = Server(root, free_port(), tmp_path / "serve.log", "--tokens", str(tokens))
    srv.start()
    yield srv, run, write, read
    srv.kill()


def test_a_token_server_needs_a_write_token_sent_as_bearer(tmp_path: Path, token_server: Any) -> None:
    srv, run, write, read = token_server
    before = snapshot(tmp_path / "root")
    url = f"{srv.url}/api/v1/runs/{run.id}/meta"
    body = json.dumps({"tags": ["planted"]})
    with httpx.Client(timeout=30) as c:
        r = c.patch(url, headers=JSON, content=body)
        assert r.status_code == 401 and "needs a token" in r.json()["error"], r.text
        r = c.patch(url, headers={**JSON, "Authorization": "Bearer lt_unknown"}, content=body)
        assert r.status_code == 401 and "not known" in r.json()["error"]
        r = c.patch(url, headers={**JSON, "Authorization": f"Bearer {read}"}, content=body)
        assert r.status_code == 403 and "'write' scope" in r.json()["error"]
        # The login cookie (what a browser holds) never grants writing, even with a write token.
        r = c.patch(url, headers={**JSON, "Cookie": f"labtrack_token={write}"}, content=body)
        assert r.status_code == 401
        # A write token from a page of another origin, or in a form post, is refused too.
        r = c.patch(url, headers={**JSON, "Authorization": f"Bearer {write}", "Origin": "http://evil.example"},
                    content=body)
        assert r.status_code == 403 and "evil.example" in r.json()["error"]
        r = c.patch(url, headers={"Content-Type": "application/x-www-form-urlencoded", CLIENT_HEADER: "x",
                                  "Authorization": f"Bearer {write}"}, content=b"tags=planted")
        assert r.status_code == 415
        assert snapshot(tmp_path / "root") == before
        r = c.patch(url, headers={**JSON, "Authorization": f"Bearer {write}", "Origin": srv.url}, content=body)
        assert r.status_code == 200 and r.json()["tags"] == ["planted"], r.text
        listed = c.get(f"{srv.url}/api/v1/runs", headers={"Authorization": f"Bearer {read}"}).json()
        assert listed["runs"][0]["tags"] == ["planted"]
    assert json.loads((run.dir / "run.json").read_text())["tags"] == ["planted"]
    assert not re.search(r"Traceback", srv.output()), srv.output()
