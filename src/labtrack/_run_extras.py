"""What Run keeps from Lab Workbook, ML-Logger and Lavd (issue 14), mixed into Run:

- `series_log`: Lab Workbook's CSV time series with named columns and a `Date` column;
- `save_json`: a JSON artifact (`artifacts/<name>.json`);
- `log_summary`: Lavd's summary document (markdown/summary.md);
- `save_model`: Lavd's model saving (DataParallel/DDP unwrapped, gradients optional);
- `disable` / `enable`: Lavd's switch to stop and resume recording;
- the per-step table of `init(print_steps=True)` (ML-Logger).

`disable()` and the step table change the run's class to a subclass (same slots, so the
swap is allowed) whose methods drop or observe the calls: a run that uses neither pays
nothing on the hot path, and `Run.log` stays the C method.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import _records
from ._names import check_name
from ._store import files, layout
from .errors import LabtrackTypeError, LabtrackValueError

if TYPE_CHECKING:
    from ._console.steps import StepPrinter
    from ._writer import Writer


class _Extras:
    """A run's state for these features (in Run's `_extras` slot, made on first use)."""

    __slots__ = ("series", "printer", "enabled_class")

    def __init__(self) -> None:
        self.series: dict[str, SeriesLog] = {}
        self.printer: StepPrinter | None = None
        self.enabled_class: type | None = None  # the class to go back to at enable()


class SeriesLog:
    """One CSV time series of a run (Lab Workbook's `series_log`): call it with one value per
    field to append a row; the row's `Date` (UTC, ISO 8601) is added.

    Example:
        >>> loss_log = run.series_log("Training loss", ["epoch", "loss", "gradientNorm"])
        >>> loss_log(epoch=0.5, loss=0.23, gradientNorm=1.2)
    """

    __slots__ = ("_run", "name", "fields", "path", "_header")

    def __init__(self, run: Any, name: str, fields: tuple[str, ...], path: Path, header: bool) -> None:
        self._run = run
        self.name = name
        self.fields = fields
        self.path = path
        self._header = header  # the header line still has to be written (with the first row)

    def __call__(self, *values: Any, **named: Any) -> None:
        """Append one row: values by position (in field order) or by field name; a field
        left out is an empty cell.

        Raises:
            LabtrackValueError: an unknown field, too many values, a field given twice, text
                with a line break, or a non-finite number.
            LabtrackTypeError: a value that is neither a number, a str nor None.
            RunStateError: the run is finished.
        """
        self._run._series_row(self, values, named)

    def __repr__(self) -> str:
        return f"<labtrack.SeriesLog {self.name!r} {list(self.fields)}>"


def _check_fields(name: str, fields: Any) -> tuple[str, ...]:
    if isinstance(fields, (str, bytes)) or not isinstance(fields, Sequence) or not fields:
        raise LabtrackTypeError(
            f"series_log {name!r}: fields must be a non-empty list of column names, got {fields!r:.80}")
    out: list[str] = []
    for f in fields:
        if not isinstance(f, str) or not f.strip():
            raise LabtrackValueError(f"series_log {name!r}: a field name must be a non-empty str, got {f!r}")
        if any(ord(c) < 32 for c in f):
            raise LabtrackValueError(f"series_log {name!r}: field {f!r} contains a control character")
        if f == layout.SERIES_DATE:
            raise LabtrackValueError(f"series_log {name!r}: {f!r} is the column labtrack adds to every "
                                     "row (its UTC time); name the field otherwise")
        if f in out:
            raise LabtrackValueError(f"series_log {name!r}: field {f!r} is given twice")
        _records.check_text(f, f"field {f!r} of series {name!r}")
        out.append(f)
    return tuple(out)


def _cell(series: str, field: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise LabtrackValueError(f"series {series!r}: {field} holds a line break; every row is one "
                                     "line, so give the text without newlines")
        _records.check_text(value, f"{field} of series {series!r}")
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        v = _records.coerce_scalar(f"{series}.{field}", value)
    except (_records.MediaValue, LabtrackTypeError):
        raise LabtrackTypeError(f"series {series!r}: {field} is a {type(value).__name__} "
                                f"({repr(value)[:40]}); a series row holds numbers, text and None") from None
    if not math.isfinite(v):
        raise LabtrackValueError(f"series {series!r}: {field} is {v}; a series row holds finite numbers "
                                 "(log NaN or inf with run.log)")
    return repr(v)


def _csv_line(cells: Sequence[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue().encode("utf-8")


def _markdown_value(value: Any, depth: int) -> list[str]:
    pad = "  " * depth
    if isinstance(value, Mapping):
        lines = []
        for k, v in value.items():
            if isinstance(v, (Mapping, list, tuple)):
                lines.append(f"{pad}- **{k}**")
                lines.extend(_markdown_value(v, depth + 1))
            else:
                lines.append(f"{pad}- **{k}**: {v}")
        return lines
    if isinstance(value, (list, tuple)):
        lines = []
        for v in value:
            if isinstance(v, (Mapping, list, tuple)):
                lines.append(f"{pad}-")
                lines.extend(_markdown_value(v, depth + 1))
            else:
                lines.append(f"{pad}- {v}")
        return lines
    return [f"{pad}- {value}"]


def summary_markdown(infos: Mapping[str, Any] | None, sections: Mapping[str, str] | None,
                     title: str = "Summary") -> str:
    """Lavd's summary as markdown: `infos` as nested lists (one heading each), `sections`
    as headings with their text.

    Raises:
        LabtrackTypeError: `infos` or `sections` is not a mapping, or a section's text not a str.
    """
    for label, v in (("infos", infos), ("sections", sections)):
        if v is not None and not isinstance(v, Mapping):
            raise LabtrackTypeError(f"log_summary: {label} must be a dict, got {type(v).__name__}")
    out = [f"# {title}", ""]
    for key, value in (infos or {}).items():
        out += [f"## {key}", ""]
        out += _markdown_value(value, 0) if isinstance(value, (Mapping, list, tuple)) else [str(value)]
        out.append("")
    for heading, text in (sections or {}).items():
        if not isinstance(text, str):
            raise LabtrackTypeError(f"log_summary: section {heading!r} must be a str, got {type(text).__name__}")
        out += [f"## {heading}", "", text.rstrip("\n"), ""]
    return "\n".join(out)


class ExtrasMethods:
    """Run's Lab Workbook, ML-Logger and Lavd helpers (mixed into Run; see _run.py)."""

    __slots__ = ()

    if TYPE_CHECKING:
        dir: Path
        id: str
        _writer: Writer
        _next_step: int
        _extras: _Extras | None

        def _check_open(self) -> None: ...
        def _claim(self, folder: str, name: str, suffixes: tuple[str, ...], what: str) -> None: ...
        def log_markdown(self, name: str, markdown: str, step: int | None = None) -> None: ...
        def finish(self, status: str = "finished", *, error: BaseException | None = None) -> None: ...
        def log(self, values: Mapping[str, Any], step: int | None = None, *,
                time: float | None = None) -> None: ...
        _cols: dict[str, Callable[[list[float]], None]]
        _busy: list[None]

        def _new_series(self, cols: dict[str, Callable[[list[float]], None]], key: Any
                        ) -> Callable[[list[float]], None]: ...
        def _wake_writer(self) -> None: ...

    def _extra(self) -> _Extras:
        ex = getattr(self, "_extras", None)
        if ex is None:
            ex = _Extras()
            setattr(self, "_extras", ex)  # Run's slot (this mixin has none of its own)
        return ex

    def _log_points(self, name: str, triples: bytes) -> None:
        """Append many points of one series at once (an importer's fast path): `triples` the
        float64 bytes of (step, value, time, ...) as log() stores them; the caller has checked
        the steps (whole, >= 0, < 2**53) and the times (finite, > 0)."""
        self._check_open()
        self._busy.append(None)  # the writer must see this call in flight, as for log()
        try:
            cols = self._cols
            append = cols.get(name)  # a finished run's columns refuse
            if append is None:
                append = self._new_series(cols, name)
            append.__self__.frombytes(triples)  # type: ignore[attr-defined]
        finally:
            self._busy.pop()
        self._wake_writer()  # many points at once: have the writer format them now

    # --- Lab Workbook ---------------------------------------------------------------------------
    def series_log(self, name: str, fields: Sequence[str]) -> SeriesLog:
        """A CSV time series with named columns (Lab Workbook's `series_log`): series/<name>.csv,
        header `<fields...>,Date`, one whole line per call, `Date` the UTC ISO time of the row.
        Read it back with `book[run_id]["<name>.csv"]` (a DataFrame indexed by the first field).

        Args:
            name: the series, e.g. "Training loss" ("/" makes sub-folders).
            fields: the column names, in order.

        Returns:
            A callable that appends a row: `loss_log(epoch=0.5, loss=0.23)`.

        Raises:
            LabtrackValueError: a bad name, empty/repeated fields, a field named Date, or the
                name already used with other fields.

        Example:
            >>> loss_log = run.series_log("Training loss", ["epoch", "loss", "gradientNorm"])
            >>> loss_log(epoch=0.5, loss=0.23, gradientNorm=1.2)
        """
        self._check_open()
        check_name(name, "series name")
        cols = _check_fields(name, fields)
        ex = self._extra()
        old = ex.series.get(name)
        if old is not None:
            if old.fields != cols:
                raise LabtrackValueError(f"series {name!r} already has the fields {list(old.fields)}; "
                                         f"got {list(cols)}")
            return old
        self._claim(layout.SERIES_DIR, name, (".csv",), "series name")
        path = layout.series_path(self.dir, name)
        header = True
        if path.exists():  # a resumed run: keep appending under the same header
            with open(path, encoding="utf-8") as f:
                first = next(csv.reader([f.readline()]), [])
            if tuple(first) != (*cols, layout.SERIES_DATE):
                raise LabtrackValueError(f"series {name!r} of run {self.id} has the columns {first}; "
                                         f"got {[*cols, layout.SERIES_DATE]}")
            header = False
        log = ex.series[name] = SeriesLog(self, name, cols, path, header)
        return log

    def _series_row(self, log: SeriesLog, values: tuple[Any, ...], named: dict[str, Any]) -> None:
        self._check_open()
        fields = log.fields
        if len(values) > len(fields):
            raise LabtrackValueError(f"series {log.name!r} has {len(fields)} fields {list(fields)}; "
                                     f"got {len(values)} values")
        row: dict[str, Any] = dict(zip(fields, values))
        for k, v in named.items():
            if k not in fields:
                raise LabtrackValueError(f"series {log.name!r} has no field {k!r}; its fields: {list(fields)}")
            if k in row:
                raise LabtrackValueError(f"series {log.name!r}: {k!r} is given twice")
            row[k] = v
        cells = [_cell(log.name, f, row.get(f)) for f in fields]
        cells.append(datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        data = _csv_line(cells)
        if log._header:
            data = _csv_line([*fields, layout.SERIES_DATE]) + data
            log._header = False
        path = log.path
        self._writer.submit(lambda: self._writer.append(path, data, "series row", log.name),
                            "series row", log.name)

    def save_json(self, name: str, data: Any) -> Path:
        """Save `data` as artifacts/<name>.json, now (Lab Workbook's `save_json`); read it back
        with `book[run_id]["<name>.json"]`.

        Returns:
            The file's path.

        Raises:
            LabtrackTypeError: `data` cannot be written as JSON.
            LabtrackNameError: a bad name.
        """
        self._check_open()
        check_name(name, "artifact name")
        stem = name[:-5] if name.endswith(".json") else name
        try:
            text = files.dumps(data)
        except (TypeError, ValueError) as e:
            raise LabtrackTypeError(f"save_json {name!r}: the data cannot be written as JSON ({e}); "
                                    "give dicts, lists, str, numbers, bools and None") from None
        raw = _records.check_text(text, f"save_json {name!r}")
        dst = layout.artifact_path(self.dir, stem + ".json")
        files.atomic_write_bytes(dst, raw)
        return dst

    # --- Lavd -------------------------------------------------------------------------------------
    def log_summary(self, infos: Mapping[str, Any] | None = None,
                    sections: Mapping[str, str] | None = None) -> None:
        """Write the run's summary document, markdown/summary.md (Lavd's `log_summary`): each
        key of `infos` a heading over a nested list of its values, each section a heading over
        its text. Shown with the run's markdown documents in the dashboard; a later call
        replaces it.

        Raises:
            LabtrackTypeError: `infos`/`sections` not a dict, or a section's text not a str.

        Example:
            >>> run.log_summary(infos={"size": {"train": 1000}}, sections={"Notes": "text"})
        """
        self.log_markdown(layout.SUMMARY_MD, summary_markdown(infos, sections))

    def save_model(self, model: Any, step: int | None = None, *, grads: bool = False,
                   name: str = "model") -> Path:
        """Save a torch model's state dict (Lavd's `save_model`) as
        artifacts/models/<step>/<name>.pt; `nn.DataParallel`/`DistributedDataParallel` are
        unwrapped (keys without `module.`); with `grads=True` the parameters' gradients go to
        grads.pt beside it (name -> tensor, parameters without a gradient left out).

        Returns:
            The model file's path.

        Raises:
            LabtrackTypeError: `model` is not a torch module.
        """
        self._check_open()
        check_name(name, "model name")
        from ._checkpoints import _unwrap

        torch = sys.modules.get("torch")
        model = _unwrap(model)
        if torch is None or not isinstance(model, torch.nn.Module):
            raise LabtrackTypeError(f"save_model takes a torch.nn.Module, got {type(model).__name__}; "
                                    "use save_object for other objects")
        s = max(self._next_step - 1, 0) if step is None else _records.check_step(step)
        path = layout.model_path(self.dir, s, name)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        files.atomic_write_bytes(path, buf.getvalue())
        if grads:
            g = {n: p.grad.detach().cpu().clone() for n, p in model.named_parameters() if p.grad is not None}
            buf = io.BytesIO()
            torch.save(g, buf)
            files.atomic_write_bytes(path.with_name("grads.pt"), buf.getvalue())
        return path

    @property
    def enabled(self) -> bool:
        """False between `disable()` and `enable()`."""
        return not isinstance(self, _Dropping)

    def disable(self) -> None:
        """Stop recording (Lavd's `disable`): every log, save and print call until
        :meth:`enable` is accepted and dropped (saves return None); what was logged before
        is kept. `finish()` works as usual.
        """
        if isinstance(self, _Dropping):
            return
        ex = self._extra()
        ex.enabled_class = type(self)
        self.__class__ = _dropping_class(type(self))

    def enable(self) -> None:
        """Record again after :meth:`disable` (nothing of the calls in between comes back)."""
        ex = getattr(self, "_extras", None)
        if ex is not None and ex.enabled_class is not None and isinstance(self, _Dropping):
            self.__class__ = ex.enabled_class
            ex.enabled_class = None

    # --- ML-Logger --------------------------------------------------------------------------------
    def _print_steps(self, skip: Iterable[str] = ()) -> None:
        """Turn on the per-step table (init(print_steps=True, print_skip=...))."""
        from ._console.steps import StepPrinter, check_skip

        ex = self._extra()
        ex.printer = StepPrinter(check_skip(skip))
        if not isinstance(self, _Stepping):
            self.__class__ = _stepping_class(type(self))


class _Dropping:
    """Marker base of the classes `disable()` gives a run."""

    __slots__ = ()


class _Stepping:
    """Marker base of the classes `init(print_steps=True)` gives a run."""

    __slots__ = ()


def _noop(self: Any, *args: Any, **kwargs: Any) -> None:
    return None


def _plain_print(stream: str) -> Callable[..., None]:
    def out(self: Any, fmt: str, *args: Any, **kwargs: Any) -> None:
        text = str(fmt).format(*args, **kwargs) if (args or kwargs) else str(fmt)
        print(text, file=getattr(sys, stream), flush=True)

    return out


_KEEP = frozenset({"load_checkpoint", "series_log"})
_DROP_ALSO = frozenset({"_record", "_series_row", "_set_summary", "store", "write", "indicator",
                        "add_checkpoint_file", "log_summary", "_print_steps"})
_classes: dict[tuple[str, type], type] = {}


def _dropping_class(cls: type) -> type:
    key = ("drop", cls)
    made = _classes.get(key)
    if made is None:
        body: dict[str, Any] = {"__slots__": (), "__module__": cls.__module__}
        for attr in dir(cls):
            if attr in _KEEP:
                continue
            if attr in _DROP_ALSO or (attr.startswith(("log", "save_")) and callable(getattr(cls, attr))):
                body[attr] = _noop
        body["println"] = _plain_print("stdout")
        body["eprintln"] = _plain_print("stderr")
        made = _classes.setdefault(key, type(cls.__name__, (_Dropping, cls), body))
    return made


def _stepping_log(self: Any, values: Mapping[str, Any], step: int | None = None, *,
                  time: float | None = None) -> None:
    parent: Any = super(_Stepping, self)
    if time is None:
        parent.log(values, step)
    else:
        parent.log(values, step, time=time)
    printer = self._extras.printer
    if printer is not None and isinstance(values, Mapping):
        # the step this call logged at (another thread may have moved _next_step since)
        printer.observe(step if type(step) is int else self._next_step - 1, values)


def _stepping_finish(self: Any, status: str = "finished", *, error: BaseException | None = None) -> None:
    printer = self._extras.printer
    if printer is not None:
        printer.close()
    super(_Stepping, self).finish(status, error=error)


def _stepping_class(cls: type) -> type:
    key = ("step", cls)
    made = _classes.get(key)
    if made is None:
        body = {"__slots__": (), "__module__": cls.__module__, "log": _stepping_log, "finish": _stepping_finish}
        made = _classes.setdefault(key, type(cls.__name__, (_Stepping, cls), body))
    return made
