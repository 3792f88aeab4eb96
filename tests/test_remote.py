"""The remote client in-process: backoff, file classes, the uploader against the real ingest
routes (through the transport seam), conflicts and resumes, limits, and the shipper thread.
Real processes (server killed and restarted, sync CLI) are in test_remote_e2e.py."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import httpx
import pytest
from starlette.applications import Starlette

from labtrack._remote.backoff import Backoff
from labtrack._remote.shipper import Shipper
from labtrack._remote.upload import RunUploader, is_append_only, scan_files
from labtrack._remote.wire import Body, Refused, Unavailable, WireClient, WireResponse
from labtrack._server.ingest import ingest_routes

EXP, RID = "mnist", "20261121-141503-k3f9qz"


class AsgiTransport:
    """The transport seam, served by an in-process ASGI app (the real ingest routes)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self.down = False

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                content: Body = None, headers: Mapping[str, str] | None = None) -> WireResponse:
        if self.down:
            raise Unavailable("connection refused (test switch)")
        self.requests.append((method, path))
        body = content if isinstance(content, bytes) or content is None else b"".join(content)
        hdrs = {k: v for k, v in (headers or {}).items() if k.lower() != "content-length"}

        async def go() -> WireResponse:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://t") as c:
                r = await c.request(method, path, params=dict(params or {}), content=body,
                                    headers=hdrs)
                return WireResponse(r.status_code, r.content)

        return asyncio.run(go())

    def close(self) -> None:
        pass


def server(root: Path, **kw: int) -> AsgiTransport:
    return AsgiTransport(Starlette(routes=ingest_routes(root, **kw)))


def tree(d: Path) -> dict[str, bytes]:
    return {p: (d / p).read_bytes() for p in scan_files(d)}


def make_run(d: Path) -> None:
    (d / "scalars/train").mkdir(parents=True)
    (d / "run.json").write_text('{"id": "%s", "status": "running"}\n' % RID)
    (d / "params.json").write_text('{"lr": 0.1}\n')
    (d / "scalars/train/loss.csv").write_text("step,value,time\n" + "".join(
        f"{i},{1 / (i + 1)!r},{1763734503.0 + i:.3f}\n" for i in range(500)))
    (d / "console.log").write_text("epoch 1\nepoch 2\n")
    (d / "media/3").mkdir(parents=True)
    (d / "media/3/img.png").write_bytes(os.urandom(3000))
    (d / "heartbeat").write_bytes(b"")


def uploader(local: Path, t: AsgiTransport) -> RunUploader:
    return RunUploader(local, WireClient("http://t", transport=t), experiment=EXP, run_id=RID)


def drain(up: RunUploader, budget: int = 8 << 20, most: int = 200) -> int:
    for n in range(1, most):
        if not up.round(budget).pending:
            return n
    raise AssertionError("the uploader never finished")


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    b = Backoff(base=0.5, cap=4.0, rand=lambda: 0.999999)
    delays = [b.next_delay() for _ in range(6)]
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0, 4.0], rel=1e-5)
    b.reset()
    assert b.next_delay() == pytest.approx(0.5, rel=1e-5)
    import random

    rng = random.Random(3)
    j = Backoff(base=1.0, cap=8.0, rand=rng.random)
    got = [j.next_delay() for _ in range(200)]
    assert all(0.5 <= d < 1.0 for d in got[:1]) and all(4.0 <= d < 8.0 for d in got[3:])
    assert len(set(got)) == len(got)  # jittered, not synchronised
    with pytest.raises(ValueError):
        Backoff(base=0.0)


def test_which_files_are_append_only() -> None:
    for p in ("scalars/train/loss.csv", "text/a/b.jsonl", "histograms/w.jsonl", "media.jsonl",
              "console.log"):
        assert is_append_only(p), p
    for p in ("run.json", "tables/t.csv", "media/3/x.csv", "artifacts/data.jsonl", "scalars",
              "markdown/notes.md", "heartbeat", "scalars/x.txt"):
        assert not is_append_only(p), p


def test_uploader_replicates_and_a_second_uploader_sends_nothing(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    t = server(root)
    up = uploader(local, t)
    drain(up)
    remote = root / EXP / RID
    assert tree(remote) == tree(local)
    assert scan_files(remote)["run.json"][1] == scan_files(local)["run.json"][1]  # mtime kept
    # Growth with a trailing partial line: only whole lines go.
    with open(local / "scalars/train/loss.csv", "a") as f:
        f.write("500,0.5,1.0\n501,0.")
    drain(up)
    assert (remote / "scalars/train/loss.csv").read_bytes().endswith(b"500,0.5,1.0\n")
    with open(local / "scalars/train/loss.csv", "a") as f:
        f.write("25,1.0\n")
    (local / "run.json").write_text('{"status": "finished"}\n')
    drain(up)
    assert tree(remote) == tree(local)
    # A fresh uploader (what `labtrack sync` does) asks sizes and sends nothing.
    t.requests.clear()
    fresh = uploader(local, t)
    assert fresh.round().pending is False
    assert fresh.bytes_sent == 0
    assert [m for m, _ in t.requests] == ["POST", "GET"]  # hello, sizes


def test_stale_offsets_resume_from_the_servers_size_without_duplicates(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    t = server(root)
    a, b = uploader(local, t), uploader(local, t)
    b.round()  # b learns the sizes and sends everything
    with open(local / "console.log", "a") as f:
        f.write("epoch 3\n")
    a._server = {}  # a believes the server holds nothing (a lost answer)
    a.info = b.info
    r = a.round()
    assert r.pending  # conflicts answered with sizes
    remote_log = root / EXP / RID / "console.log"
    assert remote_log.read_text() == "epoch 1\nepoch 2\n"  # refused at offset 0: not doubled
    assert a._server is not None and a._server["console.log"][0] == len("epoch 1\nepoch 2\n")
    drain(a)
    assert tree(root / EXP / RID) == tree(local)
    assert (root / EXP / RID / "console.log").read_text() == "epoch 1\nepoch 2\nepoch 3\n"


def test_rounds_are_bounded_by_the_budget(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    t = server(root)
    up = uploader(local, t)
    sizes_before = 0
    rounds = 0
    while True:
        r = up.round(budget=2000)
        rounds += 1
        assert r.bytes_sent <= 2000 + 3000 + 100  # the budget, plus one whole file or line
        sizes_before += r.bytes_sent
        if not r.pending:
            break
    assert rounds > 5
    assert tree(root / EXP / RID) == tree(local)


def test_large_files_stream_and_oversized_ones_are_reported(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    (local / "artifacts").mkdir()
    (local / "artifacts/model.bin").write_bytes(os.urandom(600_000))
    (local / "artifacts/huge.bin").write_bytes(b"x" * 2_000_000)
    t = server(root, max_batch_bytes=256 << 10, max_file_bytes=1_000_000)
    up = uploader(local, t)
    msgs: list[str] = []
    for _ in range(50):
        r = up.round()
        msgs += r.refused
        if not r.pending:
            break
    remote = root / EXP / RID
    assert (remote / "artifacts/model.bin").read_bytes() == (local / "artifacts/model.bin").read_bytes()
    assert not (remote / "artifacts/huge.bin").exists()
    assert len(msgs) == 1 and "huge.bin" in msgs[0] and "limit" in msgs[0]
    assert ("PUT", f"/api/v1/ingest/{EXP}/{RID}/file") in t.requests  # streamed, not batched


def test_a_file_the_server_refuses_does_not_block_the_others(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    (local / "artifacts").mkdir()
    (local / "artifacts/odd\\name.txt").write_text("x")  # the server refuses backslashes
    up = uploader(local, server(root))
    msgs: list[str] = []
    for _ in range(20):
        r = up.round()
        msgs += r.refused
        if not r.pending:
            break
    expect = {k: v for k, v in tree(local).items() if "odd" not in k}
    assert tree(root / EXP / RID) == expect
    assert len(msgs) == 1 and "backslash" in msgs[0]


def test_a_shrunk_append_file_is_replaced_whole(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    up = uploader(local, server(root))
    drain(up)
    (local / "console.log").write_text("rewritten\n")
    drain(up)
    assert tree(root / EXP / RID) == tree(local)


def test_refused_token_raises_refused(tmp_path: Path) -> None:
    from labtrack._server.auth import TokenAuth, create_token

    f = tmp_path / "tokens.json"
    create_token(f, "x", ["read"])
    local = tmp_path / "local"
    make_run(local)
    t = AsgiTransport(Starlette(routes=ingest_routes(tmp_path / "srv", auth=TokenAuth(f))))
    with pytest.raises(Refused) as e:
        uploader(local, t).round()
    assert e.value.status == 401
    assert not (tmp_path / "srv").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shipper_with_the_server_down_warns_once_and_close_is_bounded(tmp_path: Path) -> None:
    local = tmp_path / "local"
    make_run(local)
    warnings: list[str] = []
    s = Shipper(local, f"http://127.0.0.1:{free_port()}", "tok", experiment_slug=EXP, run_id=RID,
                backoff=Backoff(base=0.05, cap=0.2), warn=warnings.append)
    s.start()
    t0 = time.perf_counter()
    for _ in range(20_000):
        s.notify()
    notify_cost = (time.perf_counter() - t0) / 20_000
    time.sleep(1.0)
    t0 = time.perf_counter()
    assert s.close(0.8) is False
    waited = time.perf_counter() - t0
    assert waited < 3.0
    assert s.failures >= 3
    assert len(warnings) == 1 and "cannot reach" in warnings[0] and str(local) in warnings[0]
    assert notify_cost < 1e-3  # an Event.set, not network work


def test_shipper_delivers_through_the_seam_and_catches_up_after_an_outage(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    t = server(root)
    t.down = True
    warnings: list[str] = []
    s = Shipper(local, "http://t", None, experiment_slug=EXP, run_id=RID, transport=t,
                backoff=Backoff(base=0.05, cap=0.2), warn=warnings.append, poll_seconds=0.1)
    s.start()
    stop = threading.Event()

    def writer() -> None:  # appends whole lines like the writer thread, notifying each time
        i = 500
        while not stop.is_set():
            with open(local / "scalars/train/loss.csv", "a") as f:
                f.write(f"{i},{i * 0.5!r},1.0\n")
            i += 1
            s.notify()
            time.sleep(0.002)

    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.5)
    t.down = False
    time.sleep(0.5)
    stop.set()
    w.join()
    assert s.close(10.0) is True
    assert tree(root / EXP / RID) == tree(local)
    assert [w.split(" ")[0] for w in warnings] == ["cannot", "the"]  # down once, recovered once


@pytest.mark.parametrize("url", ["ftp://host", "logs.lab:8765", "http://", "http://h:99999",
                                 "http://h:1/?x=1"])
def test_a_bad_server_url_is_refused_at_once(tmp_path: Path, url: str) -> None:
    from labtrack.errors import LabtrackValueError

    with pytest.raises(LabtrackValueError, match="is not allowed"):
        Shipper(tmp_path, url, None, experiment_slug=EXP, run_id=RID)


def test_pruned_checkpoints_are_deleted_on_the_server_but_sync_never_deletes(tmp_path: Path) -> None:
    import shutil

    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    for step in (1, 2):
        (local / f"checkpoints/{step}").mkdir(parents=True)
        (local / f"checkpoints/{step}/model.bin").write_bytes(os.urandom(100))
    # Folders in transit are not replicated; ordinary dot-files are.
    (local / "checkpoints/.3.ab12cd34.tmp").mkdir()
    (local / "checkpoints/.3.ab12cd34.tmp/model.bin").write_bytes(b"half")
    (local / "artifacts/.data.tmp4242").mkdir(parents=True)
    (local / "artifacts/.data.tmp4242/x").write_bytes(b"half")
    (local / "source/untracked").mkdir(parents=True)
    (local / "source/untracked/.gitignore").write_text("*.pyc\n")
    t = server(root)
    up = uploader(local, t)
    drain(up)
    remote = root / EXP / RID
    assert (remote / "source/untracked/.gitignore").read_text() == "*.pyc\n"
    assert not list(remote.rglob("*.tmp*"))
    shutil.rmtree(local / "checkpoints/1")
    drain(up)
    assert not (remote / "checkpoints/1").exists()  # the file and its emptied folder
    assert (remote / "checkpoints/2/model.bin").exists()
    # A fresh uploader (sync) of a local copy that lost a file leaves the server's alone.
    (local / "checkpoints/2/model.bin").unlink()
    drain(uploader(local, t))
    assert (remote / "checkpoints/2/model.bin").exists()


def test_find_runs_by_id_prefix_experiment_and_path(tmp_path: Path) -> None:
    from labtrack._remote.sync import find_runs
    from labtrack.errors import RunNotFoundError

    for exp, rid in (("a", "20261121-141503-k3f9qz"), ("b", "20261121-141503-k3f9zz"),
                     ("b", "20261122-000000-aaaaaa")):
        (tmp_path / exp / rid).mkdir(parents=True)
        (tmp_path / exp / rid / "run.json").write_text("{}")
    assert len(find_runs(tmp_path, [])) == 3
    assert [p.name for p in find_runs(tmp_path, ["20261122"])] == ["20261122-000000-aaaaaa"]
    assert [p.parent.name for p in find_runs(tmp_path, ["b/20261121"])] == ["b"]
    assert find_runs(tmp_path, [str(tmp_path / "a" / "20261121-141503-k3f9qz")]) == \
        [tmp_path / "a" / "20261121-141503-k3f9qz"]
    with pytest.raises(RunNotFoundError, match="matches 2 runs"):
        find_runs(tmp_path, ["20261121-141503"])
    with pytest.raises(RunNotFoundError, match="no run"):
        find_runs(tmp_path, ["1999"])


def test_new_media_files_are_learned_from_media_jsonl_between_walks(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    t = server(root)
    up = uploader(local, t)
    drain(up)
    remote = root / EXP / RID
    (local / "media/7/samples").mkdir(parents=True)
    (local / "media/7/samples/bird.png").write_bytes(b"png")
    (local / "media/7/samples/bird.json").write_text('{"boxes": []}')
    (local / "media/8").mkdir()
    (local / "media/8/unlisted.png").write_bytes(b"x")  # named by no media.jsonl line
    with open(local / "media.jsonl", "a") as f:
        f.write('{"step": 7, "name": "samples/bird", "kind": "image", '
                '"path": "media/7/samples/bird.png", "boxes": "media/7/samples/bird.json"}\n')
    t.requests.clear()
    drain(up)
    assert (remote / "media/7/samples/bird.png").read_bytes() == b"png"
    assert (remote / "media/7/samples/bird.json").exists()
    assert (remote / "media.jsonl").read_bytes() == (local / "media.jsonl").read_bytes()
    assert len(t.requests) == 1  # the image, its boxes and the line went in one batch
    assert not (remote / "media/8/unlisted.png").exists()  # media/ was not walked
    up.media_rescan_seconds = 0.0
    drain(up)
    assert tree(remote) == tree(local)


def test_a_line_longer_than_the_request_limit_is_reported_not_stuck(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "srv"
    make_run(local)
    with open(local / "console.log", "a") as f:
        f.write("x" * 300_000 + "\n")
    up = uploader(local, server(root, max_batch_bytes=256 << 10))
    msgs: list[str] = []
    for _ in range(50):
        r = up.round()
        msgs += r.refused
        if not r.pending:
            break
    assert len(msgs) == 1 and "line longer" in msgs[0]
    assert (root / EXP / RID / "console.log").read_text() == "epoch 1\nepoch 2\n"
    assert (root / EXP / RID / "scalars/train/loss.csv").exists()


def test_sync_runs_shakes_hands_once_and_a_second_sync_sends_nothing(tmp_path: Path) -> None:
    from labtrack._remote.sync import sync_runs

    dirs = []
    for rid in ("20261121-141503-aaaaaa", "20261121-141503-bbbbbb", "20261121-141503-cccccc"):
        d = tmp_path / "local" / EXP / rid
        make_run(d)
        dirs.append(d)
    t = server(tmp_path / "srv")
    first = sync_runs(dirs, "http://t", None, transport=t)
    assert all(r.bytes > 0 and r.files > 0 for r in first)
    assert sum(path.endswith("/hello") for _, path in t.requests) == 1
    t.requests.clear()
    second = sync_runs(dirs, "http://t", None, transport=t)
    assert [(r.bytes, r.files) for r in second] == [(0, 0)] * 3
    assert [m for m, _ in t.requests] == ["POST", "GET", "GET", "GET"]  # hello, then sizes only
    for d in dirs:
        assert tree(tmp_path / "srv" / EXP / d.name) == tree(d)
