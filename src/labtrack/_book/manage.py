"""Changing runs after the fact: trash, empty the trash, move, tag, comment, notes.

Only finished (or crashed) runs are changed: a live run's writer keeps run.json in memory
and would overwrite an edit, and moving its folder would pull it from under the writer.
run.json is rewritten atomically with every key it had (readers ignore keys they do not
know, so nothing of a newer writer is lost).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .._names import slug
from .._store import layout
from .._store.files import atomic_write_bytes, atomic_write_json
from .._store.rundir import RunDir
from ..errors import LabtrackValueError, RunStateError

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_TAG_LENGTH = 100
MAX_TAGS = 100
MAX_COMMENT_LENGTH = 10_000
MAX_NOTES_LENGTH = 1_000_000
_COMMENT_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")


def _refuse_live(run_dir: Path, action: str) -> dict[str, Any]:
    meta = RunDir(run_dir).meta()
    if meta.get("status") == "running":
        raise RunStateError(
            f"run {meta.get('id')} is still running (pid {meta.get('pid')} on {meta.get('host')}); "
            f"cannot {action} a live run: wait until it finishes (or stops sending heartbeats)"
        )
    return meta


def _rewrite_run_json(run_dir: Path, **changes: Any) -> dict[str, Any]:
    path = RunDir(run_dir).file(layout.RUN_JSON)  # refused when it leads outside the run
    # Read without decoding "NaN" strings so the file round-trips byte-for-byte in meaning.
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise LabtrackValueError(f"{path} does not hold a JSON object")
    raw.update(changes)
    atomic_write_json(path, raw)
    return raw


def check_tag(tag: object) -> str:
    """Return a tag stripped of surrounding space, or raise for an unusable one."""
    if not isinstance(tag, str):
        raise LabtrackValueError(f"a tag must be text, got {type(tag).__name__} {tag!r}")
    t = tag.strip()
    if not t or len(t) > MAX_TAG_LENGTH or _CONTROL.search(t):
        raise LabtrackValueError(
            f"tag {tag!r} is not allowed; a tag is 1 to {MAX_TAG_LENGTH} characters without "
            "control characters")
    return t


def tag(run_dir: Path, tags: list[str], *, remove: bool = False) -> list[str]:
    """Add (or remove) tags of a run; returns the run's tags afterwards.

    Raises:
        LabtrackValueError: a tag that is empty, too long or has control characters.
        RunStateError: the run is still running.
    """
    wanted = [check_tag(t) for t in tags]
    meta = _refuse_live(run_dir, "tag")
    current = [str(t) for t in meta.get("tags") or []]
    if remove:
        new = [t for t in current if t not in wanted]
    else:
        new = current + [t for t in dict.fromkeys(wanted) if t not in current]
    if new != current:
        _rewrite_run_json(run_dir, tags=new)
    return new


def check_comment(text: object) -> str:
    """Return a comment, or raise for one that is not text, too long, or has control
    characters other than newlines."""
    if not isinstance(text, str) or _COMMENT_CONTROL.search(text) or len(text) > MAX_COMMENT_LENGTH:
        shown = text if not isinstance(text, str) or len(text) <= 80 else text[:80] + "..."
        raise LabtrackValueError(
            f"comment {shown!r} is not allowed; a comment is text of at most "
            f"{MAX_COMMENT_LENGTH:,} characters without control characters (newlines are fine)")
    return text


def check_notes(text: object) -> str:
    """Return notes (markdown), or raise for ones that are not text, too long, or have
    control characters other than newlines and tabs."""
    if not isinstance(text, str) or re.search("[\x00-\x08\x0b-\x1f\x7f]", text) \
            or len(text) > MAX_NOTES_LENGTH:
        kind = type(text).__name__ if not isinstance(text, str) else f"{len(text):,} characters of text"
        raise LabtrackValueError(
            f"notes ({kind}) are not allowed; notes are markdown text of at most "
            f"{MAX_NOTES_LENGTH:,} characters without control characters (newlines and tabs are fine)")
    return text


def check_tags(tags: object) -> list[str]:
    """Return a list of tags, each checked by :func:`check_tag`, duplicates dropped."""
    if not isinstance(tags, list):
        raise LabtrackValueError(f"tags must be a list of text, got {type(tags).__name__} {tags!r}"[:300])
    out = list(dict.fromkeys(check_tag(t) for t in tags))
    if len(out) > MAX_TAGS:
        raise LabtrackValueError(f"{len(out)} tags are too many; a run has at most {MAX_TAGS}")
    return out


def set_comment(run_dir: Path, text: str) -> None:
    """Replace a run's comment.

    Raises:
        LabtrackValueError: `text` is not a str, is too long, or has control characters
            other than newlines.
        RunStateError: the run is still running.
    """
    edit(run_dir, comment=text)


def set_notes(run_dir: Path, text: str) -> None:
    """Replace a run's notes (markdown in notes.md; empty text removes the file).

    Unlike the comment and tags (in run.json, which a live run's writer rewrites), notes
    may be written while the run is running: no writer touches notes.md.

    Raises:
        LabtrackValueError: `text` is not a str, is too long, or has control characters.
    """
    edit(run_dir, notes=text)


def edit(run_dir: Path, *, comment: str | None = None, tags: list[str] | None = None,
         notes: str | None = None) -> dict[str, Any]:
    """Change a run's comment, tags (the whole list) and notes at once; None leaves one as
    it is. Everything is checked before anything is written, so a bad value changes nothing.

    Returns:
        `{"comment", "tags", "notes"}` as they are afterwards.

    Raises:
        LabtrackValueError: a bad comment, tag or notes (the message names it).
        RunStateError: the comment or tags of a running run.

    Example:
        >>> edit(run_dir, comment="stride fix", tags=["cnn", "best"], notes="# Why\n...")
    """
    changes: dict[str, Any] = {}
    if comment is not None:
        changes["comment"] = check_comment(comment)
    if tags is not None:
        changes["tags"] = check_tags(tags)
    if notes is not None:
        notes = check_notes(notes)
    rd = RunDir(run_dir)
    if changes:
        meta = _refuse_live(run_dir, "change the comment or tags of")
        if any(meta.get(k) != v for k, v in changes.items()):
            meta = _rewrite_run_json(run_dir, **changes)
    else:
        meta = rd.meta()
    if notes is not None:
        path = rd.file(layout.NOTES_MD)  # refused when it leads outside the run
        if notes:
            atomic_write_bytes(path, notes.encode("utf-8"))
        elif path.exists():
            path.unlink()
    return {"comment": meta.get("comment") or "", "tags": [str(t) for t in meta.get("tags") or []],
            "notes": rd.notes()}


def check_experiment(name: object) -> str:
    """Return an experiment name, or raise for an empty one or one with control characters."""
    if not isinstance(name, str) or not name.strip() or _CONTROL.search(name) or len(name) > 250:
        raise LabtrackValueError(
            f"experiment name {name!r} is not allowed; use 1 to 250 characters without control characters")
    return name.strip()


def move(root: Path, run_dir: Path, experiment: str) -> Path:
    """Move a run to another experiment: its folder and run.json's "experiment".

    Returns:
        The run's new directory.

    Raises:
        LabtrackValueError: a bad experiment name, or a run with that id already there.
        RunStateError: the run is still running.
    """
    experiment = check_experiment(experiment)
    meta = _refuse_live(run_dir, "move")
    target = root / slug(experiment) / run_dir.name
    if target.resolve() == run_dir.resolve():
        if meta.get("experiment") != experiment:
            _rewrite_run_json(run_dir, experiment=experiment)
        return run_dir
    if target.exists():
        raise LabtrackValueError(f"cannot move run {run_dir.name} to {experiment!r}: {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(run_dir, target)
    try:
        _rewrite_run_json(target, experiment=experiment)
    except BaseException:
        os.rename(target, run_dir)  # put it back as it was
        raise
    try:
        run_dir.parent.rmdir()  # the old experiment folder, if that was its last run
    except OSError:
        pass
    return target


def trash(root: Path, run_dir: Path) -> Path:
    """Move a run into `<root>/.trash/<experiment folder>/<id>`; returns the new path.

    Raises:
        RunStateError: the run is still running.
    """
    _refuse_live(run_dir, "remove")
    target = root / layout.TRASH_DIR / run_dir.parent.name / run_dir.name
    n = 1
    while target.exists():  # the same id trashed before (a copied run)
        target = target.with_name(f"{run_dir.name}.{n}")
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(run_dir, target)
    try:
        run_dir.parent.rmdir()
    except OSError:
        pass
    return target


def trash_contents(root: Path) -> tuple[int, int]:
    """How many runs are in the trash and how many bytes they hold."""
    base = root / layout.TRASH_DIR
    runs = 0
    size = 0
    if not base.is_dir():
        return 0, 0
    for exp in base.iterdir():
        if not exp.is_dir():
            continue
        for r in exp.iterdir():
            runs += 1
            for dirpath, _dirs, files in os.walk(r):
                for fn in files:
                    try:
                        size += os.lstat(os.path.join(dirpath, fn)).st_size
                    except OSError:
                        pass
    return runs, size


def empty_trash(root: Path) -> tuple[int, int]:
    """Delete everything in `<root>/.trash`; returns (runs, bytes) deleted."""
    counts = trash_contents(root)
    base = root / layout.TRASH_DIR
    if base.is_dir():
        shutil.rmtree(base)
    return counts
