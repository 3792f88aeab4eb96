"""Bring runs in from other trackers: TensorBoard, MLflow, W&B, trackio and DVCLive.

Each function reads its tool's files (never its servers), writes one labtrack run per source
run under `root` and returns the labtrack run ids of the source's runs. A run keeps every
scalar point with its own step and wall time, and what else the source holds that labtrack has
a place for (params, media, text, histograms, tables, tags, notes, status, times, provenance);
run.json's "imported_from" names the tool, its version, the source and the source's run id.

Importing the same source again writes nothing new (the ids come back the same); a source run
that has grown since is imported again in place; an import cut off half way is finished by the
next. The command line is `labtrack import <tool> SOURCE` (docs/import-export.md, docs/migrate.md).

Example:
    >>> import labtrack.importers
    >>> ids = labtrack.importers.tensorboard("runs/", root="labtrack")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ._sink import Import, SourceError

__all__ = ["TOOLS", "SourceError", "dvclive", "mlflow", "parquet", "run_import", "tensorboard", "trackio", "wandb"]

PathLike = str | os.PathLike[str]


def run_import(tool: str, source: PathLike, root: PathLike | None = None, experiment: str | None = None,
               progress: bool | None = None, **kw: Any) -> Import:
    """Import `source` with `tool`'s reader; the `Import` holds the ids, counts and summary."""
    from importlib import import_module

    if tool not in TOOLS:
        raise SourceError(f"cannot import from {tool!r}: labtrack imports from {', '.join(TOOLS)}")
    reader = import_module(f"labtrack.importers._{tool}")
    imp = Import(tool, source, root=root, progress=progress)
    try:
        reader.read_into(imp, source, experiment=experiment, **kw)
    finally:
        imp.close()
    return imp


def _run(tool: str, source: PathLike, root: PathLike | None, experiment: str | None,
         progress: bool | None) -> list[str]:
    return run_import(tool, source, root, experiment, progress).ids


def tensorboard(logdir: PathLike, root: PathLike | None = None, *, experiment: str | None = None,
                progress: bool | None = None) -> list[str]:
    """Import every run folder of a TensorBoard logdir (event files of any writer).

    Args:
        logdir: the folder given to SummaryWriter / `tensorboard --logdir`; each folder under
            it that holds event files becomes one run.
        root: the labtrack root (default: LABTRACK_ROOT or ./labtrack).
        experiment: the experiment the runs go into (default: the logdir's folder name).
        progress: show progress (default: when stderr is a terminal).
    """
    return _run("tensorboard", logdir, root, experiment, progress)


def mlflow(source: PathLike, root: PathLike | None = None, *, experiment: str | None = None,
           progress: bool | None = None) -> list[str]:
    """Import MLflow runs from its SQLite store (`sqlite:///mlflow.db`) or file store (`./mlruns`).

    Each MLflow experiment becomes a labtrack experiment (or all go into `experiment`).
    """
    return _run("mlflow", source, root, experiment, progress)


def wandb(source: PathLike, root: PathLike | None = None, *, experiment: str | None = None,
          progress: bool | None = None) -> list[str]:
    """Import W&B run folders (`./wandb`: offline-run-* and run-*, each with its run-*.wandb).

    The project becomes the experiment (or all go into `experiment`).
    """
    return _run("wandb", source, root, experiment, progress)


def trackio(source: PathLike, root: PathLike | None = None, *, experiment: str | None = None,
            progress: bool | None = None) -> list[str]:
    """Import a trackio project: its SQLite database (`PROJECT.db`) or the project's name
    (looked up in trackio's folder, TRACKIO_DIR or ~/.cache/huggingface/trackio)."""
    return _run("trackio", source, root, experiment, progress)


def dvclive(source: PathLike, root: PathLike | None = None, *, experiment: str | None = None,
            progress: bool | None = None) -> list[str]:
    """Import a DVCLive folder (`./dvclive`: params.yaml, metrics.json, plots/, ...)."""
    return _run("dvclive", source, root, experiment, progress)


def parquet(source: PathLike, root: PathLike | None = None, *, experiment: str | None = None,
            progress: bool | None = None) -> list[str]:
    """Import runs written by `labtrack export --to parquet` (a folder of .parquet files, or one)."""
    return _run("parquet", source, root, experiment, progress)


TOOLS: dict[str, Callable[..., list[str]]] = {
    "tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb, "trackio": trackio, "dvclive": dvclive,
    "parquet": parquet}
