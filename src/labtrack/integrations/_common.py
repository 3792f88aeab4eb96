"""What the framework bridges share: finding the framework, making the run, readable params.

Private: the public modules are `labtrack.integrations.lightning`, `.transformers`, `.keras`.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import math
import numbers
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ..errors import LabtrackTypeError, MissingDependencyError

# A parameter's repr past this many characters is cut: params.json is for reading.
_MAX_REPR = 200


def require(module: str, install: str, what: str) -> ModuleType:
    """Import `module` or raise an error that says how to install it.

    Args:
        module: the module to import ("lightning.pytorch").
        install: the pip requirement that provides it ("lightning").
        what: the labtrack module asking, for the message.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{what} needs {install!r}, which is not installed ({e}); install it with: "
            f"pip install {install}  (or pip install 'labtrack[bridges]')"
        ) from e


def make_run(run: Any, experiment: str | None, name: str | None, root: str | os.PathLike[str] | None,
             config: Any, tags: Any, comment: str | None, run_options: Mapping[str, Any]) -> Any:
    """The run a bridge logs to: `run` as given, else a new labtrack.Run.

    Raises:
        LabtrackTypeError: `run` is given together with options for a new run.
    """
    if run is not None:
        given = {k: v for k, v in (("experiment", experiment), ("name", name), ("root", root),
                                   ("config", config), ("tags", tags), ("comment", comment)) if v is not None}
        if given or run_options:
            raise LabtrackTypeError(
                f"pass either run= (an existing labtrack run) or options for a new run, not both; got run= "
                f"and {sorted([*given, *run_options])}"
            )
        return run
    from .. import Run  # the public class: integrations stand on labtrack's surface

    return Run(experiment, name, root=root, config=config, tags=tags, comment=comment, **run_options)


def readable(value: Any, _depth: int = 0) -> Any:
    """A JSON-ready form of a parameter that a person can read.

    Plain values, lists and mappings are kept (nested); numpy and torch values become numbers
    or lists; classes and functions become their dotted names; anything else its str (or
    repr), cut at 200 characters.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth > 10:
        return _short(repr(value))
    if isinstance(value, Mapping):
        return {str(k): readable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [readable(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return [readable(v, _depth + 1) for v in sorted(value, key=repr)]
    mod = type(value).__module__
    if (mod == "numpy" or mod.startswith("torch")) and hasattr(value, "tolist"):
        try:
            n = value.numel() if hasattr(value, "numel") else getattr(value, "size", 0)
            if n <= 64:
                return readable(value.tolist(), _depth + 1)
            return f"{type(value).__name__} of shape {tuple(value.shape)}"
        except (AttributeError, TypeError, ValueError, RuntimeError):
            pass
    if isinstance(value, numbers.Real):
        return float(value)
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, enum.Enum):
        return readable(value.value, _depth + 1)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    text = str(value)
    if text.startswith("<") or "\n" in text:  # a default object repr or a module's tree
        return _short(f"{type(value).__module__}.{type(value).__qualname__}" if "\n" in text else text)
    return _short(text)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def scalar(value: Any) -> float | None:
    """A loggable float from a number, a 0-d tensor or array; None for anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "item"):
        try:
            n = value.numel() if hasattr(value, "numel") else getattr(value, "size", 1)
            if n != 1:
                return None
            item = value.item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return float(item) if isinstance(item, (int, float)) else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None



class RunOwner:
    """The `with` form shared by the callbacks: an exception out of the block fails the run.

    A framework that calls no hook when training raises (Keras, the transformers Trainer)
    cannot tell the run it failed; inside `with callback:` the run learns it. Subclasses
    keep `_run` (the run), `_own` (made by the callback) and `_finished`.
    """

    _run: Any = None
    _own: bool = True
    _finished: bool = False

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        run = self._run
        if run is None or not self._own or self._finished:
            return
        if exc is None:
            run.finish()
        elif isinstance(exc, KeyboardInterrupt):
            run.finish("interrupted", error=exc)
        else:
            run.finish("failed", error=exc)
        self._finished = True
