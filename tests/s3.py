"""A real S3 server for tests: moto's, in a child process on a free 127.0.0.1 port.

`MotoS3` starts ``python tests/s3.py serve`` (moto's ThreadedMotoServer) and talks to it
over stdin: ``stop`` makes S3 unreachable (the port stops listening, the objects stay in
the child's memory), ``start`` brings it back on the same port. The `s3` fixture yields a
server with one bucket and sets AWS_ENDPOINT_URL and dummy credentials for the test (and
`env` holds them for child processes).

Import the fixture in a test module with ``from s3 import s3  # noqa: F401``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

HERE = Path(__file__).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoS3:
    """moto's S3 server in a child process that can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.proc = subprocess.Popen([sys.executable, str(HERE), "serve", str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self._expect("ok")
        self.bucket = "lab-" + secrets.token_hex(4)
        self.fs().mkdir(self.bucket)

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, f"moto server answered {line!r}, expected {word!r}"

    def _send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        self._expect("ok")

    def stop(self) -> None:
        """S3 down: nothing listens on the port any more."""
        self._send("stop")

    def start(self) -> None:
        """S3 back, same port, same objects."""
        self._send("start")

    def url(self, prefix: str = "runs") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key="testing", secret="testing",
                                 skip_instance_cache=True, use_listings_cache=False)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """A fresh moto S3 server with one bucket; AWS_* set for this test."""
    server = MotoS3()
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    try:
        yield server
    finally:
        server.close()


def _serve(port: int) -> None:
    from moto.server import ThreadedMotoServer

    server: Any = None

    def start() -> Any:
        for _ in range(100):  # the old socket may take a moment to be released
            try:
                s = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                s.start()
                return s
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"cannot listen on {port}")

    server = start()
    print("ok", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stop" and server is not None:
            server.stop()
            server = None
        elif cmd == "start" and server is None:
            server = start()
        print("ok", flush=True)
    if server is not None:
        server.stop()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "serve":
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    _serve(int(sys.argv[2]))
