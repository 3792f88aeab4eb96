"""Results in the source file: write a run's summary into its script as a docstring block.

Only `labtrack annotate RUN` does this (opt-in); nothing else edits user files. The block is
a plain string expression at the end of the script (or where a previous block was), between
a first line starting with `\"\"\"labtrack results` and a last line `labtrack results end\"\"\"`,
so running the script is unaffected and a later annotate replaces it.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from ._store.files import atomic_write_bytes
from ._store.rundir import RunDir
from .errors import LabtrackValueError

BEGIN = '"""labtrack results'
END = 'labtrack results end"""'
_BLOCK = re.compile(r'^"""labtrack results\b.*?^labtrack results end"""[ \t]*(?:\r?\n)?',
                    re.MULTILINE | re.DOTALL)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.6g}"
    return str(v)


def _escape(text: str) -> str:
    # Inside a triple-quoted literal: no backslash escapes and no closing quotes.
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def render_block(meta: dict[str, Any], params: dict[str, Any], summary: dict[str, Any],
                 newline: str = "\n") -> str:
    """The docstring block for one run: header, params, and the summary table.

    Args:
        meta: run.json (with derived status).
        params: flattened params.
        summary: summary.json.
        newline: the file's line ending.
    """
    name = meta.get("name") or ""
    started = str(meta.get("started") or "")[:16].replace("T", " ")
    lines = [f"run {meta.get('id')}  {meta.get('experiment')}{'/' + name if name else ''}  "
             f"{meta.get('status')}  started {started} UTC"]
    git = meta.get("git") if isinstance(meta.get("git"), dict) else None
    if git and git.get("commit"):
        lines.append(f"commit {str(git['commit'])[:10]}{' (dirty)' if git.get('dirty') else ''}")
    if meta.get("comment"):
        lines.append(f"comment: {meta['comment']}")
    if params:
        lines.append("params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
    if summary:
        header = ["metric", "last", "min", "max", "mean", "count", "step"]
        rows = [[n] + [_fmt(s.get(k)) for k in header[1:]] for n, s in sorted(summary.items())
                if isinstance(s, dict)]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append("")
        lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    else:
        lines.append("(no scalar series logged)")
    body = newline.join(_escape(line).rstrip() for line in lines)
    return (f"{BEGIN} (written by `labtrack annotate`; the next annotate replaces it){newline}"
            f"{body}{newline}{END}{newline}")


def annotate_file(path: Path, block: str, *, dry_run: bool = False) -> str:
    """Put `block` into the Python file at `path`, replacing an earlier block.

    Args:
        path: a `.py` file.
        block: from :func:`render_block`.
        dry_run: compute the new text, write nothing.

    Returns:
        The file's new text.

    Raises:
        LabtrackValueError: not a .py file, missing, not UTF-8, or the result would not
            compile (the file is left untouched).

    Example:
        >>> annotate_file(Path("train.py"), render_block(meta, params, summary))
    """
    if path.suffix != ".py":
        raise LabtrackValueError(f"{path} is not a Python file (.py); annotate writes only into .py files")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabtrackValueError(f"{path} does not exist on this machine; pass --file with the "
                                 "script's path here") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabtrackValueError(f"{path} is not UTF-8 text ({e}); annotate leaves it alone") from None
    newline = "\r\n" if "\r\n" in text else "\n"
    if newline != "\n":
        block = block.replace("\r\n", "\n").replace("\n", newline)
    if _BLOCK.search(text):
        new = _BLOCK.sub(lambda _m: block, text, count=1)
    else:
        sep = "" if not text or text.endswith(newline * 2) else (newline if text.endswith(newline) else newline * 2)
        new = text + sep + block
    try:
        compiled_before = True
        compile(text, str(path), "exec")
    except SyntaxError:
        compiled_before = False
    if compiled_before:
        try:
            compile(new, str(path), "exec")
        except SyntaxError as e:
            raise LabtrackValueError(f"annotating {path} would break its syntax ({e}); nothing was written") from None
    if not dry_run and new != text:
        mode = os.stat(path).st_mode & 0o7777
        atomic_write_bytes(path, new.encode("utf-8"))
        os.chmod(path, mode)
    return new


def _installed(path: Path) -> bool:
    """True for files of the Python installation or a virtualenv (pytest, ipykernel ...)."""
    import sys

    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    resolved = path.resolve()
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        if resolved.is_relative_to(Path(prefix).resolve()):
            return True
    return False


def annotate_run(run_dir: Path | RunDir, file: Path | None = None, *,
                 dry_run: bool = False) -> tuple[Path, str]:
    """Write a run's summary into its script (run.json command.script, or `file`).

    Returns:
        `(path, block)`: the file written (or that would be) and the block.

    Raises:
        LabtrackValueError: the run recorded no script and no `file` was given, or the file
            cannot be annotated (see :func:`annotate_file`).
    """
    from ._index import flatten_params

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    meta = run.meta()
    if file is None:
        script = (meta.get("command") or {}).get("script") if isinstance(meta.get("command"), dict) else None
        if not script:
            raise LabtrackValueError(
                f"run {meta.get('id')} recorded no script file (it did not run from a .py file); "
                "pass --file PATH")
        file = Path(script)
        cwd = meta["command"].get("cwd")
        if not file.is_absolute() and isinstance(cwd, str):
            file = Path(cwd) / file
        if _installed(file):
            raise LabtrackValueError(
                f"run {meta.get('id')} was started by {file}, which belongs to an installed "
                "package, not to your experiment; pass --file PATH")
    params = flatten_params(run.params())
    summary = run.summary()
    block = render_block(meta, params, summary)
    annotate_file(file, block, dry_run=dry_run)
    return file, block
