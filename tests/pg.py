"""A throwaway PostgreSQL cluster for the tests: Debian's initdb and pg_ctl, in a temp folder.

`postgres_url` (session-scoped) starts one cluster on a free 127.0.0.1 port with its unix
socket in the same temp folder, trust authentication for local connections, and stops it
(pg_ctl stop -m immediate) at the end of the session. A test that wants its own empty
database asks for `pg_db`, which creates one per test and returns its URL.

initdb refuses to run as root: when the tests run as root (containers, CI), the cluster runs
as the `postgres` system user Debian's package creates (`runuser -u postgres`), and its temp
folder is handed to that user. The tests connect over TCP, so they need no file access.

Skipped, with the reason, only when the binaries are missing (`make services` installs them).
`start_cluster()` / `stop_cluster(c)` do the same outside pytest (benchmarks/pg_index.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest


def _bin_dir() -> Path | None:
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(found).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running cluster: `url(dbname)` gives a connection URL."""

    def __init__(self, bin_dir: Path, base: Path, as_user: str | None) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.as_user = as_user
        self.port = _free_port()
        self.user = as_user or _current_user()

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.as_user, "--"] if self.as_user else []) + list(args)

    def start(self) -> None:
        self.sock.mkdir()
        if self.as_user:
            shutil.chown(self.base, self.as_user)
            shutil.chown(self.sock, self.as_user)
        subprocess.run(self._cmd(str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust",
                                 "-U", self.user, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
                       check=True, capture_output=True)
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sock} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                 "-l", str(self.base / "log"), "-w", "-t", "60", "start"),
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                 "-w", "stop"), capture_output=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_db(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


class PostgresUnavailable(Exception):
    """The binaries are missing, or the tests run as root without a `postgres` user."""


def start_cluster(prefix: str = "labtrack-pg-") -> Cluster:
    """A new cluster in a new temp folder, started (the tests' fixture and the benchmarks).
    `stop_cluster` stops it and deletes the folder.

    Raises:
        PostgresUnavailable: no initdb (`make services` installs it), or root without a
            `postgres` user to run it as.
        RuntimeError: initdb or pg_ctl failed (the message holds the server's log).
    """
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/initdb) are "
                                  "not installed; `make services` installs them")
    as_user = None
    if os.getuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and initdb refuses root; there is no 'postgres' "
                                      "user to run the cluster as") from None
        as_user = "postgres"
    base = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = Cluster(bin_dir, base, as_user)
    try:
        cluster.start()
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {e.stderr!r} {log}") from e
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    """Stop a cluster of `start_cluster` and delete its folder."""
    cluster.stop()
    time.sleep(0.1)
    shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """The session's cluster (started on first use)."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as e:
        pytest.skip(str(e))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="session")
def postgres_url(postgres: Cluster) -> str:
    """The URL of the cluster's `postgres` database."""
    return postgres.url()


@pytest.fixture
def pg_db(postgres: Cluster) -> str:
    """The URL of a new, empty database of its own for one test."""
    return postgres.create_db()
