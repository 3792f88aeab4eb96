"""Media value objects in run.log, log_audio / log_video, and log(time=): real WAV files read
back with `wave`, real MP4s decoded with PyAV, the GIF fallback in a child without av."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import labtrack
from labtrack.errors import LabtrackNameError, LabtrackTypeError, LabtrackValueError, RunStateError

from conftest import child_env, flush

MakeRun = Callable[..., labtrack.Run]


def media_lines(run: labtrack.Run) -> list[dict[str, Any]]:
    path = run.dir / "media.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def scalar_rows(run: labtrack.Run, name: str) -> list[list[str]]:
    with open(run.dir / "scalars" / f"{name}.csv") as f:
        return list(csv.reader(f))[1:]


def tone(n: int = 8000, channels: int = 1) -> np.ndarray:
    t = np.arange(n) / 8000.0
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return mono if channels == 1 else np.stack([mono, -mono], axis=1)


def decoded_frames(path: Path) -> tuple[int, int, int]:
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape[0], frames[0].shape[1]


# --- audio ---------------------------------------------------------------------------------------

def test_log_audio_writes_a_wav_that_wave_reads_back(make_run: MakeRun) -> None:
    run = make_run()
    run.log_audio("speech", tone(8000), sample_rate=8000, step=2, caption="a tone")
    flush(run)
    (e,) = media_lines(run)
    assert e["kind"] == "audio" and e["path"] == "media/2/speech.wav" and e["step"] == 2
    assert (e["sample_rate"], e["channels"], e["duration"], e["caption"]) == (8000, 1, 1.0, "a tone")
    with wave.open(str(run.dir / e["path"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (8000, 1, 2, 8000)
        samples = np.frombuffer(w.readframes(8000), dtype="<i2")
    assert np.abs(samples / 32767.0 - tone(8000)).max() < 1e-4  # the samples, not only a header


def test_stereo_int16_torch_and_channels_first_audio(make_run: MakeRun) -> None:
    import torch

    run = make_run()
    stereo = (tone(4000, 2) * 32767).astype(np.int16)
    run.log_audio("stereo", stereo, sample_rate=4000, step=0)
    run.log_audio("torch_cf", torch.from_numpy(tone(4000, 2).T.copy()), sample_rate=4000, step=0)
    flush(run)
    by = {e["name"]: e for e in media_lines(run)}
    for name in ("stereo", "torch_cf"):
        with wave.open(str(run.dir / by[name]["path"])) as w:
            assert (w.getnchannels(), w.getnframes()) == (2, 4000)
            data = np.frombuffer(w.readframes(4000), dtype="<i2").reshape(-1, 2)
        assert np.array_equal(data[:, 0], -data[:, 1])  # the channels kept apart, in order


def test_a_wav_file_is_copied_in_with_its_own_rate(make_run: MakeRun, tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050)
        w.writeframes(np.zeros(11025, dtype="<i2").tobytes())
    run = make_run()
    run.log_audio("file", str(src), step=1)
    run.log({"obj": labtrack.Audio(src)}, step=1)
    flush(run)
    for e in media_lines(run):
        assert (e["sample_rate"], e["duration"]) == (22050, 0.5)
        assert (run.dir / e["path"]).read_bytes() == src.read_bytes()


@pytest.mark.parametrize("bad, error, text", [
    (np.array([0.5, 1.5]), LabtrackValueError, "[-1, 1]"),
    (np.array([0.0, np.nan]), LabtrackValueError, "NaN"),
    (np.zeros(0), LabtrackValueError, "no samples"),
    (np.zeros((4, 4, 4)), LabtrackValueError, "shape"),
    (np.zeros((100, 9)), LabtrackValueError, "channels"),
    (np.zeros(10, dtype=np.int32), LabtrackTypeError, "int32"),
    ("missing.wav", LabtrackValueError, "does not exist"),
    ("sound.mp3", LabtrackValueError, ".wav"),
    ({"a": 1}, LabtrackTypeError, "dict"),
])
def test_bad_audio_raises_naming_the_value(bad: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match="labtrack.Audio") as info:
        labtrack.Audio(bad)
    assert text in str(info.value)


@pytest.mark.parametrize("rate", [0, -1, 16000.5, True, "16k", 10**7])
def test_bad_sample_rates_raise(rate: Any) -> None:
    with pytest.raises(LabtrackValueError, match="sample_rate"):
        labtrack.Audio(tone(100), sample_rate=rate)


# --- video ---------------------------------------------------------------------------------------

def test_log_video_writes_an_mp4_that_av_decodes_frame_by_frame(make_run: MakeRun) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(12, 24, 32, 3), dtype=np.uint8)
    run = make_run()
    run.log_video("rollout", frames, fps=8, step=5, caption="episode 1")
    flush(run)
    (e,) = media_lines(run)
    assert e["kind"] == "video" and e["path"] == "media/5/rollout.mp4" and e["format"] == "mp4"
    assert (e["fps"], e["frames"], e["width"], e["height"], e["caption"]) == (8.0, 12, 32, 24, "episode 1")
    assert decoded_frames(run.dir / e["path"]) == (12, 24, 32)


def test_torch_tchw_float_and_odd_sized_video(make_run: MakeRun) -> None:
    import torch

    frames = torch.rand(5, 3, 15, 21)  # (T, C, H, W) float in [0, 1], odd sides
    run = make_run()
    run.log({"v": labtrack.Video(frames, fps=4)}, step=0)
    flush(run)
    (e,) = media_lines(run)
    assert (e["width"], e["height"], e["frames"]) == (21, 15, 5)
    n, h, w = decoded_frames(run.dir / e["path"])
    assert n == 5 and (h, w) == (16, 22)  # padded to even sides for yuv420p


def test_a_video_file_is_copied_in(make_run: MakeRun, tmp_path: Path) -> None:
    first = make_run(experiment="src")
    first.log_video("v", np.zeros((6, 16, 16, 3), np.uint8), fps=6, step=0)
    flush(first)
    mp4 = first.dir / media_lines(first)[0]["path"]
    run = make_run()
    run.log_video("copied", mp4, step=3)
    flush(run)
    (e,) = media_lines(run)
    assert e["path"] == "media/3/copied.mp4" and e["format"] == "mp4" and e["frames"] == 6
    assert (run.dir / e["path"]).read_bytes() == mp4.read_bytes()


def test_without_av_video_falls_back_to_gif(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "sys.modules['av'] = None  # `import av` raises ImportError, as where PyAV is not installed\n"
        "import numpy as np, labtrack\n"
        f"run = labtrack.Run('x', root={str(tmp_path)!r}, capture_git=False, capture_console=False)\n"
        "run.log_video('v', np.arange(4)[:, None, None, None].repeat(10, 1).repeat(12, 2).repeat(3, 3).astype(np.uint8) * 60, fps=5, step=1)\n"
        "run.finish()\n"
        "print(run.dir)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    run_dir = Path(p.stdout.strip().splitlines()[-1])
    (e,) = [json.loads(x) for x in (run_dir / "media.jsonl").read_text().splitlines()]
    assert e["format"] == "gif" and e["path"] == "media/1/v.gif"
    from PIL import Image

    with Image.open(run_dir / e["path"]) as im:
        assert (im.format, im.n_frames, im.size) == ("GIF", 4, (12, 10))


@pytest.mark.parametrize("bad, error, text", [
    (np.zeros((2, 5, 5, 2), np.uint8), LabtrackValueError, "shape"),
    (np.zeros((5, 5), np.uint8), LabtrackValueError, "shape"),
    (np.full((2, 4, 4, 3), 2.0), LabtrackValueError, "[0, 1]"),
    ([], LabtrackValueError, "no frames"),
    ("clip.avi", LabtrackValueError, ".mp4"),
    ("missing.mp4", LabtrackValueError, "does not exist"),
    (3, LabtrackTypeError, "int"),
])
def test_bad_video_raises_naming_the_value(bad: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match="labtrack.Video") as info:
        labtrack.Video(bad)
    assert text in str(info.value)


@pytest.mark.parametrize("fps", [0, -2, 1000, "8", True])
def test_bad_fps_raises(fps: Any) -> None:
    with pytest.raises(LabtrackValueError, match="fps"):
        labtrack.Video(np.zeros((2, 4, 4, 3), np.uint8), fps=fps)


# --- a mixed log() dict --------------------------------------------------------------------------

def test_a_mixed_dict_lands_in_each_record_at_one_step(make_run: MakeRun) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8)
    run = make_run()
    run.log({"loss": 0.25, "acc": 1,
             "sample": labtrack.Image(img, caption="c", boxes=[{"xStart": 1, "yStart": 1, "xEnd": 4, "yEnd": 5,
                                                                "className": "cat"}], classes=["cat"]),
             "clip": labtrack.Audio(tone(800), sample_rate=8000),
             "video": labtrack.Video(np.zeros((3, 8, 8, 3), np.uint8), fps=8),
             "preds": labtrack.Table({"id": [1, 2], "p": [0.5, 0.25]}),
             "w": labtrack.Histogram(rng.normal(size=500), bins=10),
             "report": labtrack.Html("<b>ok</b>")}, step=7)
    run.log({"loss": 0.5})  # the automatic step continues after the mixed call
    flush(run)
    by = {e["name"]: e for e in media_lines(run)}
    assert {k: v["kind"] for k, v in by.items()} == {
        "sample": "image", "clip": "audio", "video": "video", "preds": "table", "report": "html"}
    assert all(e["step"] == 7 for e in by.values())
    assert json.loads((run.dir / by["sample"]["boxes"]).read_text())["boxes"][0]["className"] == "cat"
    assert by["sample"]["caption"] == "c"
    from PIL import Image

    with Image.open(run.dir / by["sample"]["path"]) as im:
        assert np.array_equal(np.asarray(im), img)
    assert (run.dir / by["report"]["path"]).read_text() == "<b>ok</b>"
    assert (run.dir / "tables/preds.csv").read_text() == "id,p\n1,0.5\n2,0.25\n"
    (h,) = [json.loads(x) for x in (run.dir / "histograms/w.jsonl").read_text().splitlines()]
    assert h["step"] == 7 and sum(h["counts"]) == 500 and len(h["bins"]) == 11
    assert [r[:2] for r in scalar_rows(run, "loss")] == [["7", "0.25"], ["8", "0.5"]]
    assert [r[:2] for r in scalar_rows(run, "acc")] == [["7", "1.0"]]


def test_a_histogram_from_counts_and_edges(make_run: MakeRun) -> None:
    counts, edges = np.histogram([1, 2, 2, 3, 3, 3], bins=3)
    run = make_run()
    run.log({"h": labtrack.Histogram(np_histogram=(counts, edges))}, step=2)
    run.log_histogram("h2", labtrack.Histogram(np_histogram=(counts, edges)), step=2)
    flush(run)
    for name in ("h", "h2"):
        (rec,) = [json.loads(x) for x in (run.dir / f"histograms/{name}.jsonl").read_text().splitlines()]
        assert rec["counts"] == [1, 2, 3] and rec["bins"] == [float(e) for e in edges] and rec["count"] == 6


@pytest.mark.parametrize("pair, text", [
    (([1, 2], [0, 1]), "need 3 edges"),
    (([1, -1], [0, 1, 2]), ">= 0"),
    (([1, 1], [0, 2, 1]), "increasing"),
    ("x", "pair"),
])
def test_bad_precomputed_histograms_raise(pair: Any, text: str) -> None:
    with pytest.raises((LabtrackValueError, LabtrackTypeError), match="np_histogram") as info:
        labtrack.Histogram(np_histogram=pair)
    assert text in str(info.value)


@pytest.mark.parametrize("bad", [
    {"loss": 0.1, "img": labtrack.Html("x"), "oops": "text"},          # a bad number after a media object
    {"oops": [1, 2], "loss": 0.1, "img": labtrack.Html("x")},          # a bad number before it
    {"loss": 0.1, "img": labtrack.Html("x"), "../up": 1.0},            # a bad series name
    {"loss": 0.1, "../img": labtrack.Html("x")},                       # a bad media name
])
def test_a_mixed_dict_with_a_bad_value_logs_nothing(make_run: MakeRun, bad: dict[str, Any]) -> None:
    run = make_run()
    run.log({"loss": 1.0}, step=0)
    with pytest.raises((LabtrackTypeError, LabtrackNameError)) as info:
        run.log(bad, step=1)
    assert info.value.__suppress_context__ or info.value.__context__ is None  # no marker in the traceback
    flush(run)
    assert media_lines(run) == []
    assert [r[0] for r in scalar_rows(run, "loss")] == ["0"]
    assert not (run.dir / "media").exists() or not any((run.dir / "media").rglob("*.*"))
    run.log({"loss": 2.0})
    flush(run)
    assert [r[0] for r in scalar_rows(run, "loss")] == ["0", "1"]  # the failed call did not move the step


def test_a_media_only_dict_moves_the_step_and_default_log_forwards(tmp_path: Path) -> None:
    run = labtrack.init("exp", root=tmp_path, capture_git=False, capture_console=False)
    try:
        labtrack.log({"img": labtrack.Image(np.zeros((4, 4), np.uint8))}, step=3)
        labtrack.log({"loss": 0.1})
        labtrack.log_audio("a", tone(80), 8000)
        labtrack.log_video("v", np.zeros((2, 4, 4, 3), np.uint8), 4, 9, "cap")
        labtrack.log({"loss": 0.2}, time=1_700_000_000.0)
        run.flush()
        by = {e["name"]: e for e in media_lines(run)}
        assert by["img"]["step"] == 3 and by["a"]["step"] == 4 and by["v"]["step"] == 9
        assert by["v"]["caption"] == "cap"
        assert scalar_rows(run, "loss") [0][0] == "4"
        assert scalar_rows(run, "loss")[1][2] == "1700000000.000"
    finally:
        labtrack.finish()


def test_media_after_finish_raises(make_run: MakeRun) -> None:
    run = make_run()
    run.finish()
    with pytest.raises(RunStateError):
        run.log({"img": labtrack.Image(np.zeros((2, 2), np.uint8))})
    with pytest.raises(RunStateError):
        run.log_audio("a", tone(10))


# --- time= -----------------------------------------------------------------------------------------

def test_time_is_written_in_the_csv_time_column_for_every_point(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": 1.0, "b": 2.0}, step=0, time=1_600_000_000.25)
    run.log({"a": 3.0}, step=1)  # no time: now
    run.log({"a": 4.0, "img": labtrack.Image(np.zeros((2, 2), np.uint8))}, step=2, time=1_650_000_000.5)
    flush(run)
    a = scalar_rows(run, "a")
    assert a[0][2] == "1600000000.250" and scalar_rows(run, "b")[0][2] == "1600000000.250"
    assert float(a[1][2]) > 1.7e9
    assert a[2][2] == "1650000000.500" and media_lines(run)[0]["time"] == 1650000000.5


@pytest.mark.parametrize("t, error", [
    (float("nan"), LabtrackValueError), (float("inf"), LabtrackValueError), (0, LabtrackValueError),
    (-5.0, LabtrackValueError), ("now", LabtrackTypeError), (True, LabtrackTypeError),
])
def test_bad_times_raise_and_log_nothing(make_run: MakeRun, t: Any, error: type[Exception]) -> None:
    run = make_run()
    with pytest.raises(error, match="time"):
        run.log({"a": 1.0}, step=0, time=t)
    flush(run)
    assert not (run.dir / "scalars" / "a.csv").exists()


# --- tables with images ----------------------------------------------------------------------------

def test_table_cells_with_images_are_files_the_csv_refers_to(make_run: MakeRun) -> None:
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8) for _ in range(2)]
    run = make_run()
    run.log({"preds": labtrack.Table([[0, "cat", labtrack.Image(imgs[0])], [1, "dog", labtrack.Image(imgs[1])]],
                                     columns=["id", "label", "input"])}, step=4)
    run.log_table("plain", [{"id": 1, "input": labtrack.Image(imgs[0])}])  # no step: beside tables/
    flush(run)
    rows = list(csv.reader(io.StringIO((run.dir / "media/4/preds.csv").read_text())))
    assert rows[0] == ["id", "label", "input"]
    assert [r[2] for r in rows[1:]] == ["media/4/preds.cells/0-2.png", "media/4/preds.cells/1-2.png"]
    assert (run.dir / "tables/preds.csv").read_text() == (run.dir / "media/4/preds.csv").read_text()
    from PIL import Image

    for r, img in zip(rows[1:], imgs):
        with Image.open(run.dir / r[2]) as im:
            assert np.array_equal(np.asarray(im), img)
    (entry,) = media_lines(run)
    assert entry["images"] == 2
    plain = list(csv.reader(io.StringIO((run.dir / "tables/plain.csv").read_text())))
    assert plain[1] == ["1", "tables/plain.cells/0-1.png"] and (run.dir / plain[1][1]).is_file()
    import pandas as pd

    run.log_table("frame", pd.DataFrame({"x": [0.5], "im": [labtrack.Image(imgs[1])]}), step=5)
    flush(run)
    assert (run.dir / "media/5/frame.csv").read_text() == "x,im\n0.5,media/5/frame.cells/0-1.png\n"
    assert (run.dir / "media/5/frame.cells/0-1.png").is_file()


def test_table_forms_give_the_same_csv() -> None:
    from labtrack._media import table_csv

    want = "a,b\n1,x\n2,\n"
    forms = [labtrack.Table([[1, "x"], [2, None]], columns=["a", "b"]),
             labtrack.Table([{"a": 1, "b": "x"}, {"a": 2}]),
             labtrack.Table({"a": [1, 2], "b": ["x", None]})]
    import pandas as pd

    forms.append(labtrack.Table(pd.DataFrame({"a": [1, 2], "b": ["x", None]})))
    assert [table_csv("t", t).decode() for t in forms] == [want] * 4


@pytest.mark.parametrize("args, error, text", [
    (([[1, 2]], ["a"]), LabtrackValueError, "row 0"),
    (({"a": [1], "b": [1, 2]},), LabtrackValueError, "different lengths"),
    (([[1]],), LabtrackTypeError, "columns="),
    ((42,), LabtrackTypeError, "int"),
    (([[labtrack.Audio(np.zeros(4))]], ["a"]), LabtrackTypeError, "Audio"),
    (({"a": "abc"},), LabtrackTypeError, "must be a list"),
])
def test_bad_tables_raise(args: tuple[Any, ...], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match="labtrack.Table") as info:
        labtrack.Table(*args)
    assert text in str(info.value)


# --- images and html -------------------------------------------------------------------------------

def test_image_checks_at_construction_and_copies(tmp_path: Path) -> None:
    arr = np.zeros((4, 5), np.uint8)
    img = labtrack.Image(arr)
    arr[:] = 255  # the script reuses its buffer: what was logged does not change
    assert img.array.max() == 0 and (img.width, img.height) == (5, 4)
    with pytest.raises(LabtrackValueError, match="box 0"):
        labtrack.Image(arr, boxes=[{"xStart": 3, "yStart": 0, "xEnd": 1, "yEnd": 2}])
    with pytest.raises(LabtrackValueError, match="not one of classes"):
        labtrack.Image(arr, boxes=[{"xStart": 0, "yStart": 0, "xEnd": 1, "yEnd": 2, "className": "x"}], classes=["y"])
    with pytest.raises(LabtrackTypeError, match="caption"):
        labtrack.Image(arr, caption=3)  # type: ignore[arg-type]
    with pytest.raises(LabtrackTypeError, match="labtrack.Image"):
        labtrack.Image("not an array".encode())
    with pytest.raises(LabtrackValueError, match="does not exist"):
        labtrack.Image(tmp_path / "none.png")
    from PIL import Image

    Image.fromarray(np.full((3, 3, 3), 9, np.uint8)).save(tmp_path / "in.png")
    assert labtrack.Image(tmp_path / "in.png").array.shape == (3, 3, 3)
    with pytest.raises(LabtrackTypeError, match="labtrack.Html"):
        labtrack.Html(b"<b>")  # type: ignore[arg-type]


def test_the_media_name_space_refuses_a_clash(make_run: MakeRun) -> None:
    run = make_run()
    run.log({"a": labtrack.Audio(tone(10))}, step=0)
    with pytest.raises(LabtrackNameError, match="clashes"):
        run.log({"a.wav/x": labtrack.Audio(tone(10))}, step=0)


# --- read back: the Book, the server's content types ------------------------------------------------

def test_the_book_lists_audio_and_video_with_players_for_jupyter(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run()
    run.log({"clip": labtrack.Audio(tone(800), sample_rate=8000, caption="hi"),
             "roll": labtrack.Video(np.zeros((4, 8, 8, 3), np.uint8), fps=4),
             "img": labtrack.Image(np.zeros((2, 2), np.uint8))}, step=2)
    run.finish()
    view = labtrack.open(tmp_path / "root")[run.id]
    (clip,) = view.audio("clip")
    assert (clip.kind, clip.step, clip.caption, clip.info) == (
        "audio", 2, "hi", {"sample_rate": 8000, "duration": 0.1, "channels": 1})
    assert clip.path.read_bytes()[:4] == b"RIFF"
    html = clip._repr_html_()
    assert html is not None and html.startswith("<figure><audio controls src=\"data:audio/wav;base64,")
    (roll,) = view.videos()
    assert (roll.width, roll.height, roll.info["frames"], roll.info["format"]) == (8, 8, 4, "mp4")
    assert "<video controls" in (roll._repr_html_() or "")
    assert [i.name for i in view.images()] == ["img"] and view.images()[0]._repr_html_() is None
    with pytest.raises(LabtrackValueError, match="has no audio 'nope'; it has: clip"):
        view.audio("nope")


@pytest.mark.parametrize("path, kind", [("media/1/a.wav", "audio/wav"), ("media/1/v.mp4", "video/mp4"),
                                        ("media/1/v.webm", "video/webm"), ("media/1/v.gif", "image/gif"),
                                        ("media/1/page.html", "application/octet-stream")])
def test_the_server_serves_media_with_their_types(path: str, kind: str) -> None:
    from labtrack._server.api import media_type

    assert media_type(path) == kind  # HTML only as bytes: the dashboard shows it in a sandbox
