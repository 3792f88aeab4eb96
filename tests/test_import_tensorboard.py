"""`labtrack import tensorboard`: event files written by tensorboardX's SummaryWriter and by
TensorBoard's own tf-free writer (in the peers' side venv), compared point for point with what
TensorBoard's own reader (event_file_loader) finds in them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from labtrack._store.scalars import format_time
from labtrack.importers import SourceError, run_import, tensorboard
from peers import as_json, peer_script, peers  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parents[1]

WRITE = r'''
import json, os, time
import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary

w = SummaryWriter("logs/tbx")
for i in range(300):
    w.add_scalar("train/loss", 1.0 / (i + 1), i)
    w.add_scalar("acc", i / 300.0, i)
    if i % 50 == 0:
        w.add_scalar("val/a_much_longer_tag_name", -i * 1.1, i)
for i in range(20):  # steps of 5- and 6-byte varints
    w.add_scalar("bigstep", i * 0.5, 2 ** 35 + i * 1000 + (2 ** 41 if i >= 10 else 0))
w.add_scalars("grp", {"x": 1.5, "y": -2.25}, 7)
w.add_scalar("third", 0.1, 0, walltime=1767225600.123456)
for step in (3, 5, 9):
    w.add_image("pic", np.random.RandomState(step).rand(3, 6, 5), step)
w.add_text("note", "hello **world**", 2)
w.add_text("note", "second", 4)
w.add_histogram("weights", np.random.RandomState(0).randn(1000), 1)
w.add_histogram("weights", np.random.RandomState(1).randn(500) + 3, 2)
import io, wave
from PIL import Image
buf = io.BytesIO()
with wave.open(buf, "wb") as f:
    f.setnchannels(1); f.setsampwidth(2); f.setframerate(8000)
    f.writeframes((np.sin(np.arange(800) / 5.0) * 20000).astype("<i2").tobytes())
audio = Summary.Audio(sample_rate=8000, num_channels=1, length_frames=800,
                      encoded_audio_string=buf.getvalue(), content_type="audio/wav")
w._get_file_writer().add_summary(Summary(value=[Summary.Value(tag="clip", audio=audio)]), 6)
frames = [Image.fromarray(np.full((4, 4, 3), 60 * k, np.uint8)) for k in range(3)]
gif = io.BytesIO()
frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
video = Summary.Image(height=4, width=4, colorspace=3, encoded_image_string=gif.getvalue())
w._get_file_writer().add_summary(Summary(value=[Summary.Value(tag="clip/video", image=video)]), 8)
w.add_hparams({"lr": 0.01, "batch": 32, "opt": "adam", "wd": 0.5}, {"hp/metric": 0.75})
w.close()

# TensorBoard's own tf-free writer: scalars as tensors of the "scalars" plugin
from tensorboard.summary import Writer
tw = Writer("logs/tb/own")
for i in range(120):
    tw.add_scalar("loss", 2.0 / (i + 1), i, wall_time=1767225600.0 + i)
    tw.add_scalar("lr", 0.1 * 0.99 ** i, i, wall_time=1767225600.0 + i)
tw.close()

# the tensor forms tf2's summary ops write (images, histograms, text, audio), with
# TensorBoard's own protos, plugin metadata and event writer
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.util import tensor_util
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.plugins.histogram import metadata as hmeta
from tensorboard.plugins.image import metadata as imeta
from tensorboard.plugins.text import metadata as tmeta
from tensorboard.plugins.audio import metadata as ameta
from PIL import Image
ew = EventFileWriter("logs/tb/tensors")
def put(tag, meta, array, step):
    v = summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor_util.make_tensor_proto(array))
    ew.add_event(event_pb2.Event(wall_time=1767225700.0 + step, step=step, summary=summary_pb2.Summary(value=[v])))
counts, edges = np.histogram(np.random.RandomState(2).randn(200), bins=8)
put("h2", hmeta.create_summary_metadata("h2", ""), np.stack([edges[:-1], edges[1:], counts], 1), 1)
pngs = []
for k in range(2):
    b = io.BytesIO(); Image.fromarray((np.random.RandomState(k).rand(4, 5, 3) * 255).astype(np.uint8)).save(b, "PNG")
    pngs.append(b.getvalue())
put("imgs", imeta.create_summary_metadata("imgs", ""), np.array([b"5", b"4"] + pngs, dtype=object), 2)
put("txt", tmeta.create_summary_metadata("txt", ""), np.array("plain text"), 3)
put("tbl", tmeta.create_summary_metadata("tbl", ""), np.array([["a", "b"], ["c", "d"]]), 3)
put("snd", ameta.create_summary_metadata("snd", "", ameta.Encoding.Value("WAV")),
    np.array([[buf.getvalue(), b"label"]], dtype=object), 4)
ew.close()

# what TensorBoard's own reader finds
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2
out = {}
for folder, _, names in os.walk("logs"):
    files = sorted(n for n in names if "tfevents" in n)
    if not files:
        continue
    rel = os.path.relpath(folder, "logs")
    run = out.setdefault(rel, {"scalars": {}, "images": 0, "animations": 0, "texts": [], "histograms": [], "audio": 0,
                               "params": {}, "first": None, "last": None})
    plugins = {}
    for name in files:
        for e in LegacyEventFileLoader(os.path.join(folder, name)).Load():
            run["first"] = e.wall_time if run["first"] is None else run["first"]
            run["last"] = max(run["last"] or 0, e.wall_time)
            for v in e.summary.value:
                if v.metadata.plugin_data.plugin_name:
                    plugins.setdefault(v.tag, v.metadata.plugin_data.plugin_name)
                p = plugins.get(v.tag)
                kind = v.WhichOneof("value")
                if kind == "simple_value" or (kind == "tensor" and p == "scalars"):
                    x = v.simple_value if kind == "simple_value" else tensor_util.make_ndarray(v.tensor).item()
                    run["scalars"].setdefault(v.tag, []).append([e.step, e.wall_time, float(x)])
                elif kind == "image" and v.image.encoded_image_string[:3] == b"GIF":
                    run["animations"] += 1
                elif kind == "image":
                    run["images"] += 1
                elif kind == "histo":
                    run["histograms"].append([v.tag, e.step, sum(v.histo.bucket), len(v.histo.bucket)])
                elif kind == "audio":
                    run["audio"] += 1
                elif kind == "tensor" and p == "images":
                    run["images"] += len(v.tensor.string_val) - 2
                elif kind == "tensor" and p == "histograms":
                    a = tensor_util.make_ndarray(v.tensor)
                    run["histograms"].append([v.tag, e.step, float(a[:, 2].sum()), len(a)])
                elif kind == "tensor" and p == "text":
                    run["texts"].append([v.tag, e.step, [s.decode() for s in v.tensor.string_val]])
                elif kind == "tensor" and p == "audio":
                    run["audio"] += 1
                elif p == "hparams":
                    d = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    if d.WhichOneof("data") == "session_start_info":
                        for k, val in d.session_start_info.hparams.items():
                            run["params"][k] = getattr(val, val.WhichOneof("kind"))
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def written(peers: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A logdir written by tensorboardX and TensorBoard, and what TensorBoard reads in it."""
    work = tmp_path_factory.mktemp("tb")
    ref = as_json(peer_script(peers, WRITE, cwd=work))
    return work / "logs", ref


def _runs(root: Path) -> dict[str, dict[str, Any]]:
    """source id -> (run dir, run.json) of every run in root."""
    out = {}
    for meta in root.glob("*/*/run.json"):
        raw = json.loads(meta.read_text())
        out[raw["imported_from"]["source_id"]] = {"dir": meta.parent, "meta": raw}
    return out


def _series(run_dir: Path) -> dict[str, list[list[str]]]:
    out = {}
    for f in (run_dir / "scalars").rglob("*.csv"):
        with open(f, newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["step", "value", "time"]
        out[f.relative_to(run_dir / "scalars").with_suffix("").as_posix()] = rows[1:]
    return out


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_point_step_and_wall_time_as_tensorboard_reads_them(written: tuple[Path, dict[str, Any]],
                                                                   tmp_path: Path) -> None:
    logdir, ref = written
    ids = tensorboard(logdir, root=tmp_path / "root")
    runs = _runs(tmp_path / "root")
    assert sorted(runs) == sorted(ref) and len(ids) == len(ref)
    total = 0
    for rel, want in ref.items():
        run_dir, meta = runs[rel]["dir"], runs[rel]["meta"]
        got = _series(run_dir)
        assert sorted(got) == sorted(want["scalars"]), rel
        for tag, points in want["scalars"].items():
            assert [[int(s), float(v), t] for s, v, t in got[tag]] == \
                [[s, v, format_time(w)] for s, w, v in points], (rel, tag)
            total += len(points)
        media = _jsonl(run_dir / "media.jsonl")
        assert sum(m["kind"] == "image" for m in media) == want["images"], rel
        assert sum(m["kind"] == "audio" for m in media) == want["audio"], rel
        assert sum(m["kind"] == "animation" for m in media) == want["animations"], rel
        texts = [(p.relative_to(run_dir / "text").with_suffix("").as_posix(), r)
                 for p in (run_dir / "text").rglob("*.jsonl") for r in _jsonl(p)]
        assert sorted((t, r["step"]) for t, r in texts) == sorted((t, s) for t, s, _ in want["texts"])
        for t, r in texts:
            cells = next(c for tag, s, c in want["texts"] if tag == t and s == r["step"])
            assert all(c in r["text"] for c in cells)
        hists = [(p.relative_to(run_dir / "histograms").with_suffix("").as_posix(), r)
                 for p in (run_dir / "histograms").rglob("*.jsonl") for r in _jsonl(p)]
        assert sorted((t, r["step"], r["count"]) for t, r in hists) == \
            sorted((t, s, int(n)) for t, s, n, _ in want["histograms"])
        assert sum(len(r["counts"]) for _, r in hists) == sum(b for *_, b in want["histograms"])
        params = json.loads((run_dir / "params.json").read_text())
        assert params == want["params"], rel
        assert meta["started"] == _iso(want["first"]) and meta["ended"] == _iso(want["last"])
        assert meta["imported_from"]["tool"] == "tensorboard"
        assert meta["imported_from"]["source"] == str(logdir)
        assert meta["imported_from"]["complete"] is True
        assert meta["name"] == rel and meta["experiment"] == "logs"
    assert total >= 800
    # the inputs hold every kind (so each comparison above compared something)
    tbx, tensors = ref["tbx"], ref["tb/tensors"]
    assert (tbx["images"], tbx["animations"], tbx["audio"], len(tbx["texts"]), len(tbx["histograms"])) == (3, 1, 1, 2, 2)
    assert (tensors["images"], tensors["audio"], len(tensors["texts"]), len(tensors["histograms"])) == (2, 1, 2, 1)
    assert sum(bool(r["params"]) for r in ref.values()) == 1
    origin = runs["tb/own"]["meta"]["imported_from"]
    assert origin["version"] is None and origin["file_version"] == "brain.Event:2"  # no writer version in the files


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def test_float32_values_stay_exactly_as_stored(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    logdir, _ = written
    tensorboard(logdir, root=tmp_path)
    run = _runs(tmp_path)["tbx"]["dir"]
    rows = _series(run)["train/loss"]
    import numpy as np

    assert float(rows[2][1]) == float(np.float32(1 / 3)) != 1 / 3  # the float32, not the double
    histo = _jsonl(run / "histograms" / "weights.jsonl")
    assert [h["count"] for h in histo] == [1000, 500]


def test_reimport_changes_nothing_and_grown_source_is_redone(written: tuple[Path, dict[str, Any]],
                                                             tmp_path: Path) -> None:
    logdir, _ = written
    src = tmp_path / "logs"
    shutil.copytree(logdir, src)
    root = tmp_path / "root"
    first = tensorboard(src, root=root)
    before = _snapshot(root)
    imp = run_import("tensorboard", src, root)
    assert imp.ids == first and imp.new == [] and len(imp.skipped) == len(first)
    assert _snapshot(root) == before
    # a run folder that grew (its writer went on) is imported again, in place
    ev = next((src / "tbx" / "grp" / "x").glob("*tfevents*"))
    ev.write_bytes(ev.read_bytes() + next((src / "tbx" / "grp" / "y").glob("*tfevents*")).read_bytes())
    imp = run_import("tensorboard", src, root)
    assert imp.ids == first and len(imp.new) == 1
    grown = _runs(root)["tbx/grp/x"]["dir"]
    assert sorted(_series(grown)) == ["grp"] and len(_series(grown)["grp"]) == 2


def _derived(p: Path) -> bool:
    """The derived caches docs/format.md names: .row.json holds this host's inodes and mtimes,
    .lod/ the series envelopes; two imports of the same data may differ there and nowhere else."""
    return p.name == ".row.json" or ".lod" in p.parts


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not _derived(p)}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(REPO / "src"), **(env or {}))
    return subprocess.run([sys.executable, "-c", "from labtrack.cli import main; main()", *args],
                          capture_output=True, text=True, env=full, timeout=120)


def test_cli_one_line_when_piped_and_json(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    logdir, ref = written
    p = _cli("import", "tensorboard", str(logdir), "--root", str(tmp_path), "--experiment", "mine")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imported {len(ref)} runs from tensorboard (")
    assert p.stderr == ""
    assert {m.parent.parent.name for m in tmp_path.glob("*/*/run.json")} == {"mine"}
    p = _cli("import", "tensorboard", str(logdir), "--root", str(tmp_path), "--experiment", "mine", "--json")
    out = json.loads(p.stdout)
    assert out["imported"] == [] and len(out["already_imported"]) == len(ref) and out["points"] == 0


def test_bad_sources_give_one_clear_line(tmp_path: Path) -> None:
    p = _cli("import", "tensorboard", str(tmp_path / "nope"), "--root", str(tmp_path / "root"))
    assert p.returncode != 0 and "does not exist" in p.stderr and "Traceback" not in p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="holds no event files"):
        tensorboard(empty, root=tmp_path / "root")
    fake = tmp_path / "fake" / "events.out.tfevents.123.host"
    fake.parent.mkdir()
    fake.write_bytes(b"this is not an event file, only named like one\n" * 3)
    p = _cli("import", "tensorboard", str(fake.parent), "--root", str(tmp_path / "root"))
    assert p.returncode != 0 and str(fake) in p.stderr and "Traceback" not in p.stderr
    assert not list((tmp_path / "root").glob("*/*/run.json"))


def test_damaged_record_is_an_error_naming_the_file(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    logdir, _ = written
    src = tmp_path / "own"
    shutil.copytree(logdir / "tb" / "own", src)
    ev = next(src.glob("*tfevents*"))
    data = bytearray(ev.read_bytes())
    data[len(data) // 2] ^= 0x40  # one flipped bit in the middle of the file
    ev.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=f"{ev}.*(damaged|checksum)"):
        tensorboard(src, root=tmp_path / "root")


def test_cut_off_last_record_imports_the_complete_ones(written: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    logdir, ref = written
    src = tmp_path / "own"
    shutil.copytree(logdir / "tb" / "own", src)
    ev = next(src.glob("*tfevents*"))
    ev.write_bytes(ev.read_bytes()[:-7])  # a writer killed in the middle of its last record
    imp = run_import("tensorboard", src, tmp_path / "root")
    assert len(imp.notes) == 1 and str(ev) in imp.notes[0] and "cut off" in imp.summary()
    run = _runs(tmp_path / "root")["."]["dir"]
    series = _series(run)
    want = ref["tb/own"]["scalars"]
    assert len(series["lr"]) == len(want["lr"]) - 1 and len(series["loss"]) == len(want["loss"])


def test_fast_and_exact_decoders_agree(written: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from labtrack.importers import _tb_decode

    logdir, _ = written

    def decode_all() -> dict[str, Any]:
        d = _tb_decode.Decoded()
        for f in sorted(logdir.rglob("*tfevents*")):
            _tb_decode.decode(f.read_bytes(), str(f), d)
        return {t: [c.tolist() for c in cols] for t, cols in d.columns().items()}

    fast = decode_all()
    monkeypatch.setattr(_tb_decode, "_FAST_MIN", 10 ** 9)
    exact = decode_all()
    assert fast == exact and sum(len(c[0]) for c in fast.values()) >= 800
    assert np.isfinite([v for c in fast.values() for v in c[1]]).all()


def test_import_killed_midway_is_completed_by_the_next(peers: Path, tmp_path: Path) -> None:
    peer_script(peers, """
        from tensorboardX import SummaryWriter
        w = SummaryWriter("one")
        for i in range(20000):
            w.add_scalar("loss", 1.0 / (i + 1), i)
            w.add_scalar("acc", i / 20000, i)
        w.close()
    """, cwd=tmp_path)
    src = tmp_path / "logs"
    for k in range(40):  # 40 run folders, each a copy of what the writer wrote
        shutil.copytree(tmp_path / "one", src / f"run{k:02d}")
    root = tmp_path / "root"
    full = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    child = subprocess.Popen([sys.executable, "-c", "from labtrack.cli import main; main()", "import",
                              "tensorboard", str(src), "--root", str(root)], env=full,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        done = [m for m in root.glob("*/*/run.json") if json.loads(m.read_text())["imported_from"]["complete"]]
        if len(done) >= 2:
            break
        time.sleep(0.01)
    assert child.poll() is None, "the import ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    metas = [json.loads(m.read_text()) for m in root.glob("*/*/run.json")]
    assert 2 <= sum(m["imported_from"]["complete"] for m in metas) < 40
    imp = run_import("tensorboard", src, root)
    assert len(imp.ids) == 40 and len(imp.skipped) >= 2 and len(imp.new) + len(imp.skipped) == 40
    clean = tmp_path / "clean"
    tensorboard(src, root=clean)
    assert _snapshot_without_times(root) == _snapshot_without_times(clean)


def _snapshot_without_times(root: Path) -> dict[str, Any]:
    """Every file of every run but the derived caches; run.json without the fields an import's own
    clock sets."""
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == "heartbeat" or _derived(p):
            continue
        rel = p.relative_to(root).as_posix()
        if p.name == "run.json":
            raw = json.loads(p.read_text())
            raw["imported_from"].pop("source", None)
            out[rel] = raw
        elif p.name in ("summary.json", "env.json"):
            out[rel] = "present"
        else:
            out[rel] = p.read_bytes()
    return out


def _crc32c_by_definition(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_crc32c_matches_its_definition_short_and_long() -> None:
    import random

    from labtrack.importers import _tb_events

    rnd = random.Random(5)
    for n in (0, 1, 2, 9, 255, 256, 257, 1023, 1025, 4096, 5003):
        data = bytes(rnd.randrange(256) for _ in range(n))
        assert _tb_events.masked_crc32c(data) == _crc32c_by_definition(data), n
    assert _tb_events.masked_crc32c(b"123456789") == _crc32c_by_definition(b"123456789")


def test_the_guessing_walk_finds_exactly_the_records_a_plain_walk_finds() -> None:
    import struct

    from labtrack.importers import _tb_events

    def record(payload: bytes) -> bytes:
        head = struct.pack("<Q", len(payload))
        return (head + struct.pack("<I", _tb_events.masked_crc32c(head)) + payload
                + struct.pack("<I", _tb_events.masked_crc32c(payload)))

    pattern = [5, 9, 9, 14, 3]
    lengths = [pattern[i % 5] for i in range(3000)] + [7] * 50 + [pattern[i % 5] for i in range(2001)]
    lengths[1234] = 11  # a break in the pattern
    data = b"".join(record(bytes([i % 251]) * n) for i, n in enumerate(lengths))
    s, e, cut = _tb_events.split_records(data, "x")
    assert not cut and (e - s).tolist() == lengths
    s2, e2, cut2 = _tb_events.split_records(data[:-3], "x")
    assert cut2 and (e2 - s2).tolist() == lengths[:-1]


def test_the_fast_decoder_is_much_faster_than_the_exact_one(written: tuple[Path, dict[str, Any]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from labtrack.importers import _tb_decode

    logdir, _ = written
    one = next((logdir / "tb" / "own").glob("*tfevents*")).read_bytes()
    data = one * 300  # event files concatenated are one valid event stream: 72,000 records

    def seconds() -> float:
        best = float("inf")
        for _ in range(3):
            d = _tb_decode.Decoded()
            t = time.perf_counter()
            _tb_decode.decode(data, "x", d)
            best = min(best, time.perf_counter() - t)
        assert d.points == 240 * 300
        return best

    fast = seconds()
    monkeypatch.setattr(_tb_decode, "_FAST_MIN", 10 ** 9)
    exact = seconds()
    assert exact / fast > 3, (exact, fast)


def test_histogram_buckets_of_tensorflows_own_writer() -> None:
    from labtrack.importers._tensorboard import _histogram

    # TensorFlow ends the last bucket at DBL_MAX and lets the first start at the data's minimum
    h = _histogram([-0.5, 0.0, 0.5, 1.7976931348623157e308], [1.0, 3.0, 2.0, 4.0], -0.7, 2.0)
    assert h.record["bins"] == [-0.7, -0.5, 0.0, 0.5, 2.0] and h.record["counts"] == [1, 3, 2, 4]
    # a first limit at the minimum itself: the first bucket gets a width like its neighbour's
    h = _histogram([1.0, 2.0, 3.0], [2.0, 0.0, 5.0], 1.0, 3.0)
    assert h.record["bins"] == [0.0, 1.0, 2.0, 3.0] and h.record["count"] == 7
    assert _histogram([], [], 0.0, 0.0) is None


def test_the_import_speed_benchmark_runs(peers: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "import_speed.py"), "--points", "2000",
                        "--tags", "4", "--repeat", "1", "--json", "--peers-python", str(peers),
                        "--keep", str(tmp_path / "log")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["points"] == 2000 and "(2,000 points)" in out["summary"] and out["median_s"] > 0
