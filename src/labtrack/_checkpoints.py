"""Checkpoints of a run: `checkpoints/<step>/` with last and best kept (docs/format.md).

One checkpoint is a folder that appears whole or not at all (written under a temporary name,
then renamed)::

    checkpoints/<step>/checkpoint.pt     the object, torch.save (checkpoint.pkl: pickle,
                                         for plain data or when torch is not imported)
    checkpoints/<step>/rng.json          RNG states of random, numpy and torch (+ CUDA)
    checkpoints/<step>/checkpoint.json   {"step", "metric", "mode", "file", "format",
                                          "seq", "saved"}

A checkpoint another tool wrote (Lightning's `.ckpt`, a transformers `checkpoint-N/` folder)
is registered with :func:`add_checkpoint_file`: copied into `checkpoints/<step>/`, or kept
where it is and referenced (`"path"` in checkpoint.json: relative to the run directory when
inside it, else absolute; `"file"` is then null).

The folders are the truth; run.json "checkpoints" is a summary of them
(`{"last", "best", "mode", "metric", "steps"}`) rewritten after every save so that readers
(`labtrack show`, the dashboard) need not list the folder.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import operator
import os
import pickle
import random
import secrets
import shutil
import sys
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Collection, SupportsFloat

from .errors import FormatError, LabtrackTypeError, LabtrackValueError, RunNotFoundError, RunStateError
from ._store import files, layout

CHECKPOINTS_DIR = layout.CHECKPOINTS_DIR
INFO_FILE = layout.CHECKPOINT_INFO
RNG_FILE = layout.CHECKPOINT_RNG
_MODES = ("min", "max")
_NONFINITE_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
# Saves from several threads of one process must not interleave their renames and pruning.
_LOCK = threading.Lock()


def save_checkpoint(
    run_dir: Path,
    obj: Any,
    step: int,
    *,
    metric: SupportsFloat | None = None,
    mode: str = "min",
    keep_last: int | None = None,
    meta_writer: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Save `obj` as the checkpoint of `step`, keeping the last and the best ones.

    The object is written with `torch.save` when the program has imported torch and the
    object is not plain data, else with pickle: dicts, lists, tuples and sets of numbers,
    strings, bytes, None and numpy arrays or scalars are pickled, and neither saving nor
    loading them imports torch.
    `nn.DataParallel` / `DistributedDataParallel` models found in it (as the object itself
    or as values of dicts, lists and tuples) are replaced by their `.module`, so the
    checkpoint loads without the wrapper. A `state_dict()` taken from a wrapped model keeps
    its `module.` key prefixes as given: take it from `model.module` to avoid them. The RNG
    states of `random`, numpy's global generator and torch (CPU and CUDA) are saved beside
    it and restored by :func:`load_checkpoint`. Saving a step again replaces it.

    Args:
        run_dir: the run directory.
        obj: anything torch.save (or pickle) can write, typically
            `{"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch}`.
        step: a whole number >= 0; the folder name.
        metric: the value that ranks checkpoints for "best" (NaN never becomes best).
        mode: "min" (lower is better) or "max"; the same for every checkpoint of a run that
            has a metric.
        keep_last: keep only this many most recently saved checkpoints (the best one is
            always kept too); None keeps all.
        meta_writer: called with the new run.json "checkpoints" record; the writing Run
            passes its own metadata updater. None rewrites run.json here.

    Returns:
        The path of the written checkpoint file.

    Raises:
        LabtrackTypeError: `step`, `metric` or `keep_last` of the wrong type, or an object
            that cannot be pickled (nothing is written then).
        LabtrackValueError: a negative step, a bad `mode` or `keep_last`, or a `mode` other
            than the one the run's earlier checkpoints were ranked by.
        RunNotFoundError: `run_dir` has no run.json (only checked when `meta_writer` is None).

    Example:
        >>> save_checkpoint(run.dir, {"model": net.state_dict()}, step=100,
        ...                 metric=val_loss, mode="min", keep_last=3)
    """
    run_dir = Path(run_dir)
    step = _check_step(step)
    if mode not in _MODES:
        raise LabtrackValueError(f"checkpoint mode {mode!r} is not allowed; use 'min' or 'max'")
    value = _check_metric(metric)
    if keep_last is not None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int):
            raise LabtrackTypeError(
                f"keep_last must be a whole number or None, got {type(keep_last).__name__} {keep_last!r}"
            )
        if keep_last < 1:
            raise LabtrackValueError(f"keep_last={keep_last} is not allowed; keep at least 1 checkpoint (or None for all)")
    if meta_writer is None and not (run_dir / layout.RUN_JSON).is_file():
        raise RunNotFoundError(f"{run_dir} has no run.json; it is not a labtrack run directory")

    with _LOCK:
        infos = _scan(run_dir)
        _check_same_mode(infos, mode, value)
        # torch.save only for what may hold torch objects: that needs torch imported already,
        # and plain containers never do (importing torch for a dict costs ~1.6 s).
        use_torch = "torch" in sys.modules and not _plain(obj)
        fmt = "torch" if use_torch else "pickle"
        file_name = layout.CHECKPOINT_TORCH if use_torch else layout.CHECKPOINT_PICKLE
        info: dict[str, Any] = {
            "step": step,
            "metric": value if value is None or math.isfinite(value) else _NONFINITE_TEXT[repr(value)],
            "mode": mode if value is not None else None,
            "file": file_name,
            "format": fmt,
            "seq": max((int(i.get("seq", 0)) for i in infos.values()), default=0) + 1,
            "saved": datetime.now(timezone.utc).isoformat(),
        }
        base = run_dir / CHECKPOINTS_DIR

        def fill(tmp: Path) -> None:
            _write_object(tmp / file_name, _unwrap(obj), use_torch)
            _write_text(tmp / RNG_FILE, json.dumps(rng_state()))
            # written last: a folder with checkpoint.json is complete
            _write_text(tmp / INFO_FILE, json.dumps(info, indent=2))

        files.replace_folder(base / str(step), fill)
        infos[step] = info
        record = _prune(base, infos, keep_last)
        if meta_writer is not None:
            meta_writer(record)
        else:
            _rewrite_run_json(run_dir, record)
    return base / str(step) / file_name


def add_checkpoint_file(
    run_dir: Path,
    source: str | os.PathLike[str],
    step: int,
    *,
    metric: SupportsFloat | None = None,
    mode: str = "min",
    copy: bool = True,
    fmt: str = "torch",
    keep: Collection[int] | None = None,
    origin: str | None = None,
    meta_writer: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Record a checkpoint file or folder another tool wrote as the checkpoint of `step`.

    Args:
        run_dir: the run directory.
        source: the file (a Lightning `.ckpt`) or folder (a transformers `checkpoint-N/`).
        step: a whole number >= 0; the folder name under checkpoints/.
        metric: the value that ranks checkpoints for "best" (as :func:`save_checkpoint`).
        mode: "min" or "max".
        copy: copy `source` into `checkpoints/<step>/` (True), or only reference it (False;
            the path is relative when `source` is inside the run directory).
        fmt: what the file holds, for :func:`load_checkpoint`: "torch" (torch.load),
            "pickle", or "folder" (not loadable here: its path is given instead).
        keep: when given, the earlier checkpoints to keep (by step); the others are removed
            (this one and the best are always kept). Referenced files are never deleted.
        origin: who wrote it ("lightning", "transformers"), kept in checkpoint.json.
        meta_writer: as :func:`save_checkpoint`.

    Returns:
        The checkpoint's path: the copy, or `source` itself.

    Raises:
        LabtrackValueError: `source` does not exist, a bad `mode` or `fmt`, or a mode other
            than the one the run's earlier checkpoints were ranked by.
        LabtrackTypeError: `step` or `metric` of the wrong type.

    Example:
        >>> add_checkpoint_file(run.dir, "ckpts/last.ckpt", 120, metric=0.3, copy=False)
    """
    run_dir = Path(run_dir)
    step = _check_step(step)
    if mode not in _MODES:
        raise LabtrackValueError(f"checkpoint mode {mode!r} is not allowed; use 'min' or 'max'")
    if fmt not in ("torch", "pickle", "folder"):
        raise LabtrackValueError(f"checkpoint format {fmt!r} is not allowed; use 'torch', 'pickle' or 'folder'")
    value = _check_metric(metric)
    src = Path(source).absolute()
    if not src.exists():
        raise LabtrackValueError(f"checkpoint {str(src)!r} does not exist; pass the file or folder that was saved")
    with _LOCK:
        infos = _scan(run_dir)
        _check_same_mode(infos, mode, value)
        info: dict[str, Any] = {
            "step": step,
            "metric": value if value is None or math.isfinite(value) else _NONFINITE_TEXT[repr(value)],
            "mode": mode if value is not None else None,
            "file": src.name if copy else None,
            "format": fmt,
            "seq": max((int(i.get("seq", 0)) for i in infos.values()), default=0) + 1,
            "saved": datetime.now(timezone.utc).isoformat(),
            "source": str(src),
            "origin": origin,
        }
        if not copy:
            try:
                info["path"] = src.relative_to(run_dir.absolute()).as_posix()
            except ValueError:
                info["path"] = str(src)
        base = run_dir / CHECKPOINTS_DIR

        def fill(tmp: Path) -> None:
            if copy and src.is_dir():
                shutil.copytree(src, tmp / src.name)
            elif copy:
                shutil.copyfile(src, tmp / src.name)
            _write_text(tmp / INFO_FILE, json.dumps(info, indent=2))

        files.replace_folder(base / str(step), fill)
        infos[step] = info
        record = _prune(base, infos, None)
        if keep is not None:
            doomed = [s for s in record["steps"] if s not in keep and s != step and s != record["best"]]
            _remove(base, infos, doomed)
            record = _record(infos)
        if meta_writer is not None:
            meta_writer(record)
        else:
            _rewrite_run_json(run_dir, record)
    return base / str(step) / src.name if copy else src


def load_checkpoint(
    run_dir: Path,
    which: str | int = "last",
    *,
    restore_rng: bool = True,
    map_location: Any = "cpu",
) -> Any:
    """Load a checkpoint saved by :func:`save_checkpoint` and restore its RNG states.

    Loading unpickles the file: load only checkpoints you trust.

    Args:
        run_dir: the run directory.
        which: "last" (the most recently saved), "best" (by the metric and mode it was saved
            with) or a step number.
        restore_rng: set the RNG states of random, numpy and torch to those saved with it.
        map_location: passed to `torch.load` (ignored for pickle checkpoints).

    Returns:
        The object as it was saved.

    Raises:
        RunStateError: the run has no checkpoints.
        LabtrackValueError: no checkpoint at that step, "best" when no checkpoint had a
            metric, or an unknown `which`.
        LabtrackTypeError: `which` is neither a str nor an int.
        FormatError: the checkpoint needs torch and torch is not installed.

    Example:
        >>> state = load_checkpoint(run.dir, "best")
        >>> model.load_state_dict(state["model"])
    """
    run_dir = Path(run_dir)
    infos = _scan(run_dir)
    if not infos:
        raise RunStateError(
            f"run {run_dir.name} has no checkpoints (nothing in {run_dir / CHECKPOINTS_DIR}); "
            "save one first with run.save_checkpoint(obj, step=...)"
        )
    step = _pick(run_dir, infos, which)
    info = infos[step]
    folder = run_dir / CHECKPOINTS_DIR / str(step)
    path = _target(run_dir, step, info)
    if info.get("format") == "folder":
        raise FormatError(
            f"checkpoint {step} of run {run_dir.name} is the folder {path}, written by "
            f"{info.get('origin') or 'another tool'}; load it with that tool, e.g. "
            "AutoModel.from_pretrained(path) for transformers"
        )
    if not path.exists():
        raise FormatError(f"checkpoint {step} of run {run_dir.name} refers to {path}, which no longer exists")
    if info.get("format") == "torch":
        if importlib.util.find_spec("torch") is None:
            raise FormatError(f"{path} was saved with torch.save; install torch to load it (pip install torch)")
        import torch

        obj = torch.load(path, map_location=map_location, weights_only=False)
    else:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    if restore_rng:
        try:
            with open(folder / RNG_FILE, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            state = None
        if state is not None:
            set_rng_state(state)
    return obj


def checkpoint_record(run_dir: Path) -> dict[str, Any]:
    """The run.json "checkpoints" record computed from the checkpoint folders.

    Returns:
        `{"last", "best", "mode", "metric", "steps"}`; steps in the order they were saved,
        all None / empty when the run has no checkpoints.

    Example:
        >>> checkpoint_record(run.dir)["best"]
        120
    """
    return _record(_scan(Path(run_dir)))


def checkpoint_path(run_dir: Path, which: str | int = "last") -> Path:
    """The file of one checkpoint ("last", "best" or a step), without loading it.

    Raises:
        RunStateError, LabtrackValueError, LabtrackTypeError: as :func:`load_checkpoint`.
    """
    run_dir = Path(run_dir)
    infos = _scan(run_dir)
    if not infos:
        raise RunStateError(f"run {run_dir.name} has no checkpoints (nothing in {run_dir / CHECKPOINTS_DIR})")
    step = _pick(run_dir, infos, which)
    return _target(run_dir, step, infos[step])


def _target(run_dir: Path, step: int, info: dict[str, Any]) -> Path:
    """The file (or folder) a checkpoint.json stands for: its copy, or the referenced path."""
    ref = info.get("path")
    if info.get("file") is None and isinstance(ref, str):
        return Path(ref) if os.path.isabs(ref) else run_dir / ref
    return run_dir / CHECKPOINTS_DIR / str(step) / str(info.get("file") or layout.CHECKPOINT_TORCH)


# -- RNG states ---------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The RNG states of random, numpy's global generator and torch, as JSON-able data.

    numpy and torch are included only when the program has imported them (a generator a
    program never imported has nothing to restore). numpy `Generator` objects made with
    `default_rng` are not global: keep them in the checkpointed object yourself.
    """
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": {"version": version, "state": list(internal), "gauss_next": gauss}}
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        state["numpy"] = {"bit_generator": str(name), "keys": [int(k) for k in keys], "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = _b64(torch.get_rng_state())
        if torch.cuda.is_available():
            state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state` (parts whose library is missing are skipped)."""
    py = state.get("python")
    if py is not None:
        gauss = py.get("gauss_next")
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), gauss))
    if "numpy" in state and importlib.util.find_spec("numpy") is not None:
        import numpy as np

        n = state["numpy"]
        np.random.set_state((n["bit_generator"], np.asarray(n["keys"], dtype=np.uint32), int(n["pos"]),
                             int(n["has_gauss"]), float(n["cached_gaussian"])))
    if "torch" in state and importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_rng_state(_unb64(torch, state["torch"]))
        cuda = state.get("cuda")
        if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all([_unb64(torch, s) for s in cuda])


def _b64(tensor: Any) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _unb64(torch: Any, text: str) -> Any:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


# -- helpers ------------------------------------------------------------------------------


def _check_step(step: object) -> int:
    if isinstance(step, int) and not isinstance(step, bool):
        value = step
    elif type(step).__module__ == "numpy" and hasattr(step, "__index__"):  # numpy integers
        value = operator.index(step)
    else:
        raise LabtrackTypeError(f"checkpoint step must be a whole number, got {type(step).__name__} {step!r}")
    if value < 0:
        raise LabtrackValueError(f"checkpoint step {value} is negative; steps are whole numbers >= 0")
    return value


def _check_metric(metric: object) -> float | None:
    if metric is None:
        return None
    if isinstance(metric, bool) or isinstance(metric, (str, bytes)):
        raise LabtrackTypeError(f"checkpoint metric must be a number, got {type(metric).__name__} {metric!r}")
    try:
        value = float(metric)  # type: ignore[arg-type]  # floats, ints, numpy and 0-d torch scalars
    except (TypeError, ValueError):
        raise LabtrackTypeError(
            f"checkpoint metric must be a number, got {type(metric).__name__} {metric!r}"
        ) from None
    return value


def _write_object(path: Path, obj: Any, use_torch: bool) -> None:
    with open(path, "wb") as f:
        try:
            if use_torch:
                import torch

                torch.save(obj, f)
            else:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            how = "torch.save" if use_torch else "pickle"
            raise LabtrackTypeError(
                f"the checkpoint object ({type(obj).__name__}) cannot be written with {how}: {e}; "
                "checkpoint state_dict()s and plain values, not lambdas, open files or local classes"
            ) from e
        f.flush()
        os.fsync(f.fileno())


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _scan(run_dir: Path) -> dict[int, dict[str, Any]]:
    """step -> checkpoint.json of every complete checkpoint folder."""
    base = run_dir / CHECKPOINTS_DIR
    out: dict[int, dict[str, Any]] = {}
    try:
        entries = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        if not entry.name.isdigit() or not entry.is_dir():
            continue
        path = Path(entry.path) / INFO_FILE
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError:
            continue  # not a folder labtrack wrote
        except json.JSONDecodeError as e:
            raise FormatError(f"{path} is not valid JSON ({e}); was it edited by hand?") from e
        if not isinstance(info, dict):
            raise FormatError(f"{path} does not hold a JSON object")
        out[int(entry.name)] = info
    return out


def _check_same_mode(infos: dict[int, dict[str, Any]], mode: str, value: float | None) -> None:
    """Refuse a ranked checkpoint whose mode differs from the run's earlier ones."""
    ranked_mode = _ranked_mode(infos)
    if value is not None and ranked_mode is not None and ranked_mode != mode:
        raise LabtrackValueError(
            f"checkpoint mode {mode!r} differs from mode {ranked_mode!r} of this run's earlier "
            f"checkpoints; pass mode={ranked_mode!r} (best is ranked one way per run)"
        )


def _ranked_mode(infos: dict[int, dict[str, Any]]) -> str | None:
    for info in sorted(infos.values(), key=_seq):
        if _finite(info.get("metric")) is not None and info.get("mode") in _MODES:
            return str(info["mode"])
    return None


def _seq(info: dict[str, Any]) -> int:
    seq = info.get("seq", 0)
    return int(seq) if isinstance(seq, int) else 0


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _best(infos: dict[int, dict[str, Any]]) -> tuple[int | None, float | None, str | None]:
    mode = _ranked_mode(infos)
    best_step: int | None = None
    best_value: float | None = None
    for step, info in sorted(infos.items(), key=lambda kv: _seq(kv[1])):
        value = _finite(info.get("metric"))
        if value is None or info.get("mode") != mode:
            continue
        if best_value is None or (value < best_value if mode == "min" else value > best_value):
            best_step, best_value = step, value
    return best_step, best_value, mode if best_step is not None else None


def _record(infos: dict[int, dict[str, Any]]) -> dict[str, Any]:
    order = [step for step, _ in sorted(infos.items(), key=lambda kv: _seq(kv[1]))]
    best_step, best_value, mode = _best(infos)
    return {"last": order[-1] if order else None, "best": best_step, "mode": mode,
            "metric": best_value, "steps": order}


def _prune(base: Path, infos: dict[int, dict[str, Any]], keep_last: int | None) -> dict[str, Any]:
    record = _record(infos)
    if keep_last is not None:
        keep = set(record["steps"][-keep_last:])
        if record["best"] is not None:
            keep.add(record["best"])
        _remove(base, infos, [step for step in record["steps"] if step not in keep])
        record = _record(infos)
    return record


def _remove(base: Path, infos: dict[int, dict[str, Any]], steps: list[int]) -> None:
    for step in steps:
        # rename first so a half-deleted folder never looks like a checkpoint
        doomed = base / f".{step}.{secrets.token_hex(4)}.old"
        os.replace(base / str(step), doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        del infos[step]


def _rewrite_run_json(run_dir: Path, record: dict[str, Any]) -> None:
    from ._store.files import atomic_write_json
    from ._store.reader import read_json

    meta = read_json(run_dir / layout.RUN_JSON)
    if not isinstance(meta, dict):
        raise FormatError(f"{run_dir / 'run.json'} does not hold a JSON object")
    meta["checkpoints"] = record
    atomic_write_json(run_dir / layout.RUN_JSON, meta)


def _pick(run_dir: Path, infos: dict[int, dict[str, Any]], which: object) -> int:
    if isinstance(which, str):
        if which == "last":
            return max(infos.items(), key=lambda kv: _seq(kv[1]))[0]
        if which == "best":
            best = _best(infos)[0]
            if best is None:
                raise LabtrackValueError(
                    f"run {run_dir.name} has no best checkpoint: none was saved with a metric; "
                    "load 'last' or a step, or pass metric= when saving"
                )
            return best
        if which.isdigit():
            which = int(which)
        else:
            raise LabtrackValueError(f"checkpoint {which!r} is not known; use 'last', 'best' or a step number")
    if isinstance(which, bool) or not isinstance(which, int):
        raise LabtrackTypeError(
            f"which checkpoint must be 'last', 'best' or a step number, got {type(which).__name__} {which!r}"
        )
    if which not in infos:
        steps = sorted(infos)
        raise LabtrackValueError(f"run {run_dir.name} has no checkpoint at step {which}; saved steps: {steps}")
    return which


_PLAIN_TYPES = (str, bytes, int, float, complex, bool, type(None))


def _plain(obj: Any, depth: int = 0) -> bool:
    """True for plain Python data and numpy values, which pickle writes without torch."""
    if isinstance(obj, _PLAIN_TYPES):
        return True
    if depth > 50:
        return False
    if type(obj) in (dict, OrderedDict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in obj.items())
    if type(obj) in (list, tuple, set, frozenset):
        return all(_plain(v, depth + 1) for v in obj)
    cls = type(obj)
    if cls.__module__ == "numpy":  # ndarray and numpy scalars; not object arrays (any content)
        return getattr(getattr(obj, "dtype", None), "kind", "O") != "O"
    return False


def _unwrap(obj: Any) -> Any:
    """Replace DataParallel / DistributedDataParallel models by their `.module`."""
    torch = sys.modules.get("torch")
    if torch is None:  # an object cannot hold a torch module unless torch is imported
        return obj
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return _unwrap_in(obj, wrappers, 0)


def _unwrap_in(obj: Any, wrappers: tuple[type, ...], depth: int) -> Any:
    if isinstance(obj, wrappers):
        return _unwrap_in(getattr(obj, "module"), wrappers, depth + 1)
    if depth > 20:
        return obj
    if isinstance(obj, dict) and type(obj) in (dict, OrderedDict):
        items = [(k, _unwrap_in(v, wrappers, depth + 1)) for k, v in obj.items()]
        if all(new is obj[k] for k, new in items):
            return obj
        out = type(obj)(items)
        if hasattr(obj, "_metadata"):  # a state_dict's version metadata
            setattr(out, "_metadata", getattr(obj, "_metadata"))
        return out
    if type(obj) in (list, tuple):
        seq = [_unwrap_in(v, wrappers, depth + 1) for v in obj]
        if all(a is b for a, b in zip(seq, obj)):
            return obj
        return type(obj)(seq)
    return obj

