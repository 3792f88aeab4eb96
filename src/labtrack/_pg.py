"""PostgreSQL plumbing shared by the index and the multi-server helpers (psycopg 3).

Everything here is imported lazily: labtrack's base install has no psycopg, and a missing
package is a :class:`~labtrack.errors.MissingDependencyError` naming
`pip install labtrack[postgres]`. A bad URL or an unreachable server is a
:class:`DatabaseError` that names the URL (password hidden) and the server's reason, never a
traceback of the driver.

Interfaces:

- ``Database(url, *, min_size=1, max_size=8)``: a connection pool
  (psycopg_pool.ConnectionPool) over one database. ``db.connection()`` is a context manager
  lending a connection (autocommit off: one transaction, committed when the block ends
  without an error); ``db.migrate(upto=None) -> int`` applies the numbered migrations;
  ``db.notify(channel, payload)``; ``db.close()``.
- ``migrate(conn, upto=None) -> int``: apply every migration of :data:`MIGRATIONS` newer
  than the database's ``schema_version``, under ``pg_advisory_xact_lock``, in one
  transaction; returns the version now. Idempotent, and safe while other processes serve:
  every migration is additive (new tables, columns with defaults, indexes), so a server
  built for an older version keeps working. Readers are never blocked; an index migration
  holds writes to its table while it builds (about a second per 100,000 runs).
- ``IngestLedger()``: the committed size of each (run relpath, file relpath), so an append
  at offset N is accepted once whichever server a retry reaches. Inside one transaction::

      with db.connection() as conn:
          size = ledger.lock_and_get(conn, run, relpath)   # SELECT ... FOR UPDATE (0 if new)
          if offset == size:
              ...write the bytes...
              ledger.advance(conn, run, relpath, size, size + len(data))
          # offset < size: a retry of an append already accepted

  ``advance`` raises :class:`LedgerConflict` when the stored size is not ``old`` any more.
- ``notify(conn_or_db, channel, payload)`` (or ``Database.notify``): ``pg_notify``; sent when
  the transaction commits (at once on an autocommit connection or through ``Database``).
- ``Listener(url, channel, callback, *, reconnect_delay=0.5)``: a daemon thread that LISTENs
  on `channel` and calls ``callback(payload: str)`` for each notification; on a lost
  connection it reconnects (waiting `reconnect_delay`, doubled up to 5 s) and calls
  ``on_reconnect()`` when given (notifications sent while disconnected are lost: callers
  re-read their state then). ``listener.ready`` is set once listening;
  ``listener.stop()`` ends it.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from .errors import LabtrackError, LabtrackValueError, MissingDependencyError

if TYPE_CHECKING:
    import psycopg

__all__ = ["Database", "DatabaseError", "IngestLedger", "LedgerConflict", "Listener", "MIGRATIONS",
           "is_postgres_url", "migrate", "notify", "redact"]

#: The advisory lock key of migrations (any bigint; "labtrack" in ASCII, cut to 63 bits).
MIGRATE_LOCK = 0x6C6162747261636B & 0x7FFFFFFFFFFFFFFF
#: The advisory lock key refreshes of the index take, so servers do not write at once.
REFRESH_LOCK = MIGRATE_LOCK - 1
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class DatabaseError(LabtrackError):
    """The PostgreSQL database cannot be reached or refused a request; the message names
    the URL (without its password) and the server's reason."""


class LedgerConflict(LabtrackError):
    """IngestLedger.advance found a size other than the one the caller locked."""


def is_postgres_url(url: object) -> bool:
    """True for `postgresql://...` or `postgres://...`."""
    return isinstance(url, str) and url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def redact(url: str) -> str:
    """The URL with its password replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise MissingDependencyError(
            "the PostgreSQL index needs psycopg 3 and psycopg_pool: pip install labtrack[postgres]") from e
    return psycopg


def check_url(url: str) -> str:
    """`url` when it is a PostgreSQL URL labtrack can use.

    Raises:
        LabtrackValueError: not a postgresql:// URL, or one that cannot be parsed.
    """
    if not is_postgres_url(url):
        raise LabtrackValueError(f"an index URL must begin with postgresql:// (or be a SQLite file), "
                                 f"got {redact(str(url))!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise LabtrackValueError(f"cannot parse the index URL {redact(url)!r}: {e}; expected "
                                 f"postgresql://user[:password]@host[:port]/database") from e
    if not parts.path.strip("/"):
        raise LabtrackValueError(f"the index URL {redact(url)!r} names no database; expected "
                                 f"postgresql://user[:password]@host[:port]/database")
    return url


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """One connection (no pool), with errors as :class:`DatabaseError`."""
    psycopg = _psycopg()
    check_url(url)
    kwargs.setdefault("connect_timeout", 10)
    try:
        return psycopg.connect(url, **kwargs)  # type: ignore[no-any-return]
    except psycopg.Error as e:
        raise DatabaseError(f"cannot connect to the index database {redact(url)}: "
                            f"{_reason(e)}") from None


def _reason(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    return re.sub(r"\s+", " ", text) or type(e).__name__


# -- migrations

#: Numbered, additive migrations: (version, statements). Never edit a released one; add.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (1, (
        """CREATE TABLE IF NOT EXISTS runs (
            relpath TEXT PRIMARY KEY, id TEXT NOT NULL, experiment TEXT NOT NULL,
            name TEXT NOT NULL, comment TEXT NOT NULL, tags TEXT NOT NULL, status TEXT NOT NULL,
            started TEXT, ended TEXT, duration DOUBLE PRECISION, git_commit TEXT, dirty BOOLEAN,
            host TEXT, user_name TEXT, parent TEXT, pid BIGINT, search TEXT NOT NULL,
            params TEXT NOT NULL, metrics TEXT NOT NULL, stats TEXT NOT NULL, mins TEXT NOT NULL,
            maxs TEXT NOT NULL, means TEXT NOT NULL, keys TEXT NOT NULL, grp TEXT, job_type TEXT,
            sig TEXT NOT NULL,
            tags_j JSONB NOT NULL, params_j JSONB NOT NULL, metrics_j JSONB NOT NULL,
            mins_j JSONB NOT NULL, maxs_j JSONB NOT NULL, means_j JSONB NOT NULL,
            keys_j JSONB NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS problems (relpath TEXT PRIMARY KEY, message TEXT NOT NULL, "
        "sig TEXT NOT NULL)",
    )),
    (2, (
        "CREATE INDEX IF NOT EXISTS runs_started ON runs (started DESC, id DESC)",
        "CREATE INDEX IF NOT EXISTS runs_id ON runs (id)",
        "CREATE INDEX IF NOT EXISTS runs_running ON runs (status) WHERE status = 'running'",
    )),
    (3, (
        """CREATE TABLE IF NOT EXISTS ingest_ledger (
            run TEXT NOT NULL, relpath TEXT NOT NULL, size BIGINT NOT NULL DEFAULT 0,
            updated TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (run, relpath))""",
    )),
    (4, (
        # `--experiment` listings and `columns(experiment)`
        "CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment)",
        # when a run directory was first found unreadable
        "ALTER TABLE problems ADD COLUMN IF NOT EXISTS first_seen TIMESTAMPTZ DEFAULT now()",
    )),
    (5, (
        # The listing's order exactly as `_index_pg` writes it (COLLATE "C": code point order,
        # whatever the database's locale): runs_started (default collation) cannot serve
        # it, so the first page of 100,000 runs was a full scan and sort (benchmarks/pg_index.py).
        # With relpath and status in it, a deep page (OFFSET 50,000) is an index-only scan.
        'CREATE INDEX IF NOT EXISTS runs_started_c ON runs (started COLLATE "C" DESC NULLS LAST, '
        'id COLLATE "C" DESC) INCLUDE (status, relpath)',
        # how many runs match with no where or text: counted from this index, not the table
        "CREATE INDEX IF NOT EXISTS runs_experiment_status ON runs (experiment, status)",
    )),
]
LATEST = MIGRATIONS[-1][0]


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version (0: never migrated)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    got = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(got[0]) if got else 0


def migrate(conn: psycopg.Connection[Any], upto: int | None = None) -> int:
    """Apply the migrations newer than the database's version (up to `upto`), in one
    transaction under an advisory lock, so several servers starting at once apply each once.

    Returns:
        The schema version afterwards.
    """
    target = LATEST if upto is None else upto
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                     "applied TIMESTAMPTZ NOT NULL DEFAULT now())")
        current = schema_version(conn)
        for version, statements in MIGRATIONS:
            if current < version <= target:
                for stmt in statements:
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                current = version
    return current


# -- the pool


class Database:
    """A pool of connections to one PostgreSQL database (see the module docstring).

    Raises:
        MissingDependencyError: psycopg or psycopg_pool is not installed.
        LabtrackValueError: `url` is not a postgresql:// URL naming a database.
        DatabaseError: the server cannot be reached (checked at once, within `timeout`).
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0) -> None:
        psycopg = _psycopg()
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise MissingDependencyError(
                "the PostgreSQL index needs psycopg_pool: pip install labtrack[postgres]") from e
        self.url = check_url(url)
        self._psycopg = psycopg
        # One probe first: a wrong host or database fails now, with the server's reason,
        # instead of as a pool timeout on the first query.
        connect(url, connect_timeout=max(1, int(timeout))).close()
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout,
                                   open=True, name="labtrack-index",
                                   kwargs={"connect_timeout": max(1, int(timeout))})

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; its transaction commits when the block ends without error."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except self._psycopg.OperationalError as e:
            raise DatabaseError(f"the index database {redact(self.url)} failed: {_reason(e)}") from None
        except Exception as e:
            if type(e).__name__ == "PoolTimeout":
                raise DatabaseError(f"no connection to the index database {redact(self.url)} "
                                    f"within the pool's timeout: {_reason(e)}") from None
            raise

    def migrate(self, upto: int | None = None) -> int:
        """:func:`migrate` on a pooled connection."""
        with self.connection() as conn:
            conn.commit()
            return migrate(conn, upto)

    def notify(self, channel: str, payload: str) -> None:
        """Send `payload` on `channel` (sent on commit, at the end of this call)."""
        with self.connection() as conn:
            notify(conn, channel, payload)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_channel(channel: str) -> str:
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        raise LabtrackValueError(f"a notification channel is a letter or '_' then up to 62 letters, "
                                 f"digits or '_', got {channel!r}")
    return channel


def notify(target: Database | psycopg.Connection[Any], channel: str, payload: str) -> None:
    """`pg_notify(channel, payload)` on a connection (sent when its transaction commits) or
    through a :class:`Database` (sent at once). Payloads are limited to 8000 bytes."""
    _check_channel(channel)
    if len(payload.encode("utf-8")) >= 8000:
        raise LabtrackValueError(f"a notification payload must be under 8000 bytes, got "
                                 f"{len(payload.encode('utf-8'))}")
    if isinstance(target, Database):
        target.notify(channel, payload)
        return
    target.execute("SELECT pg_notify(%s, %s)", (channel, payload))


class Listener(threading.Thread):
    """Calls `callback(payload)` for each notification on `channel`, reconnecting when the
    connection is lost (see the module docstring)."""

    def __init__(self, url: str, channel: str, callback: Callable[[str], None], *,
                 on_reconnect: Callable[[], None] | None = None, reconnect_delay: float = 0.5) -> None:
        super().__init__(name=f"labtrack-listen-{channel}", daemon=True)
        _psycopg()
        self.url = check_url(url)
        self.channel = _check_channel(channel)
        self.callback = callback
        self.on_reconnect = on_reconnect
        self.reconnect_delay = reconnect_delay
        self.ready = threading.Event()
        self.reconnects = 0
        self._halt = threading.Event()
        self._conn: Any = None

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (within about a second) and close its connection."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        delay = self.reconnect_delay
        first = True
        while not self._halt.is_set():
            try:
                conn = connect(self.url, autocommit=True, connect_timeout=5)
            except DatabaseError:
                self._halt.wait(delay)
                delay = min(5.0, delay * 2)
                continue
            try:
                with conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    if not first:
                        self.reconnects += 1
                        if self.on_reconnect is not None:
                            self.on_reconnect()
                    first = False
                    delay = self.reconnect_delay
                    self.ready.set()
                    while not self._halt.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self.callback(n.payload)
            except Exception:  # a lost connection (or a failing callback): listen again
                self.ready.clear()
                self._halt.wait(delay)
                delay = min(5.0, delay * 2)


# -- the ingest ledger


class IngestLedger:
    """Committed sizes of appended files, per (run relpath, file relpath), in table
    `ingest_ledger` (migration 3). See the module docstring for the transaction."""

    def lock_and_get(self, conn: psycopg.Connection[Any], run: str, relpath: str) -> int:
        """The committed size of `relpath` in `run` (0 when new), its row locked until the
        transaction ends, so concurrent appends to one file take turns."""
        conn.execute("INSERT INTO ingest_ledger (run, relpath, size) VALUES (%s, %s, 0) "
                     "ON CONFLICT (run, relpath) DO NOTHING", (run, relpath))
        row = conn.execute("SELECT size FROM ingest_ledger WHERE run = %s AND relpath = %s FOR UPDATE",
                           (run, relpath)).fetchone()
        assert row is not None
        return int(row[0])

    def lock_many(self, conn: psycopg.Connection[Any], run: str, relpaths: Iterable[str]) -> dict[str, int]:
        """:meth:`lock_and_get` for several files of `run` in one or two round trips: the
        rows are locked in path order (so two batches never wait on each other in a circle)
        and missing ones are created at size 0 first."""
        paths = sorted(set(relpaths))
        if not paths:
            return {}
        sql = ("SELECT relpath, size FROM ingest_ledger WHERE run = %s AND relpath = ANY(%s) "
               "ORDER BY relpath FOR UPDATE")
        got = {str(r): int(n) for r, n in conn.execute(sql, (run, paths)).fetchall()}
        missing = [p for p in paths if p not in got]
        if missing:
            conn.execute("INSERT INTO ingest_ledger (run, relpath, size) SELECT %s, p, 0 "
                         "FROM unnest(%s::text[]) AS p ORDER BY p ON CONFLICT (run, relpath) DO NOTHING",
                         (run, missing))
            got.update({str(r): int(n) for r, n in conn.execute(sql, (run, missing)).fetchall()})
        assert len(got) == len(paths)
        return got

    def advance_many(self, conn: psycopg.Connection[Any], run: str,
                     changes: dict[str, tuple[int, int]]) -> None:
        """:meth:`advance` for several files in one round trip: {relpath: (old, new)}.

        Raises:
            LedgerConflict: a stored size is not its `old` (nothing is changed).
            LabtrackValueError: a `new` < its `old`.
        """
        if not changes:
            return
        for rel, (old, new) in changes.items():
            if new < old:
                raise LabtrackValueError(f"a committed size only grows: {old} -> {new} for {run}/{rel}")
        paths = sorted(changes)
        cur = conn.execute(
            "UPDATE ingest_ledger AS l SET size = v.new, updated = now() FROM "
            "unnest(%s::text[], %s::bigint[], %s::bigint[]) AS v(relpath, old, new) "
            "WHERE l.run = %s AND l.relpath = v.relpath AND l.size = v.old",
            (paths, [changes[p][0] for p in paths], [changes[p][1] for p in paths], run))
        if cur.rowcount != len(paths):
            raise LedgerConflict(f"{run}: the committed size of some of {paths[:5]} changed "
                                 "since it was locked")

    def advance(self, conn: psycopg.Connection[Any], run: str, relpath: str, old: int, new: int) -> None:
        """Set the committed size from `old` to `new` (>= old).

        Raises:
            LedgerConflict: the stored size is not `old` (lock_and_get was not called first
                in this transaction, or another writer got in).
            LabtrackValueError: `new` < `old`.
        """
        if new < old:
            raise LabtrackValueError(f"a committed size only grows: {old} -> {new} for {run}/{relpath}")
        cur = conn.execute("UPDATE ingest_ledger SET size = %s, updated = now() "
                           "WHERE run = %s AND relpath = %s AND size = %s", (new, run, relpath, old))
        if cur.rowcount != 1:
            raise LedgerConflict(f"{run}/{relpath}: the committed size is no longer {old}")

    def size(self, conn: psycopg.Connection[Any], run: str, relpath: str) -> int:
        """The committed size without locking (0 when unknown)."""
        row = conn.execute("SELECT size FROM ingest_ledger WHERE run = %s AND relpath = %s",
                           (run, relpath)).fetchone()
        return int(row[0]) if row else 0

    def forget(self, conn: psycopg.Connection[Any], run: str) -> int:
        """Drop every file of `run` (its run was deleted); returns how many rows."""
        return int(conn.execute("DELETE FROM ingest_ledger WHERE run = %s", (run,)).rowcount)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` every 20 ms until true or `timeout` seconds pass (for callers and tests)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
