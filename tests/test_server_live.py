"""A real `labtrack ui` server in a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import read_line
import labtrack

SRC = Path(__file__).resolve().parents[1] / "src"


class UI:
    """A `labtrack ui` process; its output is collected and shown when a test fails."""

    def __init__(self, root: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from labtrack.cli import main; main()", "ui", str(root), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._q.put(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while not self.url:
            try:
                line = self._q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            m = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
            elif time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"labtrack ui did not start; its output:\n{self.output}")
        while True:  # listening is not answering: poll until the app answers
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"labtrack ui never answered; its output:\n{self.output}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def ui_factory() -> Iterator[Any]:
    started: list[UI] = []

    def start(root: Path, *args: str) -> UI:
        ui = UI(root, "--port", "0", *args)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    with labtrack.Run(experiment="mnist", name="baseline", config={"lr": 0.1}, root=r,
                      capture_git=False, capture_console=False, system=False) as run:
        for step in range(100):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
    return r


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    kind = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind is not None:
            yield kind, json.loads(line[6:])
            kind = None


def test_ui_serves_the_api_and_pages(root: Path, ui_factory: Any) -> None:
    ui = ui_factory(root)
    url = ui.wait_ready()
    assert url.startswith("http://127.0.0.1:")
    try:
        runs = httpx.get(url + "/api/v1/runs", timeout=10).json()
        assert runs["total"] == 1 and runs["runs"][0]["name"] == "baseline"
        rid = runs["runs"][0]["id"]
        s = httpx.get(url + f"/api/v1/runs/{rid}/scalars", params={"name": "loss", "points": "10"},
                      timeout=10).json()
        assert s["total"] == 100 and len(s["value"]) <= 10 and s["max"][0] == 1.0
        page = httpx.get(url + "/runs/" + rid, timeout=10)
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower() and len(page.text) > 100
        if page.status_code == 503:  # no front-end build in this checkout
            assert "make frontend" in page.text
        else:
            assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    except Exception:
        print(ui.output)
        raise


def test_default_bind_is_loopback(root: Path, ui_factory: Any) -> None:
    ui = ui_factory(root)
    url = ui.wait_ready()
    port = int(url.rsplit(":", 1)[1])
    # The port is not reachable on the machine's other addresses.
    others = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for addr in others - {"127.0.0.1"}:
        if addr.startswith("127."):
            continue
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, (addr, ui.output)


CHILD = textwrap.dedent("""
    import os, sys, time
    import labtrack
    run = labtrack.init(experiment="live", root=sys.argv[1], capture_git=False, system=False)
    print("ID", run.id, flush=True)
    go = sys.argv[2]
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.05)
    for step in range(30):
        labtrack.log({"live/loss": 1.0 / (step + 1)}, step=step)
        if step == 10:
            print("halfway there", flush=True)
        time.sleep(0.1)
    labtrack.finish()
""")


def test_a_child_process_logging_shows_up_live(root: Path, ui_factory: Any, tmp_path: Path) -> None:
    ui = ui_factory(root)
    url = ui.wait_ready()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(SRC), "LABTRACK_FLUSH_SECONDS": "0.5"}
    lags: dict[int, float] = {}
    statuses: list[str] = []
    console = ""
    child = subprocess.Popen([sys.executable, str(script), str(root), str(go)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert child.stdout is not None
        first = read_line(child.stdout)
        assert first.startswith("ID "), first + child.stdout.read()
        rid = first.split()[1]
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            with client.stream("GET", url + "/api/v1/stream", params={"runs": rid}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                for kind, data in sse_events(r):
                    if kind == "run":
                        statuses.append(data["status"])
                        if not go.exists():
                            go.write_text("go")  # the stream is open: start logging
                    elif kind == "scalars":
                        assert data["name"] == "live/loss"
                        now = time.time()
                        for step, t in zip(data["step"], data["time"]):
                            lags.setdefault(step, now - t)
                    elif kind == "console":
                        console += data["text"]
                    if statuses[-1:] == ["finished"] and len(lags) == 30:
                        break
        assert sorted(lags) == list(range(30)), lags
        assert max(lags.values()) < 2.0, lags
        assert statuses[0] == "running" and statuses[-1] == "finished"
        assert "halfway there" in console
        # the runs list agrees with the stream within a second (a running run's files are
        # checked at each request, at most once a second)
        deadline = time.monotonic() + 3
        while True:
            row = httpx.get(url + "/api/v1/runs", params={"experiment": "live"}, timeout=10).json()["runs"][0]
            if row["status"] == "finished" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert row["status"] == "finished" and row["metrics"]["live/loss"] == pytest.approx(1 / 30)
    except Exception:
        print(f"server output:\n{ui.output}\nlags {lags}\nstatuses {statuses}\nconsole {console!r}")
        raise
    finally:
        child.wait(timeout=60)
        assert child.stdout is not None
        child.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_server_with_a_stream_open(root: Path, ui_factory: Any, sig: int) -> None:
    ui = ui_factory(root)
    url = ui.wait_ready()
    port = int(url.rsplit(":", 1)[1])
    rid = httpx.get(url + "/api/v1/runs", timeout=10).json()["runs"][0]["id"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /api/v1/stream?runs={rid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        got = b""
        while b"event: run" not in got:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        t0 = time.monotonic()
        ui.proc.send_signal(sig)
        try:
            code = ui.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not stop within 10 s; output:\n{ui.output}") from None
        elapsed = time.monotonic() - t0
    ui._reader.join(timeout=10)  # the last lines of output
    assert code == 0, ui.output
    assert elapsed < 5, (elapsed, ui.output)
    assert "Traceback" not in ui.output and "labtrack ui: stopped" in ui.output, ui.output


def _raw_get(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_traversal_over_raw_http(root: Path, ui_factory: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    ui = ui_factory(root)
    url = ui.wait_ready()
    port = int(url.rsplit(":", 1)[1])
    rid = httpx.get(url + "/api/v1/runs", timeout=10).json()["runs"][0]["id"]
    rel = os.path.relpath(secret, root / "mnist" / rid)
    targets = [
        f"/api/v1/runs/{rid}/file?path={rel}",
        f"/api/v1/runs/{rid}/file?path={rel.replace('/', '%2F')}",
        f"/api/v1/runs/{rid}/file?path={secret}",
        f"/api/v1/runs/{rid}/file?path=%2F{str(secret)[1:].replace('/', '%2F')}",
        f"/api/v1/runs/{rid}/scalars?name={rel.removesuffix('.txt')}",
        "/api/v1/runs/..%2F..%2F..%2F..%2F..%2Fetc/file?path=passwd",
        "/api/v1/runs/%2e%2e/file?path=secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    ]
    for target in targets:
        answer = _raw_get(port, target)
        head = answer.split(b"\r\n", 1)[0]
        assert b"TOP SECRET" not in answer and b"root:x:" not in answer, (target, answer[:300])
        assert head.split()[1] in (b"400", b"404", b"200", b"503"), (target, head)
        if target.startswith("/api/"):
            assert head.split()[1] in (b"400", b"404"), (target, head)


def test_foreign_host_header_is_refused(root: Path, ui_factory: Any) -> None:
    ui = ui_factory(root)
    port = int(ui.wait_ready().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: rebound.example:80\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"rebound.example" in answer and b"baseline" not in answer


def test_port_in_use_is_a_clear_error(root: Path, ui_factory: Any) -> None:
    ui = ui_factory(root)
    url = ui.wait_ready()
    port = url.rsplit(":", 1)[1]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    p = subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", "ui", str(root),
                        "--port", port], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in p.stderr and "--port" in p.stderr
    assert "Traceback" not in p.stderr
