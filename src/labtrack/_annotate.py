"""Results in the source file: write a run's summary into its script as a docstring block.

Only `labtrack annotate RUN` and a run started with `labtrack.init(annotate=True)` (at each
progress snapshot) do this (opt-in); nothing else edits user files. The block is
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


PROGRESS_ROWS = 50  # the block shows the last this many snapshots (run.json keeps all)


def flat(params: Any) -> dict[str, Any]:
    """Params flattened with `.` for the block's params line (pure)."""
    from ._console._format import flatten

    return flatten(params) if isinstance(params, dict) else ({} if params is None else {"value": params})


def _table(header: list[str], rows: list[list[str]], right: bool) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def cell(c: str, w: int, i: int) -> str:
        return c.rjust(w) if right and i else c.ljust(w)

    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(cell(c, w, i) for i, (c, w) in enumerate(zip(r, widths))) + " |" for r in rows]
    return out


def progress_lines(progress: Any) -> list[str]:
    """Lab's progress table: `global_step | <values>`, one row per snapshot (pure)."""
    snaps = [s for s in progress if isinstance(s, dict)] if isinstance(progress, list) else []
    if not snaps:
        return []
    names: list[str] = []
    for snap in snaps:
        for key in (snap.get("values") or {}):
            if key not in names:
                names.append(key)
    shown = snaps[-PROGRESS_ROWS:]
    rows = [[_fmt(s.get("step"))] + [_fmt((s.get("values") or {}).get(n)) for n in names] for s in shown]
    lines = _table(["global_step", *names], rows, right=True)
    if len(snaps) > len(shown):
        lines.insert(2, f"(the last {len(shown)} of {len(snaps)} snapshots; run.json keeps all)")
    return lines


def render_block(meta: dict[str, Any], params: dict[str, Any], summary: dict[str, Any] | None,
                 newline: str = "\n") -> str:
    """The docstring block for one run, in Lab's layout: the trial's date and comment, the
    dirty mark, the start step, params, the `global_step | <progress values>` table and (from
    `labtrack annotate`) the summary table.

    Args:
        meta: run.json (with derived status).
        params: flattened params.
        summary: summary.json, or None for the block a live run writes at each snapshot.
        newline: the file's line ending.

    Returns:
        The block's text, ending with a newline.

    Example:
        >>> render_block({"id": "r1", "experiment": "mnist", "start_step": 0}, {}, None)
    """
    name = meta.get("name") or ""
    started = str(meta.get("started") or "")[:19].replace("T", " ")
    # The live block leaves the status out: written at a snapshot, it would say "running" forever.
    status = f"  {meta.get('status')}" if summary is not None else ""
    lines = [f"run {meta.get('id')}  {meta.get('experiment')}{'/' + name if name else ''}{status}"]
    lines.append(f"{started} UTC" + (f"  {meta['comment']}" if meta.get("comment") else ""))
    git = meta.get("git") if isinstance(meta.get("git"), dict) else None
    if git and git.get("commit"):
        lines.append(f"commit {str(git['commit'])[:10]}{'  [[dirty]]' if git.get('dirty') else ''}")
    lines.append(f"start_step: {_fmt(meta.get('start_step', 0))}")
    if params:
        lines.append("params: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
    progress = progress_lines(meta.get("progress"))
    if progress:
        lines += ["", *progress]
    if summary:
        header = ["metric", "last", "min", "max", "mean", "count", "step"]
        rows = [[n] + [_fmt(s.get(k)) for k in header[1:]] for n, s in sorted(summary.items())
                if isinstance(s, dict)]
        lines += ["", *_table(header, rows, right=False)]
    elif summary is not None and not progress:
        lines.append("(no scalar series logged)")
    body = newline.join(_escape(line).rstrip() for line in lines)
    return (f"{BEGIN} (written by labtrack; the next snapshot or `labtrack annotate` replaces it)"
            f"{newline}{body}{newline}{END}{newline}")


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
    params = flat(run.params())
    summary = run.summary()
    block = render_block(meta, params, summary)
    annotate_file(file, block, dry_run=dry_run)
    return file, block
