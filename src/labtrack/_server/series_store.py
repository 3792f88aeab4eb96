"""Parsed columns of big series kept on disk, so a restarted server does not parse them again.

A derived cache like the index: `<root>/.labtrack/series/<key>.bin`, safe to delete at any
time. One file per series, replaced atomically: an 8-byte length, a JSON header (the CSV's
inode, the byte offset parsed up to, the point count, and hashes of the CSV's first bytes and
of the bytes before that offset), then the steps, values and times as raw little-endian
arrays. A saved copy is used only while the CSV still starts and continues with the same
bytes; the CSV's newer lines are then parsed as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from .._store.files import atomic_writer

if TYPE_CHECKING:  # numpy is imported when a series is first read: listing runs does without it
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger("labtrack.server")
VERSION = 1
PROBE = 4096  # bytes hashed at the start of the CSV and before the saved offset
Opener = Callable[[], IO[bytes]]  # opens a series file for reading (checked, for a run's file)


@dataclass
class Saved:
    """Columns read back from the store (`n` points, with spare capacity after them), and
    how far into the CSV they reach."""

    n: int
    step: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    time: npt.NDArray[np.float64]
    offset: int
    step_ordered: bool
    time_ordered: bool


def _probe(f: IO[bytes], offset: int) -> tuple[str, str]:
    f.seek(0)
    head = hashlib.sha1(f.read(min(PROBE, offset))).hexdigest()
    f.seek(max(0, offset - PROBE))
    tail = hashlib.sha1(f.read(min(PROBE, offset))).hexdigest()
    return head, tail


class SeriesStore:
    """Save and load parsed series under one folder.

    Args:
        folder: where the `.bin` files go (created when first needed).
        min_bytes: CSVs smaller than this parse fast enough and are not stored.
    """

    def __init__(self, folder: Path, min_bytes: int = 16 << 20) -> None:
        self.folder = folder
        self.min_bytes = min_bytes
        self._warned = False
        self._saving: set[str] = set()
        self._lock = threading.Lock()

    def _file(self, csv: Path) -> Path:
        key = hashlib.sha1(os.path.realpath(csv).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        return self.folder / f"{key}.bin"

    def load(self, csv: Path, f: IO[bytes], ino: int, size: int, spare: float = 0.25) -> Saved | None:
        """The saved columns of `csv` (open as `f`), or None when absent or out of date.

        The arrays get `spare` extra capacity at the end, for the lines parsed next.
        """
        import numpy as np

        try:
            with open(self._file(csv), "rb") as g:
                (length,) = struct.unpack("<Q", g.read(8))
                header: dict[str, Any] = json.loads(g.read(length))
                n, offset = int(header["n"]), int(header["offset"])
                if (header.get("version") != VERSION or header.get("ino") != ino or offset > size
                        or _probe(f, offset) != (header["head"], header["tail"])):
                    return None
                cap = n + int(n * spare) + 1024
                arrays = [np.empty(cap, dtype="<i8"), np.empty(cap, dtype="<f8"),
                          np.empty(cap, dtype="<f8")]
                for arr in arrays:
                    view = arr[:n].data.cast("B")
                    if g.readinto(view) != view.nbytes:
                        return None
        except (OSError, ValueError, KeyError, struct.error):
            return None
        return Saved(n, arrays[0], arrays[1], arrays[2], offset, bool(header["step_ordered"]),
                     bool(header["time_ordered"]))

    def save_later(self, csv: Path, ino: int, offset: int, step: npt.NDArray[np.int64],
                   value: npt.NDArray[np.float64], time: npt.NDArray[np.float64],
                   step_ordered: bool, time_ordered: bool,
                   opener: Opener | None = None) -> threading.Thread | None:
        """Write the columns in a background thread (the arrays must not change meanwhile:
        the series cache only ever appends past them). `opener` opens the CSV again to hash
        it (default: `open(csv, "rb")`)."""
        target = self._file(csv)
        with self._lock:
            if str(target) in self._saving:
                return None
            self._saving.add(str(target))

        def work() -> None:
            try:
                self._save(csv, target, ino, offset, step, value, time, step_ordered, time_ordered,
                           opener or (lambda: open(csv, "rb")))
            except (OSError, ValueError) as e:  # ValueError: the opener refused (a symlink out)
                if not self._warned:
                    self._warned = True
                    log.warning("cannot keep parsed series in %s (%s); big series will be "
                                "parsed again after a restart", self.folder, e)
            finally:
                with self._lock:
                    self._saving.discard(str(target))

        t = threading.Thread(target=work, name="labtrack-series-save", daemon=True)
        t.start()
        return t

    def _save(self, csv: Path, target: Path, ino: int, offset: int, step: npt.NDArray[np.int64],
              value: npt.NDArray[np.float64], time: npt.NDArray[np.float64],
              step_ordered: bool, time_ordered: bool, opener: Opener) -> None:
        with opener() as f:
            if os.fstat(f.fileno()).st_ino != ino:
                return  # replaced meanwhile
            head, tail = _probe(f, offset)
        header = json.dumps({"version": VERSION, "csv": str(csv), "ino": ino, "offset": offset,
                             "n": len(step), "head": head, "tail": tail,
                             "step_ordered": step_ordered, "time_ordered": time_ordered}).encode()
        import numpy as np

        # Each column written from its own memory (no copy of the columns is ever held: for
        # 10M points one would be 240 MB more in the server), all in one atomic replace.
        with atomic_writer(target) as out:
            out.write(struct.pack("<Q", len(header)) + header)
            for arr in (step, value, time):
                out.write(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).data.cast("B"))
