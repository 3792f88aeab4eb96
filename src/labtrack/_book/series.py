"""Reading series and tables of one run into pandas (pyarrow's CSV reader for speed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._settings import no_c
from ..errors import FormatError

if TYPE_CHECKING:
    import pandas as pd

_HEADER = b"step,value,time"
_HEADER_LINE = _HEADER + b"\n"


def empty_scalars() -> pd.DataFrame:
    """An empty frame with the columns and dtypes of a series."""
    import pandas as pd

    frame = pd.DataFrame({"value": pd.Series([], dtype="float64"), "time": pd.Series([], dtype="float64")})
    frame.index = pd.Index([], dtype="int64", name="step")
    return frame


def read_scalar_frame(path: Path) -> pd.DataFrame:
    """One `scalars/<name>.csv` as a DataFrame indexed by step, columns value and time.

    Lines are kept in file order (a resumed run may repeat a step). A trailing line without
    its newline is still being written and is left out, so this is safe on a live run.

    Raises:
        FileNotFoundError: no such file.
        FormatError: the file does not start with the `step,value,time` header or a line
            cannot be parsed.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = path.read_bytes()
    end = data.rfind(b"\n")
    if not data.startswith(_HEADER) or end < 0:
        if not data or end < 0:
            # Created but nothing whole written yet (or only a partial header).
            return empty_scalars()
        raise FormatError(f"{path} does not start with the header 'step,value,time'; "
                          "it is not a labtrack series file")
    body = memoryview(data)[: end + 1]
    if end == len(_HEADER):
        return empty_scalars()
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            convert_options=pacsv.ConvertOptions(
                column_types={"step": pa.int64(), "value": pa.float64(), "time": pa.float64()},
                include_columns=["step", "value", "time"],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as e:
        raise FormatError(f"{path} has a line that is not `step,value,time`: {e}") from None
    frame = table.to_pandas()
    return frame.set_index("step")


def read_joined_values(series: dict[str, Path]) -> pd.DataFrame:
    """Every series' `value` outer-joined on step, one column per series, in the order given.

    The same frame as reading each file with :func:`read_scalar_frame` and joining them with
    :func:`join_series`, but read in one pass: the files' whole lines go into one buffer
    behind a single header and pyarrow parses it once (one call per file costs about twice
    as much). When every series has the same increasing steps, as when a script logs a
    dict per step, the parsed column is reshaped into the frame without any join.

    Raises:
        FileNotFoundError: a file does not exist.
        FormatError: a file is not a series file or has a line that cannot be parsed.
    """
    import numpy as np
    import pandas as pd

    labels = list(series)
    if not labels:
        return pd.DataFrame(index=pd.Index([], dtype="int64", name="step"))
    sizes = [os.stat(path).st_size for path in series.values()]
    # numpy's empty buffer is not zeroed first (bytearray's is): its pages are touched once.
    buf = np.empty(len(_HEADER_LINE) + sum(sizes), dtype=np.uint8)
    view = buf.data
    view[: len(_HEADER_LINE)] = _HEADER_LINE
    pos = len(_HEADER_LINE)
    spans: dict[int, tuple[int, int]] = {}  # column -> [start, end) of its whole lines in buf
    odd: list[int] = []  # columns whose file does not start with the header line
    for col, (path, size) in enumerate(zip(series.values(), sizes)):
        with open(path, "rb", buffering=0) as f:
            if f.read(len(_HEADER_LINE)) != _HEADER_LINE:
                odd.append(col)
                continue
            want = max(0, size - len(_HEADER_LINE))  # a live file may have grown: read what was there
            got = 0
            while got < want:
                n = f.readinto(view[pos + got: pos + want])
                if not n:
                    break
                got += n
        end = _rfind_newline(view, pos, pos + got) + 1
        if end > pos:  # else nothing whole yet; a torn last line is overwritten by the next file
            spans[col] = (pos, end)
            pos = end
    steps: Any = None
    values: Any = None
    if spans:
        try:
            steps, values = _parse_step_value(view[:pos])
        except _Unparsed:
            return join_series({label: read_scalar_frame(path) for label, path in series.items()})

    paths = list(series.values())
    odd_frames = {col: read_scalar_frame(paths[col]) for col in odd}
    ncol = len(labels)
    if steps is not None and not any(len(frame) for frame in odd_frames.values()):
        grid = _uniform_steps(view, list(spans.values()), steps)
        if grid is not None:
            if len(spans) == ncol and values.flags.writeable:  # our own array: no copy
                out = values.reshape(ncol, len(grid)).T
            else:
                out = np.full((len(grid), ncol), np.nan, order="F")
                out[:, list(spans)] = values.reshape(len(spans), len(grid)).T
            return pd.DataFrame(out, index=pd.Index(grid, name="step"), columns=labels, copy=False)

    # The general case: split the parsed columns per file, then join with numpy.
    pieces: dict[int, tuple[Any, Any]] = {}
    if steps is not None:
        counts = [int(np.count_nonzero(buf[a:b] == 10)) for a, b in spans.values()]
        if sum(counts) != len(steps):  # blank lines were skipped: split file by file instead
            return join_series({label: read_scalar_frame(path) for label, path in series.items()})
        at = 0
        for col, n in zip(spans, counts):
            pieces[col] = (steps[at: at + n], values[at: at + n])
            at += n
    for col, frame in odd_frames.items():
        pieces[col] = (frame.index.to_numpy(dtype="int64"), frame["value"].to_numpy(dtype="float64"))
    kept = {col: _last_per_step(s, v) for col, (s, v) in pieces.items() if len(s)}
    if kept:
        index = np.unique(np.concatenate([s for s, _ in kept.values()]))
    else:
        index = np.array([], dtype="int64")
    out = np.full((len(index), ncol), np.nan, order="F")
    for col, (s, v) in kept.items():
        out[np.searchsorted(index, s), col] = v
    return pd.DataFrame(out, index=pd.Index(index, name="step"), columns=labels, copy=False)


class _Unparsed(Exception):
    """The combined buffer did not parse; the files are read one by one to say which is bad."""


def _parse_step_value(body: memoryview) -> tuple[Any, Any]:
    """The step (int64) and value (float64) columns of `step,value,time` CSV text, as numpy.

    labtrack's C module parses the lines it writes without the GIL (about 4x pyarrow's
    single-threaded parse); pyarrow parses when it is not built or the text has anything else.
    """
    import numpy as np

    try:
        if no_c():
            raise ImportError("LABTRACK_NO_C is set")
        from .._hot import parse_step_value
    except ImportError:
        pass
    else:
        try:
            steps, values = parse_step_value(body)
        except ValueError:
            pass  # pyarrow below decides; it also reads what labtrack itself never writes
        else:
            return np.frombuffer(steps, dtype=np.int64), np.frombuffer(values, dtype=np.float64)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        # labtrack never quotes a field and writes NaN as `nan`, which the float parser reads
        # itself: without quoting and null spellings to look for, the parse is ~10% cheaper.
        # Anything else (a quote, an empty field) fails here and is read file by file.
        # One thread: on a busy 2-core machine pyarrow's pool cost more than it saved
        # (median read 37 ms single-threaded against 46 ms, measured alternately).
        table = pacsv.read_csv(
            pa.py_buffer(body), read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"step": pa.int64(), "value": pa.float64()},
                include_columns=["step", "value"], null_values=[]))
    except (pa.ArrowInvalid, pa.ArrowKeyError):
        raise _Unparsed from None
    step, value = table.column("step"), table.column("value")
    if step.null_count or value.null_count:
        raise _Unparsed
    return step.to_numpy(), value.to_numpy()


def _uniform_steps(buf: memoryview, spans: list[tuple[int, int]], steps: Any) -> Any:
    """The common steps when every file holds the same strictly increasing steps, else None.

    The parsed steps must be one increasing run repeated once per file, and each file's
    own first and last lines must hold that run's first and last step. Then every file holds
    exactly one run: a file can only start where the run starts and end where it ends, and
    files holding more than one run would leave too few rows for the others.
    """
    k = len(spans)
    if len(steps) % k:
        return None
    grid = steps.reshape(k, len(steps) // k)
    first = grid[0]
    if not len(first) or (len(first) > 1 and not (first[1:] > first[:-1]).all()):
        return None
    if not (grid == first).all():
        return None
    lo, hi = int(first[0]), int(first[-1])
    for start, end in spans:
        last = _rfind_newline(buf, start, end - 1) + 1
        if last < start:
            last = start
        if _line_step(buf, start, end) != lo or _line_step(buf, last, end) != hi:
            return None
    return first


def _line_step(buf: memoryview, start: int, end: int) -> int | None:
    """The step written at the start of the line that begins at `start` (None when the
    line does not start with a step and a comma within its first 64 bytes)."""
    head = bytes(buf[start: min(end, start + 64)])
    comma = head.find(b",")
    newline = head.find(b"\n")
    if comma < 0 or (0 <= newline < comma):
        return None
    try:
        return int(head[:comma])
    except ValueError:
        return None


def _rfind_newline(buf: memoryview, lo: int, hi: int) -> int:
    """The position of the last newline in buf[lo:hi], or -1 (looked for from the end)."""
    width = 256
    while True:
        start = max(lo, hi - width)
        found = bytes(buf[start:hi]).rfind(b"\n")
        if found >= 0:
            return start + found
        if start == lo:
            return -1
        width *= 8


def _last_per_step(steps: Any, values: Any) -> tuple[Any, Any]:
    """One point per step, the last one logged; sorted by step."""
    import numpy as np

    if len(steps) < 2 or (steps[1:] > steps[:-1]).all():
        return steps, values
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    last = np.empty(len(steps), dtype=bool)
    last[:-1] = steps[1:] != steps[:-1]
    last[-1] = True
    return steps[last], values[last]


def join_series(frames: dict[str, pd.DataFrame], column: str = "value") -> pd.DataFrame:
    """Outer-join the `column` of several series on step; a repeated step keeps its last value."""
    import pandas as pd

    cols = {}
    for label, frame in frames.items():
        s = frame[column]
        if not s.index.is_unique:
            s = s[~s.index.duplicated(keep="last")]
        cols[label] = s
    if not cols:
        out = pd.DataFrame(index=pd.Index([], dtype="int64", name="step"))
        return out
    out = pd.concat(cols, axis=1, join="outer", sort=True)
    out.index.name = "step"
    return out


def load_by_suffix(path: Path) -> Any:
    """Load a run file by its type: JSON -> dict, JSONL -> list, CSV -> DataFrame, .npy ->
    array, .pkl/.pt -> the object, images -> PIL image, text -> str, other -> bytes."""
    from .._store.reader import read_json, read_jsonl

    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json(path)
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    if suffix == ".npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as npz:
            return dict(npz)
    if suffix in (".pkl", ".pickle"):
        import pickle

        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the user's own run; documented in __getitem__
    if suffix in (".pt", ".pth"):
        try:
            import torch
        except ImportError:
            raise FormatError(f"{path} was saved with torch; install torch to load it") from None
        # Objects saved with save_object are arbitrary pickles, not only tensors.
        return torch.load(path, map_location="cpu", weights_only=False)
    if suffix in (".png", ".gif", ".jpg", ".jpeg", ".bmp", ".webp"):
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            return im.copy()  # the first frame of an animation
    if suffix in (".txt", ".md", ".log", ".patch", ".diff", ".py", ".yaml", ".yml", ".toml", ".html"):
        return path.read_text(encoding="utf-8", errors="replace")
    return path.read_bytes()
