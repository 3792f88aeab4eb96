"""Types of the C module labtrack._hot (src/labtrack/_hot.c)."""

from array import array
from typing import Any, Callable, Mapping

class HotBase:
    __slots__ = ("_cols", "_next_step", "_pending", "_eager_at")
    _cols: dict[str, Callable[[list[float]], None]]
    _next_step: int
    _pending: int
    _eager_at: int
    def log(self, values: Mapping[str, Any], step: int | None = None) -> None: ...

def format_rows(col: array[float], /) -> bytes: ...
def repr_float(v: float, /) -> str: ...
def format_many(cols: list[array[float]], /) -> list[tuple[bytes, float, int, float, float]]: ...
def parse_step_value(buf: bytes | bytearray | memoryview, /) -> tuple[bytearray, bytearray]: ...
