"""Series envelopes (`_store/lod.py`, `_server/envelope.py`): the writer's records equal what the
CSV says, a torn or damaged record is ignored, a deleted `.lod/` loses nothing, and charts drawn
from an envelope keep the downsampling contract of `_server/downsample.py`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import labtrack
from labtrack._server import envelope
from labtrack._server.app import create_app
from labtrack._server.downsample import from_envelope
from labtrack._store import lod
from labtrack._store.scalars import HEADER_LINE

_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_apps() -> Any:
    yield
    while _OPEN:
        _OPEN.pop().state.labtrack.close()


def csv_points(path: Path) -> tuple[list[int], list[float], list[float], list[int]]:
    """Steps, values, times and line ends of a series file, parsed line by line."""
    data = path.read_bytes()
    assert data.startswith(HEADER_LINE)
    steps, values, times, ends = [], [], [], []
    pos = len(HEADER_LINE)
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break  # a torn last line: no record may cover it
        s, v, t = data[pos:nl].split(b",")
        steps.append(int(s))
        values.append(float(v))
        times.append(float(t))
        ends.append(nl + 1)
        pos = nl + 1
    return steps, values, times, ends


def reference(path: Path) -> list[dict[str, float]]:
    """Per block of lod.BLOCK points: what a record must say, computed in plain Python."""
    steps, values, times, ends = csv_points(path)
    out = []
    for a in range(0, len(values), lod.BLOCK):
        b = min(a + lod.BLOCK, len(values))
        vals = values[a:b]
        notnan = [(v, i) for i, v in enumerate(vals) if v == v]
        lo = min(notnan, key=lambda p: p[0], default=(math.nan, 0))
        hi = max(notnan, key=lambda p: p[0], default=(math.nan, 0))
        hi_at = next((i for v, i in notnan if v == hi[0]), 0)  # the first of equal ones
        finite = [v for v in vals if math.isfinite(v)]
        out.append({"n_end": b, "byte_end": ends[b - 1], "n": b - a,
                    "first_step": steps[a], "first_value": vals[0], "first_time": times[a],
                    "last_step": steps[b - 1], "last_value": vals[-1], "last_time": times[b - 1],
                    "lo": lo[0], "lo_at": lo[1], "lo_step": steps[a + lo[1]],
                    "hi": hi[0], "hi_at": hi_at, "hi_step": steps[a + hi_at],
                    "sum": math.fsum(finite), "finite": len(finite)})
    return out


def same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def assert_records_equal(got: Any, want: Any) -> None:
    assert len(got) == len(want)
    for f in lod.FIELDS:
        if f == "sum":
            np.testing.assert_allclose(got[f], want[f], rtol=1e-9)
        else:
            np.testing.assert_array_equal(got[f], want[f], err_msg=f)


def server_build(csv: Path) -> Any:
    """The records the server builds from the CSV alone (whole file, last block partial)."""
    with open(csv, "rb") as f:
        records, _ = envelope._build(f, len(HEADER_LINE), os.path.getsize(csv), 0)
    return records


def random_values(rng: np.random.Generator, n: int) -> list[float]:
    v = rng.normal(size=n)
    v[rng.integers(0, n, n // 50)] = np.nan
    v[rng.integers(0, n, 5)] = np.inf
    v[rng.integers(0, n, 5)] = -np.inf
    v[rng.integers(0, n, 20)] = 0.0
    v[rng.integers(0, n, 20)] = -0.0
    v[3 * lod.BLOCK: 4 * lod.BLOCK] = np.nan  # a block of NaN only
    v[5 * lod.BLOCK + 10: 5 * lod.BLOCK + 20] = 7.0  # ties: the first is the one kept
    return [float(x) for x in v]


def log_series(root: Path, values: list[float], rng: np.random.Generator) -> Path:
    """A run logging `values` as 'loss' through the public API, in batches of random sizes
    (so flushed parts start and end anywhere in a block); its run directory."""
    with labtrack.Run(experiment="env", root=root, capture_git=False, capture_console=False) as run:
        i = 0
        while i < len(values):
            k = int(rng.integers(1, 3000))
            for step in range(i, min(i + k, len(values))):
                run.log({"loss": values[step]}, step=step)
            if rng.random() < 0.5:
                run.flush()
            i += k
        d = Path(run.dir)
    return d


@pytest.mark.parametrize("seed, n", [(0, lod.START_POINTS + 777), (1, 5 * lod.START_POINTS // 4)])
def test_writer_envelope_equals_the_csv(tmp_path: Path, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    d = log_series(tmp_path, random_values(rng, n), rng)
    csv = d / "scalars" / "loss.csv"
    env_file = lod.path_for(d, "scalars/loss.csv")
    body = env_file.read_bytes()
    assert body[: lod.HEADER.size] == lod.header_bytes()
    assert (len(body) - lod.HEADER.size) % lod.RECORD.size == 0
    got = lod.parse_records(body[lod.HEADER.size:])
    want = reference(csv)
    assert len(got) == -(-n // lod.BLOCK)  # the partial last block written at finish
    assert int(got["n"][-1]) == (n % lod.BLOCK or lod.BLOCK)
    assert int(got["byte_end"][-1]) == csv.stat().st_size
    for rec, ref in zip(got, want):
        for f, v in ref.items():  # noqa
            if f == "sum":
                assert math.isclose(float(rec[f]), v, rel_tol=1e-9), f
            else:
                assert same(float(rec[f]), float(v)), (f, rec[f], v)
    assert_records_equal(got, server_build(csv))  # the writer's equal the server's own build
    with open(csv, "rb") as fh:
        checked = lod.load(env_file, fh, csv.stat().st_size, len(HEADER_LINE))
    assert checked is not None and len(checked) == len(got)


def test_short_series_get_no_envelope_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    d = log_series(tmp_path, random_values(rng, lod.START_POINTS - 1), rng)
    assert not lod.path_for(d, "scalars/loss.csv").exists()


@pytest.fixture
def long_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(3)
    d = log_series(tmp_path, random_values(rng, lod.START_POINTS + 2 * lod.BLOCK + 100), rng)
    return tmp_path, d / "scalars" / "loss.csv", lod.path_for(d, "scalars/loss.csv")


def cache_records(root: Path, csv: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The records a fresh server cache serves for `csv` (every series counts as long)."""
    monkeypatch.setattr(envelope, "MIN_BYTES", 1)
    cache = envelope.EnvelopeCache(root / ".labtrack" / "lod")
    env = cache.get(csv, csv.parent.parent, "scalars/loss.csv", lambda: open(csv, "rb"))
    assert env is not None
    return env.records


@pytest.mark.parametrize("damage", ["torn", "torn_and_garbage", "wrong_last_value", "wrong_header"])
def test_a_damaged_record_is_ignored(long_run: tuple[Path, Path, Path], damage: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, csv, env_file = long_run
    whole = lod.parse_records(env_file.read_bytes()[lod.HEADER.size:])
    body = bytearray(env_file.read_bytes())
    if damage == "torn":  # a write cut short by a crash: part of the last record
        del body[-7:]
        keep = len(whole) - 1
    elif damage == "torn_and_garbage":
        body += b"\x01" * (lod.RECORD.size // 2)
        keep = len(whole)
    elif damage == "wrong_last_value":  # a record that does not describe this CSV
        at = len(body) - lod.RECORD.size + 8 * lod.FIELDS.index("last_value")
        body[at: at + 8] = np.float64(12345.5).tobytes()
        keep = len(whole) - 1
    else:
        body[0:8] = b"LTLOD\x00\x09\x00"  # a format this reader does not know
        keep = 0
    env_file.write_bytes(bytes(body))
    with open(csv, "rb") as f:
        loaded = lod.load(env_file, f, csv.stat().st_size, len(HEADER_LINE))
    assert (0 if loaded is None else len(loaded)) == keep
    if keep:
        assert_records_equal(loaded, whole[:keep])
    # the server reads what no good record covers from the CSV: the same records as intact
    assert_records_equal(cache_records(root, csv, monkeypatch), whole)


def test_deleted_lod_loses_nothing_and_is_rebuilt(long_run: tuple[Path, Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root, csv, env_file = long_run
    whole = lod.parse_records(env_file.read_bytes()[lod.HEADER.size:])
    shutil.rmtree(env_file.parent)
    monkeypatch.setattr(envelope, "SAVE_BYTES", 1)
    assert_records_equal(cache_records(root, csv, monkeypatch), whole)
    saved = list((root / ".labtrack" / "lod").glob("*" + lod.SUFFIX))
    assert len(saved) == 1  # the server kept the one it built (complete blocks)
    kept = lod.parse_records(saved[0].read_bytes()[lod.HEADER.size:])
    assert_records_equal(kept, whole[: len(whole) - 1])
    # a later server starts from that copy, checked against the CSV like the writer's
    with open(csv, "rb") as f:
        assert lod.load(saved[0], f, csv.stat().st_size, len(HEADER_LINE)) is not None


def test_a_resumed_series_continues_or_leaves_the_envelope(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = lod.START_POINTS + 50
    d = log_series(tmp_path, random_values(rng, n), rng)
    csv = d / "scalars" / "loss.csv"
    env_file = lod.path_for(d, "scalars/loss.csv")
    builder = lod.resume_state(csv, env_file)
    assert builder is not None and builder.n == n and builder.offset == csv.stat().st_size
    with open(env_file, "r+b") as f:  # torn: this process must not append after it
        f.truncate(env_file.stat().st_size - 3)
    assert lod.resume_state(csv, env_file) is None


CHILD = r"""
import sys, labtrack
with labtrack.Run(experiment="k", root=sys.argv[1], capture_git=False, capture_console=False) as run:
    print("DIR=" + str(run.dir), flush=True)
    step = 0
    while True:
        run.log({"loss": (step % 977) / 977.0 - (step % 13) * 0.5}, step=step)
        step += 1
"""


def test_sigkill_mid_write_leaves_whole_records_only(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(labtrack.__file__).parent.parent)}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                         env=env, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    while line and not line.startswith("DIR="):  # the run's banner comes first
        line = p.stdout.readline()
    d = Path(line.strip()[len("DIR="):])
    env_file = lod.path_for(d, "scalars/loss.csv")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not env_file.exists()
                                           or env_file.stat().st_size < lod.HEADER.size + 8 * lod.RECORD.size):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stdout.close()
    csv = d / "scalars" / "loss.csv"
    body = env_file.read_bytes()
    whole = lod.parse_records(body[lod.HEADER.size:])
    assert len(whole) >= 8
    with open(csv, "rb") as f:
        loaded = lod.load(env_file, f, csv.stat().st_size, len(HEADER_LINE))
    assert loaded is not None and len(loaded) == len(whole)  # every whole record is good
    # every whole record equals what the CSV says; the lines after them come from the CSV
    built = server_build(csv)
    assert_records_equal(whole, built[: len(whole)])
    got = cache_records(tmp_path, csv, monkeypatch)
    assert int(got["n_end"][-1]) == len(csv_points(csv)[0])


def _scalars(root: Path, run_id: str, **params: str) -> Any:
    app = create_app(root)
    _OPEN.append(app)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(f"/api/v1/runs/{run_id}/scalars", params={"name": "loss", **params})

    r = asyncio.run(go())
    assert r.status_code == 200, r.text
    return json.loads(r.text)


def _num(v: Any) -> float:
    return float({"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v))


def test_chart_from_the_envelope_keeps_the_downsampling_contract(
        long_run: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, csv, env_file = long_run
    run_id = csv.parent.parent.name
    steps, values, times, _ = csv_points(csv)
    monkeypatch.setattr(envelope, "MIN_BYTES", 1 << 40)  # parsed whole, as short series
    parsed = _scalars(root, run_id, points="12")
    monkeypatch.setattr(envelope, "MIN_BYTES", 1)  # from the envelope
    drawn = _scalars(root, run_id, points="12")
    assert drawn["total"] == parsed["total"] == drawn["count"] == len(values)
    assert drawn["downsampled"] and parsed["downsampled"]
    assert len(drawn["value"]) <= 12
    # the first and last points as they are
    for f in ("step", "value"):
        assert same(_num(drawn[f][0]), _num(parsed[f][0])) and same(_num(drawn[f][-1]), _num(parsed[f][-1]))
    lows = [_num(v) for v in drawn["min"]]
    highs = [_num(v) for v in drawn["max"]]
    fin = [v for v in values if v == v]
    assert np.nanmin(lows) == min(fin) == np.nanmin([_num(v) for v in parsed["min"]])
    assert np.nanmax(highs) == max(fin) == np.nanmax([_num(v) for v in parsed["max"]])
    by_step = dict(zip(steps, values))
    for s, v, lo, hi in zip(drawn["step"], drawn["value"], lows, highs):
        assert same(by_step[s], _num(v))  # each drawn point is a point of the series
        assert (lo != lo) or lo <= _num(v) <= hi
    # each bucket's envelope is exactly the least and greatest of its points (NaN ignored)
    recs = lod.parse_records(env_file.read_bytes()[lod.HEADER.size:])
    d = from_envelope(recs, 12)
    arr = np.array(values)
    for a, b, lo, hi in zip(d.first, d.last, d.low, d.high):
        part = arr[a: b + 1]
        if np.isnan(part).all():
            assert np.isnan(lo) and np.isnan(hi)
        else:
            assert lo == np.nanmin(part) and hi == np.nanmax(part)
    assert d.first[1] == 0 and d.last[-2] == len(values) - 1  # the buckets cover the series
    assert all(d.first[i + 1] == d.last[i] + 1 for i in range(1, len(d.first) - 2))
    # zoomed in: the points themselves, exactly as the parsed series gives them
    lo_s, hi_s = str(steps[lod.BLOCK + 5]), str(steps[lod.BLOCK + 700])
    monkeypatch.setattr(envelope, "MIN_BYTES", 1 << 40)
    z_parsed = _scalars(root, run_id, xmin=lo_s, xmax=hi_s)
    monkeypatch.setattr(envelope, "MIN_BYTES", 1)
    z_drawn = _scalars(root, run_id, xmin=lo_s, xmax=hi_s)
    for f in ("step", "value", "time", "min", "max", "count", "downsampled"):
        assert z_drawn[f] == z_parsed[f], f
