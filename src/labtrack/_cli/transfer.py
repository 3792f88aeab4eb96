"""`labtrack import`, `labtrack export` and `labtrack merge`: runs in from other tools, out to
them, and runs of several roots into one (docs/import-export.md)."""

from __future__ import annotations

from pathlib import Path
import click

from .roots import read_root_option
from .tools import _read_root, _root, _tb_runs

_ROOT = click.option("--root", default=None, metavar="PATH",
                     help="Root folder of runs (default LABTRACK_ROOT or ./labtrack).")
_PROGRESS = click.option("--progress/--no-progress", default=None,
                         help="Show progress (default: when stderr is a terminal).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the run ids and counts as JSON.")

_SOURCES = {
    "tensorboard": ("LOGDIR", "a TensorBoard logdir: every folder under it with event files "
                              "(tfevents, any writer) becomes a run."),
    "mlflow": ("STORE", "MLflow's SQLite store (sqlite:///mlflow.db) or its file store (./mlruns)."),
    "wandb": ("FOLDER", "W&B run folders: ./wandb (offline-run-* and run-* with their run-*.wandb) "
                        "or one run folder."),
    "trackio": ("DB_OR_PROJECT", "a trackio project: its SQLite database (PROJECT.db) or its name "
                                 "(looked up in TRACKIO_DIR or ~/.cache/huggingface/trackio)."),
    "dvclive": ("FOLDER", "a DVCLive folder (./dvclive, or a folder of several)."),
    "parquet": ("PATH", "runs written by `labtrack export --to parquet` (a folder of .parquet files, or one)."),
}


@click.group("import")
def import_group() -> None:
    """Bring runs in from another tool, keeping every point with its step and wall time.

    Importing the same source again writes nothing new; an import cut off half way is
    finished by running it again. Each run's run.json says where it came from
    ("imported_from").
    """


def _import_command(tool: str, metavar: str, text: str) -> click.Command:
    @click.command(tool, help=f"Import {text}")
    @click.argument("source", metavar=metavar)
    @click.option("--experiment", default=None, metavar="NAME",
                  help="Put every run into this experiment (default: the source's own names).")
    @_ROOT
    @_PROGRESS
    @_JSON
    def command(source: str, experiment: str | None, root: str | None, progress: bool | None,
                as_json: bool) -> None:
        from ..importers import run_import

        into = _root(root, f"import {tool}", "writes runs",
                     "import into a local folder (--root PATH), then upload its runs with "
                     "`labtrack sync --root PATH --remote {url}`")
        imp = run_import(tool, source, into, experiment, progress)
        if as_json:
            from .tools import _dumps

            click.echo(_dumps({"tool": tool, "source": source, "root": str(imp.root), "runs": imp.ids,
                               "imported": imp.new, "already_imported": imp.skipped,
                               "points": imp.points, "notes": imp.notes}))
        else:
            click.echo(imp.summary())
    return command


for _tool, (_metavar, _text) in _SOURCES.items():
    import_group.add_command(_import_command(_tool, _metavar, _text))


@click.command("export")
@click.argument("runs", nargs=-1, required=True)
@click.option("--to", "fmt", type=click.Choice(["parquet", "csv", "tensorboard", "mlflow"]), required=True,
              help="parquet, csv: one file (or folder) per run in --out; tensorboard: event files; "
                   "mlflow: into the tracking URI --out through mlflow's own client.")
@click.option("--out", required=True, metavar="DIR_OR_URI",
              help="A folder (parquet, csv, tensorboard) or an MLflow tracking URI (mlflow).")
@read_root_option
@_PROGRESS
def export_command(runs: tuple[str, ...], fmt: str, out: str, root: str | None, progress: bool | None) -> None:
    """Export RUNS: run ids, id prefixes, experiment/name, or experiments (all their runs)."""
    from .. import _export

    dirs = _tb_runs(_read_root(root), runs)
    line = _export.export(dirs, fmt, out, progress=progress)
    click.echo(line)


@click.command("merge")
@click.argument("roots", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--into", required=True, type=click.Path(file_okay=False), metavar="ROOT",
              help="The root the runs are copied into (made when missing).")
@_PROGRESS
def merge_command(roots: tuple[str, ...], into: str, progress: bool | None) -> None:
    """Copy the runs of ROOTS (e.g. from machines that logged offline) into one root.

    A run already there (same id, same content) is skipped; two different runs with the same
    id both arrive, the newcomer under a new id that run.json records ("merged_from"). Each
    run is copied whole or not at all, so a merge cut off is completed by running it again; a
    run still running is left out (merge again when it has finished).
    """
    from .. import _merge
    from .roots import is_object_root, refusal

    for r in roots:
        if is_object_root(r):
            raise refusal("merge", r, does="copies runs between local folders",
                          instead="give local folders as ROOTS")
    if is_object_root(into):
        raise refusal("merge", into, does="writes runs into --into",
                      instead="merge into a local folder, then upload its runs with "
                              "`labtrack sync --root FOLDER --remote {url}`")
    click.echo(_merge.merge([Path(r) for r in roots], Path(into), progress=progress))


def register(group: click.Group) -> None:
    """Add import, export and merge to the `labtrack` command."""
    group.add_command(import_group)
    group.add_command(export_command)
    group.add_command(merge_command)
