"""The server's series cache: pyarrow parse, incremental appends, damaged and partial lines."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from labtrack._server import series
from labtrack._server.series import SeriesCache
from labtrack._store import scalars
from labtrack._store.scalars import parse_lines


def _lines(start: int, stop: int) -> bytes:
    return "".join(f"{i},{i * 0.25!r},{1.7e9 + i / 1000:.3f}\n" for i in range(start, stop)).encode()


def test_big_file_matches_pandas_and_grows(tmp_path: Path) -> None:
    path = tmp_path / "loss.csv"
    n = 400_000  # > 8 MiB: the memory-mapped first read, in pyarrow
    path.write_bytes(series.HEADER + _lines(0, n))
    assert path.stat().st_size > series._BLOCK
    cache = SeriesCache()
    cols = cache.get(path)
    expected = pd.read_csv(path)
    np.testing.assert_array_equal(cols.step, expected["step"].to_numpy())
    np.testing.assert_array_equal(cols.value, expected["value"].to_numpy())
    np.testing.assert_array_equal(cols.time, expected["time"].to_numpy())
    assert cols.step_ordered and cols.time_ordered
    with open(path, "ab") as f:
        f.write(_lines(n, n + 3) + b"5,1.0,")  # three lines and a partial one
    grown = cache.get(path)
    assert len(grown) == n + 3 and grown.step[-1] == n + 2
    assert len(cols) == n  # an earlier snapshot does not change under the reader
    with open(path, "ab") as f:
        f.write(b"1.0\n")
    latest = cache.get(path)
    assert len(latest) == n + 4 and latest.step[-1] == 5
    assert not latest.step_ordered and latest.time_ordered is False


def test_a_big_read_goes_block_by_block_with_the_same_result(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of 64 KiB over a 3 MB file: lines cross block boundaries, a damaged line sits in
    # one block, a 200 KB line is longer than the buffer, and the last line is unfinished.
    monkeypatch.setattr(series, "_BLOCK", 1 << 16)
    monkeypatch.setattr(series, "READ_BLOCK", 1 << 16)
    body = (_lines(0, 40_000) + b"garbage line\n" + b"7," + b"1" * 200_000 + b",1.0\n"
            + _lines(40_000, 80_000))
    path = tmp_path / "loss.csv"
    path.write_bytes(series.HEADER + body + b"80000,0.5,")
    cols = SeriesCache().get(path)
    whole = SeriesCache()
    monkeypatch.setattr(series, "_BLOCK", 1 << 40)  # the same file in one read
    reference = whole.get(path)
    assert len(cols) == len(reference) == 80_001  # the long line is one good point
    np.testing.assert_array_equal(cols.step, reference.step)
    np.testing.assert_array_equal(cols.value, reference.value)
    np.testing.assert_array_equal(cols.time, reference.time)
    assert cols.step[-1] == 79_999 and cols.step[40_000] == 7
    np.testing.assert_array_equal(cols.step[:40_000], np.arange(40_000))
    np.testing.assert_array_equal(cols.step[40_001:], np.arange(40_000, 80_000))
    np.testing.assert_array_equal(cols.value[40_001:], np.arange(40_000, 80_000) * 0.25)


def test_damaged_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    body = _lines(0, 200_000) + b"garbage line\n1,2\n" + _lines(200_000, 400_000)
    path.write_bytes(series.HEADER + body)
    cols = SeriesCache().get(path)
    assert len(cols) == 400_000
    assert cols.step[199_999] == 199_999 and cols.step[200_000] == 200_000


def test_nonfinite_values(tmp_path: Path) -> None:
    chunks = parse_lines(b"0,nan,1.0\n1,inf,2.0\n2,-inf,3.0\n3,1e-05,4.0\n")
    values = np.concatenate([c[1] for c in chunks])
    assert np.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf and values[3] == 1e-05
    big = b"".join(f"{i},{'nan' if i % 7 == 0 else i},{i}.0\n".encode() for i in range(20_000))
    assert len(big) > scalars.SMALL
    chunks = parse_lines(big)
    values = np.concatenate([c[1] for c in chunks])
    assert np.isnan(values[::7]).all() and values[1] == 1.0


def test_header_only_missing_and_foreign_files(tmp_path: Path) -> None:
    cache = SeriesCache()
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"step,val")  # the header is still being written
    assert len(cache.get(empty)) == 0
    empty.write_bytes(series.HEADER + b"0,1.0,1.0\n")
    assert len(cache.get(empty)) == 1
    other = tmp_path / "other.csv"
    other.write_bytes(b"a,b\n1,2\n")
    assert len(cache.get(other)) == 0
    try:
        cache.get(tmp_path / "absent.csv")
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a missing file must raise FileNotFoundError")


def test_replaced_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(series.HEADER + _lines(0, 10))
    cache = SeriesCache()
    assert len(cache.get(path)) == 10
    tmp = tmp_path / ".s.csv.tmp"
    tmp.write_bytes(series.HEADER + _lines(100, 120))  # same inode count? a new file anyway
    os.replace(tmp, path)
    cols = cache.get(path)
    assert len(cols) == 20 and cols.step[0] == 100


def test_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = SeriesCache(max_bytes=30_000)
    paths = []
    for i in range(3):
        p = tmp_path / f"s{i}.csv"
        p.write_bytes(series.HEADER + _lines(0, 1000))  # 24 kB of columns each
        paths.append(p)
        cache.get(p)
    assert len(cache._entries) == 1 and str(paths[2]) in cache._entries
    assert len(cache.get(paths[0])) == 1000  # evicted entries are simply read again


def test_big_series_are_kept_on_disk_for_the_next_server(tmp_path: Path) -> None:
    from labtrack._server.series_store import SeriesStore

    path = tmp_path / "run" / "loss.csv"
    path.parent.mkdir()
    path.write_bytes(series.HEADER + _lines(0, 50_000))
    store = SeriesStore(tmp_path / "cache", min_bytes=100_000)
    first = SeriesCache(store=store).get(path)
    for _ in range(100):  # the save runs in a background thread
        if list((tmp_path / "cache").glob("*.bin")):
            break
        import time

        time.sleep(0.05)
    saved = list((tmp_path / "cache").glob("*.bin"))
    assert len(saved) == 1
    with open(path, "ab") as f:
        f.write(_lines(50_000, 50_010))
    loads: list[object] = []
    original = store.load

    def spy(*args: object, **kwargs: object) -> object:
        out = original(*args, **kwargs)  # type: ignore[arg-type]
        loads.append(out)
        return out

    store.load = spy  # type: ignore[method-assign]
    again = SeriesCache(store=store).get(path)  # a new server: read back, then the new lines
    assert loads and loads[0] is not None
    assert len(again) == 50_010
    np.testing.assert_array_equal(again.value[:50_000], first.value)
    assert again.step[-1] == 50_009 and again.step_ordered
    # a CSV edited in place (same inode, same size) must not use the saved columns
    pos = path.read_bytes().index(b"\n1,0.25,") + 3
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(b"0.35")
    fresh = SeriesCache(store=SeriesStore(tmp_path / "cache", min_bytes=100_000)).get(path)
    assert fresh.value[1] == 0.35 and len(fresh) == 50_010
    # a damaged cache file is ignored, never trusted
    saved[0].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert len(SeriesCache(store=SeriesStore(tmp_path / "cache", min_bytes=100_000)).get(path)) == 50_010


def test_the_cache_reads_through_the_opener_it_is_given(tmp_path: Path) -> None:
    from labtrack._server.series_store import SeriesStore
    from labtrack._store.contain import OutsideRootError

    path = tmp_path / "run" / "loss.csv"
    path.parent.mkdir()
    path.write_bytes(series.HEADER + _lines(0, 20_000))
    opened: list[str] = []

    def opener() -> Any:
        opened.append("open")
        return open(path, "rb")

    store = SeriesStore(tmp_path / "cache", min_bytes=100_000)
    cache = SeriesCache(store=store)
    assert len(cache.get(path, opener=opener)) == 20_000
    for _ in range(100):  # the save runs in a background thread and opens the CSV again
        if list((tmp_path / "cache").glob("*.bin")):
            break
        time.sleep(0.05)
    assert len(opened) == 2 and len(list((tmp_path / "cache").glob("*.bin"))) == 1
    assert list((tmp_path / "cache").iterdir()) == list((tmp_path / "cache").glob("*.bin"))  # no temp files

    def refuse() -> Any:
        raise OutsideRootError("loss.csv leads outside the run")

    with open(path, "ab") as f:
        f.write(_lines(20_000, 20_001))
    with pytest.raises(OutsideRootError):
        cache.get(path, opener=refuse)  # cached, but the file is not read past the door
