"""Runs out to other formats and tools: `labtrack export RUN... --to FORMAT --out DIR_OR_URI`.

parquet and csv: `_export/tables.py`; mlflow: `_export/mlflow.py`; tensorboard: the
existing exporter in `labtrack.integrations.tensorboard`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def export(run_dirs: Sequence[Path], fmt: str, out: str, *, progress: bool | None = None) -> str:
    """Export `run_dirs` as `fmt` into `out`; returns the one-line summary the CLI prints."""
    if fmt in ("parquet", "csv"):
        from .tables import export as to_tables

        return to_tables(run_dirs, fmt, Path(out), progress=progress)
    if fmt == "mlflow":
        from .mlflow import export as to_mlflow

        return to_mlflow(run_dirs, out, progress=progress)
    if fmt == "tensorboard":
        from ..integrations import tensorboard

        tensorboard.require_tensorboard()
        logdir = Path(out).resolve()
        done = tensorboard.export_runs(list(run_dirs), logdir)
        return (f"exported {len(done)} run{'s' if len(done) != 1 else ''} to TensorBoard event files "
                f"in {logdir} (tensorboard --logdir {logdir})")
    raise ValueError(f"unknown export format {fmt!r}")
