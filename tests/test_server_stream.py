"""The live stream, in process: the ASGI app driven by hand so disconnects are real events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labtrack._server import stream as stream_mod
from labtrack._server.app import create_app
from test_server_api import Client, _close_apps, write_run  # noqa: F401 (an autouse fixture)


def parse_events(body: bytes) -> list[tuple[str, Any]]:
    """(event, data) pairs of complete SSE events in `body`."""
    out = []
    for block in body.split(b"\n\n"):
        kind, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
        if kind is not None:
            out.append((kind, data))
    return out


class Stream:
    """One stream request against the app, with a hand-held disconnect."""

    def __init__(self, app: Any, query: str) -> None:
        self.app = app
        self.query = query
        self.body = b""
        self.status: int | None = None
        self.ended = False  # the app sent the last body message itself
        self.gone = asyncio.Event()
        self.got = asyncio.Event()

    async def run(self) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/api/v1/stream", "raw_path": b"/api/v1/stream",
                 "query_string": self.query.encode(), "root_path": "",
                 "headers": [(b"host", b"t")], "client": ("127.0.0.1", 1), "server": ("t", 80)}

        async def receive() -> dict[str, Any]:
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            else:
                self.body += message.get("body", b"")
                if not message.get("more_body", False):
                    self.ended = True
            self.got.set()

        await self.app(scope, receive, send)

    def events(self) -> list[tuple[str, Any]]:
        return parse_events(self.body)

    async def wait_for(self, predicate: Any, timeout: float) -> list[tuple[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events()
            if predicate(evs):
                return evs
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such event within {timeout}s; got {evs}")
            self.got.clear()
            try:
                await asyncio.wait_for(self.got.wait(), timeout=left)
            except asyncio.TimeoutError:
                pass


def test_appended_points_arrive_within_two_seconds(tmp_path: Path) -> None:
    root = tmp_path / "root"
    d = write_run(root, "20261121-141503-live00", status="running")
    path = d / "scalars" / "loss.csv"
    path.write_bytes(b"step,value,time\n0,1.0,1.0\n")
    (d / "console.log").write_bytes(b"old line\n")
    app = create_app(root)
    written: dict[int, float] = {}
    stop = threading.Event()

    def writer() -> None:
        # a writer thread appending whole lines, like labtrack's writer does
        for step in range(1, 30):
            if stop.wait(0.1):
                return
            with open(path, "ab") as f:
                written[step] = time.monotonic()
                f.write(f"{step},{step * 0.5},{time.time():.3f}\n".encode())
            if step == 5:
                with open(d / "console.log", "ab") as f:
                    f.write("epoch 5 ✓\n".encode())

    async def main() -> None:
        s = Stream(app, "runs=20261121-141503-live00")
        task = asyncio.get_running_loop().create_task(s.run())
        evs = await s.wait_for(lambda e: any(k == "run" for k, _ in e), 5)
        run_ev = next(v for k, v in evs if k == "run")
        assert run_ev["id"] == "20261121-141503-live00" and run_ev["status"] in ("running", "crashed")
        t = threading.Thread(target=writer)
        t.start()
        seen: dict[int, float] = {}
        deadline = time.monotonic() + 15
        try:
            while len(seen) < 29 and time.monotonic() < deadline:
                await s.wait_for(lambda e: sum(len(v["step"]) for k, v in e if k == "scalars") > len(seen), 5)
                now = time.monotonic()
                for k, v in s.events():
                    if k == "scalars":
                        assert v["run"] == "20261121-141503-live00" and v["name"] == "loss"
                        for st in v["step"]:
                            seen.setdefault(st, now)
        finally:
            stop.set()
            t.join()
        assert sorted(seen) == list(range(1, 30))  # no duplicates of step 0, nothing lost
        lags = [seen[st] - written[st] for st in seen]
        assert max(lags) < 2.0, lags
        console = [v for k, v in s.events() if k == "console"]
        assert "".join(c["text"] for c in console) == "epoch 5 ✓\n"
        assert console[0]["start"] == len(b"old line\n")
        assert console[-1]["offset"] == (d / "console.log").stat().st_size
        # the client leaves: the response ends promptly, without the server sending more
        s.gone.set()
        await asyncio.wait_for(task, timeout=3)

    asyncio.run(main())


def test_run_and_runs_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_mod, "ROOT_EVERY", 1)
    root = tmp_path / "root"
    d = write_run(root, "20261121-141503-meta00", status="running")
    app = create_app(root)

    async def main() -> None:
        s = Stream(app, "runs=20261121-141503-meta00")
        task = asyncio.get_running_loop().create_task(s.run())
        await s.wait_for(lambda e: any(k == "run" for k, _ in e), 5)
        meta = json.loads((d / "run.json").read_text())
        meta["status"] = "finished"
        meta["ended"] = "2026-11-21T14:30:00+00:00"
        (d / "run.json.tmp").write_text(json.dumps(meta))
        (d / "run.json.tmp").replace(d / "run.json")
        evs = await s.wait_for(lambda e: any(k == "run" and v["status"] == "finished" for k, v in e), 5)
        assert [v["status"] for k, v in evs if k == "run"][-1] == "finished"
        write_run(root, "20261121-141503-new000")
        evs = await s.wait_for(lambda e: any(k == "runs" for k, _ in e), 5)
        assert [v for k, v in evs if k == "runs"][-1] == {"total": 2}
        # a series that appears after the stream opened is sent from its first point
        (d / "scalars" / "fresh.csv").write_bytes(b"step,value,time\n0,nan,1.0\n1,2.0,1.5\n")
        evs = await s.wait_for(lambda e: any(k == "scalars" for k, _ in e), 5)
        fresh = next(v for k, v in evs if k == "scalars")
        assert fresh["name"] == "fresh" and fresh["step"] == [0, 1] and fresh["value"] == ["NaN", 2.0]
        s.gone.set()
        await asyncio.wait_for(task, timeout=3)

    asyncio.run(main())


def test_stream_ends_when_the_server_shuts_down(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_run(root, "20261121-141503-stop00", status="running")
    app = create_app(root)

    async def main() -> None:
        s = Stream(app, "runs=20261121-141503-stop00")
        task = asyncio.get_running_loop().create_task(s.run())
        await s.wait_for(lambda e: len(e) > 0, 5)
        app.state.labtrack.shutdown.set()
        await asyncio.wait_for(task, timeout=3)
        assert s.ended and s.status == 200

    asyncio.run(main())


def test_stream_pings_when_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_mod, "PING_SECONDS", 0.2)
    root = tmp_path / "root"
    app = create_app(root)

    async def main() -> None:
        s = Stream(app, "")
        task = asyncio.get_running_loop().create_task(s.run())
        deadline = time.monotonic() + 5
        while b": ping\n\n" not in s.body and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert s.body.startswith(b"retry: 2000\n\n") and b": ping\n\n" in s.body
        s.gone.set()
        await asyncio.wait_for(task, timeout=3)

    asyncio.run(main())


def test_stream_refuses_unknown_runs_and_too_many(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_run(root, "20261121-141503-only00")
    c = Client(create_app(root))
    body = c.json("/api/v1/stream?runs=20261121-141503-only00,20261121-141503-nope00", status=404)
    assert "20261121-141503-nope00" in body["error"]
    many = ",".join(f"20261121-141503-{i:06d}" for i in range(201))
    body = c.json(f"/api/v1/stream?runs={many}", status=400)
    assert "201 runs" in body["error"] and "200" in body["error"]


def test_a_stream_opened_mid_line_sends_the_whole_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    d = write_run(root, "20261121-141503-half00", status="running")
    path = d / "scalars" / "acc.csv"
    path.write_bytes(b"step,value,time\n0,0.5,1.0\n125,0.7")  # the writer is mid-line
    app = create_app(root)

    async def main() -> None:
        s = Stream(app, "runs=20261121-141503-half00")
        task = asyncio.get_running_loop().create_task(s.run())
        await s.wait_for(lambda e: any(k == "run" for k, _ in e), 5)
        with open(path, "ab") as f:
            f.write(b"5,2.0\n126,0.75,3.0\n")
        evs = await s.wait_for(lambda e: any(k == "scalars" for k, _ in e), 5)
        sc = [v for k, v in evs if k == "scalars"]
        assert sc[0]["step"] == [125, 126] and sc[0]["value"] == [0.75, 0.75]
        s.gone.set()
        await asyncio.wait_for(task, timeout=3)

    asyncio.run(main())
