"""A never-indexed root answers its first runs request from its newest runs (issue 17):
`Index.prefill` and the server's filling thread, over real run directories."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from labtrack._index import Index
from labtrack._server import state as server_state
from labtrack._server.app import create_app

N = 12


def write_run(root: Path, i: int, experiment: str | None = None) -> str:
    """Run `i` (a larger i started later), per docs/format.md."""
    rid = f"20261121-1415{i:02d}-r{i:05d}"
    exp = experiment or f"exp{i % 3}"
    d = root / exp / rid
    (d / "scalars").mkdir(parents=True)
    started = f"2026-11-21T14:15:{i:02d}.000000+00:00"
    (d / "run.json").write_text(json.dumps({
        "format_version": 1, "id": rid, "experiment": exp, "name": f"run{i}", "comment": "",
        "tags": ["t"] if i % 2 else [], "status": "finished", "started": started,
        "ended": started.replace("14:15", "14:16"), "pid": 1, "host": "elsewhere", "git": None}))
    (d / "params.json").write_text(json.dumps({"lr": 0.1 / (i + 1), "opt": {"beta": 0.9}}))
    (d / "summary.json").write_text(json.dumps({"loss": {
        "last": 1.0 / (i + 1), "min": 0.5 / (i + 1), "max": 2.0, "mean": 1.0, "sum": 4.0, "count": 4,
        "finite": 4, "step": 3, "time": 1.7e9}}))
    return rid


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for i in range(N):
        write_run(r, i)
    return r


def cold_rows(root: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """The runs as a fresh index built the ordinary way lists them (the reference)."""
    with Index(root, path=tmp_path / f"ref-{time.monotonic_ns()}.sqlite") as index:
        _, rows = index.query(sort="-started")
    for r in rows:
        r.pop("dir")
    return rows


def test_prefill_stores_the_newest_runs_and_refresh_completes_them(root: Path, tmp_path: Path) -> None:
    index = Index(root, path=tmp_path / "index.sqlite")
    assert index.prefill(4) == N
    total, rows = index.query(sort="-started")
    assert total == 4  # answered from what is stored: no refresh behind the caller's back
    assert [r["name"] for r in rows] == [f"run{i}" for i in range(N - 1, N - 5, -1)]
    assert index.prefill(4) is None  # only for an index that holds nothing
    result = index.refresh()
    assert (result["added"], result["total"]) == (N - 4, N)
    total, rows = index.query(sort="-started")
    for r in rows:
        r.pop("dir")
    assert total == N and rows == cold_rows(root, tmp_path)
    index.close()


def test_prefill_follows_the_walk_of_every_listing(root: Path, tmp_path: Path) -> None:
    # a folder without run.json, a symlinked experiment folder (its runs listed once, under
    # the first name) and one leading out of the root are no extra runs
    (root / "exp0" / "20991231-235959-notrun").mkdir()
    (root / "alias").symlink_to(root / "exp0", target_is_directory=True)
    outside = tmp_path / "outside"
    write_run(outside, 99, experiment="far")
    (root / "zfar").symlink_to(outside / "far", target_is_directory=True)
    index = Index(root, path=tmp_path / "index.sqlite")
    index.prefill(N + 10)
    _, rows = index.query(sort="-started")
    reference = cold_rows(root, tmp_path)
    assert len(reference) == N
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in reference)
    assert {r["dir"].split("/")[-2] for r in rows if r["experiment"] == "exp0"} == {"alias"}
    index.close()


def test_a_chunked_refresh_stores_the_newest_first_and_ends_the_same(root: Path, tmp_path: Path) -> None:
    index = Index(root, path=tmp_path / "index.sqlite")
    seen: list[tuple[int, int, list[str]]] = []

    def progress(left: int) -> None:
        # each chunk is committed when this is called: another connection sees it already
        con = sqlite3.connect(tmp_path / "index.sqlite")
        names = [n for (n,) in con.execute("SELECT name FROM runs ORDER BY started DESC")]
        con.close()
        seen.append((left, len(names), names))

    result = index.refresh(chunk=5, progress=progress)
    assert [(left, total) for left, total, _ in seen] == [(N - 5, 5), (N - 10, 10), (0, N)]
    assert seen[0][2] == [f"run{i}" for i in range(N - 1, N - 6, -1)]
    assert (result["added"], result["total"]) == (N, N)
    _, rows = index.query(sort="-started")
    assert [{k: v for k, v in r.items() if k != "dir"} for r in rows] == cold_rows(root, tmp_path)
    # a run gone is dropped by the last chunk; nothing changed costs no transaction
    shutil.rmtree(sorted(root.glob("exp1/*"))[0])
    assert index.refresh(chunk=5)["removed"] == 1 and index.query()[0] == N - 1
    assert index.refresh(chunk=5) == {"added": 0, "updated": 0, "removed": 0, "unreadable": 0,
                                      "total": N - 1}
    index.close()


def test_prefill_leaves_an_unreadable_run_to_the_refresh(root: Path, tmp_path: Path) -> None:
    newest = sorted(root.glob("*/*"), key=lambda p: p.name)[-1]
    (newest / "run.json").write_text("{not json")
    index = Index(root, path=tmp_path / "index.sqlite")
    assert index.prefill(3) == N
    # the three newest readable runs
    assert [r["name"] for r in index.query()[1]] == [f"run{N - 2}", f"run{N - 3}", f"run{N - 4}"]
    index.refresh()
    assert index.query()[0] == N - 1
    assert [rel for rel, _ in index.problems()] == [f"{newest.parent.name}/{newest.name}"]
    index.close()


class Client:
    def __init__(self, app: Any) -> None:
        self.app = app

    def runs(self, **params: str) -> dict[str, Any]:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.get("/api/v1/runs", params=params)

        r = asyncio.run(go())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def until_complete(self, **params: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            body = self.runs(**params)
            if "pending" not in body:
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.05)

    def close(self) -> None:
        self.app.state.labtrack.close()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Holds every full refresh until set, so a test sees the index while it fills."""
    opened = threading.Event()
    original = Index.refresh

    def held(self: Index, max_age: float = 0.0, **how: Any) -> Any:
        assert opened.wait(30), "the test never opened the gate"
        return original(self, max_age, **how)

    monkeypatch.setattr(Index, "refresh", held)
    monkeypatch.setattr(server_state, "PREFILL", 3)
    return opened


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "dir"} for r in rows]


def test_the_first_answer_comes_from_the_newest_runs_then_all(root: Path, tmp_path: Path,
                                                              gate: threading.Event) -> None:
    client = Client(create_app(root))
    try:
        first = client.runs(limit="100")
        assert first["pending"] == N - 3 and first["total"] == 3
        assert [r["name"] for r in first["runs"]] == [f"run{N - 1}", f"run{N - 2}", f"run{N - 3}"]
        # a run written while the rest is read shows up once the index is complete
        added = write_run(root, N + 5, experiment="late")
        assert client.runs(limit="100", where="params.lr < 1")["pending"] == N - 3
        gate.set()
        body = client.until_complete(limit="100")
        assert body["total"] == N + 1 and body["runs"][0]["id"] == added
        reference = cold_rows(root, tmp_path)
        assert strip(body["runs"]) == [{k: v for k, v in r.items() if k != "pid"} for r in reference]
        # filters and sorts now see every run, as the cold path does
        sorted_body = client.runs(limit="100", sort="metrics.loss", where="params.lr < 0.05")
        expected = [r["id"] for r in sorted(reference, key=lambda r: r["metrics"]["loss"])
                    if r["params"]["lr"] < 0.05]
        assert [r["id"] for r in sorted_body["runs"]] == expected and "pending" not in sorted_body
        # a run changed once the index is complete shows up too (the background refresh)
        changed = sorted(root.glob("exp0/*"))[0]
        summary = json.loads((changed / "summary.json").read_text())
        summary["loss"]["last"] = 123.0
        (changed / "summary.json").write_text(json.dumps(summary))
        deadline = time.monotonic() + 30
        while client.runs(limit="1", where="metrics.loss > 100")["total"] != 1:
            assert time.monotonic() < deadline, "the changed run never showed"
            time.sleep(0.1)
    finally:
        gate.set()
        client.close()


def test_a_deleted_index_is_rebuilt_the_same(root: Path, tmp_path: Path, gate: threading.Event) -> None:
    gate.set()
    client = Client(create_app(root))
    try:
        before = client.until_complete(limit="100")
    finally:
        client.close()
    assert (root / ".labtrack" / "index.sqlite").is_file()
    shutil.rmtree(root / ".labtrack")
    client = Client(create_app(root))
    try:
        again = client.until_complete(limit="100")
        assert strip(again["runs"]) == strip(before["runs"]) and again["total"] == N
        assert (root / ".labtrack" / "index.sqlite").is_file()
    finally:
        client.close()
    # a server over an index that exists reads no run twice and never says pending
    client = Client(create_app(root))
    try:
        assert "pending" not in client.runs(limit="5")
    finally:
        client.close()


def test_a_small_root_is_never_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    for i in range(3):
        write_run(root, i)
    monkeypatch.setattr(server_state, "PREFILL", 3)
    client = Client(create_app(root))
    try:
        body = client.runs()
        assert body["total"] == 3 and "pending" not in body
    finally:
        client.close()
