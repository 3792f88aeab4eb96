"""The shipper: one background thread per run that replicates its directory to a server.

The Run creates it after the run directory exists, calls :meth:`Shipper.start`, calls
:meth:`Shipper.notify` after every writer flush (cheap, never blocks, never raises) and
:meth:`Shipper.close` at finish. The training loop never waits on the network: all work
happens on the shipper's thread, in rounds of bounded size; when the server is down, slow
or refusing, the run warns once, keeps writing locally and retries with exponential
backoff and jitter.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .backoff import Backoff
from .upload import RunUploader, UploadClient
from .wire import Refused, Transport, Unavailable, VersionMismatch, WireClient, check_url

ROUND_BYTES = 8 << 20


def _stderr_warning(message: str) -> None:
    try:
        sys.stderr.write(f"labtrack: warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr closed at interpreter exit: nothing sensible left to do


def _version() -> str:
    """This labtrack's version (the package attribute: no metadata scan on a busy thread)."""
    from .. import __version__

    return __version__


class Shipper:
    """Replicates one run directory to a `labtrack serve` server on a background thread.

    Args:
        run_dir: the local run directory (the spool).
        url: the server, such as ``http://logs.lab:8765``.
        token: the write token, or None for a server without tokens.
        experiment_slug: the run's experiment folder name.
        run_id: the run's id.
        transport: the network seam (default the standard library's http.client).
        poll_seconds: how often to look for changes without a notify (heartbeat, etc.).
        backoff: the retry policy (default: 0.5 s doubling up to 10 s, with jitter).
        warn: where warnings go (default: one line on stderr).
        rank: in a one-run distributed job, this process's rank: only the files it writes
            are sent (`_store.layout.rank_owns`), each rank replicating its own part.
        client: makes the client the uploader talks to, on the shipper's thread (default a
            WireClient for `url`; `labtrack._objstore` passes one that writes a bucket).
        finalize: called on the shipper's thread once everything is delivered at close (the
            bucket's compaction); a failure there is retried like a failed round.
        sync_hint: the command that uploads the rest later (default `labtrack sync`).
        round_bytes: about how many bytes one round sends (a bucket takes bigger rounds:
            a series caught up in one segment is compacted by a server-side copy).

    Raises:
        LabtrackValueError: `url` is not an http(s) URL.

    Example:
        >>> s = Shipper(run_dir, "http://127.0.0.1:8765", None, experiment_slug="mnist",
        ...             run_id="20261121-141503-k3f9qz")
        >>> s.start(); s.notify(); s.close(10.0)
        True
    """

    def __init__(self, run_dir: Path, url: str, token: str | None, *, experiment_slug: str,
                 run_id: str, transport: Transport | None = None, poll_seconds: float = 2.0,
                 backoff: Backoff | None = None,
                 warn: Callable[[str], None] | None = None, rank: int | None = None,
                 client: Callable[[], UploadClient] | None = None,
                 finalize: Callable[[RunUploader], None] | None = None,
                 sync_hint: str | None = None, round_bytes: int = ROUND_BYTES) -> None:
        if transport is None and client is None:
            check_url(url)
        self._client = client
        self._finalize = finalize
        self._sync_hint = sync_hint
        self._round_bytes = round_bytes
        self._where = "object storage" if client is not None else "the logging server"
        self.run_dir = Path(run_dir)
        self.url = url.rstrip("/")
        self._token = token
        self._experiment = experiment_slug
        self._run_id = run_id
        self._transport = transport
        self._poll = poll_seconds
        self._backoff = backoff or Backoff(base=0.5, cap=10.0)
        self._warn = warn or _stderr_warning
        self._rank = rank
        self._wake = threading.Event()  # set by notify() and close()
        self._stop = threading.Event()  # set by close(): cut a backoff wait short
        self._closing = False
        self._deadline = float("inf")
        self._delivered = False
        self._warned: set[str] = set()
        self._failing = False
        self._unreached = False  # closing, and the server never answered once: stop at once
        self._thread: threading.Thread | None = None
        self._uploader: RunUploader | None = None
        self.rounds = 0
        self.failures = 0

    @property
    def bytes_sent(self) -> int:
        """Bytes the server has acknowledged so far."""
        return self._uploader.bytes_sent if self._uploader else 0

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name=f"labtrack-shipper-{self._run_id}",
                                        daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Something was written: look for changes soon. Cheap; never blocks or raises."""
        self._wake.set()

    def close(self, timeout: float) -> bool:
        """Deliver what is left, waiting at most `timeout` seconds.

        Returns:
            True when the server holds everything the run directory holds; False when time
            ran out (the run then tells the user to run `labtrack sync`).
        """
        if self._thread is None:
            return False
        if not self._closing:
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._closing = True
            self._wake.set()
            self._stop.set()
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        return self._delivered

    @property
    def never_reached(self) -> bool:
        """True when no round ever reached the server (finish did not wait for it)."""
        return self.rounds == 0 and self.failures > 0 and self.bytes_sent == 0

    def left_behind(self, run_id: str, root: Path) -> str:
        """The one console line for a run that is not (fully) on the server at finish."""
        sync = self._sync_hint or f"labtrack sync {run_id} --root {root} --remote {self.url}"
        where = self._where
        if self.never_reached:
            return (f"labtrack: {where} at {self.url} was never reached; run {run_id} is "
                    f"complete locally in {self.run_dir}; upload it later with: {sync}")
        return f"labtrack: run {run_id} is not yet fully on the server; upload the rest with: {sync}"

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(message)

    def _main(self) -> None:
        client: UploadClient
        if self._client is not None:
            client = self._client()
        else:
            client = WireClient(self.url, self._token, transport=self._transport)
        self._uploader = RunUploader(self.run_dir, client, experiment=self._experiment,
                                     run_id=self._run_id, version=_version(), rank=self._rank)
        try:
            self._loop(self._uploader)
        finally:
            client.close()

    def _loop(self, up: RunUploader) -> None:
        pending = True  # the first round runs at once
        last_round = 0.0
        while True:
            if not self._closing and not pending:
                self._wake.wait(self._poll)
                # Rounds at most every 0.2 s however often the writer flushes.
                gap = 0.2 - (time.monotonic() - last_round)
                if gap > 0 and not self._closing:
                    self._stop.wait(gap)
            self._wake.clear()
            closing = self._closing
            if closing and time.monotonic() >= self._deadline:
                return
            last_round = time.monotonic()
            try:
                result = up.round(self._round_bytes, full=closing)
            except (Unavailable, Refused, VersionMismatch) as e:
                if closing and self.rounds == 0 and self.bytes_sent == 0 and isinstance(e, Unavailable):
                    # Never reached, and this last try at finish failed too: waiting out the
                    # sync timeout would only delay the script; the run is whole on disk.
                    self.failures += 1
                    self._unreached = True
                    return
                self._failed(up, e)
                continue
            except Exception as e:  # noqa: BLE001 - a background failure must not kill the run
                self._failed(up, e)
                continue
            self.rounds += 1
            if self._failing:
                self._failing = False
                self._warn_once("recovered", f"{self._where} at {self.url} is reachable "
                                "again; catching up")
            self._backoff.reset()
            for msg in result.refused:
                self._warn_once("refused-file:" + msg, msg)
            pending = result.pending
            if closing and not pending:
                if self._finalize is not None:
                    try:
                        self._finalize(up)
                    except Exception as e:  # noqa: BLE001 - retried until the deadline
                        self._failed(up, e)
                        pending = True
                        continue
                self._delivered = True
                return

    def _failed(self, up: RunUploader, e: Exception) -> None:
        self.failures += 1
        self._failing = True
        up.invalidate()
        if isinstance(e, Unavailable):
            kind, what = "unavailable", f"cannot reach {self._where} at {self.url} ({e})"
        elif isinstance(e, (Refused, VersionMismatch)):
            kind, what = "refused", f"{self._where} refused this run: {e}"
        else:
            kind, what = "error", f"replicating to {self.url} failed: {type(e).__name__}: {e}"
        self._warn_once(kind, f"{what}; the run keeps logging to {self.run_dir} and retries "
                        "in the background")
        delay = self._backoff.next_delay()
        if self._closing:
            left = self._deadline - time.monotonic()
            time.sleep(max(0.0, min(delay, 0.5, left)))
        else:
            self._stop.wait(delay)


def start_for_run(run_dir: Path, remote: str | None, token: str | None, objects: str | None,
                  experiment_slug: str, run_id: str, rank: int | None) -> Shipper:
    """The started shipper of a Run: to the server `remote`, or to the object-store root
    `objects` (``s3://bucket/prefix``; `labtrack._objstore.ship`)."""
    if objects:
        from .._objstore.ship import object_shipper

        s = object_shipper(run_dir, objects, experiment_slug=experiment_slug, run_id=run_id, rank=rank)
    else:
        s = Shipper(run_dir, remote or "", token, experiment_slug=experiment_slug, run_id=run_id,
                    rank=rank)
    s.start()
    return s
