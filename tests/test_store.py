"""The store: atomic replaces, whole-line appends, reading runs, derived status, versions."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labtrack._store import files, layout, migrations
from labtrack._store.reader import derive_status, pid_alive, read_json, read_jsonl, read_run_meta
from labtrack._store.rundir import RunDir, iter_runs
from labtrack._store.scalars import read_columns as read_scalars
from labtrack.errors import FormatError

pytestmark = pytest.mark.timeout(60)


def _meta(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"format_version": 1, "id": "20261121-141503-abc123", "status": "running",
                               "pid": os.getpid(), "host": socket.gethostname(),
                               "started": "2026-11-21T14:15:03.120455+00:00"}
    base.update(kw)
    return base


def _run_dir(tmp_path: Path, **kw: object) -> Path:
    d = tmp_path / "exp" / "20261121-141503-abc123"
    d.mkdir(parents=True)
    files.atomic_write_json(d / "run.json", _meta(**kw))
    (d / "heartbeat").touch()
    return d


def test_dumps_writes_non_finite_floats_as_strings_and_reads_them_back(tmp_path: Path) -> None:
    obj = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": "NaN-like text", "é": 1}}
    text = files.dumps(obj)
    assert '"NaN"' in text and '"Infinity"' in text and '"-Infinity"' in text and "é" in text
    json.loads(text)  # strict JSON
    files.atomic_write_json(tmp_path / "x.json", obj)
    back = read_json(tmp_path / "x.json")
    assert math.isnan(back["a"]) and back["b"] == [math.inf, -math.inf, 1.5] and back["c"]["é"] == 1
    assert files.dumps_line({"a": 1, "b": math.nan}) == '{"a":1,"b":"NaN"}\n'


def test_atomic_write_leaves_no_temp_file_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.bin"
    files.atomic_write_bytes(target, b"one")
    files.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_readers_never_see_a_half_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    files.atomic_write_json(path, {"n": 0, "pad": "x"})
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            try:
                json.loads(text)
            except json.JSONDecodeError:
                bad.append(text[:80])

    t = threading.Thread(target=reader)
    t.start()
    for i in range(600):
        files.atomic_write_json(path, {"n": i, "pad": "x" * (i * 7 % 5000)})
    stop.set()
    t.join()
    assert not bad
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_append_bytes_creates_folders_and_appends(tmp_path: Path) -> None:
    p = tmp_path / "text" / "a" / "b.jsonl"
    files.append_bytes(p, b'{"a":1}\n')
    files.append_bytes(p, b"")
    files.append_bytes(p, b'{"a":2}\n')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]


def test_readers_ignore_a_trailing_partial_line(tmp_path: Path) -> None:
    j = tmp_path / "t.jsonl"
    j.write_bytes(b'{"step":1}\n{"step":2}\n{"ste')
    assert read_jsonl(j) == [{"step": 1}, {"step": 2}]
    s = tmp_path / "s.csv"
    s.write_bytes(b"step,value,time\n0,nan,1.5\n1,inf,2.0\n2,0.")
    steps, values, times = read_scalars(s)
    assert steps == [0, 1] and math.isnan(values[0]) and values[1] == math.inf and times == [1.5, 2.0]
    assert read_scalars(tmp_path / "missing.csv") == ([], [], [])
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_json_errors(tmp_path: Path) -> None:
    assert read_json(tmp_path / "none.json", {"d": 1}) == {"d": 1}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_run_ids() -> None:
    t = 1763734503.5  # 2025-11-21 14:15:03 UTC
    ids = {layout.new_run_id(t) for _ in range(200)}
    assert all(re.fullmatch(r"20251121-141503-[0-9a-z]{6}", i) for i in ids)
    assert len(ids) == 200


def test_layout_paths(tmp_path: Path) -> None:
    assert layout.scalar_path(tmp_path, "val acc/top-1") == tmp_path / "scalars" / "val%20acc" / "top-1.csv"
    assert layout.media_relpath(3, "samples/bird", ".png") == "media/3/samples/bird.png"
    assert layout.run_dir(tmp_path, "my exp", "id") == tmp_path / "my-exp" / "id"


def test_series_names_unescape(tmp_path: Path) -> None:
    for rel in ("val%20acc/top-1.csv", "%2Ehidden.csv", "loss.csv", ".tmpfile.csv"):
        p = tmp_path / "scalars" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("step,value,time\n")
    assert RunDir(tmp_path).names("scalars") == [".hidden", "loss", "val acc/top-1"]


def test_iter_run_dirs_skips_caches_trash_and_non_runs(tmp_path: Path) -> None:
    for rel in ("a/20260101-000000-aaaaaa", "b/20260101-000000-bbbbbb", ".trash/x/20260101-000000-cccccc",
                ".labtrack/y/20260101-000000-dddddd", "a/.20260101-000000-eeeeee"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "run.json").write_text("{}")
    (tmp_path / "a" / "not-a-run").mkdir()
    (tmp_path / "loose-file").write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in (r.path for r in iter_runs(tmp_path))] == [
        "a/20260101-000000-aaaaaa", "b/20260101-000000-bbbbbb"]
    assert list(iter_runs(tmp_path / "missing")) == []


def test_derive_status() -> None:
    host = "h1"
    now = 1000.0
    running = {"status": "running", "host": host, "started": None}
    assert derive_status(running, now - 1, now, host, True) == "running"
    assert derive_status(running, now - 1, now, host, False) == "crashed"  # dead pid, fresh beat
    assert derive_status(running, now - 31, now, host, True) == "crashed"  # stale beat
    assert derive_status({**running, "host": "other"}, now - 1, now, host, None) == "running"
    assert derive_status({**running, "host": "other"}, now - 100, now, host, None) == "crashed"
    assert derive_status(running, now - 100, now, host, True, stale_seconds=200) == "running"
    for final in ("finished", "failed", "killed", "interrupted"):
        assert derive_status({**running, "status": final}, now - 1e6, now, host, False) == final


def test_read_run_meta_of_a_live_run_and_of_a_dead_pid(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    meta = read_run_meta(d)
    assert meta["status"] == "running" and meta["dir"] == str(d)
    assert read_run_meta(d, now=time.time() + 60, stale_seconds=30)["status"] == "crashed"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    files.atomic_write_json(d / "run.json", _meta(pid=p.pid))
    assert not pid_alive(p.pid)
    assert read_run_meta(d)["status"] == "crashed"


def test_a_zombie_pid_counts_as_dead(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while pid_alive(p.pid) and time.monotonic() < deadline:  # exited but not reaped: a zombie
        time.sleep(0.05)
    try:
        assert not pid_alive(p.pid)
    finally:
        p.wait()
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(-1)


def test_read_run_meta_refuses_newer_versions_and_bad_files(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, format_version=2)
    with pytest.raises(FormatError, match="format_version 2"):
        read_run_meta(d)
    files.atomic_write_json(d / "run.json", [1, 2])
    with pytest.raises(FormatError, match="JSON object"):
        read_run_meta(d)
    (d / "run.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a labtrack run"):
        read_run_meta(d)


def test_unknown_keys_are_kept_and_missing_version_is_upgraded(tmp_path: Path) -> None:
    meta = _meta(status="finished", future_key={"x": 1})
    del meta["format_version"]
    d = tmp_path / "e" / "r"
    d.mkdir(parents=True)
    files.atomic_write_json(d / "run.json", meta)
    got = read_run_meta(d)
    assert got["format_version"] == 1 and got["future_key"] == {"x": 1} and got["status"] == "finished"
    assert migrations.upgrade({"a": 1}) == {"a": 1, "format_version": 1}


def test_stale_seconds_setting_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _run_dir(tmp_path, host="another-host")  # pid unknown there: only the heartbeat counts
    old = time.time() - 10
    os.utime(d / "heartbeat", (old, old))
    assert read_run_meta(d)["status"] == "running"  # default: stale after 30 s
    monkeypatch.setenv("LABTRACK_STALE_SECONDS", "5")
    assert read_run_meta(d)["status"] == "crashed"
    assert read_run_meta(d, stale_seconds=60)["status"] == "running"
    (d / "heartbeat").unlink()  # no heartbeat yet: the start time counts
    assert read_run_meta(d)["status"] == "crashed"  # started in 2026-11-21 14:15, long ago
