"""ReadOnlyBook: what every book does over a root of runs (list, query, read, compare).

The local :class:`~labtrack._book.Book` adds the calls that change runs; the remote book
(`labtrack._remote.book.RemoteBook`) is a read-only book over a mirror of a server's runs.
pandas and pyarrow are imported only by the calls that return frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar, Union, overload

from .._store import scalars
from .._store.rundir import find_runs
from ..errors import LabtrackValueError, RunNotFoundError
from .view import RunView

if TYPE_CHECKING:
    import pandas as pd

    # Imported where first used: `book[run id]` never needs the index (nor sqlite3).
    from .._index import Index, RefreshResult

__all__ = ["ReadOnlyBook", "RunList", "RunRef"]

RunRef = Union[str, RunView]
_B = TypeVar("_B", bound="ReadOnlyBook")
_FULL_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-z]{6}$")
_ROW_COLUMNS = ("experiment", "name", "status", "started", "ended", "duration", "commit",
                "dirty", "host", "tags", "comment")


class RunList(list[RunView]):
    """The runs a query found (a list of :class:`RunView`), newest first by default.

    Example:
        >>> runs = book.runs(experiment="mnist")
        >>> runs.to_pandas()[["name", "params.lr", "metrics.acc"]]
    """

    def __init__(self, views: Iterable[RunView] = (), total: int | None = None,
                 index: Index | None = None) -> None:
        super().__init__(views)
        self.total = len(self) if total is None else total
        self._index = index

    @property
    def ids(self) -> list[str]:
        """The run ids, in order."""
        return [v.id for v in self]

    def to_pandas(self) -> pd.DataFrame:
        """One row per run, indexed by id: experiment, name, status, started, ended,
        duration (s), commit, dirty, host, tags, comment, then `params.<key>` and
        `metrics.<name>` (last value) columns."""
        import pandas as pd

        records = []
        for v, row in self._rows(self):
            rec: dict[str, Any] = {"id": v.id}
            for c in _ROW_COLUMNS:
                rec[c] = row.get(c)
            for k, val in (row.get("params") or {}).items():
                rec["params." + k] = val if not isinstance(val, (list, dict)) else repr(val)
            for k, val in (row.get("metrics") or {}).items():
                rec["metrics." + k] = val
            records.append(rec)
        frame = pd.DataFrame.from_records(records, columns=_frame_columns(records))
        return frame.set_index("id")


    def _rows(self, views: list[RunView]) -> list[tuple[RunView, dict[str, Any]]]:
        """Each view with its index row (one query for every row rather than one per run)."""
        batch = self._index.rows([f"{v.dir.parent.name}/{v.dir.name}" for v in views],
                                 with_stats=False) if self._index is not None else {}
        return [(v, batch.get(f"{v.dir.parent.name}/{v.dir.name}") or v._row or {}) for v in views]

    def _repr_html_(self) -> str:
        """A compact table in Jupyter (no pandas): the first runs, main params, last metrics."""
        from . import html

        records = [{"id": v.id, **row} for v, row in self._rows(self[:html.MAX_RUNS])]
        return html.run_list(records, total=max(len(self), self.total))


def _frame_columns(records: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {"id": None, **{c: None for c in _ROW_COLUMNS}}
    params: set[str] = set()
    metrics: set[str] = set()
    for r in records:
        for k in r:
            if k.startswith("params."):
                params.add(k)
            elif k.startswith("metrics."):
                metrics.add(k)
    return list(cols) + sorted(params) + sorted(metrics)


class ReadOnlyBook:
    """All runs under one root, for reading and analysis (nothing here changes a run).

    Args:
        root: the folder that holds the experiments (it must exist).

    Example:
        >>> book = labtrack.open("labtrack")
        >>> for run in book.runs(where="params.lr < 0.01 and metrics.acc > 0.9"):
        ...     print(run.id, run.summary["acc"]["max"])
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Absolute, so run directories stay valid if the process changes directory.
        self.root = Path(root).absolute()
        if not self.root.is_dir():
            raise LabtrackValueError(
                f"no labtrack root at {str(self.root)!r}: the folder does not exist; pass the "
                "folder your runs are in (set by init(root=...) or LABTRACK_ROOT)")
        self._index: Index | None = None

    @property
    def index(self) -> Index:
        """The root's :class:`labtrack._index.Index` (opened on first use)."""
        if self._index is None:
            from .._index import Index

            self._index = Index(self.root)
        return self._index

    def close(self) -> None:
        """Close the index's database connections."""
        if self._index is not None:
            self._index.close()

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.root)!r}>"

    def _repr_html_(self) -> str:
        """Its root, how many runs and experiments, and the newest runs, in Jupyter."""
        from . import html

        newest = self.runs(limit=10)
        return html.book(str(self.root), newest.total, self.experiments(), newest._repr_html_())

    # -- listing

    def refresh(self) -> RefreshResult:
        """Bring the index up to date with the files (done by every listing call)."""
        return self.index.refresh()

    def runs(self, experiment: str | None = None, status: str | None = None,
             where: str | None = None, q: str | None = None, sort: str | None = "-started",
             limit: int | None = None) -> RunList:
        """The runs that match, newest first.

        Args:
            experiment: only this experiment's runs.
            status: running, finished, failed, killed, interrupted or crashed.
            where: a filter such as `params.lr < 0.01 and metrics.acc:max > 0.9 and "cnn" in tags`.
            q: free text over experiment, name, comment, tags and id.
            sort: a column (`started`, `params.lr`, `metrics.acc:min` ...), `-` for descending.
            limit: at most this many runs.

        Returns:
            A :class:`RunList` of :class:`RunView`.

        Raises:
            QueryError: the where expression, status or sort is not valid.
        """
        self.index.refresh()
        hits = self.index.select(where=where, experiment=experiment, status=status, q=q, sort=sort,
                                 parts=False)
        shown = hits if limit is None else hits[:limit]
        return RunList((RunView(h.dir, hit=h, root=self.root) for h in shown), len(hits), self.index)

    def __iter__(self) -> Iterator[RunView]:
        return iter(self.runs())

    def __len__(self) -> int:
        self.index.refresh()
        return len(self.index.select(sort=None))

    def experiments(self) -> list[str]:
        """The experiment names, sorted."""
        self.index.refresh()
        return self.index.columns()["experiments"]

    def columns(self) -> dict[str, list[str]]:
        """`{"params": [...], "metrics": [...], "experiments": [...]}` over all runs."""
        self.index.refresh()
        return self.index.columns()

    # -- one run

    @overload
    def __getitem__(self, ref: RunRef) -> RunView: ...
    @overload
    def __getitem__(self, ref: slice) -> RunList: ...
    def __getitem__(self, ref: RunRef | slice) -> RunView | RunList:
        """A run by full id, unique id prefix, or `experiment/name`; or, for a slice, the runs
        by start time (Lab Workbook's `book[:]`): `book[:]` is every run, `book[a:b]` the runs
        started at or after `a` and before `b`, oldest first. `a` and `b` are datetimes or ISO
        8601 strings ("2026-11-21", "2026-11-21T14:15"); without a UTC offset they are UTC,
        as run ids are.

        Raises:
            RunNotFoundError: nothing matches, or several runs do (the message lists them).
            LabtrackValueError: a slice with a step, or a bound that is not a time.
        """
        if isinstance(ref, slice):
            return self._by_start(ref)
        if isinstance(ref, RunView):
            return ref
        if not isinstance(ref, str):
            raise RunNotFoundError(f"a run reference must be an id, id prefix or experiment/name "
                                   f"(a str), got {type(ref).__name__} {ref!r}")
        ref = ref.strip()
        if _FULL_ID.match(ref):
            # A full id needs no index: look for its folder directly (inside the root only).
            direct = find_runs(self.root, ref)
            if len(direct) == 1:
                return RunView(direct[0])
        self.index.refresh()
        found = self.index.resolve(ref)
        if len(found) == 1:
            return RunView(found[0]["dir"], found[0], root=self.root)
        if not found:
            for rel, message in self.index.problems():
                if rel.rsplit("/", 1)[-1].startswith(ref) or rel.startswith(ref):
                    raise RunNotFoundError(f"run {rel} exists but cannot be read: {message}")
            _, recent = self.index.query(limit=5)
            hint = ("; recent runs: " + ", ".join(_label(r) for r in recent)) if recent else (
                f"; {self.root} holds no runs")
            raise RunNotFoundError(
                f"no run matches {ref!r} under {self.root}: give a full id, a unique id prefix "
                f"or experiment/name{hint}")
        raise RunNotFoundError(
            f"{ref!r} matches {len(found)} runs; give more of the id: "
            + ", ".join(_label(r) for r in found[:10]) + (" ..." if len(found) > 10 else ""))

    def _by_start(self, span: slice) -> RunList:
        if span.step is not None:
            raise LabtrackValueError(f"book[a:b] takes start times, without a step; got step {span.step!r}")
        lo, hi = _utc(span.start, "start"), _utc(span.stop, "stop")
        views = [v for v in self.runs(sort="started")
                 if _in_span(_utc(v.started, "started") if v.started else None, lo, hi)]
        return RunList(views, len(views), self.index)

    def get(self, ref: RunRef, default: Any = None) -> Any:
        """Like `book[ref]`, but `default` when nothing matches or the reference is ambiguous."""
        try:
            return self[ref]
        except RunNotFoundError:
            return default

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, (str, RunView)) and self.get(ref) is not None

    def resolve(self, refs: Iterable[RunRef]) -> list[RunView]:
        """`book[ref]` for each reference, keeping order and dropping repeats."""
        if isinstance(refs, (str, RunView)):
            refs = [refs]  # one reference, not its characters
        seen: dict[Path, RunView] = {}
        for ref in refs:
            v = self[ref]
            seen.setdefault(v.dir, v)
        return list(seen.values())

    # -- many runs

    def _rows_for(self, runs: Iterable[RunRef]) -> list[tuple[RunView, dict[str, Any]]]:
        views = self.resolve(runs)
        self.index.refresh()
        rels = [f"{v.dir.parent.name}/{v.dir.name}" for v in views]
        rows = self.index.rows(rels)
        out = []
        for v, rel in zip(views, rels):
            row = rows.get(rel)
            if row is None:
                raise RunNotFoundError(f"run {v.id} at {v.dir} could not be read: "
                                       + "; ".join(m for r, m in self.index.problems() if r == rel))
            out.append((v, row))
        return out

    def meld(self, runs: Iterable[RunRef] | Mapping[RunRef, str], name: str,
             column: str = "value") -> pd.DataFrame:
        """One series from many runs side by side: one column per run, indexed by step.

        Args:
            runs: run references (columns named by run name, or by id where names repeat),
                or `{ref: label}`.
            name: the series, e.g. "val/acc".
            column: "value" or "time".

        Returns:
            A DataFrame outer-joined on step (NaN where a run has no point; a step logged
            twice in one run keeps its last value).

        Raises:
            LabtrackValueError: no run has the series, or `column` is not value/time.
            RunNotFoundError: a reference matches no run.

        Example:
            >>> book.meld({"20261121-1415": "lr=0.1", "20261121-1502": "lr=0.01"}, "val/acc").plot()
        """
        if column not in ("value", "time"):
            raise LabtrackValueError(f"column must be 'value' or 'time', got {column!r}")
        if isinstance(runs, Mapping):
            labelled = [(self[r], str(label)) for r, label in runs.items()]
        else:
            views = self.resolve(runs)
            names = [v.name for v in views]
            # Lab Workbook's meld: columns named after the runs; where a name repeats, the id.
            labelled = [(v, n if n and names.count(n) == 1 else v.id) for v, n in zip(views, names)]
        labels = [lab for _, lab in labelled]
        if len(set(labels)) != len(labels):
            raise LabtrackValueError(f"meld labels must be unique, got {labels}")
        frames = {}
        missing = []
        for view, label in labelled:
            try:
                frames[label] = view.scalars(name)
            except LabtrackValueError:
                missing.append(view.id)
                frames[label] = scalars.empty_frame()
        if missing and len(missing) == len(labelled):
            raise LabtrackValueError(f"none of the runs has a series {name!r}: {', '.join(missing)}")
        return scalars.join_frames(frames, column)

    def table(self, runs: Iterable[RunRef] | None = None, params: Iterable[str] | None = None,
              metrics: Iterable[str] | None = None, *, experiment: str | None = None,
              where: str | None = None, status: str | None = None) -> pd.DataFrame:
        """Hyperparameters against metrics, one row per run.

        Args:
            runs: run references; None takes every run matching experiment/where/status.
            params: param keys (flattened, `opt.lr`) as columns; None takes the params whose
                values differ between the runs (all of them for a single run).
            metrics: metric names, each optionally `:min`, `:max`, `:mean` or `:last`
                (`train/loss:min`); None takes every metric's last value.
            experiment, where, status: filters when `runs` is None.

        Returns:
            A DataFrame indexed by run id: experiment, name, status, then one column per
            param and per metric, named as asked (prefixed `params.`/`metrics.` when a
            param and a metric share a name).

        Raises:
            LabtrackValueError: a param or metric no selected run has (a typo).

        Example:
            >>> book.table(experiment="mnist", params=["lr", "batch"], metrics=["acc", "train/loss:min"])
        """
        import pandas as pd

        if runs is None:
            self.index.refresh()
            rels = [h.relpath for h in self.index.select(
                where=where, experiment=experiment, status=status, parts=False)]
        else:
            rels = self._relpaths(runs)
            self.index.refresh()
        param_keys = list(params) if params is not None else None
        metric_specs = list(metrics) if metrics is not None else None
        # The aggregates to fetch; the specs are checked (and may be refused) further down.
        aggs = {s.rpartition(":")[2] for s in metric_specs or () if isinstance(s, str)}
        got = self.index.table_rows(rels, aggs)
        rows = []
        for rel in rels:
            row = got.get(rel)
            if row is None:
                raise RunNotFoundError(f"run {rel} under {self.root} could not be read: "
                                       + "; ".join(m for r, m in self.index.problems() if r == rel))
            rows.append(row)
        if param_keys is None:
            param_keys = _varying_params(rows)
        if metric_specs is None:
            metric_specs = sorted({m for r in rows for m in r["metrics"]})
        known_params: set[str] = set()
        known_metrics: set[str] = set()
        for r in rows:
            known_params.update(r["params"])
            known_metrics.update(r["metrics"])
        for k in param_keys:
            if rows and k not in known_params:
                raise LabtrackValueError(f"no selected run has a param {k!r}; they have: "
                                         f"{', '.join(sorted(known_params)) or 'none'}")
        parsed_specs = []
        for spec in metric_specs:
            name, agg = _split_metric(spec)
            if rows and name not in known_metrics:
                raise LabtrackValueError(f"no selected run has a metric {name!r}; they have: "
                                         f"{', '.join(sorted(known_metrics)) or 'none'}")
            parsed_specs.append((spec, name, agg))
        more = {agg for _, _, agg in parsed_specs if agg != "last"} - aggs
        if more and rows:  # metric names that end in ":min" and the like, listed by default
            got = self.index.table_rows(rels, aggs | more)
            rows = [got[rel] for rel in rels if rel in got]
        specs = [s for s, _, _ in parsed_specs]
        clash = set(param_keys) & set(specs)
        # Column by column: one list per column is several times faster for pandas than a
        # dict per row.
        data: dict[str, list[Any]] = {c: [r[c] for r in rows] for c in ("experiment", "name", "status")}
        for k in param_keys:
            values = [r["params"].get(k) for r in rows]
            data[("params." + k) if k in clash else k] = [
                repr(v) if isinstance(v, (list, dict)) else v for v in values]
        for spec, name, agg in parsed_specs:
            part = "metrics" if agg == "last" else agg
            data[("metrics." + spec) if spec in clash else spec] = [r[part].get(name) for r in rows]
        index = pd.Index([r["id"] for r in rows], name="id")
        if not rows or len(data) < 3 + len(param_keys) + len(parsed_specs):
            # No rows (object columns), or two columns with one name (a param asked twice).
            return _table_frame(rows, param_keys, parsed_specs, clash)
        return pd.DataFrame(data, index=index, columns=list(data))

    def _relpaths(self, runs: Iterable[RunRef]) -> list[str]:
        """`<experiment folder>/<id>` of each run, in order, without repeats; a view this
        book listed knows its own, anything else is resolved as `book[ref]`."""
        if isinstance(runs, (str, RunView)):
            runs = [runs]  # one reference, not its characters
        rels: dict[str, None] = {}
        for ref in runs:
            hit = getattr(ref, "_hit", None) if isinstance(ref, RunView) else None
            if hit is not None and hit._index is self._index:
                rels[hit.relpath] = None
                continue
            v = self[ref]
            rels[f"{v.dir.parent.name}/{v.dir.name}"] = None
        return list(rels)

    def compare(self, runs: Iterable[RunRef]) -> pd.DataFrame:
        """Params and metrics (last values) of several runs side by side.

        Returns:
            A DataFrame with one column per run id and one row per `params.<key>` and
            `metrics.<name>`, plus a boolean column `differs`.
        """
        import pandas as pd

        pairs = self._rows_for(runs)
        keys = sorted({k for _, r in pairs for k in r["params"]})
        metrics = sorted({k for _, r in pairs for k in r["metrics"]})
        data: dict[str, list[Any]] = {}
        for v, row in pairs:
            data[v.id] = [row["params"].get(k) for k in keys] + [row["metrics"].get(m) for m in metrics]
        index = [f"params.{k}" for k in keys] + [f"metrics.{m}" for m in metrics]
        frame = pd.DataFrame(data, index=pd.Index(index, dtype="object"), dtype="object")
        frame["differs"] = [len({_hashable(x) for x in vals}) > 1 for vals in
                            (list(frame.loc[i, [v.id for v, _ in pairs]]) for i in index)]
        return frame

    def reindex(self) -> RefreshResult:
        """Rebuild the index from every run directory."""
        return self.index.rebuild()


def _label(row: dict[str, Any]) -> str:
    name = row.get("name") or ""
    return f"{row['id']} ({row.get('experiment')}{'/' + name if name else ''})"


def _hashable(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, (list, dict)):
        return repr(v)
    return v


def _split_metric(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec:
        raise LabtrackValueError(f"a metric column is a name such as 'acc' or 'train/loss:min', got {spec!r}")
    name, sep, agg = spec.rpartition(":")
    if sep and agg in ("min", "max", "mean", "last"):
        return name, agg
    return spec, "last"


def _table_frame(rows: list[dict[str, Any]], param_keys: list[str],
                 parsed: list[tuple[str, str, str]], clash: set[str]) -> pd.DataFrame:
    """Book.table's frame from one record per run (repeated column names allowed)."""
    import pandas as pd

    records = []
    for row in rows:
        rec: dict[str, Any] = {"id": row["id"], "experiment": row["experiment"],
                               "name": row["name"], "status": row["status"]}
        for k in param_keys:
            v = row["params"].get(k)
            rec[("params." + k) if k in clash else k] = repr(v) if isinstance(v, (list, dict)) else v
        for spec, name, agg in parsed:
            rec[("metrics." + spec) if spec in clash else spec] = row[
                "metrics" if agg == "last" else agg].get(name)
        records.append(rec)
    columns = ["id", "experiment", "name", "status"] + [
        ("params." + k) if k in clash else k for k in param_keys] + [
        ("metrics." + s) if s in clash else s for s, _, _ in parsed]
    return pd.DataFrame.from_records(records, columns=columns).set_index("id")


def _varying_params(rows: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in rows for k in r["params"]})
    if len(rows) < 2:
        return keys
    varying = [k for k in keys if len({_hashable(r["params"].get(k, ...)) for r in rows}) > 1]
    return varying or keys


def _utc(value: Any, what: str) -> datetime | None:
    """A slice bound or a start time as an aware UTC datetime (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise LabtrackValueError(f"book[a:b]: {what} {value!r} is not an ISO 8601 time such as "
                                     "'2026-11-21' or '2026-11-21T14:15:00'") from None
    if not isinstance(value, datetime):
        raise LabtrackValueError(f"book[a:b]: {what} must be a datetime or an ISO 8601 str, got "
                                 f"{type(value).__name__} {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _in_span(t: datetime | None, lo: datetime | None, hi: datetime | None) -> bool:
    if t is None:
        return lo is None and hi is None
    return (lo is None or t >= lo) and (hi is None or t < hi)
