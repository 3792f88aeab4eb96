"""The per-run row file `<run>/.row.json`: the run's index record, written at finish.

Why: a reader that builds the index cold (a fresh `labtrack ui`, `labtrack ls`, a notebook's
`labtrack.open(...).table(...)`) otherwise parses run.json, params.json and summary.json of
every run and builds its record in Python: most of the 2-4 s of a cold build over 10,000
runs. With the row file it reads one small JSON file per run whose content is the record
itself.

It is a cache, never the truth: it holds the signature (inode, mtime and size of run.json,
params.json and summary.json, `_index_rows._signature`) of the files it was made from and
the index schema it was made for. A reader uses it only when both match what it sees now;
otherwise (a run resumed, retagged, edited by hand, copied elsewhere: the inodes change, an
older labtrack) it reads the three files as before. Deleting it loses nothing. It is written
by the process that finished the run (one file next to summary.json, replaced atomically;
no lock, safe on network file systems) and never by readers, so a read-only root stays
untouched. A one-run distributed job's run gets none: its row also folds the other ranks'
summaries, which the signature does not cover.

Interface: :func:`write_row_file` (the writer side, never raises) and :func:`load_record`
(the reader side, None when the file is missing, stale or not a row file).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from pathlib import Path

from ._store import layout
from ._store.contain import OutsideRootError, read_inside
from ._store.files import atomic_write_bytes

__all__ = ["ROW_FILE", "ROW_FORMAT", "encode", "load_record", "write_row_file"]

ROW_FILE = layout.ROW_JSON
#: Bumped when the meaning of the file changes; the index schema is recorded beside it.
ROW_FORMAT = 1


def _schema() -> int:
    from ._index_rows import SCHEMA_VERSION

    return SCHEMA_VERSION


def write_row_file(run_dir: str | os.PathLike[str]) -> bool:
    """Write `<run_dir>/.row.json` from the run's files as they are now.

    The signature is taken before the files are read, so a change while reading leaves a
    row file whose signature no longer matches (ignored by readers), never a stale row
    under a current signature. Never raises (the run's data is written already; this only
    speeds up the readers): returns False when nothing was written.
    """
    d = os.fspath(run_dir)
    try:
        from ._index_rows import _read_raw_meta, _record, _signature, with_strict

        sig = _signature(d)
        if sig is None or "distributed" in _read_raw_meta(d):
            return False
        rel = os.path.basename(os.path.dirname(d)) + "/" + os.path.basename(d)
        atomic_write_bytes(Path(d) / ROW_FILE, encode(with_strict(_record(rel, d, sig))))
        return True
    except Exception:  # the temporary file is removed by atomic_write_bytes
        return False


def encode(rec: tuple[Any, ...]) -> bytes:
    """The row file of a full record (`_index_rows._record_full`).

    A JSON array, one element per line: a header `{"format", "schema", "sig"}`, then the
    record's fields but its relpath and signature, the JSON-text fields embedded as JSON
    (so one parse checks them all) and copied back as text by the reader from their lines.
    """
    from ._index_rows import KINDS, SIG

    header = json.dumps({"format": ROW_FORMAT, "schema": _schema(), "sig": rec[SIG]})
    parts = [header]
    for i, (v, kind) in enumerate(zip(rec, KINDS)):
        if i in (0, SIG):
            continue
        parts.append(v if kind in ("d", "l") else json.dumps(v, allow_nan=False))
    return ("[" + ",\n".join(parts) + "\n]").encode("utf-8")


_TYPES = {"s": str, "s?": (str, type(None)), "f?": (int, float, type(None)), "i?": (int, type(None)),
          "d": dict, "l": list}


@functools.lru_cache(maxsize=1)
def _layout() -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """(the type each field of a row file's record must have, the positions of JSON texts)."""
    from ._index_rows import KINDS, SIG

    kinds = KINDS[1:SIG] + KINDS[SIG + 1:]
    return tuple(_TYPES[k] for k in kinds), tuple(i for i, k in enumerate(kinds) if k in ("d", "l"))


def load_record(run_dir: str, sig: str) -> list[Any] | None:
    """The fields of a full record but its relpath and signature, from `<run_dir>/.row.json`,
    when it was made from files with signature `sig` for this index schema; None otherwise
    (missing, stale, damaged, of another schema, or a symlink out of the run)."""
    try:
        text = read_inside(f"{run_dir}/{ROW_FILE}", run_dir).decode("utf-8")
        body = json.loads(text)
    except (OSError, OutsideRootError, ValueError):
        return None
    types, texts = _layout()
    if not isinstance(body, list) or len(body) != len(types) + 1 or not isinstance(body[0], dict):
        return None
    head = body[0]
    if head.get("sig") != sig or head.get("format") != ROW_FORMAT or head.get("schema") != _schema():
        return None
    out = body[1:]
    if not all(map(isinstance, out, types)):
        return None
    lines = text[1:-2].split(",\n")  # JSON has no raw newline inside a value
    if len(lines) != len(body):
        return None
    for i in texts:
        out[i] = lines[i + 1]
    return out


def after_finish(root: str | os.PathLike[str], run_dir: str | os.PathLike[str], index_on_finish: bool) -> None:
    """What `Run.finish` does for readers once run.json holds the final status: the row
    file, and with `index_on_finish` (LABTRACK_INDEX_ON_FINISH) the row in the root's index
    (`_index.note_run`). Never raises."""
    write_row_file(run_dir)
    if index_on_finish:
        from ._index import note_run

        note_run(root, run_dir)
