"""Object storage through fsspec back ends other than S3: a run trained with
``root="file://..."`` or ``root="memory://..."`` reads back through ``labtrack.open`` equal to
its spool, and compaction leaves plain objects (no multipart copies off S3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import labtrack
from labtrack._store import layout, lod


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*")
            if p.is_file() and p.relative_to(run_dir).parts[0] not in (lod.DIR, layout.ROW_JSON)}


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_a_run_on_another_fsspec_back_end_round_trips(scheme: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fsspec = pytest.importorskip("fsspec")
    monkeypatch.setenv("LABTRACK_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("LABTRACK_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("LABTRACK_SYNC_TIMEOUT", "30")
    url = f"file://{tmp_path}/bucket/runs" if scheme == "file" else f"memory://lt-{tmp_path.name}/runs"
    run = labtrack.init(experiment="e", root=url, config={"lr": 0.1}, capture_git=False,
                        capture_console=False, system=False)
    assert isinstance(run, labtrack.Run)
    for i in range(2000):
        run.log({"loss": 1.0 / (i + 1)}, step=i)
        if i % 500 == 0:
            run.flush()
            time.sleep(0.3)  # several segments, then compaction joins them
    run.finish()
    local = _files(run.dir)
    fs = fsspec.filesystem(scheme)
    base = (f"{tmp_path}/bucket/runs" if scheme == "file" else f"/lt-{tmp_path.name}/runs") \
        + f"/e/{run.id}"
    stored = {p[len(base) + 1:]: fs.cat_file(p) for p in fs.find(base)
              if "/.labtrack/" not in p[len(base):]}
    assert stored == local  # compacted: the plain run directory
    book = labtrack.open(url)
    view = book[run.id]
    assert view.params == {"lr": 0.1} and len(view.scalars("loss")) == 2000
    assert _files(view.dir) == local
