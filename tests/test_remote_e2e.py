"""Remote logging with real processes: `labtrack serve` on free 127.0.0.1 ports (killed with
SIGKILL and restarted), training scripts as child processes, and the `labtrack sync` and
`labtrack token` commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from labtrack._remote.upload import scan_files

pytestmark = pytest.mark.slow

LABTRACK = [sys.executable, "-c", "from labtrack.cli import main; main()"]

CLIENT = r'''
import os, sys, time
import numpy as np
import labtrack

root, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
run = labtrack.init(experiment="e2e", root=root, remote=url, config={"lr": 0.1, "opt": {"b": 2}},
                    capture_git=False, flush_seconds=0.2)
print("RUNDIR", run.dir, flush=True)
t0 = time.time()
step = 0
stop = os.path.join(os.path.dirname(root), "stop")  # the test ends the loop with this file
while time.time() - t0 < seconds and not (step % 50 == 0 and os.path.exists(stop)):
    run.log({"train/loss": 1.0 / (step + 1), "val acc/top-1": step * 0.01, "lr": 0.1}, step=step)
    if step % 100 == 0:
        print(f"step {step}", flush=True)
        run.log_text("notes", f"note at {step}", step=step)
        run.log_histogram("w", np.linspace(-1, 1, 50) * (step + 1), step=step)
    if step % 300 == 0:  # rotated: the server must drop the pruned ones too
        run.save_checkpoint({"step": step, "w": list(range(100))}, step, metric=1.0 / (step + 1),
                            mode="max", keep_last=2)
    if step == 10:
        run.log_table("results", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
        run.log_markdown("notes", "# hello")
        with open(os.path.join(os.path.dirname(root), "weights.bin"), "wb") as f:
            f.write(os.urandom(300_000))
        run.save_artifact(os.path.join(os.path.dirname(root), "weights.bin"), "model/weights.bin")
    if step % 400 == 0:
        run.log_image("samples/img", (np.arange(24 * 32 * 3).reshape(24, 32, 3) + step) % 256,
                      step=step)
    step += 1
    time.sleep(0.002)
run.finish()
print("DONE", step, flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `labtrack serve` child process on 127.0.0.1; its output is kept for failures."""

    def __init__(self, root: Path, port: int, log: Path, *args: str) -> None:
        self.root, self.port, self.log, self.args = root, port, log, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*LABTRACK, "serve", "--root", str(self.root), "--host", "127.0.0.1",
                 "--port", str(self.port), *self.args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"labtrack serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"labtrack serve did not answer within 30 s:\n{self.output()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def make_server(tmp_path: Path) -> Any:
    servers: list[Server] = []

    def make(*args: str, root: Path | None = None) -> Server:
        s = Server(root or tmp_path / "server-root", free_port(), tmp_path / f"serve{len(servers)}.log",
                   *args)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.kill()


def start_client(tmp_path: Path, url: str, seconds: float, env: dict[str, str] | None = None
                 ) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(CLIENT)
    e = {**os.environ, "LABTRACK_SYNC_TIMEOUT": "60", **(env or {})}
    e.pop("LABTRACK_REMOTE", None)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "client-root"), url,
                             str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e, cwd=tmp_path)


def wait_for(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def written(root: Path) -> list[Path]:
    """Files under a server root other than its derived index (`.labtrack/`)."""
    return [p for p in root.rglob("*") if p.is_file() and ".labtrack" not in p.relative_to(root).parts]


def run_dir_of(stdout: str) -> Path:
    for line in stdout.splitlines():
        if line.startswith("RUNDIR "):
            return Path(line[7:])
    raise AssertionError(f"no RUNDIR line in {stdout!r}")


def assert_identical(local: Path, remote: Path, mtimes: bool = True) -> None:
    a, b = scan_files(local), scan_files(remote)
    assert sorted(a) == sorted(b)
    folders = [sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_dir()
                      and not any(part.startswith(".") for part in p.relative_to(d).parts))
               for d in (local, remote)]
    assert folders[0] == folders[1]  # pruned checkpoints leave no empty folder behind
    for p in a:
        assert (local / p).read_bytes() == (remote / p).read_bytes(), p
    # The client's modification times of rewritten files are kept (what sync compares).
    assert not mtimes or a["run.json"][1] == b["run.json"][1]


def test_server_killed_and_restarted_twice_ends_byte_identical(tmp_path: Path, make_server: Any) -> None:
    srv = make_server()
    srv.start()
    client = start_client(tmp_path, srv.url, seconds=120.0)
    remote_root = srv.root / "e2e"
    series = lambda: list(remote_root.glob("*/scalars/train/loss.csv"))  # noqa: E731
    wait_for(lambda: series() and series()[0].stat().st_size > 2000, "the first data on the server")
    for _ in range(2):
        srv.kill()
        size = series()[0].stat().st_size
        time.sleep(1.5)  # the client keeps logging while the server is gone
        srv.start()
        wait_for(lambda: series()[0].stat().st_size > size, "the client to catch up")
        time.sleep(0.5)
    (tmp_path / "stop").touch()
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert "DONE" in out
    local = run_dir_of(out)
    assert err.count("cannot reach the logging server") == 1, err  # warned once
    assert "labtrack sync" not in err  # finish() delivered everything in time
    assert_identical(local, remote_root / local.name)
    lines = (local / "scalars/train/loss.csv").read_text().splitlines()
    assert len(lines) > 1000 and lines[0] == "step,value,time"


def test_client_started_with_the_server_down_syncs_once_it_is_up(tmp_path: Path, make_server: Any) -> None:
    srv = make_server()
    client = start_client(tmp_path, srv.url, seconds=120.0)
    wait_for(lambda: any((tmp_path / "client-root").glob("e2e/*/scalars/train/loss.csv")),
             "the client to log")
    time.sleep(1.0)
    assert not srv.root.exists() or not any(srv.root.rglob("run.json"))
    srv.start()
    # While still logging, the client finds the server (within its backoff cap of 10 s).
    wait_for(lambda: any(srv.root.glob("e2e/*/scalars/train/loss.csv")), "the catch-up", 30)
    (tmp_path / "stop").touch()
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    local = run_dir_of(out)
    assert err.count("cannot reach the logging server") == 1, err
    assert_identical(local, srv.root / "e2e" / local.name)
    # The server's reader sees the finished run through its own files.
    from labtrack._store.reader import read_run_meta

    assert read_run_meta(srv.root / "e2e" / local.name)["status"] == "finished"


def test_finish_with_the_server_down_tells_the_user_to_sync_then_sync_twice(
        tmp_path: Path, make_server: Any) -> None:
    srv = make_server()
    client = start_client(tmp_path, srv.url, seconds=1.0, env={"LABTRACK_SYNC_TIMEOUT": "1"})
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert "labtrack sync" in err
    local = run_dir_of(out)
    srv.start()
    cmd = [*LABTRACK, "sync", "--remote", srv.url, "--root", str(tmp_path / "client-root")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "bytes sent" in first.stdout
    remote = srv.root / "e2e" / local.name
    assert_identical(local, remote)
    before = {p: (remote / p).stat().st_mtime_ns for p in scan_files(remote)}
    second = subprocess.run([*cmd, local.name[:12]], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"e2e/{local.name}: up to date"
    assert {p: (remote / p).stat().st_mtime_ns for p in scan_files(remote)} == before


def test_tokens_on_a_real_server(tmp_path: Path, make_server: Any) -> None:
    tokens = tmp_path / "tokens.json"

    def create(name: str, scope: str) -> str:
        r = subprocess.run([*LABTRACK, "token", "create", name, f"--{scope}", "--tokens", str(tokens)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    writer, reader = create("ci", "write"), create("dash", "read")
    srv = make_server("--tokens", str(tokens))
    srv.start()
    url = srv.url + "/api/v1/ingest/e2e/20261121-141503-k3f9qz/append"
    for headers, status in (({}, 401), ({"Authorization": "Bearer lt_nope"}, 401),
                            ({"Authorization": f"Bearer {reader}"}, 403)):
        r = httpx.put(url, params={"path": "console.log", "offset": "0"}, content=b"x\n",
                      headers={"X-Labtrack-Client": "test", **headers}, timeout=10)
        assert r.status_code == status, r.text
    r = httpx.put(url, params={"path": "../../escape.txt", "offset": "0"}, content=b"x\n",
                  headers={"Authorization": f"Bearer {writer}", "X-Labtrack-Client": "test"}, timeout=10)
    assert r.status_code == 400 and "path" in r.json()["error"]
    assert written(srv.root) == []
    assert not (tmp_path / "escape.txt").exists()
    # A run logged with a wrong token keeps its data locally and says how to sync it.
    client = start_client(tmp_path, srv.url, seconds=0.5,
                          env={"LABTRACK_TOKEN": "lt_nope", "LABTRACK_SYNC_TIMEOUT": "1"})
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert "refused" in err and "labtrack sync" in err
    assert written(srv.root) == []
    local = run_dir_of(out)
    r = subprocess.run([*LABTRACK, "sync", "--remote", srv.url, "--token", writer, "--root",
                        str(tmp_path / "client-root")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert_identical(local, srv.root / "e2e" / local.name)
    # The dashboard's read API on the same server shows the run, to read tokens only.
    assert httpx.get(srv.url + "/api/v1/health", timeout=10).status_code == 200
    assert httpx.get(srv.url + "/api/v1/runs", timeout=10).status_code == 401
    r = httpx.get(srv.url + "/api/v1/runs", headers={"Authorization": f"Bearer {reader}"}, timeout=10)
    assert r.status_code == 200 and [row["id"] for row in r.json()["runs"]] == [local.name]
    # A browser logs in once; the HttpOnly cookie then reads (never writes).
    assert "<form" in httpx.get(srv.url + "/login", timeout=10).text
    client_header = {"X-Labtrack-Client": "test"}
    assert httpx.post(srv.url + "/login", json={"token": "lt_nope"}, headers=client_header,
                      timeout=10).status_code == 401
    # A form post (what a page of another site could send) is refused before the token is read.
    r = httpx.post(srv.url + "/login", data={"token": writer}, headers=client_header, timeout=10)
    assert r.status_code == 415 and "set-cookie" not in r.headers
    with httpx.Client(base_url=srv.url, timeout=10, headers=client_header) as browser:
        r = browser.post("/login", json={"token": writer})
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert "httponly" in r.headers["set-cookie"].lower()
        assert "samesite=strict" in r.headers["set-cookie"].lower()
        r = browser.get("/api/v1/runs")
        assert r.status_code == 200 and [row["id"] for row in r.json()["runs"]] == [local.name]
        r = browser.put(f"/api/v1/ingest/e2e/{local.name}/append",
                        params={"path": "console.log", "offset": "0"}, content=b"csrf\n")
        assert r.status_code == 401  # the cookie is not a write credential
        assert browser.post("/logout").status_code == 200
        assert browser.get("/api/v1/runs").status_code == 401
    assert_identical(local, srv.root / "e2e" / local.name)
    r = subprocess.run([*LABTRACK, "sync", "--remote", srv.url, "--token", reader, "--root",
                        str(tmp_path / "client-root")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "403" in r.stderr


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    r = subprocess.run([*LABTRACK, "serve", "--root", str(tmp_path / "r"), "--host", "0.0.0.0",
                        "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "refusing to serve on 0.0.0.0 without tokens" in r.stderr
    r = subprocess.run([*LABTRACK, "serve", "--root", str(tmp_path / "r"), "--port",
                        str(free_port()), "--tokens", str(tmp_path / "missing.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_open_a_server_as_a_book_live(tmp_path: Path, make_server: Any) -> None:
    import labtrack
    from labtrack.errors import RemoteError

    tokens = tmp_path / "tokens.json"
    from labtrack._server.auth import create_token

    writer = create_token(tokens, "ci", ["write"])
    reader = create_token(tokens, "dash", ["read"])
    srv = make_server("--tokens", str(tokens))
    srv.start()
    with pytest.raises(RemoteError, match="401"):
        labtrack.open(srv.url, token="lt_nope")
    client = start_client(tmp_path, srv.url, seconds=120.0, env={"LABTRACK_TOKEN": writer})
    wait_for(lambda: any(srv.root.glob("e2e/*/scalars/train/loss.csv")), "the first data")
    book = labtrack.open(srv.url, token=reader)
    try:
        runs = book.runs()
        assert len(runs) == 1 and runs[0].meta["experiment"] == "e2e"
        first = len(book[runs.ids[0]].scalars("train/loss"))

        def grew() -> bool:
            book.refresh()
            return len(book[runs.ids[0]].scalars("train/loss")) > first

        wait_for(grew, "the remote book to show new points", 60)  # appended, live
        (tmp_path / "stop").touch()
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        local_book = labtrack.open(str(tmp_path / "client-root"))
        rid = run_dir_of(out).name
        book.refresh()
        assert book[rid].status == "finished"
        assert book[rid].scalars("train/loss").equals(local_book[rid].scalars("train/loss"))
        # The mirror is byte-identical too (the read API gives times only to the microsecond).
        assert_identical(run_dir_of(out), book.root / "e2e" / rid, mtimes=False)
        # A remote book is a read-only book: the calls that change runs are not there at all.
        assert isinstance(book, labtrack.ReadOnlyBook) and not isinstance(book, labtrack.Book)
        assert not any(hasattr(book, m) for m in ("remove", "move", "tag", "set_comment", "gc"))
        local_book.close()
    finally:
        book.close()
    assert not book.root.exists()  # the temporary mirror is removed


def test_a_hung_server_never_holds_up_the_run(tmp_path: Path, make_server: Any) -> None:
    srv = make_server()
    srv.start()
    client = start_client(tmp_path, srv.url, seconds=120.0, env={"LABTRACK_SYNC_TIMEOUT": "2"})
    wait_for(lambda: any(srv.root.glob("e2e/*/scalars/train/loss.csv")), "the first data")
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGSTOP)  # accepts connections (the kernel does), never answers
    try:
        local_csv = lambda: next((tmp_path / "client-root").glob("e2e/*/scalars/train/loss.csv"))  # noqa: E731
        size = local_csv().stat().st_size
        wait_for(lambda: local_csv().stat().st_size > size + 20_000, "local logging to go on", 60)
        (tmp_path / "stop").touch()
        t0 = time.monotonic()
        out, err = client.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    assert client.returncode == 0, err
    assert "labtrack sync" in err
    assert took < 30, took  # finish() waited about LABTRACK_SYNC_TIMEOUT, not a request timeout
    local = run_dir_of(out)
    r = subprocess.run([*LABTRACK, "sync", "--remote", srv.url, "--root", str(tmp_path / "client-root")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert_identical(local, srv.root / "e2e" / local.name)


def test_a_media_name_of_248_characters_uploads_like_any_other(tmp_path: Path, make_server: Any) -> None:
    import numpy as np

    import labtrack

    srv = make_server()
    srv.start()
    name = "n" * 248  # check_name allows it: 248 + ".png" fills a file name to 252 bytes
    run = labtrack.Run("long", root=tmp_path / "local", remote=srv.url, capture_git=False,
                       capture_console=False, _environ={"LABTRACK_SYNC_TIMEOUT": "20"})
    rng = np.random.default_rng(0)
    run.log_image(name, rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), step=1)  # sent in a batch
    run.log_image(name, rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8), step=2)  # by PUT file
    run.finish()
    local = run.dir
    remote = srv.root / local.parent.name / local.name
    media = sorted(p for p in scan_files(local) if p.startswith("media/") and p.endswith(".png"))
    assert len(media) == 2 and all(len(Path(p).name) == 252 for p in media), media
    assert (local / media[1]).stat().st_size > 2 << 20  # larger than a batch's inline limit
    for p in media:
        assert (remote / p).read_bytes() == (local / p).read_bytes(), p
    assert not [n for n in scan_files(remote) if ".tmp" in n], srv.output()
