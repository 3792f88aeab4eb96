"""TensorBoard export read back with TensorBoard's own reader, and a real TensorBoard launch."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labtrack import Run
from labtrack._store.reader import read_jsonl
from labtrack.errors import LabtrackValueError

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from labtrack.integrations import tensorboard as tb  # noqa: E402

LABTRACK = [sys.executable, "-c", "from labtrack.cli import main; main()"]


def _make_run(root: Path, name: str = "baseline", offset: float = 0.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Run("mnist", name, root=root, capture_git=False, capture_console=False, system=False) as run:
        for step in range(30):
            run.log({"train/loss": 1.0 / (step + 1) + offset, "acc": step / 30}, step=step)
        run.log({"acc": float("nan")}, step=30)
        rng = np.random.default_rng(0)
        for step in (0, 10):
            run.log_image("samples/bird", rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8), step=step)
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [1, 0])
        run.log_figure("curve", fig, step=20)
        plt.close(fig)
        for step in (0, 5, 9):
            run.log_histogram("weights", rng.normal(step, 1.0, size=500), step=step, bins=8)
        run.log_text("translation", "Hallo Welt", step=3, expected="Hello world")
        return run.dir


def _accumulator(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _csv(run_dir: Path, rel: str) -> list[tuple[int, float, float]]:
    lines = (run_dir / "scalars" / rel).read_text().splitlines()[1:]
    return [(int(s), float(v), float(t)) for s, v, t in (line.split(",") for line in lines)]


def test_export_reads_back_with_tensorboards_reader(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path / "root")
    out = tmp_path / "tb" / "one"
    counts = tb.export_run(run_dir, out)
    assert counts == {"scalars": 61, "images": 3, "histograms": 3, "text": 1}

    acc = _accumulator(out)
    tags = acc.Tags()
    assert set(tags["scalars"]) == {"train/loss", "acc"}
    assert set(tags["images"]) == {"samples/bird", "curve"}
    assert tags["histograms"] == ["weights"]
    for tag, rel in (("train/loss", "train/loss.csv"), ("acc", "acc.csv")):
        expected = _csv(run_dir, rel)
        got = acc.Scalars(tag)
        assert [e.step for e in got] == [s for s, _, _ in expected]
        # TensorBoard keeps float32
        np.testing.assert_array_equal(np.array([e.value for e in got], dtype=np.float32),
                                      np.array([v for _, v, _ in expected], dtype=np.float32))
        assert [round(e.wall_time, 3) for e in got] == [t for _, _, t in expected]

    media = {(m["name"], m["step"]): m for m in read_jsonl(run_dir / "media.jsonl")}
    for tag in ("samples/bird", "curve"):
        for ev in acc.Images(tag):
            entry = media[(tag, ev.step)]
            assert ev.encoded_image_string == (run_dir / entry["path"]).read_bytes()
            with Image.open(run_dir / entry["path"]) as img:
                assert (ev.width, ev.height) == img.size
    assert [ev.step for ev in acc.Images("samples/bird")] == [0, 10]
    assert (acc.Images("samples/bird")[0].width, acc.Images("samples/bird")[0].height) == (8, 6)

    records = read_jsonl(run_dir / "histograms" / "weights.jsonl")
    got_h = acc.Histograms("weights")
    assert [h.step for h in got_h] == [0, 5, 9]
    for rec, ev in zip(records, got_h):
        hv = ev.histogram_value
        assert list(hv.bucket_limit) == rec["bins"][1:]
        assert list(hv.bucket) == rec["counts"]
        assert (hv.min, hv.max, hv.num) == (rec["min"], rec["max"], rec["count"])

    (text_event,) = acc.Tensors("translation")
    assert text_event.step == 3
    assert tensor_util.make_ndarray(text_event.tensor_proto).item() == b"Hallo Welt\n\nexpected: Hello world"

    # exporting again replaces the event file instead of doubling every point
    tb.export_run(run_dir, out)
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert len(_accumulator(out).Scalars("train/loss")) == 30


def test_export_runs_names_each_run_and_cli_prints_the_command(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = _make_run(root, "baseline")
    b = _make_run(root, "baseline", offset=1.0)
    c = _make_run(root, "wide: 2,3/../x")
    exported = tb.export_runs([a, b, c], tmp_path / "tb")
    assert [e.label for e in exported] == [f"mnist/baseline-{a.name}", f"mnist/baseline-{b.name}", "mnist/wide- 2-3/x"]
    assert [e.spec_dir for e in exported] == [(tmp_path / "tb" / d.name).resolve() for d in (a, b, c)]
    assert exported[2].events_dir == exported[2].spec_dir / "wide- 2-3" / "x"
    losses = [_accumulator(e.events_dir).Scalars("train/loss")[0].value for e in exported]
    assert losses == [1.0, 2.0, 1.0]

    out = subprocess.run([*LABTRACK, "tb", a.name, "mnist/wide: 2,3/../x", "--root", str(root), "--no-launch",
                          "--port", "7007"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    base = root.resolve() / ".labtrack" / "tensorboard"
    spec = f"mnist:{base / a.name},mnist:{base / c.name}"
    assert shlex.split(out.stdout) == ["tensorboard", "--logdir_spec", spec, "--port", "7007", "--host", "127.0.0.1"]
    assert len(list((base / a.name / "baseline").glob("events.out.tfevents.*"))) == 1
    out = subprocess.run([*LABTRACK, "tb", a.name, "--root", str(root), "--no-launch", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "runs": [{"label": "mnist/baseline", "dir": str(base / a.name / "baseline")}],
        "logdir_spec": f"mnist:{base / a.name}", "url": None,
        "command": ["tensorboard", "--logdir_spec", f"mnist:{base / a.name}", "--port", "6006", "--host", "127.0.0.1"],
    }


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_dir = _make_run(root)
    out = subprocess.run([*LABTRACK, "tb", "nope", "--root", str(root), "--no-launch"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: no run matches 'nope' under {root.resolve()}")
    # without the tensorboard package
    script = ("import sys; sys.modules['tensorboard'] = None; sys.argv = ['labtrack'] + sys.argv[1:]\n"
              "from labtrack.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", script, "tb", run_dir.name, "--root", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: TensorBoard is not installed; install it with: pip install 'labtrack[tb]'"
    one = [tb.Exported("x/y", "x", tmp_path, tmp_path)]
    with pytest.raises(LabtrackValueError, match="port 0 is not allowed"):
        tb.launch(one, port=0)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LabtrackValueError, match=f"cannot listen on 127.0.0.1:{port} .*choose another --port"):
            tb.launch(one, port=port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_launch_serves_the_exported_runs(tmp_path: Path) -> None:
    import httpx

    root = tmp_path / "root"
    a = _make_run(root, "baseline")
    b = _make_run(root, "wide")
    exported = tb.export_runs([a, b], tmp_path / "tb")
    port = _free_port()
    log = tmp_path / "tensorboard.log"
    proc = tb.launch(exported, port=port, log_file=log)
    runs: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/data/runs", timeout=5)
                if r.status_code == 200:
                    runs = json.loads(r.text)
                    if sorted(runs) == ["mnist/baseline", "mnist/wide"]:
                        break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert sorted(runs) == ["mnist/baseline", "mnist/wide"], log.read_text()
        tags = httpx.get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=10).json()
        assert set(tags["mnist/baseline"]) == {"train/loss", "acc"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_boxes_are_drawn_into_the_exported_image(tmp_path: Path) -> None:
    import io

    with Run("det", "boxes", root=tmp_path / "root", capture_git=False, capture_console=False) as run:
        run.log_image("scene", np.zeros((20, 30, 3), dtype=np.uint8), step=0, threshold=0.5,
                      classes=["bird", "cat"],
                      boxes=[{"xStart": 2, "yStart": 3, "xEnd": 10, "yEnd": 12, "className": "bird", "probability": 0.9},
                             {"xStart": 14, "yStart": 3, "xEnd": 28, "yEnd": 15, "className": "cat", "probability": 0.1}])
        run.log_image("plain", np.zeros((4, 4), dtype=np.uint8), step=0)
    stored = (run.dir / "media" / "0" / "scene.png").read_bytes()
    tb.export_run(run.dir, tmp_path / "tb")
    acc = _accumulator(tmp_path / "tb")
    (ev,) = acc.Images("scene")
    with Image.open(io.BytesIO(ev.encoded_image_string)) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (30, 20)
        assert rgb.getpixel((2, 3)) == (230, 25, 75)  # the bird box, in the first class's colour
        assert rgb.getpixel((6, 12)) == (230, 25, 75)
        assert rgb.getpixel((20, 15)) == (0, 0, 0)  # the cat box is under the threshold
    assert (run.dir / "media" / "0" / "scene.png").read_bytes() == stored  # the run is untouched
    (plain,) = acc.Images("plain")
    assert plain.encoded_image_string == (run.dir / "media" / "0" / "plain.png").read_bytes()


def test_record_framing_equals_tensorboards_record_writer() -> None:
    import io

    from tensorboard.summary.writer.record_writer import RecordWriter

    rng = np.random.default_rng(1)
    payloads = [rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes()
                for n in rng.integers(0, 40, size=300)] + [b"", b"\x00" * 9, bytes(range(256))]
    expected = io.BytesIO()
    writer = RecordWriter(expected)
    for p in payloads:
        writer.write(p)
    assert tb._records(payloads) == expected.getvalue()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@pytest.mark.slow
def test_sigterm_to_labtrack_tb_stops_tensorboard_and_frees_the_port(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run_dir = _make_run(root)
    port = _free_port()
    log = tmp_path / "tb.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*LABTRACK, "tb", run_dir.name, "--root", str(root), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        listening = False
        while time.monotonic() < deadline and proc.poll() is None and not listening:
            with socket.socket() as s:
                listening = s.connect_ex(("127.0.0.1", port)) == 0
            time.sleep(0.3)
        assert listening, log.read_text()
        kids = _children(proc.pid)
        assert kids, "labtrack tb has no TensorBoard child"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
            time.sleep(0.2)
        alive = [k for k in kids if Path(f"/proc/{k}").exists()
                 and "Z" not in Path(f"/proc/{k}/stat").read_text().split()[2]]
        assert not alive, f"TensorBoard (pid {alive}) still runs after labtrack tb got SIGTERM"
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # fails only if a listener holds it
            s.bind(("127.0.0.1", port))
            s.listen()  # the port is free again
        assert rc == 128 + signal.SIGTERM  # and labtrack tb says it was stopped
    finally:
        kids = _children(proc.pid) if proc.poll() is None else locals().get("kids", [])
        if proc.poll() is None:
            proc.kill()
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
