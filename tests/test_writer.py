"""The writer thread: bulk formatting, barriers, statistics, heartbeat, and a real full disk."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import threading
import time
from array import array
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

import labtrack
from labtrack._store.reader import read_jsonl, read_run_meta
from labtrack._store.scalars import read_columns as read_scalars
from labtrack._store.scalars import format_rows, format_rows_py
from labtrack._writer import SeriesStats

BULK_ROWS = 20_000  # more points than one flush of a typical run: one large batch

from conftest import flush

pytestmark = pytest.mark.timeout(120)

MakeRun = Callable[..., labtrack.Run]


def _col(points: list[tuple[int, float, float]]) -> array:
    col = array("d")
    for p in points:
        col.extend(p)
    return col


def test_format_rows_writes_shortest_round_trip_values() -> None:
    t = 1763734503.1214
    col = _col([(0, 2.3025850929940455, t), (1, float("nan"), t), (2, float("inf"), t),
                (3, float("-inf"), t), (4, 1e-300, t), (5, 2.0, t), (6, -0.0, t)])
    assert format_rows(col).decode().splitlines() == [
        "0,2.3025850929940455,1763734503.121", "1,nan,1763734503.121", "2,inf,1763734503.121",
        "3,-inf,1763734503.121", "4,1e-300,1763734503.121", "5,2.0,1763734503.121", "6,-0.0,1763734503.121"]
    assert format_rows(array("d")) == b""


def math_floor_ms(t: float) -> int:
    return int(np.floor(t * 1000.0 + 0.5))


def test_the_writer_formats_with_the_c_module_where_it_is_built() -> None:
    # A wrong import path falls back to Python silently (about 6x slower writer): check the choice.
    hot = pytest.importorskip("labtrack._hot")
    from labtrack import _writer
    from labtrack._settings import no_c
    from labtrack._store import scalars

    if no_c():
        pytest.skip("LABTRACK_NO_C is set")
    assert scalars.format_many is hot.format_many and scalars.format_rows is hot.format_rows
    assert _writer.format_many is hot.format_many


def test_the_c_and_python_formatters_write_the_same_bytes() -> None:
    # Python's repr is the spec; the C formatter (labtrack._hot) must match it byte for byte,
    # for every kind of float64 and for times on either side of a millisecond boundary.
    import random

    hot = pytest.importorskip("labtrack._hot")
    rng = random.Random(7)
    specials = [0.0, -0.0, 2.0, 0.1, 1 / 3, float("nan"), float("inf"), float("-inf"), 1e-5, 1e-4,
                1e15, 1e16, 1e17, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                123456789.123, 2.0 ** 53, -2.0 ** 53 + 1, 0.30000000000000004]
    randoms = [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(20_000)]
    float32ish = [float(np.float32(rng.random() * 3)) for _ in range(5_000)]
    t0 = 1763734503.0
    times = [t0 + rng.random() for _ in range(100)] + [t0 + 0.0005, t0 + 0.0015, 0.0, 0.0004999, -0.0015]
    rows = [(i, v, times[i % len(times)]) for i, v in enumerate(specials + randoms + float32ish)]
    rows.append((2 ** 53 - 1, 1.0, t0))
    col = _col(rows)
    assert hot.format_rows(col) == format_rows_py(col)
    text = hot.format_rows(col).decode().splitlines()
    assert text[0] == "0,0.0,1763734503.%03d" % (math_floor_ms(times[0]) % 1000)
    for line, (step, v, _) in zip(text, rows):  # the values read back exactly
        s, value, _t = line.split(",")
        assert int(s) == step and (float(value) == v or v != v)
    with pytest.raises(TypeError):
        hot.format_rows(array("f", [1.0, 2.0, 3.0]))


def test_the_c_repr_matches_python_repr_on_a_million_floats() -> None:
    # The C formatter computes repr's digits itself (exactly, in 128-bit integers) for
    # 1e-5 <= |v| < 1e17 and hands other values to Python's own; both must give repr(v).
    import math
    import random
    import struct

    hot = pytest.importorskip("labtrack._hot")
    rng = random.Random(11)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-6, 18) for _ in range(400_000)]
    values += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(200_000)]
    values += [float(np.float32(rng.random() * 10)) for _ in range(200_000)]
    values += [round(rng.random() * 1000, rng.randint(0, 8)) for _ in range(200_000)]
    for e in range(-20, 60):  # powers of two, where the gap below is half the gap above
        for x in (2.0 ** e, 10.0 ** (e % 24 - 6)):
            values += [x, math.nextafter(x, 0), math.nextafter(x, math.inf), -x]
    bad = [(v, hot.repr_float(v)) for v in values if hot.repr_float(v) != repr(v)]
    assert not bad, bad[:10]


def test_bulk_formatting_writes_the_same_bytes_as_small_batches() -> None:
    # A file's bytes must not depend on how many points one flush happened to carry.
    rng = np.random.default_rng(0)
    values = [float(v) for v in rng.normal(size=BULK_ROWS)]
    values[:6] = [2.0, -0.0, float("nan"), float("inf"), 3e-7, 12345678.0]
    t = 1763734503.1
    col = _col([(i, v, t + i * 0.0004) for i, v in enumerate(values)])
    bulk = format_rows(col)
    small = b"".join(format_rows(col[i:i + 300]) for i in range(0, len(col), 300))
    assert bulk.splitlines()[:8] == small.splitlines()[:8]
    assert bulk == small


def test_a_whole_number_series_reads_back_equal_and_float64_through_the_book(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=3600)
    for i in range(BULK_ROWS + 10):  # one flush carries them all
        run.log({"epoch": i // 100})
    flush(run)
    df = pd.read_csv(run.dir / "scalars" / "epoch.csv")
    # format.md: Python's repr, so whole numbers are written as "0.0", "1.0", ...;
    # pandas reads float64, and so does the Book.
    assert (df["value"].astype(float) == [float(i // 100) for i in range(BULK_ROWS + 10)]).all()
    assert (run.dir / "scalars" / "epoch.csv").read_text().splitlines()[1].startswith("0,0.0,")
    book_df = labtrack.open(run.root)[run.id].scalars("epoch")
    assert book_df["value"].dtype == np.float64 and book_df["value"].iloc[-1] == float((BULK_ROWS + 9) // 100)


def test_bulk_path_round_trips_values(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=3600)
    rng = np.random.default_rng(1)
    values = [float(v) for v in rng.normal(size=BULK_ROWS * 2)]
    values[10:13] = [float("nan"), float("inf"), float("-inf")]
    for i, v in enumerate(values):
        run.log({"x": v}, step=i)
    flush(run)
    df = pd.read_csv(run.dir / "scalars" / "x.csv")
    assert df["step"].tolist() == list(range(len(values)))
    got = df["value"].to_numpy()
    assert np.array_equal(got, np.array(values), equal_nan=True)  # bit-exact, NaN in place
    steps, vals, _ = read_scalars(run.dir / "scalars" / "x.csv")
    assert len(steps) == len(values)


def test_series_stats_accumulate_across_batches() -> None:
    s = SeriesStats()
    s.update(array("d", [1.0, float("nan"), 3.0]), 2, 10.0)
    s.update(array("d", [float("inf"), float("-inf"), -5.0]), 5, 11.0)
    d = s.as_dict()
    assert d["count"] == 6 and d["finite"] == 3 and d["sum"] == -1.0 and d["mean"] == -1.0 / 3
    assert d["min"] == float("-inf") and d["max"] == float("inf") and d["last"] == -5.0
    assert d["step"] == 5 and d["time"] == 11.0
    again = SeriesStats.from_summary(json.loads(json.dumps({**d, "min": "-Infinity", "max": "Infinity"}),
                                                parse_constant=float))
    assert again.count == 6 and again.sum == -1.0


def test_series_stats_with_both_infinities() -> None:
    s = SeriesStats()
    s.update(array("d", [float("inf"), float("-inf")]), 1, 1.0)
    d = s.as_dict()
    assert d["count"] == 2 and d["finite"] == 0 and d["mean"] is None
    assert d["min"] == float("-inf") and d["max"] == float("inf")


def test_flush_keeps_records_in_order_and_is_a_barrier(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=3600)
    for i in range(50):
        run.log_text("t", f"text {i}", step=i)
        run.log({"a": float(i)}, step=i)
    flush(run)
    assert [r["text"] for r in read_jsonl(run.dir / "text" / "t.jsonl")] == [f"text {i}" for i in range(50)]
    assert len(pd.read_csv(run.dir / "scalars" / "a.csv")) == 50


def test_periodic_flush_without_a_barrier(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=0.1)
    run.log({"a": 1.0})
    deadline = time.monotonic() + 10
    path = run.dir / "scalars" / "a.csv"
    summary = run.dir / "summary.json"  # written right after the series, in the same flush
    while not (path.exists() and path.read_bytes().count(b"\n") == 2 and summary.exists()) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_scalars(path)[1] == [1.0]
    assert json.loads((run.dir / "summary.json").read_text())["a"]["count"] == 1


def test_one_named_daemon_writer_thread_per_run_joined_by_finish(make_run: MakeRun) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("labtrack-writer")}
    run = make_run()
    mine = [t for t in threading.enumerate() if t.name == f"labtrack-writer-{run.id}"]
    assert len(mine) == 1 and mine[0].daemon
    run.finish()
    assert not mine[0].is_alive()
    assert {t for t in threading.enumerate() if t.name.startswith("labtrack-writer")} == before


def test_heartbeat_is_touched_while_alive(make_run: MakeRun) -> None:
    run = make_run(flush_seconds=0.05, _environ={"LABTRACK_HEARTBEAT_SECONDS": "0.1"})
    hb = run.dir / "heartbeat"
    os.utime(hb, (0, 0))
    deadline = time.monotonic() + 10
    while hb.stat().st_mtime == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert time.time() - hb.stat().st_mtime < 10
    assert read_run_meta(run.dir)["status"] == "running"


# --- a full disk ---------------------------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted for this test (root only)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the full-disk test: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Write into `path` until the file system is full."""
    chunk = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        while True:  # the last few bytes
            try:
                if os.write(fd, b"\0") == 0:
                    break
            except OSError:
                break
    finally:
        os.close(fd)


def test_full_disk_warns_once_never_raises_and_writes_when_space_returns(tiny_fs: Path) -> None:
    run = labtrack.Run("exp", root=tiny_fs / "root", capture_git=False, capture_console=False,
                       flush_seconds=0.05, _environ={})
    run.log({"loss": 0.0}, step=0)
    flush(run)
    filler = tiny_fs / "filler"
    _fill(filler)
    with pytest.warns(RuntimeWarning) as record:
        for i in range(1, 3001):  # the training loop goes on
            run.log({"loss": float(i), "acc": i / 3000}, step=i)
        run.log_text("notes", "during the full disk", step=5)
        flush(run)
        time.sleep(0.3)  # several periodic flushes retry and fail
        flush(run)
    disk = [w for w in record if "cannot write" in str(w.message) or "No space" in str(w.message)]
    assert len(disk) >= 1
    assert len(record) <= 3, [str(w.message) for w in record]  # once per kind, not per flush
    filler.unlink()
    flush(run)
    steps, values, _ = read_scalars(run.dir / "scalars" / "loss.csv")
    assert steps == list(range(3001)) and values == [float(i) for i in range(3001)]
    acc = pd.read_csv(run.dir / "scalars" / "acc.csv")
    assert acc["step"].tolist() == list(range(1, 3001))
    run.finish()  # nothing lost: the text record logged during the full disk was held, then written
    assert [r["text"] for r in read_jsonl(run.dir / "text" / "notes.jsonl")] == ["during the full disk"]
    assert read_run_meta(run.dir)["status"] == "finished"
    assert json.loads((run.dir / "summary.json").read_text())["loss"]["count"] == 3001


def test_full_disk_gives_one_warning(tiny_fs: Path) -> None:
    run = labtrack.Run("exp", root=tiny_fs / "root", capture_git=False, capture_console=False,
                       flush_seconds=0.05, _environ={})
    run.log({"loss": 0.0})
    flush(run)
    filler = tiny_fs / "filler"
    _fill(filler)
    with pytest.warns(RuntimeWarning) as record:
        for i in range(1, 2000):
            run.log({"loss": float(i)})
        flush(run)
        time.sleep(0.3)
        flush(run)
    filler.unlink()
    run.finish()
    assert len(record) == 1, [str(w.message) for w in record]


def test_finish_on_a_full_disk_does_not_raise(tiny_fs: Path) -> None:
    run = labtrack.Run("exp", root=tiny_fs / "root", capture_git=False, capture_console=False,
                       flush_seconds=0.05, _environ={})
    run.log({"loss": 0.0})
    flush(run)
    filler = tiny_fs / "filler"
    _fill(filler)
    try:
        with pytest.warns(RuntimeWarning):
            run.log({"loss": 1.0})
            run.finish()  # the end of a training script: must not raise either
    finally:
        filler.unlink()
    # What reached the disk before it filled is intact and readable.
    assert read_scalars(run.dir / "scalars" / "loss.csv")[1][:1] == [0.0]


def test_warnings_as_errors_do_not_kill_the_writer(tiny_fs: Path) -> None:
    # Scripts run under `python -W error` or pytest's filterwarnings=error turn the writer's
    # RuntimeWarning into an exception raised on the writer thread.
    import warnings

    run = labtrack.Run("exp", root=tiny_fs / "root", capture_git=False, capture_console=False,
                       flush_seconds=0.05, _environ={})
    run.log({"loss": 0.0})
    flush(run)
    filler = tiny_fs / "filler"
    _fill(filler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run.log({"loss": 1.0})
            flush(run, timeout=10)  # must return, not hang on a dead writer
    finally:
        filler.unlink()
    with pytest.warns(RuntimeWarning):
        flush(run, timeout=10)
        run.log({"loss": 2.0})
        run.finish()
    assert read_scalars(run.dir / "scalars" / "loss.csv")[1] == [0.0, 1.0, 2.0]


def test_a_full_record_queue_makes_log_calls_wait_not_drop(make_run: MakeRun) -> None:
    run = make_run(_environ={"LABTRACK_QUEUE_SIZE": "2"})
    for i in range(60):
        run.log_image("img", np.full((4, 4), i, np.uint8), step=i)
        run.log_text("t", f"text {i}", step=i)
    flush(run)
    entries = read_jsonl(run.dir / "media.jsonl")
    assert [e["step"] for e in entries] == list(range(60))
    assert len(read_jsonl(run.dir / "text" / "t.jsonl")) == 60
    from PIL import Image

    with Image.open(run.dir / "media" / "59" / "img.png") as im:
        assert np.asarray(im)[0, 0] == 59


def test_init_on_a_full_disk_raises_a_clear_error_and_leaves_nothing(tiny_fs: Path) -> None:
    _fill(tiny_fs / "filler")
    with pytest.raises(labtrack.errors.LabtrackError) as info:
        labtrack.Run("exp", root=tiny_fs / "root", capture_git=False, capture_console=False, _environ={})
    assert str(tiny_fs / "root") in str(info.value)  # says where
    assert not list((tiny_fs / "root").glob("*/*"))  # no half-made run directory


def test_format_many_matches_the_python_formatter_and_statistics() -> None:
    # The writer formats a flush's series together on two threads (labtrack._hot.format_many);
    # bytes and statistics must be what the Python path gives, whichever thread did a column
    # and whether a value needed Python's own repr (outside the C digits' range).
    import random

    from labtrack._store.scalars import format_many_py

    hot = pytest.importorskip("labtrack._hot")
    rng = random.Random(5)
    cols = []
    for j in range(12):
        kinds = [lambda: rng.random(), lambda: float(rng.randint(-5, 5))]
        if j % 3 == 0:  # some columns need the GIL-side repr, some hold non-finite values
            kinds += [lambda: rng.random() * 1e-300, lambda: rng.uniform(-1e30, 1e30)]
        if j % 4 == 1:
            kinds += [lambda: float("nan"), lambda: float("inf"), lambda: float("-inf")]
        rows = [(i, rng.choice(kinds)(), 1763734503.0 + i * 0.001) for i in range(rng.randint(0, 6000))]
        cols.append(_col(rows))
    cols.append(_col([(0, float("nan"), 1.0)]))  # no non-NaN value at all
    got, want = hot.format_many(cols), format_many_py(cols)
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want):
        assert g[1:] == pytest.approx(w[1:], rel=1e-12, nan_ok=True)
    assert hot.format_many([]) == []
    with pytest.raises(TypeError):
        hot.format_many([array("f", [1.0, 2.0, 3.0])])
