"""`labtrack serve`, `labtrack sync` and `labtrack token`: the remote logging commands."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import LabtrackValueError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True when `host` is a loopback address (127.0.0.0/8, ::1) or 'localhost'."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tokens: str | None, insecure: bool) -> None:
    """Refuse to serve without tokens on a non-loopback address unless `insecure`.

    Raises:
        LabtrackValueError: with the fix in the message.
    """
    if tokens is None and not is_loopback(host) and not insecure:
        raise LabtrackValueError(
            f"refusing to serve on {host} without tokens: anyone who can reach it could write "
            "runs. Create a token (labtrack token create NAME --write --tokens tokens.json) and "
            "pass --tokens tokens.json, or pass --insecure on a trusted network")


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, extra: tuple[str, ...] | list[str] = ()) -> tuple[list[str], bool]:
    """The Host names `serve --host HOST` answers, and whether any IP address is accepted.

    Loopback names always; a named `host` itself; for every interface (0.0.0.0, ::) this
    machine's host name and any IP address (a DNS-rebinding page cannot send an IP address
    as Host); and every name in `extra` (`--allowed-host`).

    Raises:
        LabtrackValueError: a name in `extra` that is not a host name.

    Example:
        >>> allowed_hosts("0.0.0.0", ["logs.lab"])
    """
    import socket

    from .._server.app import LOOPBACK_NAMES as SERVER_LOOPBACK

    names = list(SERVER_LOOPBACK)
    any_ip = False
    bare = host.strip("[]").lower()
    if bare in WILDCARD_HOSTS:
        any_ip = True
        names += [socket.gethostname().lower(), socket.getfqdn().lower()]
    elif not is_loopback(host):
        names.append(bare)
    for name in extra:
        clean = name.strip().strip("[]").lower()
        if not clean or any(c in clean for c in " /\\@?#") or any(ord(c) < 33 for c in clean):
            raise LabtrackValueError(f"--allowed-host {name!r} is not a host name; give a name "
                                     "such as logs.lab (no scheme, port or path)")
        names.append(clean)
    return sorted(set(names)), any_ip


def build_app(root: Path, *, tokens: str | None, max_batch_bytes: int,
              max_file_bytes: int, hosts: list[str] | None = None,
              any_ip: bool = False, index: str | None = None, storage: Any = None) -> Any:
    """The server's ASGI app: the dashboard's app with the ingest routes added.

    Args:
        hosts: the Host names to answer (see :func:`allowed_hosts`); None: loopback names.
        any_ip: also answer any IP address as Host.
        index: the run index (None: SQLite under the root; or postgresql://...).
        storage: where ingest writes (None: the run directories under `root`; a
            `labtrack._server.shared.SharedStorage` for a bucket shared by several servers,
            `root` then being its local mirror).
    """
    from .._server.ingest import ingest_routes

    auth = None
    if tokens is not None:
        from .._server.auth import TokenAuth

        if not Path(tokens).is_file():
            raise LabtrackValueError(f"the tokens file {tokens} does not exist; create it with "
                                     f"labtrack token create NAME --write --tokens {tokens}")
        auth = TokenAuth(Path(tokens))
    routes = ingest_routes(root, auth=auth, max_batch_bytes=max_batch_bytes,
                           max_file_bytes=max_file_bytes, storage=storage)
    if auth is not None:
        from .._server.auth import login_routes

        routes = [*login_routes(auth), *routes]
    from .._server.app import create_app

    from .._server.app import LOOPBACK_NAMES as SERVER_LOOPBACK

    app = create_app(root, auth=auth, extra_routes=routes,
                     allowed_hosts=hosts if hosts is not None else SERVER_LOOPBACK,
                     allow_ip_hosts=any_ip, index=index)
    if storage is not None:
        state = app.state.labtrack
        # Each process indexes its own mirror into the shared index (see PgIndex's `mirrored`).
        state.index_options = {"mirrored": True}
        storage.on_change = lambda run_dir: state.changed(state.run_dir(run_dir.name))
        state.storage = storage  # dashboard edits go to the bucket too (`_server.edit`)
    return app


def check_index(root: Path, index: str | None) -> None:
    """Open the index `--index` names once, so a bad URL or an unreachable database fails
    at start with the reason, not on the first request (and migrate a PostgreSQL one)."""
    if index is None:
        return
    from .._index_pg import open_index

    open_index(root, index).close()


def register(group: click.Group) -> None:
    """Add `serve`, `sync` and `token` to `group`."""
    group.add_command(serve)
    group.add_command(sync)
    group.add_command(token)


@click.command()
@click.option("--root", default=None,
              help="Folder of runs to serve and write into (default LABTRACK_ROOT or ./labtrack), "
                   "or a bucket, s3://BUCKET/PREFIX, shared with other serve processes (needs "
                   "--index postgresql://...).")
@click.option("--mirror", type=click.Path(file_okay=False), default=None,
              help="With a bucket as --root: the local folder this process serves from, kept in "
                   "sync with the bucket (default ~/.cache/labtrack/mirror/BUCKET/PREFIX); a "
                   "cache, safe to delete while the server is stopped.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--tokens", type=click.Path(dir_okay=False), default=None,
              help="Tokens file (labtrack token create); without it the server only binds to loopback.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback host without tokens.")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="Also answer requests whose Host header is NAME (repeatable). Loopback names "
                   "and a non-loopback --host are allowed already; others are refused (DNS "
                   "rebinding).")
@click.option("--max-request-mb", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Largest append or batch request.")
@click.option("--max-file-mb", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
              help="Largest whole file (media, artifacts, checkpoints).")
@click.option("--index", "index", default=None, metavar="URL",
              help="Where the run index lives: a SQLite file, or postgresql://user@host/db to "
                   "share one index between several servers (pip install labtrack[postgres]; "
                   "docs/deploy.md). Default: the SQLite file under the root.")
def serve(root: str | None, mirror: str | None, host: str, port: int, tokens: str | None, insecure: bool,
          allowed_host: tuple[str, ...], max_request_mb: int, max_file_mb: int,
          index: str | None) -> None:
    """Serve the dashboard and receive runs from remote clients.

    Training scripts log here with labtrack.init(remote="http://HOST:PORT", token=...) or
    LABTRACK_REMOTE/LABTRACK_TOKEN; runs land under --root in the usual format. Without
    --tokens anyone who can connect may read and write, so the server then binds only to
    loopback (unless --insecure). Requests are answered only for the allowed Host names
    (--allowed-host), a request from a page of another origin is refused, and writes need
    the X-Labtrack-Client header with a JSON or octet-stream body (docs/api.md).

    Several processes, on one or many machines, share one bucket and one database behind
    any HTTP load balancer (docs/deploy.md): each serves from its own local mirror of the
    bucket, an append is accepted only at the size the database has committed (so a retry
    that reaches another process never duplicates data), and what one process receives
    reaches the live streams of all.

    \b
    Example:
      labtrack token create alice --write --tokens tokens.json
      labtrack serve --root /data/labtrack --host 0.0.0.0 --tokens tokens.json
      labtrack serve --root s3://bucket/labtrack --index postgresql://lab@db/labtrack \\
          --host 0.0.0.0 --port 8765 --tokens tokens.json
    """
    from .._settings import get

    check_exposure(host, tokens, insecure)
    hosts, any_ip = allowed_hosts(host, allowed_host)
    root_value = str(get("root", root))
    storage = None
    if "://" in root_value:
        from .._server.shared import open_shared

        storage = open_shared(root_value, index, mirror)
        root_path = storage.mirror
    elif mirror is not None:
        raise LabtrackValueError(f"--mirror is for a bucket as --root; --root {root_value} is a "
                                 "local folder, served as it is")
    else:
        root_path = Path(root_value)
    root_path.mkdir(parents=True, exist_ok=True)
    check_index(root_path, index)
    app = build_app(root_path, tokens=tokens, max_batch_bytes=max_request_mb << 20,
                    max_file_bytes=max_file_mb << 20, hosts=hosts, any_ip=any_ip, index=index,
                    storage=storage)
    if storage is not None:
        assert index is not None  # open_shared refuses a bucket without it
        storage.start(index)
    from .._server.app import bind, serve as serve_app

    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    tokens_desc = tokens or ("none (--insecure)" if insecure else "none (loopback only)")
    where = f"{root_value} (mirror {root_path})" if storage is not None else str(root_path)
    click.echo(f"labtrack serve: http://{shown}:{sock.getsockname()[1]}/ root={where} "
               f"tokens={tokens_desc} hosts={','.join(hosts)}{'+any IP' if any_ip else ''} "
               "(Ctrl-C to stop)", err=True)
    serve_app(app, sock)


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--remote", default=None, help="Server URL, or an object-store root such as "
              "s3://bucket/prefix (default LABTRACK_REMOTE).")
@click.option("--token", "token_", default=None, help="Write token (default LABTRACK_TOKEN).")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder of runs (default LABTRACK_ROOT or ./labtrack; for an object-store "
              "--remote, its spool folder).")
@click.option("--patience", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to keep retrying an unreachable server.")
def sync(runs: tuple[str, ...], remote: str | None, token_: str | None, root: str | None,
         patience: float) -> None:
    """Upload runs to a server or a bucket: RUNS are ids, id prefixes, EXPERIMENT/ID or run
    folders (all runs under --root when none given).

    Only what the server lacks is sent (it is asked for its sizes first), so syncing again
    uploads nothing; an interrupted sync resumes where it stopped. With --remote
    s3://bucket/prefix the runs a training process left in its spool (object storage
    unreachable at finish) are uploaded from the offsets the bucket's manifest names, and
    ended runs are compacted (docs/object-storage.md).
    """
    from .._remote.sync import find_runs, sync_runs
    from .._settings import get

    url = get("remote", remote)
    if not url:
        raise LabtrackValueError("no server given: pass --remote http://HOST:PORT (or "
                                 "s3://bucket/prefix) or set LABTRACK_REMOTE")
    from .._objstore.store import is_object_url

    if is_object_url(str(url)):
        from .._objstore.ship import sync_to_bucket
        from .._objstore.spool import spool_dir

        spool = Path(root) if root else spool_dir(str(url))
        dirs = find_runs(spool, list(runs)) if spool.is_dir() else []
        if not dirs:
            click.echo(f"no runs under {spool}", err=True)
            return
        for b in sync_to_bucket(dirs, str(url), patience=patience):
            what = f"{b.files} files, {b.bytes} bytes sent" if b.bytes or b.files else "up to date"
            click.echo(f"{b.run_dir.parent.name}/{b.run_dir.name}: {what}"
                       f"{', compacted' if b.compacted else ''}")
            for msg in b.refused:
                click.echo(f"  not uploaded: {msg}", err=True)
        return
    from .._remote.wire import check_url

    check_url(str(url))
    root_path = Path(get("root", root))
    dirs = find_runs(root_path, list(runs))
    if not dirs:
        click.echo(f"no runs under {root_path}", err=True)
        return
    reports = sync_runs(dirs, str(url), get("token", token_), patience=patience)
    for r in reports:
        what = f"{r.files} files, {r.bytes} bytes sent" if r.bytes or r.files else "up to date"
        click.echo(f"{r.run_dir.parent.name}/{r.run_dir.name}: {what}")
        for msg in r.refused:
            click.echo(f"  not uploaded: {msg}", err=True)
    if any(r.refused for r in reports):
        sys.exit(1)


@click.group()
def token() -> None:
    """Manage the tokens of `labtrack serve` (stored hashed in a tokens file)."""


@token.command("create")
@click.argument("name")
@click.option("--read", "scopes", flag_value="read", help="May read runs (the dashboard).")
@click.option("--write", "scopes", flag_value="write", help="May write runs (implies read).")
@click.option("--admin", "scopes", flag_value="admin", help="Everything.")
@click.option("--tokens", type=click.Path(dir_okay=False), required=True, help="The tokens file.")
def token_create(name: str, scopes: str | None, tokens: str) -> None:
    """Create a token called NAME and print it (it is shown only this once)."""
    from .._server.auth import create_token

    value = create_token(Path(tokens), name, [scopes or "read"])
    click.echo(value)
    click.echo(f"token {name!r} ({scopes or 'read'}) stored hashed in {tokens}; it is not "
               "shown again", err=True)


@token.command("list")
@click.option("--tokens", type=click.Path(dir_okay=False), required=True, help="The tokens file.")
def token_list(tokens: str) -> None:
    """List the tokens' names, scopes and creation times (never the tokens)."""
    from .._server.auth import load_tokens

    for t in load_tokens(Path(tokens)):
        click.echo(f"{t['name']}\t{','.join(t['scopes'])}\t{t.get('created', '')}")


@token.command("revoke")
@click.argument("name")
@click.option("--tokens", type=click.Path(dir_okay=False), required=True, help="The tokens file.")
def token_revoke(name: str, tokens: str) -> None:
    """Remove the token called NAME."""
    from .._server.auth import revoke_token

    revoke_token(Path(tokens), name)
    click.echo(f"token {name!r} revoked", err=True)
