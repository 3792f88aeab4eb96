"""The server's envelope of a series that came without one (`_server/envelope.py`): built from
the CSV piece by piece with bounded memory, extended (not rebuilt) as a live run appends, and
charts of damaged or out-of-order series answering exactly as the parsed series does."""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import labtrack
from labtrack._server import envelope
from labtrack._server.app import create_app
from labtrack._store import lod
from labtrack._store.scalars import HEADER_LINE


def write_csv(path: Path, steps: Any, values: Any, times: Any) -> None:
    """A series file in the run format, one `step,value,time` line per point (repr values)."""
    lines = [f"{int(s)},{float(v)!r},{float(t):.3f}\n" for s, v, t in zip(steps, values, times)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER_LINE + "".join(lines).encode())


def append_csv(path: Path, steps: Any, values: Any, times: Any) -> None:
    with open(path, "ab") as f:
        f.write("".join(f"{int(s)},{float(v)!r},{float(t):.3f}\n"
                        for s, v, t in zip(steps, values, times)).encode())


def reference(path: Path) -> list[tuple[int, int, int, float, float, float, float]]:
    """Per block of lod.BLOCK points, parsed line by line in plain Python: points up to its
    end, its CSV end, its size, last step, last value, least and greatest value."""
    data = path.read_bytes()
    pos = len(HEADER_LINE)
    pts: list[tuple[int, float, int]] = []
    while pos < len(data):
        nl = data.index(b"\n", pos)
        s, v, _ = data[pos:nl].split(b",")
        pts.append((int(s), float(v), nl + 1))
        pos = nl + 1
    out = []
    for a in range(0, len(pts), lod.BLOCK):
        block = pts[a: a + lod.BLOCK]
        vals = [v for _, v, _ in block if v == v]
        out.append((a + len(block), block[-1][2], len(block), float(block[-1][0]), block[-1][1],
                    min(vals, default=math.nan), max(vals, default=math.nan)))
    return out


def as_tuples(records: Any) -> list[tuple[int, int, int, float, float, float, float]]:
    return [(int(r["n_end"]), int(r["byte_end"]), int(r["n"]), float(r["last_step"]),
             float(r["last_value"]), float(r["lo"]), float(r["hi"])) for r in records]


def same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        all(x == y or (x != x and y != y) for x, y in zip(p, q)) for p, q in zip(a, b))


def shrinking_lines(n: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """Points whose lines get shorter after the first tenth (long random values, then short
    ones): the first piece's line length then underestimates the records to come."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    values[n // 10:] = np.round(values[n // 10:], 1)
    values[rng.integers(0, n, n // 100)] = np.nan
    return np.arange(n), values, 1.7e9 + np.arange(n) * 0.25


@pytest.mark.parametrize("piece", [4096, 65_536, 1 << 22])
def test_a_build_in_pieces_equals_the_csv(tmp_path: Path, piece: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    csv = tmp_path / "loss.csv"
    write_csv(csv, *shrinking_lines(40 * lod.BLOCK + 333))
    monkeypatch.setattr(envelope, "READ_BLOCK", piece)
    with open(csv, "rb") as f:
        records, complete = envelope._build(f, len(HEADER_LINE), csv.stat().st_size, 0)
    want = reference(csv)
    assert same(as_tuples(records), want)
    assert complete == len(want) - 1  # the partial last block is not a complete one
    # the whole file's records, in an array no bigger than a fifth more than they need
    assert records.base is None or len(records.base) <= len(records) * 1.2 + 16


def test_a_build_holds_one_piece_not_the_series(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    n = 300_000
    csv = tmp_path / "loss.csv"
    write_csv(csv, *shrinking_lines(n, seed=1))
    piece = 256 << 10
    monkeypatch.setattr(envelope, "READ_BLOCK", piece)
    size = csv.stat().st_size
    tracemalloc.start()
    try:
        with open(csv, "rb") as f:
            records, _ = envelope._build(f, len(HEADER_LINE), size, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    series = n * 3 * 8  # the parsed series: 7.2 MB
    assert size > 8 * piece and records.nbytes < series // 100
    # a piece, its copy with the previous piece's torn line, its line ends and parsed
    # columns: a few pieces' worth, far less than the series
    assert peak < 12 * piece + 2 * records.nbytes, (peak, piece, series)
    assert peak < series / 2


def test_live_appends_extend_the_envelope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "MIN_BYTES", 1)
    csv = tmp_path / "run" / "scalars" / "loss.csv"
    steps, values, times = shrinking_lines(30 * lod.BLOCK + 10, seed=2)
    cut = 20 * lod.BLOCK + 500
    write_csv(csv, steps[:cut], values[:cut], times[:cut])
    starts: list[int] = []
    real_build = envelope._build

    def spy(f: Any, start: int, size: int, n0: int, head: Any = None) -> Any:
        starts.append(start)
        return real_build(f, start, size, n0, head)

    monkeypatch.setattr(envelope, "_build", spy)
    cache = envelope.EnvelopeCache(None)

    def get() -> Any:
        env = cache.get(csv, csv.parent.parent, "scalars/loss.csv", lambda: open(csv, "rb"))
        assert env is not None
        return env.records

    first = get()
    assert same(as_tuples(first), reference(csv))
    end_of_complete = int(first["byte_end"][19])
    assert get() is first  # unchanged file: the same records, nothing read
    # the run goes on: a torn line first (a write in progress), then whole lines
    with open(csv, "ab") as f:
        f.write(b"123")
    torn = get()
    assert same(as_tuples(torn), as_tuples(first))  # the torn line is not a point yet
    with open(csv, "r+b") as f:
        f.truncate(csv.stat().st_size - 3)
    append_csv(csv, steps[cut:], values[cut:], times[cut:])
    grown = get()
    assert same(as_tuples(grown), reference(csv))
    assert starts[0] == len(HEADER_LINE)
    assert starts[-1] == end_of_complete  # extended from the last complete block, not rebuilt
    assert same(as_tuples(grown[:20]), as_tuples(first[:20]))


def _scalars(app: Any, run_id: str, **params: str) -> Any:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(f"/api/v1/runs/{run_id}/scalars", params={"name": "loss", **params})

    r = asyncio.run(go())
    assert r.status_code == 200, r.text
    return json.loads(r.text)


@pytest.mark.parametrize("kind", ["damaged", "out_of_order", "blank_line"])
def test_damaged_and_out_of_order_series_answer_as_parsed(tmp_path: Path, kind: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with labtrack.Run(experiment="e", root=tmp_path, capture_git=False, capture_console=False,
                      system=False) as run:
        run.log({"loss": 1.0}, step=0)
        run_dir = Path(run.dir)
    csv = run_dir / "scalars" / "loss.csv"
    n = 12 * lod.BLOCK
    steps, values, times = shrinking_lines(n, seed=3)
    if kind == "out_of_order":  # a resumed run that went back 3,000 steps
        steps = np.concatenate([steps[: n // 2], steps[n // 2:] - 3000])
    write_csv(csv, steps, values, times)
    data = bytearray(csv.read_bytes())
    at = data.index(b"\n", len(data) // 3) + 1
    if kind == "damaged":
        data[at:at] = b"12,not-a-number,\x00\n"
    elif kind == "blank_line":
        data[at:at] = b"\n"
    csv.write_bytes(bytes(data))
    app = create_app(tmp_path)
    try:
        views = [{"points": "40"}, {"points": "40", "xmin": str(n // 3), "xmax": str(n // 3 + 900)},
                 {"points": "2000", "xmin": str(n // 4), "xmax": str(n // 2 + 100)}]
        monkeypatch.setattr(envelope, "MIN_BYTES", 1 << 40)  # parsed whole
        parsed = [_scalars(app, run_dir.name, **v) for v in views]
        app.state.labtrack.envelopes = envelope.EnvelopeCache(None)
        monkeypatch.setattr(envelope, "MIN_BYTES", 1)  # long: the envelope path
        drawn = [_scalars(app, run_dir.name, **v) for v in views]
        # the envelope answered (damaged and blank lines skipped as the parser skips them)
        env = app.state.labtrack.envelopes.get(csv, run_dir, "scalars/loss.csv", lambda: open(csv, "rb"))
        assert env is not None and env.total == n
        assert env.step_ordered == (kind != "out_of_order")
    finally:
        app.state.labtrack.close()
    for p, d in zip(parsed, drawn):
        assert d["total"] == p["total"] == n
        if "xmin" in d:  # a zoomed window: exactly the parsed answer
            assert d == p
        else:  # the whole: the same points' extremes, first and last point
            assert d["step"][0] == p["step"][0] and d["step"][-1] == p["step"][-1]
            lo = [float(v) for v in d["min"] if v is not None and v == v]
            plo = [float(v) for v in p["min"] if v is not None and v == v]
            assert min(lo) == min(plo)
    assert os.path.exists(csv)


def test_one_long_build_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "MIN_BYTES", 1)
    monkeypatch.setattr(envelope, "BUILD_ALONE", 1)
    csvs = []
    for i in range(3):
        csv = tmp_path / f"r{i}" / "scalars" / "loss.csv"
        write_csv(csv, *shrinking_lines(4 * lod.BLOCK, seed=i))
        csvs.append(csv)
    running: list[int] = []
    most = [0]
    real_build = envelope._build

    def slow(f: Any, start: int, size: int, n0: int, head: Any = None) -> Any:
        running.append(1)
        most[0] = max(most[0], len(running))
        time.sleep(0.1)
        try:
            return real_build(f, start, size, n0, head)
        finally:
            running.pop()

    monkeypatch.setattr(envelope, "_build", slow)
    cache = envelope.EnvelopeCache(None)
    got: dict[int, Any] = {}

    def one(i: int) -> None:
        csv = csvs[i]
        got[i] = cache.get(csv, csv.parent.parent, "scalars/loss.csv", lambda: open(csv, "rb"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert all(got[i] is not None and same(as_tuples(got[i].records), reference(csvs[i])) for i in range(3))
