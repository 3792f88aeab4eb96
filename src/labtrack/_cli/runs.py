"""CLI commands for working with runs: ls, show, diff, compare, table, rm, gc, mv, tag,
comment, reindex, annotate. Each is a thin shell over labtrack._book.

The commands that only read runs also take an object-store root (s3://bucket/prefix), read
through a local mirror; the ones that change runs refuse it (labtrack._cli.roots)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from .roots import local_book, read_book, read_root_option, shown_root

if TYPE_CHECKING:
    from .._book import ReadOnlyBook

_ROOT_HELP = "Root folder of runs (default LABTRACK_ROOT or ./labtrack)."
_REF_HELP = "a run id, a unique id prefix, or experiment/name"
_STATUS_COLORS = {"running": "green", "finished": "blue", "failed": "red", "crashed": "red",
                  "killed": "magenta", "interrupted": "yellow"}


def _root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--root", default=None, metavar="PATH", help=_ROOT_HELP)(f)


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def _echo_json(obj: Any) -> None:
    from .._store.files import dumps

    click.echo(dumps(obj))


# -- formatting ----------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def _fmt_time(iso: Any) -> str:
    if not isinstance(iso, str):
        return "-"
    return iso[:19].replace("T", " ")


def _fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def _fmt_commit(row: dict[str, Any]) -> str:
    commit = row.get("commit")
    if not commit:
        return "-"
    return str(commit)[:7] + ("*" if row.get("dirty") else "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
                styles: Sequence[Callable[[int, str], str] | None] | None = None) -> str:
    """Columns padded to their widest cell; `styles[i](row, padded)` may colour a cell.

    Written for 10,000 rows: widths per column in one pass, one format call per row.
    """
    columns = list(zip(headers, *rows))
    widths = [max(map(len, col)) for col in columns]
    last = len(widths) - 1
    fmt = "  ".join(f"{{:{w}}}" if i < last else "{}" for i, w in enumerate(widths))
    out = [fmt.format(*headers).rstrip()]
    if styles is None or all(s is None for s in styles):
        out.extend(fmt.format(*r).rstrip() for r in rows)
        return "\n".join(out)
    for n, r in enumerate(rows):
        cells = []
        for i, c in enumerate(r):
            padded = c.ljust(widths[i]) if i < last else c
            style = styles[i]
            cells.append(style(n, padded) if style is not None else padded)
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _color_out() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.color is not None:
        return ctx.color
    return sys.stdout.isatty()


def _status_style(statuses: Sequence[str]) -> Callable[[int, str], str]:
    return lambda n, cell: click.style(cell, fg=_STATUS_COLORS.get(statuses[n]))


def _column_value(row: dict[str, Any], col: str) -> Any:
    if col.startswith("params."):
        return row["params"].get(col[len("params."):])
    if col.startswith("metrics."):
        name = col[len("metrics."):]
        base, sep, agg = name.rpartition(":")
        if sep and agg in ("min", "max", "mean", "last"):
            return ((row.get("stats") or {}).get(base) or {}).get(agg)
        return row["metrics"].get(name)
    return row.get(col)


def _check_columns(book: ReadOnlyBook, columns: list[str]) -> None:
    from .._query import FIELDS
    from ..errors import LabtrackValueError

    known = book.index.columns()
    for c in columns:
        if c.startswith("params."):
            ok = c[len("params."):] in known["params"]
            pool = ["params." + k for k in known["params"]]
        elif c.startswith("metrics."):
            base, sep, agg = c[len("metrics."):].rpartition(":")
            name = base if sep and agg in ("min", "max", "mean", "last") else c[len("metrics."):]
            ok = name in known["metrics"]
            pool = ["metrics." + k for k in known["metrics"]]
        else:
            ok = c in FIELDS
            pool = list(FIELDS)
        if not ok:
            import difflib

            close = difflib.get_close_matches(c, pool, n=3)
            raise LabtrackValueError(
                f"unknown column {c!r}; use params.<key>, metrics.<name>[:min|max|mean|last] or "
                f"one of {', '.join(FIELDS)}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def _split_list(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


# -- ls ------------------------------------------------------------------------------------

_WHERE_HELP = """\b
The --where language (also used by `table` and the dashboard):
  fields      params.<key> (nested keys joined by '.': params.opt.lr),
              metrics.<name> (last value) or metrics.<name>:min|max|mean|last,
              id experiment name comment tags status started ended duration
              commit dirty host user parent group job_type
  operators   == != < <= > >=   in [..]   not in   and   or   not   ( )
  values      numbers, 'text' or "text", true, false, null
  examples    params.lr < 0.01 and metrics.val/acc:max > 0.9
              "cnn" in tags and status == "finished"
              started >= "2026-11-01" and not dirty
              metrics."val acc" > 0.5        (quote names with spaces)
A missing value equals only null and is never < or >.
"""


@click.command("ls", epilog=_WHERE_HELP)
@read_root_option
@click.option("-e", "--experiment", default=None, help="Only runs of this experiment.")
@click.option("-s", "--status", default=None,
              type=click.Choice(["running", "finished", "failed", "killed", "interrupted", "crashed"]),
              help="Only runs with this status.")
@click.option("-w", "--where", default=None, metavar="EXPR",
              help='Filter, e.g. \'params.lr < 0.01 and metrics.acc > 0.9 and "cnn" in tags\'.')
@click.option("-q", "--search", default=None, metavar="TEXT",
              help="Free text matched against experiment, name, comment, tags and id.")
@click.option("-g", "--group", default=None, metavar="NAME",
              help="Only runs of this group (init(group=...)); shows the GROUP column.")
@click.option("-c", "--columns", multiple=True, metavar="COLS",
              help="Extra columns, comma-separated: params.<key>, metrics.<name>[:min|max|mean], host, user ...")
@click.option("--sort", default="-started", show_default=True,
              help="Column to sort by; a leading '-' sorts descending.")
@click.option("-n", "--limit", type=click.IntRange(min=0), default=None, help="Show at most N runs.")
@_json_option
def ls_command(root: str | None, experiment: str | None, status: str | None, where: str | None,
               search: str | None, group: str | None, columns: tuple[str, ...], sort: str,
               limit: int | None, as_json: bool) -> None:
    """List runs, newest first.

    Status is derived: a run whose run.json says running but whose process is gone (or whose
    heartbeat is stale) shows as crashed. A `*` after the commit marks uncommitted changes.
    """
    book = read_book(root)
    cols = _split_list(columns)
    if group is not None:
        quoted = '"' + group.replace("\\", "\\\\").replace('"', '\\"') + '"'
        where = f"group == {quoted}" + (f" and ({where})" if where else "")
        if "group" not in cols:
            cols.append("group")
    book.index.refresh()
    if cols:
        _check_columns(book, cols)
    needs_stats = any(c.startswith("metrics.") and c.rpartition(":")[2] in ("min", "max", "mean")
                      for c in cols)
    if as_json:
        total, full = book.index.query(where=where, experiment=experiment, status=status, q=search,
                                       sort=sort, limit=limit, with_stats=needs_stats)
        _echo_json({"total": total, "runs": full})
        return
    # Only extra columns of params or metrics need those parts of each row.
    decode = any(c.startswith(("params.", "metrics.")) for c in cols)
    hits = book.index.select(where=where, experiment=experiment, status=status, q=search,
                             sort=sort, with_stats=needs_stats, parts=decode)
    total = len(hits)
    if limit is not None:
        hits = hits[:limit]
    rows = [h.row() if decode else h.light() for h in hits]
    headers = ["ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION", "COMMIT", "TAGS"] + [
        c.upper() for c in cols] + ["COMMENT"]
    table = []
    for r in rows:
        table.append([r["id"], _clip(r["experiment"], 30), _clip(r["name"], 30), r["status"],
                      _fmt_time(r["started"]), _fmt_duration(r["duration"]), _fmt_commit(r),
                      _clip(",".join(r["tags"]), 30)] + [_fmt(_column_value(r, c)) for c in cols]
                     + [_clip(r["comment"].replace("\n", " "), 50)])
    styles: list[Any] = [None] * len(headers)
    if _color_out():
        styles[3] = _status_style([r["status"] for r in rows])
    if rows:
        click.echo(_text_table(headers, table, styles))
    shown = len(rows)
    if not total:
        click.echo(f"no runs{' match' if (where or experiment or status or search) else ''} under {shown_root(book)}",
                   err=True)
    elif shown < total:
        click.echo(f"({shown} of {total} runs shown)", err=True)
    problems = book.index.problems()
    if problems:
        click.echo(f"note: {len(problems)} run folder(s) could not be read; "
                   "`labtrack reindex` lists them", err=True)


# -- show, diff ----------------------------------------------------------------------------

def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _distributed_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """`labtrack show`'s lines about a distributed job: mode, world size, job, each rank."""
    d = meta.get("distributed")
    if not isinstance(d, dict):
        return []
    out = [("distributed", f"{d.get('mode')}, world size {d.get('world_size')}, rank {d.get('rank')}"
                           f" ({d.get('launcher')}), job {d.get('job_id')}")]
    if meta.get("group"):
        out.append(("group", str(meta["group"])))
    for r in meta.get("ranks") or []:
        if isinstance(r, dict):
            where = f" on {r.get('host')} (pid {r.get('pid')})" if r.get("host") else ""
            out.append((f"rank {r.get('rank')}", f"{r.get('status')}{where}"))
    return out


@click.command("show")
@click.argument("run")
@read_root_option
@_json_option
def show_command(run: str, root: str | None, as_json: bool) -> None:
    """Show RUN: provenance, params, summary and files.

    RUN is a run id, a unique id prefix, or experiment/name.
    """
    from .._index import flatten_params

    from .._store.rundir import duration

    view = read_book(root)[run]
    meta = view.meta
    params = view.params
    summary = view.summary
    files = [{"path": f["path"], "size": f["size"]} for f in view.run.files()]
    seconds = duration(meta, view.run, time.time())
    if as_json:
        _echo_json({"run": meta, "duration": seconds, "params": params, "summary": summary,
                    "files": files})
        return
    name = meta.get("name") or ""
    head = f"run {meta.get('id')}  {meta.get('experiment')}{'/' + name if name else ''}  "
    click.echo(head + click.style(str(meta.get("status")), fg=_STATUS_COLORS.get(str(meta.get("status"))),
                                  bold=True))
    info: list[tuple[str, str]] = []
    info.append(("started", _fmt_time(meta.get("started")) + " UTC"))
    info.append(("ended", (_fmt_time(meta.get("ended")) + " UTC") if meta.get("ended") else "-"))
    info.append(("duration", _fmt_duration(seconds)))
    info.append(("host", _host_line(meta)))
    origin = meta.get("imported_from")
    if isinstance(origin, dict):
        info.append(("imported", _imported_line(origin)))
    info += _distributed_lines(meta)
    cmd = meta.get("command") if isinstance(meta.get("command"), dict) else {}
    if cmd:
        import shlex

        argv = cmd.get("argv") or []
        info.append(("command", "python " + shlex.join(str(a) for a in argv)))
        info.append(("cwd", str(cmd.get("cwd"))))
    git = meta.get("git") if isinstance(meta.get("git"), dict) else None
    if git:
        info.append(("git", f"{git.get('commit')} on {git.get('branch')}"
                            + (" (dirty: see `labtrack diff`)" if git.get("dirty") else "")))
        if git.get("message"):
            info.append(("message", str(git["message"]).splitlines()[0] if git["message"] else ""))
        if git.get("remote"):
            info.append(("remote", str(git["remote"])))
    else:
        info.append(("git", "not recorded"))
    info.append(("seed", _fmt(meta.get("seed"))))
    if meta.get("start_step"):
        info.append(("start step", _fmt(meta.get("start_step"))))
    if meta.get("parent"):
        info.append(("parent", str(meta["parent"])))
    if meta.get("tags"):
        info.append(("tags", ", ".join(meta["tags"])))
    if meta.get("comment"):
        info.append(("comment", str(meta["comment"])))
    if meta.get("group") and not isinstance(meta.get("distributed"), dict):  # else shown above
        info.append(("group", str(meta["group"])))
    if meta.get("job_type"):
        info.append(("job type", str(meta["job_type"])))
    err = meta.get("error")
    if isinstance(err, dict):
        info.append(("error", f"{err.get('type')}: {err.get('message')}"))
    ck = meta.get("checkpoints")
    if isinstance(ck, dict) and (ck.get("last") is not None or ck.get("best") is not None):
        best = f", best {ck.get('best')}" if ck.get("best") is not None else ""
        metric = f" ({ck.get('metric')} {ck.get('mode')})" if ck.get("metric") else ""
        info.append(("checkpoints", f"last {ck.get('last')}{best}{metric}"))
    info.append(("dir", str(view.dir)))
    w = max(len(k) for k, _ in info)
    for k, v in info:
        click.echo(f"{k.ljust(w)}  {v}")
    flat = flatten_params(params)
    click.echo("")
    click.echo(click.style("params", bold=True) + ("" if flat else "  (none)"))
    if flat:
        click.echo(_indent(_text_table(["KEY", "VALUE"], [[k, _fmt(v)] for k, v in flat.items()])))
    click.echo("")
    from .._system import describe, is_system_series

    machine = describe(summary)
    own = {n: s for n, s in summary.items() if not is_system_series(n)}
    click.echo(click.style("summary", bold=True) + ("" if own else "  (no scalars logged)"))
    if own:
        cols = ["last", "min", "max", "mean", "count", "step"]
        click.echo(_indent(_text_table(
            ["SERIES"] + [c.upper() for c in cols],
            [[n] + [_fmt(s.get("value", s.get(c)) if c == "last" else s.get(c)) for c in cols]
             for n, s in sorted(own.items()) if isinstance(s, dict)])))
    if machine:  # the system/ series (docs/system.md), summed up
        click.echo("")
        click.echo(click.style("system", bold=True))
        w = max(len(k) for k, _ in machine)
        for k, v in machine:
            click.echo(f"  {k.ljust(w)}  {v}")
    progress = _progress_table(meta.get("progress"))
    if progress:
        click.echo("")
        click.echo(click.style(f"progress ({len(meta['progress'])} snapshots)", bold=True))
        click.echo(_indent(progress))
    click.echo("")
    click.echo(click.style(f"files ({len(files)})", bold=True))
    shown = files if len(files) <= 50 else files[:50]
    click.echo(_indent(_text_table(["PATH", "SIZE"], [[f["path"], _human_size(f["size"])] for f in shown])))
    if len(files) > len(shown):
        click.echo(f"  ... {len(files) - len(shown)} more (--json lists all)")


def _host_line(meta: dict[str, Any]) -> str:
    """`host (pid N, user U)`, leaving out what was not recorded (an imported run has no pid)."""
    host, pid, user = meta.get("host"), meta.get("pid"), meta.get("user")
    extra = ", ".join(f"{k} {v}" for k, v in (("pid", pid), ("user", user)) if v is not None)
    return f"{host if host is not None else '-'}" + (f" ({extra})" if extra else "")


def _imported_line(origin: dict[str, Any]) -> str:
    """Where an imported run came from: tool and version, source, the source's run id."""
    tool = str(origin.get("tool") or "?") + (f" {origin['version']}" if origin.get("version") else "")
    line = f"from {tool}: {origin.get('source')}"
    if origin.get("source_id") not in (None, "", "."):
        line += f" (run {origin['source_id']})"
    if origin.get("complete") is False:
        line += "; INCOMPLETE: the import was cut off, run it again"
    return line


def _progress_table(progress: Any) -> str:
    """Lab's progress table: one row per run.save_progress snapshot, `global_step` first."""
    snaps = [p for p in progress if isinstance(p, dict)] if isinstance(progress, list) else []
    if not snaps:
        return ""
    names: list[str] = []
    for snap in snaps:
        for key in snap.get("values") or {}:
            if key not in names:
                names.append(key)
    rows = [[_fmt(p.get("step"))] + [_fmt((p.get("values") or {}).get(n)) for n in names]
            + [_fmt_time(p.get("time"))] for p in snaps]
    return _text_table(["global_step", *names, "time (UTC)"], rows)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@click.command("diff")
@click.argument("run")
@read_root_option
@click.option("--color/--no-color", default=None, help="Colour the patch (default: when a terminal).")
def diff_command(run: str, root: str | None, color: bool | None) -> None:
    """Print the uncommitted changes RUN was started with (`git diff HEAD`), coloured.

    RUN is a run id, a unique id prefix, or experiment/name.
    """
    from ..errors import LabtrackValueError

    view = read_book(root)[run]
    patch = view.diff
    if patch is None:
        raise LabtrackValueError(f"run {view.id} recorded no git diff: it ran outside a git "
                                 "repository or with capture_git=False")
    if not patch.strip():
        commit = (view.git or {}).get("commit")
        click.echo(f"run {view.id} had no uncommitted changes (commit {commit})", err=True)
        return
    use_color = sys.stdout.isatty() if color is None else color
    for line in patch.splitlines():
        fg = None
        if line.startswith(("+++", "---")) or line.startswith("diff --git"):
            fg = "white"
        elif line.startswith("+"):
            fg = "green"
        elif line.startswith("-"):
            fg = "red"
        elif line.startswith("@@"):
            fg = "cyan"
        click.echo(click.style(line, fg=fg, bold=True if fg == "white" else None) if fg and use_color else line,
                   color=use_color)


# -- compare, table ------------------------------------------------------------------------

@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@read_root_option
@click.option("--only-diff", is_flag=True, help="Show only params and metrics that differ.")
@_json_option
def compare_command(runs: tuple[str, ...], root: str | None, only_diff: bool, as_json: bool) -> None:
    """Compare RUNS side by side: params (differences marked with *) and last metric values.

    Each RUN is a run id, a unique id prefix, or experiment/name.
    """
    from ..errors import LabtrackValueError

    book = read_book(root)
    views = book.resolve(runs)
    if len(views) < 2:
        raise LabtrackValueError(f"compare needs at least two different runs, got {', '.join(runs)}")
    frame = book.compare(views)
    ids = [v.id for v in views]
    if as_json:
        _echo_json({"runs": ids, "rows": [
            {"key": key, "values": [frame.loc[key, i] for i in ids], "differs": bool(frame.loc[key, "differs"])}
            for key in frame.index]})
        return
    names = {v.id: (v._row or {}).get("name") or "" for v in views}
    headers = [""] + [f"{i}{' ' + names[i] if names[i] else ''}" for i in ids]
    rows = []
    marks = []
    for key in frame.index:
        differs = bool(frame.loc[key, "differs"])
        if only_diff and not differs:
            continue
        rows.append([("* " if differs else "  ") + str(key)] + [_fmt(_scalar(frame.loc[key, i])) for i in ids])
        marks.append(differs)
    style = (lambda n, cell: click.style(cell, fg="yellow") if marks[n] else cell)
    if rows:
        click.echo(_text_table(headers, rows, [style] * len(headers)))
    else:
        click.echo("no differences" if only_diff else "the runs have no params or metrics", err=True)


def _scalar(v: Any) -> Any:
    try:
        import pandas as pd

        if v is not None and not isinstance(v, (list, dict, str)) and pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _read_run_file(path: str) -> list[str]:
    from ..errors import LabtrackValueError

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise LabtrackValueError(f"cannot read the run list {path!r}: {e.strerror}") from None
    refs = []
    for line in text.splitlines():
        ref = line.split("#", 1)[0].strip()
        if ref:
            refs.append(ref)
    if not refs:
        raise LabtrackValueError(f"the run list {path!r} names no runs (one run per line, # starts a comment)")
    return refs


def _md_table(frame: Any) -> str:
    headers = [frame.index.name or "id"] + [str(c) for c in frame.columns]
    rows = [[str(idx)] + [_fmt(_scalar(v)) for v in rec] for idx, rec in zip(frame.index, frame.itertuples(index=False))]

    def esc(c: str) -> str:
        return c.replace("|", "\\|").replace("\n", " ")

    widths = [max(len(esc(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    out = ["| " + " | ".join(esc(h).ljust(w) for h, w in zip(headers, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        out.append("| " + " | ".join(esc(c).ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out)


@click.command("table")
@click.argument("runs", nargs=-1)
@read_root_option
@click.option("-e", "--experiment", default=None, help="Take the runs of this experiment.")
@click.option("-w", "--where", default=None, metavar="EXPR", help="Take the runs matching this filter.")
@click.option("-s", "--status", default=None,
              type=click.Choice(["running", "finished", "failed", "killed", "interrupted", "crashed"]),
              help="Take the runs with this status.")
@click.option("--from", "from_file", default=None, metavar="FILE",
              help="Take the runs listed in FILE, one per line ('#' starts a comment; '-' reads stdin).")
@click.option("-p", "--params", multiple=True, metavar="KEYS",
              help="Param columns, comma-separated (default: the params that differ between the runs).")
@click.option("-m", "--metrics", multiple=True, metavar="NAMES",
              help="Metric columns, comma-separated, each optionally :min, :max, :mean or :last "
                   "(default: every metric's last value).")
@click.option("-f", "--format", "fmt", type=click.Choice(["md", "csv", "html"]), default="md",
              show_default=True, help="Output format.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE instead of stdout.")
@_json_option
def table_command(runs: tuple[str, ...], root: str | None, experiment: str | None, where: str | None,
                  status: str | None, from_file: str | None, params: tuple[str, ...],
                  metrics: tuple[str, ...], fmt: str, output: str | None, as_json: bool) -> None:
    """Tabulate hyperparameters against metrics for a set of runs.

    The runs are RUNS (ids, unique id prefixes or experiment/name), or those listed in
    --from FILE, or all runs matching --experiment/--where/--status (all runs when nothing
    is given).
    """
    from ..errors import LabtrackValueError

    book = read_book(root)
    refs = list(runs) + (_read_run_file(from_file) if from_file else [])
    if refs and (experiment or where or status):
        raise LabtrackValueError("give runs (RUNS or --from) or filters (--experiment/--where/--status), not both")
    frame = book.table(refs if refs else None, params=_split_list(params) if params else None,
                       metrics=_split_list(metrics) if metrics else None,
                       experiment=experiment, where=where, status=status)
    if as_json:
        text = _json_records(frame)
    elif fmt == "csv":
        text = frame.to_csv()
    elif fmt == "html":
        text = frame.to_html(na_rep="")
    else:
        text = _md_table(frame)
    if not text.endswith("\n"):
        text += "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(frame)} runs to {output}", err=True)
    else:
        click.echo(text, nl=False)


def _json_records(frame: Any) -> str:
    from .._store.files import dumps

    records = []
    for idx, rec in zip(frame.index, frame.to_dict(orient="records")):
        records.append({"id": idx, **{k: _scalar(v) for k, v in rec.items()}})
    return dumps(records)


# -- changing runs -------------------------------------------------------------------------

@click.command("rm")
@click.argument("runs", nargs=-1, required=True)
@_root_option
@_json_option
def rm_command(runs: tuple[str, ...], root: str | None, as_json: bool) -> None:
    """Move RUNS to the trash (<root>/.trash); `labtrack gc` deletes them for good.

    Each RUN is a run id, a unique id prefix, or experiment/name. Running runs are refused.
    """
    book = local_book(root, "rm")
    views = book.resolve(runs)  # every reference first, so a typo moves nothing
    moved = []
    for v in views:
        target = book.remove(v)
        moved.append({"id": v.id, "trash": str(target)})
        if not as_json:
            click.echo(f"moved {v.id} to {target}")
    if as_json:
        _echo_json({"removed": moved})
    else:
        click.echo("`labtrack gc` deletes the trash for good", err=True)


@click.command("gc")
@_root_option
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@_json_option
def gc_command(root: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete the runs in the trash (<root>/.trash) for good."""
    book = local_book(root, "gc")
    count, size = book.gc(dry_run=dry_run)
    if as_json:
        _echo_json({"runs": count, "bytes": size, "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {count} run(s) from the trash, {_human_size(size)}")


@click.command("mv")
@click.argument("run")
@click.argument("experiment")
@_root_option
def mv_command(run: str, experiment: str, root: str | None) -> None:
    """Move RUN to EXPERIMENT (its folder and its recorded experiment name).

    RUN is a run id, a unique id prefix, or experiment/name.
    """
    book = local_book(root, "mv")
    view = book[run]
    new = book.move(view, experiment)
    click.echo(f"moved {view.id} to experiment {experiment!r} ({new.dir})")


@click.command("tag")
@click.argument("run")
@click.argument("tags", nargs=-1, required=True)
@_root_option
@click.option("--remove", is_flag=True, help="Remove the TAGS instead of adding them.")
@_json_option
def tag_command(run: str, tags: tuple[str, ...], root: str | None, remove: bool, as_json: bool) -> None:
    """Add TAGS to RUN (or remove them with --remove).

    RUN is a run id, a unique id prefix, or experiment/name.
    """
    book = local_book(root, "tag")
    view = book[run]
    now = book.tag(view, *tags, remove=remove)
    if as_json:
        _echo_json({"id": view.id, "tags": now})
    else:
        click.echo(f"{view.id} tags: {', '.join(now) if now else '(none)'}")


@click.command("comment")
@click.argument("run")
@click.argument("text")
@_root_option
def comment_command(run: str, text: str, root: str | None) -> None:
    """Set RUN's comment to TEXT ('' clears it).

    RUN is a run id, a unique id prefix, or experiment/name.
    """
    book = local_book(root, "comment")
    view = book[run]
    book.set_comment(view, text)
    click.echo(f"{view.id} comment: {text if text else '(cleared)'}")


@click.command("reindex")
@read_root_option
@_json_option
def reindex_command(root: str | None, as_json: bool) -> None:
    """Rebuild the index (<root>/.labtrack/index.sqlite) from every run directory.

    The index is only a cache; labtrack refreshes it by itself. Use this after editing runs
    by hand, or to list run folders that cannot be read.
    """
    book = read_book(root)
    t0 = time.perf_counter()
    result = book.reindex()
    seconds = time.perf_counter() - t0
    problems = book.index.problems()
    if as_json:
        _echo_json({"runs": result["total"], "seconds": round(seconds, 3),
                    "unreadable": [{"dir": r, "error": m} for r, m in problems]})
        return
    click.echo(f"indexed {result['total']} runs in {seconds:.2f} s ({book.index.path})")
    for rel, message in problems:
        click.echo(f"unreadable: {rel}: {message}", err=True)


@click.command("annotate")
@click.argument("run")
@read_root_option
@click.option("--file", "file", default=None, metavar="PATH",
              help="The Python file to write into (default: the script the run recorded).")
@click.option("--dry-run", is_flag=True, help="Print the block; change no file.")
def annotate_command(run: str, root: str | None, file: str | None, dry_run: bool) -> None:
    """Write RUN's summary table into its Python script as a docstring block.

    The block starts with a line '\"\"\"labtrack results' and ends with 'labtrack results
    end\"\"\"'; annotating again replaces it. RUN is a run id, a unique id prefix, or
    experiment/name.
    """
    from .._annotate import annotate_run

    view = read_book(root)[run]
    path, block = annotate_run(view.run, Path(file) if file else None, dry_run=dry_run)
    if dry_run:
        click.echo(block, nl=False)
    else:
        click.echo(f"wrote the results of {view.id} into {path}")


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
    for cmd in (ls_command, show_command, diff_command, compare_command, table_command,
                rm_command, gc_command, mv_command, tag_command, comment_command,
                reindex_command, annotate_command):
        group.add_command(cmd)
