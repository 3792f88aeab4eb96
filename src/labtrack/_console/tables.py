"""Box-drawn tables: `labtrack.table`, the params table of `run.log_params`, `print_step`.

Tables are drawn by rich and printed as lines that stay (above the live status line on a
terminal). Numbers are right-aligned and formatted like the status line; None shows as `-`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import LabtrackTypeError, LabtrackValueError
from ._display import DISPLAY
from ._format import flatten, format_cell, format_count, is_number, param_text

if TYPE_CHECKING:
    from rich.table import Table


def _new_table(title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    # SQUARE: plain box-drawing characters that every terminal font and log viewer shows
    return Table(box=box.SQUARE, title=title, title_justify="left", show_edge=True,
                 header_style="bold", highlight=False)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]], *,
          title: str | None = None) -> None:
    """Print rows as a box-drawn table; numbers right-aligned, None as `-`.

    Args:
        headers: the column names.
        rows: each row a sequence with one value per header (a list, a tuple, a row of a
            numpy array), or a mapping from header to value (a missing key shows as `-`).
        title: an optional line above the table.

    Raises:
        LabtrackTypeError: headers are not strings, or a row is neither a sequence nor a
            mapping.
        LabtrackValueError: a row has a different number of values than there are headers.

    Example:
        >>> labtrack.table(["Name", "Correct", "Total", "Accuracy"],
        ...                [["cat", 45, 50, 0.9], ["dog", None, 50, None]])
        ┌──────┬─────────┬───────┬──────────┐
        │ Name │ Correct │ Total │ Accuracy │
        ├──────┼─────────┼───────┼──────────┤
        │ cat  │      45 │    50 │   0.9000 │
        │ dog  │       - │    50 │        - │
        └──────┴─────────┴───────┴──────────┘
    """
    if isinstance(headers, (str, bytes)) or not isinstance(headers, Sequence):
        raise LabtrackTypeError(
            f"table headers must be a list of str, got {type(headers).__name__} {headers!r:.60}"
        )
    header_list = list(headers)
    for h in header_list:
        if not isinstance(h, str):
            raise LabtrackTypeError(
                f"table header {h!r} is a {type(h).__name__}; headers must be str"
            )
    if title is not None and not isinstance(title, str):
        raise LabtrackTypeError(f"table title must be a str or None, got {type(title).__name__}")
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise LabtrackTypeError(
            f"table rows must be a list of rows, got {type(rows).__name__} {rows!r:.60}"
        )
    cells: list[list[Any]] = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            cells.append([row.get(h) for h in header_list])
            continue
        if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
            raise LabtrackTypeError(
                f"table row {i} is a {type(row).__name__} {row!r:.60}; each row must be a list "
                "or tuple of values (or a numpy row), or a dict from header to value"
            )
        row = list(row)
        if len(row) != len(header_list):
            raise LabtrackValueError(
                f"table row {i} has {len(row)} values but there are {len(header_list)} headers "
                f"{header_list!r}; give one value per header (None shows as '-')"
            )
        cells.append(list(row))
    numeric = [all(v is None or is_number(v) for v in col) and any(v is not None for v in col)
               for col in zip(*cells)] if cells else [False] * len(header_list)
    t = _new_table(title)
    for h, is_num in zip(header_list, numeric):
        t.add_column(h, justify="right" if is_num else "left")
    for row_values in cells:
        t.add_row(*(format_cell(v) for v in row_values))
    DISPLAY.keep(t)


def print_params(params: Mapping[str, Any]) -> None:
    """Print parameters as a two-column table, nested keys flattened with `.`.

    Called by `run.log_params(params)` after params.json is written.

    Args:
        params: the parameters, possibly nested.

    Raises:
        LabtrackTypeError: `params` is not a mapping.

    Example:
        >>> print_params({"lr": 0.1, "opt": {"name": "adam"}})
        ┌──────────┬───────┐
        │ param    │ value │
        ├──────────┼───────┤
        │ lr       │ 0.1   │
        │ opt.name │ adam  │
        └──────────┴───────┘
    """
    if not isinstance(params, Mapping):
        raise LabtrackTypeError(
            f"params must be a mapping (a dict, or vars(args)), got {type(params).__name__}"
        )
    t = _new_table()
    t.add_column("param", style="cyan")
    t.add_column("value")
    for key, value in flatten(params).items():
        t.add_row(str(key), param_text(value))
    DISPLAY.keep(t)


def print_step(step: int, values: Mapping[str, Any], *,
               styles: Mapping[str, tuple[str, str | None]] | None = None) -> None:
    """Print one step's values as a box-drawn two-column table (ML-Logger's per-step table).

    Args:
        step: the step, shown in the first row.
        values: name -> value; numbers are formatted, None shows as `-`.
        styles: name -> (rich colour, `str.format` pattern or None), as `labtrack.Color`
            gives them (`init(print_steps=True)`).

    Raises:
        LabtrackTypeError: `step` is not an int or `values` is not a mapping.

    Example:
        >>> labtrack.print_step(100, {"train/loss": 0.1234, "acc": 0.91})
        ┌────────────┬────────┐
        │ step       │    100 │
        ├────────────┼────────┤
        │ train/loss │ 0.1234 │
        │ acc        │ 0.9100 │
        └────────────┴────────┘
    """
    if isinstance(step, bool) or not isinstance(step, int):
        raise LabtrackTypeError(f"print_step: step must be an int, got {type(step).__name__} {step!r}")
    if not isinstance(values, Mapping):
        raise LabtrackTypeError(
            f"print_step: values must be a mapping of name -> value, got {type(values).__name__}"
        )
    t = _new_table()
    t.add_column("step", style="cyan")
    t.add_column(format_count(step), justify="right")
    styles = styles or {}
    for key, value in flatten(values).items():
        color, fmt = styles.get(str(key), (None, None))
        cell = format_cell(value)
        if fmt is not None:
            try:
                cell = fmt.format(value)
            except (ValueError, TypeError, IndexError, KeyError):
                pass  # a pattern that does not fit this value: the usual format
        if color is not None:
            from rich.text import Text

            t.add_row(Text(str(key), style=color), Text(cell, style=color))
        else:
            t.add_row(str(key), cell)
    DISPLAY.keep(t)
