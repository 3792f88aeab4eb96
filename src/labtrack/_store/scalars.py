"""Scalar series files (docs/format.md, `scalars/<name>.csv`): the header, and every parse.

A series file is the header `step,value,time` and one line per point, appended in whole
lines; a trailing line without its newline is still being written and is never read. This
module is the only code that knows that shape. The writer formats lines with
:func:`format_many` (the C module, else Python); its readers:

* :func:`parse_step_value` - the step and value columns of many files' lines at once (the
  C module, else pyarrow); `RunView.scalars()` reads every series through it.
* :func:`parse_lines` - step, value and time of appended lines, in chunks, keeping every good
  line of a damaged block (the server's cache and live stream).
* :func:`read_frame`, :func:`read_joined` - one series, or every series joined on step, as
  pandas (the Book).
* :func:`read_columns` - one file as plain lists (the TensorBoard export, tests).
* :func:`read_arrays` - one file as numpy arrays (the Parquet and CSV export).

pandas, numpy and pyarrow are imported by the calls that use them, never at import.
"""

from __future__ import annotations

import math
import os
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .._settings import no_c
from ..errors import FormatError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    Parsed = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]

HEADER = b"step,value,time"
HEADER_LINE = HEADER + b"\n"
COLUMNS = ("step", "value", "time")

# -- formatting ---------------------------------------------------------------------------
# The writer's side: (step, value, time) triples of a column into lines. The C module's
# format_rows/format_many write the same bytes as the Python versions here, much faster.

def format_time(t: float) -> str:
    """A time in seconds, rounded to milliseconds, as written in the scalars files ("<s>.<mmm>")."""
    ms = math.floor(t * 1000.0 + 0.5)
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}"


def format_rows_py(col: array[float]) -> bytes:
    """CSV lines of the (step, value, time) triples in `col` (see docs/format.md): the step as
    an integer, the value as Python's repr (the shortest text that reads back as the same
    float64), the time with three decimals. The C version, `_hot.format_rows`, writes the same
    bytes about 20x faster; this one serves where the C module is not built."""
    n = len(col) // 3
    return "".join([
        f"{int(col[i])},{col[i + 1]!r},{format_time(col[i + 2])}\n" for i in range(0, n * 3, 3)
    ]).encode()


def value_stats(values: array[float]) -> tuple[float, int, float, float]:
    """(sum of the finite values, how many, least and greatest non-NaN value) of `values`."""
    total = sum(values)
    if math.isfinite(total):
        return total, len(values), min(values, default=math.inf), max(values, default=-math.inf)
    fin = [v for v in values if math.isfinite(v)]
    notnan = [v for v in values if v == v]
    return sum(fin), len(fin), min(notnan, default=math.inf), max(notnan, default=-math.inf)


def format_many_py(cols: list[array[float]]) -> list[tuple[bytes, float, int, float, float]]:
    """format_rows_py and value_stats of each column (the C version formats on two threads)."""
    return [(format_rows_py(col), *value_stats(col[1::3])) for col in cols]


Formatted = list[tuple[bytes, float, int, float, float]]


def _formatters() -> tuple[Callable[[array[float]], bytes], Callable[[list[array[float]]], Formatted]]:
    if not no_c():
        try:
            from .._hot import format_many as c_many, format_rows as c_rows
        except ImportError:  # not built: no compiler at install
            pass
        else:
            return c_rows, c_many
    return format_rows_py, format_many_py


# Format private copies of columns (never live ones: see Writer._write_batch).
# The writer formats private copies of columns (never live ones: see Writer._write_batch).
format_rows, format_many = _formatters()


# -- parsing ------------------------------------------------------------------------------

BLOCK = 8 << 20  # bytes: a damaged line costs the slow parse of one block, not the file
SMALL = 32 << 10  # below this, plain Python beats pyarrow's set-up


class Unparsed(ValueError):
    """The fast parsers refused the text (something labtrack itself never writes)."""


def _arrow(data: bytes | memoryview, *, header: bool, columns: tuple[str, ...] = COLUMNS,
           own_spelling: bool = False, threads: bool = True) -> Any:
    """A pyarrow table of `step,value,time` text (int64 steps, float64 values and times).

    Args:
        data: CSV text; with `header`, it starts with the header line.
        header: the first line names the columns (else they are `step,value,time`).
        columns: the columns to convert.
        own_spelling: only what labtrack writes: no quoting, no null spellings (`nan` is read
            by the float parser itself), which makes the parse about 10% cheaper.
        threads: pyarrow's thread pool (on a busy 2-core machine one thread was faster for
            the Book's reads: median 37 ms against 46 ms, measured alternately).

    Raises:
        Unparsed: a line pyarrow cannot read.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {"step": pa.int64(), "value": pa.float64(), "time": pa.float64()}
    read = pacsv.ReadOptions(use_threads=threads, block_size=1 << 20,
                             column_names=None if header else list(COLUMNS))
    parse = (pacsv.ParseOptions(quote_char=False, double_quote=False) if own_spelling
             else pacsv.ParseOptions())
    convert = pacsv.ConvertOptions(column_types={c: types[c] for c in columns},
                                   include_columns=list(columns),
                                   **({"null_values": []} if own_spelling else {}))
    try:
        return pacsv.read_csv(pa.py_buffer(data), read_options=read, parse_options=parse,
                              convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as e:
        raise Unparsed(str(e)) from None


def parse_step_value(body: bytes | memoryview) -> tuple[Any, Any]:
    """The step (int64) and value (float64) columns of `step,value,time` text, as numpy.

    `body` starts with the header line and holds whole lines only. labtrack's C module parses
    the lines it writes without the GIL (about 4x pyarrow's single-threaded parse); pyarrow
    parses when it is not built or the text has anything else.

    Raises:
        Unparsed: neither parser accepts the text (a quote, an empty field ...): read the
            files one by one with :func:`read_frame` to say which is bad.
    """
    import numpy as np

    from .._settings import no_c

    try:
        if no_c():
            raise ImportError("LABTRACK_NO_C is set")
        from .._hot import parse_step_value as c_parse
    except ImportError:
        pass
    else:
        try:
            steps, values = c_parse(body)
        except ValueError:
            pass  # pyarrow below decides; it also reads what labtrack itself never writes
        else:
            return np.frombuffer(steps, dtype=np.int64), np.frombuffer(values, dtype=np.float64)
    table = _arrow(body, header=True, columns=("step", "value"), own_spelling=True, threads=False)
    step, value = table.column("step"), table.column("value")
    if step.null_count or value.null_count:
        raise Unparsed("a line without a step or a value")
    return step.to_numpy(), value.to_numpy()


def parse_lines(data: bytes | memoryview) -> list[Parsed]:
    """Parse complete `step,value,time` lines (no header) into chunks of columns.

    pyarrow parses; a block it refuses (a damaged line) is parsed line by line instead,
    keeping every good line of it.
    """
    if not len(data):
        return []
    if len(data) < SMALL:
        return [_parse_slowly(bytes(data))]
    try:
        return _arrow_chunks(data)
    except Unparsed:
        pass
    view = memoryview(data)
    chunks: list[Parsed] = []
    pos, n = 0, len(view)
    while pos < n:
        end = n if pos + BLOCK >= n else bytes(view[pos + BLOCK : n]).find(b"\n") + pos + BLOCK + 1
        if end <= pos + BLOCK:  # no newline after the block boundary
            end = n
        try:
            chunks.extend(_arrow_chunks(view[pos:end]))
        except Unparsed:
            chunks.append(_parse_slowly(bytes(view[pos:end])))
        pos = end
    return chunks


def _arrow_chunks(data: bytes | memoryview) -> list[Parsed]:
    table = _arrow(data, header=False)
    if table.column("step").null_count or table.column("time").null_count:
        raise Unparsed("a line without a step or a time")
    out: list[Parsed] = []
    for batch in table.to_batches():
        # "nan" and empty values arrive as nulls; to_numpy turns them into NaN
        out.append((batch.column(0).to_numpy(), batch.column(1).to_numpy(zero_copy_only=False),
                    batch.column(2).to_numpy()))
    return out


def _parse_slowly(data: bytes) -> Parsed:
    """Line by line: every line of three numbers, the others skipped."""
    import numpy as np

    steps: list[int] = []
    values: list[float] = []
    times: list[float] = []
    for line in data.split(b"\n"):
        parts = line.split(b",")
        if len(parts) != 3:
            continue
        try:
            s, v, t = int(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            continue
        steps.append(s)
        values.append(v)
        times.append(t)
    return (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64),
            np.asarray(times, dtype=np.float64))


def whole_lines(data: bytes) -> bytes:
    """`data` up to its last newline (a trailing partial line is still being written)."""
    return data[: data.rfind(b"\n") + 1]


def read_columns(path: str | os.PathLike[str]) -> tuple[list[int], list[float], list[float]]:
    """Steps, values and times of one series file, as lists ([] each when it is missing).

    A trailing partial line and lines that are not three numbers are left out.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], [], []
    body = whole_lines(data)
    first = body.find(b"\n") + 1
    steps: list[int] = []
    values: list[float] = []
    times: list[float] = []
    for s, v, t in parse_lines(memoryview(body)[first:]):
        steps += s.tolist()
        values += v.tolist()
        times += t.tolist()
    return steps, values, times


def read_arrays(path: str | os.PathLike[str]) -> Parsed:
    """Steps (int64), values and times (float64) of one series file as numpy arrays, in file
    order (empty arrays when it is missing); like :func:`read_columns` without the lists, for
    exports of long series. A trailing partial line and lines that are not three numbers are
    left out."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    body = whole_lines(data)
    chunks = parse_lines(memoryview(body)[body.find(b"\n") + 1:]) if body else []
    if not chunks:
        return (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64))
    if len(chunks) == 1:
        return chunks[0]
    return (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]),
            np.concatenate([c[2] for c in chunks]))


# -- pandas -------------------------------------------------------------------------------


def empty_frame() -> pd.DataFrame:
    """An empty frame with the columns and dtypes of a series."""
    import pandas as pd

    frame = pd.DataFrame({"value": pd.Series([], dtype="float64"), "time": pd.Series([], dtype="float64")})
    frame.index = pd.Index([], dtype="int64", name="step")
    return frame


def read_frame(path: Path) -> pd.DataFrame:
    """One `scalars/<name>.csv` as a DataFrame indexed by step, columns value and time.

    Lines are kept in file order (a resumed run may repeat a step). A trailing line without
    its newline is still being written and is left out, so this is safe on a live run.
    This is the reference reader: :func:`read_joined` gives what joining its frames gives.

    Raises:
        FileNotFoundError: no such file.
        FormatError: the file does not start with the `step,value,time` header or a line
            cannot be parsed.
    """
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n")
    if not data.startswith(HEADER) or end < 0:
        if not data or end < 0:
            # Created but nothing whole written yet (or only a partial header).
            return empty_frame()
        raise FormatError(f"{path} does not start with the header 'step,value,time'; "
                          "it is not a labtrack series file")
    if end == len(HEADER):
        return empty_frame()
    try:
        table = _arrow(memoryview(data)[: end + 1], header=True)
    except Unparsed as e:
        raise FormatError(f"{path} has a line that is not `step,value,time`: {e}") from None
    frame = table.to_pandas()
    return frame.set_index("step")


def read_joined(series: dict[str, Path]) -> pd.DataFrame:
    """Every series' `value` outer-joined on step, one column per series, in the order given.

    The same frame as reading each file with :func:`read_frame` and joining them with
    :func:`join_frames`, but read in one pass: the files' whole lines go into one buffer
    behind a single header and are parsed once (one call per file costs about twice as
    much). When every series has the same increasing steps, as when a script logs a dict
    per step, the parsed column is reshaped into the frame without any join.

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
    buf = np.empty(len(HEADER_LINE) + sum(sizes), dtype=np.uint8)
    view = buf.data
    view[: len(HEADER_LINE)] = HEADER_LINE
    pos = len(HEADER_LINE)
    spans: dict[int, tuple[int, int]] = {}  # column -> [start, end) of its whole lines in buf
    odd: list[int] = []  # columns whose file does not start with the header line
    for col, (path, size) in enumerate(zip(series.values(), sizes)):
        with open(path, "rb", buffering=0) as f:
            if f.read(len(HEADER_LINE)) != HEADER_LINE:
                odd.append(col)
                continue
            want = max(0, size - len(HEADER_LINE))  # a live file may have grown: read what was there
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
            steps, values = parse_step_value(view[:pos])
        except Unparsed:
            return join_frames({label: read_frame(path) for label, path in series.items()})

    paths = list(series.values())
    odd_frames = {col: read_frame(paths[col]) for col in odd}
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
            return join_frames({label: read_frame(path) for label, path in series.items()})
        at = 0
        for col, n in zip(spans, counts):
            pieces[col] = (steps[at: at + n], values[at: at + n])
            at += n
    for col, frame in odd_frames.items():
        pieces[col] = (frame.index.to_numpy(dtype="int64"), frame["value"].to_numpy(dtype="float64"))
    kept = {col: _last_per_step(s, v) for col, (s, v) in pieces.items() if len(s)}
    index = _union_steps([s for s, _ in kept.values()])
    out = np.full((len(index), ncol), np.nan, order="F")
    for col, (s, v) in kept.items():
        if len(s) == len(index):  # then s is the union itself: no lookup
            out[:, col] = v
        else:
            out[np.searchsorted(index, s), col] = v
    return pd.DataFrame(out, index=pd.Index(index, name="step"), columns=labels, copy=False)


def _union_steps(steps: list[Any]) -> Any:
    """The sorted union of sorted, duplicate-free step arrays.

    The usual mix (most series logged at every step, a few at some of them: system
    metrics, an eval every N steps) is answered without sorting anything: when the longest
    array holds every other one's steps, it is the union. A series as long as the union is
    then the union itself.
    """
    import numpy as np

    if not steps:
        return np.array([], dtype="int64")
    longest = max(steps, key=len)
    for s in steps:
        if s is longest:
            continue
        if len(s) == len(longest):
            if not np.array_equal(s, longest):
                return np.unique(np.concatenate(steps))
            continue
        at = np.searchsorted(longest, s)
        if (at >= len(longest)).any() or not np.array_equal(longest[at], s):
            return np.unique(np.concatenate(steps))
    return longest


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


def join_frames(frames: dict[str, pd.DataFrame], column: str = "value") -> pd.DataFrame:
    """Outer-join the `column` of several series on step; a repeated step keeps its last value."""
    import pandas as pd

    cols = {}
    for label, frame in frames.items():
        s = frame[column]
        if not s.index.is_unique:
            s = s[~s.index.duplicated(keep="last")]
        cols[label] = s
    if not cols:
        return pd.DataFrame(index=pd.Index([], dtype="int64", name="step"))
    out = pd.concat(cols, axis=1, join="outer", sort=True)
    out.index.name = "step"
    return out
