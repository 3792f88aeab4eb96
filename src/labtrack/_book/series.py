"""Loading a run's files into Python objects by their type (JSON, CSV, numpy, pickles, images).

Series files are read by `labtrack._store.scalars`; this module loads the other files a run
holds (`run[key]`), from a path the run directory has already checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError


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
