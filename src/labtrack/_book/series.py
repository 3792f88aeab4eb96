"""Reading series and tables of one run into pandas (pyarrow's CSV reader for speed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FormatError

if TYPE_CHECKING:
    import pandas as pd

_HEADER = b"step,value,time"


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
