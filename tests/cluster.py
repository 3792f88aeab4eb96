"""Real components for the scale-out tests and benchmark: moto's S3 server, several
`labtrack serve` processes over one bucket and one PostgreSQL database, nginx in front.

Everything runs as child processes on free 127.0.0.1 ports, with its output kept in a file
that is attached to a failure:

* `tests/s3.py`'s ``MotoS3``: moto's S3 server in a child process, one bucket made;
* :class:`Serve`: ``labtrack serve --root s3://... --index postgresql://... --mirror DIR``,
  killed with a real SIGKILL and started again on the same port;
* :class:`Cluster`: the above plus `tests.nginx.Nginx` balancing over the serve processes.

The PostgreSQL cluster comes from `tests/pg.py` (its `pg_db` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import httpx

from nginx import Nginx, free_port
from s3 import MotoS3

SRC = Path(__file__).resolve().parents[1] / "src"
LABTRACK = [sys.executable, "-c", "from labtrack.cli import main; main()"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment minus LABTRACK_* and AWS_*, with these sources first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABTRACK_", "AWS_"))}
    env["PYTHONPATH"] = str(SRC)
    env["PYTHONUNBUFFERED"] = "1"
    env["LABTRACK_SYSTEM"] = "0"
    env.update(extra or {})
    return env


def wait_http(url: str, proc: subprocess.Popen[Any], what: str, log: Path, timeout: float = 30) -> None:
    """Poll `url` until it answers 200; fail with the child's output when it dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not answer {url} within {timeout} s:\n{_tail(log)}")


def _tail(log: Path, n: int = 6000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no output)"


def _stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGKILL) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Serve:
    """One `labtrack serve` process over the shared bucket and database."""

    def __init__(self, folder: Path, name: str, root: str, index: str, env: dict[str, str],
                 args: Sequence[str] = ()) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mirror = folder / f"mirror-{name}"
        self.log = folder / f"serve-{name}.log"
        self.root, self.index, self.env, self.args = root, index, env, list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*LABTRACK, "serve", "--root", self.root, "--index", self.index, "--mirror",
                 str(self.mirror), "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        if wait:
            self.wait()

    def wait(self) -> None:
        assert self.proc is not None
        wait_http(self.url + "/api/v1/health", self.proc, f"labtrack serve {self.name}", self.log)

    def kill(self) -> None:
        """SIGKILL: no chance to finish a request or flush anything."""
        _stop(self.proc, signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        """The process's resident memory (kB), from /proc."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def output(self) -> str:
        return _tail(self.log)


class Cluster:
    """moto + `n` serve processes over one bucket and one database + nginx in front.

    Example:
        >>> c = Cluster(tmp_path, pg_db, n=2); c.start()
        >>> labtrack.init(remote=c.url, ...)
        >>> c.servers[0].kill(); c.servers[0].start()
        >>> c.stop()
    """

    def __init__(self, folder: Path, index: str, n: int = 2, prefix: str = "runs",
                 serve_args: Sequence[str] = ()) -> None:
        self.folder = folder
        self.prefix = prefix
        self.index = index
        self.moto: MotoS3 | None = None
        self.root = ""
        self.env: dict[str, str] = {}
        self.serve_args = list(serve_args)
        self.servers: list[Serve] = []
        self.n = n
        self.nginx = Nginx(folder / "nginx", [])
        self.url = self.nginx.url

    def start(self) -> None:
        self.moto = MotoS3()
        self.root = self.moto.url(self.prefix)
        self.env = child_env({**self.moto.env, "XDG_CACHE_HOME": str(self.folder / "cache")})
        self.servers = [Serve(self.folder, chr(ord("a") + i), self.root, self.index, self.env,
                              self.serve_args) for i in range(self.n)]
        self.nginx.upstreams = [s.port for s in self.servers]
        for s in self.servers:
            s.start(wait=False)
        for s in self.servers:
            s.wait()
        self.nginx.start()

    def stop(self) -> None:
        self.nginx.stop()
        for s in self.servers:
            s.kill()
        if self.moto is not None:
            self.moto.close()

    def output(self) -> str:
        """Every component's output (attached to a failure)."""
        parts = [f"=== serve {s.name}\n{s.output()}" for s in self.servers]
        parts.append(f"=== nginx\n{self.nginx.output()}")
        return "\n".join(parts)
