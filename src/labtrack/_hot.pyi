"""Types of the C module labtrack._hot (src/labtrack/_hot.c)."""

from array import array
from typing import Any, Callable, Mapping

class HotBase:
    __slots__ = ("_cols", "_next_step", "_pending")
    _cols: dict[str, Callable[[list[float]], None]]
    _next_step: int
    _pending: int
    def log(self, values: Mapping[str, Any], step: int | None = None) -> None: ...

def format_rows(col: array[float], /) -> bytes: ...
def repr_float(v: float, /) -> str: ...
