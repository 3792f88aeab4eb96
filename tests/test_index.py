"""The run index: incremental refresh, query semantics, derived status, robustness, concurrency."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import tempfile
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import labtrack
from conftest import child_env, read_line
from labtrack._index import Index
from labtrack.errors import LabtrackValueError, QueryError, RunNotFoundError

ROW_KEYS = {"id", "experiment", "name", "comment", "tags", "status", "started", "ended", "duration",
            "commit", "dirty", "host", "user", "parent", "group", "job_type", "params", "metrics", "dir"}


def write_run(root: Path, experiment: str, run_id: str, *, status: str = "finished",
              params: Any = None, summary: dict[str, Any] | None = None, host: str = "elsewhere",
              pid: int = 999_999, started: str | None = None, **meta: Any) -> Path:
    """A run directory written by hand exactly as docs/format.md describes."""
    d = root / experiment.replace("/", "-") / run_id
    d.mkdir(parents=True)
    started = started or (f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:"
                          f"{run_id[11:13]}:{run_id[13:15]}.000000+00:00")
    doc = {"format_version": 1, "id": run_id, "experiment": experiment, "name": "", "comment": "",
           "tags": [], "status": status, "started": started,
           "ended": None if status == "running" else started, "pid": pid, "host": host,
           "user": "u", "command": {"argv": ["train.py"], "script": "/x/train.py", "cwd": "/x",
                                    "python": "python3"},
           "git": None, "seed": None, "parent": None, "error": None,
           "checkpoints": {"last": None, "best": None, "mode": None, "metric": None}}
    doc.update(meta)
    (d / "run.json").write_text(json.dumps(doc))
    (d / "params.json").write_text(json.dumps(params if params is not None else {}))
    (d / "summary.json").write_text(json.dumps(summary or {}))
    (d / "heartbeat").touch()
    return d


def stat(last: float, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"last": last, "min": last if lo is None else lo, "max": last if hi is None else hi,
            "mean": last, "sum": last, "count": 1, "step": 0, "time": 1.0}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    write_run(r, "mnist", "20261121-100000-aaaaaa", name="base", tags=["cnn"], comment="first try",
              params={"lr": 0.1, "opt": {"name": "adam"}, "batch": 64},
              summary={"train/loss": stat(0.5, 0.2, 2.0), "acc": stat(0.8)},
              git={"commit": "abcdef0123", "dirty": True, "branch": "main"})
    write_run(r, "mnist", "20261121-110000-bbbbbb", name="small-lr", params={"lr": 0.01, "batch": 32},
              summary={"train/loss": stat(0.05, 0.04, 2.0), "acc": stat(0.95)})
    write_run(r, "cifar", "20261121-120000-cccccc", name="base", params={"lr": 0.1},
              summary={"val acc/top-1": stat(0.6)}, status="failed")
    write_run(r, "cifar", "20261121-130000-dddddd", name="nolr", params={"wd": 1e-4})
    return r


@pytest.fixture
def index(root: Path) -> Any:
    ix = Index(root, stale_seconds=30)
    yield ix
    ix.close()


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"][-6:] for r in rows]


def test_refresh_reads_new_runs_then_only_changes(root: Path, index: Index) -> None:
    assert index.refresh() == {"added": 4, "updated": 0, "removed": 0, "unreadable": 0, "total": 4}
    assert index.refresh() == {"added": 0, "updated": 0, "removed": 0, "unreadable": 0, "total": 4}
    assert (root / ".labtrack" / "index.sqlite").is_file()
    run_json = root / "mnist" / "20261121-100000-aaaaaa" / "run.json"
    doc = json.loads(run_json.read_text())
    doc["comment"] = "edited"
    tmp = run_json.with_name(".run.json.x.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, run_json)  # the way labtrack rewrites it
    assert index.refresh()["updated"] == 1
    assert index.query(q="edited")[0] == 1
    import shutil

    shutil.rmtree(root / "cifar" / "20261121-130000-dddddd")
    result = index.refresh()
    assert result["removed"] == 1 and result["total"] == 3
    assert "dddddd" not in ids(index.query()[1])


def test_rows_have_the_api_shape_newest_first(index: Index) -> None:
    total, rows = index.query()
    assert total == 4
    assert ids(rows) == ["dddddd", "cccccc", "bbbbbb", "aaaaaa"]
    for r in rows:
        assert set(r) == ROW_KEYS
    base = rows[-1]
    assert base["params"] == {"lr": 0.1, "opt.name": "adam", "batch": 64}
    assert base["metrics"] == {"train/loss": 0.5, "acc": 0.8}
    assert base["commit"] == "abcdef0123" and base["dirty"] is True
    assert base["tags"] == ["cnn"] and base["comment"] == "first try"
    assert base["duration"] == 0.0 and base["status"] == "finished"
    assert Path(base["dir"]).is_dir()


def test_where_experiment_status_text_and_paging(index: Index) -> None:
    assert ids(index.query(where="params.lr < 0.05")[1]) == ["bbbbbb"]
    assert ids(index.query(where="metrics.train/loss:min < 0.1")[1]) == ["bbbbbb"]
    assert ids(index.query(where='metrics."val acc/top-1" > 0.5')[1]) == ["cccccc"]
    assert ids(index.query(where='"cnn" in tags or status == "failed"')[1]) == ["cccccc", "aaaaaa"]
    assert ids(index.query(experiment="cifar")[1]) == ["dddddd", "cccccc"]
    assert ids(index.query(status="failed")[1]) == ["cccccc"]
    assert ids(index.query(q="BASE")[1]) == ["cccccc", "aaaaaa"]
    assert ids(index.query(q="base mnist")[1]) == ["aaaaaa"]
    assert ids(index.query(q="aaaaa")[1]) == ["aaaaaa"]
    assert ids(index.query(q="failed")[1]) == ["cccccc"]  # free text searches the status too
    assert ids(index.query(q="FAILED base")[1]) == ["cccccc"]
    assert ids(index.query(q="crashed")[1]) == []  # a derived status: none of these is
    total, page = index.query(offset=1, limit=2)
    assert total == 4 and ids(page) == ["cccccc", "bbbbbb"]
    assert index.query(offset=10)[1] == []


def test_sorting_puts_missing_values_last(index: Index) -> None:
    assert ids(index.query(sort="params.lr")[1]) == ["bbbbbb", "cccccc", "aaaaaa", "dddddd"]
    assert ids(index.query(sort="-params.lr")[1])[-1] == "dddddd"
    assert ids(index.query(sort="-metrics.acc")[1])[:2] == ["bbbbbb", "aaaaaa"]
    assert ids(index.query(sort="metrics.train/loss:min")[1])[:2] == ["bbbbbb", "aaaaaa"]
    assert ids(index.query(sort="started")[1]) == ["aaaaaa", "bbbbbb", "cccccc", "dddddd"]
    assert ids(index.query(sort="name")[1])[:2] in (["aaaaaa", "cccccc"], ["cccccc", "aaaaaa"])


def test_bad_arguments_are_refused_with_what_is_allowed(index: Index) -> None:
    with pytest.raises(QueryError, match="did you mean params.lr"):
        index.query(where="params.lrr < 1")
    with pytest.raises(QueryError, match="which no run has"):
        index.query(where="metrics.nothing > 1")
    with pytest.raises(QueryError, match="cannot sort by 'bogus'"):
        index.query(sort="bogus")
    with pytest.raises(QueryError, match="status 'done' is not one of"):
        index.query(status="done")
    with pytest.raises(LabtrackValueError, match="offset and limit must be >= 0"):
        index.query(limit=-1)


def test_columns(index: Index) -> None:
    assert index.columns() == {"params": ["batch", "lr", "opt.name", "wd"],
                               "metrics": ["acc", "train/loss", "val acc/top-1"],
                               "experiments": ["cifar", "mnist"]}
    assert index.columns("cifar")["params"] == ["lr", "wd"]


def test_resolve(root: Path, index: Index) -> None:
    assert ids(index.resolve("20261121-100000-aaaaaa")) == ["aaaaaa"]
    assert ids(index.resolve("20261121-11")) == ["bbbbbb"]
    assert ids(index.resolve("20261121")) == ["dddddd", "cccccc", "bbbbbb", "aaaaaa"]
    assert ids(index.resolve("mnist/small-lr")) == ["bbbbbb"]
    assert ids(index.resolve("cifar/20261121-120000-cccccc")) == ["cccccc"]
    assert index.resolve("nothing") == []
    write_run(root, "team/vision", "20261121-140000-eeeeee", name="a/b")
    index.refresh()
    assert ids(index.resolve("team/vision/a/b")) == ["eeeeee"]
    with pytest.raises(RunNotFoundError):
        index.resolve("  ")


def test_a_dead_running_run_shows_as_crashed_at_query_time(root: Path, tmp_path: Path) -> None:
    import socket

    # A real process that has exited: its pid is not alive on this host.
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    write_run(root, "live", "20261121-150000-ffffff", status="running", host=socket.gethostname(),
              pid=p.pid)
    now = [time.time()]
    write_run(root, "live", "20261121-150001-gggggg", status="running", host="other-host",
              started=time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime(now[0])))
    ix = Index(root, stale_seconds=30, clock=lambda: now[0])
    try:
        rows = {r["id"][-6:]: r for r in ix.query(experiment="live")[1]}
        assert rows["ffffff"]["status"] == "crashed"
        assert rows["gggggg"]["status"] == "running"  # fresh heartbeat on another host
        assert rows["gggggg"]["duration"] is not None
        assert ids(ix.query(status="running")[1]) == ["gggggg"]
        assert ids(ix.query(status="crashed")[1]) == ["ffffff"]
        # Time passes with no heartbeat and no file changes: nothing stored says running.
        now[0] += 120
        assert ix.refresh()["updated"] == 0
        assert ids(ix.query(status="crashed")[1]) == ["gggggg", "ffffff"]
        assert ix.query(where='status == "running"')[0] == 0
        stored = sqlite3.connect(ix.path).execute(
            "SELECT status FROM runs WHERE id LIKE '%gggggg'").fetchone()[0]
        assert stored == "running"  # as run.json says; the derivation is never written back
    finally:
        ix.close()


def test_unreadable_runs_are_listed_as_problems_and_do_not_hide_others(root: Path, index: Index) -> None:
    bad = write_run(root, "mnist", "20261121-160000-hhhhhh")
    (bad / "run.json").write_text("{not json")
    newer = write_run(root, "mnist", "20261121-160001-iiiiii", format_version=99)
    result = index.refresh()
    assert result["unreadable"] == 2 and result["total"] == 4
    problems = dict(index.problems())
    assert "not valid JSON" in problems["mnist/20261121-160000-hhhhhh"]
    assert "format_version 99" in problems["mnist/20261121-160001-iiiiii"]
    assert index.refresh()["unreadable"] == 0  # not re-read while unchanged
    (bad / "run.json").write_text(json.dumps({"id": "20261121-160000-hhhhhh", "experiment": "mnist",
                                              "status": "finished", "started": None}))
    assert index.refresh()["added"] == 1
    assert dict(index.problems()).keys() == {"mnist/20261121-160001-iiiiii"}
    import shutil

    shutil.rmtree(newer)
    index.refresh()
    assert index.problems() == []


def test_dot_folders_and_stray_files_are_not_runs(root: Path, index: Index) -> None:
    write_run(root, ".trash", "20261121-170000-jjjjjj")
    (root / "mnist" / "notes.txt").write_text("x")
    (root / "mnist" / "empty-folder").mkdir()
    (root / "README").write_text("x")
    assert index.refresh()["total"] == 4


def test_a_corrupt_index_file_is_rebuilt(root: Path) -> None:
    path = root / ".labtrack" / "index.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 100)
    with Index(root) as ix:
        assert ix.query()[0] == 4
    with Index(root) as ix:
        assert ix.refresh()["added"] == 0  # it was really stored


def test_an_index_of_another_schema_version_is_rebuilt(root: Path) -> None:
    path = root / ".labtrack" / "index.sqlite"
    path.parent.mkdir()
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (relpath TEXT, junk TEXT)")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with Index(root) as ix:
        assert ix.query()[0] == 4


def test_rebuild_and_a_deleted_index(root: Path) -> None:
    with Index(root) as ix:
        ix.refresh()
        assert ix.rebuild()["added"] == 4
    for suffix in ("", "-wal", "-shm"):
        p = root / ".labtrack" / f"index.sqlite{suffix}"
        if p.exists():
            p.unlink()
    with Index(root) as ix:
        assert ix.query()[0] == 4


def test_threads_query_while_another_refreshes(root: Path, index: Index) -> None:
    index.refresh()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                total, rows = index.query(where="params.lr > 0")
                assert total == len(rows) and total >= 3
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(15):
            write_run(root, "more", f"20261121-18{i:04d}-kkkkkk", params={"lr": 0.5})
            index.refresh()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    assert index.query(experiment="more")[0] == 15


def test_two_processes_refresh_the_same_index(root: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from labtrack._index import Index
        ix = Index({str(root)!r})
        for _ in range(25):
            ix.refresh()
            total, rows = ix.query()
            assert total == len(rows) >= 4, total
        ix.close()
        print("ok")
    """)
    child = subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        with Index(root) as ix:
            for i in range(25):
                if i % 5 == 0:
                    write_run(root, "proc", f"20261121-19{i:04d}-llllll")
                ix.refresh()
                ix.query()
    finally:
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.strip() == "ok"


def test_a_run_being_written_is_listed_as_running_with_its_data_so_far(tmp_path: Path) -> None:
    root = tmp_path / "root"
    go_on = tmp_path / "go-on"
    code = textwrap.dedent(f"""
        import time, pathlib, labtrack
        run = labtrack.init(experiment="live", config={{"lr": 0.3}}, root={str(root)!r},
                            capture_git=False, capture_console=False, flush_seconds=0.05)
        for step in range(50):
            run.log({{"loss": 1.0 / (step + 1)}}, step=step)
        run.flush()
        print("logged", flush=True)
        deadline = time.time() + 60
        while not pathlib.Path({str(go_on)!r}).exists() and time.time() < deadline:
            time.sleep(0.05)
        run.log({{"loss": 0.001}}, step=50)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert read_line(child.stdout).strip() == "logged", child.stderr.read() if child.stderr else ""
        with Index(root) as ix:
            total, rows = ix.query(experiment="live")
            assert total == 1
            assert rows[0]["status"] == "running"
            assert rows[0]["params"] == {"lr": 0.3}
            assert rows[0]["metrics"]["loss"] == pytest.approx(1 / 50)
            go_on.touch()
            assert child.wait(timeout=60) == 0
            ix.refresh()
            row = ix.query(experiment="live")[1][0]
            assert row["status"] == "finished"
            assert row["metrics"]["loss"] == 0.001
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_runs_made_by_the_library_are_indexed(make_run: Callable[..., labtrack.Run], tmp_path: Path) -> None:
    run = make_run(experiment="lib", name="one", config={"opt": {"lr": 0.2}}, tags=["t1"], comment="c")
    for step in range(5):
        run.log({"train/loss": 1.0 - step / 10}, step=step)
    run.finish()
    with Index(tmp_path / "root") as ix:
        (row,) = ix.query()[1]
    assert row["id"] == run.id and row["experiment"] == "lib" and row["name"] == "one"
    assert row["params"] == {"opt.lr": 0.2} and row["tags"] == ["t1"] and row["comment"] == "c"
    assert row["metrics"] == {"train/loss": pytest.approx(0.6)}
    assert row["status"] == "finished" and row["ended"] is not None


def test_non_finite_values_survive_and_do_not_break_columns(root: Path, index: Index) -> None:
    # As the writer stores them: strings in the files, floats once read.
    write_run(root, "nan", "20261121-200000-nnnnnn", params={"x": "NaN", "y": "Infinity"},
              summary={"loss": {"last": "NaN", "min": "-Infinity", "max": "Infinity", "mean": "NaN",
                                "count": 3, "step": 2}})
    assert index.columns()["metrics"] == ["acc", "loss", "train/loss", "val acc/top-1"]
    (row,) = index.query(experiment="nan")[1]
    assert math.isnan(row["metrics"]["loss"]) and math.isnan(row["params"]["x"])
    assert row["params"]["y"] == math.inf
    assert ids(index.query(where="params.y > 1e308")[1]) == ["nnnnnn"]
    assert ids(index.query(where="metrics.loss:min < -1e308")[1]) == ["nnnnnn"]
    assert index.query(where="metrics.loss > 0 or metrics.loss <= 0")[0] == 0  # NaN: never ordered
    write_run(root, "nan", "20261121-190000-ffffff", summary={"loss": stat(1.0)})
    index.refresh()
    # NaN sorts with the missing values, after every number, in either direction.
    assert ids(index.query(experiment="nan", sort="-metrics.loss")[1]) == ["ffffff", "nnnnnn"]
    assert ids(index.query(experiment="nan", sort="metrics.loss")[1]) == ["ffffff", "nnnnnn"]


def test_an_unwritable_index_folder_falls_back_to_the_temp_folder(root: Path) -> None:
    # `.labtrack` cannot be made (here: a file is in the way; on a read-only share: EROFS).
    (root / ".labtrack").write_text("not a folder")
    ix = Index(root)
    try:
        assert ix.query()[0] == 4
        assert ix.path.parent == Path(tempfile.gettempdir())
        assert (root / ".labtrack").read_text() == "not a folder"
    finally:
        ix.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(ix.path) + suffix).unlink(missing_ok=True)


MOUNTS = """\
overlay / overlay rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
server:/export /mnt/shared nfs4 rw,relatime,vers=4.2 0 0
tmpfs /mnt/shared/scratch tmpfs rw 0 0
//nas/lab /mnt/lab\\040data cifs rw 0 0
me@host:/data /home/me/remote fuse.sshfs rw 0 0
/dev/sda1 /home/me/remote ext4 rw 0 0
/dev/fuse /mnt/local-fuse fuse.bindfs rw 0 0
"""


@pytest.mark.parametrize("path, kind", [
    ("/mnt/shared/runs/labtrack", "nfs4"),
    ("/mnt/shared", "nfs4"),
    ("/mnt/sharedx/runs", None),            # a prefix of the name is not the mount
    ("/mnt/shared/scratch/runs", None),     # a local mount inside the NFS one
    ("/mnt/lab data/runs", "cifs"),         # \040 in the table is a space
    ("/home/me/remote/runs", None),         # the later mount on the same point shadows sshfs
    ("/mnt/local-fuse/runs", None),         # a FUSE mount of local files
    ("/srv/labtrack", None),
])
def test_network_filesystem_is_told_from_the_mount_table(path: str, kind: str | None) -> None:
    from labtrack._store.files import network_filesystem

    assert network_filesystem(path, mounts=MOUNTS) == kind
    assert network_filesystem(path, mounts=MOUNTS.replace("/dev/sda1 /home/me/remote ext4 rw 0 0\n", "")) == (
        "fuse.sshfs" if path.startswith("/home/me/remote") else kind)


def test_the_real_mount_table_is_read() -> None:
    from labtrack._store.files import network_filesystem

    mounts = Path("/proc/self/mounts").read_text()
    nfs_line = next((line for line in mounts.splitlines()
                     if line.split()[2:3] in (["nfs"], ["nfs4"])), None)
    assert network_filesystem("/proc/self") is None  # proc, on every Linux
    if nfs_line is not None:  # a machine with an NFS mount: it is found
        assert network_filesystem(nfs_line.split()[1].replace("\\040", " ")) is not None


def test_a_root_on_a_network_file_system_keeps_its_index_on_this_host(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No NFS server can be mounted here: the mount table's answer is replaced, the rest is real.
    import labtrack._index as index_module

    monkeypatch.setattr(index_module, "network_filesystem", lambda path: "nfs4")
    ix = Index(root)
    try:
        assert ix.path.parent == Path(tempfile.gettempdir())
        assert ix.query()[0] == 4
        assert not (root / ".labtrack").exists()  # nothing SQLite on the shared folder
        assert Index(root).path == ix.path  # the same cache for the next reader on this host
    finally:
        ix.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(ix.path) + suffix).unlink(missing_ok=True)
    run_dir = next(p for p in root.glob("*/*") if p.is_dir())
    assert index_module.note_run(root, run_dir) is False  # the training side leaves it alone
    index_module._NOTED.pop(str(root.absolute()), None)


def test_store_records_fills_the_index_without_run_directories(tmp_path: Path) -> None:
    # The benchmarks' bulk path (benchmarks/pg_index.py): rows as a refresh builds them.
    from labtrack._index_rows import record_from

    index = Index(tmp_path, path=tmp_path / "index.sqlite")
    index.refresh()  # an empty root: current, so no later refresh looks for the runs
    recs = [record_from(f"e/2026010{i}-000000-r{i}", {"id": f"2026010{i}-000000-r{i}", "experiment": "e",
                                                     "status": "finished", "started": f"2026-01-0{i}T00:00:00"},
                        {"lr": i / 10}, {"acc": {"last": i / 5, "min": 0.0, "max": i / 5}}, f"s{i}")
            for i in range(1, 6)]
    assert index.store_records(recs) == 5
    assert index.store_records([]) == 0
    total, page = index.page(where="params.lr > 0.2", sort="-metrics.acc", limit=2)
    assert total == 3 and [h.row()["id"] for h in page] == ["20260105-000000-r5", "20260104-000000-r4"]
    with pytest.raises(LabtrackValueError, match="offset and limit must be >= 0"):
        index.page(limit=-1)
    index.close()
