"""Where things live in a run directory (docs/format.md). The only module that knows paths."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from .._names import name_to_relpath, slug

FORMAT_VERSION = 1

RUN_JSON = "run.json"
PARAMS_JSON = "params.json"
SUMMARY_JSON = "summary.json"
ROW_JSON = ".row.json"  # derived: the run's index row, written at finish (_index_rowfile); never uploaded
HEARTBEAT = "heartbeat"
MEDIA_JSONL = "media.jsonl"
CONSOLE_LOG = "console.log"
ENV_JSON = "env.json"
OPTIONS_JSON = "options.json"
NOTES_MD = "notes.md"  # the run's notes (markdown), written after the fact (_book.manage.set_notes)
SOURCE_DIR = "source"
COMMIT_TXT = "source/commit.txt"
DIFF_PATCH = "source/diff.patch"
UNTRACKED_DIR = "source/untracked"
SOURCE_FILES_DIR = "source/files"  # outside git: the script and its local modules (copies)
NOTEBOOK_PY = "source/notebook.py"  # the cells a notebook kernel executed (a run started there)
SKIPPED_TXT = "SKIPPED.txt"  # inside UNTRACKED_DIR: what was too large to copy
SCALARS_DIR = "scalars"
TEXT_DIR = "text"
HISTOGRAMS_DIR = "histograms"
MARKDOWN_DIR = "markdown"
TABLES_DIR = "tables"
ARTIFACTS_DIR = "artifacts"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_INFO = "checkpoint.json"  # inside checkpoints/<step>/, with RNG_JSON and the file
CHECKPOINT_RNG = "rng.json"
CHECKPOINT_TORCH = "checkpoint.pt"
CHECKPOINT_PICKLE = "checkpoint.pkl"
MEDIA_DIR = "media"
# Lab Workbook's CSV time series (`run.series_log`): series/<name>.csv, named columns + Date.
SERIES_DIR = "series"
SERIES_DATE = "Date"  # the column every series row ends with: its UTC ISO time
# `run.save_model`: artifacts/models/<step>/model.pt (state dict) and grads.pt (gradients).
MODELS_DIR = "artifacts/models"
# `run.log_summary`: Lavd's summary document, kept with the run's markdown documents.
SUMMARY_MD = "summary"
# The folders whose files are named after logged names (docs/format.md).
NAMED_DIRS = (SCALARS_DIR, TEXT_DIR, HISTOGRAMS_DIR, MARKDOWN_DIR, TABLES_DIR, MEDIA_DIR, SERIES_DIR)
# One-run distributed jobs (docs/distributed.md): ranks/<N>/ holds rank N's status.json and,
# for N > 0, its heartbeat, console.log and summary.json; rank N's series are `rank<N>/<name>`.
RANKS_DIR = "ranks"
RANK_STATUS = "status.json"
# <root>/<experiment-slug>/.jobs/<job key>.json: rank 0's note of the run a job's ranks share.
JOBS_DIR = ".jobs"
INDEX_DIR = ".labtrack"
TRASH_DIR = ".trash"
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def local_index_path(root: Path) -> Path:
    """This user's index of `root` in the local temp folder, for a root that is read-only or
    on a network file system (the index's usual place is `<root>/.labtrack/index.sqlite`)."""
    import hashlib
    import os
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    key = hashlib.sha256(f"{uid}:{root.resolve()}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"labtrack-index-{key}.sqlite"


def new_run_id(now: float | None = None) -> str:
    """`YYYYMMDD-HHMMSS-xxxxxx`: UTC start time and six random characters."""
    t = time.gmtime(time.time() if now is None else now)
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    return time.strftime("%Y%m%d-%H%M%S", t) + "-" + suffix


def run_dir(root: Path, experiment: str, run_id: str) -> Path:
    return root / slug(experiment) / run_id


def scalar_path(run: Path, name: str) -> Path:
    return run / "scalars" / name_to_relpath(name, ".csv")


def text_path(run: Path, name: str) -> Path:
    return run / "text" / name_to_relpath(name, ".jsonl")


def histogram_path(run: Path, name: str) -> Path:
    return run / "histograms" / name_to_relpath(name, ".jsonl")


def markdown_path(run: Path, name: str) -> Path:
    return run / "markdown" / name_to_relpath(name, ".md")


def table_path(run: Path, name: str) -> Path:
    return run / "tables" / name_to_relpath(name, ".csv")


def series_path(run: Path, name: str) -> Path:
    return run / SERIES_DIR / name_to_relpath(name, ".csv")


def model_path(run: Path, step: int, name: str) -> Path:
    """`artifacts/models/<step>/<name>.pt` (`run.save_model`)."""
    return run / MODELS_DIR / str(step) / (name + ".pt")


def media_relpath(step: int, name: str, suffix: str) -> str:
    return f"media/{step}/" + name_to_relpath(name, suffix)


# Media files a run may hold besides images: audio (WAV) and video (MP4, or WebM and GIF
# copied in or written where no H.264 encoder is installed); docs/format.md.
AUDIO_SUFFIX = ".wav"
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
HTML_SUFFIX = ".html"
# A table's cell images live in a folder named after the table with this ending.
TABLE_CELLS_SUFFIX = ".cells"


def table_cell_relpath(step: int | None, name: str, row: int, col: int) -> str:
    """Where the image in (row, col) of table `name` is stored, relative to the run: beside
    the stepped copy (media/<step>/<name>.cells/<row>-<col>.png) or, for a table logged
    without a step, beside tables/<name>.csv."""
    folder = TABLES_DIR if step is None else f"{MEDIA_DIR}/{step}"
    return f"{folder}/" + name_to_relpath(name, TABLE_CELLS_SUFFIX) + f"/{row}-{col}.png"


def artifact_path(run: Path, name: str) -> Path:
    return run / "artifacts" / name_to_relpath(name)


def rank_relpath(rank: int, name: str) -> str:
    """A per-rank file of a one-run job: `ranks/<rank>/<name>`."""
    return f"{RANKS_DIR}/{rank}/{name}"


def rank_prefix(rank: int) -> str:
    """What rank N > 0 puts before its series names: `rank<N>/` (rank 0's are unprefixed)."""
    return f"rank{rank}/"


def rank_owns(relpath: str, rank: int) -> bool:
    """Whether `relpath` of a one-run job's directory is written by `rank` (a remote client
    replicates only its own rank's files). Rank 0 owns everything but the other ranks' files."""
    if relpath == RUN_JSON:
        return True  # the last rank to finish writes the job's end into it
    head, _, rest = relpath.partition("/")
    if head == RANKS_DIR:
        return rest.partition("/")[0] == str(rank)
    if head in (SCALARS_DIR, TEXT_DIR, HISTOGRAMS_DIR, TABLES_DIR, MARKDOWN_DIR, ARTIFACTS_DIR):
        first = rest.partition("/")[0]
        if first.startswith("rank") and first[4:].isdigit() and rest != first:
            return first == f"rank{rank}"
    return rank == 0


def job_path(root: Path, experiment: str, key: str) -> Path:
    """Where rank 0 notes the run a job's ranks share (see `_store/ranks.py`)."""
    return root / slug(experiment) / JOBS_DIR / (key + ".json")
