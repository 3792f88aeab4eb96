"""Creating, opening and resuming a run directory: the writer side of the store.

The reader side is `_store/reader.py`; paths are `_store/layout.py`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._names import relpath_to_name

# The folders whose files are named after logged names (docs/format.md), and the folder
# a per-step file of each lives in.
SCALARS_DIR = "scalars"
TEXT_DIR = "text"
HISTOGRAMS_DIR = "histograms"
MARKDOWN_DIR = "markdown"
TABLES_DIR = "tables"
MEDIA_DIR = "media"
# The provenance files (docs/format.md, source/); layout.py does not name them yet.
SOURCE_DIR = "source"
COMMIT_TXT = "commit.txt"
DIFF_PATCH = "diff.patch"
UNTRACKED_DIR = "untracked"
SKIPPED_TXT = "SKIPPED.txt"
NAMED_DIRS = (SCALARS_DIR, TEXT_DIR, HISTOGRAMS_DIR, MARKDOWN_DIR, TABLES_DIR, MEDIA_DIR)


def existing_names(run_dir: Path, folder: str) -> list[str]:
    """The files already under `run_dir/folder`, as unescaped paths ("a.csv", "train/loss.csv");
    under media/ without the step folder. Hidden files (temporary ones) are left out.

    Returns:
        The paths, in no particular order; [] when the folder does not exist.
    """
    base = run_dir / folder
    out = []
    for dirpath, _dirs, names in os.walk(base):
        for fn in names:
            if fn.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
            if folder == MEDIA_DIR:
                rel = rel.partition("/")[2]
                if not rel:
                    continue
            out.append(relpath_to_name(rel))
    return out
