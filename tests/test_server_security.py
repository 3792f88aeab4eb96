"""`labtrack serve` as an attacker meets it: symlinks out of the root, DNS rebinding, requests
from pages of other origins, and malformed input. Real `labtrack serve` processes on free
127.0.0.1 ports, real symlinks; the folders outside the root are compared byte for byte."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_remote_e2e import Server, free_port

from labtrack._cli.remote import allowed_hosts
from labtrack._remote.wire import CLIENT_HEADER, Op, encode_batch
from labtrack._server.auth import create_token

RID = "20261121-141503-k3f9qz"
CLIENT = {CLIENT_HEADER: "test"}


def written(root: Path) -> list[str]:
    """What is under `root` besides the server's index."""
    return sorted(snapshot(root)) if root.exists() else []


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry under `folder` (not following symlinks): files with their bytes and mtime."""
    out: dict[str, Any] = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".labtrack"]  # the server's index, not run data
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", p.read_bytes(), p.stat().st_mtime_ns)
            else:
                out[rel] = ("dir",)
    return out


@pytest.fixture
def server(tmp_path: Path) -> Any:
    servers: list[Server] = []

    def make(*args: str, root: Path | None = None) -> Server:
        s = Server(root or tmp_path / "root", free_port(), tmp_path / f"serve{len(servers)}.log", *args)
        servers.append(s)
        s.start()
        return s

    yield make
    for s in servers:
        s.kill()


# -- 1. nothing outside the root is written, deleted or listed

def _outside_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A root whose experiment folder, run folder, a file and a folder of a run are symlinks
    to an `outside` folder full of files."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for sub in ("exp-out/" + RID, "run-out", "media-out/0"):
        (outside / sub).mkdir(parents=True)
    (outside / "exp-out" / RID / "run.json").write_text('{"id": "victim"}\n')
    (outside / "exp-out" / RID / "console.log").write_text("secret log\n")
    (outside / "run-out" / "run.json").write_text('{"id": "victim2"}\n')
    (outside / "run-out" / "console.log").write_text("another secret\n")
    (outside / "secret.txt").write_text("top secret\n")
    (outside / "media-out" / "0" / "cat.png").write_bytes(b"\x89PNG not yours")
    (root / "real-exp" / RID).mkdir(parents=True)
    (root / "real-exp" / RID / "run.json").write_text('{"id": "mine"}\n')
    (root / "linked-exp").symlink_to(outside / "exp-out")
    (root / "real-exp" / "linked-run").symlink_to(outside / "run-out")
    (root / "real-exp" / RID / "console.log").symlink_to(outside / "secret.txt")
    (root / "real-exp" / RID / "media").symlink_to(outside / "media-out")
    return root, outside


def test_a_write_token_cannot_touch_or_list_anything_a_symlink_leads_to(tmp_path: Path, server: Any) -> None:
    root, outside = _outside_tree(tmp_path)
    tokens = tmp_path / "tokens.json"
    token = create_token(tokens, "ci", ["write"])
    before = snapshot(outside)
    srv = server("--tokens", str(tokens))
    h = {"Authorization": f"Bearer {token}", **CLIENT}
    with httpx.Client(base_url=srv.url, headers=h, timeout=10) as c:
        for exp, rid in (("linked-exp", RID), ("real-exp", "linked-run")):
            base = f"/api/v1/ingest/{exp}/{rid}"
            answers = [
                c.get(base + "/sizes"),
                c.put(base + "/append", params={"path": "console.log", "offset": "11"},
                      content=b"more\n", headers={"Content-Type": "application/octet-stream"}),
                c.put(base + "/file", params={"path": "run.json"}, content=b"{}",
                      headers={"Content-Type": "application/octet-stream"}),
                c.post(base + "/batch", content=encode_batch([Op("delete", "console.log", b"")]),
                       headers={"Content-Type": "application/octet-stream"}),
                c.post(base + "/batch", content=encode_batch([Op("put", "new.txt", b"x")]),
                       headers={"Content-Type": "application/octet-stream"}),
            ]
            for r in answers:
                assert r.status_code == 403, (exp, rid, r.request.url, r.text)
                assert "outside" in r.json()["error"] and "symlink" in r.json()["error"]
        # Inside a real run: a file and a folder that are symlinks out.
        base = f"/api/v1/ingest/real-exp/{RID}"
        for r in (
            c.put(base + "/append", params={"path": "console.log", "offset": "11"}, content=b"x\n",
                  headers={"Content-Type": "application/octet-stream"}),
            c.put(base + "/file", params={"path": "media/0/dog.png"}, content=b"png",
                  headers={"Content-Type": "application/octet-stream"}),
            c.post(base + "/batch", content=encode_batch([Op("delete", "media/0/cat.png", b"")]),
                   headers={"Content-Type": "application/octet-stream"}),
            c.post(base + "/batch", content=encode_batch([Op("delete", "console.log", b"")]),
                   headers={"Content-Type": "application/octet-stream"}),
        ):
            assert r.status_code == 400 and "leads outside" in r.json()["error"], r.text
        sizes = c.get(base + "/sizes")
        assert sizes.status_code == 200 and sorted(sizes.json()["files"]) == ["run.json"], sizes.text
    assert snapshot(outside) == before
    assert (root / "real-exp" / RID / "console.log").is_symlink()
    assert srv.proc is not None and srv.proc.poll() is None, srv.output()


# -- 2. Host allow-list and origins

def _raw(srv: Server, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_a_rebinding_host_name_gets_nothing_but_listed_names_do(tmp_path: Path, server: Any) -> None:
    (tmp_path / "root" / "exp" / RID).mkdir(parents=True)
    (tmp_path / "root" / "exp" / RID / "run.json").write_text(json.dumps(
        {"format_version": 1, "id": RID, "experiment": "exp", "status": "finished"}))
    srv = server("--allowed-host", "Logs.Lab")
    status, _, body = _raw(srv, "GET", "/api/v1/runs", {"Host": f"evil.example:{srv.port}"})
    assert status == 400 and b"evil.example" in body and b"--allowed-host" in body
    status, _, _ = _raw(srv, "PUT", f"/api/v1/ingest/exp/{RID}/append?path=console.log&offset=0",
                        {"Host": f"evil.example:{srv.port}", **CLIENT}, b"x\n")
    assert status == 400 and not (tmp_path / "root" / "exp" / RID / "console.log").exists()
    for host in (f"127.0.0.1:{srv.port}", f"localhost:{srv.port}", f"logs.lab:{srv.port}"):
        status, _, body = _raw(srv, "GET", "/api/v1/runs", {"Host": host})
        assert status == 200 and RID.encode() in body, (host, body)


def test_allowed_hosts_follow_the_bound_address() -> None:
    assert allowed_hosts("127.0.0.1") == (["127.0.0.1", "::1", "localhost"], False)
    assert allowed_hosts("10.1.2.3", ["logs.lab"]) == (["10.1.2.3", "127.0.0.1", "::1", "localhost",
                                                        "logs.lab"], False)
    names, any_ip = allowed_hosts("0.0.0.0")
    assert any_ip and "localhost" in names
    with pytest.raises(Exception, match="not a host name"):
        allowed_hosts("127.0.0.1", ["http://logs.lab/"])


def test_requests_another_site_could_send_are_refused_and_write_nothing(tmp_path: Path, server: Any) -> None:
    root = tmp_path / "root"
    srv = server()
    own = f"127.0.0.1:{srv.port}"
    batch = encode_batch([Op("put", "run.json", b'{"id": "planted"}')])
    url = f"/api/v1/ingest/exp/{RID}/batch"
    cases = [
        # What a form or a no-cors fetch of another page can send: no custom header.
        ({"Host": own, "Content-Type": "text/plain"}, 403, CLIENT_HEADER),
        ({"Host": own, "Content-Type": "application/octet-stream"}, 403, CLIENT_HEADER),
        ({"Host": own, "Content-Type": "multipart/form-data; boundary=x", **CLIENT}, 415, "multipart"),
        ({"Host": own, "Content-Type": "text/plain;charset=UTF-8", **CLIENT}, 415, "text/plain"),
        ({"Host": own, "Content-Type": "application/x-www-form-urlencoded", **CLIENT}, 415, "form"),
        # The header and type need a preflight, which the server never grants; and an Origin
        # that is not the server's own is refused even so.
        ({"Host": own, "Content-Type": "application/octet-stream", "Origin": "http://evil.example",
          **CLIENT}, 403, "http://evil.example"),
        ({"Host": own, "Content-Type": "application/octet-stream", "Origin": "null", **CLIENT}, 403, "'null'"),
        ({"Host": own, "Content-Type": "application/octet-stream",
          "Origin": f"http://127.0.0.1:{srv.port + 1 if srv.port < 65535 else 1}", **CLIENT}, 403, "origin"),
        ({"Host": own, "Content-Type": "application/octet-stream", "Origin": f"https://{own}",
          **CLIENT}, 403, "origin"),
    ]
    for headers, status, words in cases:
        got, hdrs, body = _raw(srv, "POST", url, headers, batch)
        assert got == status and words.encode() in body, (headers, got, body)
        assert not any(k.startswith("access-control-") for k in hdrs), hdrs
    got, _, body = _raw(srv, "POST", "/api/v1/ingest/hello",
                        {"Host": own, "Content-Type": "text/plain"}, b'{"api": 1}')
    assert got == 403
    assert written(root) == []
    # A read from a page elsewhere is refused too; a preflight is never granted.
    got, hdrs, body = _raw(srv, "GET", "/api/v1/runs", {"Host": own, "Origin": "http://evil.example"})
    assert got == 403 and "access-control-allow-origin" not in hdrs
    got, hdrs, _ = _raw(srv, "OPTIONS", url, {"Host": own, "Origin": "http://evil.example",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "x-labtrack-client"})
    assert got >= 400 and not any(k.startswith("access-control-") for k in hdrs)
    # The server's own page (same origin) and a client without Origin get through.
    got, _, body = _raw(srv, "POST", url, {"Host": own, "Content-Type": "application/octet-stream",
                                           "Origin": f"http://{own}", **CLIENT}, batch)
    assert got == 200, body
    assert json.loads((root / "exp" / RID / "run.json").read_text()) == {"id": "planted"}


# -- 3. malformed input: a 4xx, and nothing written

def test_malformed_requests_are_4xx_and_write_nothing(tmp_path: Path, server: Any) -> None:
    root = tmp_path / "root"
    (root / "exp" / RID).mkdir(parents=True)
    (root / "exp" / RID / "run.json").write_text('{"id": "kept"}\n')
    (root / "exp" / RID / "media" / "0").mkdir(parents=True)
    before = snapshot(root)
    srv = server()
    base = f"/api/v1/ingest/exp/{RID}"
    octet = {"Content-Type": "application/octet-stream", **CLIENT}
    with httpx.Client(base_url=srv.url, headers=octet, timeout=30) as c:
        deep = b'{"ops": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
        for r, words in (
            (c.put(base + "/file", params={"path": "media/0/x.png", "mtime_ns": str(10 ** 30)},
                   content=b"png"), "mtime_ns"),
            (c.post(base + "/batch", content=encode_batch([Op("put", "a.txt", b"a", mtime_ns=10 ** 30)])),
             "mtime_ns"),
            (c.post(base + "/batch", content=encode_batch([Op("append", "console.log", b"x\n"),
                                                           Op("put", "b.txt", b"b", mtime_ns=-1)])),
             "mtime_ns"),
            (c.post(base + "/batch", content=deep), "not JSON"),
            (c.post("/api/v1/ingest/hello", content=b"[" * 60_000,
                    headers={"Content-Type": "application/json"}), "not JSON"),
            (c.put(base + "/file", params={"path": "run.json/x"}, content=b"x"), "'run.json' is a file"),
            (c.put(base + "/append", params={"path": "run.json/x", "offset": "0"}, content=b"x\n"),
             "'run.json' is a file"),
            (c.post(base + "/batch", content=encode_batch([Op("append", "console.log", b"x\n"),
                                                           Op("put", "run.json/x", b"x")])),
             "'run.json' is a file"),
            (c.post(base + "/batch", content=encode_batch([Op("put", "a", b"a"), Op("put", "a/b", b"b")])),
             "'a' is a file"),
            (c.put(base + "/file", params={"path": "media"}, content=b"x"), "is a folder"),
            (c.post(base + "/batch", content=encode_batch([Op("put", "media", b"x")])), "is a folder"),
            (c.put(base + "/file", params={"path": "../x"}, content=b"x"), "path"),
            (c.post(base + "/batch", content=encode_batch([Op("put", "a\ud800.txt", b"x")])), "surrogate"),
            (c.put(base + "/append", params={"path": "console.log", "offset": str(10 ** 30)},
                   content=b"x\n"), "offset"),
        ):
            assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
            assert words is None or words in r.json()["error"], r.text
        # The mtime is kept when it is in range.
        r = c.put(base + "/file", params={"path": "ok.bin", "mtime_ns": str(1_700_000_000 * 10 ** 9)},
                  content=b"ok")
        assert r.status_code == 200 and (root / "exp" / RID / "ok.bin").stat().st_mtime_ns == 1_700_000_000 * 10 ** 9
        (root / "exp" / RID / "ok.bin").unlink()
    assert snapshot(root) == before
    assert srv.proc is not None and srv.proc.poll() is None, srv.output()


def test_a_file_over_the_limit_leaves_no_folders_behind(tmp_path: Path, server: Any) -> None:
    root = tmp_path / "root"
    srv = server("--max-file-mb", "1")
    body = iter([b"x" * (512 << 10)] * 4)  # 2 MiB streamed without Content-Length
    r = httpx.put(f"{srv.url}/api/v1/ingest/exp/{RID}/file", params={"path": "checkpoints/9/model.pt"},
                  content=body, headers={"Content-Type": "application/octet-stream", **CLIENT}, timeout=30)
    assert r.status_code == 413, r.text
    assert written(root) == []
