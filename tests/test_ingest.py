"""The ingest routes in-process (ASGI client): appends at offsets, whole files, batches,
name checks and size limits. Real server processes are in test_remote_e2e.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from labtrack._remote.wire import Op, encode_batch
from labtrack._server.ingest import ingest_routes

RUN = "/api/v1/ingest/mnist/20261121-141503-k3f9qz"


class AsgiClient:
    """A synchronous face on httpx's ASGI transport (starlette's TestClient wants httpx2)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                r = await c.request(method, url, **kw)
                await r.aread()
                return r

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)


def make_client(root: Path, **kw: int) -> AsgiClient:
    return AsgiClient(Starlette(routes=ingest_routes(root, **kw)))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_hello_answers_the_api_version_and_limits(tmp_path: Path) -> None:
    c = make_client(tmp_path, max_batch_bytes=1000)
    r = c.post("/api/v1/ingest/hello", json={"client": "labtrack", "version": "0.1.0", "api": 1})
    assert r.status_code == 200
    assert r.json()["api"] == 1 and r.json()["max_batch_bytes"] == 1000
    r = c.post("/api/v1/ingest/hello", json={"client": "labtrack", "version": "9", "api": 2})
    assert r.status_code == 409
    assert "speaks ingest API 1" in r.json()["error"]


def test_append_only_at_the_current_size(tmp_path: Path) -> None:
    c = make_client(tmp_path)
    p = {"path": "scalars/train/loss.csv", "offset": "0"}
    r = c.put(f"{RUN}/append", params=p, content=b"step,value,time\n")
    assert (r.status_code, r.json()) == (200, {"size": 16})
    # The same request again (a retry whose answer was lost) does not append twice.
    r = c.put(f"{RUN}/append", params=p, content=b"step,value,time\n")
    assert (r.status_code, r.json()) == (409, {"size": 16})
    r = c.put(f"{RUN}/append", params={**p, "offset": "16"}, content=b"0,1.5,1.0\n")
    assert (r.status_code, r.json()) == (200, {"size": 26})
    r = c.put(f"{RUN}/append", params={**p, "offset": "99"}, content=b"1,2.5,1.0\n")
    assert (r.status_code, r.json()) == (409, {"size": 26})
    data = (tmp_path / "mnist/20261121-141503-k3f9qz/scalars/train/loss.csv").read_bytes()
    assert data == b"step,value,time\n0,1.5,1.0\n"
    sizes = c.get(f"{RUN}/sizes").json()["files"]
    assert sizes["scalars/train/loss.csv"]["size"] == 26


def test_put_file_replaces_and_keeps_the_client_mtime(tmp_path: Path) -> None:
    c = make_client(tmp_path)
    mtime = 1_700_000_000_123_456_789
    r = c.put(f"{RUN}/file", params={"path": "run.json", "mtime_ns": str(mtime)}, content=b'{"a": 1}\n')
    assert r.json() == {"size": 9}
    r = c.put(f"{RUN}/file", params={"path": "run.json", "mtime_ns": str(mtime)}, content=b'{"a": 22}\n')
    target = tmp_path / "mnist/20261121-141503-k3f9qz/run.json"
    assert target.read_bytes() == b'{"a": 22}\n'
    assert os.stat(target).st_mtime_ns == mtime
    assert c.get(f"{RUN}/sizes").json()["files"]["run.json"] == {"size": 10, "mtime_ns": mtime}
    assert files_under(tmp_path) == ["mnist/20261121-141503-k3f9qz/run.json"]  # no temp file left


def test_batch_applies_each_op_and_reports_conflicts(tmp_path: Path) -> None:
    c = make_client(tmp_path)
    ops = [Op("put", "summary.json", b"{}\n", mtime_ns=5_000_000_000),
           Op("append", "console.log", b"hello\n", offset=0),
           Op("append", "media.jsonl", b"{}\n", offset=7)]
    r = c.post(f"{RUN}/batch", content=encode_batch(ops))
    assert r.status_code == 200
    assert r.json()["results"] == [
        {"path": "summary.json", "size": 3, "status": 200},
        {"path": "console.log", "size": 6, "status": 200},
        {"path": "media.jsonl", "size": 0, "status": 409},
    ]


@pytest.mark.parametrize("path", ["../evil.csv", "../../evil", "/etc/passwd", "scalars/../../x.csv",
                                  "a//b", "scalars/./x.csv", "bad\nname", "scalars/.x.csv.1234.tmp",
                                  "..\\evil"])
def test_path_traversal_and_bad_names_are_refused_and_write_nothing(tmp_path: Path, path: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    c = make_client(root)
    r = c.put(f"{RUN}/append", params={"path": path, "offset": "0"}, content=b"x\n")
    assert r.status_code == 400, r.text
    assert "path" in r.json()["error"]
    r = c.put(f"{RUN}/file", params={"path": path}, content=b"x\n")
    assert r.status_code == 400
    # One bad op spoils the whole batch: the good op before it is not applied either.
    body = encode_batch([Op("append", "console.log", b"ok\n"), Op("put", path, b"x\n")])
    r = c.post(f"{RUN}/batch", content=body)
    assert r.status_code == 400 and r.json()["path"] == path
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("experiment,run_id", [("..", "x"), ("%2E%2E", "x"), ("ok", ".."),
                                               (".labtrack", "x"), ("ok", "%2E%2E"),
                                               ("a%2Fb", "x")])
def test_bad_experiment_or_run_folder_is_refused(tmp_path: Path, experiment: str, run_id: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    c = make_client(root)
    url = f"/api/v1/ingest/{experiment}/{run_id}/append"
    r = c.put(url, params={"path": "console.log", "offset": "0"}, content=b"x\n")
    assert r.status_code in (400, 404), r.text
    assert files_under(tmp_path) == []


def test_request_size_limits(tmp_path: Path) -> None:
    c = make_client(tmp_path, max_batch_bytes=1000, max_file_bytes=2000)
    r = c.put(f"{RUN}/append", params={"path": "console.log", "offset": "0"}, content=b"x" * 1001)
    assert r.status_code == 413 and "1000" in r.json()["error"]
    r = c.put(f"{RUN}/file", params={"path": "artifacts/model.bin"}, content=b"x" * 2001)
    assert r.status_code == 413
    # A body without Content-Length is counted while it streams.
    r = c.put(f"{RUN}/file", params={"path": "artifacts/model.bin"},
              content=_chunks([b"x" * 1500, b"y" * 1500]))
    assert r.status_code == 413
    r = c.put(f"{RUN}/file", params={"path": "artifacts/model.bin"}, content=b"x" * 2000)
    assert r.status_code == 200
    assert [p for p in files_under(tmp_path) if "tmp" in p] == []
    assert files_under(tmp_path) == ["mnist/20261121-141503-k3f9qz/artifacts/model.bin"]


async def _chunks(parts: list[bytes]) -> Any:
    for p in parts:
        yield p


@pytest.mark.parametrize("body", [b"", b"not json\n", b'{"ops": 3}\n', b'{"ops": [{"op": "rm", "path": "x"}]}\n',
                                  b'{"ops": [{"op": "append", "path": "x", "length": 5, "offset": 0}]}\nab',
                                  b'{"ops": [{"op": "append", "path": "x", "length": 1, "offset": -1}]}\na',
                                  b'{"ops": []}\nextra'])
def test_malformed_batches_are_refused(tmp_path: Path, body: bytes) -> None:
    c = make_client(tmp_path)
    r = c.post(f"{RUN}/batch", content=body)
    assert r.status_code == 400
    assert json.loads(r.text)["error"]
    assert files_under(tmp_path) == []


def test_bad_offset_parameter(tmp_path: Path) -> None:
    c = make_client(tmp_path)
    for off in ("-1", "x", None):
        params = {"path": "console.log"} | ({"offset": off} if off is not None else {})
        r = c.put(f"{RUN}/append", params=params, content=b"x\n")
        assert r.status_code == 400, off
    assert files_under(tmp_path) == []


def test_a_file_where_a_folder_is_is_refused_cleanly(tmp_path: Path) -> None:
    c = make_client(tmp_path)
    assert c.put(f"{RUN}/file", params={"path": "scalars/a/b.csv"}, content=b"x\n").status_code == 200
    r = c.put(f"{RUN}/file", params={"path": "scalars/a"}, content=b"x\n")
    assert r.status_code == 400 and r.json()["error"]


def test_sizes_removes_only_stale_temp_files(tmp_path: Path) -> None:
    from labtrack._server.ingest import run_sizes

    run = tmp_path / "mnist" / "20261121-141503-k3f9qz"
    (run / "media").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    old, young = run / "media" / ".a.png.1234abcd.tmp", run / ".run.json.99.tmp"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    os.utime(old, (1000.0, 1000.0))
    sizes = run_sizes(run)
    assert list(sizes) == ["run.json"]
    assert not old.exists() and young.exists()


def test_batch_delete_removes_the_file_and_emptied_folders(tmp_path: Path) -> None:
    c = make_client(tmp_path)
    run = tmp_path / "mnist/20261121-141503-k3f9qz"
    put = encode_batch([Op("put", "checkpoints/1/model.bin", b"x"), Op("put", "checkpoints/2/m", b"y")])
    assert c.post(f"{RUN}/batch", content=put).status_code == 200
    r = c.post(f"{RUN}/batch", content=encode_batch([Op("delete", "checkpoints/1/model.bin", b""),
                                                      Op("delete", "not/there", b"")]))
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == [200, 200]
    assert not (run / "checkpoints/1").exists() and (run / "checkpoints/2/m").exists()
    r = c.post(f"{RUN}/batch", content=encode_batch([Op("delete", "checkpoints", b"")]))
    assert r.status_code == 400 and (run / "checkpoints/2/m").exists()
    r = c.post(f"{RUN}/batch", content=encode_batch([Op("delete", "../../../x", b"")]))
    assert r.status_code == 400
