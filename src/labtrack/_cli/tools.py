"""CLI commands of this area: `rerun` and `tb`. `register(group)` adds them to `labtrack`."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from ..errors import LabtrackValueError
from .roots import read_root_option

if TYPE_CHECKING:
    from ..integrations.tensorboard import LiveExport


def _dumps(obj: object) -> str:
    from .._store.files import dumps

    return dumps(obj)


def _root(root: str | None, command: str, does: str, instead: str | None = None) -> Path:
    """The local root of a command that writes into it (an object-store URL is refused)."""
    from .roots import local_root

    return local_root(root, command, does=does, instead=instead).resolve()


def _read_root(root: str | None) -> Path:
    """The folder a command that only reads runs reads: the root, or for an object-store
    root the local mirror of the bucket, synced now."""
    from .roots import read_book

    return read_book(root).root.resolve()


@click.command("rerun")
@click.argument("run")
@click.option("--continue", "continue_", is_flag=True,
              help="Resume the same run instead of starting a new one; "
                   "the script loads its last checkpoint.")
@click.option("--root", default=None, metavar="PATH", help="Root folder of runs (default LABTRACK_ROOT or ./labtrack).")
@click.option("--repo", type=click.Path(file_okay=False), default=None,
              help="Git repository to take the commit from (default: the one the run recorded).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Empty folder for the worktree (default: a temporary folder).")
@click.option("--keep", is_flag=True, help="Keep the worktree after a successful run.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; create nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (the plan, or the result); the command's own output goes to stderr.")
def rerun_command(run: str, continue_: bool, root: str | None, repo: str | None,
                  workdir: str | None, keep: bool, dry_run: bool, as_json: bool) -> None:
    """Run RUN again from its recorded commit, diff and untracked files.

    RUN is a run id, a unique id prefix, or experiment/name. A git worktree is made at the
    run's commit, its recorded diff applied and its untracked files copied; then the recorded
    command runs there as a new run whose parent is RUN. The new run's id is printed last.

    Folders of the repository on the interpreter's sys.path (an editable install, PYTHONPATH)
    are taken from the worktree too. Not reproduced: ignored files (data) and untracked files
    too large to have been recorded.
    """
    from .._rerun import plan_rerun, rerun

    base = _root(root, "rerun", "writes a new run into the root",
                 "give the local folder that holds the run (--root PATH)")
    plan = plan_rerun(base, run, continue_=continue_,
                      repo=Path(repo) if repo is not None else None)
    if dry_run:
        click.echo(_dumps(plan.as_dict()) if as_json else plan.describe())
        return
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    result = rerun(plan, workdir=Path(workdir) if workdir is not None else None, keep=keep,
                   echo=lambda line: click.echo(line, err=True),
                   stdout=sys.stderr if as_json else None)
    if as_json:
        click.echo(_dumps({"runs": result.run_ids, "returncode": result.returncode,
                           "worktree": str(result.worktree) if result.worktree else None}))
    if result.returncode != 0:
        which = f"; run {', '.join(result.run_ids)} recorded it" if result.run_ids else ""
        click.echo(f"error: the command exited with status {result.returncode}{which}", err=True)
        sys.exit(result.returncode if 0 < result.returncode < 256 else 1)
    if not result.run_ids:
        click.echo(f"error: the command finished but wrote no run with parent {plan.run_id} under "
                   f"{plan.root}; does the script call labtrack.init() without its own root=?", err=True)
        sys.exit(1)
    if not as_json:
        for run_id in result.run_ids:
            click.echo(run_id)


def _tb_runs(base: Path, refs: tuple[str, ...]) -> list[Path]:
    """The run folders `refs` name: an experiment's name stands for all its runs (oldest
    first, Lab's `tools/tb.py -e`); anything else is a run id, id prefix or experiment/name."""
    from .._book import Book
    from .._rerun import resolve_run

    book = Book(base)
    experiments = set(book.experiments())
    dirs: list[Path] = []
    for ref in refs:
        if ref in experiments:
            found = [Path(v.dir) for v in book.runs(experiment=ref, sort="started")]
        else:
            found = [resolve_run(base, ref)]
        dirs += [d for d in found if d not in dirs]
    return dirs


@click.command("tb")
@click.argument("runs", nargs=-1, required=True)
@read_root_option
@click.option("--logdir", type=click.Path(file_okay=False), default=None,
              help="Folder for the event files (default <root>/.labtrack/tensorboard).")
@click.option("--port", type=click.IntRange(1, 65535), default=6006, show_default=True,
              help="Port for TensorBoard.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address TensorBoard binds.")
@click.option("--no-launch", is_flag=True, help="Only export; print the tensorboard command.")
@click.option("--watch/--no-watch", default=None,
              help="Keep exporting new points while runs are live (default: on with TensorBoard, "
                   "off with --no-launch).")
@click.option("--refresh", type=click.FloatRange(min=0.05), default=5.0, show_default=True, metavar="SECONDS",
              help="How often new points of live runs are exported.")
@click.option("--json", "as_json", is_flag=True, help="Print the exported runs and the command as JSON.")
def tb_command(runs: tuple[str, ...], root: str | None, logdir: str | None, port: int,
               host: str, no_launch: bool, watch: bool | None, refresh: float, as_json: bool) -> None:
    """Export RUNS to TensorBoard event files and start TensorBoard on them.

    Each of RUNS is an experiment's name (all its runs, as Lab's `tools/tb.py -e`), a run id,
    a unique id prefix, or experiment/name. Scalars, images, figures, histograms and text
    are exported, one sub-folder per run, and each run is named experiment/name in
    TensorBoard. While a run is live its new points are appended every --refresh seconds,
    until it ends (or Ctrl-C). Needs: pip install 'labtrack[tb]'.
    """
    from ..integrations import tensorboard

    from .roots import is_object_root, root_value

    tensorboard.require_tensorboard()
    if is_object_root(root_value(root)):
        # The mirror changes only when synced: following its live runs would wait forever.
        if watch:
            raise LabtrackValueError(f"--watch follows runs in a local folder; {root_value(root)} is "
                                     "an object-store root, exported as it is now (leave out --watch)")
        watch = False
    base = _read_root(root)
    dirs = _tb_runs(base, runs)
    out = Path(logdir).resolve() if logdir is not None else base / ".labtrack" / "tensorboard"
    live = tensorboard.LiveExport(dirs, out)
    exported = live.exported
    spec = tensorboard.logdir_spec(exported)
    url = f"http://{host}:{port}/"
    watching = (not no_launch) if watch is None else watch
    if as_json:
        click.echo(_dumps({
            "runs": [{"label": e.label, "dir": str(e.events_dir)} for e in exported],
            "logdir_spec": spec, "url": None if no_launch else url,
            "command": ["tensorboard", "--logdir_spec", spec, "--port", str(port), "--host", host],
        }))
    else:
        for e in exported:
            click.echo(f"exported {e.label} -> {e.events_dir}", err=True)
    if no_launch:
        if not as_json:
            click.echo(shlex.join(["tensorboard", "--logdir_spec", spec, "--port", str(port), "--host", host]))
        if watching:
            try:
                _follow(live, refresh, lambda: True)
            except KeyboardInterrupt:
                pass
        return
    proc = tensorboard.launch(exported, port=port, host=host)
    click.echo(f"TensorBoard: {url} (Ctrl-C stops it)", err=True)
    # SIGTERM or SIGHUP (a service manager, a closed terminal) must stop TensorBoard too: left
    # running it would hold the port. Both become an exception here, then the child is ended.
    handlers = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        handlers[sig] = signal.signal(sig, _raise_stopped)
    try:
        if watching:
            _follow(live, refresh, lambda: proc.poll() is None)
        code = proc.wait()
    except (KeyboardInterrupt, _Stopped) as e:
        _end_child(proc)
        if isinstance(e, _Stopped):
            sys.exit(128 + e.signum)
        return
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
        _end_child(proc)
    if code != 0:
        click.echo(f"error: tensorboard exited with status {code}", err=True)
        sys.exit(1)


def _follow(live: LiveExport, refresh: float, going: Callable[[], bool]) -> None:
    """Append the live runs' new points every `refresh` seconds until none is live (the
    last points of a run that ends are exported once more) or `going()` turns False."""
    import time

    while live.tails and going():
        time.sleep(refresh)
        added = live.refresh()
        if added:
            click.echo(f"exported {added} new points", err=True)


class _Stopped(Exception):
    """SIGTERM or SIGHUP arrived while TensorBoard ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def _end_child(proc: subprocess.Popen[bytes]) -> None:
    """Stop TensorBoard: SIGTERM, then SIGKILL if it has not gone within 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
    group.add_command(rerun_command)
    group.add_command(tb_command)
