"""HTML tables for Jupyter (`_repr_html_` of Book, RunList and RunView). Pure: plain data in,
escaped HTML out.

Every text that came from a run (names, tags, params, series names) is escaped, so a run named
`<script>` shows as that text. Tables are capped (rows and columns) with an "... N more" note:
a notebook cell showing a book of 10,000 runs stays small and fast.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

#: Most runs a run list shows; most param and metric columns; most rows of a run's sections.
MAX_RUNS = 50
MAX_PARAM_COLUMNS = 6
MAX_METRIC_COLUMNS = 6
MAX_ROWS = 40
_MAX_VALUE_CHARS = 80

_STATUS_COLOURS = {"running": "#1f77b4", "finished": "#2ca02c", "failed": "#d62728",
                   "crashed": "#d62728", "killed": "#ff7f0e", "interrupted": "#ff7f0e"}
_TABLE = '<table class="labtrack-table">'
# Once per output, scoped by class: front ends that drop <style> (GitHub) show a plain table.
_STYLE = ("<style>.labtrack-table{border-collapse:collapse;font-size:12px}"
          ".labtrack-table th,.labtrack-table td{padding:2px 8px;text-align:left;"
          "vertical-align:top;white-space:nowrap}</style>")


@dataclass(frozen=True)
class Raw:
    """HTML that is already safe (built here from escaped parts)."""

    html: str


Cell = Union[str, Raw]


def esc(value: object) -> str:
    """`value` as text, escaped for HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def fmt_value(value: Any) -> str:
    """A param or metric value, short: floats to 6 significant digits, long values cut."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[:_MAX_VALUE_CHARS - 1] + "…"
    return text


def fmt_time(iso: object) -> str:
    """`2026-11-21T14:15:03.120455+00:00` -> `2026-11-21 14:15:03` (UTC, as recorded)."""
    if not isinstance(iso, str) or not iso:
        return ""
    return iso[:19].replace("T", " ")


def fmt_duration(seconds: object) -> str:
    """Seconds as `0.08 s`, `42.5 s`, `4m 05s`, `2h 03m`, `3d 04h`."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds != seconds:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.2g} s" if s < 1 else f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def status_cell(status: object) -> Raw:
    """The status with a coloured dot (the colour is a hint; the word is the information)."""
    word = str(status or "")
    colour = _STATUS_COLOURS.get(word, "#7f7f7f")
    return Raw(f'<span style="color:{colour}">&#9679;</span> {esc(word)}')


def more(n: int, what: str) -> str:
    """`... 3 more runs` (empty for 0)."""
    return f"... {n} more {what}" if n > 0 else ""


def table(headers: Sequence[Cell], rows: Iterable[Sequence[Cell]], *, note: str = "") -> str:
    """An HTML table; every str cell is escaped, :class:`Raw` cells are kept as they are.

    Args:
        headers: the column titles ([] for a table without a header row).
        rows: the cells of each row.
        note: a line under the table ("... 12 more runs"), escaped.

    Returns:
        The `<table>` (and the note's `<div>`).
    """
    def cell(tag: str, c: Cell) -> str:
        inner = c.html if isinstance(c, Raw) else esc(c)
        return f"<{tag}>{inner}</{tag}>"

    parts = [_TABLE]
    if headers:
        parts.append("<thead><tr>" + "".join(cell("th", h) for h in headers) + "</tr></thead>")
    parts.append("<tbody>")
    for r in rows:
        parts.append("<tr>" + "".join(cell("td", c) for c in r) + "</tr>")
    parts.append("</tbody></table>")
    if note:
        parts.append(f'<div style="font-size:11px;opacity:0.7">{esc(note)}</div>')
    return "".join(parts)


def _heading(text: str) -> str:
    return f'<div style="font-weight:bold;margin:6px 0 2px">{esc(text)}</div>'


def _block(*parts: str) -> str:
    return '<div class="labtrack">' + _STYLE + "".join(parts) + "</div>"


def _chosen(names: Iterable[str], cap: int, first: Sequence[str] = ()) -> tuple[list[str], int]:
    """At most `cap` names, those in `first` first; and how many were left out."""
    every = list(dict.fromkeys([*[n for n in first if n in set(names)], *names]))
    return every[:cap], max(0, len(every) - cap)


def _varying(records: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """The keys of `record[key]` whose values differ between the records (sorted)."""
    names = sorted({k for r in records for k in (r.get(key) or {})})
    if len(records) < 2:
        return names
    return [k for k in names if len({fmt_value((r.get(key) or {}).get(k)) for r in records}) > 1]


def run_list(records: Sequence[Mapping[str, Any]], total: int | None = None) -> str:
    """The table of a run list: one row per run.

    Args:
        records: per run `{"id", "experiment", "name", "status", "tags", "started",
            "duration", "params" (flat), "metrics" (last values)}`, at most :data:`MAX_RUNS`
            of them shown.
        total: how many runs the list (or the query) holds, when more than `records`.

    Returns:
        The HTML: id, experiment, name, status, tags, start, duration, then the params that
        differ between the runs (the others after them) and the metrics, each capped.
    """
    shown = list(records[:MAX_RUNS])
    total = max(len(records), total or 0)
    params, params_left = _chosen(sorted({k for r in shown for k in (r.get("params") or {})}),
                                  MAX_PARAM_COLUMNS, _varying(shown, "params"))
    metric_names = sorted({k for r in shown for k in (r.get("metrics") or {})},
                          key=lambda m: (m.startswith("timings/"), m))  # the sections' timings last
    metrics, metrics_left = _chosen(metric_names, MAX_METRIC_COLUMNS)
    headers: list[Cell] = ["id", "experiment", "name", "status", "tags", "start", "duration",
                           *params, *metrics]
    rows: list[list[Cell]] = []
    for r in shown:
        p = r.get("params") or {}
        m = r.get("metrics") or {}
        rows.append([str(r.get("id") or ""), str(r.get("experiment") or ""), str(r.get("name") or ""),
                     status_cell(r.get("status")), ", ".join(str(t) for t in r.get("tags") or ()),
                     fmt_time(r.get("started")), fmt_duration(r.get("duration")),
                     *(fmt_value(p.get(k)) for k in params), *(fmt_value(m.get(k)) for k in metrics)])
    notes = [more(total - len(shown), "runs"), more(params_left, "params"),
             more(metrics_left, "metrics")]
    note = "; ".join(n for n in notes if n)
    if not shown:
        return _block('<div style="opacity:0.7">no runs</div>')
    return _block(table(headers, rows, note=note))


def _pairs(title: str, items: Sequence[tuple[str, Cell]], what: str) -> str:
    if not items:
        return ""
    shown = items[:MAX_ROWS]
    return _heading(title) + table([], [[Raw(f"<b>{esc(k)}</b>"), v] for k, v in shown],
                                   note=more(len(items) - len(shown), what))


def run_view(meta: Mapping[str, Any], params: Mapping[str, Any], summary: Mapping[str, Any],
             series: Sequence[str], duration: float | None = None) -> str:
    """The card of one run: its metadata, params, last metrics and series names.

    Args:
        meta: run.json (with the derived status).
        params: the flat params (`opt.lr`).
        summary: summary.json (per series: last, min, max, step ...).
        series: the names of its scalar series.
        duration: seconds it ran (or runs so far).

    Returns:
        The HTML.
    """
    git_value, command_value = meta.get("git"), meta.get("command")
    git: Mapping[str, Any] = git_value if isinstance(git_value, dict) else {}
    command: Mapping[str, Any] = command_value if isinstance(command_value, dict) else {}
    commit = str(git.get("commit") or "")[:10] + (" (dirty)" if git.get("dirty") else "")
    if "notebook" in command:  # started in a Jupyter kernel (its cells: source/notebook.py)
        source = f"notebook {command['notebook']}" if command["notebook"] else "a notebook (path not known)"
    else:
        source = str(command.get("script") or command.get("module") or "")
    info: list[tuple[str, Cell]] = [
        ("id", str(meta.get("id") or "")), ("experiment", str(meta.get("experiment") or "")),
        ("name", str(meta.get("name") or "")), ("status", status_cell(meta.get("status"))),
        ("tags", ", ".join(str(t) for t in meta.get("tags") or ())),
        ("comment", fmt_value(meta.get("comment"))),
        ("start", fmt_time(meta.get("started"))), ("duration", fmt_duration(duration)),
        ("commit", commit.strip()), ("host", str(meta.get("host") or "")),
        ("source", source),
    ]
    info = [(k, v) for k, v in info if v != ""]
    metrics: list[list[Cell]] = []
    for name in sorted(summary):
        s = summary[name]
        if isinstance(s, Mapping):
            metrics.append([name, fmt_value(s.get("last")), fmt_value(s.get("min")),
                            fmt_value(s.get("max")), fmt_value(s.get("step"))])
    shown = metrics[:MAX_ROWS]
    parts = [_pairs("run", info, "fields"),
             _pairs("params", [(k, fmt_value(v)) for k, v in sorted(params.items())], "params")]
    if shown:
        parts.append(_heading("metrics") + table(["name", "last", "min", "max", "step"], shown,
                                                 note=more(len(metrics) - len(shown), "metrics")))
    if series:
        listed = ", ".join(series[:MAX_ROWS])
        parts.append(_heading(f"series ({len(series)})")
                     + f'<div style="font-size:12px">{esc(listed)}</div>'
                     + (f'<div style="font-size:11px;opacity:0.7">{esc(more(len(series) - MAX_ROWS, "series"))}</div>'
                        if len(series) > MAX_ROWS else ""))
    return _block(*parts)


def book(root: str, n_runs: int, experiments: Sequence[str], newest: str) -> str:
    """The card of a book: its root, how many runs and experiments, and its newest runs.

    Args:
        root: the root folder.
        n_runs: how many runs it holds.
        experiments: the experiment names.
        newest: the run list HTML of its newest runs (:func:`run_list`).

    Returns:
        The HTML.
    """
    shown = ", ".join(experiments[:MAX_ROWS])
    rest = more(len(experiments) - MAX_ROWS, "experiments")
    head = (f'<div><b>labtrack book</b> {esc(root)}: {n_runs} run{"" if n_runs == 1 else "s"} in '
            f'{len(experiments)} experiment{"" if len(experiments) == 1 else "s"}</div>')
    exps = f'<div style="font-size:12px">{esc(shown)}{esc("; " + rest) if rest else ""}</div>' if shown else ""
    return _block(head, exps, _heading("newest runs") if n_runs else "", newest if n_runs else "")
