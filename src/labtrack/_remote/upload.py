"""Replicating one local run directory to a server: the code the shipper and `sync` share.

The local run directory is the spool. Each :meth:`RunUploader.round` compares it with what
the server is known to hold and sends the difference, at most about `budget` bytes:

* append-only files (``scalars/**.csv``, ``series/**.csv``, ``text/**.jsonl``, ``histograms/**.jsonl``,
  ``media.jsonl``, ``console.log``) as ``(path, offset, bytes)`` from the server's size, whole
  lines only; the server appends only at its current size and otherwise answers 409 with its
  size, from which the next round resumes. What the server holds is therefore always a
  prefix of the local file: a retry never duplicates or drops a line.
* every other file whole, when its size or modification time differs from the server's
  (the server stores the client's modification time, so a later `sync` can compare).
* a file this uploader saw in the run directory and that is gone now (a pruned checkpoint)
  is deleted on the server too. Files it never saw are never deleted, so `sync` of a run
  whose local copy lost files leaves the server's copy alone.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from .._names import check_name
from .._store import layout, lod
from .._store.contain import inside, real
from .._store.rundir import KINDS
from ..errors import LabtrackNameError
from .wire import Op, OpResult, Refused, ServerInfo

APPEND_TOP = frozenset({layout.CONSOLE_LOG, layout.MEDIA_JSONL})
# The record folders whose files only grow (docs/format.md): folder -> suffix.
_APPEND_DIRS = {KINDS[k][0]: KINDS[k][1] for k in ("scalars", "text", "histograms")}
_APPEND_DIRS[layout.SERIES_DIR] = ".csv"  # run.series_log rows (Lab Workbook)
STREAM_CHUNK = 1 << 20
MEDIA_JSONL = layout.MEDIA_JSONL
_MEDIA_PREFIX = layout.MEDIA_DIR + "/"
MEDIA_RESCAN_SECONDS = 30.0
WHOLE_SECONDS = 1.0


def is_append_only(relpath: str) -> bool:
    """True for the files docs/format.md declares append-only."""
    if relpath in APPEND_TOP:
        return True
    if relpath.startswith(layout.RANKS_DIR + "/") and relpath.endswith("/" + layout.CONSOLE_LOG):
        return relpath.count("/") == 2  # ranks/<N>/console.log of a one-run job
    head, sep, rest = relpath.partition("/")
    suffix = _APPEND_DIRS.get(head)
    return bool(sep and rest and suffix and relpath.endswith(suffix))


_TEMP = re.compile(r"\.(tmp|old)\d*\Z")


def is_temp_name(name: str) -> bool:
    """A hidden file or folder in transit, never replicated: an atomic replace's
    ``.<name>.<random>.tmp``, a checkpoint's ``.<step>.<random>.tmp``/``.old`` folder, an
    artifact's ``.<name>.tmp<pid>`` folder. Other dot-names (a copied ``.gitignore``) are
    ordinary files."""
    return name.startswith(".") and _TEMP.search(name) is not None


_DERIVED = frozenset({lod.DIR, layout.ROW_JSON})


def scan_files(run_dir: Path, skip: frozenset[str] = frozenset()) -> dict[str, tuple[int, int]]:
    """Every regular file under `run_dir`: '/'-separated relative path -> (size, mtime_ns).

    Top-level entries named in `skip` are left out, and so are `.lod/` (series envelopes: a
    cache the server builds from the series itself) and `.row.json` (the run's index row,
    which names this host's inodes: stale anywhere else), and every symlink that resolves
    outside `run_dir` (`_store.contain`): nothing outside a run is listed or sent.
    """
    out: dict[str, tuple[int, int]] = {}
    base = real(run_dir)
    stack = [("", str(run_dir))]
    while stack:
        prefix, path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for e in entries:
            if is_temp_name(e.name) or (not prefix and (e.name in skip or e.name in _DERIVED)):
                continue
            try:
                if e.is_symlink() and not inside(real(e.path), base):
                    continue
                if e.is_dir():
                    stack.append((prefix + e.name + "/", e.path))
                elif e.is_file():
                    st = e.stat()
                    out[prefix + e.name] = (st.st_size, st.st_mtime_ns)
            except OSError:
                continue
    return out


class UploadClient(Protocol):
    """What :class:`RunUploader` asks of the other side: the ingest API's client calls
    (:class:`~labtrack._remote.wire.WireClient`, or `labtrack._objstore.client.ObjectClient`
    for a bucket)."""

    def hello(self, version: str) -> ServerInfo: ...

    def sizes(self, experiment: str, run_id: str) -> dict[str, tuple[int, int]]: ...

    def batch(self, experiment: str, run_id: str, ops: list[Op]) -> list[OpResult]: ...

    def put_file(self, experiment: str, run_id: str, path: str, chunks: Iterator[bytes] | bytes,
                 size: int, mtime_ns: int | None = None) -> int: ...

    def close(self) -> None: ...


@dataclass
class RoundResult:
    """What one round did."""

    pending: bool  # False only when the round found nothing to send: all is delivered
    bytes_sent: int = 0
    files_sent: int = 0
    refused: list[str] = field(default_factory=list)  # messages about files the server refused


class RunUploader:
    """Replicates one run directory through an :class:`UploadClient` (a WireClient).

    Args:
        run_dir: the local run directory.
        client: the wire client.
        experiment: the experiment folder name (the slug) the run lives in.
        run_id: the run's id (its folder name).
        version: this labtrack's version, sent in the handshake.
        rank: send only the files this rank of a one-run job writes (None: every file).
    """

    def __init__(self, run_dir: Path, client: UploadClient, *, experiment: str, run_id: str,
                 version: str = "0", rank: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.client = client
        self.experiment = experiment
        self.run_id = run_id
        self.version = version
        self.info: ServerInfo | None = None
        # What the server holds, as far as we know: path -> (size, mtime_ns). For
        # append-only files the size is the acknowledged offset.
        self._server: dict[str, tuple[int, int]] | None = None
        # Files the server refused, with the local (size, mtime_ns) at the time; not
        # retried until they change.
        self._refused: dict[str, tuple[int, int]] = {}
        self._seen: set[str] = set()  # every path this uploader saw locally
        # media/ can hold a file per logged image, so it is walked only every
        # `media_rescan_seconds` (and on full rounds); in between, new media files are
        # learned from the new lines of media.jsonl, which names each one.
        self.media_rescan_seconds = MEDIA_RESCAN_SECONDS
        self._media: dict[str, tuple[int, int]] = {}
        self._media_new: set[str] = set()
        self._media_scanned = float("-inf")
        self._media_learned = 0  # bytes of media.jsonl already parsed
        # Whole files the writer rewrites at every flush (summary.json) are sent again at
        # most every `whole_seconds` between full rounds: one object PUT less per round
        # on the server, while the series keep going out every round.
        self.whole_seconds = WHOLE_SECONDS
        self._whole_sent: dict[str, float] = {}
        self.bytes_sent = 0
        self.files_sent = 0

    def invalidate(self) -> None:
        """Forget what the server holds; the next round asks again (after a failure)."""
        self.info = None
        self._server = None

    def _connect(self) -> dict[str, tuple[int, int]]:
        if self.info is None:
            self.info = self.client.hello(self.version)
        if self._server is None:
            self._server = self.client.sizes(self.experiment, self.run_id)
        return self._server

    def _learn_media(self, size: int) -> None:
        """Note the media files named by media.jsonl's lines not parsed yet."""
        if size <= self._media_learned:
            if size < self._media_learned:
                self._media_learned = 0  # rewritten: start over
            return
        try:
            with open(self.run_dir / MEDIA_JSONL, "rb") as f:
                f.seek(self._media_learned)
                data = f.read(min(size - self._media_learned, 16 << 20))
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._media_learned += end + 1
        for line in data[: end + 1].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            for key in ("path", "boxes"):
                rel = rec.get(key)
                if isinstance(rel, str) and rel.startswith(_MEDIA_PREFIX) and rel not in self._media:
                    try:
                        self._media_new.add(check_name(rel, "media path"))
                    except LabtrackNameError:
                        pass

    def _scan(self, full: bool) -> tuple[dict[str, tuple[int, int]], bool]:
        """The local files, and whether media/ was walked (else it comes from the cache)."""
        now = time.monotonic()
        if full or now - self._media_scanned >= self.media_rescan_seconds:
            local = scan_files(self.run_dir)
            self._media = {p: v for p, v in local.items() if p.startswith(_MEDIA_PREFIX)}
            self._media_new.clear()
            self._media_scanned = now
            self._media_learned = local.get(MEDIA_JSONL, (0, 0))[0]
            return local, True
        local = scan_files(self.run_dir, frozenset({layout.MEDIA_DIR}))
        self._learn_media(local.get(MEDIA_JSONL, (0, 0))[0])
        for rel in list(self._media_new):
            try:
                st = os.stat(self.run_dir / rel)
            except OSError:
                continue  # not written yet; the next round looks again
            self._media[rel] = (st.st_size, st.st_mtime_ns)
            self._media_new.discard(rel)
        local.update(self._media)
        return local, False

    def round(self, budget: int = 8 << 20, *, full: bool = False) -> RoundResult:
        """Send what differs, about `budget` bytes at most (one file more if it is large).

        Args:
            budget: about how many bytes to send.
            full: walk every folder now (else media/ is walked only every
                `media_rescan_seconds`, new media files being learned from media.jsonl).

        Raises:
            Unavailable, Refused, VersionMismatch: see :mod:`labtrack._remote.wire`; a
                refusal of a single file is recorded in the result instead.
        """
        server = self._connect()
        info = self.info
        assert info is not None  # set by _connect
        max_batch = max(64 << 10, info.max_batch_bytes - (64 << 10))
        inline_max = min(1 << 20, max_batch // 4)
        budget = max(1, min(budget, max_batch))
        result = RoundResult(pending=False)
        local, walked_media = self._scan(full or not self._seen)
        if self.rank is not None:
            rank = self.rank
            local = {p: v for p, v in local.items() if layout.rank_owns(p, rank)}
        gone = sorted(p for p in self._seen if p not in local and p in server
                      and (walked_media or not p.startswith(_MEDIA_PREFIX)))
        self._seen.update(local)
        # Plan: which files differ. run.json first, so a new run appears with its metadata.
        appends: list[tuple[str, int, int, bool]] = []  # path, offset, growth, known
        wholes: list[str] = []
        for rel in sorted(local, key=lambda p: (p != layout.RUN_JSON, p)):
            size, mtime = local[rel]
            if self._refused.get(rel) == (size, mtime):
                continue
            known = server.get(rel)
            if is_append_only(rel) and not (known is not None and known[0] > size):
                offset = known[0] if known is not None else 0
                if known is None or offset != size:
                    appends.append((rel, offset, size - offset, known is not None))
            elif known is None or known != (size, mtime):
                wholes.append(rel)
        ops: list[Op] = [Op("delete", rel, b"") for rel in gone]
        big: list[str] = []
        used = 0
        now = time.monotonic()
        for rel in wholes:
            size, mtime = local[rel]
            if not full and rel != layout.RUN_JSON and rel in server \
                    and now - self._whole_sent.get(rel, float("-inf")) < self.whole_seconds:
                continue  # sent a moment ago: the next round after whole_seconds sends it
            self._whole_sent[rel] = now
            if size > info.max_file_bytes:
                self._refused[rel] = (size, mtime)
                result.refused.append(
                    f"{rel} ({size} bytes) is larger than the server's limit of "
                    f"{info.max_file_bytes} bytes; it stays only in {self.run_dir}")
                continue
            if used >= budget:
                result.pending = True
                break
            if size > inline_max:
                big.append(rel)
                used += size
                continue
            got = self._read_whole(rel)
            if got is None:
                continue
            data, mtime = got
            ops.append(Op("put", rel, data, mtime_ns=mtime))
            used += len(data)
        # Append-only files share what is left fairly: the least grown first, each taking
        # at most an equal share, so one round moves every series forward.
        appends.sort(key=lambda a: a[2])
        for i, (rel, offset, _growth, known_file) in enumerate(appends):
            left = budget - used
            if left <= 0:
                result.pending = True
                break
            share = max(64 << 10, left // (len(appends) - i))
            lines = self._read_lines(rel, offset, min(share, left, info.max_batch_bytes // 2))
            if lines is None:
                continue  # gone meanwhile
            if not lines and local[rel][0] - offset >= info.max_batch_bytes // 2:
                self._refuse(rel, local, f"{rel} has a line longer than the server's request "
                             f"limit of {info.max_batch_bytes} bytes; the file stays only in "
                             f"{self.run_dir} from byte {offset} on", result)
                continue
            if not lines and (known_file or local[rel][0] > 0):
                continue  # only a partial line beyond the server's size
            ops.append(Op("append", rel, lines, offset=offset))
            used += len(lines)
        # Anything sent means another round may find more; only a round with nothing to
        # send says everything is delivered.
        result.pending = result.pending or bool(ops or big)
        if ops:
            self._send_batch(ops, server, local, result)
        for rel in big:
            self._send_big(rel, server, local, result)
        return result

    def _read_lines(self, rel: str, offset: int, room: int) -> bytes | None:
        """Whole lines of an append-only file from `offset`: about `room` bytes, at least one line."""
        try:
            with open(self.run_dir / rel, "rb") as f:
                f.seek(offset)
                data = f.read(max(room, 1))
                end = data.rfind(b"\n")
                limit = self.info.max_batch_bytes // 2 if self.info else 1 << 20
                while end < 0 and len(data) < limit:
                    more = f.read(64 << 10)
                    if not more:
                        break
                    data += more
                    end = data.rfind(b"\n")
        except FileNotFoundError:
            return None
        return data[: end + 1] if end >= 0 else b""

    def _read_whole(self, rel: str) -> tuple[bytes, int] | None:
        try:
            with open(self.run_dir / rel, "rb") as f:
                mtime = os.fstat(f.fileno()).st_mtime_ns
                return f.read(), mtime
        except (FileNotFoundError, IsADirectoryError):
            return None

    def _refuse(self, rel: str, local: dict[str, tuple[int, int]], msg: str,
                result: RoundResult) -> None:
        self._refused[rel] = local.get(rel, (0, 0))
        result.refused.append(msg)
        result.pending = True

    def _send_batch(self, ops: list[Op], server: dict[str, tuple[int, int]],
                    local: dict[str, tuple[int, int]], result: RoundResult) -> None:
        try:
            answers = self.client.batch(self.experiment, self.run_id, ops)
        except Refused as e:
            if e.status == 400 and e.path is not None and any(o.path == e.path for o in ops):
                self._refuse(e.path, local, str(e), result)
                return
            raise
        for o, a in zip(ops, answers):
            if o.op == "delete":
                server.pop(o.path, None)
                self._seen.discard(o.path)
            elif a.status == 200:
                server[o.path] = (a.size, o.mtime_ns if o.op == "put" and o.mtime_ns else 0)
                self.bytes_sent += len(o.data)
                result.bytes_sent += len(o.data)
                self.files_sent += o.op == "put"
                result.files_sent += o.op == "put"
            else:  # 409: the server holds another size; resume from it next round
                server[o.path] = (a.size, 0)
                result.pending = True

    def _send_big(self, rel: str, server: dict[str, tuple[int, int]],
                  local: dict[str, tuple[int, int]], result: RoundResult) -> None:
        try:
            f = open(self.run_dir / rel, "rb")
        except (FileNotFoundError, IsADirectoryError):
            return
        with f:
            st = os.fstat(f.fileno())

            def chunks() -> Iterator[bytes]:
                left = st.st_size
                while left > 0:
                    b = f.read(min(STREAM_CHUNK, left))
                    if not b:
                        return
                    left -= len(b)
                    yield b

            try:
                size = self.client.put_file(self.experiment, self.run_id, rel, chunks(),
                                            st.st_size, st.st_mtime_ns)
            except Refused as e:
                if e.status in (400, 413):
                    self._refuse(rel, local, str(e), result)
                    return
                raise
        server[rel] = (size, st.st_mtime_ns)
        self.bytes_sent += size
        result.bytes_sent += size
        self.files_sent += 1
        result.files_sent += 1
