"""`labtrack ui`: serve the dashboard over a root of runs."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add `labtrack ui` to `group`."""
    group.add_command(ui)


@click.command()
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1/localhost lets other "
                   "machines read your runs: the dashboard has no login (changes to a run's "
                   "comment, tags and notes are taken only from this machine).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--index", "index", default=None, metavar="URL",
              help="Where the run index lives: a SQLite file, or postgresql://user@host/db to "
                   "share one index between several servers (pip install labtrack[postgres]; "
                   "docs/deploy.md). Default: the SQLite file under the root.")
def ui(root: str | None, host: str, port: int, index: str | None) -> None:
    """Serve the live dashboard over the runs in ROOT (default: LABTRACK_ROOT or ./labtrack).

    Open the printed address in a browser; stop with Ctrl-C.
    """
    from pathlib import Path

    from .._server.app import LOOPBACK_NAMES, bind, create_app, local_writes_only, serve
    from .._server.static import BUILD_COMMAND, DEFAULT_DIR

    from .roots import is_object_root, refusal, root_value

    value = root_value(root)
    if is_object_root(value):
        raise refusal("ui", value, does="serves a local folder",
                      instead="serve a bucket with `labtrack serve --root {url} --index "
                              "postgresql://...` (docs/deploy.md)")
    folder = Path(value).expanduser()
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{folder} is a file; ROOT must be the folder of runs", param_hint="ROOT")
    from .remote import check_index

    check_index(folder.absolute(), index)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"labtrack ui: serving {folder.absolute()} on http://{shown}:{bound}/ (Ctrl-C to stop)")
    if not folder.exists():
        click.echo(f"note: {folder} does not exist yet; runs will show up once a script writes them")
    if not (DEFAULT_DIR / "index.html").is_file():
        click.echo(f"note: the web front end is not built; run `{BUILD_COMMAND}` for the pages "
                   "(the API works without it)")
    if host not in LOOPBACK_NAMES:
        click.echo(f"warning: listening on {host}: anyone who can reach this address can read "
                   "every run; there is no login (use `labtrack serve` with tokens for that). "
                   "Changes (comment, tags, notes) are taken only from this machine", err=True)
    loopback = host in LOOPBACK_NAMES
    serve(create_app(folder, auth=local_writes_only,
                     allowed_hosts=LOOPBACK_NAMES if loopback else None, index=index), sock)
    click.echo("labtrack ui: stopped")
