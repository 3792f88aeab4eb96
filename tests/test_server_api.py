"""The read API, in process through httpx's ASGI transport, over real run directories."""

from __future__ import annotations

import asyncio
import json
import os
import time
from urllib.parse import unquote
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from conftest import read_line
import labtrack
from labtrack._server.app import create_app


def _no_constants(name: str) -> Any:
    raise AssertionError(f"invalid JSON literal {name} in an API answer")


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_apps() -> Any:
    """ASGITransport runs no lifespan: stop each app's background index refresh by hand."""
    yield
    while _OPEN:
        _OPEN.pop().state.labtrack.close()


class Client:
    """A synchronous face on httpx.AsyncClient + ASGITransport (one event loop per call)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        _OPEN.append(app)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.get(url, **kwargs)

        return asyncio.run(go())

    def json(self, url: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.get(url, **kwargs)
        assert r.status_code == status, (url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        return json.loads(r.text, parse_constant=_no_constants)


def write_run(root: Path, run_id: str, *, experiment: str = "hand", status: str = "finished",
              pid: int = 1, host: str = "elsewhere", **extra: Any) -> Path:
    """A run directory written by hand, per docs/format.md."""
    d = root / experiment / run_id
    (d / "scalars").mkdir(parents=True)
    meta = {"format_version": 1, "id": run_id, "experiment": experiment, "name": run_id[-6:],
            "comment": "", "tags": [], "status": status,
            "started": "2026-11-21T14:15:03.120455+00:00",
            "ended": None if status == "running" else "2026-11-21T14:20:03.120455+00:00",
            "pid": pid, "host": host, "git": None, **extra}
    (d / "run.json").write_text(json.dumps(meta))
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Three runs logged through labtrack, one by hand."""
    r = tmp_path / "root"
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        with labtrack.Run(experiment="mnist" if i < 2 else "cifar", name=f"run{i}",
                          config={"lr": lr, "opt": {"beta": 0.9}}, comment=f"comment {i}",
                          tags=["cnn"] if i == 1 else [], root=r, capture_git=False,
                          capture_console=False, system=False) as run:
            for step in range(50):
                run.log({"train/loss": lr * (50 - step), "val acc/top-1": step / 50}, step=step)
    return r


@pytest.fixture
def client(root: Path) -> Client:
    return Client(create_app(root))


def ids(client: Client, **params: str) -> list[str]:
    body = client.json("/api/v1/runs", params=params)
    return [r["name"] for r in body["runs"]]


def test_health(client: Client) -> None:
    assert client.json("/api/v1/health") == {"app": "labtrack", "version": labtrack.__version__, "api": 1}


def test_runs_list_sort_filter_page(client: Client) -> None:
    body = client.json("/api/v1/runs")
    assert body["total"] == 3 and body["offset"] == 0
    row = body["runs"][0]
    for key in ("id", "experiment", "name", "comment", "tags", "status", "started", "ended",
                "duration", "commit", "dirty", "host", "params", "metrics"):
        assert key in row
    assert "dir" not in row  # no server paths
    assert ids(client, sort="params.lr") == ["run2", "run1", "run0"]
    assert ids(client, sort="-metrics.train/loss") == ["run0", "run1", "run2"]
    assert ids(client, where="params.lr < 0.05", sort="name") == ["run1", "run2"]
    assert ids(client, experiment="cifar") == ["run2"]
    assert ids(client, q="Run1 COMMENT") == ["run1"]
    assert ids(client, q="cnn") == ["run1"]
    assert ids(client, status="finished", sort="name") == ["run0", "run1", "run2"]
    page = client.json("/api/v1/runs", params={"sort": "name", "offset": "1", "limit": "1"})
    assert page["total"] == 3 and [r["name"] for r in page["runs"]] == ["run1"]
    only = client.json("/api/v1/runs", params={"columns": "params.lr,metrics.train/loss"})
    assert set(only["runs"][0]["params"]) == {"lr"}
    assert set(only["runs"][0]["metrics"]) == {"train/loss"}
    full = client.json("/api/v1/runs")["runs"][0]
    assert set(full["params"]) == {"lr", "opt.beta"}


@pytest.mark.parametrize("params, words", [
    ({"limit": "x"}, ["limit='x'", "0 to 10000"]),
    ({"offset": "-1"}, ["offset='-1'"]),
    ({"sort": "bogus"}, ["bogus", "params.<key>"]),
    ({"where": "params.lr <"}, ["params.lr <"]),
    ({"where": "params.nope > 1"}, ["params.nope"]),
    ({"status": "sleeping"}, ["sleeping", "running"]),
])
def test_runs_bad_parameters_name_the_value(client: Client, params: dict[str, str],
                                            words: list[str]) -> None:
    body = client.json("/api/v1/runs", status=400, params=params)
    for w in words:
        assert w in body["error"]


def test_columns(client: Client) -> None:
    cols = client.json("/api/v1/columns")
    assert cols == {"params": ["lr", "opt.beta"], "metrics": ["train/loss", "val acc/top-1"],
                    "experiments": ["cifar", "mnist"]}


def _run_id(client: Client, name: str) -> str:
    return next(r["id"] for r in client.json("/api/v1/runs")["runs"] if r["name"] == name)


def test_run_detail(client: Client) -> None:
    rid = _run_id(client, "run0")
    d = client.json(f"/api/v1/runs/{rid}")
    assert d["id"] == rid and d["status"] == "finished"
    assert d["params"] == {"lr": 0.1, "opt": {"beta": 0.9}}
    assert d["summary"]["train/loss"]["count"] == 50
    assert d["names"]["scalars"] == ["train/loss", "val acc/top-1"]
    assert d["env"]["python"]["version"]
    assert d["duration"] >= 0
    assert "dir" not in d


def test_crashed_status_is_derived(root: Path, client: Client) -> None:
    write_run(root, "20261121-141503-dead00", status="running", host=os.uname().nodename,
              pid=2**22 + 12345)
    d = client.json("/api/v1/runs/20261121-141503-dead00")
    assert d["status"] == "crashed"
    rows = client.json("/api/v1/runs", params={"status": "crashed"})["runs"]
    assert [r["id"] for r in rows] == ["20261121-141503-dead00"]


def test_unknown_and_malformed_run_ids(client: Client) -> None:
    body = client.json("/api/v1/runs/20990101-000000-zzzzzz", status=404)
    assert "20990101-000000-zzzzzz" in body["error"]
    body = client.json("/api/v1/runs/.hidden", status=404)
    assert "not a run id" in body["error"]
    client.json("/api/v1/runs/%2E%2E/files", status=404)
    client.json("/api/v1/not-here", status=404)


def test_damaged_run_json_answers_422(root: Path, client: Client) -> None:
    d = write_run(root, "20261121-141503-broken")
    (d / "run.json").write_text("{not json")
    body = client.json("/api/v1/runs/20261121-141503-broken", status=422)
    assert "run.json" in body["error"]


def test_files_and_file(root: Path, client: Client) -> None:
    rid = _run_id(client, "run0")
    listing = client.json(f"/api/v1/runs/{rid}/files")["files"]
    paths = {f["path"] for f in listing}
    assert {"run.json", "params.json", "summary.json", "scalars/train/loss.csv",
            "scalars/val%20acc/top-1.csv"} <= paths
    assert all(f["size"] >= 0 and f["mtime"] > 0 for f in listing)
    raw = client.get(f"/api/v1/runs/{rid}/file", params={"path": "scalars/train/loss.csv"})
    assert raw.status_code == 200 and raw.text.startswith("step,value,time\n0,5.0,")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.headers["content-type"].startswith("text/plain")
    part = client.get(f"/api/v1/runs/{rid}/file", params={"path": "scalars/train/loss.csv"},
                      headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"step"
    tail = client.get(f"/api/v1/runs/{rid}/file", params={"path": "scalars/train/loss.csv", "offset": "5"})
    assert tail.status_code == 200 and tail.content == raw.content[5:]
    assert int(tail.headers["x-file-size"]) == len(raw.content)
    past = client.get(f"/api/v1/runs/{rid}/file", params={"path": "run.json", "offset": "999999"})
    assert past.status_code == 416 and "past the end" in past.json()["error"]
    dl = client.get(f"/api/v1/runs/{rid}/file", params={"path": "params.json", "download": "1"})
    assert dl.headers["content-disposition"].startswith("attachment")
    missing = client.json(f"/api/v1/runs/{rid}/file", status=404, params={"path": "artifacts/nope.bin"})
    assert "artifacts/nope.bin" in missing["error"]
    client.json(f"/api/v1/runs/{rid}/file", status=400)  # no path at all


def test_user_content_is_never_served_as_a_page(root: Path) -> None:
    d = write_run(root, "20261121-141503-html00")
    (d / "artifacts").mkdir()
    (d / "artifacts" / "page.html").write_text("<script>alert(1)</script>")
    (d / "artifacts" / "pic.svg").write_text("<svg onload='alert(1)'/>")
    c = Client(create_app(root))
    for name in ("page.html", "pic.svg"):
        r = c.get("/api/v1/runs/20261121-141503-html00/file", params={"path": f"artifacts/{name}"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert "sandbox" in r.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["../run0", "../../../etc/passwd", "/etc/passwd", "scalars/../../x",
                                  "a//b", "./run.json", "scalars\\..\\..\\x", "x\x00y"])
def test_file_paths_cannot_leave_the_run(client: Client, path: str) -> None:
    rid = _run_id(client, "run0")
    body = client.json(f"/api/v1/runs/{rid}/file", status=400, params={"path": path})
    assert "path" in body["error"]


def test_symlinks_pointing_out_are_refused(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    d = write_run(root, "20261121-141503-link00")
    (d / "artifacts").mkdir()
    os.symlink(secret, d / "artifacts" / "leak.txt")
    os.symlink(tmp_path, d / "artifacts" / "up")
    os.symlink(d / "run.json", d / "artifacts" / "inside.json")
    # a whole run directory that is a symlink to outside the root
    outside = tmp_path / "outside" / "20261121-141503-away00"
    write_run(tmp_path / "outside-root", "20261121-141503-away00")
    outside.parent.mkdir()
    os.symlink(tmp_path / "outside-root" / "hand" / "20261121-141503-away00", outside)
    os.symlink(outside, root / "hand" / "20261121-141503-away00")
    c = Client(create_app(root))
    url = "/api/v1/runs/20261121-141503-link00/file"
    for p in ("artifacts/leak.txt", "artifacts/up/secret.txt"):
        r = c.get(url, params={"path": p})
        assert r.status_code == 400 and "outside the run" in r.json()["error"]
        assert "TOP SECRET" not in r.text
    assert c.get(url, params={"path": "artifacts/inside.json"}).status_code == 200
    listed = {f["path"] for f in c.json("/api/v1/runs/20261121-141503-link00/files")["files"]}
    assert "artifacts/inside.json" in listed and "artifacts/leak.txt" not in listed
    c.json("/api/v1/runs/20261121-141503-away00", status=404)
    c.json("/api/v1/runs/20261121-141503-away00/file", status=404, params={"path": "run.json"})


def test_encoded_traversal_in_the_url_path(client: Client) -> None:
    async def raw(path: bytes) -> int:
        app = client.app
        sent: list[dict[str, Any]] = []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": unquote(path.decode("latin-1")),
                 "raw_path": path, "query_string": b"path=run.json", "root_path": "", "headers": [(b"host", b"t")],
                 "client": ("127.0.0.1", 1), "server": ("t", 80)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert b"root:" not in b"".join(m.get("body", b"") for m in sent)
        return int(sent[0]["status"])

    for p in (b"/api/v1/runs/..%2F..%2F..%2Fetc/files", b"/api/v1/runs/%2e%2e/file",
              b"/api/v1/runs/..%2f/console", b"/api/v1/runs/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/file"):
        assert asyncio.run(raw(p)) == 404


def test_scalars_downsampled_with_envelope(root: Path) -> None:
    with labtrack.Run(experiment="long", root=root, capture_git=False, capture_console=False) as run:
        for step in range(20_000):
            run.log({"x": 1.0 if step != 12_345 else 1e6}, step=step)
        rid = run.id
    c = Client(create_app(root))
    s = c.json(f"/api/v1/runs/{rid}/scalars", params={"name": "x", "points": "500"})
    assert s["total"] == 20_000 and s["downsampled"] and s["x"] == "step"
    assert len(s["step"]) <= 500 and len(s["value"]) == len(s["min"]) == len(s["max"]) == len(s["time"])
    assert max(s["max"]) == 1e6  # the spike survives
    assert s["step"][0] == 0 and s["step"][-1] == 19_999
    zoom = c.json(f"/api/v1/runs/{rid}/scalars", params={"name": "x", "xmin": "100", "xmax": "300"})
    assert not zoom["downsampled"]
    assert zoom["step"] == list(range(99, 302))  # full resolution, one neighbour each side
    assert zoom["count"] == 203 and zoom["total"] == 20_000
    t = c.json(f"/api/v1/runs/{rid}/scalars", params={"name": "x", "x": "time", "points": "50"})
    assert t["x"] == "time" and len(t["time"]) <= 50
    t0 = t["time"][0]
    tz = c.json(f"/api/v1/runs/{rid}/scalars", params={"name": "x", "x": "time", "xmin": str(t0), "xmax": str(t0)})
    assert all(isinstance(v, float) for v in tz["time"])


def test_scalars_nonfinite_and_timings(root: Path) -> None:
    d = write_run(root, "20261121-141503-nonfin")
    (d / "scalars" / "timings").mkdir()
    (d / "scalars" / "v.csv").write_text("step,value,time\n0,nan,1.0\n1,inf,2.0\n2,-inf,3.0\n3,1.5,4.0\n")
    (d / "scalars" / "timings" / "eval.csv").write_text("step,value,time\n0,0.25,1.0\n1,0.5,2.0\n")
    c = Client(create_app(root))
    s = c.json("/api/v1/runs/20261121-141503-nonfin/scalars", params={"name": "v"})
    assert s["value"] == ["NaN", "Infinity", "-Infinity", 1.5]
    assert s["min"] == s["value"] and not s["downsampled"]
    t = c.json("/api/v1/runs/20261121-141503-nonfin/scalars", params={"name": "timings/eval"})
    assert t["value"] == [0.25, 0.5]
    detail = c.json("/api/v1/runs/20261121-141503-nonfin")
    assert detail["names"]["scalars"] == ["timings/eval", "v"]


@pytest.mark.parametrize("params, status, words", [
    ({}, 400, ["name is missing"]),
    ({"name": "nope"}, 404, ["'nope'", "train/loss, val acc/top-1"]),
    ({"name": "../run.json"}, 400, ["'..'"]),
    ({"name": "train/loss", "points": "2"}, 400, ["points='2'", "3 to 100000"]),
    ({"name": "train/loss", "points": "many"}, 400, ["points='many'"]),
    ({"name": "train/loss", "x": "epoch"}, 400, ["x='epoch'", "step or time"]),
    ({"name": "train/loss", "xmin": "nan"}, 400, ["xmin='nan'", "finite number"]),
    ({"name": "train/loss", "xmax": "soon"}, 400, ["xmax='soon'"]),
])
def test_scalars_bad_parameters(client: Client, params: dict[str, str], status: int,
                                words: list[str]) -> None:
    rid = _run_id(client, "run0")
    body = client.json(f"/api/v1/runs/{rid}/scalars", status=status, params=params)
    for w in words:
        assert w in body["error"], body


def test_scalars_of_many_runs_in_one_request(client: Client) -> None:
    r0, r1, r2 = (_run_id(client, f"run{i}") for i in range(3))
    body = client.json("/api/v1/scalars", params={"runs": f"{r0},{r1},{r2},{r0}", "name": "train/loss", "points": "10"})
    assert body["name"] == "train/loss" and body["x"] == "step"
    assert list(body["runs"]) == [r0, r1, r2]  # once each, in the order asked
    for rid, lr in ((r0, 0.1), (r1, 0.01), (r2, 0.001)):
        s = body["runs"][rid]
        assert s["total"] == 50 and s["downsampled"] and len(s["value"]) <= 10
        assert s["step"][0] == 0 and s["step"][-1] == 49
        assert s["value"][0] == pytest.approx(lr * 50)
    # a run without the series: null, the others still answer
    none = client.json("/api/v1/scalars", params={"runs": f"{r0},{r1}", "name": "nope"})
    assert none["runs"] == {r0: None, r1: None}


@pytest.mark.parametrize("params, status, words", [
    ({"name": "train/loss"}, 400, ["runs is missing"]),
    ({"runs": "R0"}, 400, ["name is missing"]),
    ({"runs": ",,", "name": "train/loss"}, 400, ["names no run"]),
    ({"runs": ",".join(f"20261121-141503-x{i:05d}" for i in range(201)), "name": "train/loss"}, 400,
     ["201 runs", "at most 200"]),
    ({"runs": "R0", "name": "train/loss", "points": "20000"}, 400, ["points='20000'", "3 to 10000"]),
    ({"runs": "R0", "name": "train/loss", "x": "epoch"}, 400, ["x='epoch'"]),
    ({"runs": "R0", "name": "../run.json"}, 400, ["'..'"]),
    ({"runs": "R0,20261121-141503-nosuch", "name": "train/loss"}, 404, ["20261121-141503-nosuch"]),
])
def test_scalars_of_many_runs_bad_parameters(client: Client, params: dict[str, str], status: int,
                                             words: list[str]) -> None:
    rid = _run_id(client, "run0")
    params = {k: v.replace("R0", rid) for k, v in params.items()}
    body = client.json("/api/v1/scalars", status=status, params=params)
    for w in words:
        assert w in body["error"], body


def test_a_growing_series_is_read_incrementally(root: Path) -> None:
    d = write_run(root, "20261121-141503-grow00", status="running")
    path = d / "scalars" / "loss.csv"
    path.write_bytes(b"step,value,time\n0,1.0,1.0\n1,2.0,2.0\n2,3.")  # the last line is partial
    app = create_app(root)
    c = Client(app)
    url = "/api/v1/runs/20261121-141503-grow00/scalars"
    assert c.json(url, params={"name": "loss"})["value"] == [1.0, 2.0]
    with open(path, "ab") as f:
        f.write(b"0,3.0\n3,4.0,4.0\n")
    assert c.json(url, params={"name": "loss"})["value"] == [1.0, 2.0, 3.0, 4.0]
    cached = app.state.labtrack.series.get(path)
    assert len(cached) == 4
    # replaced by a different, shorter file (a re-run wrote it anew): read from the start
    tmp = path.with_name(".loss.csv.x.tmp")
    tmp.write_bytes(b"step,value,time\n0,9.0,1.0\n")
    os.replace(tmp, path)
    assert c.json(url, params={"name": "loss"})["value"] == [9.0]


def test_records_endpoints(root: Path) -> None:
    with labtrack.Run(experiment="media", root=root, capture_git=False, capture_console=False) as run:
        run.log_text("greeting", "Hallo Welt", expected="Hello world", step=3)
        run.log_text("greeting", "Hello world", expected="Hello world", step=4)
        run.log_histogram("weights", np.array([0.1, 0.2, 0.2, 0.9, np.nan]), step=1)
        run.log_image("samples/bird", np.zeros((8, 10, 3), dtype=np.uint8), step=2,
                      boxes=[{"xStart": 1, "yStart": 1, "xEnd": 5, "yEnd": 6, "className": "bird"}])
        run.log_markdown("notes", "# Title\n<script>alert(1)</script>")
        rid = run.id
    c = Client(create_app(root))
    text = c.json(f"/api/v1/runs/{rid}/text", params={"name": "greeting"})
    assert [r["text"] for r in text["records"]] == ["Hallo Welt", "Hello world"]
    assert text["records"][0]["expected"] == "Hello world" and text["name"] == "greeting"
    again = c.json(f"/api/v1/runs/{rid}/text", params={"name": "greeting", "offset": str(text["offset"])})
    assert again["records"] == [] and again["offset"] == text["offset"]
    hist = c.json(f"/api/v1/runs/{rid}/histograms", params={"name": "weights"})["records"]
    assert len(hist) == 1 and len(hist[0]["bins"]) == len(hist[0]["counts"]) + 1
    media = c.json(f"/api/v1/runs/{rid}/media")["media"]
    assert media[0]["name"] == "samples/bird" and media[0]["kind"] == "image"
    png = c.get(f"/api/v1/runs/{rid}/file", params={"path": media[0]["path"]})
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    boxes = c.json(f"/api/v1/runs/{rid}/file", params={"path": media[0]["boxes"]})
    assert boxes["boxes"][0]["className"] == "bird"
    md = c.get(f"/api/v1/runs/{rid}/file", params={"path": "markdown/notes.md"})
    assert md.headers["content-type"].startswith("text/plain") and "<script>" in md.text
    detail = c.json(f"/api/v1/runs/{rid}")
    assert detail["names"]["text"] == ["greeting"] and detail["names"]["markdown"] == ["notes"]
    assert detail["names"]["histograms"] == ["weights"]
    c.json(f"/api/v1/runs/{rid}/text", status=400)
    assert c.json(f"/api/v1/runs/{rid}/text", params={"name": "absent"})["records"] == []


def test_damaged_record_lines_are_skipped(root: Path) -> None:
    d = write_run(root, "20261121-141503-jsonl0")
    (d / "text").mkdir()
    (d / "text" / "t.jsonl").write_bytes(b'{"step": 1, "text": "a"}\n{broken\n{"step": 2, "text": "b"}\n{"step": 3')
    c = Client(create_app(root))
    body = c.json("/api/v1/runs/20261121-141503-jsonl0/text", params={"name": "t"})
    assert [r["text"] for r in body["records"]] == ["a", "b"]
    assert body["offset"] == len(b'{"step": 1, "text": "a"}\n{broken\n{"step": 2, "text": "b"}\n')


def test_console_offsets_and_utf8(root: Path) -> None:
    d = write_run(root, "20261121-141503-cons00")
    text = "epoch 1 ✓\nepoch 2 ✓\n"
    data = text.encode()
    (d / "console.log").write_bytes(data[:9])  # ends inside the three bytes of ✓
    c = Client(create_app(root))
    url = "/api/v1/runs/20261121-141503-cons00/console"
    first = c.json(url)
    assert first["text"] == "epoch 1 " and first["offset"] == 8 and first["size"] == 9
    (d / "console.log").write_bytes(data)
    second = c.json(url, params={"offset": str(first["offset"])})
    assert first["text"] + second["text"] == text and second["offset"] == len(data)
    body = c.json(url, status=400, params={"offset": "1000"})
    assert "offset=1000" in body["error"] and f"{len(data)} bytes" in body["error"]
    empty = write_run(root, "20261121-141503-cons01")
    assert empty.exists()
    assert c.json("/api/v1/runs/20261121-141503-cons01/console") == {"offset": 0, "size": 0, "text": ""}


def test_auth_hook_guards_every_read_endpoint_but_health(root: Path) -> None:
    seen: list[str] = []

    def auth(request: Request, scope: str) -> None:
        seen.append(scope)
        if request.headers.get("authorization") != "Bearer good":
            raise HTTPException(401, "missing or unknown token")

    c = Client(create_app(root, auth=auth))
    assert c.get("/api/v1/health").status_code == 200
    assert seen == []
    rid = next(iter(os.listdir(root / "mnist")))
    for url in ("/api/v1/runs", "/api/v1/columns", f"/api/v1/runs/{rid}", f"/api/v1/runs/{rid}/files",
                f"/api/v1/runs/{rid}/scalars?name=train/loss", f"/api/v1/runs/{rid}/console",
                f"/api/v1/stream?runs={rid}"):
        r = c.get(url)
        assert r.status_code == 401 and r.json() == {"error": "missing or unknown token"}, url
    assert set(seen) == {"read"}
    ok = c.get("/api/v1/runs", headers={"Authorization": "Bearer good"})
    assert ok.status_code == 200 and ok.json()["total"] == 3


def test_extra_routes_come_before_the_front_end(root: Path, tmp_path: Path) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ingest here")

    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>app</title>")
    app = create_app(root, extra_routes=[Route("/api/v1/ingest/hello", hello, methods=["POST", "GET"])],
                     static_dir=static)
    c = Client(app)
    assert c.get("/api/v1/ingest/hello").text == "ingest here"
    assert c.get("/api/v1/ingest/other").status_code == 404


def test_static_front_end(root: Path, tmp_path: Path) -> None:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>labtrack app</title>")
    (static / "assets" / "index-abc123.js").write_text("console.log('app')")
    (static / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    c = Client(create_app(root, static_dir=static))
    page = c.get("/")
    assert page.status_code == 200 and "labtrack app" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-cache"
    deep = c.get("/runs/20261121-141503-abcdef/charts")
    assert deep.status_code == 200 and "labtrack app" in deep.text
    asset = c.get("/assets/index-abc123.js")
    assert asset.text == "console.log('app')"
    assert "immutable" in asset.headers["cache-control"]
    nested = c.get("/runs/x/assets/index-abc123.js")  # a relative base on a deep page
    assert nested.text == "console.log('app')"
    gone = c.get("/assets/index-old999.js")
    assert gone.status_code == 404 and "labtrack app" not in gone.text
    assert c.get("/favicon.svg").text == "<svg/>"
    direct = c.get("/index.html")
    assert "labtrack app" in direct.text and "script-src 'self'" in direct.headers["content-security-policy"]
    for p in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
        r = c.get(p)
        assert "TOP SECRET" not in r.text
    api404 = c.get("/api/v1/nope")
    assert api404.status_code == 404 and api404.json()["error"].startswith("no API endpoint")


def test_missing_front_end_names_the_build_command(root: Path, tmp_path: Path) -> None:
    c = Client(create_app(root, static_dir=tmp_path / "not-built"))
    for p in ("/", "/runs/abc", "/assets/index-abc.js"):
        r = c.get(p)
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("text/html")
        assert "make frontend" in r.text and "npm ci &amp;&amp; npm run build" in r.text
    assert c.get("/api/v1/health").status_code == 200


def test_missing_root_is_an_empty_dashboard(tmp_path: Path) -> None:
    c = Client(create_app(tmp_path / "no-runs-yet"))
    assert c.json("/api/v1/runs") == {"total": 0, "offset": 0, "runs": []}
    assert c.json("/api/v1/columns")["experiments"] == []
    assert not (tmp_path / "no-runs-yet").exists()  # looking creates nothing


def test_host_check_stops_dns_rebinding(root: Path) -> None:
    from labtrack._server.app import LOOPBACK_NAMES

    app = create_app(root, allowed_hosts=LOOPBACK_NAMES)
    _OPEN.append(app)

    def status(host: str) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return await c.get("/api/v1/runs", headers={"Host": host})

        return asyncio.run(go())

    for good in ("127.0.0.1:8765", "localhost:1234", "[::1]:8765", "LOCALHOST", "127.0.0.1"):
        assert status(good).status_code == 200, good
    for bad in ("evil.example:8765", "127.0.0.1.evil.example", "evil.example", ""):
        r = status(bad)
        assert r.status_code == 400 and "is not allowed" in r.json()["error"], bad


def test_method_not_allowed_is_json(client: Client) -> None:
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app),
                                     base_url="http://t") as c:
            return await c.post("/api/v1/runs", headers={"X-Labtrack-Client": "test"})

    r = asyncio.run(post())
    assert r.status_code == 405 and "error" in r.json()



def test_runs_list_follows_the_files(root: Path) -> None:
    c = Client(create_app(root))
    assert c.json("/api/v1/runs")["total"] == 3
    # a new run shows at once (its folder changes the experiment folder's mtime)
    write_run(root, "20261121-141503-added0")
    assert c.json("/api/v1/runs")["total"] == 4
    # an edit inside a run shows after the background refresh (every ~2 s)
    d = root / "hand" / "20261121-141503-added0"
    meta = json.loads((d / "run.json").read_text())
    meta["comment"] = "edited later"
    (d / "run.json").write_text(json.dumps(meta))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = c.json("/api/v1/runs", params={"q": "edited"})["runs"]
        if rows:
            break
        time.sleep(0.3)
    assert [r["id"] for r in rows] == ["20261121-141503-added0"]


def test_section_timings_are_served_as_series(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = labtrack.init(experiment="timed", root=root, capture_git=False, capture_console=False)
    try:
        for step in range(3):
            with labtrack.section("eval"):
                time.sleep(0.01)
            labtrack.log({"loss": 1.0}, step=step)
    finally:
        labtrack.finish()
    c = Client(create_app(root))
    detail = c.json(f"/api/v1/runs/{run.id}")
    assert "timings/eval" in detail["names"]["scalars"]
    s = c.json(f"/api/v1/runs/{run.id}/scalars", params={"name": "timings/eval"})
    assert s["total"] == 3 and all(v >= 0.01 for v in s["value"])


def test_bind_errors_name_the_address() -> None:
    from labtrack._server.app import bind
    from labtrack.errors import LabtrackValueError

    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert sock.getsockname()[0] == "127.0.0.1"
        with pytest.raises(LabtrackValueError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            bind("127.0.0.1", port)
    finally:
        sock.close()
    with pytest.raises(LabtrackValueError, match="cannot listen on host 'no-such-host.invalid'"):
        bind("no-such-host.invalid", 0)


ODD = ["val acc 50%", "größe/λ", ".hidden/loss", "a/b c", "100%/.dot"]


def test_every_name_comes_with_its_path_and_reads_back(root: Path) -> None:
    with labtrack.Run(experiment="odd", root=root, capture_git=False, capture_console=False, system=False) as run:
        for step in range(3):
            run.log({n: float(step) for n in ODD}, step=step)
        for n in ODD:
            run.log_text(n, f"text of {n}", step=0)
            run.log_histogram(n, np.array([0.1, 0.5]), step=0)
            run.log_table(n, [{"col": f"cell of {n}"}])
            run.log_markdown(n, f"# doc of {n}")
            run.log_image(n, np.zeros((4, 4, 3), dtype=np.uint8), step=0)
        rid = run.id
    c = Client(create_app(root))
    d = c.json(f"/api/v1/runs/{rid}")
    for kind in ("scalars", "text", "histograms", "tables", "markdown"):
        pairs = d["named"][kind]
        assert sorted(p["name"] for p in pairs) == sorted(ODD), kind
        assert [p["name"] for p in pairs] == d["names"][kind]  # the old key, unchanged
        for p in pairs:  # every path is a file of the run, read as listed
            assert c.get(f"/api/v1/runs/{rid}/file", params={"path": p["path"]}).status_code == 200, p
    paths = {p["name"]: p["path"] for p in d["named"]["scalars"]}
    assert paths[".hidden/loss"] == "scalars/%2Ehidden/loss.csv"
    assert paths["val acc 50%"] == "scalars/val%20acc%2050%25.csv"
    for n in ODD:
        by_name = c.json(f"/api/v1/runs/{rid}/scalars", params={"name": n})
        by_path = c.json(f"/api/v1/runs/{rid}/scalars", params={"path": paths[n]})
        assert by_name == by_path and by_name["name"] == n and by_name["value"] == [0.0, 1.0, 2.0]
    texts = {p["name"]: p["path"] for p in d["named"]["text"]}
    hists = {p["name"]: p["path"] for p in d["named"]["histograms"]}
    for n in ODD:
        t = c.json(f"/api/v1/runs/{rid}/text", params={"path": texts[n]})
        assert t["name"] == n and t["records"][0]["text"] == f"text of {n}"
        assert c.json(f"/api/v1/runs/{rid}/text", params={"name": n})["records"] == t["records"]
        h = c.json(f"/api/v1/runs/{rid}/histograms", params={"path": hists[n]})
        assert h["name"] == n and len(h["records"]) == 1
    tables = {p["name"]: p["path"] for p in d["named"]["tables"]}
    assert f"cell of {ODD[0]}" in c.get(f"/api/v1/runs/{rid}/file", params={"path": tables[ODD[0]]}).text
    media = c.json(f"/api/v1/runs/{rid}/media")["media"]
    images = {m["name"]: m["path"] for m in media if m["kind"] == "image"}
    assert sorted(images) == sorted(ODD)
    for n, p in images.items():
        png = c.get(f"/api/v1/runs/{rid}/file", params={"path": p})
        assert png.content[:4] == b"\x89PNG", n


def test_a_file_spelled_otherwise_is_found_by_name_and_by_path(root: Path) -> None:
    d = write_run(root, "20261121-141503-spell0")
    (d / "scalars" / "A%41.csv").write_text("step,value,time\n0,1.5,1.0\n")  # copied in by hand
    c = Client(create_app(root))
    detail = c.json("/api/v1/runs/20261121-141503-spell0")
    assert detail["named"]["scalars"] == [{"name": "AA", "path": "scalars/A%41.csv"}]
    assert c.json("/api/v1/runs/20261121-141503-spell0/scalars", params={"name": "AA"})["value"] == [1.5]
    assert c.json("/api/v1/runs/20261121-141503-spell0/scalars",
                  params={"path": "scalars/A%41.csv"})["value"] == [1.5]


@pytest.mark.parametrize("path", ["run.json", "text/x.jsonl", "scalars/", "scalars/.csv", "scalars/../run.json"])
def test_series_path_must_be_a_series_file(client: Client, path: str) -> None:
    rid = _run_id(client, "run0")
    body = client.json(f"/api/v1/runs/{rid}/scalars", status=400, params={"path": path})
    assert "path" in body["error"]


KILLED_CHILD = """
import sys, time
import labtrack
run = labtrack.Run(experiment="killed", root=sys.argv[1], capture_git=False, capture_console=False)
t0 = time.time()
step = 0
while time.time() - t0 < 3.0:
    run.log({"loss": 1.0 / (step + 1)}, step=step)
    step += 1
    time.sleep(0.05)
run.flush()
print(run.id, flush=True)
time.sleep(600)
"""


def test_a_killed_run_lasts_until_its_last_sign_of_life(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from conftest import child_env
    from test_server_stream import Stream

    root = tmp_path / "root"
    script = tmp_path / "child.py"
    script.write_text(KILLED_CHILD)
    # the heartbeat comes every 60 s: only the series tell how long the run lived
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True,
                            env=child_env({"LABTRACK_HEARTBEAT_SECONDS": "60"}))
    try:
        assert proc.stdout is not None
        run_id = read_line(proc.stdout).strip()
        assert run_id, "the child printed no run id"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    app = create_app(root)
    c = Client(app)
    d = c.json(f"/api/v1/runs/{run_id}")
    assert d["status"] == "crashed" and d["ended"] is None
    assert 2.5 <= d["duration"] < 30, d["duration"]
    listed = c.json("/api/v1/runs")["runs"]
    assert listed[0]["status"] == "crashed" and 2.5 <= listed[0]["duration"] < 30, listed

    async def first_row() -> Any:
        s = Stream(app, f"runs={run_id}")
        task = asyncio.get_running_loop().create_task(s.run())
        evs = await s.wait_for(lambda e: any(k == "run" for k, _ in e), 5)
        s.gone.set()
        await asyncio.wait_for(task, timeout=3)
        return next(v for k, v in evs if k == "run")

    row = asyncio.run(first_row())
    assert row["status"] == "crashed" and 2.5 <= row["duration"] < 30, row


def test_imports_run_one_way_app_routes_helpers() -> None:
    """app -> routes (api, stream, ingest, static, auth) -> helpers -> _store: no route
    imports the app or another route, and no helper imports a route or the app."""
    import ast

    server = Path(labtrack.__file__).parent / "_server"
    routes = {"api", "stream", "ingest", "static", "auth"}
    helpers = {"common", "state", "series", "series_store", "downsample"}

    def imported(module: str) -> set[str]:
        tree = ast.parse((server / f"{module}.py").read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    out.add(node.module.split(".")[0])
                else:
                    out.update(a.name for a in node.names)
        return out

    for module in routes:
        wrong = imported(module) & (routes | {"app"})
        assert not wrong, f"the route module {module} imports {wrong}; share through _server/common.py"
    for module in helpers:
        wrong = imported(module) & (routes | {"app"})
        assert not wrong, f"the helper module {module} imports {wrong}"
