"""`labtrack merge ROOT... --into ROOT`: the runs of several roots (machines that logged
offline, a laptop and a cluster) copied into one, without id clashes (docs/import-export.md).

Each run folder `<root>/<experiment>/<run id>` is copied to the same place in the target:

* absent there: copied, whole or not at all (`_store/merge.py`: a hidden folder, then a
  rename), so a merge that is killed leaves no half run and the next one completes it;
* there with the same files and bytes: skipped, so merging again changes nothing;
* there as an earlier state of the same run (the same id, experiment, start and host in
  run.json, every file the same or appended to since: it went on logging after a first
  merge): replaced by the newer copy, whole; the target's copy being the newer, skipped;
* there with other content (two machines made the same id, or the run was edited on one
  side): the newcomer arrives under a new id, derived from its id and content (the same on
  every merge, so a re-merge finds it), and its run.json says "merged_from": {"root", "id",
  "digest"};
* still running (its heartbeat is fresh, or its process is alive on this host): left out and
  named in the summary; merge again when it has finished. A crashed run is copied as it is.

Runs are found and read through the store (`iter_runs`, RunDir): nothing that resolves
outside a source root (a symlinked experiment, run folder or file) is read. The target's
index is a cache that sees new run folders on its next refresh (`labtrack ls` refreshes it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._store import merge as store
from ._store.contain import real
from ._store.rundir import RunDir, iter_runs, run_folder
from .errors import FormatError, LabtrackError, LabtrackValueError


class MergeResult:
    """What one merge did: runs copied, updated, renamed (id clashes), already there, live,
    unreadable."""

    def __init__(self, into: Path) -> None:
        self.into = into
        self.copied: list[str] = []
        self.updated: list[str] = []  # the same run, grown since the target's copy was made
        self.renamed: list[tuple[str, str]] = []  # (original "exp/id", new "exp/id")
        self.same: list[str] = []
        self.live: list[str] = []
        self.failed: list[tuple[str, str]] = []  # ("exp/id", why)
        self.bytes = 0
        self.started = time.perf_counter()

    def summary(self) -> str:
        """One line: what was copied, skipped and left out, in how long."""
        n = len(self.copied) + len(self.renamed) + len(self.updated)
        parts = [f"merged {n} run{'s' if n != 1 else ''} ({self.bytes / 1e6:.1f} MB) into {self.into}"]
        if self.renamed:
            parts.append(f"{len(self.renamed)} under a new id (id clash: "
                         + ", ".join(f"{a} -> {b.rpartition('/')[2]}" for a, b in self.renamed[:3])
                         + (", ..." if len(self.renamed) > 3 else "") + ")")
        if self.updated:
            parts.append(f"{len(self.updated)} updated (grown since an earlier merge)")
        if self.same:
            parts.append(f"{len(self.same)} already there")
        if self.live:
            parts.append(f"{len(self.live)} still running, left out (" + ", ".join(self.live[:3])
                         + (", ..." if len(self.live) > 3 else "") + "; merge again when finished)")
        if self.failed:
            parts.append(f"{len(self.failed)} unreadable, left out (" + "; ".join(
                f"{r}: {why}" for r, why in self.failed[:2]) + (", ..." if len(self.failed) > 2 else "") + ")")
        return ", ".join(parts) + f" in {time.perf_counter() - self.started:.1f} s"


def merge(roots: Sequence[Path], into: Path, *, progress: bool | None = None) -> str:
    """Copy every run of `roots` into the root `into`; returns the one-line summary.

    Args:
        roots: the source roots (each `<root>/<experiment>/<run id>/...`).
        into: the target root (made when missing); it may also be one of `roots`.
        progress: show a progress bar (default: when stderr is a terminal).

    Raises:
        LabtrackValueError: a source root that does not exist or is not a folder.

    Example:
        >>> merge([Path("laptop/labtrack"), Path("cluster/labtrack")], Path("labtrack"))
    """
    return merge_runs(roots, into, progress=progress).summary()


def merge_runs(roots: Sequence[Path], into: Path, *, progress: bool | None = None) -> MergeResult:
    """`merge`, returning the MergeResult (the lists of runs) instead of its summary line."""
    for root in roots:
        if not Path(root).is_dir():
            raise LabtrackValueError(f"cannot merge from {os.fspath(root)!r}: it is not a folder of runs")
    target = Path(into).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    result = MergeResult(target)
    real_target = real(target)
    plan = [(Path(root), run) for root in roots if real(root) != real_target for run in iter_runs(root)]
    result.same += [f"{r.experiment_dir}/{r.id}" for root in roots if real(root) == real_target
                    for r in iter_runs(root)]
    cleaned: set[str] = set()
    with _Progress(progress, len(plan)) as bar:
        for root, run in plan:
            name = f"{run.experiment_dir}/{run.id}"
            try:
                if run.experiment_dir not in cleaned:
                    store.clean_partial(target, run.experiment_dir)
                    cleaned.add(run.experiment_dir)
                _merge_one(root, run, target, result)
            except (LabtrackError, OSError) as e:
                result.failed.append((name, str(e)))
            bar.advance(name)
    return result


def _merge_one(root: Path, run: RunDir, target: Path, result: MergeResult) -> None:
    name = f"{run.experiment_dir}/{run.id}"
    try:
        status = run.meta().get("status")
    except FileNotFoundError:
        raise FormatError(f"{run.path} has no run.json") from None
    if status == "running":
        result.live.append(name)
        return
    dest = run_folder(target, run.experiment_dir, run.id)
    for _ in range(2):  # a second look when another merge put the run there meanwhile
        here = RunDir(dest, target)
        if not here.exists():
            try:
                result.bytes += store.copy_run(run, dest)
            except FileExistsError:
                if here.exists():
                    continue  # another merge copied it meanwhile: compare with that
                _merge_renamed(root, run, target, result)  # a folder there that is no run
                return
            result.copied.append(name)
            return
        if store.same_files(run, here):
            result.same.append(name)
            return
        mine = store.identity(run)
        if mine is not None and mine == store.identity(here):  # one run, two moments of its life
            if store.grown(here, run):
                result.same.append(name)  # the target's copy is the later one
            elif store.grown(run, here):
                if here.meta().get("status") == "running":
                    result.live.append(f"{name} (in the target)")
                    return
                result.bytes += store.copy_run(run, dest, replace=True)
                result.updated.append(name)
            else:
                _merge_renamed(root, run, target, result)
            return
        _merge_renamed(root, run, target, result)
        return
    raise LabtrackValueError(f"{dest} kept changing while {name} was merged into it; merge again")


def _merge_renamed(root: Path, run: RunDir, target: Path, result: MergeResult) -> None:
    """A different run holds this id in the target: the newcomer gets its clash id."""
    name = f"{run.experiment_dir}/{run.id}"
    content = store.digest(run)
    if _renamed_before(root, run, target, content, result):
        return
    for attempt in range(100):
        new_id = store.clash_id(run.id, content, attempt)
        dest = run_folder(target, run.experiment_dir, new_id)
        here = RunDir(dest, target)
        if here.exists():
            origin = store.merged_from(here)
            if origin is not None and origin.get("id") == run.id and origin.get("digest") == content:
                result.same.append(name)
                return
            continue  # another run (or another newcomer) has that id too: the next one
        meta: dict[str, Any] = {"id": new_id, "merged_from": {"root": real(root), "id": run.id,
                                                              "digest": content}}
        try:
            result.bytes += store.copy_run(run, dest, meta)
        except FileExistsError:
            continue
        result.renamed.append((name, f"{run.experiment_dir}/{new_id}"))
        return
    raise LabtrackValueError(f"no free id for {name} in {target} after 100 tries")


def _renamed_before(root: Path, run: RunDir, target: Path, content: str, result: MergeResult) -> bool:
    """True when an earlier merge brought this run in under a new id (its "merged_from"
    names it) and that copy is now brought up to date: the same (skipped), or an earlier
    state of the run, which the newer copy replaces under the same new id."""
    name = f"{run.experiment_dir}/{run.id}"
    mine = store.identity(run)
    for other in store.renamed_copies(target, run.experiment_dir, run.id):
        origin = store.merged_from(other) or {}
        theirs = store.identity(other)
        if origin.get("digest") == content:
            result.same.append(name)
            return True
        if mine is None or theirs is None or mine[1:] != theirs[1:]:
            continue  # the id is all they share: another newcomer of the same id
        if store.grown(other, run):
            result.same.append(name)
        elif store.grown(run, other):
            meta = {"id": other.id, "merged_from": {**origin, "root": real(root), "digest": content}}
            result.bytes += store.copy_run(run, other.path, meta, replace=True)
            result.updated.append(f"{name} (as {other.id})")
        else:
            continue
        return True
    return False


class _Progress:
    """A rich progress bar over the runs on a terminal; nothing when piped."""

    def __init__(self, show: bool | None, total: int) -> None:
        self._bar: Any = None
        if show is None:
            show = sys.stderr.isatty()
        if show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("merging {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task("", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, name: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=name)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
