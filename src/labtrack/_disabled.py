"""DisabledRun: what `labtrack.init(disabled=True)` returns (ranks other than 0): it records nothing."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import _lifecycle, _records
from .errors import LabtrackTypeError


class DisabledRun:
    """A run that records nothing: every method is a no-op (for ranks other than 0)."""

    id = "disabled"
    experiment = "disabled"
    name = "disabled"
    status = "disabled"
    dir: Path | None = None
    rank = 0  # in distributed="rank0" mode, the instance says which rank records nothing
    world_size = 1
    root: Path | None = None
    current_step: int | None = None  # nothing is ever logged
    start_step = 0
    disabled = True

    def __init__(self, config: Any = None, *, rank: int = 0, world_size: int = 1, **_: Any) -> None:
        self.rank = rank
        self.world_size = world_size
        try:
            self._params = _records.config_to_dict(config)
        except LabtrackTypeError:
            self._params = {}

    @property
    def config(self) -> Mapping[str, Any]:
        return MappingProxyType(self._params)

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    log = _record = log_image = log_figure = log_text = log_markdown = log_histogram = _noop
    log_table = log_command = log_params = store = write = indicator = flush = _noop
    log_audio = log_video = save_progress = _noop

    def save_source(self, path: Any) -> list[Path]:
        return []

    @property
    def progress(self) -> list[dict[str, Any]]:
        return []
    save_checkpoint = add_checkpoint_file = save_artifact = save_object = _update_meta = _noop
    save_json = save_model = log_summary = disable = enable = _noop
    enabled = False

    def series_log(self, name: str, fields: Any) -> Any:
        """A series that drops its rows (this run records nothing)."""
        return self._noop

    def load_checkpoint(self, which: str | int = "last", **kwargs: Any) -> Any:
        from .errors import LabtrackError

        raise LabtrackError("this run is disabled (labtrack.init(disabled=True)); it has no checkpoints")

    def println(self, fmt: str, *args: Any, **kwargs: Any) -> None:
        print(str(fmt).format(*args, **kwargs) if (args or kwargs) else str(fmt))

    def eprintln(self, fmt: str, *args: Any, **kwargs: Any) -> None:
        print(str(fmt).format(*args, **kwargs) if (args or kwargs) else str(fmt), file=sys.stderr)

    def finish(self, status: str = "finished", **kwargs: Any) -> None:
        _lifecycle.forget_default(self)

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()

    def __repr__(self) -> str:
        return "<labtrack.DisabledRun>"
